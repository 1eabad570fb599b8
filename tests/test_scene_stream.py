"""Scene mode on real photos: every annotated plate replaced (or erased), new plates where the prior
puts them, hard negatives unlabelled, harmonisation and degradations; the composition itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from plateaug import PlateGANStream, Scene, ScenePrior
from plateaug.generate import main as generate
from plateaug.stream import dataset
from plateaug.stream.composite import Harmonise, composite, pick_level
from plateaug.stream.scene_prior import default_prior

RED = (230, 20, 20)


@pytest.fixture
def red_photos(tmp_path) -> Path:
    """Four grey photos with one or two bright red 'plates' each, annotated (COCO), some with a region."""
    rng = np.random.default_rng(0)
    images, anns = [], []
    for k in range(4):
        arr = rng.integers(90, 150, (180, 320, 3), dtype=np.uint8)
        boxes = [(40 + 30 * k, 110, 60, 16)] + ([(220, 40, 50, 14)] if k % 2 else [])
        for x, y, w, h in boxes:
            arr[y: y + h, x: x + w] = RED
            anns.append({"id": len(anns) + 1, "image_id": k + 1, "category_id": 1, "bbox": [x, y, w, h],
                         **({"region": "cn"} if k == 0 else {})})
        Image.fromarray(arr).save(tmp_path / f"p{k}.png")
        images.append({"id": k + 1, "file_name": f"p{k}.png", "width": 320, "height": 180})
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "plate"}]}))
    return path


def red_pixels(images: torch.Tensor) -> int:
    r, g, b = (images * 255).unbind(1)
    return int(((r > 200) & (g < 60) & (b < 60)).sum())


def plain(**kw) -> Scene:
    """Composition only, and exact boxes (box_margin 0): these tests compare every box with the plate drawn."""
    return Scene(**{"harmonise": None, "p_negative": 0.0, "degrade": None, "zoom": (1.0, 1.0), "box_margin": 0.0,
                    **kw})


def stream(photos, scene: Scene, **kw) -> PlateGANStream:
    kw = {"regions": ["eu_de", "cn_blue"], "mode": "scene", "image_size": (180, 320), "generator": None,
          "augment": "none", "seed": 3, **kw}
    return PlateGANStream(scenes=photos, scene=scene, **kw)


def test_replace_covers_every_real_plate_and_labels_it(red_photos) -> None:
    s = stream(red_photos, plain(extra_plates=(0, 0)))
    batch = s.make_batch(8, 1)
    assert red_pixels(batch.images) == 0  # not a pixel of a real plate is left
    targets = s.targets(batch)
    assert {len(t["boxes"]) for t in targets} == {1, 2}  # photos with one plate and with two, no extras
    for t in targets:
        if len(t["boxes"]) == 2:  # the second real plate (220, 40, 50x14) is covered by its own plate
            assert any(x0 <= 220 and y0 <= 40 and x1 >= 270 and y1 >= 54 for x0, y0, x1, y1 in t["boxes"].tolist())
        for box in t["boxes"]:  # each replacing plate covers its real box (grown a little)
            x0, y0, x1, y1 = box.tolist()
            assert x1 - x0 >= 50 and y1 - y0 >= 14
        assert all(len(cb) == len(text) for cb, text in zip(t["char_boxes"], t["text"]))


@pytest.mark.parametrize("cover", [0.0, 0.08, 0.25])
def test_replacing_plate_covers_its_box_grown_by_cover(red_photos, cover) -> None:
    """Photo 0's plate (40, 110, 60x16): the plate drawn and labelled is that box grown by cover x 16 px on
    every side, and no red is left (cover 0 still hides the whole real plate)."""
    s = stream(red_photos, plain(extra_plates=(0, 0), cover=cover))
    seen = 0
    for seed in range(3):
        batch = s.make_batch(8, seed)
        assert red_pixels(batch.images) == 0
        for t in s.targets(batch):
            for box in t["boxes"].tolist():
                if abs(box[1] - (110 - cover * 16)) < 0.5 and abs(box[0] - (40 - cover * 16)) < 0.5:
                    assert box[2] == pytest.approx(100 + cover * 16, abs=0.5)
                    assert box[3] == pytest.approx(126 + cover * 16, abs=0.5)
                    seen += 1
    assert seen > 0
    for bad in (0.6, -0.05):  # a negative cover would leave a rim of the real plate unlabelled
        with pytest.raises(ValueError, match="Scene.cover"):
            Scene(cover=bad)


def test_box_margin_grows_the_box_labels_only(red_photos) -> None:
    """Scene(box_margin=m): every plate's box grown by m x its height per side, clipped to the image; the same
    scenes, corners and character boxes as with exact boxes (annotators' margins are a label convention)."""
    assert Scene().box_margin == 0.15  # the default: boxes as annotators draw them
    exact, grown = stream(red_photos, plain()), stream(red_photos, plain(box_margin=0.15))
    a, b = exact.make_batch(8, 1), grown.make_batch(8, 1)
    assert torch.equal(a.images, b.images)
    for ta, tb in zip(exact.targets(a), grown.targets(b)):
        assert torch.equal(ta["corners"], tb["corners"])
        assert all(torch.equal(x, y) for x, y in zip(ta["char_boxes"], tb["char_boxes"]))
        box, big = ta["boxes"].as_subclass(torch.Tensor), tb["boxes"].as_subclass(torch.Tensor)
        m = 0.15 * (box[:, 3] - box[:, 1])
        want = torch.stack([(box[:, 0] - m).clamp(0, 320), (box[:, 1] - m).clamp(0, 180),
                            (box[:, 2] + m).clamp(0, 320), (box[:, 3] + m).clamp(0, 180)], 1)
        assert torch.allclose(big, want, atol=1e-4) and (big[:, 2] - big[:, 0] > box[:, 2] - box[:, 0]).all()
    from plateaug.stream.dataset import grow_boxes

    edge = grow_boxes(torch.tensor([[0.0, 2.0, 50.0, 12.0]]), 0.5, 60, 15)  # clipped on three sides
    assert edge.tolist() == [[0.0, 0.0, 55.0, 15.0]]
    wide = grow_boxes(torch.tensor([[10.0, 20.0, 50.0, 30.0]]), (0.4, 0.1), 100, 100)  # 4 px and 1 px a side
    assert wide.tolist() == [[6.0, 19.0, 54.0, 31.0]]
    assert Scene(box_margin=[0.4, 0.1]).box_margin == (0.4, 0.1)  # a pair from JSON or TOML
    for bad in (-0.1, 0.6, (0.1, 0.6), (0.1, 0.1, 0.1), "0.2"):
        with pytest.raises(ValueError, match="Scene.box_margin"):
            Scene(box_margin=bad)


def test_replacing_plates_take_the_annotated_region(red_photos) -> None:
    """Photo 0's plate (at x 40, annotated "cn") always becomes a Chinese plate; the others are drawn
    from the stream's regions."""
    s = stream(red_photos, plain(extra_plates=(0, 0)))
    annotated, others = [], []
    for seed in range(4):
        for t in s.targets(s.make_batch(8, seed)):
            for box, region in zip(t["boxes"], t["region"]):
                (annotated if abs(box[0].item() - (40 - Scene().cover * 16)) < 0.5 else others).append(region)
    assert annotated and set(annotated) == {"cn_blue"}
    assert set(others) == {"cn_blue", "eu_de"}


def test_aspect_match_draws_regions_whose_plates_fit_the_box(red_photos) -> None:
    """The real boxes are 3.6-3.8 : 1: with Scene.aspect_match an EU plate (4.7 : 1) replaces them, not a
    US one (2 : 1); without it both are drawn. Bad spreads are refused."""
    from plateaug.stream.dataset import aspect_fit

    def drawn(scene: Scene) -> set[str]:
        s = stream(red_photos, scene, regions=["eu_de", "us"])
        return {r for seed in range(3) for t in s.targets(s.make_batch(8, seed)) for r in t["region"]}

    assert drawn(plain(extra_plates=(0, 0), aspect_match=0.15)) == {"eu_de"}
    assert drawn(plain(extra_plates=(0, 0))) == {"eu_de", "us"}
    specs = stream(red_photos, plain(), regions=["eu_de", "us"]).specs
    fit = aspect_fit(specs, torch.tensor([[0.0, 0, 94, 20], [0, 0, 40, 20]]), 0.25)  # (2 boxes, 2 regions)
    assert fit.shape == (2, 2) and fit[0, 0] > 0.99 and fit[1, 1] > 0.99 and fit[0, 1] < 0.01 and fit[1, 0] < 0.01
    with pytest.raises(ValueError, match="aspect_match"):
        Scene(aspect_match=0.0)


def test_erase_removes_real_plates_and_places_new_ones(red_photos) -> None:
    s = stream(red_photos, plain(real_plates="erase"))
    batch = s.make_batch(8, 2)
    assert red_pixels(batch.images) == 0
    assert all(len(t["boxes"]) >= 1 for t in s.targets(batch))


def test_extra_plates_never_overlap_the_replaced_ones(red_photos) -> None:
    s = stream(red_photos, plain(extra_plates=(2, 2)))
    for seed in range(3):
        for t in s.targets(s.make_batch(8, seed)):
            b = t["boxes"]
            for i in range(len(b)):
                for j in range(i + 1, len(b)):
                    ix = min(b[i, 2], b[j, 2]) - max(b[i, 0], b[j, 0])
                    iy = min(b[i, 3], b[j, 3]) - max(b[i, 1], b[j, 1])
                    assert ix <= 0 or iy <= 0, (b[i], b[j])


def test_negatives_add_pixels_but_no_labels(red_photos) -> None:
    with_neg = stream(red_photos, plain(extra_plates=(0, 0), p_negative=1.0, negatives=(2, 2)))
    targets = with_neg.targets(with_neg.make_batch(6, 4))
    assert all(len(t["boxes"]) in (1, 2) for t in targets)  # the real plates only
    assert with_neg._negatives(6, [torch.zeros(0, 4)] * 6, torch.Generator().manual_seed(0)) is not None


def test_decoys_are_unlabelled_pieces_of_the_scene_never_of_a_real_plate(red_photos) -> None:
    s = stream(red_photos, plain(extra_plates=(0, 0), p_patch=1.0))
    batch = s.make_batch(8, 4)
    assert red_pixels(batch.images) == 0  # every red plate replaced, and no decoy copied one
    assert all(len(t["boxes"]) in (1, 2) for t in s.targets(batch))  # the real plates only
    bg = torch.full((2, 3, 180, 320), 0.5)
    bg[:, :, 100:120, 40:100] = 1.0  # a real plate's pixels
    real = torch.tensor([[40.0, 100, 100, 120]] * 2)
    decoys = s._decoys(bg, real, torch.tensor([0, 1]), [torch.zeros(0, 4)] * 2, torch.Generator().manual_seed(1))
    assert decoys is not None
    textures, quads, owner = decoys
    assert textures.shape[1:] == (3, 96, 288) and len(textures) == len(quads) == len(owner) >= 2
    assert torch.allclose(textures, torch.full_like(textures, 0.5))  # from the scene, away from its plate
    with pytest.raises(ValueError, match="p_patch"):
        Scene(p_patch=-0.1)


def test_same_seed_same_scenes_with_every_scene_stage_on(red_photos) -> None:
    a = stream(red_photos, Scene(prior=default_prior(), p_negative=0.5, zoom=(1.0, 1.5), as_taken=False),
               augment="light")
    b = stream(red_photos, Scene(prior=default_prior(), p_negative=0.5, zoom=(1.0, 1.5), as_taken=False),
               augment="light")
    x, y = a.make_batch(4, 9), b.make_batch(4, 9)
    assert torch.equal(x.images, y.images) and x.texts == y.texts and torch.equal(x.corners, y.corners)
    assert bool(torch.isfinite(x.images).all()) and 0 <= x.images.min() and x.images.max() <= 1


def test_photos_are_taken_as_they_are_unless_asked(red_photos, monkeypatch) -> None:
    """Scene.as_taken (default None): a scene of the user's photos is neither augmented nor degraded (nor zoomed),
    so away from its plates every pixel is its photo's; the shipped frames are augmented, not degraded;
    as_taken=False and procedural backgrounds get both."""
    calls = []
    real_degrade = dataset.degrade

    def counting(*args):
        calls.append(1)
        return real_degrade(*args)

    monkeypatch.setattr(dataset, "degrade", counting)
    photos = [torch.from_numpy(np.array(Image.open(red_photos.parent / f"p{k}.png"))).permute(2, 0, 1).float() / 255
              for k in range(4)]  # (3, 180, 320): the scenes' size, so framed at zoom 1 they are the scene

    def photo_distance(s: PlateGANStream) -> list[float]:
        """Per scene: the least largest difference to any photo, away from the scene's plates."""
        batch = s.make_batch(4, 2)
        out = []
        for img, t in zip(batch.images, s.targets(batch)):
            away = torch.ones(img.shape[-2:], dtype=torch.bool)
            for x0, y0, x1, y1 in t["boxes"].round().long().tolist():
                away[max(0, y0 - 3): y1 + 3, max(0, x0 - 3): x1 + 3] = False
            out.append(min(float((img - p).abs()[:, away].max()) for p in photos))
        return out

    noisy = {"harmonise": None, "p_negative": 0.0, "box_margin": 0.0,
             "degrade": {"p_noise": 1.0, "noise": (0.05, 0.05)}}
    assert Scene().as_taken is None and Scene().zoom == (1.0, 1.0)
    assert max(photo_distance(stream(red_photos, Scene(**noisy), augment="light"))) < 1e-6
    assert not calls
    assert min(photo_distance(stream(red_photos, Scene(**noisy, as_taken=False)))) > 0.05
    assert len(calls) == 1
    PlateGANStream(mode="scene", backgrounds="procedural", scene=noisy, image_size=(96, 160), generator=None,
                   seed=1).make_batch(2, 0)
    assert len(calls) == 2  # synthetic backgrounds are always degraded
    with pytest.warns(UserWarning, match="as_taken"):  # an augmentation asked for, which photos do not get
        stream(red_photos, Scene(**noisy), augment="heavy")
    # the shipped frames (no scenes=) are augmented by default but never degraded; True takes them as they are
    monkeypatch.setattr(dataset, "SHIPPED_FRAMES", red_photos)
    shipped = {"regions": ["eu_de"], "mode": "scene", "image_size": (180, 320), "generator": None, "seed": 3}
    calls.clear()
    assert Scene().photo_look(shipped=True) == (True, False) and Scene().photo_look(shipped=False) == (False, False)
    assert max(photo_distance(PlateGANStream(scene=Scene(**noisy), augment="none", **shipped))) < 1e-6
    assert min(photo_distance(PlateGANStream(scene=Scene(**noisy), augment="heavy", **shipped))) > 0.05
    assert not calls  # not degraded
    assert max(photo_distance(PlateGANStream(scene=Scene(**noisy, as_taken=True), augment="light", **shipped))) < 1e-6
    for bad in ("yes", 0):
        with pytest.raises(TypeError, match="as_taken"):
            Scene(as_taken=bad)


def test_default_scene_stream_uses_the_shipped_frames_and_labels_inside() -> None:
    s = PlateGANStream(mode="scene", image_size=(192, 320), generator=None, seed=0)
    assert s.photos is not None and len(s.photos) >= 50
    images, targets = next(iter(PlateGANStream(mode="scene", image_size=(192, 320), generator=None, seed=0,
                                               batch_size=4, length=1)))
    assert images.shape == (4, 3, 192, 320)
    for t in targets:
        assert len(t["boxes"]) >= 1  # every frame has a plate, replaced
        assert (t["boxes"][:, 0] >= 0).all() and (t["boxes"][:, 2] <= 320).all()
        assert (t["boxes"][:, 1] >= 0).all() and (t["boxes"][:, 3] <= 192).all()


def test_procedural_backgrounds_and_argument_errors(red_photos, tmp_path) -> None:
    s = PlateGANStream(mode="scene", backgrounds="procedural", image_size=(96, 160), generator=None, seed=1)
    assert s.photos is None and s.make_batch(2, 0).images.shape == (2, 3, 96, 160)
    with pytest.raises(ValueError, match="either scenes="):
        PlateGANStream(mode="scene", scenes=red_photos, backgrounds="procedural")
    with pytest.raises(ValueError, match="for mode='scene'"):
        PlateGANStream(mode="crop", scenes=red_photos)
    with pytest.raises(ValueError, match="Scene.real_plates"):
        Scene(real_plates="keep")
    with pytest.raises(ValueError, match="Scene.extra_plates"):
        Scene(extra_plates=(2, 1))
    with pytest.raises(ValueError, match="unknown fields"):
        PlateGANStream(mode="scene", scene={"nope": 1})
    s = PlateGANStream(mode="scene", scene={"p_negative": 0.0, "degrade": {"p_jpeg": 1.0}}, generator=None)
    assert s.scene.degrade.p_jpeg == 1.0


def test_a_user_prior_places_new_plates(red_photos) -> None:
    """A prior whose plates are all 30 % of the width, centred: every new plate is about that wide."""
    prior = ScenePrior((1.0,), ((np.log(0.3), 0.5, 0.5, np.log(4.0)),), ((
        (1e-4, 0, 0, 0), (0, 1e-4, 0, 0), (0, 0, 1e-4, 0), (0, 0, 0, 1e-4)),), (1.0,))
    s = PlateGANStream(mode="scene", backgrounds="procedural", scene=plain(prior=prior), regions="eu_de",
                       image_size=(180, 320), generator=None, augment="none", seed=0)
    for t in s.targets(s.make_batch(4, 0)):
        w = (t["boxes"][:, 2] - t["boxes"][:, 0])
        assert len(w) >= 1 and ((w - 0.3 * 320).abs() < 8).all(), w


def test_composite_puts_a_plate_exactly_on_its_quad() -> None:
    scenes = torch.full((2, 3, 60, 100), 0.5)
    plates = torch.zeros(1, 3, 96, 288)
    plates[:, 0] = 1.0  # a red plate
    quad = torch.tensor([[[20.0, 10.0], [80.0, 10.0], [80.0, 30.0], [20.0, 30.0]]])
    out, M = composite(scenes.clone(), plates, quad, torch.tensor([1]), torch.Generator().manual_seed(0), None)
    assert torch.equal(out[0], scenes[0])  # the other scene is untouched
    inner = out[1, :, 12:28, 22:78]
    assert torch.allclose(inner, torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1).expand_as(inner), atol=1e-5)
    assert torch.equal(out[1, :, 40:, :], scenes[1, :, 40:, :])  # far from it, untouched
    corners = torch.tensor([[0.0, 0, 1], [288, 0, 1], [288, 96, 1], [0, 96, 1]]) @ M[0].T
    assert torch.allclose(corners[:, :2] / corners[:, 2:], quad[0], atol=1e-3)


def test_lit_plates_glow_in_dark_places_only() -> None:
    """Harmonise.p_lit: a new plate in a dark place is bright, washed out and glows past its edge; in a
    lit place, or with p_lit 0, it takes the place's exposure."""
    plates = torch.full((1, 3, 96, 288), 0.9)
    plates[:, :, 30:66, 40:250] = 0.05  # dark text band on a white plate
    quad = torch.tensor([[[20.0, 20.0], [80.0, 20.0], [80.0, 40.0], [20.0, 40.0]]])

    def paste(level: float, p_lit: float) -> torch.Tensor:
        scenes = torch.full((1, 3, 60, 100), level)
        h = Harmonise(match=(1.0, 1.0), cast=(0.0, 0.0), p_blur=0.0, p_soft_edge=0.0, p_lit=p_lit)
        return composite(scenes, plates, quad, torch.tensor([0]), torch.Generator().manual_seed(0), h)[0][0]

    dark_lit, dark_plain, day_lit = paste(0.05, 1.0), paste(0.05, 0.0), paste(0.6, 1.0)
    plate = (slice(None), slice(22, 38), slice(22, 78))
    assert 0.55 <= float(dark_lit[plate].mean()) <= 1.0  # bright whatever the night around it
    assert float(dark_plain[plate].mean()) < 0.4  # unlit: the dark exposure of its place
    assert float(dark_lit[plate].std()) < float(plates.std())  # washed out
    assert float(dark_lit[:, 19, 30:70].mean()) > 0.2 > float(dark_plain[:, 19, 30:70].mean())  # the glow
    assert torch.equal(dark_lit[:, 50:, :], torch.full_like(dark_lit[:, 50:, :], 0.05))  # far off: untouched
    assert torch.allclose(day_lit, paste(0.6, 0.0))  # in daylight p_lit changes nothing
    with pytest.raises(ValueError, match="p_lit"):
        Harmonise(p_lit=1.5)


def test_small_plates_warp_from_small_texture_levels() -> None:
    assert pick_level(torch.tensor([300.0, 150.0, 60.0, 20.0]), 288).tolist() == [0, 0, 1, 3]


def test_generate_writes_scenes_from_annotated_photos_as_coco(red_photos, tmp_path) -> None:
    out = tmp_path / "ds"
    assert generate(["--count", "4", "--out", str(out), "--format", "coco", "--mode", "scene", "--scenes",
                     str(red_photos), "--image-size", "180x320", "--generator", "none", "--regions", "eu_de",
                     "--batch-size", "4", "--no-progress"]) == 0
    data = json.loads((out / "annotations.json").read_text())
    plates = [a for a in data["annotations"] if a["category_id"] == 1]
    assert len(plates) >= 4 and all(len(a["segmentation"][0]) == 8 for a in plates)
    settings = json.loads((out / "settings.json").read_text())
    assert settings["scenes"] == str(red_photos.resolve())


def test_recolour_redraws_a_share_of_plates_in_two_colours_keeping_their_layout() -> None:
    from plateaug.stream.recolour import hsv_to_rgb, recolour

    assert torch.allclose(hsv_to_rgb(torch.tensor([0.0, 1 / 6, 2 / 3]), torch.ones(3), torch.ones(3)),
                          torch.tensor([[1.0, 0, 0], [1, 1, 0], [0, 0, 1]]))
    plates = torch.full((64, 3, 20, 60), 0.9)  # white plates with a dark bar of "ink" in the middle
    plates[:, :, 8:12, 10:50] = 0.1
    out = recolour(plates, 0.5, torch.Generator().manual_seed(0))
    assert out.shape == plates.shape and 0 <= out.min() and out.max() <= 1
    changed = (out != plates).flatten(1).any(1)
    assert 16 < int(changed.sum()) < 48  # about half the plates redrawn
    assert torch.equal(out[~changed], plates[~changed])  # the others untouched
    for plate in out[changed]:
        ground, ink = plate[:, 0, 0], plate[:, 10, 30]
        assert torch.allclose(plate[:, :8], ground[:, None, None].expand(3, 8, 60))  # one ground colour
        assert torch.allclose(plate[:, 8:12, 10:50], ink[:, None, None].expand(3, 4, 40))  # one ink colour
        assert (ground - ink).abs().max() > 0.3  # the lettering still reads against its ground
    assert torch.equal(out, recolour(plates, 0.5, torch.Generator().manual_seed(0)))  # deterministic
    assert torch.equal(recolour(plates, 0.0, torch.Generator().manual_seed(0)), plates)
    with pytest.raises(ValueError, match=r"plates \(N, 3, h, w\)"):
        recolour(plates[0], 0.5, torch.Generator())
    with pytest.raises(ValueError, match="must be in"):
        recolour(plates, 1.5, torch.Generator())
    with pytest.raises(ValueError, match="Scene.p_recolour"):
        Scene(p_recolour=-0.1)


def test_recoloured_scenes_keep_their_labels(red_photos) -> None:
    """Recolouring changes plate pixels only: the same boxes, texts and corners as without it."""
    a = stream(red_photos, plain()).make_batch(4, 2)
    b = stream(red_photos, plain(p_recolour=1.0)).make_batch(4, 2)
    assert a.texts == b.texts and torch.equal(a.corners, b.corners) and torch.equal(a.char_boxes, b.char_boxes)
    assert not torch.equal(a.images, b.images) and red_pixels(b.images) == 0


def test_tilt_quads_turn_a_plate_to_touch_every_side_of_its_box() -> None:
    """A box narrower than its plate's aspect gets a turned rectangle spanning it exactly, between the squeezed
    fill (angle 0) and the undistorted plate (the full angle); boxes as flat as the plate, or p = 0, keep the box."""
    import math

    from plateaug.stream.placement import tilt_quads

    boxes = torch.tensor([[10.0, 20, 110, 50], [0, 0, 100, 21.3], [5, 5, 65, 45], [0, 0, 100, 60]] * 50)
    aspects = torch.tensor([4.7, 4.7, 2.0, 4.7] * 50)
    quads, tilted = tilt_quads(boxes, aspects, 1.0, 30.0, torch.Generator().manual_seed(0))
    assert quads.shape == (200, 4, 2) and tilted.shape == (200,)
    assert not tilted[1::4].any() and tilted[0::4].all() and tilted[2::4].all() and tilted[3::4].all()
    assert torch.allclose(quads.amin(1), boxes[:, :2], atol=1e-3) and torch.allclose(quads.amax(1), boxes[:, 2:],
                                                                                      atol=1e-3)
    side_w, side_h = quads[:, 1] - quads[:, 0], quads[:, 3] - quads[:, 0]
    assert (side_w * side_h).sum(-1).abs().max() < 1e-2  # a rectangle
    angle = torch.atan2(side_w[:, 1], side_w[:, 0]).abs()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    r = h / w
    full = torch.atan((r * aspects - 1) / (aspects - r)).clamp(max=math.radians(30))
    assert (angle[tilted] <= full[tilted] + 1e-4).all() and angle[tilted].max() > 0.5 * full[tilted].max()
    ratio = side_w.norm(dim=-1) / side_h.norm(dim=-1)
    assert ((ratio >= w / h - 1e-3) & (ratio <= aspects + 1e-3))[tilted].all()  # squeezed less, never stretched
    turned = torch.sign(side_w[tilted, 1])
    assert (turned > 0).any() and (turned < 0).any()  # both ways
    none, _ = tilt_quads(boxes, aspects, 0.0, 30.0, torch.Generator().manual_seed(0))
    assert torch.equal(none, torch.stack([boxes[:, [0, 1]], boxes[:, [2, 1]], boxes[:, [2, 3]], boxes[:, [0, 3]]], 1))
    half = tilt_quads(boxes[3::4].repeat(10, 1), aspects[3::4].repeat(10), 0.5, 30.0,
                      torch.Generator().manual_seed(1))[1]
    assert 0.35 < float(half.float().mean()) < 0.65


def test_a_turned_replacing_plate_erases_the_real_one_and_is_labelled_where_drawn(tmp_path) -> None:
    """A tall red real plate (60 x 30 px) replaced with Scene(p_tilt=1): no red pixel is left, the label's
    corners are a turned rectangle spanning the real box, and its box is the real box."""
    arr = np.full((180, 320, 3), 128, np.uint8)
    arr[70:100, 130:190] = RED
    Image.fromarray(arr).save(tmp_path / "tall.png")
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "tall.png", "width": 320, "height": 180}],
                                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [130, 70, 60, 30],
                                                 "region": "eu_de"}],
                                "categories": [{"id": 1, "name": "plate"}]}))
    s = stream(path, plain(extra_plates=(0, 0), p_tilt=1.0), regions=["eu_de"])
    batch = s.make_batch(6, 0)
    assert red_pixels(batch.images) == 0
    for img, t in zip(batch.images, s.targets(batch)):
        assert torch.allclose(t["boxes"], torch.tensor([[130.0, 70, 190, 100]]), atol=1e-3)
        c = t["corners"][0]  # (4, 2) TL, TR, BR, BL
        assert torch.allclose(c.amin(0), torch.tensor([130.0, 70]), atol=1e-3)
        assert torch.allclose(c.amax(0), torch.tensor([190.0, 100]), atol=1e-3)
        assert abs(float((c[1] - c[0]) @ (c[3] - c[0]))) < 1e-2 and abs(float(c[1, 1] - c[0, 1])) > 0.5  # turned
        assert float((img[:, 80:90, 140:180] - 128 / 255).abs().mean()) > 0.1  # a plate is drawn there
    upright = stream(path, plain(extra_plates=(0, 0)), regions=["eu_de"])
    for t in upright.targets(upright.make_batch(2, 0)):
        c = t["corners"][0]
        assert float(c[1, 1] - c[0, 1]) == 0.0  # without p_tilt the plate fills its box, upright
    with pytest.raises(ValueError, match="p_tilt"):
        Scene(p_tilt=1.5)


def test_erasing_a_box_leaves_a_uniform_photo_uniform() -> None:
    """The erasing fill blends in without a dark outline (its warped edge is not darkened by the zero padding)."""
    from plateaug.stream.placement import erase

    scenes = torch.full((1, 3, 120, 200), 0.5)
    box, owner = torch.tensor([[60.0, 40, 150, 80]]), torch.tensor([0])
    out = erase(scenes.clone(), box, owner, torch.Generator().manual_seed(0))
    assert (out - 0.5).abs().max() < 0.02
