"""Device helpers shared by the renderer, the stream and the ONNX runtime: which GPU "cuda"
means, and host-to-device copies that never make the host wait."""

from __future__ import annotations

import os

import torch


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch.device with an explicit index for CUDA.

    "cuda" without an index is `cuda:{LOCAL_RANK}` when the LOCAL_RANK environment variable
    (torchrun, DDP launchers) names a visible device, else the current CUDA device (device 0 until
    torch.cuda.set_device is called; CUDA is not initialised just to ask). Under DDP every rank then
    renders on its own GPU even if it never calls torch.cuda.set_device. "cuda:N" must name a visible
    device: ValueError otherwise. Other devices are returned unchanged."""
    device = torch.device(device)
    if device.type != "cuda":
        return device
    count = torch.cuda.device_count()
    if device.index is None:
        local = os.environ.get("LOCAL_RANK", "").strip()
        if local.isdigit() and int(local) < count:
            return torch.device("cuda", int(local))
        return torch.device("cuda", torch.cuda.current_device() if torch.cuda.is_initialized() else 0)
    if not 0 <= device.index < count:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise ValueError(f"device 'cuda:{device.index}' requested, but torch sees {count} CUDA device(s)"
                         + (f" (cuda:0 to cuda:{count - 1})" if count else "")
                         + (f"; CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""))
    return device


def to_device(t: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """A CPU tensor on `device` without a host sync: on CUDA it is copied through pinned memory with
    non_blocking=True (a blocking copy of pageable memory waits for the GPU to finish everything
    queued before it); elsewhere, or for a tensor already off the CPU, plain `.to(device)`.
    The pinned staging buffer is kept alive by torch's caching host allocator until the copy ran."""
    device = torch.device(device)
    if device.type != "cuda" or t.device.type != "cpu":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)
