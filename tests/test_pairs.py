"""Paired renders for the generator: alignment recovers a known warp, crops whose text no spec
renders (unless drawn in a plain row) or whose fit is poor get no pair, and the trainer's paired
term is logged and resumes exactly."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from fixtures import make_real

from plateaug import render
from plateaug.generator.checkpoint import load_checkpoint
from plateaug.renderer.layout import layout_pattern
from plateaug.renderer.spec_loader import load_region
from plateaug.renderer.text import encode_texts
from plateaug.train import main
from plateaug.training.pairs import align, build_pairs, free_spec, rectify
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


def test_free_spec_lays_any_text_out_in_one_row():
    """free_spec adds one plain row per length: any of the region's Latin characters, evenly spaced,
    narrowed so that long texts still fit; the labels are the texts themselves."""
    us = load_region("us")
    free = free_spec(us, {3, 6, 8, 10})
    row = us.rows[0]
    added = free.patterns[len(us.patterns):]
    assert [len(p.tokens) for p in added] == [3, 6, 8, 10]
    widths = {c.key: c.width_mm for c in free.classes[len(us.classes):]}
    assert widths["free3"] == widths["free6"] == row.char_width_mm  # short texts keep the row's width
    assert widths["free8"] < row.char_width_mm and widths["free10"] < widths["free8"]
    for p in added:
        slots = layout_pattern(free, p).chars  # fits the row (raises if not)
        assert len(slots) == len(p.tokens) and len({s.w for s in slots}) <= 2  # equal cells (rounding)
    texts = ["UNI", "KAA20C", "8BL89761", "ABCDEFGH12"]  # none of them a us pattern
    batch = encode_texts(free, texts)
    assert batch.texts == texts
    plates = render(free, batch)
    assert plates.images.shape == (4, 3, *us.canvas)
    assert plates.lengths.tolist() == [3, 6, 8, 10]
    with pytest.raises(ValueError):
        encode_texts(us, ["UNI"])  # the shipped spec itself is unchanged


def test_any_layout_pairs_texts_no_pattern_accepts():
    """A crop whose text fits no br_old pattern gets a pair only with any_layout, drawn in a plain row."""
    br = load_region("br_old")
    odd = "AB12345"  # no br_old pattern
    with pytest.raises(ValueError):
        encode_texts(br, [odd])
    plain = render(free_spec(br, {7}), [odd]).images.clamp(0, 1)
    plates = torch.cat([render("br_old", TEXTS[:1]).images.clamp(0, 1), plain])
    crops, _ = _photograph(plates, 0.06, [1.0, -1.0], [(0.02, 0.0), (0.0, -0.02)])
    texts = [TEXTS[0], odd, "A B"]  # the space is no character of the region: never pairable
    group = RealGroup("br", torch.cat([crops, crops[:1]]), ["a.jpg", "b.jpg", "c.jpg"], texts)
    strict = build_pairs(group, seed=0)
    assert strict.index.tolist() == [0, -1, -1] and strict.skipped_text == 2 and strict.free_layout == 0
    loose = build_pairs(group, seed=0, any_layout=True)
    assert loose.index.tolist() == [0, 1, -1] and loose.skipped_text == 1 and loose.free_layout == 1
    assert torch.equal(loose.renders[0], strict.renders[0])  # pattern texts are drawn as before
    own = (loose.reals - loose.renders).abs().mean(dim=(1, 2, 3))
    swapped = (loose.reals - loose.renders.roll(1, 0)).abs().mean(dim=(1, 2, 3))
    assert (own < swapped).all()


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


def test_any_layout_option_is_fixed_by_the_run(tmp_path, capsys):
    real = make_real(tmp_path / "real")
    out = tmp_path / "o"
    with pytest.warns(UserWarning):
        assert main(["--real", str(real), "--out", str(out), *TINY, "--paired-weight", "50", "--paired-any-layout",
                     "--max-minutes", "0"]) == 0
    assert load_checkpoint(out / "last.pt")["config"]["paired_any_layout"] is True
    summary = json.loads((out / "summary.json").read_text())
    assert all(p["plain_row"] == 0 for p in summary["pairs"].values())  # every fixture text fits a pattern
    with pytest.raises(SystemExit) as exc:
        main(["--resume", str(out), "--paired-any-layout", "--no-progress"])
    assert exc.value.code == 2 and "--paired-any-layout cannot be changed" in capsys.readouterr().err
