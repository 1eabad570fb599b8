"""PatchGAN discriminator (pix2pix): judges overlapping patches of (condition, image) pairs."""

from __future__ import annotations

import torch
from torch import nn

from .contract import IN_CHANNELS, OUT_CHANNELS


class PatchDiscriminator(nn.Module):
    """`n_layers` stride-2 4x4 convs then two stride-1 ones; receptive field 34 px for
    n_layers=2 (a character and its neighbours on a 64 px high plate), 70 px for 3.

    forward(condition (B, 4, H, W), image (B, 3, H, W), both in [0, 1]) -> (B, 1, h, w) logits.
    """

    def __init__(self, in_ch: int = IN_CHANNELS + OUT_CHANNELS, ndf: int = 32, n_layers: int = 2):
        super().__init__()
        self.config = dict(in_ch=in_ch, ndf=ndf, n_layers=n_layers)
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = ndf
        for i in range(1, n_layers):
            nxt = min(ndf * 2**i, 256)
            layers += [nn.Conv2d(ch, nxt, 4, 2, 1, bias=False), nn.BatchNorm2d(nxt), nn.LeakyReLU(0.2, True)]
            ch = nxt
        nxt = min(ch * 2, 256)
        layers += [nn.Conv2d(ch, nxt, 4, 1, 1, bias=False), nn.BatchNorm2d(nxt), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(nxt, 1, 4, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([condition, image], 1) * 2 - 1)
