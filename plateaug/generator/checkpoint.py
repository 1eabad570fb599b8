"""Checkpoints: written atomically (temp file + rename), loaded with clear errors."""

from __future__ import annotations

import io
import pathlib
import re
from collections.abc import Iterable
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


# Harmless types older checkpoints may hold besides tensors and plain values (a TrainConfig built
# through the API with pathlib paths): constructing one only parses a string, it runs nothing.
_OLD_SAFE_TYPES = [pathlib.PosixPath, pathlib.PurePosixPath, pathlib.WindowsPath, pathlib.PureWindowsPath]

# Keys (dotted = nested) that resuming a run needs; `require_keys` names the missing ones.
TRAINING_KEYS = ("config", "config.real", "generator.config", "generator.state_dict", "generator.ema_state_dict",
                 "discriminator.state_dict", "opt_g", "opt_d", "epoch", "step_in_epoch", "global_step", "elapsed_s",
                 "val_history")


def plain(obj: Any) -> Any:
    """`obj` with paths turned into strings (recursively through dicts, lists and tuples), so that
    what is saved loads with torch.load(weights_only=True)."""
    if isinstance(obj, pathlib.PurePath):
        return str(obj)
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [plain(v) for v in obj]
        return items if isinstance(obj, list) else tuple(items)
    return obj


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a plateaug checkpoint; missing, corrupt or foreign files raise a clear error.

    Loads with torch.load(weights_only=True): only tensors and plain Python values are rebuilt,
    so a file whose pickle would run code (a `__reduce__` calling anything) is refused, and
    nothing in it runs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals(_OLD_SAFE_TYPES):
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for torn or foreign files
        if "Weights only load failed" in str(e):  # the safe unpickler stopped, before anything was built
            why = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\. Please|\n|$)", str(e))
            detail = why.group(1).strip() if why else "refused by the safe loader"
            if re.search(r"GLOBAL|Can only (?:create|build)|call reduce", detail):  # a type or function
                raise ValueError(f"checkpoint {path} is not a safe plain checkpoint: it holds objects other than "
                                 f"tensors and plain Python values ({detail}), and loading those could run code; "
                                 f"refused, nothing in it was run") from None
            raise ValueError(f"checkpoint {path} cannot be read: it is not a plain torch checkpoint "
                             f"({detail})") from None  # garbage bytes, an exotic pickle: never the unsafe advice
        raise ValueError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a plateaug checkpoint (expected format {FORMAT!r})")
    return ckpt


def missing_keys(ckpt: dict, keys: Iterable[str]) -> list[str]:
    """Those of the dotted `keys` ("generator.config") that `ckpt` lacks."""
    missing = []
    for key in keys:
        node: Any = ckpt
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                missing.append(key)
                break
            node = node[part]
    return missing


def require_keys(ckpt: dict, keys: Iterable[str], source: str, problem: str) -> dict:
    """`ckpt` itself, or a ValueError "<source> <problem>: it is missing <keys>", e.g. "checkpoint
    runs/x/last.pt holds no usable generator: it is missing generator.config"."""
    missing = missing_keys(ckpt, keys)
    if missing:
        raise ValueError(f"{source} {problem}: it is missing {', '.join(missing)}")
    return ckpt


def generator_checkpoint(model: torch.nn.Module, name: str = "custom", canvases: dict | None = None,
                         training_data: dict | None = None) -> dict:
    """A minimal checkpoint holding just a generator (what export and TorchGenerator read);
    the trainer writes the same keys plus optimiser and discriminator state."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {"format": FORMAT, "config": {}, "generator": {"name": name, "config": dict(model.config),
                                                       "state_dict": state, "ema_state_dict": state},
            "canvases": plain(canvases or {}), "training_data": plain(training_data or {}), "val_history": [],
            "global_step": 0, "elapsed_s": 0.0}


def slim_checkpoint(ckpt: dict) -> dict:
    """Just what inference needs from a training checkpoint: the generator's EMA weights (as both
    weight sets), its config, canvases, training data and validation history."""
    g = ckpt["generator"]
    weights = {k: v.detach().clone() for k, v in g["ema_state_dict"].items()}
    keep = {k: ckpt[k] for k in ("canvases", "training_data", "val_history", "global_step", "elapsed_s", "config")
            if k in ckpt}
    return {"format": FORMAT, **keep, "generator": {"name": g.get("name", "custom"), "config": dict(g["config"]),
                                                  "state_dict": weights, "ema_state_dict": weights}}
