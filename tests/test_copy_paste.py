"""paste_plates: stream plates pasted into your own labelled images (copy-paste), their boxes added."""

from __future__ import annotations

import pytest
import torch

from plateaug import Harmonise, PlateGANStream, paste_plates

OWN = torch.tensor([[10.0, 10, 40, 20]])  # each image's own plate box


def _source() -> tuple[torch.Tensor, torch.Tensor]:
    """One source scene (3, 120, 200) uint8: dark, one bright 80 x 20 px plate, and its box."""
    img = torch.full((3, 120, 200), 40, dtype=torch.uint8)
    img[:, 50:70, 60:140] = 250
    return img, torch.tensor([[60.0, 50, 140, 70]])


def _pasted(images: torch.Tensor, out: torch.Tensor, new: list[torch.Tensor]) -> list[tuple]:
    """(k, (x0, y0, x1, y1) ints, changed pixels (H, W) bool) of each image a plate was pasted into (its second box);
    every other image must be unchanged."""
    found = []
    for k, b in enumerate(new):
        changed = (out[k] != images[k]).any(0)  # (H, W)
        if len(b) < 2:
            assert not changed.any()
            continue
        found.append((k, tuple(int(v) for v in b[1].tolist()), changed))
    return found


def test_paste_plates_pastes_one_plate_with_its_box_where_no_plate_is() -> None:
    src, box = _source()
    images = torch.full((64, 3, 96, 96), 0.5)
    boxes = [OWN.clone() for _ in range(64)]
    out, new = paste_plates(images, boxes, [src], [box], share=0.5, generator=torch.Generator().manual_seed(3))
    # the inputs are kept
    assert torch.equal(images, torch.full((64, 3, 96, 96), 0.5)) and all(torch.equal(b, OWN) for b in boxes)
    assert out.shape == images.shape and len(new) == 64
    pasted = [k for k, b in enumerate(new) if len(b) == 2]
    assert all(len(b) in (1, 2) and torch.equal(b[0], OWN[0]) for b in new)  # the own box first, unchanged
    assert 16 <= len(pasted) <= 48  # about half (a place over the own box is left empty)
    for k, (x0, y0, x1, y1), changed in _pasted(images, out, new):
        assert 0 <= x0 < x1 <= 96 and 0 <= y0 < y1 <= 96 and 0.6 * 80 * 0.6 - 1 <= x1 - x0 <= 0.6 * 96
        assert (x1 - x0) / (y1 - y0) == pytest.approx(4, rel=0.25)  # the plate's aspect kept
        assert not (x0 < 40 and x1 > 10 and y0 < 20 and y1 > 10)  # not over the image's own plate
        inside = torch.zeros(96, 96, dtype=torch.bool)
        inside[y0:y1, x0:x1] = True
        assert changed[inside].all() and not changed[~inside].any()
        assert out[k][:, inside].mean() > 0.6  # the bright plate, pulled halfway to the grey place: 0.98 x 0.71
    again, _ = paste_plates(images, boxes, [src], [box], share=0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(out, again)  # the same draws, the same pastes
    as_float, _ = paste_plates(images, boxes, [src.float() / 255], [box], share=0.5,
                               generator=torch.Generator().manual_seed(3))
    assert torch.allclose(as_float, out, atol=1e-6)  # uint8 or float sources alike
    none, same = paste_plates(images, boxes, [src], [box], share=0.0)
    assert torch.equal(none, images) and all(torch.equal(a, b) for a, b in zip(same, boxes))



def test_paste_plates_harmonised_takes_the_light_of_its_place() -> None:
    """harmonise: the same places and boxes, the plate composited as the stream composites (darker in a dark place
    than the brightness pull makes it; an edge maybe feathered a pixel past its box, nothing further changed)."""
    src, box = _source()
    images = torch.full((64, 3, 96, 96), 0.1)
    boxes = [OWN.clone() for _ in range(64)]
    plain, plain_boxes = paste_plates(images, boxes, [src], [box], generator=torch.Generator().manual_seed(3))
    out, new = paste_plates(images, boxes, [src], [box], generator=torch.Generator().manual_seed(3),
                            harmonise=Harmonise())
    assert all(torch.equal(a, b) for a, b in zip(new, plain_boxes))
    pasted = [k for k, b in enumerate(new) if len(b) == 2]
    assert len(pasted) >= 16 and out.min() >= 0 and out.max() <= 1
    means = []
    for k, (x0, y0, x1, y1), changed in _pasted(images, out, new):
        near = torch.zeros(96, 96, dtype=torch.bool)
        near[max(0, y0 - 2):y1 + 2, max(0, x0 - 2):x1 + 2] = True
        assert changed[y0 + 1:y1 - 1, x0 + 1:x1 - 1].all() and not changed[~near].any()
        means.append((float(out[k, :, y0:y1, x0:x1].mean()), float(plain[k, :, y0:y1, x0:x1].mean())))
    assert all(0.1 < h for h, _ in means)  # still brighter than the place
    assert sum(h for h, _ in means) < sum(p for _, p in means) - 0.05 * len(means)  # and darker than pulled halfway
    again, _ = paste_plates(images, boxes, [src], [box], generator=torch.Generator().manual_seed(3),
                            harmonise=Harmonise())
    assert torch.equal(out, again)



def test_paste_plates_with_context_brings_the_plates_surroundings() -> None:
    """context: the cut is the box grown by context x its width (the car round the plate); the pasted box is still
    the plate's own, over its pixels, and nothing of the cut overlaps the image's plates. A cut that would hold part of
    another of the source's plates is not pasted."""
    src = torch.full((3, 120, 200), 40, dtype=torch.uint8)
    src[:, 40:80, 40:160] = 120  # the car: grey round the plate
    src[:, 50:70, 60:140] = 250  # the plate: 80 x 20 px
    box = torch.tensor([[60.0, 50, 140, 70]])
    images = torch.zeros(64, 3, 128, 128)
    boxes = [OWN.clone() for _ in range(64)]
    out, new = paste_plates(images, boxes, [src], [box], share=1.0, context=0.25,
                            generator=torch.Generator().manual_seed(4))
    pasted = [k for k, b in enumerate(new) if len(b) == 2]
    assert len(pasted) >= 16
    for k in pasted:
        x0, y0, x1, y1 = new[k][1].tolist()
        assert (x1 - x0) / (y1 - y0) == pytest.approx(4, rel=0.15)
        xa, ya, xb, yb = round(x0), round(y0), round(x1), round(y1)
        assert out[k, :, ya + 1:yb - 1, xa + 1:xb - 1].min() > 0.5  # the plate under its box
        changed = (out[k] != 0).any(0).nonzero()  # the whole cut: the plate and its car
        cy0, cx0 = changed.min(0).values.tolist()
        cy1, cx1 = (changed.max(0).values + 1).tolist()
        grow = 0.25 * (x1 - x0)
        assert cx0 == pytest.approx(x0 - grow, abs=2) and cx1 == pytest.approx(x1 + grow, abs=2)
        assert cy0 == pytest.approx(max(0.0, y0 - grow), abs=2) or cy0 == 0
        assert not (cx0 < 40 and cx1 > 10 and cy0 < 20 and cy1 > 10)  # the cut is off the image's own plate
        ring = out[k, :, max(0, ya - 3), xa:xb]  # just above the plate: the car, darker than the plate
        assert 0.1 < float(ring.mean()) < 0.5 * float(out[k, :, ya + 2:yb - 2, xa + 2:xb - 2].mean())
    plain, _ = paste_plates(images, boxes, [src], [box], share=1.0, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(plain, out)
    assert paste_plates(images, boxes, [src], [box], share=1.0, context=0.0,
                        generator=torch.Generator().manual_seed(4))[0].equal(plain)  # context 0: the box alone
    two = torch.tensor([[60.0, 50, 140, 70], [60.0, 74, 140, 94]])  # a second plate within the grown cut
    _, none = paste_plates(images, boxes, [src], [two], share=1.0, context=0.25)
    assert all(len(b) == 1 for b in none)


def test_paste_plates_takes_a_stream_scene_batch() -> None:
    """The stream's scenes and their target boxes are a source as they come."""
    stream = PlateGANStream(mode="scene", backgrounds="procedural", batch_size=4, image_size=(96, 160), seed=1)
    scenes, targets = next(iter(stream))
    images = torch.zeros(8, 3, 128, 128)
    out, boxes = paste_plates(images, [torch.zeros(0, 4)] * 8, scenes, [t["boxes"] for t in targets], share=1.0,
                              generator=torch.Generator().manual_seed(0))
    assert sum(len(b) for b in boxes) >= 4
    for img, b in zip(out, boxes):
        for x0, y0, x1, y1 in b.round().long().tolist():
            assert img[:, y0:y1, x0:x1].mean() > 0  # a plate's pixels in its box, on the black image
        if not len(b):
            assert not img.any()


@pytest.mark.parametrize("call, message", [
    (lambda s, b: paste_plates(torch.zeros(2, 1, 8, 8), [OWN] * 2, [s], [b]), "float (B, 3, H, W) batch"),
    (lambda s, b: paste_plates(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), [OWN] * 2, [s], [b]), "float (B, 3"),
    (lambda s, b: paste_plates(torch.zeros(2, 3, 8, 8), [OWN], [s], [b]), "2 images but 1 box lists"),
    (lambda s, b: paste_plates(torch.zeros(2, 3, 8, 8), [OWN] * 2, [], []), "as many and not none"),
    (lambda s, b: paste_plates(torch.zeros(2, 3, 8, 8), [OWN] * 2, [s], [b, b]), "as many and not none"),
    (lambda s, b: paste_plates(torch.zeros(2, 3, 8, 8), [OWN] * 2, [s, s[0]], [b, b]), "source 1 is (120, 200)"),
    (lambda s, b: paste_plates(torch.zeros(2, 3, 8, 8), [OWN] * 2, [s], [b], share=1.5), "share must be in [0, 1]"),
    (lambda s, b: paste_plates(torch.zeros(2, 3, 8, 8), [OWN] * 2, [s], [b], scale=(2, 1)), "scale must be"),
    (lambda s, b: paste_plates(torch.zeros(2, 3, 8, 8), [OWN] * 2, [s], [b], max_width=0), "max_width must be"),
    (lambda s, b: paste_plates(torch.zeros(2, 3, 8, 8), [OWN] * 2, [s], [b], context=-0.5), "context must be in"),
])
def test_paste_plates_refuses_bad_input_by_name(call, message) -> None:
    src, box = _source()
    with pytest.raises(ValueError, match="paste_plates") as err:
        call(src, box)
    assert message in str(err.value)
