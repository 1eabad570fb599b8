"""Crash safety and concurrency of the CLIs, with real processes: SIGKILL mid-run then resume
equals an uninterrupted run (generate and train); two shard processes writing one folder at
once equal one process.

Subprocesses run with OMP_NUM_THREADS=1 (bit-exact comparisons need the same thread count in
every run, and CI has 2 cores).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fixtures import make_real
from PIL import Image

from plateaug.generate import main as generate_main
from plateaug.generator.checkpoint import load_checkpoint
from plateaug.train import main as train_main

ROOT = Path(__file__).resolve().parent.parent
ENV = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
ENV.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
GENERATE = [sys.executable, "-m", "plateaug.generate"]
TRAIN = [sys.executable, "-m", "plateaug.train"]


def _argv(*parts) -> list[str]:
    return [str(p) for p in parts]


def run_ok(cmd: list[str], log: Path, timeout: float = 120) -> None:
    """Run to completion; exit 0 required (the log is shown otherwise)."""
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=ENV, cwd=ROOT, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{log.read_text()[-3000:]}"


def kill_when(cmd: list[str], log: Path, ready, timeout: float = 60) -> None:
    """Start cmd and SIGKILL it as soon as ready() holds (polled every 10 ms). The process must
    still be running then, or the test would not test a crash."""
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=ENV, cwd=ROOT)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"{' '.join(cmd)} ended (exit {proc.returncode}) before the kill point:\n"
                            f"{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"kill point not reached within {timeout} s")
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run finished (exit {proc.returncode}) before the kill landed"


def files(folder: Path) -> dict[str, bytes]:
    """Every file's bytes; data.yaml holds the dataset's own absolute path, so that line is replaced."""
    out = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    if "data.yaml" in out:
        out["data.yaml"] = out["data.yaml"].replace(str(folder.resolve()).encode(), b"<dataset>")
    return out


def assert_same_tree(got: Path, want: Path) -> None:
    a, b = files(got), files(want)
    assert sorted(a) == sorted(b), f"file sets differ: only in {got}: {sorted(set(a) - set(b))[:10]}, " \
                                   f"only in {want}: {sorted(set(b) - set(a))[:10]}"
    differ = [k for k in a if a[k] != b[k]]
    assert not differ, f"files differ from the reference run: {differ[:10]}"


def assert_complete_items(out: Path) -> int:
    """Every item with a sidecar (written last) has an image that decodes fully; returns the count."""
    metas = sorted((out / "meta").glob("*.json"))
    for m in metas:
        item = json.loads(m.read_text(encoding="utf-8"))
        with Image.open(out / item["file"]) as im:
            im.load()
            assert im.size == (item["width"], item["height"])
    return len(metas)


# ---- generate: SIGKILL, resume ------------------------------------------------------------------------

GEN_ARGS = ["--n", "48", "--format", "coco", "--generator", "none", "--regions", "us,br_mercosur", "--batch-size", "4",
            "--no-progress", "--seed", "1"]


def test_generate_killed_then_resumed_equals_uninterrupted(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    run_ok(_argv(*GENERATE, "--out", full, *GEN_ARGS), tmp_path / "full.log")
    meta = part / "meta"
    kill_when(_argv(*GENERATE, "--out", part, *GEN_ARGS), tmp_path / "killed.log",
              lambda: meta.is_dir() and sum(1 for _ in meta.glob("*.json")) >= 6)
    done = assert_complete_items(part)  # what survived the kill is whole
    assert 6 <= done < 48 and not (part / "annotations.json").exists()
    run_ok(_argv(*GENERATE, "--out", part, *GEN_ARGS), tmp_path / "resumed.log")
    assert not list(part.rglob("*.tmp")), "temp files left behind"
    assert assert_complete_items(part) == 48
    for p in (part / "images").iterdir():
        with Image.open(p) as im:
            im.load()
    assert_same_tree(part, full)  # annotations.json and preview.png included


# ---- train: SIGKILL, resume ---------------------------------------------------------------------------

TRAIN_ARGS = ["--generator", "unet_xs", "--epochs", "3", "--batch-size", "4", "--min-per-group", "8",
              "--canvas", "br=32x96", "--canvas", "us=48x96", "--threads", "1", "--no-progress"]


def _log(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]


def test_train_killed_then_resumed_equals_uninterrupted(tmp_path):
    real = make_real(tmp_path / "real")
    straight, split = tmp_path / "straight", tmp_path / "split"
    run_ok(_argv(*TRAIN, "--real", real, "--out", straight, *TRAIN_ARGS), tmp_path / "straight.log")
    kill_when(_argv(*TRAIN, "--real", real, "--out", split, *TRAIN_ARGS), tmp_path / "killed.log",
              lambda: (split / "last.pt").exists())  # checkpoints are written at epoch ends
    at_kill = load_checkpoint(split / "last.pt")
    assert 1 <= at_kill["epoch"] < 3 and at_kill["step_in_epoch"] == 0
    run_ok(_argv(*TRAIN, "--resume", split, "--threads", "1", "--no-progress"), tmp_path / "resumed.log")
    a, b = _log(straight), _log(split)
    assert [r["global_step"] for r in b] == list(range(1, len(a) + 1)), "log lines lost or repeated"
    assert a == b, "losses after the kill and resume differ from the uninterrupted run"
    ca, cb = load_checkpoint(straight / "last.pt"), load_checkpoint(split / "last.pt")
    assert ca["epoch"] == cb["epoch"] == 3 and ca["global_step"] == cb["global_step"]
    for key in ("ema_state_dict", "state_dict"):
        wa, wb = ca["generator"][key], cb["generator"][key]
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa), f"generator {key} differs"
    assert json.loads((split / "summary.json").read_text())["stopped"] == "finished"


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # train.main sets the process-wide thread count


def test_resume_survives_a_torn_last_log_line(tmp_path, keep_threads):
    real, run = make_real(tmp_path / "real"), tmp_path / "run"
    args = ["--real", str(real), "--out", str(run), *TRAIN_ARGS, "--epochs", "1"]
    with pytest.warns(UserWarning, match="broken.jpg"):
        assert train_main([*args, "--max-minutes", "0"]) == 0  # one step, then a checkpoint
    with open(run / "log.jsonl", "a") as f:
        f.write('{"global_step": 2, "epoch": 0, "region": "b')  # the kill landed mid-line
    with pytest.warns(UserWarning, match="broken.jpg"):
        assert train_main(["--resume", str(run), "--threads", "1", "--no-progress"]) == 0
    steps = [r["global_step"] for r in _log(run)]
    assert steps == list(range(1, len(steps) + 1))


# ---- two shard processes at once ---------------------------------------------------------------------

# --n 48 on 2 shards: shard 0 owns items 0-23 (a contiguous half), so the preview it draws from
# items 0-15 never reads the other shard's items (see test_shard_0_finishing_first_succeeds).
SHARD_ARGS = {
    "yolo": ["--n", "48", "--format", "yolo", "--mode", "crop", "--generator", "none", "--regions",
             "us,br_mercosur", "--batch-size", "16", "--no-progress", "--seed", "2"],
    "coco": ["--n", "48", "--format", "coco", "--mode", "scene", "--image-size", "128x192", "--generator", "none",
             "--regions", "us,br_mercosur", "--batch-size", "16", "--no-progress", "--seed", "2"],
}


@pytest.mark.parametrize("fmt", ["yolo", "coco"])
def test_two_shard_processes_at_once_equal_one_process(tmp_path, fmt):
    shared, ref = tmp_path / "shared", tmp_path / "ref"
    args = SHARD_ARGS[fmt]
    logs = [open(tmp_path / f"shard{i}.log", "w") for i in (0, 1)]
    try:
        procs = [subprocess.Popen(_argv(*GENERATE, "--out", shared, *args, "--shards", 2, "--shard", i),
                                  stdout=logs[i], stderr=subprocess.STDOUT, env=ENV, cwd=ROOT) for i in (0, 1)]
        codes = [p.wait(timeout=180) for p in procs]
    finally:
        for f in logs:
            f.close()
    assert codes == [0, 0], [(tmp_path / f"shard{i}.log").read_text()[-2000:] for i in (0, 1)]
    run_ok(_argv(*GENERATE, "--out", ref, *args), tmp_path / "ref.log")
    assert not list(shared.rglob("*.tmp")), "temp files left behind"
    if fmt == "yolo":
        assert files(shared)["data.yaml"] == files(ref)["data.yaml"]  # all but the dataset's own path
        labels = sorted(p.name for p in (ref / "labels").glob("*.txt"))
        assert len(labels) == 48 and sorted(p.name for p in (shared / "labels").glob("*.txt")) == labels
        for name in labels:
            assert (shared / "labels" / name).read_bytes() == (ref / "labels" / name).read_bytes(), name
    else:
        got = json.loads((shared / "annotations.json").read_text(encoding="utf-8"))
        want = json.loads((ref / "annotations.json").read_text(encoding="utf-8"))
        assert len(got["images"]) == 48 and got == want
    assert_same_tree(shared, ref)  # images, sidecars and preview too


def test_shard_0_finishing_first_succeeds(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--n", "16", "--out", str(out), "--format", "yolo", "--mode", "crop", "--generator", "none",
            "--regions", "us", "--batch-size", "4", "--no-progress", "--shards", "2"]
    assert generate_main([*args, "--shard", "0"]) == 0, capsys.readouterr().err
    assert generate_main([*args, "--shard", "1"]) == 0, capsys.readouterr().err
    assert (out / "data.yaml").exists() and (out / "preview.png").exists()
    assert len(list((out / "labels").glob("*.txt"))) == 16
