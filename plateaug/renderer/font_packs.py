"""Font packs: folders of fonts and bitmap typefaces that other installed distributions register
(entry-point group "plateaug.fonts", value a folder path or a callable returning one). This is how
typefaces under another licence stay out of plateaug's own wheel and still reach its regions once
the user installs them (e.g. `pip install ./extras/openalpr-glyphs`, AGPL-3.0)."""

from __future__ import annotations

import importlib.metadata
import os
import warnings
from functools import lru_cache
from pathlib import Path

ENTRY_POINT_GROUP = "plateaug.fonts"
DISABLE_ENV = "PLATEAUG_FONT_PACKS"  # "0": ignore installed packs (the default install's regions)


def installed_font_dirs() -> tuple[Path, ...]:
    """Folders of the installed font packs, sorted by pack name (a pack that fails to load or does
    not name a folder is skipped with a warning naming it); none when $PLATEAUG_FONT_PACKS is "0"."""
    if os.environ.get(DISABLE_ENV, "").strip() == "0":
        return ()
    return _discovered_font_dirs()


@lru_cache(maxsize=1)
def _discovered_font_dirs() -> tuple[Path, ...]:
    dirs = []
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            value = ep.load()
            path = Path(value() if callable(value) else value)
        except Exception as e:  # noqa: BLE001 - a broken third-party pack must not break plateaug
            warnings.warn(f"font pack {ep.name!r} ({ep.value}) cannot be loaded, skipped: {e}", stacklevel=2)
            continue
        if not path.is_dir():
            warnings.warn(f"font pack {ep.name!r} ({ep.value}) names {path}, which is not a folder; skipped",
                          stacklevel=2)
            continue
        dirs.append(path)
    return tuple(dirs)
