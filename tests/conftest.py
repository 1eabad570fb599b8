"""Shared fixtures: small region specs written into tmp folders (no dependency on ../shared)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def no_default_data(tmp_path_factory, monkeypatch) -> None:
    """The benchmarks' default data folder (../shared/data, or $PLATEAUG_DATA) points at a folder that
    does not exist, for this process and the subprocesses tests start: a test that relied on
    ../shared being beside the checkout fails here too, as it would in a user's fresh clone."""
    monkeypatch.setenv("PLATEAUG_DATA", str(tmp_path_factory.getbasetemp() / "no-shared-data"))


@pytest.fixture(autouse=True)
def default_install_fonts(monkeypatch) -> None:
    """Installed font packs (e.g. the AGPL extras in a developer's environment) are hidden, here and
    in the subprocesses tests start: the suite tests the default install; pack tests set their own."""
    monkeypatch.setenv("PLATEAUG_FONT_PACKS", "0")

MINI_SPEC = """\
name = "mini"
description = "test plate: 3 letters, hyphen, 3 digits, flat grey"
size_mm = [300, 100]
canvas_px = [64, 192]

[background]
colors = ["#c8c8c8"]

[text]
colors = ["#101010"]
font = "DejaVuSansCondensed-Bold"

[classes]
L = "ABCXYZ"
D = "0123456789"

[separators]
"-" = { shape = "hyphen", width_mm = 16, size_mm = 10 }

[[rows]]
y_mm = 15
height_mm = 70
char_width_mm = 36
gap_mm = 4

[[patterns]]
pattern = "L L L - D D D"
weight = 1
"""


@pytest.fixture
def mini_spec_text() -> str:
    return MINI_SPEC


@pytest.fixture
def write_spec(tmp_path: Path):
    """write_spec(text, name="x") -> path of a .toml file in tmp_path."""

    def _write(text: str, name: str = "spec") -> Path:
        p = tmp_path / f"{name}.toml"
        p.write_text(text, encoding="utf-8")
        return p

    return _write
