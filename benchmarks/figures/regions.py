"""Regenerate regions.png: every shipped region, two clean plates and the first one's outline.

    python benchmarks/figures/regions.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))
from plateaug import builtin_regions, outline, render, sample_text  # noqa: E402
from plateaug.writers.sheet import contact_sheet  # noqa: E402


def main() -> None:
    rows, captions = [], []
    for region in builtin_regions():
        plates = render(region, sample_text(region, 2, torch.Generator().manual_seed(0)))
        rows.append([plates.images[0], plates.images[1], outline(plates.images[:1])[0]])
        captions.append(f"{region}: {', '.join(plates.texts)} | outline")
    print("wrote", contact_sheet(rows, HERE / "regions.png", captions=captions))


if __name__ == "__main__":
    main()
