"""Every yielded image and label is finite (issue: NaN pixels in scene mode).

The root cause was a perspective warp whose horizon (the image of the plate plane's line at
infinity) crossed the scene: its homogeneous denominator was 0 at a pixel, the sampling grid inf
and grid_sample's output NaN. These tests pin the warp, the placement that produced it, the stream
over seeds, modes, presets and backgrounds, and the guard that refuses a non-finite batch."""

from __future__ import annotations

import kornia.augmentation as K
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kornia.geometry.transform import get_perspective_transform, warp_perspective
from PIL import Image

import plateaug.stream.dataset as dataset
from plateaug import PlateGANStream
from plateaug.stream.dataset import NonFiniteBatchError
from plateaug.stream.scene import place_plates
from plateaug.stream.warp import GRID_LIMIT, homography_grid, warp_border, warp_with_coverage

# the plate -> scene homography of scene 11 of batch 60 of PlateGANStream(mode="scene", batch_size=16,
# seed=0) (96x288 texture into 384x640): its horizon crosses the scene at about (266, 19)
HORIZON_M = torch.tensor([[float.fromhex(v) for v in row] for row in (
    ("0x1.91127ap+0", "-0x1.54d3f2p-3", "0x1.f732ecp+6"),
    ("0x1.0eb82ap+0", "0x1.447ef0p-3", "0x1.270554p+8"),
    ("0x1.b9dd3ap-9", "-0x1.1af0acp-10", "0x1.0p+0"))])[None]  # exact float32 values
TEXTURE, SCENE = (96, 288), (384, 640)


def horizon_side(M: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, H, W) denominator of the destination -> source map (sign: positive on the source's side)."""
    G = torch.linalg.inv(M.double())
    ys, xs = torch.meshgrid(torch.arange(size[0]).double(), torch.arange(size[1]).double(), indexing="ij")
    return G[:, 2, 0, None, None] * xs + G[:, 2, 1, None, None] * ys + G[:, 2, 2, None, None]


def test_the_regression_homography_has_its_horizon_in_the_scene() -> None:
    den = horizon_side(HORIZON_M, SCENE)
    assert (den > 0).any() and (den < 0).any()  # the case: the line of zeros runs through the scene


@pytest.mark.parametrize("align_corners", [True, False])
def test_grid_is_finite_and_bounded_across_the_horizon(align_corners: bool) -> None:
    grid = homography_grid(HORIZON_M, TEXTURE, SCENE, align_corners, "cpu")
    assert bool(torch.isfinite(grid).all())
    assert grid.abs().max().item() <= GRID_LIMIT
    behind = horizon_side(HORIZON_M, SCENE)[0] <= 0
    assert bool((grid[0][behind] == GRID_LIMIT).all())  # past the horizon: outside the source


def test_warp_across_the_horizon_is_finite_covers_only_the_plate_and_matches_kornia() -> None:
    plate = torch.rand(1, 3, *TEXTURE, generator=torch.Generator().manual_seed(0))
    rgb, cover = warp_with_coverage(plate, HORIZON_M, SCENE)
    assert bool(torch.isfinite(rgb).all()) and bool(torch.isfinite(cover).all())
    behind = horizon_side(HORIZON_M, SCENE)[0] <= 0
    assert cover[0, 0][behind].abs().max().item() == 0  # nothing of the plate is drawn past the horizon
    assert rgb[0][:, behind].abs().max().item() == 0
    # on the plate (well away from the horizon) the warp is kornia's
    ref = warp_perspective(torch.cat([plate, torch.ones_like(plate[:, :1])], 1), HORIZON_M, SCENE,
                           align_corners=True)
    near = cover[0, 0] > 0.999
    assert near.sum() > 1000
    assert (rgb[0][:, near] - ref[0, :3][:, near]).abs().max().item() < 5e-4  # float32 grids, steep perspective
    # the same plate as quad corners: its covered pixels lie inside the destination quad's box
    ys, xs = near.nonzero().T
    corners = torch.tensor([[0.0, 0.0], [287, 0], [287, 95], [0, 95]])
    quad = torch.cat([corners, torch.ones(4, 1)], 1) @ HORIZON_M[0].T
    quad = quad[:, :2] / quad[:, 2:]
    assert xs.min() >= quad[:, 0].min() - 1 and xs.max() <= quad[:, 0].max() + 1
    assert ys.min() >= quad[:, 1].min() - 1 and ys.max() <= quad[:, 1].max() + 1


def test_border_warp_across_the_horizon_is_finite() -> None:
    image = torch.rand(1, 3, *SCENE, generator=torch.Generator().manual_seed(1))
    M = HORIZON_M.clone()
    M[:, 2, :2] *= 4  # a horizon through the image itself
    out = warp_border(image, M)
    assert bool(torch.isfinite(out).all())
    assert 0 <= out.min().item() and out.max().item() <= 1


def test_singular_homography_samples_nothing() -> None:
    M = torch.zeros(1, 3, 3)
    rgb, cover = warp_with_coverage(torch.rand(1, 3, 8, 16), M, (20, 30))
    assert bool(torch.isfinite(rgb).all()) and cover.abs().max().item() == 0


def test_placed_plates_warp_finitely_even_where_their_horizon_is_in_the_scene() -> None:
    """4,096 plates placed as the stream places them (the bug hit about 1 in 1,300): some have
    their horizon inside the scene, and every warp grid is finite."""
    g = torch.Generator().manual_seed(3)
    counts = torch.randint(1, 4, (1400,), generator=g)
    aspects = torch.tensor([520 / 110, 440 / 140, 305 / 152, 400 / 130])[torch.randint(4, (int(counts.sum()),),
                                                                                    generator=g)]
    quads = place_plates(counts, aspects, SCENE, g)
    src = torch.tensor([[0, 0], [TEXTURE[1], 0], [TEXTURE[1], TEXTURE[0]], [0, TEXTURE[0]]]).float()
    M = get_perspective_transform(src.expand(len(quads), 4, 2), quads)
    G = torch.linalg.inv(M.double())
    corners = torch.tensor([[0, 0, 1], [SCENE[1] - 1, 0, 1], [0, SCENE[0] - 1, 1], [SCENE[1] - 1, SCENE[0] - 1, 1]],
                           dtype=torch.float64)
    den = corners @ G[:, 2].T  # (4, N): the denominator is affine, so it changes sign in the scene iff at a corner
    crossing = ((den.amin(0) < 0) & (den.amax(0) > 0)).nonzero().squeeze(1)
    assert len(crossing) >= 1, "the sample should hold plates whose horizon crosses the scene"
    for chunk in crossing.split(32):
        assert bool(torch.isfinite(homography_grid(M[chunk], TEXTURE, SCENE, True, "cpu")).all())


# ---- the stream over seeds, modes, presets and background kinds -----------------------------------

PROPERTY = settings(max_examples=12, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("backgrounds")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)).save(folder / f"bg{i}.jpg")
    Image.fromarray(rng.integers(0, 256, (70, 120), dtype=np.uint8), mode="L").save(folder / "grey.png")
    return str(folder)


def assert_finite(images: torch.Tensor, targets: list[dict]) -> None:
    assert bool(torch.isfinite(images).all())
    for t in targets:
        for key in ("boxes", "corners"):
            assert bool(torch.isfinite(t[key]).all()), key
        boxes = t["char_boxes"] if isinstance(t["char_boxes"], list) else [t["char_boxes"]]
        assert all(bool(torch.isfinite(b).all()) for b in boxes)


@PROPERTY
@given(seed=st.integers(0, 2**62), mode=st.sampled_from(["crop", "scene"]),
       augment=st.sampled_from(["none", "light", "heavy", "light_kornia"]), folder=st.booleans())
def test_every_yielded_image_and_label_is_finite(seed: int, mode: str, augment: str, folder: bool,
                                                 photo_folder: str) -> None:
    size = (48, 160) if mode == "crop" else (96, 160)
    s = PlateGANStream(regions=["eu_de", "us", "cn_green"], mode=mode, image_size=size, batch_size=6, seed=seed,
                       generator=None, augment=augment, backgrounds=photo_folder if folder else None, length=2,
                       scene={"as_taken": False})  # photo scenes augmented and degraded too
    for images, targets in s:
        assert images.shape == (6, 3, *size)
        assert_finite(images, targets)


def test_shipped_generator_stream_is_finite_in_both_modes() -> None:
    for mode, size in (("crop", (64, 256)), ("scene", (192, 320))):
        s = PlateGANStream(mode=mode, image_size=size, batch_size=8, seed=11, generator="onnx", length=1)
        images, targets = next(iter(s))
        assert_finite(images, targets)


# ---- the guard: a non-finite batch is never yielded ----------------------------------------------

class PoisonPixel(K.IntensityAugmentationBase2D):
    """An augmentation that writes a NaN into pixel (0, 0) of every image (a stand-in for a bug)."""

    def __init__(self) -> None:
        super().__init__(p=1.0)

    def apply_transform(self, input, params, flags, transform=None):  # noqa: A002 - kornia's signature
        out = input.clone()
        out[:, :, 0, 0] = float("nan")
        return out


def test_guard_names_the_augmentation_stage_the_seed_and_the_batch() -> None:
    aug = K.AugmentationSequential(PoisonPixel(), data_keys=["input", "keypoints"])
    s = PlateGANStream(regions="eu_de", mode="scene", image_size=(96, 160), batch_size=2, seed=42, generator=None,
                       augment=aug, scene={"as_taken": False})  # photos are augmented only when asked
    with pytest.raises(NonFiniteBatchError, match=r"augmentation stage.*make_batch\(2, \d+\).*batch 0 of "
                                                  r"PlateGANStream\(seed=42\) in epoch 0"):
        next(iter(s))


def test_guard_names_the_composition_stage(monkeypatch) -> None:
    real_composite = dataset.composite

    def leaky(*args, **kw):
        scenes, M = real_composite(*args, **kw)
        M[:, 0, 0] = float("nan")  # the labels are warped with M
        return scenes, M

    monkeypatch.setattr(dataset, "composite", leaky)
    s = PlateGANStream(regions="cn_blue", mode="scene", image_size=(96, 160), seed=1, generator=None, augment="none")
    with pytest.raises(NonFiniteBatchError, match="scene composition stage"):
        s.make_batch(2, 5)


def test_guard_names_the_framing_stage_in_crop_mode(monkeypatch) -> None:
    real_frame = dataset.frame

    def leaky(*args):
        images, boxes, corners = real_frame(*args)
        images[1, 2, 3, 4] = float("nan")
        return images, boxes, corners

    monkeypatch.setattr(dataset, "frame", leaky)
    s = PlateGANStream(regions="us", seed=1, generator=None, augment="none")
    with pytest.raises(NonFiniteBatchError, match="framing stage"):
        s.make_batch(3, 9)


def test_guard_says_when_a_replay_does_not_reproduce_it(monkeypatch) -> None:
    real_composite, calls = dataset.composite, []

    def once(*args, **kw):  # non-finite the first time only
        scenes, M = real_composite(*args, **kw)
        calls.append(1)
        if len(calls) == 1:
            scenes[0, 0, 0, 0] = float("nan")
        return scenes, M

    monkeypatch.setattr(dataset, "composite", once)
    s = PlateGANStream(regions="cn_blue", mode="scene", image_size=(96, 160), seed=1, generator=None, augment="none",
                       scene="plain")  # no JPEG, which would turn a NaN pixel into a number
    with pytest.raises(NonFiniteBatchError, match="not reproducible"):
        s.make_batch(2, 5)


def test_generate_exits_1_and_writes_nothing_of_a_non_finite_batch(tmp_path, monkeypatch, capsys) -> None:
    from plateaug.generate import main

    real_composite = dataset.composite

    def leaky(*args, **kw):
        scenes, M = real_composite(*args, **kw)
        scenes[-1, 0, 0, 0] = float("nan")
        return scenes, M

    monkeypatch.setattr(dataset, "composite", leaky)
    out = tmp_path / "data"
    code = main(["--n", "3", "--out", str(out), "--format", "coco", "--image-size", "96x160", "--generator", "none",
                 "--no-progress"])
    assert code == 1
    assert "scene composition stage" in capsys.readouterr().err
    assert not list(out.rglob("*.jpg"))
