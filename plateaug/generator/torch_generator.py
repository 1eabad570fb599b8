"""TorchGenerator: a trained checkpoint as a differentiable torch module (training, research)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..models import UNetGenerator, generator_input
from ..models.contract import IN_CHANNELS, check_images
from .checkpoint import load_checkpoint, require_keys


def generator_from_checkpoint(ckpt: dict | str | Path, ema: bool = True, source: str | None = None) -> UNetGenerator:
    """The generator of a plateaug checkpoint (EMA weights by default), in eval mode; errors name
    `source` (default: the path, or "checkpoint dict")."""
    if not isinstance(ckpt, dict):
        source = source or f"checkpoint {ckpt}"
        ckpt = load_checkpoint(ckpt)  # weights_only: a file that would run code is refused
    source = source or "checkpoint dict"
    weights = "ema_state_dict" if ema else "state_dict"
    require_keys(ckpt, ("generator.config", f"generator.{weights}"), source, "holds no usable generator")
    g = ckpt["generator"]
    try:
        model = UNetGenerator(**g["config"])
        model.load_state_dict(g[weights])
    except (TypeError, RuntimeError) as e:  # unknown config fields, weights of another shape
        raise ValueError(f"{source} holds no usable generator ({type(e).__name__}: {e})") from None
    return model.eval()


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """`model` (eval mode) with every BatchNorm2d that directly follows a convolution in an
    nn.Sequential folded into that convolution's weights (the BatchNorm becomes an Identity): the
    same function up to float rounding, one pass over the data fewer. Inference only; in place."""
    for seq in model.modules():
        if isinstance(seq, nn.Sequential):
            for i in range(len(seq) - 1):
                conv, bn = seq[i], seq[i + 1]
                if isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(bn, nn.BatchNorm2d):
                    seq[i] = fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.ConvTranspose2d))
                    seq[i + 1] = nn.Identity()
    return model


class SplitHead(nn.Module):
    """A UNetGenerator head for inference: tanh(conv(cat([h, xs]))) * 0.5 + 0.5 computed as
    sigmoid(conv_h(h) + conv_x(xs)) with the weights doubled (tanh(y) / 2 + 1/2 = sigmoid(2y)) and the
    output channels padded with zero filters to `pad_to`. The same function up to rounding, without
    the full-resolution concatenation copy and with one activation pass instead of three; oneDNN's
    bf16 convolution is also faster with 4 output channels than with 3 (per 32 plates at 64x208 on the
    project's 2-core Intel Xeon: 4.5 ms instead of 9.3 ms for cat + convolution)."""

    def __init__(self, head: nn.Conv2d, split: int, pad_to: int = 4):
        super().__init__()
        out_ch, in_ch = head.weight.shape[:2]
        if not 0 < split < in_ch:
            raise ValueError(f"split must be in (0, {in_ch}), got {split}")
        self.out_ch = out_ch
        pad = max(pad_to, out_ch)
        self.conv_h = nn.Conv2d(split, pad, head.kernel_size, head.stride, head.padding)
        self.conv_x = nn.Conv2d(in_ch - split, pad, head.kernel_size, head.stride, head.padding, bias=False)
        with torch.no_grad():
            w = head.weight.detach() * 2  # (out_ch, in_ch, k, k); doubling is exact in every float format
            for conv in (self.conv_h, self.conv_x):
                conv.weight.zero_()
            self.conv_h.weight[:out_ch] = w[:, :split]
            self.conv_x.weight[:out_ch] = w[:, split:]
            self.conv_h.bias.zero_()
            if head.bias is not None:
                self.conv_h.bias[:out_ch] = head.bias.detach() * 2

    def forward(self, h: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        """h (B, split, H, W), xs (B, in_ch - split, H, W) -> (B, out_ch, H, W) float32 in [0, 1],
        contiguous. The sigmoid runs on the float32 copy the caller needs anyway (on a channel slice
        of a channels-last tensor it takes a slow strided path)."""
        y = self.conv_h(h).add_(self.conv_x(xs))[:, : self.out_ch]  # (B, out_ch, H, W), a channel slice
        out = torch.empty(y.shape, dtype=torch.float32, device=y.device)  # contiguous, whatever y's layout
        return out.copy_(y).sigmoid_()


class TorchGenerator(nn.Module):
    """Backend protocol shared with OnnxGenerator: `forward(condition)` maps the contract input
    (B, 4, H, W) in [0, 1] to RGB (B, 3, H, W) in [0, 1]; `translate(images)` builds the
    condition from renders first. Both are differentiable (gradients reach the render).

    `dtype`: the precision the network runs in. float32 (default) is the checkpoint as trained;
    bfloat16 (or float16, GPU only) is for inference: an eval copy with BatchNorm folded into the
    convolutions, weights in that dtype, channels-last layout (oneDNN's bf16 kernels on AMX or
    AVX-512 BF16 CPUs; a UNetGenerator's head split by SplitHead); inputs and outputs stay float32
    either way."""

    def __init__(self, checkpoint: str | Path | dict | UNetGenerator, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"dtype must be torch.float32, torch.bfloat16 or torch.float16, got {dtype}")
        if dtype == torch.float16 and torch.device(device).type == "cpu":
            raise ValueError("dtype torch.float16 needs a GPU device; on the CPU use torch.bfloat16")
        self.dtype = dtype
        self.model = checkpoint if isinstance(checkpoint, nn.Module) else generator_from_checkpoint(checkpoint)
        self.model.to(device).eval()
        self.split_head: SplitHead | None = None
        if dtype != torch.float32:  # an inference copy: the caller's module is left as it is
            self.model = fold_batchnorm(copy.deepcopy(self.model)).to(dtype=dtype, memory_format=torch.channels_last)
            if isinstance(self.model, UNetGenerator):
                head = SplitHead(self.model.head, self.model.config["head_ch"])
                self.split_head = head.to(self.device, dtype=dtype, memory_format=torch.channels_last)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        if condition.ndim != 4 or condition.shape[1] != IN_CHANNELS:
            raise ValueError(f"generator input must be (B, {IN_CHANNELS}, H, W), got {tuple(condition.shape)}")
        if self.dtype == torch.float32:
            return self.model(condition)
        x = condition.to(self.dtype).contiguous(memory_format=torch.channels_last)  # (B, 4, H, W)
        if self.split_head is not None:
            return self.split_head(*self.model.trunk(x))  # (B, 3, H, W) float32 in [0, 1]
        return self.model(x).to(dtype=torch.float32, memory_format=torch.contiguous_format)

    def translate(self, images: torch.Tensor) -> torch.Tensor:
        """Clean renders (B, 3, H, W) in [0, 1] -> photographed-looking plates, same shape."""
        check_images(images)
        return self(generator_input(images))
