"""`python -m plateaug.render`: write clean plates, their outlines and a contact sheet."""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import torch

from .renderer.draw import render
from .renderer.outline import outline
from .renderer.spec_loader import load_region
from .renderer.text import sample_text
from .writers.sheet import contact_sheet, to_pil


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plateaug.render", description=__doc__)
    ap.add_argument("--region", default="cn_blue", help="shipped region name or path to a .toml spec")
    ap.add_argument("-n", type=int, default=16, help="number of plates")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--boxes", action="store_true", help="draw character boxes on the sheet")
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error(f"-n must be >= 1, got {args.n}")
    try:
        spec = load_region(args.region)
    except ValueError as e:
        ap.error(str(e))
    texts = sample_text(spec, args.n, torch.Generator().manual_seed(args.seed))
    plates = render(spec, texts, args.device)
    edges = outline(plates.images)
    args.out.mkdir(parents=True, exist_ok=True)
    labels = []
    for i in range(args.n):
        to_pil(plates.images[i]).save(args.out / f"{spec.name}_{i:05d}.png")
        to_pil(edges[i]).save(args.out / f"{spec.name}_{i:05d}_outline.png")
        labels.append({"file": f"{spec.name}_{i:05d}.png", "text": plates.texts[i],
                       "char_boxes": plates.char_boxes[i, : int(plates.lengths[i])].tolist(),
                       "corners": plates.corners[i].tolist()})
    (args.out / "labels.json").write_text(json.dumps(labels, ensure_ascii=False, indent=1), encoding="utf-8")
    sheet = contact_sheet([[plates.images[i], edges[i]] for i in range(args.n)],
                          args.out / f"{spec.name}_sheet.png", captions=plates.texts,
                          boxes=list(plates.char_boxes) if args.boxes else None)
    print(f"wrote {args.n} plates, outlines and {sheet}")
    return 0


class _CallableModule(types.ModuleType):
    """Importing this CLI module makes Python set the package attribute `plateaug.render` to it,
    shadowing the `render` function plateaug exports; calling the module renders, so
    `plateaug.render(...)` means the same thing whichever was imported first."""

    def __call__(self, *args, **kwargs):
        return render(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    raise SystemExit(main())
