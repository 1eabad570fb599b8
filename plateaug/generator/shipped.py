"""Where the shipped default generator files live (the top-level export/ folder)."""

from __future__ import annotations

import sys
from pathlib import Path


def shipped(name: str) -> Path:
    """A file of the top-level export/ folder: next to the package in a checkout or editable
    install, or under <prefix>/share/plateaug/export after a regular `pip install .`."""
    candidates = [Path(__file__).resolve().parents[2] / "export" / name,
                  Path(sys.prefix) / "share" / "plateaug" / "export" / name]
    return next((c for c in candidates if c.exists()), candidates[0])


DEFAULT_ONNX = shipped("plateaug_default.onnx")
DEFAULT_CHECKPOINT = shipped("plateaug_default.pt")
