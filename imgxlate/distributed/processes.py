"""The processes a local Ray instance starts, so that none outlives the command that started it.

``ray.shutdown(wait_for_processes=True)`` waits for the processes the node started (the raylet, the
GCS), not for the workers the raylet started: a write task still running at a Ctrl-C could rename its
file after the command counted the outputs, or die later and leave its temp file. So the command notes the
processes that appeared below it while the instance ran (:func:`descendants`, read from ``/proc``),
keeps those that are Ray's (:func:`is_ray`), and after the shutdown waits for them to exit, killing
those that do not (:func:`wait_gone`).

Without ``/proc`` (macOS, Windows) both are no-ops and ``ray.shutdown()`` alone stops the instance.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable

__all__ = ["descendants", "is_ray", "wait_gone"]


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, ...); None when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # the command name is in parentheses and may itself hold spaces and ')': split after the last one
    return raw[raw.rfind(b")") + 2 :].split()


def descendants(pid: int | None = None) -> set[int]:
    """Every live process below ``pid`` (default: this one), children of children included."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return set()
    children: dict[int, list[int]] = {}
    for name in names:
        if name.isdigit() and (fields := _stat_fields(int(name))) is not None and fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(name))
    found: set[int] = set()
    todo = [os.getpid() if pid is None else pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


# Ray's own programs, and the parts of the ray package its Python processes run from (workers,
# agents, monitors).
_RAY_PROGRAMS = frozenset({b"raylet", b"gcs_server"})
_RAY_SCRIPTS = (b"/ray/_private/", b"/ray/dashboard/", b"/ray/autoscaler/", b"/ray/core/")


def is_ray(pid: int) -> bool:
    """Is ``pid`` one of Ray's processes (raylet, gcs_server, ``ray::`` workers, its agents)? Read
    from its command line, so that a process someone else started meanwhile is never stopped."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    first = argv[0] if argv else b""
    return (first.startswith(b"ray::") or first.rsplit(b"/", 1)[-1] in _RAY_PROGRAMS
            or any(part in arg for arg in argv for part in _RAY_SCRIPTS))


def _alive(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in (b"Z", b"X")  # a zombie has exited


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait up to ``timeout`` seconds for ``pids`` to exit, then SIGKILL the rest and wait for those
    (a killed process is gone within milliseconds). Returns the pids that had to be killed."""
    alive = [p for p in pids if _alive(p)]
    deadline = time.monotonic() + timeout
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if _alive(p)]
    for p in alive:
        with contextlib.suppress(OSError):
            os.kill(p, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    left = alive
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = [p for p in left if _alive(p)]
    return alive
