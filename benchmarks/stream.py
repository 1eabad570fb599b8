"""End-to-end PlateGANStream throughput through a real DataLoader (plates/s) and peak memory,
for num_workers 0 and 2 on CPU (and CUDA with num_workers 0 when present).

    python benchmarks/stream.py [--generator onnx|none|PATH] [--batch-size 256] [--batches 20] [--system-malloc]
                                 [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, set_malloc, write_json  # noqa: E402

from plateaug import (
    PlateGANStream,  # noqa: E402
    collate,
)


def peak_rss_mb() -> tuple[float, float]:
    """(this process, its finished children) peak resident memory in MB (Linux: KB units)."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


def run(args: argparse.Namespace, device: str, workers: int, sample_mode: bool) -> dict:
    gen = None if args.generator == "none" else args.generator
    if sample_mode:
        stream = PlateGANStream(mode=args.mode, device=device, seed=0, generator=gen, augment=args.augment,
                                chunk=args.batch_size)
        loader = DataLoader(stream, batch_size=args.batch_size, num_workers=workers, collate_fn=collate)
    else:
        stream = PlateGANStream(mode=args.mode, device=device, seed=0, generator=gen, augment=args.augment,
                                batch_size=args.batch_size)
        loader = DataLoader(stream, batch_size=None, num_workers=workers,
                            multiprocessing_context="spawn" if device.startswith("cuda") and workers else None)
    it = iter(loader)
    for _ in range(args.warmup):  # sessions, atlases and worker start-up are not timed
        next(it)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    n = 0
    for _ in range(args.batches):
        images, _ = next(it)
        n += len(images)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    del it
    own, children = peak_rss_mb()
    row = {"device": device, "num_workers": workers, "yield": "samples" if sample_mode else "batches",
           "batch_size": args.batch_size, "plates": n, "seconds": dt, "plates_per_s": n / dt,
           "peak_rss_mb": own, "peak_rss_children_mb": children}
    if device.startswith("cuda"):
        row["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", default="onnx")
    ap.add_argument("--mode", default="crop", choices=("crop", "scene"))
    ap.add_argument("--augment", default="light")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--workers", default="0,2")
    ap.add_argument("--system-malloc", action="store_true",
                    help="leave glibc malloc as it is (default: plateaug.tune_malloc, as a CPU stream sets it)")
    ap.add_argument("--json")
    args = ap.parse_args()
    malloc = set_malloc(args.system_malloc)
    torch.set_num_threads(os.cpu_count() or 1)
    rows = []
    for w in (int(x) for x in args.workers.split(",")):
        rows.append(run(args, "cpu", w, sample_mode=False))
    rows.append(run(args, "cpu", 0, sample_mode=True))
    if torch.cuda.is_available():
        rows.append(run(args, "cuda", 0, sample_mode=False))
    info = {**machine(), "malloc": malloc}
    print(f"machine: {info.get('cpu', info['processor'])}, {info['cpu_count']} cores, torch {info['torch']}, "
          f"malloc {malloc}"
          + (f", {info['gpu']}" if "gpu" in info else "") + f"; generator={args.generator}, mode={args.mode}, "
          f"augment={args.augment}")
    print(f"{'device':<7}{'workers':>8}{'yield':>9}{'B':>6}{'plates/s':>11}{'peak RSS MB':>13}{'children MB':>13}")
    for r in rows:
        print(f"{r['device']:<7}{r['num_workers']:>8}{r['yield']:>9}{r['batch_size']:>6}{r['plates_per_s']:>11,.0f}"
              f"{r['peak_rss_mb']:>13,.0f}{r['peak_rss_children_mb']:>13,.0f}")
    write_json(args.json, {"machine": info, "args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
