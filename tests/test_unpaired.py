"""The unpaired term on renders: render batches per region, a structure loss that sees character
shapes but not brightness or texture, and an image-only discriminator."""

from __future__ import annotations

import torch

from plateaug.models import PatchDiscriminator
from plateaug.training.unpaired import judge_image, render_batch, structure, structure_loss


def test_render_batch_sizes_and_unknown_region():
    g = torch.Generator().manual_seed(0)
    imgs, texts = render_batch("cn", 3, (64, 208), g)
    assert imgs.shape == (3, 3, 64, 208) and 0 <= imgs.min() and imgs.max() <= 1
    assert len(texts) == 3 and all(len(t) == 7 for t in texts)
    assert render_batch("us", 2, (48, 96), g)[0].shape == (2, 3, 48, 96)
    assert render_batch("us", 2, None, g)[0].shape == (2, 3, 96, 192)  # the spec's own canvas
    assert render_batch("xx", 2, (64, 192), g) is None


def test_structure_ignores_brightness_contrast_and_noise_but_not_characters():
    g = torch.Generator().manual_seed(1)
    plates = render_batch("br", 2, (64, 192), g)[0]
    other = render_batch("br", 2, (64, 192), torch.Generator().manual_seed(99))[0]
    photo = (plates * 0.6 + 0.2 + 0.03 * torch.randn(plates.shape, generator=g)).clamp(0, 1)
    same = structure_loss(photo, plates).item()
    different = structure_loss(other, plates).item()
    assert same < 0.15 and different > 3 * same
    assert structure(plates).shape == (2, 1, 16, 48)


def test_structure_loss_has_gradients_and_image_only_discriminator_runs():
    x = torch.rand(2, 3, 64, 128, requires_grad=True)
    structure_loss(x, torch.rand(2, 3, 64, 128)).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    d = PatchDiscriminator(in_ch=3)
    out = judge_image(d, torch.rand(2, 3, 64, 128))
    assert out.ndim == 4 and out.shape[:2] == (2, 1)
