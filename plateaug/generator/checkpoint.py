"""Checkpoints: written atomically (temp file + rename), loaded with clear errors."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from ..writers.atomic import atomic_write_bytes

FORMAT = "plateaug-checkpoint-1"


def atomic_save(obj: Any, path: str | Path) -> Path:
    """torch.save to `path` via a temp file in the same folder, fsync'd, then renamed: a crash
    leaves either the old file or the new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a plateaug checkpoint; missing, corrupt or foreign files raise a clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # torch raises many types for torn or foreign files
        raise ValueError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a plateaug checkpoint (expected format {FORMAT!r})")
    return ckpt


def generator_checkpoint(model: torch.nn.Module, name: str = "custom", canvases: dict | None = None,
                         training_data: dict | None = None) -> dict:
    """A minimal checkpoint holding just a generator (what export and TorchGenerator read);
    the trainer writes the same keys plus optimiser and discriminator state."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {"format": FORMAT, "config": {}, "generator": {"name": name, "config": dict(model.config),
                                                       "state_dict": state, "ema_state_dict": state},
            "canvases": canvases or {}, "training_data": training_data or {}, "val_history": [],
            "global_step": 0, "elapsed_s": 0.0}


def slim_checkpoint(ckpt: dict) -> dict:
    """Just what inference needs from a training checkpoint: the generator's EMA weights (as both
    weight sets), its config, canvases, training data and validation history."""
    g = ckpt["generator"]
    weights = {k: v.detach().clone() for k, v in g["ema_state_dict"].items()}
    keep = {k: ckpt[k] for k in ("canvases", "training_data", "val_history", "global_step", "elapsed_s", "config")
            if k in ckpt}
    return {"format": FORMAT, **keep, "generator": {"name": g["name"], "config": dict(g["config"]),
                                                  "state_dict": weights, "ema_state_dict": weights}}
