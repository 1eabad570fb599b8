"""Generator and discriminator architectures (one per file) and a small factory."""

from __future__ import annotations

from torch import nn

from .contract import CHANNELS, IN_CHANNELS, OUT_CHANNELS, VALUE_RANGE, colour_hint, generator_input
from .crnn import CRNN, greedy_decode, with_charset
from .patchgan import PatchDiscriminator
from .unet import UNetGenerator

# name -> constructor keyword arguments; "unet_s" is the shipped default
GENERATORS: dict[str, dict] = {
    "unet_xs": dict(ngf=8, max_ch=64, res_blocks=1, head_ch=8),
    "unet_s": dict(ngf=16, max_ch=128, res_blocks=1, head_ch=12),
    "unet_m": dict(ngf=32, max_ch=256, res_blocks=2, head_ch=16),
}


def create_generator(name: str = "unet_s", **overrides) -> UNetGenerator:
    """Build a generator by preset name; keyword overrides change single settings."""
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; choose from {sorted(GENERATORS)}")
    return UNetGenerator(**{**GENERATORS[name], **overrides})


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["CHANNELS", "CRNN", "GENERATORS", "IN_CHANNELS", "OUT_CHANNELS", "PatchDiscriminator", "UNetGenerator",
           "VALUE_RANGE", "colour_hint", "create_generator", "generator_input", "greedy_decode", "n_params",
           "with_charset"]
