"""Lighting through the colour hint: the outline (text, labels) untouched, the hint relit per plate,
reproducible, bounded configuration."""

from __future__ import annotations

import pytest
import torch

from plateaug import PlateGANStream
from plateaug.stream.lighting import Lighting, lighting_field, relight_hint, resolve_lighting


def test_field_shape_range_and_per_plate_variety():
    field = lighting_field(Lighting(), 64, (32, 96), torch.Generator().manual_seed(0))
    assert field.shape == (64, 3, 32, 96) and field.dtype == torch.float32
    assert field.min() >= 0 and field.max() <= 1.1 * 1.15 + 1e-6  # brightest: gain high x cast high, no fall-off
    means = field.mean((1, 2, 3))
    assert means.std() > 0.1  # exposure differs from plate to plate
    assert (field[:, 0] - field[:, 2]).abs().mean((1, 2)).max() > 0.1  # some plates have a colour cast
    # a light gradient: some plates are darker on one side than on the other
    assert (field[..., :8].mean((1, 2, 3)) / field[..., -8:].mean((1, 2, 3))).log().abs().max() > 0.3


def test_no_variety_when_every_range_is_a_point():
    flat = Lighting(gain=(0.5, 0.5), cast=0.0, gradient=0.0, p_shadow=0.0)
    field = lighting_field(flat, 4, (16, 48), torch.Generator().manual_seed(0))
    assert torch.allclose(field, torch.full_like(field, 0.5))


def test_shadows_darken_part_of_the_plate_by_their_level():
    always = Lighting(gain=(1.0, 1.0), cast=0.0, gradient=0.0, p_shadow=1.0, shadow=(0.4, 0.4), softness=(0.01, 0.01))
    field = lighting_field(always, 32, (32, 96), torch.Generator().manual_seed(1))
    lo, hi = field.amin((1, 2, 3)), field.amax((1, 2, 3))
    assert lo.min() >= 0.4 - 1e-4 and hi.max() <= 1 + 1e-4  # nothing darker than the shadow's level
    crossing = ((lo - 0.4).abs() < 0.02) & ((hi - 1).abs() < 0.02)  # shadow and light on one plate
    assert crossing.float().mean() > 0.5


def test_relight_keeps_the_outline_and_relights_the_hint():
    g = torch.Generator().manual_seed(0)
    condition = torch.rand(8, 4, 32, 64, generator=g)
    out = relight_hint(condition, Lighting(), torch.Generator().manual_seed(3))
    assert out.shape == condition.shape
    assert torch.equal(out[:, 0], condition[:, 0])  # the outline carries the text: untouched
    assert not torch.allclose(out[:, 1:], condition[:, 1:]) and 0 <= out.min() and out.max() <= 1
    again = relight_hint(condition, Lighting(), torch.Generator().manual_seed(3))
    assert torch.equal(out, again)  # same generator state, same lighting
    assert relight_hint(condition, None, g) is condition
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\)"):
        relight_hint(condition[:, :3], Lighting(), g)


def test_resolve_presets_dicts_and_bad_values():
    assert resolve_lighting("none") is None and resolve_lighting(None) is None
    assert resolve_lighting("varied") == Lighting()
    assert resolve_lighting({"gain": [0.6, 0.9], "p_shadow": 0.5}) == Lighting(gain=(0.6, 0.9), p_shadow=0.5)
    with pytest.raises(ValueError, match="unknown fields"):
        resolve_lighting({"exposure": 1})
    with pytest.raises(ValueError, match="lighting must be one of"):
        resolve_lighting("sunny")
    for bad in ({"gain": (0.9, 0.6)}, {"gain": (0.5, 3.0)}, {"cast": 1.5}, {"p_shadow": -0.1},
                {"shadow": (0.2, 1.2)}, {"softness": (0.0, 0.1)}):
        with pytest.raises(ValueError, match="Lighting"):
            Lighting(**bad)
    with pytest.raises(ValueError, match="lighting"):
        PlateGANStream(generator=None, lighting="sunny")


def _recording_stream(lighting: str) -> tuple[PlateGANStream, list[torch.Tensor]]:
    seen: list[torch.Tensor] = []

    def fake(condition: torch.Tensor) -> torch.Tensor:
        seen.append(condition.clone())
        return condition[:, 1:]  # the colour hint, as RGB

    stream = PlateGANStream(regions="eu_sk", generator=fake, augment="none", seed=4, batch_size=6,
                            generator_share=1.0, framing="tight", lighting=lighting)
    return stream, seen


def test_stream_relights_only_the_hint_of_translated_plates():
    plain, seen_plain = _recording_stream("none")
    lit, seen_lit = _recording_stream("varied")
    images_plain, targets_plain = next(iter(plain))
    images_lit, targets_lit = next(iter(lit))
    (a,), (b,) = seen_plain, seen_lit  # one generator call each, on the same renders
    assert torch.equal(a[:, 0], b[:, 0])  # same outline: same text, same character boxes
    assert not torch.allclose(a[:, 1:], b[:, 1:])
    assert sorted(t["text"] for t in targets_plain) == sorted(t["text"] for t in targets_lit)
    assert not torch.allclose(images_plain.mean((1, 2, 3)).sort().values, images_lit.mean((1, 2, 3)).sort().values)
    again, _ = next(iter(_recording_stream("varied")[0]))
    assert torch.equal(images_lit, again)  # same seed, same batch


def test_lighting_off_leaves_the_stream_unchanged():
    kwargs = dict(regions="us", generator=lambda c: c[:, 1:], augment="none", seed=2, batch_size=4)
    a, ta = next(iter(PlateGANStream(**kwargs)))
    b, tb = next(iter(PlateGANStream(**kwargs, lighting="none")))
    assert torch.equal(a, b) and [t["text"] for t in ta] == [t["text"] for t in tb]
