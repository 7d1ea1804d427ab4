"""This process's place in a multi-process run, from the variables torchrun sets (no torch needed).

torchrun starts one process per rank with ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` set. ``WORLD_SIZE`` decides: unset or 1 is a single-process run, whatever else a shell
has left over (a stray ``RANK=1`` used to make the only process think it was not the main one and
throw its results away).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from imgxlate.errors import UsageError


@dataclass(frozen=True)
class Launch:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{name}={text!r} is not a whole number; unset it, or start the run with torchrun, "
                         "which sets it") from None


def launched(env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(world size, rank) as the variables say, without checking them (0 for a rank that is not a
    number): for a command that only needs to know it was started by torchrun."""
    env = os.environ if env is None else env
    world, rank = env.get("WORLD_SIZE", "").strip(), env.get("RANK", "").strip()
    return (int(world) if world.isdigit() else 1), (int(rank) if rank.isdigit() else 0)


def launch_env(env: Mapping[str, str] | None = None) -> Launch:
    """The rank, local rank and world size of this process; a UsageError for a set that cannot work."""
    env = os.environ if env is None else env
    world = _int(env, "WORLD_SIZE", 1)
    if world <= 1:
        return Launch()
    rank = _int(env, "RANK", 0)
    if not 0 <= rank < world:
        raise UsageError(f"RANK={rank} is not a rank of WORLD_SIZE={world} (0 to {world - 1}); start the run "
                         "with torchrun, which sets both")
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not env.get(name)]
    if missing:
        raise UsageError(f"WORLD_SIZE={world} asks for a run of {world} processes, but {' and '.join(missing)} "
                         f"{'is' if len(missing) == 1 else 'are'} not set: start it with torchrun "
                         "(`torchrun --nproc-per-node N -m imgxlate.train ...`), or unset WORLD_SIZE and RANK to "
                         "train in this one process")
    return Launch(rank, _int(env, "LOCAL_RANK", rank), world)
