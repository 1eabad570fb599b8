"""`python -m plateaug.generate`: write a synthetic plate dataset to disk (YOLO, COCO or OCR).

Items are made in fixed batches, each from its own seed, so a run can be sharded (`--shards K
--shard i`, or automatically by RANK/WORLD_SIZE under torchrun), interrupted and resumed
(finished items are skipped) and still equal an uninterrupted run. Every file is written via a
temp file and a rename. The settings that shape the content are recorded in settings.json: a
rerun with other ones is refused, and one process at a time may write a shard.

Examples:
    python -m plateaug.generate --count 1000 --out data/plates --format yolo --mode scene
    python -m plateaug.generate --count 1000 --out data/det --format coco --mode scene --scenes my/annotations.json
    torchrun --nproc-per-node 4 -m plateaug.generate --count 100000 --out data/det   # sharded by rank
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ._version import __version__
from .generator.backends import GENERATOR_NAMES, NAMED_MODELS, resolve_name
from .renderer.spec_loader import builtin_regions
from .stream import seeding
from .stream.dataset import NonFiniteBatchError, PlateGANStream
from .stream.scene_options import Scene
from .writers.folder import ShardBusy, check_settings, clean_stale_tmp, shard_lock
from .writers.formats import FORMATS, DatasetWriter, item_name
from .writers.sheet import contact_sheet

GENERATORS = GENERATOR_NAMES  # "auto", "onnx", "torch", "torch-bf16", "none"
MODEL_SUFFIXES = (".onnx", ".pt", ".pth")
# settings.json keys that shape the content -> the option named when a rerun differs; sharding,
# --no-progress and the device index are not among them (they change no byte of the output)
CONTENT_SETTINGS = {"count": "--count", "format": "--format", "mode": "--mode", "regions": "--regions",
                    "generator_sha256": "--generator", "scenes": "--scenes", "backgrounds": "--backgrounds",
                    "augment": "--augment", "image_size": "--image-size", "seed": "--seed",
                    "batch_size": "--batch-size", "image_format": "--image-format", "device": "--device (type)",
                    "box_margin": "--box-margin", "as_taken": "--as-taken"}


def _size(s: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW like 64x256, got {s!r}") from None
    return h, w


def _box_margin(s: str) -> float | tuple[float, float]:
    """--box-margin: M or MX,MY (shares of the plate height), checked by Scene at parse time."""
    try:
        parts = tuple(float(v) for v in s.split(","))
        margin = parts[0] if len(parts) == 1 else parts
        Scene(box_margin=margin)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected M or MX,MY, shares of the plate height in [0, 0.5], got "
                                         f"{s!r}" + (f" ({e})" if "Scene" in str(e) else "")) from None
    return margin


def _generator(s: str) -> str:
    """--generator: a shipped name or an existing model file, checked at parse time."""
    if s in GENERATORS:
        return s
    valid = "generator must be 'auto', 'onnx', 'torch', 'torch-bf16', 'none', or a path to an existing .onnx/.pt file"
    if Path(s).suffix in MODEL_SUFFIXES:
        if Path(s).is_file():
            return s
        raise argparse.ArgumentTypeError(f"generator model {s} does not exist ({valid})")
    raise argparse.ArgumentTypeError(f"{valid}; got {s!r}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m plateaug.generate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    # --count, not --n, in docs: under torchrun, `--n` after the module name is taken for an
    # abbreviation of torchrun's own --nnodes/--nproc-per-node ("ambiguous option")
    ap.add_argument("--count", "--n", dest="n", type=int, required=True,
                    help="number of images in the whole dataset (--n is an alias)")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--format", choices=FORMATS, default="yolo")
    ap.add_argument("--regions", default=None,
                    help=f"comma-separated region names or .toml paths (default: all of {','.join(builtin_regions())})")
    ap.add_argument("--mode", choices=("crop", "scene"), default=None, help="default: scene (yolo/coco), crop (ocr)")
    ap.add_argument("--generator", type=_generator, default="auto",
                    help="auto (default: torch-bf16 on a CPU with bf16 units, else onnx), onnx (the shipped ONNX "
                         "model), torch, torch-bf16 (the shipped checkpoint in bfloat16), none, or a path to an "
                         "existing .onnx/.pt file")
    ap.add_argument("--augment", default="light", help="none, light or heavy")
    ap.add_argument("--scenes", default=None, help="scene mode: annotated photos (a COCO .json file or a YOLO folder) "
                    "whose every plate is replaced by a stream plate (default: the shipped dashcam frames)")
    ap.add_argument("--backgrounds", default=None, help="scene mode: 'procedural', or a folder of plain background "
                    "images, instead of photos")
    ap.add_argument("--box-margin", type=_box_margin, default=None,
                    help="scene mode: every plate's box label grown by this share of its height per side, or MX,MY "
                         "for left/right and top/bottom (default 0.15, Scene.box_margin: the margin annotators leave "
                         "round a plate; 0: the plate's exact extent; corners and character boxes stay exact)")
    ap.add_argument("--as-taken", choices=("yes", "no"), default=None,
                    help="scene mode, photos: yes, no whole-scene augmentation or degradation (the photo's own look); "
                         "no, augmented (--augment) and degraded like procedural scenes (default, Scene.as_taken: "
                         "your --scenes as taken, the shipped frames augmented but not degraded)")
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
        ap.error(f"--count/--n must be >= 1, got {args.n}")
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
    if (args.scenes or args.backgrounds) and args.mode != "scene":
        ap.error("--scenes and --backgrounds are for --mode scene")
    if args.box_margin is not None and args.mode != "scene":
        ap.error("--box-margin is for --mode scene (a crop's corners and character boxes are its labels)")
    if args.as_taken is not None and (args.mode != "scene" or args.backgrounds):
        ap.error("--as-taken is for --mode scene on photos (--scenes or the shipped frames, not --backgrounds)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ShardBusy as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except NonFiniteBatchError as e:  # never written; what is finished stays
        print(f"error: {e} Finished items are intact.", file=sys.stderr)
        return 1
    except OSError as e:  # disk full, permissions: what is finished stays, a rerun resumes
        print(f"error: writing {args.out} failed: {e}. Finished items are intact; run the same command "
              f"again to resume.", file=sys.stderr)
        return 1


def run(args: argparse.Namespace) -> int:
    regions = args.regions.split(",") if args.regions else None
    stream = PlateGANStream(regions=regions, mode=args.mode, image_size=args.image_size, device=args.device,
                            seed=args.seed, generator=None if args.generator == "none" else args.generator,
                            augment=args.augment, scenes=args.scenes, backgrounds=args.backgrounds,
                            scene=_scene(args))
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        probe = args.out / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"output folder {args.out} is not writable: {e}") from None
    old = check_settings(args.out, _settings(args, stream), CONTENT_SETTINGS)
    if old is None and next((args.out / "meta").glob("*.json"), None) is not None:
        print(f"warning: {args.out} holds items of a run that recorded no settings (an older plateaug); they "
              f"cannot be checked against this run's settings, which are recorded from now on", file=sys.stderr)
    tag = f"shard{args.shard}"
    lock = shard_lock(args.out, tag)  # ShardBusy if another process writes this shard
    try:
        return _write(args, stream, tag)
    finally:
        lock.release()


def _write(args: argparse.Namespace, stream: PlateGANStream, tag: str) -> int:
    writer = DatasetWriter(args.out, args.format, stream.charset, args.image_format, tag=tag)
    clean_stale_tmp(args.out, tag)  # left by killed runs of this shard, or of shards nobody holds now
    span = _span(args)
    done = {i for i in span if writer.done(i)}
    todo = [(b, items) for b, items in _batches(span, args) if not all(i in done for i in items if i in span)]
    bar = tqdm(total=len(span), initial=len(done), unit="img", desc=f"generate shard {args.shard}/{args.shards}",
               disable=args.no_progress)
    wrote = 0
    with _Ticker(bar, args.no_progress):
        for k, (b, items) in enumerate(todo, 1):
            bar.set_postfix_str(f"generating batch {k}/{len(todo)}")  # shown at once, before the first batch
            batch = stream.make_batch(len(items), seeding.mix(args.seed, b, 0x6E6))
            bar.set_postfix_str(f"writing batch {k}/{len(todo)}")
            for i, image, target in zip(items, batch.images, stream.targets(batch)):
                if i in span and i not in done:
                    if not writer.done(i):
                        writer.write(i, image, target)
                        wrote += 1
                    bar.update(1)  # per item written
        bar.set_postfix_str("done" if todo else "nothing to do")
    bar.close()
    written = writer.finalize(args.n)
    if written:  # whichever shard completes the dataset draws the preview
        _preview(args.out, min(args.n, 16))
    print(f"shard {args.shard}/{args.shards}: {len(span)} items"
          + (f" ({span.start}-{span.stop - 1})" if span else "") + f", {wrote} written by this run, in {args.out}"
          + (f"; index: {', '.join(str(p.name) for p in written)}" if written else
             "; dataset index is written when every shard has finished"))
    return 0


def _scene(args: argparse.Namespace) -> Scene | None:
    """The Scene that --box-margin and --as-taken ask for (None: the stream's default)."""
    fields = {**({} if args.box_margin is None else {"box_margin": args.box_margin}),
              **({} if args.as_taken is None else {"as_taken": args.as_taken == "yes"})}
    return Scene(**fields) if fields else None


def _settings(args: argparse.Namespace, stream: PlateGANStream) -> dict:
    """What settings.json records: every setting that shapes the content (see CONTENT_SETTINGS),
    resolved (default image size and regions, model file by its sha256), plus the version."""
    regions = ([str(Path(r).resolve()) if Path(r).is_file() else r for r in args.regions.split(",")]
               if args.regions else builtin_regions())
    name = resolve_name(args.generator, stream.device)  # "auto" is recorded as what it ran
    model = {**NAMED_MODELS, "none": None}.get(name, Path(name))
    return {"count": args.n, "format": args.format, "mode": args.mode, "regions": regions,
            "generator": name if name in GENERATORS else str(model.resolve()),
            "generator_sha256": _sha256(model) if model is not None else None,
            "augment": args.augment, "image_size": list(stream.image_size), "seed": args.seed,
            "scenes": str(Path(args.scenes).resolve()) if args.scenes else None,
            "backgrounds": args.backgrounds if args.backgrounds in (None, "procedural")
            else str(Path(args.backgrounds).resolve()),
            "batch_size": args.batch_size, "image_format": args.image_format,
            "device": torch.device(args.device).type, "plateaug_version": __version__,
            **({"box_margin": list(m) if isinstance(m := stream.scene.box_margin, tuple) else m,
                "as_taken": stream.scene.as_taken}
               if args.mode == "scene" else {})}  # a crop has no box margin: nothing to compare


def _sha256(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except FileNotFoundError:  # a missing shipped model: the stream names it on first use
        return None


def _span(args: argparse.Namespace) -> range:
    """The items this shard writes: a contiguous 1/--shards of all, sizes differing by at most
    one, so every shard has work even when the whole job is smaller than one batch."""
    lo = args.shard * (args.n // args.shards) + min(args.shard, args.n % args.shards)
    return range(lo, lo + seeding.share(args.n, args.shard, args.shards))


def _batches(span: range, args: argparse.Namespace) -> list[tuple[int, list[int]]]:
    """(batch index, all its items) for every batch that holds items of `span`. A batch is always
    generated whole from its own seed, whoever writes it, so the output does not depend on the
    sharding; a batch split between two shards is generated by both."""
    if not span:
        return []
    first, last = span.start // args.batch_size, (span.stop - 1) // args.batch_size
    return [(b, _items(b, args)) for b in range(first, last + 1)]


def _items(batch: int, args: argparse.Namespace) -> list[int]:
    return list(range(batch * args.batch_size, min((batch + 1) * args.batch_size, args.n)))


class _Ticker:
    """Redraws the progress bar every second from a thread, so its clock and the phase
    ("generating batch k/K") stay live while a long batch is generated."""

    def __init__(self, bar: tqdm, disabled: bool, every: float = 1.0):
        self.bar, self.disabled, self.every = bar, disabled, every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="generate-progress", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            self.bar.refresh()

    def __enter__(self) -> _Ticker:
        if not self.disabled:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()


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
