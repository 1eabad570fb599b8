"""Paired renders for the generator: alignment recovers a known warp, crops whose text no spec
renders or whose fit is poor get no pair, and the trainer's paired term is logged and resumes
exactly."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from fixtures import make_real

from plateaug import render
from plateaug.generator.checkpoint import load_checkpoint
from plateaug.train import main
from plateaug.training.pairs import align, build_pairs, rectify
from plateaug.training.realdata import RealGroup

TEXTS = ["ABC1234", "XYZ9876", "KLM5555"]


def _photograph(plates: torch.Tensor, margin: float, degrees: list[float], shifts: list[tuple[float, float]],
                size: tuple[int, int] = (64, 192)) -> tuple[torch.Tensor, torch.Tensor]:
    """Real-like crops of renders: a margin around the plate, tilt and shift, darker, noisy.
    Returns the crops (B, 3, *size) and the true maps from the crop's frame to the render's."""
    B, aspect = len(plates), size[1] / size[0]
    ang = torch.tensor(degrees) * math.pi / 180
    s = 1 + 2 * margin
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = s * ang.cos()
    theta[:, 0, 1], theta[:, 1, 0] = -s * ang.sin() / aspect, s * ang.sin() * aspect  # a rotation in pixels
    theta[:, :, 2] = torch.tensor(shifts)
    crops = F.grid_sample(plates, F.affine_grid(theta, [B, 3, *size], align_corners=False), padding_mode="border",
                          align_corners=False)
    g = torch.Generator().manual_seed(0)
    return (crops * 0.7 + 0.1 + 0.03 * torch.randn(crops.shape, generator=g)).clamp(0, 1), theta


def test_align_recovers_a_known_warp_and_rectify_undoes_it():
    plates = render("br_old", TEXTS).images.clamp(0, 1)  # (3, 3, 64, 192)
    crops, truth = _photograph(plates, 0.06, [2.0, -1.5, 0.5], [(0.03, -0.04), (-0.02, 0.02), (0.0, 0.05)])
    theta, score = align(plates, crops, margin=0.06)
    assert theta.shape == (3, 2, 3) and score.shape == (3,)
    assert (score > 0.6).all(), score
    fitted, exact = rectify(crops, theta, (64, 192)), rectify(crops, truth, (64, 192))
    assert fitted.shape == (3, 3, 64, 192) and 0 <= fitted.min() and fitted.max() <= 1
    assert (fitted - exact).abs().mean(dim=(1, 2, 3)).max() < 0.03  # the crop lands on the render's frame
    start = torch.zeros(3, 2, 3)
    start[:, 0, 0] = start[:, 1, 1] = 1.12
    unaligned = rectify(crops, start, (64, 192))
    assert (unaligned - exact).abs().mean() > 2 * (fitted - exact).abs().mean()
    with pytest.raises(ValueError, match="align expects"):
        align(plates, crops[:2])


def test_build_pairs_keeps_renderable_well_fitting_crops_only():
    plates = render("br_old", TEXTS).images.clamp(0, 1)
    crops, _ = _photograph(plates, 0.06, [1.0, -1.0, 0.0], [(0.02, 0.0), (0.0, -0.02), (-0.03, 0.03)])
    noise = torch.rand(1, 3, 64, 192, generator=torch.Generator().manual_seed(1))
    images = torch.cat([crops[:1], noise, crops[1:], crops[2:]])
    texts = [TEXTS[0], TEXTS[1], TEXTS[1], TEXTS[2], "NOT A PLATE"]
    group = RealGroup("br", images, [f"f{i}.jpg" for i in range(5)], texts)
    pairs = build_pairs(group, seed=0)
    assert pairs is not None and pairs.region == "br" and pairs.skipped_text == 1
    assert pairs.index.tolist() == [0, -1, 1, 2, -1]  # noise fits nothing; the last text is no br plate
    assert pairs.renders.shape == pairs.reals.shape == (3, 3, 64, 192) and pairs.score.shape == (3,)
    assert pairs.of(torch.tensor([4, 3, 1])).tolist() == [2]
    # each pair's render reads as its crop's text: the aligned crop is closest to its own render
    own = (pairs.reals - pairs.renders).abs().mean(dim=(1, 2, 3))
    swapped = (pairs.reals - pairs.renders.roll(1, 0)).abs().mean(dim=(1, 2, 3))
    assert (own < swapped).all()
    assert build_pairs(RealGroup("xx", images[:1], ["a.jpg"], ["AB12"])) is None


TINY = ["--generator", "unet_xs", "--epochs", "1", "--batch-size", "4", "--min-per-group", "8",
        "--canvas", "br=32x96", "--canvas", "us=48x96", "--val-percent", "25", "--no-progress", "--threads", "1"]


def test_paired_term_trains_logs_and_resumes_exactly(tmp_path):
    real = make_real(tmp_path / "real")
    straight, split = tmp_path / "straight", tmp_path / "split"
    with pytest.warns(UserWarning):
        assert main(["--real", str(real), "--out", str(straight), *TINY, "--paired-weight", "50"]) == 0
        assert main(["--real", str(real), "--out", str(split), *TINY, "--paired-weight", "50",
                     "--max-minutes", "0"]) == 0
        assert main(["--resume", str(split), "--no-progress", "--threads", "1"]) == 0
    a = [json.loads(x) for x in (straight / "log.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (split / "log.jsonl").read_text().splitlines()]
    assert a == b
    assert sum("loss_pair" in r for r in a) >= len(a) // 2 and all(r.get("loss_pair", 1) > 0 for r in a)
    summary = json.loads((straight / "summary.json").read_text())
    assert set(summary["pairs"]) == {"br", "us"}  # the fixture's crops are renders of their texts
    assert all(p["pairs"] >= 1 and p["text_not_renderable"] == 0 for p in summary["pairs"].values())
    assert load_checkpoint(straight / "last.pt")["config"]["paired_weight"] == 50.0
    assert (straight / "samples" / "epoch_000.png").exists()


def test_paired_weight_errors(tmp_path, capsys):
    real = make_real(tmp_path / "real")
    with pytest.raises(SystemExit) as exc:
        main(["--real", str(real), "--out", str(tmp_path / "o"), *TINY, "--paired-weight", "-1"])
    assert exc.value.code == 2 and "--paired-weight must be >= 0" in capsys.readouterr().err
    (real / "labels.csv").write_text("file,region,text,source\n" + "".join(
        f"br/br{i:02d}.{'png' if i % 2 else 'jpg'},br,,fixture\n" for i in range(10)))  # no texts
    assert main(["--real", str(real), "--out", str(tmp_path / "o2"), *TINY, "--paired-weight", "1"]) == 2
    assert "paired_weight needs training crops whose text" in capsys.readouterr().err
