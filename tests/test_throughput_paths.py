"""Faster paths of issue #14: the fused "light" augmentation (same transforms, one warp), the int8
generator export, and the throughput benchmark's roofline columns."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import kornia.augmentation as K
import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from fixtures import random_generator
from kornia.enhance import adjust_brightness, adjust_contrast
from kornia.filters import motion_blur
from kornia.geometry.transform import get_perspective_transform, warp_perspective
from torch import nn

import plateaug.generator.quantize as quantize
from plateaug import builtin_regions, generator_input, load_region, render, sample_text
from plateaug.export import main as export_main
from plateaug.generator.checkpoint import atomic_save, generator_checkpoint
from plateaug.generator.onnx_export import ExportVerificationError
from plateaug.generator.onnx_runtime import OnnxGenerator
from plateaug.stream.augment import BorderPerspective, augment, build_preset, resolve
from plateaug.stream.dataset import DEFAULT_SIZE
from plateaug.stream.fused_augment import FusedLight, warp_border
from plateaug.stream.scene import smooth_field
from plateaug.stream.warp import warp_with_coverage

ROOT = Path(__file__).resolve().parent.parent
H, W = 64, 256
NO_OPS = dict(p_perspective=0.0, p_affine=0.0, p_motion=0.0, p_color=0.0)


def _batch(B: int = 6, seed: int = 0):
    """Images (B, 3, 64, 256) in [0, 1], character boxes (B, 3, 4) with one invalid row, plate corners."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(B, 3, H, W, generator=g)
    boxes = torch.tensor([[20.0, 10, 60, 54], [80, 10, 120, 54], [0, 0, 0, 0]]).expand(B, 3, 4).clone()
    valid = boxes.abs().sum(-1) > 0
    corners = torch.tensor([[0.0, 0], [W, 0], [W, H], [0, H]]).expand(B, 4, 2).clone()
    return images, boxes, corners, valid


# ---- fused light augmentation -----------------------------------------------------------------------------------

def test_light_is_fused_and_kornia_light_is_kept() -> None:
    assert isinstance(resolve("light"), FusedLight)
    old = build_preset("light_kornia")
    assert isinstance(old, K.AugmentationSequential)
    assert [type(m).__name__ for m in old.children()] == ["BorderPerspective", "RandomAffine", "RandomMotionBlur",
                                                          "ColorJiggle"]


@pytest.mark.parametrize("preset", ["light", "light_kornia"])
def test_same_seed_same_output_and_global_rng_untouched(preset: str) -> None:
    aug = resolve(preset)
    images, boxes, corners, valid = _batch(40)  # more than one CPU chunk
    state = torch.get_rng_state()
    a = augment(aug, images, boxes, corners, valid, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    b = augment(aug, images, boxes, corners, valid, seed=5)
    c = augment(aug, images, boxes, corners, valid, seed=6)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a[0], c[0])
    assert a[0].shape == images.shape and a[1].shape == boxes.shape and a[2].shape == corners.shape
    assert float(a[0].min()) >= 0 and float(a[0].max()) <= 1
    assert torch.equal(a[1][:, 2], torch.zeros(40, 4))  # invalid rows stay zero


def test_fused_generator_argument_is_reproducible() -> None:
    images, _, corners, _ = _batch(8)
    f = FusedLight()
    a = f(images, corners, generator=torch.Generator().manual_seed(3))
    b = f(images, corners, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_p_zero_leaves_images_and_points_untouched() -> None:
    images, _, corners, _ = _batch(8)
    out, pts = FusedLight(**NO_OPS)(images, corners)
    assert torch.equal(out, images) and torch.equal(pts, corners)
    assert out.data_ptr() != images.data_ptr()  # a new tensor: the input is not modified
    # with the default probabilities, images drawn for no op are bit-exact copies
    f = FusedLight()
    B = 64
    images, _, corners, _ = _batch(B)
    params = f.sample(B, H, W, torch.Generator().manual_seed(0))
    untouched = ~(params["perspective_on"] | params["affine_on"] | params["motion_on"] | params["color_on"])
    assert 0 < int(untouched.sum()) < B
    out, pts = f.apply(images, corners, params)
    assert torch.equal(out[untouched], images[untouched]) and torch.equal(pts[untouched], corners[untouched])
    assert not torch.equal(out[~untouched], images[~untouched])


def test_every_image_warped_equals_the_subset_path() -> None:
    """All images drawn for a warp (one warp of the whole chunk) and some of them (copy, then the
    warped subset written in): the same pixels per image."""
    f = FusedLight(p_motion=0.0, p_color=0.0)
    images, _, corners, _ = _batch(12)
    params = f.sample(12, H, W, torch.Generator().manual_seed(3))
    every = {**params, "perspective_on": torch.ones(12, dtype=torch.bool)}
    some = {**every, "perspective_on": torch.arange(12) % 3 > 0, "affine_on": torch.zeros(12, dtype=torch.bool)}
    every["affine_on"] = some["affine_on"]
    out_all, pts_all = f.apply(images, corners, every)
    out_some, pts_some = f.apply(images, corners, some)
    on = some["perspective_on"]
    assert torch.equal(out_some[on], out_all[on]) and torch.equal(pts_some[on], pts_all[on])
    assert torch.equal(out_some[~on], images[~on]) and not torch.equal(out_all[~on], images[~on])


def test_warp_matches_kornia_warp_perspective() -> None:
    f = FusedLight(p_perspective=1.0, p_affine=1.0)
    images = torch.rand(5, 3, H, W, generator=torch.Generator().manual_seed(1))
    M = f.matrices(f.sample(5, H, W, torch.Generator().manual_seed(2)), H, W)
    ref = warp_perspective(images, M.float(), (H, W), mode="bilinear", padding_mode="border", align_corners=False)
    assert (warp_border(images, M) - ref).abs().max().item() < 1e-4


def test_warp_with_coverage_matches_kornia_warp_of_an_alpha_channel() -> None:
    """Crop framing's warp: the plate and its coverage as kornia warps cat([plate, ones]) into a
    larger frame (zero padding, align_corners=True), the quads tilted and partly outside."""
    g = torch.Generator().manual_seed(4)
    plates = torch.rand(6, 3, 40, 120, generator=g)
    src = torch.tensor([[0.0, 0], [120, 0], [120, 40], [0, 40]]).expand(6, 4, 2)
    quads = src * 1.1 + torch.tensor([-9.0, 6]) + (torch.rand(6, 4, 2, generator=g) - 0.5) * 30
    M = get_perspective_transform(src, quads)
    ref = warp_perspective(torch.cat([plates, torch.ones(6, 1, 40, 120)], 1), M, (64, 160), align_corners=True)
    rgb, cover = warp_with_coverage(plates, M, (64, 160))
    assert rgb.shape == (6, 3, 64, 160) and cover.shape == (6, 1, 64, 160)
    assert (rgb - ref[:, :3]).abs().max().item() < 1e-4
    assert (cover - ref[:, 3:].clamp(0, 1)).abs().max().item() < 1e-4
    assert 0 < float(cover.mean()) < 1 and float(cover.min()) == 0 and float(cover.max()) == 1


@pytest.mark.parametrize("mode, coarse", [("bicubic", (6, 10)), ("bilinear", (3, 5)), ("bilinear", (24, 40))])
def test_smooth_field_is_interpolate(mode: str, coarse: tuple[int, int]) -> None:
    """The backgrounds' upsampling as two matmuls equals F.interpolate (align_corners=False)."""
    x = torch.rand(4, 3, *coarse, generator=torch.Generator().manual_seed(0))
    for size in [(64, 256), (37, 91)]:
        ref = F.interpolate(x, size=size, mode=mode, align_corners=False)
        assert (smooth_field(x, size, mode) - ref).abs().max().item() < 1e-5


def test_matrix_is_kornias_affine_after_perspective() -> None:
    """The composed matrix is what kornia's two modules compute from the same parameters, affine @ perspective."""
    f = FusedLight(p_perspective=1.0, p_affine=1.0)
    p = f.sample(6, H, W, torch.Generator().manual_seed(4))
    persp = BorderPerspective(0.12, p=1.0, sampling_method="area_preserving")
    P = persp.compute_transformation(torch.zeros(6, 3, H, W), {"start_points": p["start"], "end_points": p["end"]},
                                     persp.flags)
    affine = K.RandomAffine(degrees=3, translate=(0.02, 0.04), scale=(0.92, 1.05), shear=(-4, 4), p=1.0)
    A = affine.compute_transformation(torch.zeros(6, 3, H, W), {
        "translations": p["translations"], "center": torch.tensor([[W / 2 - 0.5, H / 2 - 0.5]]).expand(6, 2),
        "scale": p["scale"][:, None].expand(6, 2), "angle": p["angle"], "shear_x": p["shear_x"],
        "shear_y": torch.zeros(6)}, affine.flags)
    assert torch.allclose(f.matrices(p, H, W).float(), A @ P, atol=1e-3, rtol=1e-4)


def test_keypoints_land_on_the_warped_pixels() -> None:
    """Bright dots drawn at keypoints are found, after a strong fused warp, at the moved keypoints."""
    B = 12
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    dots = torch.tensor([[40.0, 20.0], [128.0, 32.0], [210.0, 44.0], [70.0, 45.0]])  # (x, y) in pixels
    image = sum(torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 1.5**2)) for x, y in dots)  # (H, W)
    images = image.expand(B, 3, H, W).contiguous()
    points = dots.expand(B, 4, 2).contiguous()
    f = FusedLight(perspective=0.2, p_perspective=1.0, degrees=8.0, p_affine=1.0, p_motion=0.0, p_color=0.0)
    out, moved = f(images, points, generator=torch.Generator().manual_seed(9))
    assert not torch.allclose(moved, points, atol=1.0)  # the dots really moved
    r = 5
    for b in range(B):
        for x, y in moved[b].tolist():
            cx, cy = round(x), round(y)
            if not (r <= cx < W - r and r <= cy < H - r):
                continue
            win = out[b, 0, cy - r: cy + r + 1, cx - r: cx + r + 1]
            wy, wx = torch.meshgrid(torch.arange(cy - r, cy + r + 1.0), torch.arange(cx - r, cx + r + 1.0),
                                    indexing="ij")
            mass = win.sum()
            centroid = torch.stack([(win * wx).sum() / mass, (win * wy).sum() / mass])
            assert (centroid - torch.tensor([x, y])).norm().item() < 0.5, (b, x, y, centroid)
            assert win.max().item() > 0.5


def test_motion_blur_and_colour_match_kornia() -> None:
    images = torch.rand(16, 3, H, W, generator=torch.Generator().manual_seed(5))
    f = FusedLight(**{**NO_OPS, "p_motion": 1.0})
    p = f.sample(16, H, W, torch.Generator().manual_seed(6))
    out, _ = f.apply(images, torch.zeros(16, 1, 2), p)
    ref = motion_blur(images, 3, p["motion_angle"], p["motion_direction"], border_type="constant", mode="nearest")
    assert (out - ref).abs().max().item() < 1e-6
    f = FusedLight(**{**NO_OPS, "p_color": 1.0})
    p = f.sample(16, H, W, torch.Generator().manual_seed(7))
    out, _ = f.apply(images, torch.zeros(16, 1, 2), p)
    for i in range(16):
        x, b, c = images[i: i + 1], p["brightness"][i: i + 1] - 1, p["contrast"][i: i + 1]
        ref = (adjust_contrast(adjust_brightness(x, b), c) if p["brightness_first"][i]
               else adjust_brightness(adjust_contrast(x, c), b))
        assert (out[i] - ref[0]).abs().max().item() < 1e-6


def _stats(x: torch.Tensor) -> tuple[float, float, float, float]:
    x = x.double()
    return x.mean().item(), x.std().item(), x.min().item(), x.max().item()


def test_parameter_distributions_match_kornia() -> None:
    """Over many draws, every fused parameter has the mean, spread and range of kornia's own sampler."""
    N = 20000
    torch.manual_seed(0)
    shape = torch.Size((N, 3, H, W))
    ka = K.RandomAffine(degrees=3, translate=(0.02, 0.04), scale=(0.92, 1.05), shear=(-4, 4), p=0.5)
    kp = BorderPerspective(0.12, p=0.5, sampling_method="area_preserving")
    km = K.RandomMotionBlur(3, angle=30.0, direction=0.5, p=0.2)
    kc = K.ColorJiggle(0.2, 0.2, 0.0, 0.0, p=0.5)
    a, pp, m, c = (mod.forward_parameters(shape) for mod in (ka, kp, km, kc))
    ours = FusedLight().sample(N, H, W, torch.Generator().manual_seed(1))
    pairs = {
        "angle": (a["angle"], ours["angle"]), "scale": (a["scale"][:, 0], ours["scale"]),
        "tx": (a["translations"][:, 0], ours["translations"][:, 0]),
        "ty": (a["translations"][:, 1], ours["translations"][:, 1]), "shear_x": (a["shear_x"], ours["shear_x"]),
        "perspective dx": ((pp["end_points"] - pp["start_points"])[..., 0], (ours["end"] - ours["start"])[..., 0]),
        "perspective dy": ((pp["end_points"] - pp["start_points"])[..., 1], (ours["end"] - ours["start"])[..., 1]),
        "motion angle": (m["angle_factor"], ours["motion_angle"]),
        "motion direction": (m["direction_factor"], ours["motion_direction"]),
        "brightness": (c["brightness_factor"], ours["brightness"]),
        "contrast": (c["contrast_factor"], ours["contrast"]),
    }
    for name, (ref, got) in pairs.items():
        (rm, rs, rlo, rhi), (gm, gs, glo, ghi) = _stats(ref), _stats(got)
        span = rhi - rlo
        assert span > 0, name
        assert abs(gm - rm) < 0.02 * span, (name, rm, gm)
        assert abs(gs - rs) < 0.03 * rs, (name, rs, gs)
        assert abs(glo - rlo) < 0.01 * span and abs(ghi - rhi) < 0.01 * span, (name, (rlo, rhi), (glo, ghi))
    for name, mod, key in (("perspective", kp, "perspective_on"), ("affine", ka, "affine_on"),
                           ("motion", km, "motion_on"), ("colour", kc, "color_on")):
        ref = {"perspective": pp, "affine": a, "motion": m, "colour": c}[name]["batch_prob"].float().mean().item()
        assert abs(ours[key].float().mean().item() - mod.p) < 0.015 and abs(ref - mod.p) < 0.015, name
    assert abs(ours["brightness_first"].float().mean().item() - 0.5) < 0.015  # kornia: random order, 1/2 each


def test_keypoint_motion_matches_the_kornia_preset_statistically() -> None:
    """End to end on labels: the plate corners and centre move, over many plates, as the kornia light
    preset moves them (composition, order and probabilities included)."""
    N, chunk = 3000, 500
    pts = torch.tensor([[0.0, 0], [W, 0], [W, H], [0, H], [W / 2, H / 2]])  # (5, 2)
    kornia_light, fused = build_preset("light_kornia"), FusedLight()
    images = torch.zeros(chunk, 1, H, W)
    moved_k, moved_f = [], []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for _ in range(N // chunk):
            moved_k.append(kornia_light(images, pts.expand(chunk, 5, 2).contiguous())[1])
        g = torch.Generator().manual_seed(1)
        for _ in range(N // chunk):
            moved_f.append(fused(images, pts.expand(chunk, 5, 2).contiguous(), generator=g)[1])
    dk, df = torch.cat(moved_k) - pts, torch.cat(moved_f) - pts  # (N, 5, 2) displacements
    still_k = (dk.abs().amax((1, 2)) < 1e-4).float().mean().item()
    still_f = (df.abs().amax((1, 2)) < 1e-4).float().mean().item()
    assert abs(still_k - 0.25) < 0.03 and abs(still_f - 0.25) < 0.03  # neither geometric op drawn
    for i in range(5):
        for axis in (0, 1):
            sk, sf = dk[:, i, axis].std().item(), df[:, i, axis].std().item()
            assert abs(sf - sk) < 0.08 * sk, (i, axis, sk, sf)
            assert abs(df[:, i, axis].mean().item() - dk[:, i, axis].mean().item()) < 0.1 * sk, (i, axis)


def test_fused_light_in_the_stream() -> None:
    from plateaug import PlateGANStream

    stream = PlateGANStream(regions=["cn_blue", "us"], batch_size=16, generator=None, seed=3, augment="light")
    images, targets = next(iter(stream))
    again, targets2 = next(iter(PlateGANStream(regions=["cn_blue", "us"], batch_size=16, generator=None, seed=3,
                                               augment="light")))
    assert images.shape == (16, 3, 64, 256) and torch.equal(images, again)
    assert all(torch.equal(a["char_boxes"], b["char_boxes"]) for a, b in zip(targets, targets2))
    kornia_stream = PlateGANStream(regions=["cn_blue"], batch_size=4, generator=None, seed=3, augment="light_kornia")
    assert next(iter(kornia_stream))[0].shape == (4, 3, 64, 256)


# ---- int8 generator ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model() -> nn.Module:
    return random_generator()


@pytest.fixture(scope="module")
def int8_export(model: nn.Module, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("int8") / "g_int8.onnx"
    return quantize.export_int8(model, out, per_region=4)


def test_crop_size_is_the_streams() -> None:
    assert quantize.CROP == tuple(DEFAULT_SIZE["crop"])


def test_calibration_covers_every_region_at_its_canvas_and_the_crop() -> None:
    batches = quantize.calibration_inputs(per_region=2)
    labels = [label for label, _ in batches]
    for name in builtin_regions():
        h, w = load_region(name).canvas
        assert f"{name} {h}x{w}" in labels
        assert f"{name} 64x256" in labels
    for _, x in batches:
        assert x.shape[1] == 4 and x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1


def test_int8_export_verified_metadata_and_runs(model: nn.Module, int8_export) -> None:
    report = int8_export
    assert report.path.is_file() and report.verified
    tol = quantize.TOLERANCE
    assert report.render_mean_abs <= tol["render_mean"] and report.render_p999_abs <= tol["render_p999"]
    assert report.render_mean_abs <= report.render_p999_abs <= report.render_max_abs
    assert report.random_mean_abs <= tol["random_mean"] and report.random_max_abs >= report.random_mean_abs
    assert set(report.render_regions) == set(builtin_regions()) and len(report.random_sizes) == 4
    meta = {p.key: p.value for p in onnx.load(str(report.path)).metadata_props}
    assert meta["plateaug.dtype"] == "int8"
    cal = json.loads(meta["plateaug.calibration"])
    assert cal["regions"] == sorted(builtin_regions()) and "64x256" in cal["sizes"] and cal["format"] == "QDQ"
    assert set(json.loads(meta["plateaug.int8_error"])) == {"render_max", "render_mean", "render_p999", "random_max",
                                                             "random_mean"}
    graph = onnx.load(str(report.path)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    gen = OnnxGenerator(report.path)
    assert gen.dtype == torch.float32 and gen.metadata["plateaug.dtype"] == "int8"
    plates = render("eu_de", sample_text("eu_de", 3, torch.Generator().manual_seed(11)))
    cond = generator_input(plates.images)
    out = gen(cond)
    assert out.shape == (3, 3, *plates.images.shape[-2:]) and out.dtype == torch.float32
    with torch.no_grad():
        assert (out - model(cond)).abs().mean().item() <= tol["render_mean"]


def test_int8_failed_verification_leaves_nothing(model: nn.Module, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(quantize.TOLERANCE, "render_mean", 1e-9)
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportVerificationError, match="int8 export .* does not match"):
        quantize.export_int8(model, out, per_region=2)
    assert list(tmp_path.iterdir()) == []


def test_int8_cli(model: nn.Module, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = atomic_save(generator_checkpoint(model, "unet_xs"), tmp_path / "g.pt")
    out = tmp_path / "g_int8.onnx"
    assert export_main([str(ckpt), "--out", str(out), "--int8", "--calibration-plates", "2"]) == 0
    text = capsys.readouterr().out
    assert "int8 QDQ" in text and "renders: mean abs err" in text and "99.9th percentile" in text and out.is_file()
    assert json.loads(OnnxGenerator(out).metadata["plateaug.calibration"])["plates_per_region_and_size"] == 2
    with pytest.raises(SystemExit):
        export_main([str(ckpt), "--int8", "--fp16"])


# ---- benchmark ---------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_throughput_quick_reports_roofline_and_int8(tmp_path: Path, model: nn.Module, int8_export) -> None:
    ckpt = atomic_save(generator_checkpoint(model, "unet_xs"), tmp_path / "g.pt")
    fp32 = tmp_path / "g.onnx"
    from plateaug.generator.onnx_export import export_onnx

    export_onnx(ckpt, fp32, verify=False)
    out = tmp_path / "t.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--quick", "--no-cuda", "--threads", "1",
           "--onnx", str(fp32), "--checkpoint", str(ckpt), "--int8-onnx", str(int8_export.path), "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    peaks = result["peaks"]
    assert peaks["fp32_gflops"] > 0 and peaks["copy_gbs"] > 0
    stages = {r["stage"]: r for r in result["results"] if r["pipeline"].startswith("plateaug")}
    assert any("generator" in s and r.get("gflops_per_s") for s, r in stages.items())
    assert any(r.get("gb_per_s") for r in stages.values())
    framing = [r for s, r in stages.items() if s.startswith("framing (detector)")]
    assert framing and all(r["gb_per_s"] > 0 and r["plates_per_s"] > 0 for r in framing)
    labels = {r["pipeline"] for r in result["results"]}
    assert "plateaug ORT int8" in labels
    int8_rows = [r for r in result["results"] if r["pipeline"] == "plateaug ORT int8"]
    assert {r["stage"].split(" (")[0] for r in int8_rows} >= {"generator", "end to end"}
    if "bf16_gflops" in peaks:  # torch multiplies bf16 on this CPU: the torch-bf16 generator is timed too
        bf16_rows = [r for r in result["results"] if r["pipeline"] == "plateaug torch bf16"]
        assert {r["stage"].split(" (")[0] for r in bf16_rows} >= {"generator", "end to end"}
        assert all(r["peak"] == "bf16_gflops" for r in bf16_rows if r["stage"].startswith("generator"))
        assert set(result["ratios_over_seed_cpu"]) >= {"plateaug ORT fp32/cpu", "plateaug torch bf16/cpu"}
    assert "% of" in proc.stdout and math.isfinite(result["peaks"]["fp32_gflops"])
    assert np.isfinite([r["plates_per_s"] for r in result["results"]]).all()
