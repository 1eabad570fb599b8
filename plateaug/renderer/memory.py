"""Large CPU output tensors backed by transparent huge pages where the kernel allows.

A fresh (512, 3, 64, 304) float batch is 120 MB that the allocator maps anew on every call; the
first write then takes one page fault per 4 KiB page. Asking the kernel for 2 MiB pages (madvise
MADV_HUGEPAGE, honoured when /sys/kernel/mm/transparent_hugepage/enabled is "madvise" or
"always") cuts the faults 512-fold: render + outline 1.04-1.17x faster at B=512 on a 2-core CPU
(benchmarks/results/outline_polyphase_xeon.txt). Nothing changes for the tensor's values or
lifetime; elsewhere (no Linux, THP "never", GPU tensors, small tensors) this is torch.empty.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import torch

HUGE_PAGE = 2 << 20  # bytes
MIN_BYTES = 4 * HUGE_PAGE  # below this the allocator's heap reuses memory anyway
_MADV_HUGEPAGE = 14  # linux/mman.h
enabled = True  # module switch, e.g. for an A/B benchmark


def _madvise():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_MADVISE = _madvise()


def advise_huge_pages(t: torch.Tensor) -> bool:
    """Ask for huge pages over the 2 MiB-aligned interior of a CPU tensor's memory before it is
    first written. True when the kernel accepted the advice."""
    nbytes = t.numel() * t.element_size()
    if not enabled or _MADVISE is None or t.device.type != "cpu" or nbytes < MIN_BYTES:
        return False
    ptr = t.data_ptr()
    start = -(-ptr // HUGE_PAGE) * HUGE_PAGE
    end = (ptr + nbytes) // HUGE_PAGE * HUGE_PAGE
    return end > start and _MADVISE(start, end - start, _MADV_HUGEPAGE) == 0


def empty(*shape: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """torch.empty(shape), on the CPU with huge pages advised for large tensors (values unset)."""
    t = torch.empty(*shape, device=device, dtype=dtype)
    advise_huge_pages(t)
    return t
