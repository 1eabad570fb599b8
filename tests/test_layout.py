"""The package layout: library code lives in stage folders, entry points at the top, and no module
imports another that imports it back (directly or through a chain)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "plateaug"
ENTRY_POINTS = {"render", "train", "export", "generate", "glyphs"}
STAGES = {"renderer", "models", "generator", "training", "stream", "writers"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PKG.rglob("*.py")}


def import_edges(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Explicit imports between plateaug modules (relative ones resolved), at any depth of the file."""
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [source] + [f"{source}.{a.name}" for a in node.names]
            edges[name].update(t for t in targets if t in mods and t != name)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert cycles(import_edges(modules())) == []


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_top_level_holds_only_entry_points_and_stage_folders():
    files = {p.stem for p in PKG.glob("*.py")} - {"__init__", "_version"}
    folders = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert files == ENTRY_POINTS
    assert folders == STAGES
    for stage in STAGES:  # every stage says what it holds
        assert ast.get_docstring(ast.parse((PKG / stage / "__init__.py").read_text(encoding="utf-8")))


@pytest.mark.parametrize("verb", sorted(ENTRY_POINTS))
def test_entry_points_run(verb):
    res = subprocess.run([sys.executable, "-m", f"plateaug.{verb}", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "usage:" in res.stdout


def test_render_function_survives_importing_the_render_cli():
    import plateaug
    import plateaug.render as cli  # sets the package attribute `render` to the CLI module

    assert callable(plateaug.render) and plateaug.render is cli
    plates = plateaug.render("cn_blue", ["京A12345"])
    assert plates.images.shape == (1, 3, 64, 208) and plates.texts == ["京A12345"]
    assert callable(cli.main)
