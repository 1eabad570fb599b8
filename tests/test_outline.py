"""Outlines: shape, range, edges where the ink is, differentiable."""

from __future__ import annotations

import pytest
import torch

from plateaug import Outline, outline, render


def test_outline_shape_range_and_location():
    plates = render("br_mercosur", ["ABC1D23"])
    edges = outline(plates.images)
    assert edges.shape == (1, 1, 64, 192)
    assert 0 <= edges.min() and edges.max() <= 1 and edges.max() > 0.9
    x0, y0, x1, y1 = plates.char_boxes[0, 0].long().tolist()
    assert edges[0, 0, y0:y1, x0:x1].mean() > 0.1  # a character has edges
    flat = torch.full((1, 3, 32, 32), 0.5)
    assert outline(flat).max() < 0.05  # a flat image has none (noise not amplified)


def test_outline_gradient_flows_to_render_colours():
    images = render("us", ["ABC 123"]).images.clone().requires_grad_(True)
    Outline()(images).sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()
    assert images.grad.abs().sum() > 0


def test_outline_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        outline(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="float"):
        outline(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_outline_batch_independent():
    imgs = render("cn_blue", ["京A12345", "沪BC1234"]).images
    both = outline(imgs)
    assert torch.allclose(both[1:], outline(imgs[1:]), atol=1e-6)
