"""Augmentation presets (kornia) that move the labels with the pixels.

Geometric transforms are applied to the images and, as keypoints, to every character-box
corner and the plate quadrilateral; boxes are then re-fitted around the moved corners. kornia
samples from torch's global RNG, so `augment` seeds it (inside `fork_rng`) from the caller's
per-batch seed: same seed, same augmentation. On CUDA the images' device generator is forked and
seeded too (ops such as noise draw there): CUDA batches are reproducible and the caller's CUDA RNG
is left as it was.
"""

from __future__ import annotations

from functools import lru_cache

import kornia.augmentation as K
import torch
from kornia.geometry.transform import warp_perspective
from torch import nn

from .fused_augment import FusedLight

PRESETS = ("none", "light", "heavy", "light_kornia")
CPU_CHUNK = 32  # images augmented at a time on the CPU


class BorderPerspective(K.RandomPerspective):
    """kornia's RandomPerspective, but filling uncovered pixels from the border instead of
    black (a black wedge is an artefact no camera makes)."""

    def apply_transform(self, input, params, flags, transform=None):  # noqa: A002 - kornia's signature
        H, W = input.shape[-2:]
        return warp_perspective(input, transform, (H, W), mode=flags["resample"].name.lower(),
                                align_corners=flags["align_corners"], padding_mode="border")


def build_preset(name: str) -> nn.Module | None:
    """`none` -> None; `light` -> FusedLight (the kornia light preset's transforms and distributions,
    perspective and affine in one warp: fused_augment.py); `light_kornia`/`heavy` -> kornia
    AugmentationSequential over (image, keypoints)."""
    if name == "none":
        return None
    if name == "light":
        return FusedLight()  # the same parameters as light_kornia below
    if name == "light_kornia":
        # cheap ops only (this preset is on the stream's default path): no HSV round
        # trip, no full-batch noise tensor (kornia draws it for every image whatever p is)
        ops = [
            BorderPerspective(0.12, p=0.5, sampling_method="area_preserving"),
            K.RandomAffine(degrees=3, translate=(0.02, 0.04), scale=(0.92, 1.05), shear=(-4, 4), p=0.5,
                           padding_mode="border"),
            K.RandomMotionBlur(3, angle=30.0, direction=0.5, p=0.2),
            K.ColorJiggle(0.2, 0.2, 0.0, 0.0, p=0.5),
        ]
    elif name == "heavy":
        ops = [
            BorderPerspective(0.25, p=0.6, sampling_method="area_preserving"),
            K.RandomAffine(degrees=8, translate=(0.04, 0.08), scale=(0.8, 1.08), shear=(-8, 8), p=0.8,
                           padding_mode="border"),
            K.RandomMotionBlur((3, 7), angle=45.0, direction=0.5, p=0.35),
            K.RandomGaussianBlur((5, 5), (0.3, 1.5), p=0.3),  # defocus
            K.ColorJiggle(0.35, 0.35, 0.35, 0.05, p=0.7),
            K.RandomPlasmaShadow(roughness=(0.1, 0.5), shade_intensity=(-0.5, 0.0), shade_quantity=(0.0, 0.4),
                                 p=0.3),
            K.RandomGaussianNoise(std=0.05, p=0.5),
            K.RandomErasing(scale=(0.01, 0.04), ratio=(0.3, 3.0), value=0.0, p=0.15),  # small occlusions
            K.RandomJPEG(jpeg_quality=(30.0, 90.0), p=0.4),
        ]
    else:
        raise ValueError(f"unknown augmentation preset {name!r}; choose from {PRESETS} or pass a kornia module")
    return K.AugmentationSequential(*ops, data_keys=["input", "keypoints"])


@lru_cache(maxsize=8)
def _preset(name: str) -> nn.Module | None:
    return build_preset(name)


@lru_cache(maxsize=8)
def device_preset(name: str, device: str) -> nn.Module | None:
    """Preset `name` for a stream on `device`. On CUDA its image-sized random parameters (the heavy
    preset's Gaussian noise, a (B, 3, H, W) tensor per batch) are drawn on the GPU, from the device
    generator `augment` seeds, instead of on the CPU and copied; the small per-image parameters
    stay on the CPU generator (kornia's default, and the same on every device). Elsewhere, the
    shared preset."""
    if torch.device(device).type != "cuda":
        return _preset(name)
    aug = build_preset(name)
    for m in aug.modules() if aug is not None else ():
        if isinstance(m, K.RandomGaussianNoise) and m._param_generator is not None:
            m._param_generator.set_rng_device_and_dtype(torch.device(device), torch.float32)
    return aug


def resolve(augment: str | nn.Module | None) -> nn.Module | None:
    """A preset name, a user kornia AugmentationSequential (data_keys input + keypoints), or None."""
    if augment is None:
        return augment
    if isinstance(augment, nn.Module):
        return _check_user_augment(augment)
    if isinstance(augment, str):
        return _preset(augment)
    raise TypeError(f"augment must be a preset name {PRESETS}, a kornia AugmentationSequential or None, "
                    f"got {type(augment).__name__}")


def _check_user_augment(aug: nn.Module) -> nn.Module:
    """A user module must be a kornia AugmentationSequential over exactly (input, keypoints): the
    stream calls it as aug(images, points) and moves the labels with the returned points."""
    expected = "a kornia.augmentation.AugmentationSequential(..., data_keys=['input', 'keypoints'])"
    if not isinstance(aug, K.AugmentationSequential):
        raise TypeError(f"augment must be a preset name {PRESETS}, None, or {expected}; got a "
                        f"{type(aug).__module__}.{type(aug).__name__} module")
    keys = [getattr(k, "name", str(k)).lower() for k in (aug.data_keys or [])]
    if keys not in (["image", "keypoints"], ["input", "keypoints"]):
        raise ValueError(f"augment: the AugmentationSequential has data_keys {keys or None}; the stream needs "
                         f"{expected} so character boxes and corners move with the pixels")
    return aug


def boxes_to_corners(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) xyxy -> (..., 4, 2) corners TL, TR, BR, BL."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([torch.stack([x0, y0], -1), torch.stack([x1, y0], -1),
                        torch.stack([x1, y1], -1), torch.stack([x0, y1], -1)], -2)


def corners_to_boxes(corners: torch.Tensor, width: float, height: float) -> torch.Tensor:
    """(..., 4, 2) quadrilaterals -> (..., 4) enclosing xyxy boxes clipped to the image."""
    lo, hi = corners.amin(-2), corners.amax(-2)
    box = torch.cat([lo, hi], -1)
    return torch.stack([box[..., 0].clamp(0, width), box[..., 1].clamp(0, height),
                        box[..., 2].clamp(0, width), box[..., 3].clamp(0, height)], -1)


def inside_plates(char_boxes: torch.Tensor, corners: torch.Tensor, valid: torch.Tensor, width: float,
                  height: float) -> torch.Tensor:
    """Character boxes (N, S, 4) cut to their plate's enclosing box (corners (N, 4, 2)); zero rows stay zero.

    A box carried through two warps (framing or scene composition, then augmentation) is the
    enclosing box of an enclosing box, a little loose; the character itself lies on its plate."""
    plate = corners_to_boxes(corners, width, height)[:, None, :]  # (N, 1, 4)
    lo = torch.maximum(char_boxes[..., :2], plate[..., :2])
    hi = torch.maximum(torch.minimum(char_boxes[..., 2:], plate[..., 2:]), lo)
    return torch.cat([lo, hi], -1) * valid[..., None].to(char_boxes.device)


def augment(aug: nn.Module | None, images: torch.Tensor, char_boxes: torch.Tensor, corners: torch.Tensor,
            valid: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Apply `aug` to images and move the labels with them.

    images (B, 3, H, W) in [0, 1]; char_boxes (B, S, 4) xyxy, valid (B, S) bool marks real rows;
    corners (B, P, 2) any points (plate quadrilaterals). Returns the same three, transformed
    (invalid rows are zero).
    """
    if aug is None:
        return images, char_boxes, corners
    B, S = char_boxes.shape[:2]
    H, W = images.shape[-2:]
    points = torch.cat([boxes_to_corners(char_boxes).reshape(B, S * 4, 2), corners], 1)  # (B, 4S + 4, 2)
    # on the CPU, cache-sized chunks are about 2x faster than one large batch (582 -> 1,281 plates/s at B=256)
    step = CPU_CHUNK if images.device.type == "cpu" else B
    # kornia samples its parameters from the CPU generator (the same on every device); a few ops draw
    # on the images' device (noise): that generator is seeded too, and both are restored afterwards,
    # so the caller's RNG streams, CPU and CUDA, are untouched
    cuda = images.device.type == "cuda"
    index = (images.device.index if images.device.index is not None else torch.cuda.current_device()) if cuda else None
    with torch.random.fork_rng(devices=[index] if cuda else []):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        parts = [aug(images[s: s + step], points[s: s + step]) for s in range(0, B, step)]
    out = torch.cat([p[0] for p in parts]).clamp_(0, 1)
    points = torch.cat([p[1] for p in parts])
    char_corners = points[:, : 4 * S].reshape(B, S, 4, 2)
    boxes = corners_to_boxes(char_corners, W, H) * valid.to(images.device)[..., None]
    return out, boxes, points[:, 4 * S:]
