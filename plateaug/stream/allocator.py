"""The process's malloc settings for the CPU pipeline: keep freed memory for the next batch
instead of handing it back to the kernel after every batch.

glibc's malloc serves blocks above a threshold (dynamic, at most 32 MiB) with fresh mmaps, and
trims its heap whenever more than twice that threshold lies free at its top. Each batch of the
CPU pipeline allocates and frees megabytes of intermediates per chunk (outline planes, stroke
steps, augmentation buffers), so glibc returns them to the kernel and the next chunk faults them
in again, 4 KiB at a time. `tune_malloc` raises the mmap threshold to its maximum and keeps up to
`keep_mib` of freed memory, which is what jemalloc and tcmalloc do by default. On a 2-core Xeon,
fresh processes alternating with and without it (benchmarks/malloc_ab.py, 5 rounds): the stream end
to end 1.45x faster (median; 1.07-1.52x per round), render + outline at B=512 1.12-1.27x
(benchmarks/results/malloc_xeon/malloc_ab.txt).

It changes the whole process: a CPU PlateGANStream applies it when it starts iterating (the
state glibc's own dynamic thresholds drift towards, reached from the first batch, with 256 MiB
kept instead of at most 64), unless the environment says PLATEAUG_MALLOC=system. Elsewhere than
glibc (macOS, Windows, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

M_TRIM_THRESHOLD = -1  # glibc malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit (HEAP_MAX_SIZE / 2)
KEEP_MIB = 256  # freed memory kept by default: a few batches' intermediates at B = 512
MAX_KEEP_MIB = 2047  # mallopt takes an int
OPT_OUT = ("PLATEAUG_MALLOC", "system")  # environment variable and value that leave malloc as it is


def _mallopt():
    """glibc's mallopt, or None where the process's C library is not glibc."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        fn = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_MALLOPT = _mallopt()
applied: int | None = None  # keep_mib of the last successful call in this process


def tune_malloc(keep_mib: int = KEEP_MIB) -> bool:
    """Serve blocks up to 32 MiB from malloc's heap and keep up to `keep_mib` MiB of freed memory
    (glibc only). Idempotent; True when glibc accepted both settings, False where it does nothing."""
    global applied
    if isinstance(keep_mib, bool) or not isinstance(keep_mib, int) or not 0 <= keep_mib <= MAX_KEEP_MIB:
        raise ValueError(f"keep_mib must be an int in [0, {MAX_KEEP_MIB}], got {keep_mib!r}")
    if applied == keep_mib:
        return True
    if _MALLOPT is None:
        return False
    ok = _MALLOPT(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1 and _MALLOPT(M_TRIM_THRESHOLD, keep_mib << 20) == 1
    if ok:
        applied = keep_mib
    return ok


def tune_for_stream() -> bool:
    """tune_malloc() for a CPU stream, unless PLATEAUG_MALLOC=system is set."""
    name, value = OPT_OUT
    if os.environ.get(name, "").strip().lower() == value:
        return False
    return tune_malloc()
