"""The unpaired term on renders, which closes the generator's train/inference gap.

pix2pix alone learns real crop <- outline(real crop); at inference it gets the crisp outline of
a clean render, which it never saw, and returns a lightly blurred render (../shared/REALISM.md,
cause 1). Here the generator also translates clean renders of each region's spec: an image-only
PatchGAN judges them against the region's real crops (so they must look photographed), and a
structure loss on blurred, standardised luminance keeps every character where the render put
it (so the labels stay true) while leaving texture, light and colour free.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..renderer.draw import render
from ..renderer.text import sample_text

# real-data region -> the shipped spec whose renders stand for it
RENDER_SPECS = {"us": "us", "br": "br_old", "eu": "eu_sk", "cn": "cn_blue"}
STRUCTURE_POOL = 4  # the structure loss compares luminance averaged over 4x4 blocks


def render_batch(region: str, n: int, size: tuple[int, int] | None, g: torch.Generator,
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, list[str]] | None:
    """n clean renders (n, 3, *size) in [0, 1] of the spec standing for `region` and their texts
    (None if no spec does); size None keeps the spec's own canvas."""
    spec = RENDER_SPECS.get(region)
    if spec is None:
        return None
    plates = render(spec, sample_text(spec, n, g), device)
    images = plates.images
    if size is not None and tuple(images.shape[-2:]) != tuple(size):
        images = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
    return images.clamp(0, 1), list(plates.texts)


def structure(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H/4, W/4): luminance averaged over 4x4 blocks, standardised per
    image, so brightness, contrast and fine texture do not count, character shapes do."""
    lum = (images * images.new_tensor([0.299, 0.587, 0.114])[None, :, None, None]).sum(1, keepdim=True)
    small = F.avg_pool2d(lum, STRUCTURE_POOL, ceil_mode=True)
    mean = small.mean(dim=(2, 3), keepdim=True)
    std = small.std(dim=(2, 3), keepdim=True).clamp_min(1e-3)
    return (small - mean) / std


def structure_loss(generated: torch.Tensor, rendered: torch.Tensor) -> torch.Tensor:
    """L1 between the structures of generated plates and the renders they came from. The sign
    of the contrast is free (dark-on-light stays dark-on-light in practice; a flip costs)."""
    return F.l1_loss(structure(generated), structure(rendered))


def judge_image(discriminator: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Logits of an image-only PatchDiscriminator (built with in_ch=3): no condition channels."""
    return discriminator(images[:, :0], images)
