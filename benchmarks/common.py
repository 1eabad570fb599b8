"""Shared helpers for the benchmarks: timing with medians, machine description, JSON output."""

from __future__ import annotations

import importlib.metadata
import json
import multiprocessing
import os
import platform
import statistics
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import date
from pathlib import Path

import torch

from plateaug import tune_malloc

DATA_ENV = "PLATEAUG_DATA"  # the folder holding real-plates/ and real-scenes/ (default: ../shared/data)
DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def data_dir(name: str) -> Path:
    """Default folder of a real data set for a benchmark: $PLATEAUG_DATA/name, else ../shared/data/name
    beside the project. (The test suite points PLATEAUG_DATA at a missing folder, so a test that
    relies on a default data path fails everywhere, not only where ../shared happens to exist.)"""
    return Path(os.environ.get(DATA_ENV) or DEFAULT_DATA) / name


def missing_data(option: str, path: Path, needs: str) -> str | None:
    """One line for a data folder that is not there: which folder, what it must hold, how to point at
    another; None when `needs` (a file inside it) exists."""
    if (path / needs).is_file():
        return None
    what = "is missing" if not path.exists() else f"holds no {needs}"
    return (f"{option} {path} {what}: pass {option} DIR (a folder with {needs}) or set {DATA_ENV} to the folder "
            f"that holds it")


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1, device: str = "cpu") -> float:
    """Median wall time of fn() over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def set_malloc(system: bool) -> str:
    """The process's malloc as a CPU PlateGANStream leaves it (plateaug.tune_malloc), set before
    anything is timed so every row sees the same allocator; with system=True (--system-malloc) glibc's
    own dynamic thresholds, and PLATEAUG_MALLOC=system keeps the stream from tuning it."""
    if system:
        os.environ["PLATEAUG_MALLOC"] = "system"
        return "system"
    return "tuned" if tune_malloc() else "system (no glibc)"


def machine() -> dict:
    """What the numbers were measured on."""
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "date": date.today().isoformat()}
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        if names:
            info["cpu"] = names[0]
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    # the pixels and the recogniser's bf16 kernels depend on these (and on the CPU): a run on another
    # machine or with other versions is not the same run
    info["packages"] = {name: _version(name) for name in ("kornia", "numpy", "pillow", "onnxruntime-gpu",
                                                          "onnxruntime")}
    # the typefaces the regions draw depend on the installed font packs (e.g. the AGPL-3.0 extras)
    from plateaug.renderer.font_packs import installed_font_dirs
    info["font_packs"] = [str(d) for d in installed_font_dirs()]
    return info


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def write_json(path: str | Path | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=1, ensure_ascii=False))
        print(f"wrote {path}")


def write_outputs(payload: dict, json_path: str | Path | None, txt_path: str | Path | None) -> None:
    """A benchmark's results: its printed table (payload["text"]) to txt_path, everything to json_path."""
    if txt_path:
        Path(txt_path).parent.mkdir(parents=True, exist_ok=True)
        Path(txt_path).write_text(payload["text"].lstrip("\n") + "\n", encoding="utf-8")
    write_json(json_path, payload)


def executor(jobs: int, init: Callable, initargs: tuple):
    """Run submitted jobs in `jobs` spawned worker processes (each set up by init(*initargs)), or in
    this process, one at a time as submitted, when jobs == 1."""
    if jobs == 1:
        init(*initargs)
        return _InProcess()
    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=init,
                               initargs=initargs)


def in_fresh_process(fn: Callable, *args, init: Callable, initargs: tuple):
    """fn(*args) in a fresh spawned process set up by init(*initargs), which exits when it returns:
    whatever state fn leaves behind does not outlive it."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=init,
                             initargs=initargs) as ex:
        return ex.submit(fn, *args).result()


class _InProcess:
    """ProcessPoolExecutor's submit / context manager, running each job at once in this process."""

    def __enter__(self) -> _InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn, *args) -> Future:
        f: Future = Future()
        f.set_result(fn(*args))
        return f
