"""python -m plateaug.generate hardening (issue #13 items 5, 6, 10): settings recorded and
checked on rerun, one process per shard (OS lock), stale temp files, torchrun-safe options and a
real torchrun run, every shard gets work, --generator checked at parse time, progress."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import plateaug.generate as gen
from plateaug.generate import main
from plateaug.writers.folder import FolderLock

ROOT = Path(__file__).resolve().parent.parent
ENV = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
ENV.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
FAST = ["--generator", "none", "--regions", "us,br_mercosur", "--no-progress", "--batch-size", "4",
        "--mode", "crop", "--image-size", "32x96"]


def _run(out: Path, *argv: str) -> int:
    return main(["--out", str(out), *FAST, *argv])


def _files(folder: Path, skip=("data.yaml",)) -> dict[str, bytes]:
    """Every file by relative path (data.yaml names its own absolute folder, so it is left out)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in skip}


def _stems(out: Path) -> list[int]:
    return sorted(int(p.stem) for p in (out / "meta").glob("*.json"))


# ---- item 5: settings recorded, a rerun with other settings refused --------------------------------

def test_settings_recorded_on_first_run(tmp_path):
    out = tmp_path / "d"
    assert _run(out, "--count", "3", "--seed", "7") == 0
    rec = json.loads((out / "settings.json").read_text(encoding="utf-8"))
    assert rec["count"] == 3 and rec["seed"] == 7 and rec["batch_size"] == 4 and rec["mode"] == "crop"
    assert rec["regions"] == ["us", "br_mercosur"] and rec["image_size"] == [32, 96]
    assert rec["generator"] == "none" and rec["generator_sha256"] is None and rec["format"] == "yolo"
    assert "shards" not in rec and "shard" not in rec  # sharding does not change the content
    assert not list(out.glob(".*.lock")), "lock files are removed on exit"


@pytest.mark.parametrize("change,expect", [
    (["--seed", "1"], "--seed: was 0, now 1"),
    (["--format", "coco"], '--format: was "yolo", now "coco"'),
    (["--batch-size", "8"], "--batch-size: was 4, now 8"),
    (["--mode", "scene"], '--mode: was "crop", now "scene"'),
    (["--image-size", "40x96"], "--image-size: was [32, 96], now [40, 96]"),
    (["--regions", "br_mercosur,us"], '--regions: was ["us", "br_mercosur"], now ["br_mercosur", "us"]'),
    (["--generator", "onnx"], '--generator: was "none", now "onnx" (sha256 '),
    (["--augment", "heavy"], '--augment: was "light", now "heavy"'),
    (["--image-format", "png"], '--image-format: was "jpg", now "png"'),
])
def test_rerun_with_other_settings_is_refused(tmp_path, capsys, change, expect):
    out = tmp_path / "d"
    assert _run(out, "--count", "4") == 0
    before = _files(out, skip=())
    capsys.readouterr()
    assert _run(out, "--count", "4", *change) == 2
    err = capsys.readouterr().err
    assert "was written with other settings" in err and expect in err, err
    assert err.count(": was ") == 1, f"only the setting that differs is named: {err}"
    assert _files(out, skip=()) == before, "a refused run must not touch the folder"


def test_all_differences_listed_at_once(tmp_path, capsys):
    out = tmp_path / "d"
    assert _run(out, "--count", "4") == 0
    capsys.readouterr()
    assert _run(out, "--count", "4", "--seed", "2", "--format", "ocr") == 2
    err = capsys.readouterr().err
    assert "--seed: was 0, now 2" in err and '--format: was "yolo", now "ocr"' in err


def test_same_settings_resume_and_sharding_is_not_a_setting(tmp_path):
    out, ref = tmp_path / "d", tmp_path / "ref"
    assert _run(ref, "--count", "10", "--format", "coco") == 0
    assert _run(out, "--count", "10", "--format", "coco", "--shards", "3", "--shard", "2") == 0
    assert _run(out, "--n", "10", "--format", "coco", "--shards", "2", "--shard", "0") == 0  # alias, other split
    (out / "meta" / "00000004.json").unlink()  # an interrupted item
    assert main(["--out", str(out), *FAST, "--count", "10", "--format", "coco", "--device", "cpu:0"]) == 0
    assert _files(out) == _files(ref)


def test_count_may_grow_when_it_keeps_every_item(tmp_path):
    out, ref = tmp_path / "d", tmp_path / "ref"
    assert _run(out, "--count", "8", "--format", "coco") == 0  # 8 = two whole batches of 4
    assert _run(out, "--count", "12", "--format", "coco") == 0
    assert _run(ref, "--count", "12", "--format", "coco") == 0
    assert json.loads((out / "settings.json").read_text())["count"] == 12
    assert _files(out) == _files(ref)


@pytest.mark.parametrize("first,second,hint", [
    ("10", "12", "items 8-9 of the last, partial batch would change"),
    ("8", "6", "a smaller count would leave"),
])
def test_count_change_that_would_alter_items_is_refused(tmp_path, capsys, first, second, hint):
    out = tmp_path / "d"
    assert _run(out, "--count", first) == 0
    capsys.readouterr()
    assert _run(out, "--count", second) == 2
    err = capsys.readouterr().err
    assert f"--count: was {first}, now {second}" in err and hint in err, err


def test_unreadable_settings_file(tmp_path, capsys):
    out = tmp_path / "d"
    assert _run(out, "--count", "2") == 0
    (out / "settings.json").write_text("{torn")
    assert _run(out, "--count", "2") == 2
    assert "settings.json is unreadable" in capsys.readouterr().err


def test_folder_of_an_older_version_is_adopted_with_a_warning(tmp_path, capsys):
    out = tmp_path / "d"
    assert _run(out, "--count", "4") == 0
    (out / "settings.json").unlink()
    capsys.readouterr()
    assert _run(out, "--count", "4") == 0
    assert "recorded no settings" in capsys.readouterr().err
    assert (out / "settings.json").exists()


# ---- item 5: one process per shard, stale locks and temp files ----------------------------------------

HOLD = ("import sys, time; from plateaug.writers.folder import shard_lock; "
        "lock = shard_lock(sys.argv[1], sys.argv[2]); print('held', flush=True); time.sleep(300)")


def _holder(out: Path, tag: str) -> subprocess.Popen:
    """Another process that holds the lock of shard `tag` (as a running generate would)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out), tag], stdout=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_second_process_on_a_shard_is_told_it_is_busy(tmp_path, capsys):
    out = tmp_path / "d"
    assert _run(out, "--count", "8") == 0
    (out / "meta" / "00000003.json").unlink()
    stale = out / "images" / ".00000003.jpg.shard0.tmp"
    stale.write_bytes(b"half")
    proc = _holder(out, "shard0")
    try:
        capsys.readouterr()
        assert _run(out, "--count", "8") == 3
        err = capsys.readouterr().err
        assert "shard0" in err and "being written by another process" in err and f"pid {proc.pid}" in err, err
        assert "Errno" not in err
        assert stale.exists(), "the temp files of a shard held by another process are left alone"
        assert _run(out, "--count", "8", "--shards", "2", "--shard", "1") == 0  # other shards are free
    finally:
        _kill(proc)  # killed: the kernel drops its lock, the lock file stays behind
    assert (out / ".shard0.lock").exists()
    assert _run(out, "--count", "8") == 0, "a stale lock of a killed process must not block a rerun"
    assert not stale.exists() and not list(out.rglob("*.tmp")) and not list(out.glob(".*.lock"))
    assert _stems(out) == list(range(8))


def test_stale_temp_files_of_any_free_shard_are_cleaned(tmp_path):
    out = tmp_path / "d"
    assert _run(out, "--count", "8", "--shards", "2", "--shard", "1") == 0
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftovers = [out / "images" / ".00000005.jpg.shard1.tmp", out / "meta" / ".00000006.json.shard3.tmp",
                 out / f".preview.png.{int(dead.stdout)}.tmp", out / ".settings.json.settings.tmp"]
    for p in leftovers:
        p.write_bytes(b"half")
    held = out / "labels" / ".00000007.txt.shard2.tmp"
    held.write_bytes(b"half")
    proc = _holder(out, "shard2")
    try:
        assert _run(out, "--count", "8", "--shards", "2", "--shard", "0") == 0
        assert held.exists()
    finally:
        _kill(proc)
    assert not any(p.exists() for p in leftovers)


def test_lock_survives_the_release_race(tmp_path):
    """The lock file is removed on release; a process that opened it before must not end up
    holding a lock on the removed file while a third locks a new one."""
    a, b, c = FolderLock(tmp_path, "shard0"), FolderLock(tmp_path, "shard0"), FolderLock(tmp_path, "shard0")
    assert a.acquire(blocking=False)
    assert not b.acquire(blocking=False)
    a.release()
    assert b.acquire(blocking=False) and not c.acquire(blocking=False)
    b.release()
    assert c.acquire(blocking=False)
    c.release()


# ---- item 6: every shard gets work; torchrun -----------------------------------------------------------

def test_small_job_is_split_over_every_shard(tmp_path, monkeypatch):
    out, ref = tmp_path / "d", tmp_path / "ref"
    args = ["--count", "10", "--format", "coco", "--batch-size", "64"]
    for rank in (2, 0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "3")
        before = set(_stems(out)) if (out / "meta").exists() else set()
        assert _run(out, *args) == 0
        assert set(_stems(out)) - before == set(range([0, 4, 7][rank], [4, 7, 10][rank]))
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert _run(ref, *args) == 0
    assert _files(out) == _files(ref)


def test_no_option_is_taken_by_torchrun():
    """torchrun parses the whole command line, script arguments included: an option of ours
    that is a prefix of one of torchrun's is an 'ambiguous option' (or silently torchrun's)."""
    from torch.distributed.run import get_args_parser

    theirs = [s for a in get_args_parser()._actions for s in a.option_strings if s.startswith("--")]
    ours = _our_options()
    assert "--count" in ours
    clash = {o: [t for t in theirs if t.startswith(o)] for o in ours if o != "--n"}
    assert not any(clash.values()), clash


def _our_options() -> list[str]:
    import argparse

    seen: list[str] = []
    real = argparse.ArgumentParser.add_argument

    def spy(self, *names, **kw):
        seen.extend(n for n in names if n.startswith("--"))
        return real(self, *names, **kw)

    argparse.ArgumentParser.add_argument = spy
    try:
        gen.parse_args(["--count", "1", "--out", "x"])
    finally:
        argparse.ArgumentParser.add_argument = real
    return [n for n in seen if n != "--help"]


def test_readme_torchrun_command_parses():
    from torch.distributed.run import get_args_parser

    lines = [ln.split("#")[0] for ln in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
             if ln.startswith("torchrun ") and "plateaug.generate" in ln]
    assert lines, "README shows the torchrun command"
    for line in lines:
        ns = get_args_parser().parse_args(shlex.split(line)[1:])  # exits on 'ambiguous option'
        assert ns.module and ns.training_script == "plateaug.generate"
        args = gen.parse_args(ns.training_script_args)
        assert args.n == 100000


def test_real_torchrun_two_ranks_equal_one_process(tmp_path):
    shared, ref = tmp_path / "shared", tmp_path / "ref"
    args = ["--count", "40", "--format", "yolo", "--mode", "crop", "--generator", "none", "--regions", "us",
            "--image-size", "32x96", "--no-progress", "--seed", "5"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "plateaug.generate", "--out", str(shared), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "shard 0/2: 20 items (0-19), 20 written by this run" in log, log[-3000:]
    assert "shard 1/2: 20 items (20-39), 20 written by this run" in log, log[-3000:]
    one = subprocess.run([sys.executable, "-m", "plateaug.generate", "--out", str(ref), *args],
                         capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    a, b = _files(shared), _files(ref)
    assert len([k for k in a if k.startswith("labels/")]) == 40
    assert sorted(a) == sorted(b) and [k for k in a if a[k] != b[k]] == []


# ---- item 10: --generator checked when parsing; progress -----------------------------------------------

@pytest.mark.parametrize("value,match", [
    ("onxx", "generator must be 'auto', 'onnx', 'torch', 'torch-bf16', 'none', or a path to an existing .onnx/.pt "
             "file; got 'onxx'"),
    ("/nonexistent/model.onnx", "generator model /nonexistent/model.onnx does not exist"),
])
def test_generator_checked_when_parsing(tmp_path, capsys, value, match):
    with pytest.raises(SystemExit) as e:
        main(["--count", "2", "--out", str(tmp_path / "x"), "--generator", value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "argument --generator" in err and match in err, err
    assert not (tmp_path / "x").exists()


def test_generator_accepts_names_and_existing_files(tmp_path):
    model = tmp_path / "g.onnx"
    model.write_bytes(b"x")
    for value in ("onnx", "torch", "none", str(model)):
        assert gen.parse_args(["--count", "1", "--out", "o", "--generator", value]).generator == value


class _Bar:
    """Records what generate does with its tqdm bar."""

    bars: list[_Bar] = []

    def __init__(self, total=None, initial=0, **kw):
        self.total, self.n, self.calls = total, initial, [("init", initial)]
        _Bar.bars.append(self)

    def update(self, k=1):
        self.n += k
        self.calls.append(("update", k))

    def set_postfix_str(self, s="", refresh=True):
        self.calls.append(("postfix", s))

    def refresh(self):
        pass

    def close(self):
        self.calls.append(("close", None))


def test_progress_shows_each_batch_at_once_and_counts_items(tmp_path, monkeypatch):
    _Bar.bars = []
    monkeypatch.setattr(gen, "tqdm", _Bar)
    real = gen.PlateGANStream.make_batch

    def make_batch(self, n, seed):
        _Bar.bars[-1].calls.append(("make_batch", n))
        return real(self, n, seed)

    monkeypatch.setattr(gen.PlateGANStream, "make_batch", make_batch)
    out = tmp_path / "d"
    argv = ["--out", str(out), *[a for a in FAST if a != "--no-progress"], "--count", "10"]  # with the bar
    assert main(argv) == 0
    bar = _Bar.bars[-1]
    assert bar.total == 10 and bar.n == 10
    calls = bar.calls
    first = calls.index(("make_batch", 4))
    assert ("postfix", "generating batch 1/3") in calls[:first], "the bar says what it does before the first batch"
    assert [c for c in calls if c[0] == "update"] == [("update", 1)] * 10, "one step per item written"
    # resume: the bar starts at what is done and counts only what is written now
    for name in ("00000001", "00000009"):
        (out / "meta" / f"{name}.json").unlink()
    assert main(argv) == 0
    bar = _Bar.bars[-1]
    assert bar.calls[0] == ("init", 8) and bar.n == 10
    assert [c for c in bar.calls if c[0] == "make_batch"] == [("make_batch", 4), ("make_batch", 2)]
