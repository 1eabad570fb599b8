"""Interleaved A/B of plateaug.tune_malloc: fresh processes, alternately with glibc's own malloc
settings (PLATEAUG_MALLOC=system) and with tune_malloc, each timing render + outline at B=512 per
region and the stream end to end (crop mode, cn_blue, the default generator and augmentation).
A fresh process per arm: glibc's dynamic thresholds only ever grow within a process, so the arms
cannot share one.

    python benchmarks/malloc_ab.py [--rounds 3] [--regions eu_de,eu_sk,us] [--stream-batch 128] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, median_seconds, write_json  # noqa: E402

ARMS = ("system", "tuned")


def arm(name: str, regions: list[str], stream_batch: int) -> dict:
    """One arm in this (fresh) process: plates/s of render + outline at B=512 per region, then of the stream."""
    from plateaug import PlateGANStream, outline, render, sample_text, tune_malloc

    if name == "tuned":
        assert tune_malloc(), "tune_malloc needs glibc"
    torch.set_num_threads(os.cpu_count() or 1)
    out: dict = {"arm": name}
    for region in regions:
        g = torch.Generator().manual_seed(0)
        step = lambda r=region, g=g: outline(render(r, sample_text(r, 512, g)).images)  # noqa: E731
        out[region] = 512 / median_seconds(step, repeats=6, warmup=2)
    it = iter(PlateGANStream(regions="cn_blue", batch_size=stream_batch, seed=0))
    out["stream"] = stream_batch / median_seconds(lambda: next(it), repeats=5, warmup=8)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--regions", default="eu_de,eu_sk,us")
    ap.add_argument("--stream-batch", type=int, default=128)
    ap.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # a child process: run one arm
    ap.add_argument("--json")
    args = ap.parse_args()
    regions = [r for r in args.regions.split(",") if r]
    if args.arm:
        print(json.dumps(arm(args.arm, regions, args.stream_batch)))
        return
    runs = []
    for _ in range(args.rounds):
        for name in ARMS:
            env = {**os.environ, "PLATEAUG_MALLOC": "system" if name == "system" else ""}
            cmd = [sys.executable, __file__, "--arm", name, "--regions", args.regions,
                   "--stream-batch", str(args.stream_batch)]
            line = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout.splitlines()[-1]
            runs.append(json.loads(line))
            print({k: (round(v) if isinstance(v, float) else v) for k, v in runs[-1].items()}, flush=True)
    info = machine()
    print(f"machine: {info.get('cpu', info['processor'])}, {info['cpu_count']} cores, torch {info['torch']}; "
          f"{args.rounds} rounds, arms alternating, a fresh process each")
    print(f"{'plates/s (median of rounds)':<36}{'system':>10}{'tuned':>10}{'tuned/system':>14}  per round")
    keys = [*regions, "stream"]
    summary = {}
    for k in keys:
        per = {a: [r[k] for r in runs if r["arm"] == a] for a in ARMS}
        med = {a: statistics.median(v) for a, v in per.items()}
        ratios = [t / s for s, t in zip(per["system"], per["tuned"])]
        summary[k] = {**med, "ratio": med["tuned"] / med["system"], "round_ratios": ratios}
        label = f"render + outline {k} B=512" if k != "stream" else f"stream cn_blue B={args.stream_batch}"
        print(f"{label:<36}{med['system']:>10,.0f}{med['tuned']:>10,.0f}{med['tuned'] / med['system']:>13.2f}x  "
              + " ".join(f"{x:.2f}x" for x in ratios))
    write_json(args.json, {"machine": info, "args": vars(args), "runs": runs, "summary": summary})


if __name__ == "__main__":
    main()
