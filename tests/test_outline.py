"""Outlines: shape, range, edges where the ink is, differentiable."""

from __future__ import annotations

import pytest
import torch

from plateaug import Outline, outline, render, sample_text


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


@pytest.mark.parametrize("shape", [(3, 1, 32, 104), (2, 1, 7, 9), (1, 2, 1, 5)])
def test_shifted_view_filters_equal_their_conv_forms(shape):
    """The outline's filters are sums of shifted views; they equal kornia's Sobel, avg_pool2d and
    bilinear interpolation (the contract the generator was trained with) within float rounding."""
    import kornia
    import torch.nn.functional as F

    from plateaug.renderer.outline import box3_mean, sobel_magnitude, upsample2

    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    if shape[1] == 1:
        torch.testing.assert_close(sobel_magnitude(x), kornia.filters.sobel(x, normalized=True), atol=1e-6, rtol=0)
    torch.testing.assert_close(box3_mean(x), F.avg_pool2d(x, 3, 1, 1), atol=1e-6, rtol=0)
    up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(upsample2(x), up, atol=1e-6, rtol=0)


@pytest.mark.parametrize("peak", ["interior", "corner", "top_row", "last_column", "none"])
@pytest.mark.parametrize("shape", [(4, 1, 64, 304), (3, 2, 3, 3), (2, 1, 5, 7)])
def test_box3_max_equals_the_padded_box_mean_maximum(shape, peak):
    """The polyphase outline's robust maximum, taken from views and border strips, equals the
    maximum of box3_mean bit for bit, wherever the largest 3x3 mean lies (the zero padding counts)."""
    from plateaug.renderer.outline import box3_max, box3_mean

    x = torch.rand(shape, generator=torch.Generator().manual_seed(1)) * 0.1
    where = {"interior": (..., shape[2] // 2, shape[3] // 2), "corner": (..., 0, 0),
             "top_row": (..., 0, shape[3] // 2), "last_column": (..., shape[2] // 2, -1)}
    if peak in where:
        x[1][where[peak]] = 3.0  # only plate 1
    got = box3_max(x)
    assert got.shape == (shape[0], 1, 1, 1)
    assert torch.equal(got, box3_mean(x).amax(dim=(1, 2, 3), keepdim=True))


def test_outline_odd_sizes_and_tiny_images():
    """Odd sizes take the interpolate path (the softened image is resampled back to H x W)."""
    for h, w in ((33, 65), (4, 4), (3, 3), (1, 1)):
        out = outline(torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(h)))
        assert out.shape == (2, 1, h, w) and torch.isfinite(out).all() and 0 <= out.min() and out.max() <= 1


def test_outline_equals_its_reference_formula():
    """The contract, written with kornia's and torch's own filters (as the generator was trained):
    2x2-softened luminance -> normalised Sobel magnitude / max of its 3x3 mean (>= MIN_EDGE)."""
    import kornia
    import torch.nn.functional as F

    from plateaug.renderer.outline import MIN_EDGE

    images = render("eu_de", sample_text("eu_de", 2, torch.Generator().manual_seed(0))).images  # (2, 3, 64, 304)
    gray = kornia.color.rgb_to_grayscale(images)
    gray = F.interpolate(F.avg_pool2d(gray, 2), size=gray.shape[-2:], mode="bilinear", align_corners=False)
    edges = kornia.filters.sobel(gray, normalized=True)
    ref = F.avg_pool2d(edges, 3, 1, 1).amax(dim=(1, 2, 3), keepdim=True).clamp_min(MIN_EDGE)
    torch.testing.assert_close(outline(images), (edges / ref).clamp(0, 1), atol=2e-6, rtol=0)


@pytest.mark.parametrize("shape", [(3, 3, 64, 304), (2, 3, 96, 192), (40, 3, 8, 12), (1, 3, 4, 4), (2, 3, 6, 10)])
def test_polyphase_outline_equals_the_shifted_view_outline(shape):
    """On the CPU, even sizes take the polyphase path (one strided conv, one 8-filter conv at half
    resolution, a pixel shuffle); it equals the filter-by-filter outline within float rounding, in
    place (no autograd) and out of place (autograd), across chunk boundaries (40 > CPU_CHUNK)."""
    from plateaug.renderer.outline import _outline

    x = torch.rand(shape, generator=torch.Generator().manual_seed(shape[-1]))
    x[0, :, : shape[2] // 2] = 0.5  # a flat half: MIN_EDGE and the sqrt's eps matter there
    expected = _outline(x)
    torch.testing.assert_close(outline(x), expected, atol=2e-6, rtol=0)
    xg = x.clone().requires_grad_(True)
    got = outline(xg)
    torch.testing.assert_close(got.detach(), expected, atol=2e-6, rtol=0)
    weights = torch.rand(got.shape, generator=torch.Generator().manual_seed(1))
    (got * weights).sum().backward()
    xr = x.clone().requires_grad_(True)
    (_outline(xr) * weights).sum().backward()
    torch.testing.assert_close(xg.grad, xr.grad, atol=1e-4, rtol=1e-4)
