"""Cut the glyphs of your own labelled real plate crops into bitmap typefaces a region spec can use.

    python -m plateaug.glyphs --real DIR --out glyphs/ [--regions cn,us] [--variants 8]

DIR is laid out as for `python -m plateaug.train` (labels.csv with file,region,text). Only the
training split is cut (the validation split stays unseen). For each region it writes
`OUT/<region>_<k>` for k < variants (fewer where no character has that many cuts); name them in a
spec's `font = [...]` list (a path relative to the spec) so that plates draw the real glyph shapes
(README, "Regions are data").
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch

from .renderer.spec_loader import load_region
from .training.real_glyphs import GLYPH_SPECS, MIN_SCORE, covering_font, cut_glyphs, write_typefaces
from .training.realdata import load_real

MAX_VARIANTS = 16  # a spec's class may vary over at most 16 typefaces


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plateaug.glyphs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", required=True, help="folder of real plate crops (+ labels.csv with texts)")
    parser.add_argument("--labels", help="labels CSV (default: REAL/labels.csv)")
    parser.add_argument("--out", required=True,
                        help="folder to write the typefaces into (existing ones are never overwritten)")
    parser.add_argument("--regions", default=",".join(GLYPH_SPECS),
                        help=f"comma list of {sorted(GLYPH_SPECS)} (default: all)")
    parser.add_argument("--variants", type=int, default=8, help=f"typefaces per region, 1-{MAX_VARIANTS} (default 8)")
    parser.add_argument("--min-score", type=float, default=MIN_SCORE,
                        help=f"fit of a crop to its render below which it gives no glyphs (default {MIN_SCORE})")
    parser.add_argument("--prefix", default="", help="prefix of the typeface folders' names (OUT/<prefix><region>_<k>)")
    parser.add_argument("--license", default="", help="licence of the crops, written into each typeface.toml")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    regions = [r for r in args.regions.split(",") if r]
    unknown = [r for r in regions if r not in GLYPH_SPECS]
    if unknown or not regions:
        parser.error(f"--regions: unknown {unknown}; choose from {sorted(GLYPH_SPECS)}")
    if not 1 <= args.variants <= MAX_VARIANTS:
        parser.error(f"--variants must be 1-{MAX_VARIANTS}, got {args.variants}")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        real = load_real(args.real, args.labels, regions=regions)
        for region in regions:
            group = real.train.get(region)
            if group is None or not any(group.texts):
                print(f"{region}: no labelled training crops, skipped")
                continue
            spec = load_region(GLYPH_SPECS[region])
            glyphs = cut_glyphs(group, spec, args.min_score)
            if not glyphs:
                print(f"{region}: no crop fitted its render well enough, nothing written")
                continue
            counts = Counter(g.char for g in glyphs)
            fallback = covering_font(spec)
            written = write_typefaces(glyphs, Path(args.out), args.prefix + region, args.variants, fallback,
                                      source=f"{len(group.texts)} training crops of {Path(args.real).name}/{region}",
                                      license=args.license)
            print(f"{region}: {len(glyphs)} glyphs of {len(counts)} characters from {len(group.texts)} crops "
                  f"({', '.join(f'{c} {n}' for c, n in sorted(counts.items()))}) -> "
                  f"{written[0].parent}/{args.prefix}{region}_0..{len(written) - 1}")
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
