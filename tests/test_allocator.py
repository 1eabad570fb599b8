"""tune_malloc: glibc keeps freed memory for the next batch (observed through the process's RSS in
fresh interpreters), bad arguments are refused, a CPU stream applies it unless told not to, and
where there is no glibc it does nothing."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest
import torch

from plateaug import PlateGANStream, tune_malloc
from plateaug.stream import allocator

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# allocate and touch 16 MiB, free it, print the resident set (MiB) before and after the free
_RSS_AFTER_FREE = """
import sys, torch
from plateaug import tune_malloc
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20
if sys.argv[1] == 'tune':
    assert tune_malloc()
t = torch.ones(4 << 20)
held = rss()
del t
print(held, rss())
"""


def _rss_drop_after_free(arm: str) -> float:
    out = subprocess.run([sys.executable, "-c", _RSS_AFTER_FREE, arm], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    held, after = float(out[-2]), float(out[-1])
    return held - after


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's; elsewhere tune_malloc does nothing (tested below)")
def test_freed_block_stays_with_the_process_only_when_tuned():
    assert _rss_drop_after_free("plain") > 12  # glibc mmaps a fresh 16 MiB block and unmaps it on free
    assert _rss_drop_after_free("tune") < 4  # from the heap, kept for the next allocation


@pytest.mark.parametrize("bad", [-1, allocator.MAX_KEEP_MIB + 1, 1.5, "256", True, None])
def test_bad_keep_is_refused(bad):
    with pytest.raises(ValueError, match="keep_mib"):
        tune_malloc(bad)


def test_without_glibc_nothing_happens(monkeypatch):
    monkeypatch.setattr(allocator, "_MALLOPT", None)
    monkeypatch.setattr(allocator, "applied", None)
    assert tune_malloc() is False and allocator.applied is None


def test_settings_asked_of_mallopt(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "_MALLOPT", lambda param, value: calls.append((param, value)) or 1)
    monkeypatch.setattr(allocator, "applied", None)
    assert tune_malloc(100) is True
    assert calls == [(allocator.M_MMAP_THRESHOLD, 32 << 20), (allocator.M_TRIM_THRESHOLD, 100 << 20)]
    assert tune_malloc(100) is True and len(calls) == 2  # idempotent
    monkeypatch.setattr(allocator, "_MALLOPT", lambda param, value: 0)  # glibc refused
    monkeypatch.setattr(allocator, "applied", None)
    assert tune_malloc() is False and allocator.applied is None


def test_cpu_stream_tunes_unless_opted_out(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "tune_malloc", lambda: calls.append(1) or True)
    stream = PlateGANStream(regions="cn_blue", batch_size=2, generator=None, seed=0, length=1)
    monkeypatch.setenv("PLATEAUG_MALLOC", "system")
    images, _ = next(iter(stream))
    assert calls == [] and images.shape == (2, 3, 64, 256)
    monkeypatch.delenv("PLATEAUG_MALLOC")
    again, _ = next(iter(stream))
    assert calls == [1] and torch.equal(images, again)  # same plates either way
