"""Detector-like framing of crops: plates inside the crop with margins, tilt and low resolution,
and the labels (character boxes, corners) still on the pixels they name."""

from __future__ import annotations

import pytest
import torch
from fixtures import flat_spec

from plateaug import Framing, PlateGANStream
from plateaug.stream.framing import frame, low_resolution, resolve_framing, sample_quads

FLAT_SPEC = flat_spec(background="#ffffff")


def quad_mask(quad: torch.Tensor, size: tuple[int, int], inset: float = 0.0) -> torch.Tensor:
    """(H, W) bool: pixel centres inside the convex quad (TL, TR, BR, BL), `inset` pixels from each edge."""
    H, W = size
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    inside = torch.ones(H, W, dtype=torch.bool)
    for i in range(4):
        (x0, y0), (x1, y1) = quad[i].tolist(), quad[(i + 1) % 4].tolist()
        length = ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5
        cross = ((x1 - x0) * (ys - y0) - (y1 - y0) * (xs - x0)) / length  # > 0: inside for clockwise in image coords
        inside &= cross >= inset
    return inside


def test_framed_character_boxes_enclose_the_ink_and_sit_inside_the_plate(write_spec):
    framing = Framing(p_low_res=0.0, margin_x=(0.03, 0.1), margin_y=(0.05, 0.2), tilt_deg=8)
    stream = PlateGANStream(regions=write_spec(FLAT_SPEC), generator=None, augment="none", framing=framing,
                            seed=5, batch_size=12, image_size=(64, 192))
    images, targets = next(iter(stream))
    assert 0 <= images.min() and images.max() <= 1
    for img, t in zip(images, targets):
        quad = t["corners"][0]
        assert (quad >= 0).all() and (quad[:, 0] <= 192).all() and (quad[:, 1] <= 64).all()
        assert quad[:, 0].min() > 0.5 and quad[:, 0].max() < 191.5  # the margins are there
        plate = quad_mask(quad, (64, 192), inset=2.0)
        ink = (img.mean(0) < 0.45) & plate  # dark pixels on the white plate
        near = torch.zeros_like(ink)
        for x0, y0, x1, y1 in t["char_boxes"].tolist():
            xa, ya, xb, yb = int(x0) - 1, int(y0) - 1, int(x1) + 2, int(y1) + 2  # 1 px for resampling
            near[max(ya, 0): yb, max(xa, 0): xb] = True
            assert ink[max(ya, 0): yb, max(xa, 0): xb].any(), f"{t['text']}: a character box lost its glyph"
            centre = torch.tensor([[(x0 + x1) / 2, (y0 + y1) / 2]])
            assert quad_mask(quad, (64, 192))[int(centre[0, 1]), int(centre[0, 0])], "a character outside the plate"
        assert not (ink & ~near).any(), f"{t['text']}: ink outside the moved character boxes"
        assert len(t["char_boxes"]) == len(t["text"])
        outside = ~quad_mask(quad, (64, 192), inset=-2.0)
        assert outside.any(), "no surroundings around the plate"


def test_white_plate_pixels_fill_exactly_the_labelled_quad():
    g = torch.Generator().manual_seed(0)
    plates = torch.ones(6, 3, 64, 256)  # white plates
    boxes = torch.tensor([[20.0, 10.0, 60.0, 54.0]]).expand(6, 1, 4).clone()
    crops, moved, corners = frame(plates, boxes, torch.full((6,), 4.0), Framing(p_low_res=0.0), g)
    for img, quad in zip(crops, corners):
        inner = quad_mask(quad, (64, 256), inset=1.5)
        assert img[:, inner].min() > 0.99  # the plate is exactly where its corners say
    assert moved.shape == (6, 1, 4) and (moved[..., 2] > moved[..., 0]).all()


def test_a_holder_frames_the_plate_in_its_surroundings_and_leaves_plate_and_labels_alone():
    """p_holder: a flat frame (dark or silver) around the plate, as wide as `holder` plate heights: the
    ring just outside the plate turns uniform, the plate's pixels, boxes and corners stay; with p_holder
    0 (the default) nothing is drawn and no random number is used."""
    plates = torch.ones(8, 3, 64, 256)
    boxes = torch.tensor([[20.0, 10.0, 60.0, 54.0]]).expand(8, 1, 4).clone()
    aspects = torch.full((8,), 4.0)
    base = Framing(p_low_res=0.0, margin_x=(0.05, 0.1), margin_y=(0.15, 0.2))
    plain = frame(plates, boxes, aspects, base, torch.Generator().manual_seed(4))
    held = frame(plates, boxes, aspects, Framing(**{**base.__dict__, "p_holder": 1.0, "holder": (0.08, 0.1)}),
                 torch.Generator().manual_seed(4))
    assert torch.equal(plain[1], held[1]) and torch.equal(plain[2], held[2])  # labels unchanged
    for a, b, quad in zip(plain[0], held[0], plain[2]):
        inner = quad_mask(quad, (64, 256), inset=1.5)
        assert torch.equal(a[:, inner], b[:, inner])  # the plate itself unchanged
        # the holder: a ring 1-3 px outside the plate (its width is 0.08-0.1 of the ~35-px plate height)
        ring = quad_mask(quad, (64, 256), inset=-2.5) & ~quad_mask(quad, (64, 256), inset=-1.0)
        assert ring.sum() > 100
        assert b[:, ring].std(1).max() < 0.01, "the holder is not one flat colour"
        assert (a[:, ring] - b[:, ring]).abs().mean() > 0.02, "nothing drawn around the plate"
        far = ~quad_mask(quad, (64, 256), inset=-8.0)  # beyond the holder: the surroundings as before
        assert torch.equal(a[:, far], b[:, far])
    none = frame(plates, boxes, aspects, Framing(**{**base.__dict__, "p_holder": 0.0}),
                 torch.Generator().manual_seed(4))
    assert torch.equal(none[0], plain[0])


def test_low_resolution_keeps_geometry_and_changes_pixels():
    plates = torch.rand(8, 3, 64, 256, generator=torch.Generator().manual_seed(1))
    boxes = torch.tensor([[10.0, 10.0, 30.0, 50.0]]).expand(8, 1, 4).clone()
    aspects = torch.full((8,), 4.0)
    sharp = frame(plates, boxes, aspects, Framing(p_low_res=0.0), torch.Generator().manual_seed(3))
    soft = frame(plates, boxes, aspects, Framing(p_low_res=1.0), torch.Generator().manual_seed(3))
    assert torch.equal(sharp[1], soft[1]) and torch.equal(sharp[2], soft[2])
    assert (sharp[0] - soft[0]).abs().mean() > 0.01
    # low resolution removes fine detail: less high-frequency energy
    hf = lambda x: (x[..., 1:] - x[..., :-1]).abs().mean()  # noqa: E731
    assert hf(soft[0]) < hf(sharp[0])
    out = low_resolution(plates, Framing(p_low_res=0.0), torch.Generator().manual_seed(0))
    assert torch.equal(out, plates)


def test_low_resolution_in_place_equals_the_copy():
    """frame() lowers the resolution of its fresh crops in place: the same pixels as on a copy, and
    the default leaves its input alone."""
    plates = torch.rand(16, 3, 64, 256, generator=torch.Generator().manual_seed(2))
    before = plates.clone()
    copied = low_resolution(plates, Framing(p_low_res=0.6), torch.Generator().manual_seed(5))
    assert torch.equal(plates, before) and not torch.equal(copied, plates)
    same = low_resolution(plates, Framing(p_low_res=0.6), torch.Generator().manual_seed(5), inplace=True)
    assert same.data_ptr() == plates.data_ptr() and torch.equal(same, copied)


def test_quads_stay_inside_for_extreme_settings():
    g = torch.Generator().manual_seed(0)
    aspects = torch.cat([torch.full((50,), 4.7), torch.full((50,), 2.0)])
    quads = sample_quads(aspects, (64, 256), Framing(margin_x=(0.0, 0.45), margin_y=(0.0, 0.45), tilt_deg=45,
                                                     perspective=0.3), g)
    assert quads.shape == (100, 4, 2)
    assert (quads[..., 0] >= -1e-4).all() and (quads[..., 0] <= 256 + 1e-4).all()
    assert (quads[..., 1] >= -1e-4).all() and (quads[..., 1] <= 64 + 1e-4).all()


def test_same_seed_same_framed_batch_and_tight_framing_fills_the_crop():
    a = PlateGANStream(regions="eu_de", generator=None, augment="none", seed=11).make_batch(4, 99)
    b = PlateGANStream(regions="eu_de", generator=None, augment="none", seed=11).make_batch(4, 99)
    assert torch.equal(a.images, b.images) and torch.equal(a.corners, b.corners)
    tight = PlateGANStream(regions="eu_de", generator=None, augment="none", seed=11, framing="tight").make_batch(4, 99)
    assert torch.equal(tight.corners[0], torch.tensor([[0.0, 0], [256, 0], [256, 64], [0, 64]]))
    assert not torch.equal(tight.corners, a.corners)


@pytest.mark.parametrize("bad, match", [
    (dict(margin_x=(0.2, 0.1)), "margin_x"), (dict(margin_y=(0.0, 0.6)), "margin_y"),
    (dict(low_res=(0.0, 0.5)), "low_res"), (dict(tilt_deg=90), "tilt_deg"), (dict(p_low_res=1.5), "p_low_res"),
    (dict(p_holder=-0.1), "p_holder"), (dict(holder=(0.1, 0.6)), "holder"), (dict(holder=(0.2, 0.1)), "holder"),
])
def test_bad_framing_is_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        Framing(**bad)


def test_unknown_framing_name_lists_the_choices():
    with pytest.raises(ValueError, match="detector"):
        resolve_framing("loose")
    with pytest.raises(ValueError, match="framing"):
        PlateGANStream(generator=None, framing="loose")


@pytest.mark.parametrize("augment", ["light", "heavy"])
def test_character_boxes_stay_on_their_plate_after_framing_and_augmentation(write_spec, augment):
    """Two warps (framing, then augmentation) loosen boxes; they are cut back to their plate."""
    stream = PlateGANStream(regions=write_spec(FLAT_SPEC), generator=None, augment=augment, seed=6939,
                            batch_size=16, image_size=(48, 320))
    _, targets = next(iter(stream))
    for t in targets:
        plate = t["boxes"][0]
        cb = t["char_boxes"]
        assert (cb[:, :2] >= plate[:2] - 1e-4).all() and (cb[:, 2:] <= plate[2:] + 1e-4).all()
        assert (cb[:, 2:] >= cb[:, :2]).all() and len(cb) == len(t["text"])


def test_framing_from_a_config_dict():
    f = resolve_framing({"margin_x": [0.0, 0.04], "tilt_deg": 3, "p_low_res": 0.3})
    assert f == Framing(margin_x=(0.0, 0.04), tilt_deg=3, p_low_res=0.3)
    with pytest.raises(ValueError, match="unknown fields"):
        resolve_framing({"margins": 0.1})
    with pytest.raises(ValueError, match="margin_x"):
        resolve_framing({"margin_x": [0.3, 0.1]})


def test_fine_noise_is_a_fresh_grey_gaussian_field_per_image():
    """add_fine_noise (the surroundings' fine noise): per image one grey N(0, std^2) field added in
    place, the same for the same generator seed, different between images and between seeds."""
    from plateaug.stream.scene import add_fine_noise

    def noise(seed: int) -> torch.Tensor:
        img = torch.full((6, 3, 32, 64), 0.5)
        out = add_fine_noise(img, 0.1, torch.Generator().manual_seed(seed))
        assert out is img
        return (img - 0.5) / 0.1  # (6, 3, 32, 64) standard normal draws

    z = noise(0)
    assert torch.equal(z, noise(0)) and not torch.equal(z, noise(1))
    assert torch.equal(z[:, 0], z[:, 1]) and torch.equal(z[:, 0], z[:, 2])  # grey
    per_image = z[:, 0].flatten(1)  # (6, 2048)
    assert per_image.mean(1).abs().max() < 0.15 and ((per_image.std(1) - 1).abs() < 0.1).all()
    assert (per_image.abs() > 2).float().mean(1).min() > 0.02  # Gaussian tails, not uniform ones
    corr = torch.corrcoef(per_image)
    assert (corr - torch.eye(6)).abs().max() < 0.15, "two images share their noise"
