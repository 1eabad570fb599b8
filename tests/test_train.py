"""Training: a tiny end-to-end run on fixture crops (made here), exact resume, corrupt files
skipped and counted, TorchGenerator differentiable."""

from __future__ import annotations

import json

import pytest
import torch
from fixtures import make_real

from plateaug import TorchGenerator, render
from plateaug.generator.checkpoint import load_checkpoint
from plateaug.train import main

TINY = ["--generator", "unet_xs", "--epochs", "2", "--batch-size", "4", "--min-per-group", "8",
        "--canvas", "br=32x96", "--canvas", "us=48x96", "--val-percent", "25", "--no-progress", "--threads", "1"]


@pytest.fixture
def real_dir(tmp_path):
    return make_real(tmp_path / "real", missing_row=True)


def test_tiny_training_run_checkpoints_and_skips_corrupt(real_dir, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.warns(UserWarning, match="broken.jpg"):
        assert main(["--real", str(real_dir), "--out", str(out), *TINY]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped"] == "finished" and summary["epochs_done"] == 2
    assert summary["skipped"] == 2 and {f for f, _ in summary["skipped_files"]} == {"br/broken.jpg", "br/missing.jpg"}
    assert set(summary["val_l1"]) >= {"all"} and 0 < summary["val_l1"]["all"] < 1
    assert (out / "samples" / "epoch_000.png").exists() and (out / "samples" / "epoch_001.png").exists()
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["canvases"] == {"br": [32, 96], "us": [48, 96]}
    assert len(ckpt["val_history"]) == 2
    assert not list(out.glob(".*.tmp"))
    assert "skipped br/broken.jpg" in capsys.readouterr().err


def test_resume_is_bit_exact(real_dir, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    with pytest.warns(UserWarning):
        assert main(["--real", str(real_dir), "--out", str(straight), *TINY]) == 0
        # a zero-minute budget stops after the first step, with a checkpoint mid-epoch
        assert main(["--real", str(real_dir), "--out", str(split), *TINY, "--max-minutes", "0"]) == 0
    stopped = json.loads((split / "summary.json").read_text())
    assert stopped["stopped"] == "time budget" and stopped["global_step"] == 1
    with open(split / "log.jsonl", "a") as f:  # a line written after the checkpoint, before a crash
        f.write(json.dumps({"global_step": 2, "loss_d": 9.9}) + "\n")
    with pytest.warns(UserWarning):
        assert main(["--resume", str(split), "--no-progress", "--threads", "1"]) == 0
    a = [json.loads(x) for x in (straight / "log.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (split / "log.jsonl").read_text().splitlines()]
    assert a == b, "losses after resume differ from the uninterrupted run"
    wa = load_checkpoint(straight / "last.pt")["generator"]["ema_state_dict"]
    wb = load_checkpoint(split / "last.pt")["generator"]["ema_state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_training_errors(tmp_path, capsys):
    assert main(["--real", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), *TINY]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--real", str(empty), "--out", str(tmp_path / "o"), *TINY]) == 2
    assert "no usable images" in capsys.readouterr().err
    assert main(["--resume", str(tmp_path / "o2")]) == 2
    assert "checkpoint" in capsys.readouterr().err


def test_torch_generator_is_differentiable_to_render_colours(real_dir, tmp_path):
    out = tmp_path / "run"
    with pytest.warns(UserWarning):
        main(["--real", str(real_dir), "--out", str(out), *TINY, "--epochs", "1"])
    gen = TorchGenerator(out / "last.pt")
    images = render("br_old", ["ABC1234", "XYZ9876"]).images.clone().requires_grad_(True)
    photo = gen.translate(images)
    assert photo.shape == images.shape and 0 <= photo.min() and photo.max() <= 1
    photo.mean().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0 and torch.isfinite(images.grad).all()
    with pytest.raises(ValueError, match="generator input"):
        gen(torch.rand(1, 3, 32, 32))


def test_render_term_trains_logs_and_resumes_exactly(real_dir, tmp_path):
    """--render-weight adds the unpaired term on renders: its losses are logged, its discriminator
    is checkpointed, and a resumed run repeats the uninterrupted one."""
    extra = ["--render-weight", "1", "--structure-weight", "10", "--epochs", "1"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    with pytest.warns(UserWarning):
        assert main(["--real", str(real_dir), "--out", str(straight), *TINY, *extra]) == 0
        assert main(["--real", str(real_dir), "--out", str(split), *TINY, *extra, "--max-minutes", "0"]) == 0
        assert main(["--resume", str(split), "--no-progress", "--threads", "1"]) == 0
    a = [json.loads(x) for x in (straight / "log.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (split / "log.jsonl").read_text().splitlines()]
    assert a == b
    assert all({"loss_dr", "loss_render", "loss_structure"} <= set(r) for r in a)
    assert all(r["loss_structure"] > 0 for r in a)
    ckpt = load_checkpoint(straight / "last.pt")
    assert ckpt["config"]["render_weight"] == 1.0 and "state_dict" in ckpt["render_discriminator"]


def test_init_fine_tunes_from_a_trained_generator(real_dir, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    with pytest.warns(UserWarning):
        assert main(["--real", str(real_dir), "--out", str(first), *TINY, "--epochs", "1"]) == 0
        assert main(["--real", str(real_dir), "--out", str(second), *TINY, "--epochs", "1", "--max-minutes", "0",
                     "--init", str(first / "last.pt")]) == 0
    start = load_checkpoint(first / "last.pt")["generator"]["ema_state_dict"]
    after_one_step = load_checkpoint(second / "last.pt")["generator"]["ema_state_dict"]
    weights = [k for k in start if k.endswith(("weight", "bias"))]  # BatchNorm statistics move faster
    close = [torch.allclose(start[k], after_one_step[k], atol=1e-3) for k in weights]
    assert all(close), "the fine-tuned generator did not start from --init's weights"
    assert main(["--real", str(real_dir), "--out", str(tmp_path / "third"), *TINY, "--generator", "unet_s",
                 "--init", str(first / "last.pt")]) == 2  # another architecture is refused
