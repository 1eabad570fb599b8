"""Finiteness sweep: iterate many batches of PlateGANStream and count non-finite pixels and labels.

The check behind the "NaN pixels in scene mode" issue: the issue's loop (batches of 16 scenes with
the shipped defaults), over several seeds. The stream itself refuses a non-finite batch
(NonFiniteBatchError); this counts those refusals and, independently, any NaN/inf in what is yielded.

    python benchmarks/finite.py                                   # 5 seeds x 1,000 scene batches of 16
    python benchmarks/finite.py --mode crop --batches 200 --json out.json
    python benchmarks/finite.py --quick                           # a smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_json  # noqa: E402

from plateaug import NonFiniteBatchError, PlateGANStream  # noqa: E402
from plateaug.stream import seeding  # noqa: E402


def sweep(mode: str, seed: int, batches: int, batch_size: int, **kw) -> dict:
    """Batches 0..batches-1 of PlateGANStream(mode, batch_size, seed) as iterating it in one process
    makes them (the same batch seeds); what was non-finite, and where."""
    stream = PlateGANStream(mode=mode, batch_size=batch_size, seed=seed, **kw)
    bad, refused, values = [], [], 0
    for b in range(batches):
        try:
            batch = stream.make_batch(batch_size, seeding.mix(seed, 0, 0, 0, b))
        except NonFiniteBatchError as e:
            refused.append({"batch": b, "error": str(e)})
            continue
        n = sum(int((~torch.isfinite(t)).sum()) for t in (batch.images, batch.char_boxes, batch.corners))
        if n:
            bad.append({"batch": b, "values": n})
            values += n
    return {"mode": mode, "seed": seed, "batches": batches, "batch_size": batch_size, "bad_batches": bad,
            "refused_batches": refused, "non_finite_values": values}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("scene", "crop"), default="scene")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--batches", type=int, default=1000, help="batches per seed")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--quick", action="store_true", help="2 seeds x 3 batches of 4 at 96x160")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.batches < 1 or args.batch_size < 1:
        ap.error("--batches and --batch-size must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    kw = {}
    if args.quick:
        args.seeds, args.batches, args.batch_size = [0, 1], 3, 4
        kw["image_size"] = (96, 160) if args.mode == "scene" else (32, 128)
    t0, rows = time.perf_counter(), []
    for seed in args.seeds:
        t = time.perf_counter()
        row = sweep(args.mode, seed, args.batches, args.batch_size, **kw)
        row["seconds"] = round(time.perf_counter() - t, 1)
        rows.append(row)
        print(f"{args.mode} seed {seed}: {args.batches} batches of {args.batch_size}, "
              f"{len(row['bad_batches'])} with non-finite values ({row['non_finite_values']} values), "
              f"{len(row['refused_batches'])} refused by the stream, {row['seconds']} s", flush=True)
    total = sum(len(r["bad_batches"]) + len(r["refused_batches"]) for r in rows)
    print(f"total: {len(rows) * args.batches} batches, {total} non-finite, {time.perf_counter() - t0:.0f} s")
    write_json(args.json, {"machine": machine(), "rows": rows})
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
