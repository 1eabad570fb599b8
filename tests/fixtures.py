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


def flat_spec(background: str = "#d0d0d0", fonts: str = '"DejaVuSansCondensed-Bold"') -> str:
    """A region spec with a flat background, black text and no separators (ink is only in the
    character slots): "L L D D D D" on a 300 x 100 mm plate, 64 x 192 px canvas."""
    return f"""\
name = "flat"
size_mm = [300, 100]
canvas_px = [64, 192]
[background]
colors = ["{background}"]
[text]
colors = ["#000000"]
font = {fonts}
[classes]
L = "ABCDEFGHKLMNPRSTUVWXYZ"
D = "0123456789"
[[rows]]
y_mm = 15
height_mm = 70
char_width_mm = 34
gap_mm = 6
[[patterns]]
pattern = "L L D D D D"
"""


def onnx_exports(model: nn.Module, folder: Path) -> dict[torch.dtype, Path]:
    """fp32 and fp16 ONNX exports of `model` in `folder` (unverified: test_export verifies; this stays fast)."""
    from plateaug import export_onnx

    return {torch.float32: export_onnx(model, folder / "g.onnx", verify=False).path,
            torch.float16: export_onnx(model, folder / "g_fp16.onnx", fp16=True, verify=False).path}


def digits_spec(fonts: str, name: str = "fonts") -> str:
    """A region spec of six digits in one row, black on white, 300 x 100 mm, 64 x 192 px; `fonts`
    is the TOML value of its text font (a name or a list)."""
    return f"""\
name = "{name}"
size_mm = [300, 100]
canvas_px = [64, 192]
[background]
colors = ["#ffffff"]
[text]
colors = ["#000000"]
font = {fonts}
[classes]
D = "0123456789"
[[rows]]
y_mm = 15
height_mm = 70
char_width_mm = 40
gap_mm = 8
[[patterns]]
pattern = "D D D D D D"
"""
