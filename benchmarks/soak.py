"""Soak test: run PlateGANStream for many batches through a DataLoader and watch memory.

Samples the resident set size (RSS, this process plus DataLoader workers) and, on CUDA, torch's
allocated / peak memory and the device memory in use (torch.cuda.mem_get_info: everything on the
GPU, ONNX Runtime's arena included, which torch's counters do not see) every K batches; prints
memory over time, the growth after warm-up (the first 5% of batches; compared as floors over the
first and last samples, see `growth`) and plates/s; exits 1 when memory grew more than
--max-growth percent (default 5).

    python benchmarks/soak.py                          # 10,000 batches of 32, clean renders (no model needed)
    python benchmarks/soak.py --quick                  # 200 batches: a smoke run
    python benchmarks/soak.py --generator onnx --device cuda --json soak_cuda.json
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_json  # noqa: E402

from plateaug import PlateGANStream  # noqa: E402

QUICK_BATCHES = 200
WARMUP = 0.05  # share of the batches before the memory baseline is taken
MB = 2**20


def _statm_rss(pid: int | str) -> int | None:
    """Current RSS in bytes of a process from /proc (Linux); None where unavailable."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _children(pid: int) -> list[int]:
    """Child process ids (DataLoader workers) from /proc/PID/task/*/children; [] where unavailable."""
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def rss_bytes() -> tuple[int, str]:
    """(RSS of this process + its children, how it was measured). Falls back to the peak RSS from
    `resource` (kilobytes on Linux, bytes on macOS) where /proc is missing."""
    own = _statm_rss("self")
    if own is not None:
        return own + sum(_statm_rss(c) or 0 for c in _children(os.getpid())), "/proc statm"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (peak if sys.platform == "darwin" else peak * 1024), "ru_maxrss (peak)"


def cuda_memory(device: torch.device) -> dict[str, float]:
    if device.type != "cuda":
        return {}
    free, total = torch.cuda.mem_get_info(device)  # the whole device: torch, ONNX Runtime's arena, cuDNN
    return {"cuda_alloc_mb": torch.cuda.memory_allocated(device) / MB,
            "cuda_reserved_mb": torch.cuda.memory_reserved(device) / MB,
            "cuda_max_mb": torch.cuda.max_memory_allocated(device) / MB,
            "cuda_used_mb": (total - free) / MB}


def growth(samples: list[dict], key: str, warmup_batches: int) -> tuple[float | None, float | None]:
    """(baseline, growth in percent of it) of `key` after warm-up.

    Single readings swing by several percent with the transient tensors of the batch in flight,
    so both ends are floors: baseline = the minimum over the first samples after warm-up, final =
    the minimum over as many last samples (a tenth of the samples, at least 3, at most half).
    Retained memory (a leak) lifts the floor; a batch that happens to be in flight does not.
    """
    after = [s[key] for s in samples if s["batch"] >= warmup_batches and s.get(key) is not None]
    if len(after) < 2:
        return None, None
    w = max(1, min(max(3, len(after) // 10), len(after) // 2))
    base, final = min(after[:w]), min(after[-w:])
    if not base:
        return base, None
    return base, 100.0 * (final - base) / base


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", default="none",
                    help="none (clean renders), onnx (the shipped model), or a .onnx/.pt path")
    ap.add_argument("--batches", type=int, default=10_000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--mode", choices=("crop", "scene"), default="crop")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--regions", default=None, help="comma-separated regions (default: all shipped)")
    ap.add_argument("--augment", default="light", help="none, light or heavy")
    ap.add_argument("--workers", type=int, default=0,
                    help="DataLoader workers (RSS adds theirs; pages shared by fork count twice)")
    ap.add_argument("--every", type=int, default=None, help="sample memory every K batches (default: ~50 samples)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-growth", type=float, default=5.0,
                    help="fail above this memory growth after warm-up, in percent")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_BATCHES} batches: a smoke run")
    ap.add_argument("--json", help="write the samples and summary here")
    args = ap.parse_args(argv)
    if args.quick:
        args.batches = QUICK_BATCHES
    if args.batches < 2 or args.batch_size < 1 or args.workers < 0:
        ap.error("--batches must be >= 2, --batch-size >= 1, --workers >= 0")
    if args.every is None:
        args.every = max(1, args.batches // 50)
    if args.every < 1:
        ap.error("--every must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    device = torch.device(args.device)
    try:
        stream = PlateGANStream(regions=args.regions.split(",") if args.regions else None, mode=args.mode,
                                batch_size=args.batch_size, device=device, seed=args.seed,
                                generator=None if args.generator == "none" else args.generator, augment=args.augment)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    loader = DataLoader(stream, batch_size=None, num_workers=args.workers,
                        multiprocessing_context="spawn" if args.workers and device.type == "cuda" else None)
    warmup_batches = max(1, round(args.batches * WARMUP))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    info = machine()
    print(f"soak: {args.batches} batches x {args.batch_size} {args.mode} plates, generator {args.generator}, "
          f"device {device}, workers {args.workers}, augment {args.augment}; warm-up {warmup_batches} batches; "
          f"{info.get('cpu', info['processor'])}, {torch.get_num_threads()} torch threads")
    head = f"{'batch':>7}{'time s':>9}{'RSS MB':>10}{'vs warm-up':>12}{'plates/s':>10}"
    if device.type == "cuda":
        head += f"{'CUDA alloc':>12}{'CUDA max':>10}{'GPU used':>10}"
    print(head)
    samples, method = [], ""
    plates = 0
    start = last_t = time.perf_counter()
    last_plates = 0
    base_rss = None
    it = iter(loader)
    try:
        for b in range(1, args.batches + 1):
            images, targets = next(it)
            plates += len(targets) if args.mode == "crop" else sum(len(t["text"]) for t in targets)
            del images, targets
            if b % args.every and b != args.batches and b != warmup_batches:
                continue
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            gc.collect()
            now = time.perf_counter()
            rss, method = rss_bytes()
            s = {"batch": b, "time_s": now - start, "plates": plates, "rss_mb": rss / MB,
                 "plates_per_s": (plates - last_plates) / max(now - last_t, 1e-9), **cuda_memory(device)}
            samples.append(s)
            last_t, last_plates = now, plates
            if b >= warmup_batches and base_rss is None:
                base_rss = s["rss_mb"]
            rel = f"{100 * (s['rss_mb'] - base_rss) / base_rss:+.1f}%" if base_rss else "warm-up"
            line = f"{b:>7}{s['time_s']:>9.1f}{s['rss_mb']:>10.1f}{rel:>12}{s['plates_per_s']:>10.0f}"
            if device.type == "cuda":
                line += f"{s['cuda_alloc_mb']:>12.1f}{s['cuda_max_mb']:>10.1f}{s['cuda_used_mb']:>10.1f}"
            print(line, flush=True)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as e:  # e.g. a bad model, first batch
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    finally:
        del it
    elapsed = time.perf_counter() - start
    warm = next(s for s in samples if s["batch"] >= warmup_batches)  # sampled at exactly warmup_batches
    p_warm = (plates - warm["plates"]) / max(elapsed - warm["time_s"], 1e-9) if plates > warm["plates"] else None
    base, rss_growth = growth(samples, "rss_mb", warmup_batches)
    cuda_base, cuda_growth = growth(samples, "cuda_alloc_mb", warmup_batches)
    used_base, used_growth = growth(samples, "cuda_used_mb", warmup_batches)
    summary = {
        "batches": args.batches, "batch_size": args.batch_size, "plates": plates, "elapsed_s": elapsed,
        "plates_per_s": plates / elapsed, "plates_per_s_after_warmup": p_warm, "warmup_batches": warmup_batches,
        "rss_method": method, "rss_floor_after_warmup_mb": base, "rss_final_mb": samples[-1]["rss_mb"],
        "rss_peak_mb": max(s["rss_mb"] for s in samples), "rss_growth_percent": rss_growth,
        "cuda_alloc_floor_after_warmup_mb": cuda_base, "cuda_alloc_growth_percent": cuda_growth,
        "cuda_max_mb": samples[-1].get("cuda_max_mb"), "cuda_used_floor_after_warmup_mb": used_base,
        "cuda_used_growth_percent": used_growth, "max_growth_percent": args.max_growth,
    }
    growths = [g for g in (rss_growth, cuda_growth, used_growth) if g is not None]
    ok = all(g <= args.max_growth for g in growths)
    summary["ok"] = ok
    print(f"plates/s: {summary['plates_per_s']:.0f} overall"
          + (f", {p_warm:.0f} after warm-up" if p_warm else "")
          + f"; RSS floor {base or float('nan'):.1f} MB after warm-up, growth "
            f"{rss_growth if rss_growth is not None else float('nan'):+.2f}% (last {summary['rss_final_mb']:.1f} MB, "
            f"peak {summary['rss_peak_mb']:.1f} MB, {method})"
          + (f"; CUDA allocated {cuda_growth:+.2f}%, max {summary['cuda_max_mb']:.1f} MB"
             if cuda_growth is not None else "")
          + (f"; GPU memory in use (ORT included) {used_growth:+.2f}% from {used_base:.1f} MB"
             if used_growth is not None else ""))
    print(("PASS" if ok else "FAIL") + f": memory growth after warm-up "
          f"{'within' if ok else 'above'} {args.max_growth:g}%")
    write_json(args.json, {"machine": info, "args": vars(args), "summary": summary, "samples": samples})
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
