"""The seed project's pipeline, re-created as the baseline: one plate at a time, drawn with
Pillow at 226x70, outlined with Canny (OpenCV when installed, else kornia), translated by a
pix2pix `unet_256` (ngf=64, BatchNorm, 256x256)."""

from __future__ import annotations

import random

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from plateaug.renderer.spec import FONTS_DIR

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
ALNUM = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"


class SeedRenderer:
    """Per-plate Pillow drawing of a blue CN plate, as the seed did (fonts loaded once)."""

    def __init__(self, size: tuple[int, int] = (226, 70)):
        self.size = size
        self.cjk = ImageFont.truetype(str(FONTS_DIR / "NotoSansSC-Bold.otf"), 44)
        self.latin = ImageFont.truetype(str(FONTS_DIR / "DejaVuSansCondensed-Bold.ttf"), 46)
        self.rng = random.Random(0)

    def __call__(self) -> tuple[np.ndarray, str]:
        text = self.rng.choice(PROVINCES) + self.rng.choice(ALNUM[10:]) + "".join(self.rng.choices(ALNUM, k=5))
        im = Image.new("RGB", self.size, (20, 70, 180))
        d = ImageDraw.Draw(im)
        d.rectangle((2, 2, self.size[0] - 3, self.size[1] - 3), outline=(230, 230, 240), width=2)
        x = 8
        for i, ch in enumerate(text):
            d.text((x, 8), ch, font=self.cjk if i == 0 else self.latin, fill=(245, 245, 245))
            x += 30 if i != 1 else 38
        return np.asarray(im), text


def canny(img: np.ndarray) -> np.ndarray:
    """Canny edges of one HxWx3 uint8 image -> HxW uint8."""
    try:
        import cv2  # optional: the seed used OpenCV

        return cv2.Canny(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), 100, 200)
    except ImportError:
        import kornia

        t = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
        return (kornia.filters.canny(kornia.color.rgb_to_grayscale(t))[1][0, 0] * 255).byte().numpy()


def canny_backend() -> str:
    try:
        import cv2  # noqa: F401

        return "opencv"
    except ImportError:
        return "kornia"


class _Block(nn.Module):
    """One level of the original pix2pix U-Net (Isola et al.): down, inner, up with skip."""

    def __init__(self, outer: int, inner: int, sub: nn.Module | None = None, outermost: bool = False,
                 innermost: bool = False, in_ch: int | None = None):
        super().__init__()
        in_ch = in_ch or outer
        down = [nn.LeakyReLU(0.2, True), nn.Conv2d(in_ch, inner, 4, 2, 1, bias=False)]
        if outermost:
            self.model = nn.Sequential(down[1], sub, nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1),
                                       nn.Tanh())
        elif innermost:
            self.model = nn.Sequential(*down, nn.ReLU(True), nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=False),
                                       nn.BatchNorm2d(outer))
        else:
            self.model = nn.Sequential(*down, nn.BatchNorm2d(inner), sub, nn.ReLU(True),
                                       nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=False), nn.BatchNorm2d(outer))
        self.outermost = outermost

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


def unet_256(ngf: int = 64, in_ch: int = 3, out_ch: int = 3) -> nn.Module:
    """pix2pix `unet_256`: 8 down/up levels, ngf=64, BatchNorm (~54M parameters)."""
    block = _Block(ngf * 8, ngf * 8, innermost=True)
    for _ in range(3):
        block = _Block(ngf * 8, ngf * 8, block)
    block = _Block(ngf * 4, ngf * 8, block)
    block = _Block(ngf * 2, ngf * 4, block)
    block = _Block(ngf, ngf * 2, block)
    return _Block(out_ch, ngf, block, outermost=True, in_ch=in_ch).eval()


def seed_pipeline(renderer: SeedRenderer, model: nn.Module, batch: int) -> torch.Tensor:
    """`batch` plates the seed's way: per-plate render + Canny + resize, then unet_256."""
    edges = []
    for _ in range(batch):
        img, _ = renderer()
        e = Image.fromarray(canny(img)).convert("RGB").resize((256, 256))
        edges.append(torch.from_numpy(np.asarray(e)).permute(2, 0, 1).float() / 127.5 - 1)
    with torch.no_grad():
        return model(torch.stack(edges))
