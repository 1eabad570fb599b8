"""Regenerate export/samples.png (the model card's figure): for every shipped region four clean
renders and the default generator's translations of them (ONNX Runtime fp32, the shipped model).

    python benchmarks/figures/samples.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from plateaug import OnnxGenerator, builtin_regions, render, sample_text  # noqa: E402
from plateaug.writers.sheet import contact_sheet  # noqa: E402


def main() -> None:
    generator = OnnxGenerator()  # export/plateaug_default.onnx
    rows, captions = [], []
    for region in builtin_regions():
        plates = render(region, sample_text(region, 4, torch.Generator().manual_seed(0)))
        rows += [list(plates.images), list(generator.translate(plates.images))]
        captions += [f"{region}: clean renders", f"{region}: generated ({', '.join(plates.texts)})"]
    print("wrote", contact_sheet(rows, ROOT / "export" / "samples.png", captions=captions))


if __name__ == "__main__":
    main()
