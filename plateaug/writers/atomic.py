"""Crash-safe file writes: temp file in the same folder, fsync, rename. A reader (or a resumed
run) sees the old file or the complete new one, never a torn one."""

from __future__ import annotations

import os
from pathlib import Path


def tmp_path(path: Path, tag: str = "") -> Path:
    """The temp name used while `path` is written; `tag` keeps concurrent writers apart."""
    return path.with_name(f".{path.name}.{tag or os.getpid()}.tmp")


def atomic_write_bytes(path: str | Path, data: bytes, tag: str = "") -> Path:
    """Write `data` to `path` atomically; on any error the temp file is removed and `path` is
    untouched."""
    path = Path(path)
    tmp = tmp_path(path, tag)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def publish(tmp: Path, path: Path) -> Path:
    """Make a finished temp file (written by another library, e.g. an ONNX exporter) durable and
    rename it over `path` in one step."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def atomic_write_text(path: str | Path, text: str, tag: str = "") -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), tag)
