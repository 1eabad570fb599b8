"""Seeds for (seed, epoch, DDP rank, DataLoader worker, batch): every combination its own
reproducible stream, derived statelessly so workers and ranks never share one."""

from __future__ import annotations

import hashlib
import os

import torch


def mix(*parts: int) -> int:
    """A 63-bit seed from integers (sha256): different tuples give unrelated seeds."""
    return int.from_bytes(hashlib.sha256(repr(tuple(int(p) for p in parts)).encode()).digest()[:8], "little") >> 1


def fresh_seed() -> int:
    """A random base seed (taken once, in the process that builds the stream)."""
    return int.from_bytes(os.urandom(8), "little") >> 1


def rank_and_world() -> tuple[int, int]:
    """DDP rank and world size: torch.distributed when initialised, else RANK / WORLD_SIZE."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    try:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError:
        raise ValueError(f"RANK={os.environ.get('RANK')!r} / WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} "
                         "must be integers") from None


def worker() -> tuple[int, int]:
    """(worker id, number of workers) of the current DataLoader worker, (0, 1) outside one."""
    info = torch.utils.data.get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


def share(total: int, index: int, parts: int) -> int:
    """How many of `total` items part `index` of `parts` produces (differ by at most one)."""
    return total // parts + (1 if index < total % parts else 0)
