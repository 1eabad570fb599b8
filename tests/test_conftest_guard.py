"""The suite runs as in a user's fresh clone: no test may rely on ../shared (the development data)."""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def test_default_data_folder_is_hidden_from_every_test() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from common import data_dir
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert os.environ["PLATEAUG_DATA"].endswith("no-shared-data")
    assert not data_dir("real-plates").exists() and not data_dir("real-scenes").exists()


def _data_paths(tree: ast.AST) -> list[tuple[int, str]]:
    """Places that point into ../shared: a string holding "../shared" or "shared/data" (docstrings and
    other bare expression statements aside), or a path `<...>.parent / "shared"`."""
    bare = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
    found = [(n.lineno, n.value) for n in ast.walk(tree)
             if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in bare
             and ("../shared" in n.value or "shared/data" in n.value)]
    found += [(n.lineno, ast.unparse(n)) for n in ast.walk(tree)
              if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div) and isinstance(n.right, ast.Constant)
              and n.right.value == "shared" and isinstance(n.left, ast.Attribute) and n.left.attr == "parent"]
    return found


def test_no_test_names_the_development_data() -> None:
    """A path into ../shared written into a test would pass on CI (whose clone has ../shared beside
    it) and fail in a user's clone: tests build their own fixtures. (This file names it only to test
    the check.)"""
    offenders = [f"{p.name}:{line}: {text}" for p in sorted(TESTS.glob("*.py")) if p.name != Path(__file__).name
                 for line, text in _data_paths(ast.parse(p.read_text(encoding="utf-8")))]
    assert not offenders, offenders


def test_the_check_finds_a_path_into_shared() -> None:
    code = ('"""docstring about ../shared/data"""\nDATA = ROOT.parent / "shared" / "data"\nX = "../shared/y"\n'
            'ok = tmp_path / "shared"')
    assert [t for _, t in _data_paths(ast.parse(code))] == ["../shared/y", "ROOT.parent / 'shared'"]
