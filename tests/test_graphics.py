"""Pictorial plate backgrounds: spec parsing and bounds, slots and share, characters on top."""

from __future__ import annotations

import pytest
import torch

from plateaug import RegionSpecError, load_region, render, sample_text
from plateaug.renderer.draw import Renderer
from plateaug.renderer.graphics import SHAPES
from plateaug.renderer.layers import background_layers, background_slots
from plateaug.renderer.text import TextBatch


def _graphics_spec(mini_spec_text: str, graphics: str, colors: str = '["#c8c8c8", "#e8e0c0"]') -> str:
    return mini_spec_text.replace('colors = ["#c8c8c8"]', f"colors = {colors}\ngraphics = {{ {graphics} }}")


def test_graphics_parse_and_slots_follow_the_share(write_spec, mini_spec_text):
    spec = load_region(write_spec(_graphics_spec(
        mini_spec_text, 'variants = 4, share = 0.2, colors = ["#e0892b", "#3c8d3a"], opacity = [0.5, 0.7], '
                        'shapes = ["disc", "arc"], max_shapes = 3')))
    g = spec.graphics
    assert (g.variants, g.share, g.colors, g.opacity, g.shapes, g.max_shapes) == (
        4, 0.2, ("#e0892b", "#3c8d3a"), (0.5, 0.7), ("disc", "arc"), 3)
    assert g.plain_slots == 16  # 4 pictorial of 20 slots = share 0.2
    assert spec.n_background_slots == 2 * 20
    slots = background_slots(spec)
    assert slots.tolist() == [0] * 16 + [1, 2, 3, 4] + [5] * 16 + [6, 7, 8, 9]
    layers = background_layers(spec)
    assert layers.shape == (2 * 5, 3, *spec.canvas)
    # the style column draws every slot: pictorial plates come out at the share
    style = sample_text(spec, 4000, torch.Generator().manual_seed(0)).style[:, 0]
    assert int(style.max()) == 39
    pictorial = (slots[style] % 5 != 0).float().mean().item()
    assert abs(pictorial - 0.2) < 0.03


def test_defaults_and_specs_without_graphics_are_unchanged(write_spec, mini_spec_text):
    plain = load_region(write_spec(mini_spec_text, name="plain"))
    assert plain.graphics is None and plain.n_background_slots == 1
    assert background_slots(plain).tolist() == [0]
    spec = load_region(write_spec(_graphics_spec(mini_spec_text, 'variants = 2, colors = ["#e0892b"]'), name="g"))
    assert (spec.graphics.share, spec.graphics.opacity, spec.graphics.shapes, spec.graphics.max_shapes) == (
        0.5, (0.3, 0.8), SHAPES, 2)
    assert spec.graphics.plain_slots == 2


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_draws_on_the_plate(write_spec, mini_spec_text, shape):
    spec = load_region(write_spec(_graphics_spec(
        mini_spec_text, f'variants = 3, colors = ["#2050d0"], opacity = [1, 1], shapes = ["{shape}"], max_shapes = 1',
        colors='["#ffffff"]'), name=shape))
    layers = background_layers(spec)  # (4, 3, H, W): plain, then 3 variants
    plain = layers[0]
    for v in range(1, 4):
        changed = (layers[v] - plain).abs().amax(0) > 0.5  # (H, W) pixels the shape covers
        assert 0.002 < changed.float().mean() < 0.9, f"{shape} variant {v} covers {changed.float().mean():.3f}"
        blue = layers[v][:, changed]  # (3, n) the shape's colour, full opacity
        assert torch.allclose(blue.median(1).values, torch.tensor([0x20, 0x50, 0xD0]) / 255, atol=0.02)


def test_graphics_are_drawn_once_per_region_name(write_spec, mini_spec_text):
    text = _graphics_spec(mini_spec_text, 'variants = 6, colors = ["#e0892b", "#3a6fb8"]')
    a = background_layers(load_region(write_spec(text, name="a")))
    b = background_layers(load_region(write_spec(text, name="b")))
    assert torch.equal(a, b)  # same name, same layers: every run draws the same plates
    other = background_layers(load_region(write_spec(text.replace('name = "mini"', 'name = "other"'), name="c")))
    assert not torch.equal(a, other)


def test_characters_stay_on_top_of_graphics(write_spec, mini_spec_text):
    """The same plate on its plain slot and on each pictorial slot: every pixel fully covered by
    ink is the text colour on both, and the graphics change the plate elsewhere."""
    spec = load_region(write_spec(_graphics_spec(
        mini_spec_text, 'variants = 5, share = 0.5, colors = ["#e0892b", "#3c8d3a", "#101010"], opacity = [0.9, 1]',
        colors='["#c8c8c8"]')))
    base = sample_text(spec, 8, torch.Generator().manual_seed(3))
    plain_slot = 0
    pictorial_slots = (background_slots(spec) != 0).nonzero().squeeze(1).tolist()
    assert len(pictorial_slots) == 5

    def draw(slot: int):
        style = base.style.clone()
        style[:, 0] = slot
        return render(spec, TextBatch(base.texts, base.pattern, base.local, base.lengths, style, base.stroke))

    plain = draw(plain_slot)
    ink = (plain.images - torch.tensor([0x10, 0x10, 0x10])[:, None, None] / 255).abs().amax(1) < 1e-6  # (8, H, W)
    assert ink.float().mean() > 0.05
    for slot in pictorial_slots:
        plates = draw(slot)
        assert torch.equal(plates.char_boxes, plain.char_boxes) and plates.texts == plain.texts
        assert torch.allclose(plates.images.permute(1, 0, 2, 3)[:, ink], plain.images.permute(1, 0, 2, 3)[:, ink])
        assert (plates.images - plain.images).abs().amax(1)[~ink].max() > 0.3, f"slot {slot} drew no graphics"


def test_us_plates_ship_with_graphics_on_half_the_plates():
    spec = load_region("us")
    assert spec.graphics is not None and spec.graphics.share == 0.5
    r = Renderer(spec)
    assert len(r.background_slots) == spec.n_background_slots
    assert r.backgrounds.shape[0] == len(spec.backgrounds) * (1 + spec.graphics.variants)


TOO_MANY_COLOURS = "[" + ", ".join(f'"#{i:02x}{i:02x}{i:02x}"' for i in range(64)) + "]"

# (case, graphics table, background colours, expected key, expected words)
MALFORMED = [
    ("no variants", 'colors = ["#e0892b"]', None, "background.graphics.variants", "missing required field"),
    ("zero variants", 'variants = 0, colors = ["#e0892b"]', None, "background.graphics.variants", "1..32"),
    ("too many variants", 'variants = 33, colors = ["#e0892b"]', None, "background.graphics.variants", "1..32"),
    ("float variants", 'variants = 2.5, colors = ["#e0892b"]', None, "background.graphics.variants", "expected int"),
    ("no colours", "variants = 2, colors = []", None, "background.graphics.colors", "at least one colour"),
    ("bad colour", 'variants = 2, colors = ["orange"]', None, "background.graphics.colors", "colour"),
    ("share zero", 'variants = 2, colors = ["#e0892b"], share = 0', None, "background.graphics.share", "[0.05, 1]"),
    ("share above one", 'variants = 2, colors = ["#e0892b"], share = 1.5', None, "background.graphics.share",
     "[0.05, 1]"),
    ("opacity reversed", 'variants = 2, colors = ["#e0892b"], opacity = [0.9, 0.2]', None,
     "background.graphics.opacity", "low <= high"),
    ("opacity one number", 'variants = 2, colors = ["#e0892b"], opacity = [0.5]', None,
     "background.graphics.opacity", "list of 2 numbers"),
    ("unknown shape", 'variants = 2, colors = ["#e0892b"], shapes = ["tree"]', None, "background.graphics.shapes",
     "emblem"),
    ("no shapes", 'variants = 2, colors = ["#e0892b"], shapes = []', None, "background.graphics.shapes", "non-empty"),
    ("max shapes zero", 'variants = 2, colors = ["#e0892b"], max_shapes = 0', None,
     "background.graphics.max_shapes", "1..8"),
    ("unknown key", 'variants = 2, colors = ["#e0892b"], size = 3', None, "background.graphics.size", "unknown key"),
    ("too many layers", 'variants = 32, colors = ["#e0892b"]', TOO_MANY_COLOURS, "background.graphics.variants",
     "background layers"),
]


@pytest.mark.parametrize("case,graphics,colors,key,reason", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_graphics_errors_name_the_key(write_spec, mini_spec_text, case, graphics, colors, key, reason):
    text = _graphics_spec(mini_spec_text, graphics, colors or '["#c8c8c8"]')
    with pytest.raises(RegionSpecError) as info:
        load_region(write_spec(text, name=case.replace(" ", "_")))
    assert info.value.key == key, str(info.value)
    assert reason in info.value.reason, str(info.value)


def test_graphics_must_be_a_table(write_spec, mini_spec_text):
    text = mini_spec_text.replace('colors = ["#c8c8c8"]', 'colors = ["#c8c8c8"]\ngraphics = 4')
    with pytest.raises(RegionSpecError, match="expected dict"):
        load_region(write_spec(text))
