"""Builders shared by several test files (plain functions; pytest puts tests/ on sys.path)."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import nn

from plateaug import render, sample_text
from plateaug.models import create_generator


def random_generator(seed: int = 0) -> nn.Module:
    """unet_xs with random weights and non-trivial BatchNorm (affine and running stats), in eval mode."""
    torch.manual_seed(seed)
    model = create_generator("unet_xs")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
        model.train()
        for _ in range(2):
            model(torch.rand(4, 4, 32, 64))
    return model.eval()


def make_real(folder: Path, missing_row: bool = False) -> Path:
    """A folder like ../shared/data/real-plates: noisy renders saved as crops (br and us),
    labels.csv, one corrupt JPEG (and, if asked, a row naming a file that does not exist)."""
    g = torch.Generator().manual_seed(0)
    rows = ["file,region,text,source"]
    for region, spec, n in (("br", "br_old", 10), ("us", "us", 8)):
        (folder / region).mkdir(parents=True)
        plates = render(spec, sample_text(spec, n, g))
        noisy = (plates.images + 0.05 * torch.randn(plates.images.shape, generator=g)).clamp(0, 1)
        for i, (img, text) in enumerate(zip(noisy, plates.texts)):
            name = f"{region}/{region}{i:02d}.{'png' if i % 2 else 'jpg'}"
            arr = (img.permute(1, 2, 0) * 255).byte().numpy()
            Image.fromarray(arr).resize((150, 50) if region == "br" else (120, 60)).save(folder / name)
            rows.append(f"{name},{region},{text},fixture")
    (folder / "br" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    rows.append("br/broken.jpg,br,ABC1234,fixture")
    if missing_row:
        rows.append("br/missing.jpg,br,ABC1235,fixture")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder
