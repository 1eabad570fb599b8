"""`python -m plateaug.train`: train the pix2pix generator on a folder of real plate crops.

Example:
    python -m plateaug.train --real ../shared/data/real-plates --out runs/default --epochs 60
    python -m plateaug.train --resume runs/default          # continue exactly where it stopped
    python -m plateaug.train --resume runs/default --epochs 150   # ... and change the run's length

--resume RUN_DIR reads RUN_DIR/last.pt and writes to RUN_DIR only (also when RUN_DIR is a copy).
It takes --epochs, --max-minutes, --device, --threads and --no-progress; the options that define
the run (data, model, optimiser, seed, canvases) come from the checkpoint and are refused.
--epochs N sets the run's total to N epochs (more or fewer, not below those already started);
the LR schedule (constant, then linear decay to 0 over the second half) is recomputed for the new
total: from here on each step gets the learning rate a run started with --epochs N would have
had, steps already taken keep theirs. So extending a run during its first half equals having
started it with N; extending a run whose LR has decayed raises the LR again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from .models import GENERATORS
from .training.trainer import TrainConfig, Trainer, resume


def _canvas(s: str) -> tuple[str, list[int]]:
    try:
        region, size = s.split("=")
        h, w = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected REGION=HxW like us=96x192, got {s!r}") from None
    if h % 16 or w % 16 or h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"canvas {h}x{w} must be positive multiples of 16")
    return region, [h, w]


# Options that define a run: fixed by its checkpoint, refused with --resume (argparse dests).
_RUN_DEFINING = ("real", "labels", "out", "generator", "batch_size", "lr", "l1_weight", "seed", "val_percent",
                 "min_per_group", "regions", "canvas", "render_weight", "structure_weight", "init",
                 "text_weight", "reader_steps", "reader_real", "paired_weight", "paired_any_layout")
_UNSET = object()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plateaug.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", help="folder of real plate crops (jpg/png), optionally with labels.csv")
    ap.add_argument("--labels", help="CSV with file,region,text (default: REAL/labels.csv when present; "
                                     "else region = sub-folder name)")
    ap.add_argument("--out", help="run folder: checkpoints, log.jsonl, samples/, summary.json")
    ap.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    ap.add_argument("--generator", default="unet_s", choices=sorted(GENERATORS))
    ap.add_argument("--epochs", type=int, default=100,
                    help="epochs in the run (default 100); with --resume: the run's new total (see above)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--l1-weight", type=float, default=100.0, help="lambda of the L1 term (pix2pix: 100)")
    ap.add_argument("--render-weight", type=float, default=0.0,
                    help="weight of the unpaired term: the generator also translates clean renders of each "
                         "region's spec, judged against that region's real crops (0 = off)")
    ap.add_argument("--init", help="fine-tune: start from this checkpoint's generator (EMA weights), e.g. "
                                   "export/plateaug_default.pt")
    ap.add_argument("--structure-weight", type=float, default=10.0,
                    help="with --render-weight: keeps translated renders' characters in place (default 10)")
    ap.add_argument("--text-weight", type=float, default=0.0,
                    help="with --render-weight: CTC loss of a frozen plate reader on translated renders, so "
                         "they still read as the render's text (text preservation; 0 = off)")
    ap.add_argument("--reader-steps", type=int, default=1000,
                    help="with --text-weight: training steps of each frozen reader (Latin, cn), once per run")
    ap.add_argument("--reader-real", action="store_true",
                    help="with --text-weight: the readers also learn the real training crops (half of each "
                         "batch), so a translated render may take the real plates' glyph shapes and still read")
    ap.add_argument("--paired-weight", type=float, default=0.0,
                    help="weight of the paired term: each real crop with a text also gets a clean render of that "
                         "text, aligned to it, and the generator learns outline(render) -> the crop (0 = off)")
    ap.add_argument("--paired-any-layout", action="store_true",
                    help="with --paired-weight: also pair crops whose text no pattern of the region's spec accepts, "
                         "drawing it in a plain row of evenly spaced characters (vanity plates, other serials)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-percent", type=int, default=25, help="share of files (by name hash) held out")
    ap.add_argument("--min-per-group", type=int, default=128, help="repeat small regions up to this per epoch")
    ap.add_argument("--regions", help="comma-separated regions of labels.csv to use (default: all)")
    ap.add_argument("--canvas", action="append", type=_canvas, default=[], metavar="REGION=HxW",
                    help="canvas for a region's crops (defaults: us=96x192 br=64x192 eu=64x304)")
    ap.add_argument("--max-minutes", type=float, help="stop (with a checkpoint) after this many minutes")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    ap.add_argument("--no-progress", action="store_true")
    # parse into a namespace holding a marker, so options given (even at their default) can be told
    # from options left out; "canvas" appends to a list, given when the list is not empty
    fixed = [a for a in ap._actions if a.dest in _RUN_DEFINING]
    args = ap.parse_args(argv, argparse.Namespace(**{a.dest: _UNSET for a in fixed if a.dest != "canvas"},
                                                  epochs=_UNSET))
    given = [a for a in fixed if getattr(args, a.dest) is not _UNSET and (a.dest != "canvas" or args.canvas)]
    for a in fixed:
        if getattr(args, a.dest) is _UNSET:
            setattr(args, a.dest, a.default)
    epochs_given = args.epochs is not _UNSET
    if not epochs_given:
        args.epochs = ap.get_default("epochs")
    if args.resume and given:
        ap.error(f"--resume takes the run's settings from its checkpoint; "
                 f"{', '.join(a.option_strings[0] for a in given)} cannot be changed (only --epochs can)")
    try:
        device = torch.device(args.device)
    except RuntimeError as e:
        ap.error(f"--device {args.device}: {e}")
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: CUDA is not available on this machine")
    if args.threads is not None and args.threads < 1:
        ap.error(f"--threads must be >= 1, got {args.threads}")
    if not 0 <= args.val_percent <= 100:
        ap.error(f"--val-percent must be in [0, 100], got {args.val_percent}")
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    try:
        if args.resume:
            if epochs_given and args.epochs < 1:
                ap.error("--epochs must be >= 1")
            trainer = resume(args.resume, args.device, args.max_minutes, not args.no_progress,
                             epochs=args.epochs if epochs_given else None)
        else:
            if not args.real or not args.out:
                ap.error("--real and --out are required (or --resume RUN_DIR)")
            if args.reader_real and args.text_weight <= 0:
                ap.error("--reader-real needs --text-weight > 0 (it changes the text loss's readers)")
            if args.text_weight < 0 or args.reader_steps < 1 or args.paired_weight < 0:
                ap.error("--text-weight and --paired-weight must be >= 0 and --reader-steps >= 1")
            if args.epochs < 1 or args.batch_size < 2:
                ap.error("--epochs must be >= 1 and --batch-size >= 2 (BatchNorm)")
            cfg = TrainConfig(real=args.real, out=args.out, labels=args.labels, generator=args.generator,
                              epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                              l1_weight=args.l1_weight, seed=args.seed, val_percent=args.val_percent,
                              min_per_group=args.min_per_group, render_weight=args.render_weight,
                              structure_weight=args.structure_weight, init=args.init,
                              text_weight=args.text_weight, reader_steps=args.reader_steps,
                              reader_real=args.reader_real,
                              paired_weight=args.paired_weight, paired_any_layout=args.paired_any_layout,
                              regions=tuple(args.regions.split(",")) if args.regions else None,
                              canvases=dict(args.canvas))
            trainer = Trainer(cfg, args.device, args.max_minutes, not args.no_progress)
        summary = trainer.run()
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # an --out that is a file, disk full, permissions: the last checkpoint stays intact
        print(f"error: {e}", file=sys.stderr)
        return 2
    short = {k: v for k, v in summary.items() if k != "skipped_files"}
    print(json.dumps(short, indent=1))
    for f, why in summary["skipped_files"]:
        print(f"skipped {f}: {why}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
