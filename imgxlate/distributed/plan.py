"""Which files a distributed run converts and where each result goes: the local run's rules.

Local paths are planned by :func:`imgxlate.batch.plan_conversion` itself (the same names, suffixes,
skips and refusals as ``imgxlate convert``). Object-store URLs are planned here with the same rules:
the tree below each input URL is mirrored below the output URL, the output suffix comes from
:func:`imgxlate.imaging.formats.output_suffix` (sniffing the real format for ``--format same``),
existing outputs are skipped unless ``overwrite``, and two inputs mapping to one output are refused.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from imgxlate.errors import UsageError
from imgxlate.inputs import Found, collision_reason

PENDING, SKIPPED, FAILED = "pending", "skipped", "failed"
# A GIF in an object store is read whole while planning to tell an animation from a still (their
# outputs are .gif and .png); GIFs are small, and past this a file is planned as a still.
GIF_PROBE_BYTES = 64 << 20


@dataclass(frozen=True)
class Job:
    """One input of a distributed run: where it is, where its result goes, and whether to run it."""

    index: int  # position in the plan; results are reported in this order
    src: str  # a local path or a URL
    dst: str
    status: str = PENDING  # pending | skipped | failed (decided while planning)
    reason: str = ""
    replace: bool = False  # as PlannedFile.replace: write over a local output that appeared since planning


class Jobs(list[Job]):
    """The planned jobs (a list, in input order) plus :attr:`ignored`: what a local walk found and left
    out on purpose (videos among them: the summary points to ``imgxlate video``)."""

    def __init__(self, jobs: Sequence[Job] = (), ignored: Sequence[Found] = ()) -> None:
        super().__init__(jobs)
        self.ignored: list[Found] = list(ignored)


def plan_jobs(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    fmt: str = "same",
    overwrite: bool = False,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    recursive: bool = True,
) -> list[Job]:
    """Plan every input; local paths and URLs may be mixed on the input side."""
    from imgxlate.distributed.storage import is_url

    texts = [os.fspath(i) for i in inputs]
    if not texts:
        raise UsageError("no inputs given; pass image files, folders, glob patterns or URLs")
    out_text = os.fspath(out)
    urls = [t for t in texts if is_url(t)]
    if not urls and not is_url(out_text):
        from imgxlate.batch import plan_conversion

        plans = plan_conversion(texts, out_text, fmt=fmt, overwrite=overwrite, include=include,
                                exclude=exclude, recursive=recursive)
        # Absolute: Ray's workers run in the cluster's working folder, not this one (a joined cluster
        # read the relative in/a.jpg of the folder `ray start` ran in, and wrote there).
        return Jobs([Job(i, _absolute(p.src), _absolute(p.dst), p.status, p.reason, p.replace)
                     for i, p in enumerate(plans)], plans.ignored)
    if not urls:
        raise UsageError(f"--out {out_text} is a URL, but the inputs are local paths: an object-store --out "
                         "takes URL inputs (upload the photos first), or give a local --out")
    if len(urls) != len(texts):
        raise UsageError("give either local paths or URLs as inputs, not both in one run")
    return _plan_urls(urls, out_text, fmt=fmt, overwrite=overwrite, include=include, exclude=exclude,
                      recursive=recursive)


def _absolute(path: Path) -> str:
    """``path`` from the folder this command runs in; no path (a walk's note) stays "."."""
    return "." if path == Path() else os.path.abspath(path)


def _plan_urls(
    inputs: Sequence[str],
    out: str,
    *,
    fmt: str,
    overwrite: bool,
    include: Sequence[str],
    exclude: Sequence[str],
    recursive: bool,
) -> list[Job]:
    from imgxlate.batch import check_format
    from imgxlate.distributed import storage
    from imgxlate.imaging.formats import READ_SUFFIXES, is_animated_file, output_suffix, sniff_format
    from imgxlate.inputs import SKIP_EXISTING
    from imgxlate.inputs import _matches as matches

    fmt = check_format(fmt)
    local_out = not storage.is_url(out)
    found: list[tuple[str, str]] = []
    for url in inputs:
        for src, rel in storage.list_files(url, recursive=recursive):
            explicit = src == url  # a file named directly is converted whatever its suffix
            suffix = PurePosixPath(rel).suffix.lower()
            if not explicit and suffix not in READ_SUFFIXES:
                continue
            if include and not matches(Path(rel), include):
                continue
            if exclude and matches(Path(rel), exclude):
                continue
            found.append((src, rel))
    if not found:
        raise UsageError(f"no images found in {', '.join(inputs)}; check the URLs and --include/--exclude")
    jobs: list[Job] = []
    claimed: dict[str, str] = {}
    for index, (src, rel) in enumerate(found):
        source_format = sniff_format(storage.head(src)) if fmt == "same" else ""
        # an animated GIF stays a GIF, a still one becomes a PNG (as in the local plan): read it whole
        animated = source_format == "GIF" and is_animated_file(storage.head(src, GIF_PROBE_BYTES))
        rel_path = PurePosixPath(rel)
        suffix = output_suffix(rel_path.suffix, source_format, fmt, animated=animated)
        out_rel = rel_path.with_name(rel_path.stem + suffix)
        dst = os.path.abspath(Path(out) / out_rel) if local_out else storage.join_url(out, out_rel.as_posix())
        if dst in claimed:
            jobs.append(Job(index, src, dst, FAILED, collision_reason(claimed[dst], src, dst, fmt)))
            continue
        claimed[dst] = src
        present = Path(dst).exists() if local_out else storage.exists(dst)
        if present and not overwrite:
            jobs.append(Job(index, src, dst, SKIPPED, SKIP_EXISTING))
            continue
        jobs.append(Job(index, src, dst, replace=overwrite))
    return jobs
