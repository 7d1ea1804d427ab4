"""Batch conversion on a Ray cluster (the optional ``ray`` extra: Ray Data).

    import imgxlate.distributed as dist
    from imgxlate.options import ModelSpec
    for r in dist.convert(["s3://bucket/photos"], "s3://bucket/out", spec=ModelSpec(to="vangogh"), address="auto"):
        print(r.status, r.src, r.dst)

The driver plans the job with the local run's rules (:mod:`imgxlate.distributed.plan`), then Ray Data
streams the pending files through three stages (:mod:`imgxlate.distributed.stages`):

    decode (CPU tasks)  ->  translate (actor pool)  ->  encode + write (CPU tasks)

Each translate actor loads the model once, through the same :func:`imgxlate.load_model` as the local
run (same engine, device rule, exact tiling). With GPUs in the cluster there is one actor per GPU
(``num_gpus=1``) and decoding/encoding run in separate CPU tasks, so GPUs do not wait for JPEG; on
CPUs there is one actor per ``CPUS_PER_ACTOR`` CPUs. A file that fails is reported with its reason
and the job goes on; an interrupted job resumes by skipping finished outputs (the plan skips them).
Results are yielded as :class:`imgxlate.batch.FileResult` in the order they finish.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgxlate._atomic import remove_stale_temps
from imgxlate.distributed import storage
from imgxlate.distributed.plan import PENDING, Job, plan_jobs
from imgxlate.errors import DiskFullError, UsageError
from imgxlate.extras import pip_install
from imgxlate.options import DEFAULT_IMAGE_OPTIONS, DEFAULT_MODEL_SPEC, ImageOptions, ModelSpec

if TYPE_CHECKING:  # pragma: no cover
    from imgxlate.batch import FileResult

__all__ = ["ClusterInfo", "Job", "RunReport", "cluster", "convert", "plan_jobs", "run_jobs", "temps_cleared",
           "written_unreported"]

# One translate actor per this many CPUs on a CPU-only cluster; the actor's ONNX Runtime session
# uses that many threads (the local run's default is every physical core of the machine).
CPUS_PER_ACTOR = 4
# Logical CPUs a decode or encode task reserves: fractional so that on a small machine the I/O tasks
# run beside the translate actor, as the local run's I/O threads run beside its session.
IO_CPUS = 0.5
# Seconds the processes of a local Ray instance get to exit after ray.shutdown() before they are killed.
SHUTDOWN_GRACE_S = 10.0


def _ray() -> Any:
    """The ray module with ray.data imported, or a UsageError naming the extra to install."""
    try:
        import ray
        import ray.data
    except ImportError as err:
        raise UsageError(f"--ray needs Ray: {pip_install('ray')}") from err
    return ray


# Ports a cluster address without one means: Ray Client (ray://) and the GCS of `ray start --head`.
RAY_CLIENT_PORT, RAY_GCS_PORT = 10001, 6379
# Seconds to wait for a cluster's port to answer before saying it cannot be reached.
CONNECT_TIMEOUT_S = 10.0


def endpoint(address: str) -> tuple[str, int] | None:
    """The (host, port) a cluster address connects to first: ``ray://h[:p]`` (Ray Client) or
    ``h[:p]`` (the cluster's GCS); None for ``auto``, which Ray resolves from this machine's own
    files."""
    if address == "auto":
        return None
    rest = address.removeprefix("ray://")
    default = RAY_CLIENT_PORT if rest != address else RAY_GCS_PORT
    if rest.startswith("["):  # [IPv6]:port
        host, _, tail = rest[1:].partition("]")
        port = tail.removeprefix(":")
    else:
        host, _, port = rest.partition(":") if rest.count(":") == 1 else (rest, "", "")
    if port and not port.isdigit():
        return None  # not an address this can read: Ray says what it makes of it
    return host, int(port) if port else default


# HTTP/2's connection preface (RFC 9113, section 3.4) followed by an empty SETTINGS frame. A gRPC server,
# which Ray's GCS and its Client server both are, answers with a SETTINGS frame of its own: a 9-byte
# frame header whose fourth byte is the frame type, 0x4.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 0x4, 0, 0, 0, 0, 0])
H2_SETTINGS = 0x4


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """A :class:`UsageError` when nothing answers at ``address`` (a typo, a stopped cluster), or when what
    answers is not a gRPC server (a web server's port): Ray itself retries either without end (measured:
    still waiting after 500 s, Ctrl-C 26 s to act). Under ``RAY_USE_TLS`` only the connection is checked."""
    import socket

    target = endpoint(address)
    if target is None:
        return
    where = f"{address!r} ({target[0]} port {target[1]}"
    advice = ("check --ray-address (or RAY_ADDRESS): `ray status` on the head node shows its address, `auto` "
              "joins the cluster this machine is in, and leaving it out runs a local Ray instance")
    try:
        with socket.create_connection(target, timeout=timeout) as sock:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("0", "false", ""):
                head = _h2_answer(sock, timeout)
                if len(head) < 9 or head[3] != H2_SETTINGS:
                    said = f"it answered {_first_line(head)}" if head else f"it said nothing in {timeout:g} s"
                    raise UsageError(f"{where}) answers, but not as a Ray cluster ({said}); {advice}")
    except OSError as err:
        why = err.strerror or str(err) or type(err).__name__
        raise UsageError(f"cannot reach the Ray cluster at {where}: {why}); {advice}") from None


def _h2_answer(sock: Any, timeout: float) -> bytes:
    """The first 9 bytes a server sends after HTTP/2's preface (fewer if it closes or stays silent)."""
    sock.settimeout(timeout)
    sock.sendall(H2_PREFACE)
    head = b""
    with contextlib.suppress(TimeoutError, ConnectionError):
        while len(head) < 9 and (chunk := sock.recv(9 - len(head))):
            head += chunk
        if len(head) == 9 and head[3] != H2_SETTINGS:  # not gRPC: the rest of its first line, for the message
            sock.settimeout(min(timeout, 0.5))
            head += sock.recv(120)
    return head


def _first_line(head: bytes) -> str:
    """What a non-gRPC server answered, for the message: its first line as text, else its bytes."""
    line = head.split(b"\r\n")[0].split(b"\n")[0]
    return repr(line.decode("ascii")) if line.isascii() and line.decode("ascii").isprintable() else repr(head)


@dataclass(frozen=True)
class ClusterInfo:
    address: str  # what was joined ("local" for a new local instance)
    cpus: int
    gpus: int
    started: bool  # this process started it (and stops it on exit)


@contextmanager
def cluster(address: str | None = None, *, quiet: bool = False,
            hold_stops: Callable[[], contextlib.AbstractContextManager[Any]] | None = None) -> Iterator[ClusterInfo]:
    """Join a Ray cluster (``address``: ``auto``, ``ray://host:port``, ``host:port``) or, with None or
    ``local``, start a local instance for this command and stop it (and every Ray process it started)
    on exit. An already initialised Ray (a notebook, a Ray job) is used as it is. ``hold_stops``: a
    context manager that holds a stop signal until its block ends (the CLI's ``defer_stop``), entered
    around Ray's start: a KeyboardInterrupt raised inside it crashed the process (exit 139)."""
    from imgxlate.distributed import processes

    ray = _ray()
    started = False
    before = processes.descendants()  # this process's own children (not Ray's: never stopped here)
    if not ray.is_initialized():
        # "local": a new instance of this command's own. None let Ray join a cluster that happened to be
        # running on this machine, whose workers read and wrote relative to another folder. RAY_ADDRESS
        # still names a cluster to join (as --ray-address does on the command line).
        address = address or os.environ.get("RAY_ADDRESS") or None
        target = "local" if address in (None, "local") else address
        if target != "local":
            check_reachable(target)
        term = signal.getsignal(signal.SIGTERM)
        try:
            # ray's own logger at errors only (its start-up notices are not ours to show); Ray Data's
            # progress (the ray.data logger and its bars) stays unless quiet
            with (hold_stops or contextlib.nullcontext)():
                ray.init(address=target, include_dashboard=False, log_to_driver=not quiet,
                         logging_level=logging.ERROR, configure_logging=True)
            # Ray's core worker puts its own SIGTERM handler in the driver (a stack dump, then exit 15 or
            # an abort); the command's handler makes it the clean stop a local run has (exit 143)
            if callable(term) and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, term)
        except ConnectionError as err:
            raise UsageError(f"cannot reach the Ray cluster at {address!r}: {err}; start one with "
                             "`ray start --head` or leave out the address for a local instance") from err
        except BaseException:
            # a stop while Ray starts (Ctrl-C, SIGTERM): what it started so far goes too (its dashboard
            # and runtime-env agents outlived the command, ignoring SIGTERM)
            if target == "local":
                with contextlib.suppress(Exception):
                    ray.shutdown()
                processes.wait_gone({p for p in processes.descendants() - before if processes.is_ray(p)},
                                    SHUTDOWN_GRACE_S)
            raise
        started = True
    try:
        res = ray.cluster_resources()
        yield ClusterInfo(address or "local", int(res.get("CPU", 0)), int(res.get("GPU", 0)), started)
    finally:
        if started:
            ray_processes = {p for p in processes.descendants() - before if processes.is_ray(p)}
            ray.shutdown(wait_for_processes=True)
            # the workers (the raylet's children) can outlive the shutdown by seconds: wait for every
            # process the instance started, so that no write task finishes or dies after this returns
            processes.wait_gone(ray_processes, SHUTDOWN_GRACE_S)


@dataclass
class RunReport:
    """What a distributed run ran on, filled in by :func:`run_jobs` as it goes."""

    cluster: ClusterInfo | None = None
    actors: int = 0
    threads: int = 0  # ONNX Runtime threads per actor (0: the session's default)
    providers: set[str] = field(default_factory=set)
    model: str | None = None  # the generator file the actors load
    reported: set[int] = field(default_factory=set)  # Job.index of every result yielded so far

    def to_dict(self) -> dict[str, Any]:
        info = self.cluster
        return {"address": info.address if info else None, "cpus": info.cpus if info else 0,
                "gpus": info.gpus if info else 0, "actors": self.actors, "threads_per_actor": self.threads,
                "providers": sorted(self.providers)}

    def describe(self) -> str:
        where = ", ".join(sorted(self.providers)) or "no provider"
        if self.cluster is None:
            return where
        return (f"{where} on Ray ({self.cluster.address}: {self.cluster.cpus} CPUs, {self.cluster.gpus} GPUs; "
                f"{self.actors} model actor{'s' if self.actors != 1 else ''})")


def _actor_plan(info: ClusterInfo, device: str, threads: int, actors: int | None) -> tuple[int, dict[str, Any], int]:
    """(number of translate actors, their Ray resources, ONNX Runtime threads per actor)."""
    if device == "cuda" and info.gpus == 0:
        raise UsageError("--device cuda: the Ray cluster has no GPUs; use --device cpu or auto")
    # The actors live for the whole run and hold their CPUs: what they reserve must leave room for a
    # decode and a write task (IO_CPUS each), or the decode tasks wait for CPUs that never free up
    # (--ray --threads 1 on 2 CPUs: two actors of 1 CPU, and the run hung without end).
    room = max(float(info.cpus) - 2 * IO_CPUS, IO_CPUS)
    if device != "cpu" and info.gpus > 0:
        count = actors or info.gpus
        return count, {"num_gpus": 1, "num_cpus": _actor_cpus(room, count)}, threads
    per_actor = threads or min(CPUS_PER_ACTOR, max(1, info.cpus))
    count = actors or max(1, info.cpus // per_actor)  # one actor per per_actor CPUs, as before
    return count, {"num_cpus": _actor_cpus(room, count)}, per_actor


def _actor_cpus(room: float, count: int) -> float:
    """Logical CPUs each of ``count`` actors reserves: 1, or the share of ``room`` that fits."""
    return min(1.0, math.floor(room / count * 1000) / 1000)  # rounded down: the shares never add up past room


def run_jobs(
    jobs: Sequence[Job],
    *,
    spec: ModelSpec = DEFAULT_MODEL_SPEC,
    options: ImageOptions = DEFAULT_IMAGE_OPTIONS,
    address: str | None = None,
    actors: int | None = None,
    quiet: bool = False,
    report: RunReport | None = None,
    hold_stops: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
) -> Iterator[FileResult]:
    """Run planned jobs on Ray; yield one FileResult per job (planning outcomes first, then the
    converted/failed files as they finish). ``spec``: the model each translate actor loads (its thread
    count is set per actor); ``options``: what is done to each image, as in the local run. ``report``,
    when given, is filled in as the run goes: the cluster, the actors and the providers the actors
    ran on. ``hold_stops``: see :func:`cluster`."""
    from imgxlate.registry import resolve_model

    # the model's size rule, from its metadata (no session): a --tile that does not fit is refused
    # here, before the cluster starts, as the local run refuses it before any file is read
    generator = resolve_model(spec.model, to=spec.to, direction=spec.direction).file
    options.check_model(max(1, int(generator.metadata.size_multiple)))
    if report is not None:
        report.model = str(generator.path)
    for job in jobs:
        if job.status != PENDING:
            if report is not None:
                report.reported.add(job.index)
            yield _result(job.__dict__ | {"seconds": 0.0, "width": 0, "height": 0})
    pending = [job for job in jobs if job.status == PENDING]
    if not pending:
        return
    data = _ray().data
    with temps_cleared(Path(j.dst).parent for j in pending if not storage.is_url(j.dst)):
        yield from _run_on_cluster(pending, data, spec, options, address, actors, quiet, report, hold_stops)


@contextmanager
def temps_cleared(folders: Iterable[Path]) -> Iterator[None]:
    """Around a run that writes into ``folders``: the temp files a killed earlier run left there are
    removed first (the local run's rule), and those of this run's write tasks cut by a stop after it.
    A worker killed at shutdown dies inside its atomic write, so its temp file stays; once the
    instance this command started is gone no process can be writing one. A temp that a live process
    on this machine holds open is left (a joined cluster's worker); the next run removes it."""
    folders = set(folders)
    remove_stale_temps(folders, time.time())
    try:
        yield
    finally:  # this run's write tasks have ended: their temp files need not have gone quiet
        remove_stale_temps(folders, time.time(), quiet_s=0)


def _run_on_cluster(pending: list[Job], data: Any, spec: ModelSpec, options: ImageOptions, address: str | None,
                    actors: int | None, quiet: bool, report: RunReport | None,
                    hold_stops: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
                    ) -> Iterator[FileResult]:
    from imgxlate.distributed import stages

    with cluster(address, quiet=quiet, hold_stops=hold_stops) as info:
        count, resources, per_actor = _actor_plan(info, spec.device, spec.threads, actors)
        if report is not None:
            report.cluster, report.actors, report.threads = info, count, per_actor
        ctx = data.DataContext.get_current()
        ctx.enable_progress_bars = not quiet
        logging.getLogger("ray.data").setLevel(logging.ERROR if quiet else logging.INFO)
        rows = [{"index": j.index, "src": j.src, "dst": j.dst, "status": j.status, "reason": j.reason, "replace": j.replace,
                 "seconds": 0.0, "width": 0, "height": 0, "pages_left_out": 0, "views_left_out": "", "provider": "", "disk_full": False, "said": ""}
                for j in pending]
        ds = (
            data.from_items(rows, override_num_blocks=len(rows))
            .map(partial(stages.decode, options=options), num_cpus=IO_CPUS)
            .map(stages.translator_class(replace(spec, threads=per_actor), options),
                 compute=data.ActorPoolStrategy(size=count), **resources)
            .map(partial(stages.write, options=options), num_cpus=IO_CPUS)
        )
        for row in ds.iter_rows():
            if report is not None:
                report.reported.add(row["index"])
                if row["provider"]:
                    report.providers.add(row["provider"])
            yield _result(row)
            if row["disk_full"]:
                # as the local run: a full disk stops the job (nothing further can be written);
                # the caller counts what is complete on disk (written_unreported) and what never started
                raise DiskFullError(row["reason"])


def written_unreported(jobs: Sequence[Job], report: RunReport) -> list[FileResult]:
    """After an interruption: the pending jobs whose output is complete on disk (or in the store)
    although their result was never yielded (a write task finished while the driver was stopping).
    Outputs appear only when complete (atomic rename / whole upload), so each of these is a converted
    file and is counted as one."""
    done = []
    for job in jobs:
        if job.status != PENDING or job.index in report.reported:
            continue
        present = storage.exists(job.dst) if storage.is_url(job.dst) else Path(job.dst).is_file()
        if present:
            report.reported.add(job.index)
            done.append(_result(job.__dict__ | {"status": "converted", "seconds": 0.0, "width": 0, "height": 0}))
    return done


def _result(row: dict[str, Any]) -> FileResult:
    from imgxlate.batch import FileResult, converted_notes

    def where(text: str) -> Any:
        return text if storage.is_url(text) else Path(text)

    from imgxlate.distributed.stages import said_in

    said = said_in(str(row.get("said", "")))
    notes = (converted_notes(int(row.get("pages_left_out", 0)), said, str(row.get("views_left_out", "")))
             if row["status"] == "converted" else ())
    return FileResult(where(row["src"]), where(row["dst"]), row["status"], row["reason"],
                      float(row["seconds"]), int(row["width"]), int(row["height"]), notes)


def convert(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    spec: ModelSpec = DEFAULT_MODEL_SPEC,
    options: ImageOptions = DEFAULT_IMAGE_OPTIONS,
    overwrite: bool = False,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    recursive: bool = True,
    **run: Any,
) -> Iterator[FileResult]:
    """Plan and run a conversion on Ray: ``inputs`` (local paths or URLs) into ``out``; ``run``: the
    other arguments of :func:`run_jobs` (address, actors, quiet, report)."""
    jobs = plan_jobs(inputs, out, fmt=options.fmt, overwrite=overwrite, include=include, exclude=exclude,
                     recursive=recursive)
    yield from run_jobs(jobs, spec=spec, options=options, **run)
