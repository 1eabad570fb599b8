"""pix2pix U-Net generator sized for plate canvases: fully convolutional (any H, W that are
multiples of 16), ~1M parameters, ~0.25 GFLOP per 64x256 plate."""

from __future__ import annotations

import torch
from torch import nn

from .contract import IN_CHANNELS, OUT_CHANNELS


def _down(cin: int, cout: int, norm: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class _Residual(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(ch, ch, 3, 1, 1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(inplace=True),
                                  nn.Conv2d(ch, ch, 3, 1, 1, bias=False), nn.BatchNorm2d(ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


class UNetGenerator(nn.Module):
    """U-Net: `depth` stride-2 levels (channels ngf * 2**i, capped at max_ch), `res_blocks`
    residual blocks at the bottleneck, skip connections, and a 3x3 head that also sees the
    input. forward: (B, 4, H, W) in [0, 1] -> (B, 3, H, W) in [0, 1]."""

    def __init__(self, in_ch: int = IN_CHANNELS, out_ch: int = OUT_CHANNELS, ngf: int = 16, depth: int = 4,
                 max_ch: int = 128, res_blocks: int = 1, head_ch: int = 12):
        super().__init__()
        chs = [min(ngf * 2**i, max_ch) for i in range(depth)]
        self.config = dict(in_ch=in_ch, out_ch=out_ch, ngf=ngf, depth=depth, max_ch=max_ch,
                           res_blocks=res_blocks, head_ch=head_ch)
        self.downs = nn.ModuleList([_down(in_ch, chs[0], norm=False)] +
                                   [_down(chs[i - 1], chs[i]) for i in range(1, depth)])
        self.mid = nn.Sequential(*[_Residual(chs[-1]) for _ in range(res_blocks)])
        ups = []
        for i in range(depth - 1, 0, -1):  # level i -> i-1, input = cat(up path, skip) except at the bottom
            cin = chs[i] if i == depth - 1 else 2 * chs[i]
            ups.append(_up(cin, chs[i - 1]))
        self.ups = nn.ModuleList(ups)
        self.last_up = _up(2 * chs[0] if depth > 1 else chs[0], head_ch)
        self.head = nn.Conv2d(head_ch + in_ch, out_ch, 3, 1, 1)

    def trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Everything before the head: x (B, 4, H, W) in [0, 1] -> (decoder features (B, head_ch, H, W),
        x in [-1, 1]), the two inputs of the head (TorchGenerator's inference copy splits the head)."""
        xs = x * 2 - 1  # [0, 1] -> [-1, 1]
        skips = []
        h = xs
        for down in self.downs:
            h = down(h)
            skips.append(h)
        h = self.mid(h)
        for j, up in enumerate(self.ups):
            if j > 0:
                h = torch.cat([h, skips[-1 - j]], 1)
            h = up(h)
        if len(self.downs) > 1:
            h = torch.cat([h, skips[0]], 1)
        return self.last_up(h), xs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, xs = self.trunk(x)
        return torch.tanh(self.head(torch.cat([h, xs], 1))) * 0.5 + 0.5
