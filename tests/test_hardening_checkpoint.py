"""Checkpoint hardening (issue #13): a model file cannot run code (weights_only loading through
every entry path), `--resume RUN_DIR` writes to RUN_DIR only, `--resume --epochs N` is honoured,
and a checkpoint missing keys gets a clear error naming the file and the keys."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fixtures import make_real, random_generator

from plateaug import PlateGANStream, TorchGenerator
from plateaug.export import main as export_main
from plateaug.generate import main as generate_main
from plateaug.generator.checkpoint import FORMAT, atomic_save, generator_checkpoint, load_checkpoint
from plateaug.generator.shipped import DEFAULT_CHECKPOINT
from plateaug.train import main as train_main
from plateaug.training.trainer import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--generator", "unet_xs", "--batch-size", "4", "--min-per-group", "8", "--canvas", "br=32x96",
        "--canvas", "us=48x96", "--val-percent", "25", "--no-progress", "--threads", "1"]
RESUME = ["--no-progress", "--threads", "1"]


@pytest.fixture(autouse=True)
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # train.main sets the process-wide thread count


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory) -> Path:
    return make_real(tmp_path_factory.mktemp("real") / "real")


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def changed(folder: Path, before: dict[str, bytes]) -> list[str]:
    """Files of `folder` added, removed or rewritten since `before` (a `tree`)."""
    now = tree(folder)
    return sorted(k for k in {*now, *before} if now.get(k) != before.get(k))


def log_of(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]


def train(*argv: str) -> int:
    with pytest.warns(UserWarning, match="broken.jpg"):  # make_real's corrupt crop
        return train_main(list(argv))


# ---- 1. a model file cannot run code ---------------------------------------------------------------


class _RunsCode:
    """Unpickling this calls exec: with weights_only=False it creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.fixture
def hostile(tmp_path) -> tuple[Path, Path]:
    """(checkpoint whose pickle would create `marker`, marker). It carries the right format tag
    and real generator weights, so only the payload makes it bad."""
    marker = tmp_path / "PWNED"
    ckpt = generator_checkpoint(random_generator())
    ckpt["training_data"] = {"note": _RunsCode(marker)}
    path = tmp_path / "hostile.pt"
    torch.save(ckpt, path)
    torch.load(path, weights_only=False)  # the payload is live: an unsafe load runs it ...
    assert marker.exists()
    marker.unlink()  # ... so the entry points below are tested against a real attack
    return path, marker


def test_load_checkpoint_refuses_code_and_runs_nothing(hostile):
    path, marker = hostile
    with pytest.raises(ValueError, match="not a safe plain checkpoint") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "weights_only=False" not in str(err.value)
    assert not marker.exists()


def test_plain_pickle_refused_too(hostile, tmp_path):
    """Not torch's zip format but a bare pickle (torch's legacy format): refused the same way."""
    _, marker = hostile
    path = tmp_path / "bare.pt"
    path.write_bytes(pickle.dumps({"format": FORMAT, "x": _RunsCode(marker)}, protocol=2))
    with pytest.raises(ValueError, match="not a safe plain checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


def test_torch_generator_and_stream_refuse_code(hostile, tmp_path):
    path, marker = hostile
    with pytest.raises(ValueError, match="not a safe plain checkpoint"):
        TorchGenerator(path)
    stream = PlateGANStream(generator=path, seed=0, batch_size=2, augment=None)
    with pytest.raises(ValueError, match="not a safe plain checkpoint"):
        next(iter(stream))  # the backend is built on first use
    assert not marker.exists()


def test_generate_cli_refuses_code(hostile, tmp_path, capsys):
    path, marker = hostile
    rc = generate_main(["--n", "2", "--batch-size", "2", "--out", str(tmp_path / "ds"), "--format", "ocr",
                        "--generator", str(path), "--no-progress"])
    assert rc != 0 and "not a safe plain checkpoint" in capsys.readouterr().err
    assert not marker.exists()


def test_export_cli_refuses_code(hostile, tmp_path):
    path, marker = hostile
    proc = subprocess.run([sys.executable, "-m", "plateaug.export", str(path), "--out", str(tmp_path / "x.onnx")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr
    assert "not a safe plain checkpoint" in proc.stderr and str(path) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists() and not (tmp_path / "x.onnx").exists()


def test_train_resume_refuses_code(hostile, tmp_path, capsys):
    path, marker = hostile
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(path, run / "last.pt")
    assert train_main(["--resume", str(run), *RESUME]) == 2
    assert "not a safe plain checkpoint" in capsys.readouterr().err
    assert not marker.exists()


def test_shipped_checkpoint_is_plain():
    ckpt = torch.load(DEFAULT_CHECKPOINT, weights_only=True)
    assert ckpt["format"] == FORMAT
    TorchGenerator(DEFAULT_CHECKPOINT)


def test_trainer_saves_plain_types_even_from_path_config(real_dir, tmp_path):
    """A TrainConfig built through the API with pathlib paths: the run (config.json included)
    works and last.pt loads with weights_only=True, paths stored as strings."""
    cfg = TrainConfig(real=real_dir, out=tmp_path / "run", generator="unet_xs", epochs=1, batch_size=4,
                      min_per_group=8, canvases={"br": [32, 96], "us": [48, 96]})
    with pytest.warns(UserWarning, match="broken.jpg"):
        Trainer(cfg, max_minutes=0, progress=False).run()
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["config"]["real"] == str(real_dir) and ckpt["config"]["out"] == str(tmp_path / "run")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["real"] == str(real_dir)


def test_older_checkpoint_with_paths_still_loads(tmp_path):
    """pathlib paths (harmless: building one only parses a string) are the one non-plain type
    allowed, for files written before the trainer saved plain types."""
    model = random_generator()
    ckpt = generator_checkpoint(model)
    ckpt["training_data"] = {"folder": Path("some/real")}
    torch.save(ckpt, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt")["training_data"]["folder"] == Path("some/real")
    x = torch.rand(1, 4, 32, 64)
    with torch.no_grad():
        assert torch.equal(TorchGenerator(tmp_path / "old.pt")(x), model(x))


# ---- 2. --resume RUN_DIR writes to RUN_DIR only ----------------------------------------------------


def test_resume_of_a_copy_writes_only_to_the_copy(real_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the run is started with a relative --out, as from a shell
    assert train("--real", str(real_dir), "--out", "run", *TINY, "--epochs", "1", "--max-minutes", "0") == 0
    original = tree(tmp_path / "run")
    assert json.loads(original["summary.json"])["global_step"] == 1
    shutil.copytree(tmp_path / "run", tmp_path / "copy_here")
    shutil.copytree(tmp_path / "run", tmp_path / "copy_there")
    # same cwd: the checkpoint's out ("run") would be the original
    assert train("--resume", "copy_here", *RESUME) == 0
    # another cwd: the checkpoint's out would be a new folder there
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert train("--resume", str(tmp_path / "copy_there"), *RESUME) == 0
    assert changed(tmp_path / "run", original) == [], "resuming a copy changed the original run"
    assert list(elsewhere.iterdir()) == [], "resume wrote outside RUN_DIR"
    for copy in ("copy_here", "copy_there"):
        run = tmp_path / copy
        summary = json.loads((run / "summary.json").read_text())
        assert summary["stopped"] == "finished" and summary["epochs_done"] == 1 and summary["global_step"] > 1
        assert (run / "samples" / "epoch_000.png").exists()
        assert load_checkpoint(run / "last.pt")["epoch"] == 1
        assert [r["global_step"] for r in log_of(run)] == list(range(1, summary["global_step"] + 1))


# ---- 3. --resume --epochs N ------------------------------------------------------------------------


def test_resume_with_more_epochs_equals_a_run_started_with_them(real_dir, tmp_path):
    """Stopped in the constant-LR half of a 1-epoch run, resumed with --epochs 2: the same
    losses and weights as a run started with --epochs 2 (the LR schedule follows the new total)."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train("--real", str(real_dir), "--out", str(straight), *TINY, "--epochs", "2") == 0
    assert train("--real", str(real_dir), "--out", str(split), *TINY, "--epochs", "1", "--max-minutes", "0") == 0
    assert train("--resume", str(split), "--epochs", "2", *RESUME) == 0
    assert log_of(split) == log_of(straight)
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(split / "last.pt")
    assert b["epoch"] == 2 and b["config"]["epochs"] == 2
    assert json.loads((split / "config.json").read_text())["epochs"] == 2
    assert all(torch.equal(a["generator"]["ema_state_dict"][k], v) for k, v in b["generator"]["ema_state_dict"].items())
    assert json.loads((split / "summary.json").read_text())["epochs_done"] == 2


def test_resume_with_fewer_epochs(real_dir, tmp_path):
    """A 3-epoch run stopped in epoch 0, resumed with --epochs 1: finishes epoch 0 and stops."""
    run = tmp_path / "run"
    assert train("--real", str(real_dir), "--out", str(run), *TINY, "--epochs", "3", "--max-minutes", "0") == 0
    assert train("--resume", str(run), "--epochs", "1", *RESUME) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped"] == "finished" and summary["epochs_done"] == 1
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["step_in_epoch"] == 0 and ckpt["config"]["epochs"] == 1


def test_resume_refuses_epochs_below_done_and_run_defining_options(real_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert train("--real", str(real_dir), "--out", str(run), *TINY, "--epochs", "2") == 0
    before = tree(run)
    assert train_main(["--resume", str(run), "--epochs", "1", *RESUME]) == 2
    err = capsys.readouterr().err
    assert "--epochs 1" in err and "2 epoch(s)" in err and str(run) in err
    for extra in (["--epochs", "0"], ["--lr", "0.1"], ["--out", str(tmp_path / "other")],
                  ["--canvas", "us=32x64"], ["--seed", "0"]):  # --seed 0 is the default: still refused
        with pytest.raises(SystemExit) as exit_:
            train_main(["--resume", str(run), *extra, *RESUME])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert ("--epochs must be >= 1" in err) if extra[0] == "--epochs" else (f"{extra[0]} cannot be changed" in err)
    assert changed(run, before) == [] and not (tmp_path / "other").exists()


# ---- 4. the right format tag, keys missing -----------------------------------------------------------


def _without(ckpt: dict, *keys: str) -> dict:
    for key in keys:
        *parents, last = key.split(".")
        node = ckpt
        for part in parents:
            node = node[part]
        del node[last]
    return ckpt


def test_generator_checkpoint_missing_keys_is_a_clear_error(tmp_path, capsys):
    path = atomic_save(_without(generator_checkpoint(random_generator()), "generator.ema_state_dict"),
                       tmp_path / "no_ema.pt")
    with pytest.raises(ValueError) as err:
        TorchGenerator(path)
    assert str(path) in str(err.value) and "missing generator.ema_state_dict" in str(err.value)
    assert export_main([str(path), "--out", str(tmp_path / "x.onnx")]) == 2
    out = capsys.readouterr().err
    assert str(path) in out and "missing generator.ema_state_dict" in out and not (tmp_path / "x.onnx").exists()
    no_gen = atomic_save(_without(generator_checkpoint(random_generator()), "generator"), tmp_path / "no_gen.pt")
    with pytest.raises(ValueError, match="missing generator.config, generator.ema_state_dict"):
        TorchGenerator(no_gen)


def test_resume_from_a_checkpoint_missing_keys_is_a_clear_error(real_dir, tmp_path, capsys):
    """A generator-only checkpoint (what `export --torch-out` writes) as RUN_DIR/last.pt."""
    run = tmp_path / "run"
    ckpt = generator_checkpoint(random_generator())
    ckpt["config"] = {"real": str(real_dir), "out": str(run), "generator": "unet_xs"}
    atomic_save(ckpt, run / "last.pt")
    assert train_main(["--resume", str(run), *RESUME]) == 2
    err = capsys.readouterr().err
    assert str(run / "last.pt") in err and "to resume training" in err
    assert "missing discriminator.state_dict, opt_g, opt_d, epoch, step_in_epoch" in err
    assert sorted(p.name for p in run.iterdir()) == ["last.pt"]
