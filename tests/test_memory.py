"""Large CPU outputs with huge pages advised: same shape, dtype and use as torch.empty; small,
non-CPU or switched-off tensors are left alone; the renderer's and outline's outputs unchanged."""

from __future__ import annotations

import torch

from plateaug import outline, render, sample_text
from plateaug.renderer import memory


def test_empty_is_a_usable_tensor_of_that_shape():
    t = memory.empty(512, 3, 64, 64)  # 24 MiB: advised where the kernel allows
    assert t.shape == (512, 3, 64, 64) and t.dtype == torch.float32 and t.device.type == "cpu"
    t.fill_(0.25)
    assert float(t.sum()) == 0.25 * t.numel()
    half = memory.empty(8, 4, dtype=torch.float16)
    assert half.dtype == torch.float16 and half.shape == (8, 4)


def test_small_or_switched_off_tensors_are_not_advised(monkeypatch):
    assert memory.advise_huge_pages(torch.empty(16, 16)) is False  # below MIN_BYTES
    monkeypatch.setattr(memory, "enabled", False)
    assert memory.advise_huge_pages(torch.empty(4 * memory.MIN_BYTES // 4)) is False
    monkeypatch.setattr(memory, "enabled", True)
    monkeypatch.setattr(memory, "_MADVISE", None)  # no libc madvise (not Linux)
    assert memory.advise_huge_pages(torch.empty(4 * memory.MIN_BYTES // 4)) is False


def test_large_tensor_advice_is_asked_on_linux(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "_MADVISE", lambda start, length, advice: calls.append((start, length, advice)) or 0)
    t = torch.empty(memory.MIN_BYTES // 4 + 12345)
    assert memory.advise_huge_pages(t) is True
    (start, length, advice), = calls
    ptr, nbytes = t.data_ptr(), t.numel() * 4
    assert advice == 14 and start % memory.HUGE_PAGE == 0 and length % memory.HUGE_PAGE == 0
    assert ptr <= start and start + length <= ptr + nbytes  # only whole huge pages inside the tensor


def test_render_and_outline_equal_with_and_without_huge_pages(monkeypatch):
    texts = sample_text("eu_de", 160, torch.Generator().manual_seed(3))  # 37 MiB of plates: advised
    with_huge = render("eu_de", texts)
    edges = outline(with_huge.images)
    monkeypatch.setattr(memory, "enabled", False)
    plain = render("eu_de", texts)
    assert torch.equal(with_huge.images, plain.images) and torch.equal(edges, outline(plain.images))
