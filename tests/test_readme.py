"""The README's Python examples run as written (blocks preceded by `<!-- tested -->`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"<!-- tested -->\s*```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_tested_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(code, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})


def test_readme_region_spec_example_loads(tmp_path):
    """The "Regions are data" TOML example is a valid spec, draw_as, weights and graphics included."""
    from plateaug import encode_texts, load_region, render

    (block,) = re.findall(r"```toml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    path = tmp_path / "mini.toml"
    path.write_text(block, encoding="utf-8")
    spec = load_region(path)
    assert spec.name == "mini" and spec.class_map["D"].draw_as == (("1", "l"),)
    assert spec.class_map["P"].weights == (1.0, 1.0, 3.0)
    assert spec.graphics is not None and spec.graphics.variants == 8
    plates = render(spec, encode_texts(spec, ["ABC-111"]))
    assert plates.texts == ["ABC111"] and plates.images.shape == (1, 3, 64, 192)
