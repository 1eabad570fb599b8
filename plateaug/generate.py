"""`python -m plateaug.generate`: write a synthetic plate dataset to disk (YOLO, COCO or OCR).

Items are made in fixed batches, each from its own seed, so a run can be sharded (`--shards K
--shard i`, or automatically by RANK/WORLD_SIZE under torchrun), interrupted and resumed
(finished items are skipped) and still equal an uninterrupted run. Every file is written via a
temp file and a rename.

Example:
    python -m plateaug.generate --n 1000 --out data/plates --format yolo --mode scene
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .renderer.spec_loader import builtin_regions
from .stream import seeding
from .stream.dataset import PlateGANStream
from .writers.formats import FORMATS, DatasetWriter, item_name
from .writers.sheet import contact_sheet


def _size(s: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW like 64x256, got {s!r}") from None
    return h, w


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m plateaug.generate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, required=True, help="number of images in the whole dataset")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--format", choices=FORMATS, default="yolo")
    ap.add_argument("--regions", default=None,
                    help=f"comma-separated region names or .toml paths (default: all of {','.join(builtin_regions())})")
    ap.add_argument("--mode", choices=("crop", "scene"), default=None, help="default: scene (yolo/coco), crop (ocr)")
    ap.add_argument("--generator", default="onnx", help="onnx (shipped default), torch, none, or a .onnx/.pt path")
    ap.add_argument("--augment", default="light", help="none, light or heavy")
    ap.add_argument("--image-size", type=_size, help="HxW (default 64x256 crops, 384x640 scenes)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=64, help="images generated per batch (fixes the seeding)")
    ap.add_argument("--shards", type=int, default=None, help="split the work into K shards (default: WORLD_SIZE)")
    ap.add_argument("--shard", type=int, default=None, help="which shard this process writes (default: RANK)")
    ap.add_argument("--image-format", choices=("jpg", "png"), default="jpg")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error(f"--n must be >= 1, got {args.n}")
    if args.batch_size < 1:
        ap.error(f"--batch-size must be >= 1, got {args.batch_size}")
    try:
        rank, world = seeding.rank_and_world()
        args.device = str(torch.device(args.device))
    except (ValueError, RuntimeError) as e:
        ap.error(str(e))
    args.shards = world if args.shards is None else args.shards
    args.shard = rank if args.shard is None else args.shard
    if args.shards < 1 or not 0 <= args.shard < args.shards:
        ap.error(f"--shard must be in [0, --shards), got shard {args.shard} of {args.shards}")
    if args.mode is None:
        args.mode = "crop" if args.format == "ocr" else "scene"
    if args.format == "ocr" and args.mode != "crop":
        ap.error("--format ocr writes plate crops: use --mode crop")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, permissions: what is finished stays, a rerun resumes
        print(f"error: writing {args.out} failed: {e}. Finished items are intact; run the same command "
              f"again to resume.", file=sys.stderr)
        return 1


def run(args: argparse.Namespace) -> int:
    regions = args.regions.split(",") if args.regions else None
    stream = PlateGANStream(regions=regions, mode=args.mode, image_size=args.image_size, device=args.device,
                            seed=args.seed, generator=None if args.generator == "none" else args.generator,
                            augment=args.augment)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        probe = args.out / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"output folder {args.out} is not writable: {e}") from None
    tag = f"shard{args.shard}"
    writer = DatasetWriter(args.out, args.format, stream.charset, args.image_format, tag=tag)
    for stale in args.out.rglob(f".*.{tag}.tmp"):  # left by a killed run of this shard
        stale.unlink()
    n_batches = -(-args.n // args.batch_size)
    mine = [b for b in range(n_batches) if b % args.shards == args.shard]
    todo = [b for b in mine if not all(writer.done(i) for i in _items(b, args))]
    total_items = sum(len(_items(b, args)) for b in mine)
    bar = tqdm(total=total_items, initial=total_items - sum(len(_items(b, args)) for b in todo), unit="img",
               desc=f"generate shard {args.shard}/{args.shards}", disable=args.no_progress)
    for b in todo:
        items = _items(b, args)
        batch = stream.make_batch(len(items), seeding.mix(args.seed, b, 0x6E6))
        for i, image, target in zip(items, batch.images, stream.targets(batch)):
            if not writer.done(i):
                writer.write(i, image, target)
            bar.update(1)
    bar.close()
    written = writer.finalize(args.n)
    if written:  # whichever shard completes the dataset draws the preview
        _preview(args.out, min(args.n, 16))
    print(f"shard {args.shard}/{args.shards}: {total_items} items in {args.out}"
          + (f"; index: {', '.join(str(p.name) for p in written)}" if written else
             "; dataset index is written when every shard has finished"))
    return 0


def _items(batch: int, args: argparse.Namespace) -> list[int]:
    return list(range(batch * args.batch_size, min((batch + 1) * args.batch_size, args.n)))


def _preview(out: Path, n: int) -> None:
    """preview.png: the first images with their plate and character boxes drawn."""
    rows, boxes, caps = [], [], []
    for i in range(n):
        meta = json.loads((out / "meta" / f"{item_name(i)}.json").read_text(encoding="utf-8"))
        with Image.open(out / meta["file"]) as im:
            arr = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1) / 255.0
        rows.append([arr])
        boxes.append(torch.tensor([p["box"] for p in meta["plates"]] +
                                  [cb for p in meta["plates"] for cb in p["char_boxes"]]))
        caps.append(" ".join(p["text"] for p in meta["plates"]))
    contact_sheet(rows, out / "preview.png", captions=caps, boxes=boxes, cell_h=min(rows[0][0].shape[-2], 160))


if __name__ == "__main__":
    raise SystemExit(main())
