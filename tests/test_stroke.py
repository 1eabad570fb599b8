"""Stroke weight variety: the functional op, the spec field, sampling and rendering with labels."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from fixtures import flat_spec

from plateaug import encode_texts, load_region, render, sample_text
from plateaug.renderer.spec import RegionSpecError
from plateaug.renderer.stroke import stroke_weight


def _ink() -> torch.Tensor:
    """(3, 1, 24, 24) three copies of a 6 px wide ring with soft edges."""
    y, x = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    r = ((y - 11.5) ** 2 + (x - 11.5) ** 2).sqrt()
    ring = ((r - 5).clamp(0, 1) * (11 - r).clamp(0, 1))[None, None]
    return ring.repeat(3, 1, 1, 1)


def test_zero_keeps_ink_exactly_and_signs_thin_or_thicken():
    ink = _ink()
    out = stroke_weight(ink, torch.tensor([0.0, 1.0, -1.0]))
    assert out.shape == ink.shape
    assert torch.equal(out[0], ink[0])
    torch.testing.assert_close(out[1], -F.max_pool2d(-ink[1:2], 3, 1, 1)[0])  # one whole erosion step
    torch.testing.assert_close(out[2], F.max_pool2d(ink[2:3], 3, 1, 1)[0])  # one whole dilation step
    assert out[1].sum() < ink[0].sum() < out[2].sum()
    assert 0 <= out.min() and out.max() <= 1


def test_fractions_blend_between_whole_steps():
    ink = _ink()
    out = stroke_weight(ink, torch.tensor([0.5, 1.0, 1.5]))
    one = -F.max_pool2d(-ink[:1], 3, 1, 1)
    two = -F.max_pool2d(-one, 3, 1, 1)
    torch.testing.assert_close(out[0], (0.5 * ink[0] + 0.5 * one[0]))
    torch.testing.assert_close(out[2], (0.5 * one[0] + 0.5 * two[0]))
    assert ink[0].sum() > out[0].sum() > out[1].sum() > out[2].sum()


def test_bad_shapes_and_device_amounts_are_refused():
    with pytest.raises(ValueError, match="expected ink"):
        stroke_weight(torch.zeros(2, 3, 8, 8), torch.zeros(2))
    with pytest.raises(ValueError, match="expected ink"):
        stroke_weight(torch.zeros(2, 1, 8, 8), torch.zeros(3))
    with pytest.raises(ValueError, match="CPU tensor"):
        stroke_weight(torch.zeros(2, 1, 8, 8), torch.zeros(2, device="meta"))


def _spec_with(write_spec, stroke: str):
    text = flat_spec().replace('font = "DejaVuSansCondensed-Bold"',
                               f'font = "DejaVuSansCondensed-Bold"\nstroke_px = {stroke}')
    return write_spec(text, name="stroke")


def test_spec_field_is_parsed_and_bounded(write_spec):
    assert load_region(_spec_with(write_spec, "[-0.5, 1.0]")).stroke_px == (-0.5, 1.0)
    assert load_region(write_spec(flat_spec(), name="plain")).stroke_px == (0.0, 0.0)
    for bad in ("[1.0, 0.5]", "[-5, 0]", "[0, 9]", "[0.5]", '"thin"'):
        with pytest.raises(RegionSpecError, match="stroke_px"):
            load_region(_spec_with(write_spec, bad))


def test_sampled_strokes_are_in_range_and_seeded(write_spec):
    spec = load_region(_spec_with(write_spec, "[-0.5, 1.0]"))
    a = sample_text(spec, 64, torch.Generator().manual_seed(1))
    b = sample_text(spec, 64, torch.Generator().manual_seed(1))
    assert a.stroke.shape == (64,) and torch.equal(a.stroke, b.stroke)
    assert -0.5 <= a.stroke.min() < 0 < a.stroke.max() <= 1.0
    assert a[3:5].stroke.tolist() == a.stroke[3:5].tolist()
    plain = sample_text(load_region(write_spec(flat_spec(), name="plain")), 4, torch.Generator().manual_seed(1))
    assert plain.stroke is None


@pytest.mark.parametrize("stroke", ["[-1, -1]", "[1, 1]"])
def test_rendered_ink_changes_weight_and_stays_inside_the_boxes(write_spec, stroke):
    """Flat background: every inked pixel lies in a character box, thickened plates included
    (their boxes grow by the dilation), and the ink amount moves the right way."""
    varied = load_region(_spec_with(write_spec, stroke))
    plain = load_region(write_spec(flat_spec(), name="plain"))
    batch = sample_text(varied, 8, torch.Generator().manual_seed(2))
    out, ref = render(varied, batch), render(plain, dataclasses.replace(batch, stroke=None))
    bg = torch.tensor([0xD0 / 255] * 3)[:, None, None]
    darkness = lambda imgs: (bg - imgs).clamp(min=0).sum()  # noqa: E731 - black text on grey
    assert (darkness(out.images) > darkness(ref.images)) == (stroke == "[-1, -1]")
    inked = (out.images - bg).abs().amax(1) > 1 / 255  # (B, H, W)
    for b in range(8):
        inside = torch.zeros_like(inked[b])
        for x0, y0, x1, y1 in out.char_boxes[b, : out.lengths[b]].long().tolist():
            inside[y0:y1, x0:x1] = True
        assert not (inked[b] & ~inside).any(), "ink outside the character boxes"


def test_encode_texts_takes_strokes_and_refuses_bad_ones(write_spec):
    spec = load_region(write_spec(flat_spec(), name="plain"))
    batch = encode_texts(spec, ["AB1234", "CD5678"], stroke=torch.tensor([0.5, -0.5]))
    assert batch.stroke.tolist() == [0.5, -0.5]
    for bad in (torch.zeros(3), torch.tensor([0.0, float("nan")]), torch.tensor([0.0, 50.0])):
        with pytest.raises(ValueError, match="stroke must be"):
            encode_texts(spec, ["AB1234", "CD5678"], stroke=bad)


def test_shipped_regions_vary_their_stroke():
    for region in ("br_old", "eu_sk", "us", "cn_blue"):
        lo, hi = load_region(region).stroke_px
        assert lo < 0 < hi
