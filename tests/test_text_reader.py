"""The frozen reader of the generator's text-preservation loss: charsets per script, targets,
nuisance that leaves glyphs alone, a loss differentiable in the images only, training that learns,
state that round-trips through weights_only, and the trainer's --text-weight term."""

from __future__ import annotations

import json

import pytest
import torch
from fixtures import make_real

from plateaug.generator.checkpoint import load_checkpoint
from plateaug.models.crnn import CRNN
from plateaug.train import main
from plateaug.training.realdata import RealGroup
from plateaug.training.text_reader import (
    Reader,
    encode,
    mixed_batch,
    nuisance,
    real_crops,
    script_charset,
    script_of,
    train_reader,
)
from plateaug.training.unpaired import render_batch

TINY = ["--generator", "unet_xs", "--epochs", "1", "--batch-size", "4", "--min-per-group", "8",
        "--canvas", "br=32x96", "--canvas", "us=48x96", "--no-progress", "--threads", "1"]


def test_scripts_and_charsets():
    assert script_of("us") == script_of("br") == script_of("eu") == "latin"
    assert script_of("cn") == "cn" and script_of("xx") is None
    latin, cn = script_charset("latin"), script_charset("cn")
    assert set("0123456789ABCXYZ") <= set(latin) and not any(ord(c) > 127 for c in latin)
    assert "皖" in cn and "京" in cn and set("0123456789") <= set(cn)
    assert list(cn) == sorted(cn) and len(set(cn)) == len(cn)


def test_encode_targets_and_unknown_character():
    labels, lengths = encode(["AB", "C1"], "1ABC")
    assert labels.tolist() == [2, 3, 4, 1] and lengths.tolist() == [2, 2]  # class 0 is the blank
    with pytest.raises(ValueError, match="'Z' is not in the reader's charset"):
        encode(["AZ"], "1ABC")


def test_nuisance_keeps_shape_range_and_seed_and_changes_pixels():
    images, _ = render_batch("br", 4, None, torch.Generator().manual_seed(0))
    a = nuisance(images, torch.Generator().manual_seed(1))
    b = nuisance(images, torch.Generator().manual_seed(1))
    c = nuisance(images, torch.Generator().manual_seed(2))
    assert a.shape == images.shape and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a - images).abs().mean() > 0.01


def test_mixed_batch_shares_regions_at_reader_size():
    images, texts = mixed_batch(("us", "br", "eu"), 7, torch.Generator().manual_seed(0))
    assert images.shape == (7, 3, 32, 128) and len(texts) == 7
    # shared out in order: 3 us, 2 br (LLLDDDD), 2 eu (Slovak LLDDDLL)
    assert all(t[:3].isalpha() and t[3:].isdigit() for t in texts[3:5])
    assert all(t[:2].isalpha() and t[2:5].isdigit() and t[5:].isalpha() for t in texts[5:])


def test_reader_loss_is_differentiable_in_images_only_and_round_trips(tmp_path):
    charset = script_charset("latin")
    reader = Reader(CRNN(len(charset)).eval(), charset)
    for p in reader.model.parameters():
        p.requires_grad_(False)
    images = torch.rand(3, 3, 64, 192, requires_grad=True)
    loss = reader.loss(images, ["ABC123", "X1", "7777777"])
    loss.backward()
    assert torch.isfinite(loss) and images.grad is not None and images.grad.abs().sum() > 0
    assert all(p.grad is None for p in reader.model.parameters())
    torch.save(reader.state(), tmp_path / "r.pt")
    back = Reader.from_state(torch.load(tmp_path / "r.pt", weights_only=True))
    x = torch.rand(2, 3, 32, 128)
    assert back.charset == charset and not back.model.training
    assert torch.equal(back.model(x), reader.model(x))


def test_train_reader_learns_and_is_frozen_and_leaves_global_rng_alone():
    images, texts = render_batch("br", 16, None, torch.Generator().manual_seed(5))
    charset = script_charset("latin")
    untrained = Reader(CRNN(len(charset)).eval(), charset).loss(images, texts).item()
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    reader = train_reader("latin", 40, seed=0, batch=24)
    assert torch.equal(torch.rand(1), before)  # the caller's RNG stream is untouched
    assert not reader.model.training and not any(p.requires_grad for p in reader.model.parameters())
    assert reader.loss(images, texts).item() < 0.7 * untrained
    again = train_reader("latin", 2, seed=0, batch=8)
    assert torch.equal(again.model.head.weight, train_reader("latin", 2, seed=0, batch=8).model.head.weight)


def test_real_crops_keep_the_scripts_spellable_texts_at_reader_size():
    def group(region, texts):
        return RealGroup(region, torch.rand(len(texts), 3, 48, 96), [f"{region}{i}.png" for i in range(len(texts))],
                         texts)

    groups = {"us": group("us", ["ABC123", "", "AB-12", "XY9"]), "br": group("br", ["QWE1234"]),
              "cn": group("cn", ["皖A12345"])}
    images, texts = real_crops(groups, "latin", script_charset("latin"))
    assert texts == ["ABC123", "XY9", "QWE1234"]  # us first (SCRIPTS order); no text or a '-': left out
    assert images.shape == (3, 3, 32, 128) and 0 <= images.min() and images.max() <= 1
    assert torch.allclose(images[0].mean(), groups["us"].images[0].mean(), atol=0.05)
    cn_images, cn_texts = real_crops(groups, "cn", script_charset("cn"))
    assert cn_texts == ["皖A12345"] and cn_images.shape == (1, 3, 32, 128)
    assert real_crops({"eu": group("eu", ["??"])}, "latin", script_charset("latin")) is None


def test_train_reader_with_real_crops_learns_them():
    """Half of each batch comes from the real crops: a reader trained with crops of one text
    (a pattern renders never show) reads that text from them far better than one trained without."""
    stripes = torch.zeros(8, 3, 32, 128)
    stripes[:, :, 8:24, ::16] = 1.0  # vertical bars: something no render looks like
    real = (stripes, ["1111111"] * 8)
    with_real = train_reader("latin", 30, seed=0, batch=16, real=real)
    without = train_reader("latin", 30, seed=0, batch=16)
    assert with_real.loss(stripes, real[1]).item() < 0.5 * without.loss(stripes, real[1]).item()
    again = train_reader("latin", 2, seed=0, batch=8, real=real)
    assert torch.equal(again.model.head.weight, train_reader("latin", 2, seed=0, batch=8, real=real).model.head.weight)


def test_text_weight_trains_logs_checkpoints_readers_and_resumes_exactly(tmp_path):
    real = make_real(tmp_path / "real")
    extra = ["--render-weight", "1", "--text-weight", "5", "--reader-steps", "2"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    with pytest.warns(UserWarning) as caught:
        assert main(["--real", str(real), "--out", str(straight), *TINY, *extra]) == 0
        assert main(["--real", str(real), "--out", str(split), *TINY, *extra, "--max-minutes", "0"]) == 0
    # two steps make a reader that reads nothing: said, with what to do
    assert any("raise --reader-steps" in str(w.message) for w in caught)
    summary = json.loads((straight / "summary.json").read_text())
    assert set(summary["text_reader_accuracy"]) == {"latin", "cn"}
    assert all(0 <= v < 0.9 for v in summary["text_reader_accuracy"].values())
    with pytest.warns(UserWarning):
        assert main(["--resume", str(split), "--no-progress", "--threads", "1"]) == 0
    a = [json.loads(x) for x in (straight / "log.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (split / "log.jsonl").read_text().splitlines()]
    assert a == b, "a resumed run (readers from its checkpoint) must repeat the uninterrupted one"
    assert a and all(r["loss_text"] > 0 for r in a)  # br and us both have a Latin reader
    ckpt = load_checkpoint(straight / "last.pt")
    assert ckpt["config"]["text_weight"] == 5.0 and set(ckpt["text_readers"]) == {"latin", "cn"}
    assert ckpt["text_readers"]["cn"]["charset"] == script_charset("cn")
    resumed = load_checkpoint(split / "last.pt")["text_readers"]["latin"]["state_dict"]
    assert all(torch.equal(v, resumed[k]) for k, v in ckpt["text_readers"]["latin"]["state_dict"].items())


def test_reader_real_is_recorded_and_needs_the_text_loss(tmp_path, capsys):
    real = make_real(tmp_path / "real")
    with pytest.raises(SystemExit):
        main(["--real", str(real), "--out", str(tmp_path / "n"), *TINY, "--reader-real"])
    assert "--reader-real needs --text-weight" in capsys.readouterr().err and not (tmp_path / "n").exists()
    out = tmp_path / "r"
    with pytest.warns(UserWarning, match="raise --reader-steps"):
        assert main(["--real", str(real), "--out", str(out), *TINY, "--render-weight", "1", "--text-weight", "5",
                     "--reader-steps", "2", "--reader-real"]) == 0
    assert load_checkpoint(out / "last.pt")["config"]["reader_real"] is True
    with pytest.raises(SystemExit):
        main(["--resume", str(out), "--reader-real"])
    assert "--reader-real cannot be changed" in capsys.readouterr().err


def test_text_weight_errors(tmp_path, capsys):
    real = make_real(tmp_path / "real")
    assert main(["--real", str(real), "--out", str(tmp_path / "o"), *TINY, "--text-weight", "1"]) == 2
    assert "render_weight" in capsys.readouterr().err and not (tmp_path / "o").exists()
    with pytest.raises(SystemExit):
        main(["--real", str(real), "--out", str(tmp_path / "o"), *TINY, "--render-weight", "1",
              "--text-weight", "1", "--reader-steps", "0"])
    assert "--reader-steps" in capsys.readouterr().err
