"""Real faults for reliability tests: a small tmpfs (a real full disk) and a process without the root
capabilities that let it read any folder. Tests skip with the reason when the machine cannot do it."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_tmpfs(path: Path, size_kb: int) -> Iterator[Path]:
    """Mount a ``size_kb`` KiB tmpfs at ``path`` (created) for the block; skips without root or mount."""
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs (a real full disk) needs root; the injected short-write test covers the logic")
    if shutil.which("mount") is None:
        pytest.skip("no mount command on this machine")
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)], check=False, capture_output=True, text=True
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip() or res.returncode})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill(folder: Path, leave_bytes: int) -> int:
    """Fill the file system of ``folder`` until about ``leave_bytes`` are free; returns the free bytes."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    if free > leave_bytes:
        with open(folder / "filler", "wb") as fh:
            fh.write(b"\0" * (free - leave_bytes))
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def without_dac_override() -> list[str]:
    """A command prefix that runs a child without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH, so that as
    root a mode-000 folder is unreadable, as it is for everyone else; [] when not root."""
    if os.name != "posix" or os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a folder unreadable to the child")
    prefix = [setpriv, "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]
    if subprocess.run([*prefix, "true"], check=False, capture_output=True).returncode != 0:
        pytest.skip("setpriv cannot drop capabilities in this sandbox")
    return prefix
