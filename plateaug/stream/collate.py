"""Collation for variable numbers of boxes: images stacked, targets kept as a list of dicts
(the torchvision detection convention); boxes wrapped in tv_tensors when torchvision imports."""

from __future__ import annotations

from functools import lru_cache

import torch


@lru_cache(maxsize=1)
def _tv_tensors():
    try:  # optional: PyPI's torchvision can fail to import next to a CPU torch build
        from torchvision import tv_tensors

        return tv_tensors
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None


def wrap_boxes(target: dict, canvas_size: tuple[int, int]) -> dict:
    """Target with `boxes` as tv_tensors.BoundingBoxes (XYXY) when torchvision is importable."""
    tv = _tv_tensors()
    if tv is None:
        return target
    return {**target, "boxes": tv.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=canvas_size)}


def collate(samples: list[tuple[torch.Tensor, dict]]) -> tuple[torch.Tensor, list[dict]]:
    """[(image (3, H, W), target), ...] -> (images (B, 3, H, W), [target, ...])."""
    if not samples:
        raise ValueError("collate got an empty list of samples")
    images = [s[0] for s in samples]
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) != 1:
        raise ValueError(f"cannot stack images of different shapes {sorted(shapes)}: give the stream an image_size")
    return torch.stack(images), [s[1] for s in samples]


def ctc_targets(targets: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop-mode targets -> (concatenated labels (sum L,), lengths (B,)) for torch.nn.CTCLoss."""
    labels = [t["label"] for t in targets]
    return torch.cat(labels), torch.tensor([len(x) for x in labels], dtype=torch.int64)
