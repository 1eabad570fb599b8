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


EMBLEM_SEPARATOR = '"*" = { shape = "emblem", width_mm = 30, size_mm = 55, variants = 4 }'


def _emblem_spec(mini_spec_text: str, separator: str = EMBLEM_SEPARATOR) -> str:
    """MINI_SPEC with a state emblem between the groups (variants 0..3) and the hyphen pattern kept."""
    return (mini_spec_text.replace('"-" = {', f'{separator}\n"-" = {{')
            + '\n[[patterns]]\npattern = "L L L * D D D"\nweight = 2\n')


def test_emblem_separator_repeats_its_pattern_once_per_silhouette(write_spec, mini_spec_text):
    spec = load_region(write_spec(_emblem_spec(mini_spec_text)))
    assert spec.separator_map["*"].variants == 4 and spec.separator_map["-"].variants == 1
    assert [(" ".join(p.tokens), p.weight, p.variant) for p in spec.patterns] == [
        ("L L L - D D D", 1.0, 0)] + [("L L L * D D D", 0.5, v) for v in range(4)]
    # the grammar draws the emblem plates at their written weight (2 of 3), spread over the variants
    pattern = sample_text(spec, 3000, torch.Generator().manual_seed(0)).pattern
    counts = torch.bincount(pattern, minlength=5).float() / 3000
    assert abs(counts[0].item() - 1 / 3) < 0.03 and all(abs(c - 1 / 6) < 0.03 for c in counts[1:].tolist())


def test_emblem_is_drawn_between_the_groups_and_labels_are_unchanged(write_spec, mini_spec_text):
    """The silhouette sits in its slot in the text colour; the characters, their boxes and the label
    are those of the same plate with a plain gap; each variant draws another silhouette."""
    from plateaug import encode_texts

    emblem = load_region(write_spec(_emblem_spec(mini_spec_text), "emblem"))
    gap = load_region(write_spec(_emblem_spec(mini_spec_text, '"*" = { shape = "space", width_mm = 30 }'), "gap"))
    texts = ["ABC123"] * 4
    plates = render(emblem, encode_texts(emblem, texts, pattern=torch.tensor([1, 2, 3, 4])))
    plain = render(gap, encode_texts(gap, texts[:1], pattern=torch.tensor([1])))
    assert plates.texts == texts
    for i in range(4):
        assert torch.equal(plates.char_boxes[i], plain.char_boxes[0])
    boxes = plain.char_boxes[0].round().long().tolist()
    x0, x1 = boxes[2][2], boxes[3][0]  # between the third and fourth character
    diff = (plates.images - plain.images[:1]).abs().amax(1)  # (4, H, W)
    assert float(diff[:, :, :x0].max()) == 0 and float(diff[:, :, x1:].max()) == 0, "ink outside the gap"
    ink = diff[:, :, x0:x1] > 0.2
    assert all(int(ink[i].sum()) > 30 for i in range(4)), "an emblem variant drew nothing"
    rows = ink.any(2).float().sum(1)  # rows of ink per variant: the silhouette spans much of the row
    assert float(rows.min()) > 0.3 * (boxes[0][3] - boxes[0][1])
    assert len({tuple(ink[i].flatten().tolist()) for i in range(4)}) >= 3, "variants draw the same silhouette"
    # drawn in the text colour (a tint of it): darker than the grey plate where it covers fully
    assert float(plates.images[:, :, :, x0:x1].amin()) < 0.3


def test_arms_separator_is_a_shield_with_its_cross_cut_out_and_labels_are_unchanged(write_spec, mini_spec_text):
    """The Slovak arms sit in their slot as a half-tone shield whose double cross shows the plate
    through; the characters, their boxes and the label are those of a plain gap."""
    from plateaug import encode_texts

    arms = load_region(write_spec(_emblem_spec(mini_spec_text, '"*" = { shape = "arms", width_mm = 30, size_mm = 55 }'),
                                  "arms"))
    gap = load_region(write_spec(_emblem_spec(mini_spec_text, '"*" = { shape = "space", width_mm = 30 }'), "gap"))
    plate = render(arms, encode_texts(arms, ["ABC123"], pattern=torch.tensor([1])))
    plain = render(gap, encode_texts(gap, ["ABC123"], pattern=torch.tensor([1])))
    assert plate.texts == ["ABC123"] and torch.equal(plate.char_boxes, plain.char_boxes)
    boxes = plain.char_boxes[0].round().long().tolist()
    x0, x1 = boxes[2][2], boxes[3][0]  # between the third and fourth character
    diff = (plate.images - plain.images).abs().amax(1)[0]  # (H, W)
    assert float(diff[:, :x0].max()) == 0 and float(diff[:, x1:].max()) == 0, "ink outside the gap"
    lum = plate.images[0].mean(0)[:, x0:x1]  # (H, w)
    shield = diff[:, x0:x1] > 0.2
    assert int(shield.sum()) > 30 and float(shield.any(1).float().sum()) > 0.3 * (boxes[0][3] - boxes[0][1])
    ys, xs = torch.nonzero(shield, as_tuple=True)
    # the cross's vertical bar runs down the shield's middle column: the plate shows through it
    cx, top, bottom = int(xs.float().mean().round()), int(ys.min()), int(ys.max())
    mid = lum[top + (bottom - top) // 4: top + (bottom - top) // 2, cx]
    assert float(mid.max()) > float(lum[shield].median()) + 0.2, "the cross is not cut out of the shield"
    # half tone, not the full text colour, where the shield covers fully
    assert 0.2 < float(lum[shield].median()) < 0.7


@pytest.mark.parametrize("separator,key,reason", [
    ('"*" = { shape = "hyphen", width_mm = 16, variants = 2 }', "separators.*.variants", "only emblem and stack"),
    ('"*" = { shape = "emblem", width_mm = 30, variants = 0 }', "separators.*.variants", "expected 1..16"),
    ('"*" = { shape = "emblem", width_mm = 30, variants = 17 }', "separators.*.variants", "expected 1..16"),
    ('"*" = { shape = "emblem", width_mm = 30, variants = "4" }', "separators.*.variants", "expected int"),
    ('"*" = { shape = "emblem", width_mm = 90, variants = 4 }', "patterns[1].pattern", "impossible layout"),
    ('"*" = { shape = "emblem", width_mm = 30, chars = "US" }', "separators.*.chars", "only a stack"),
    ('"*" = { shape = "stack", width_mm = 20, chars = "UЖ" }', "separators.*.chars", "not in font"),
    ('"*" = { shape = "stack", width_mm = 20, chars = "" }', "separators.*.chars", "1-64 characters"),
    ('"*" = { shape = "stack", width_mm = 20, chars = "U S" }', "separators.*.chars", "without spaces"),
    ('"*" = { shape = "arms", width_mm = 30, variants = 2 }', "separators.*.variants", "only emblem and stack"),
    ('"*" = { shape = "arms", width_mm = 30, chars = "SK" }', "separators.*.chars", "only a stack"),
    ('"*" = { shape = "arms", width_mm = 0 }', "separators.*.width_mm", ">"),
])
def test_emblem_separator_errors_name_the_key(write_spec, mini_spec_text, separator, key, reason):
    with pytest.raises(RegionSpecError) as info:
        load_region(write_spec(_emblem_spec(mini_spec_text, separator)))
    assert info.value.key == key and reason in info.value.reason, str(info.value)


def test_emblem_variants_count_towards_the_pattern_bound(write_spec, mini_spec_text):
    """Each written pattern may be repeated 16 times: the bound on patterns holds after the repeats."""
    text = _emblem_spec(mini_spec_text, '"*" = { shape = "emblem", width_mm = 30, variants = 16 }')
    text += '\n[[patterns]]\npattern = "L L L * D D D"\n' * 16  # 1 + 17 * 16 = 273 patterns > 256
    with pytest.raises(RegionSpecError) as info:
        load_region(write_spec(text))
    assert info.value.key == "patterns" and "at most 256" in info.value.reason, str(info.value)


def test_stack_separator_draws_two_small_characters_outside_the_label(write_spec, mini_spec_text):
    """A stack draws two of its characters one above the other in its slot (the "US" of a veterans'
    plate); the label and the character boxes are those of the plate with a plain gap there."""
    from plateaug import encode_texts

    stack = load_region(write_spec(_emblem_spec(
        mini_spec_text, '"*" = { shape = "stack", width_mm = 24, size_mm = 70, variants = 3, chars = "US" }'), "st"))
    gap = load_region(write_spec(_emblem_spec(mini_spec_text, '"*" = { shape = "space", width_mm = 24 }'), "gap"))
    assert stack.separator_map["*"].chars == "US" and len(stack.patterns) == 4
    plates = render(stack, encode_texts(stack, ["ABC123"] * 3, pattern=torch.tensor([1, 2, 3])))
    plain = render(gap, encode_texts(gap, ["ABC123"], pattern=torch.tensor([1])))
    assert plates.texts == ["ABC123"] * 3
    boxes = plain.char_boxes[0].round().long().tolist()
    x0, x1 = boxes[2][2], boxes[3][0]
    for i in range(3):
        assert torch.equal(plates.char_boxes[i], plain.char_boxes[0])
        diff = (plates.images[i] - plain.images[0]).abs().amax(0)  # (H, W)
        assert float(diff[:, :x0].max()) == 0 and float(diff[:, x1:].max()) == 0, "ink outside the slot"
        rows = (diff[:, x0:x1] > 0.3).any(1).nonzero().squeeze(1)  # rows with ink
        assert len(rows) > 0.5 * (boxes[0][3] - boxes[0][1]), "the stack is not about a row tall"
        runs = int((rows[1:] - rows[:-1] > 1).sum()) + 1  # separate vertical runs of ink
        assert runs == 2, f"expected two characters one above the other, got {runs} runs of ink rows"
