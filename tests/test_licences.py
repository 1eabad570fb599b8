"""Licences a company can take: the default wheel ships only permissively licensed files, its
metadata says so truthfully, and the AGPL-3.0 extras live in a separate distribution that the
regions find only once it is installed."""

from __future__ import annotations

import email
import fnmatch
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = ROOT / "extras" / "openalpr"
# SPDX identifiers a company can take without copyleft obligations
PERMISSIVE = {"MIT", "Apache-2.0", "OFL-1.1", "BSD-2-Clause", "BSD-3-Clause", "Bitstream-Vera", "CC0-1.0", "0BSD",
              "Unlicense", "Zlib", "ISC"}


def _copy_source(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> Path:
    """The files a clean clone has (git ls-files; else the tree without build outputs), copied to dst:
    a wheel built there holds nothing a stale build/ folder of the working tree might."""
    try:
        files = subprocess.run(["git", "ls-files", "-z"], cwd=src, capture_output=True, check=True).stdout
        paths = [Path(p) for p in files.decode().split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        paths = [p.relative_to(src) for p in src.rglob("*") if p.is_file()
                 and not {"build", "dist", ".git", "__pycache__"} & set(p.relative_to(src).parts)]
    for rel in paths:
        if rel.parts[0] in skip or not (src / rel).is_file():
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, dst / rel)
    return dst


def _wheel(source: Path, out: Path) -> zipfile.ZipFile:
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                           "-w", str(out), "-q"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    return zipfile.ZipFile(wheel)


def _metadata(z: zipfile.ZipFile) -> email.message.Message:
    (name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
    return email.message_from_bytes(z.read(name))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    tmp = tmp_path_factory.mktemp("wheel")
    src = _copy_source(ROOT, tmp / "src", skip=("tests", "benchmarks", "extras", ".ci"))
    return _wheel(src, tmp / "dist")


@pytest.fixture(scope="module")
def rules() -> list[dict]:
    return tomllib.loads((ROOT / "plateaug" / "licences" / "manifest.toml").read_text(encoding="utf-8"))["rule"]


def _rule(path: str, rules: list[dict]) -> dict | None:
    return next((r for r in rules if fnmatch.fnmatch(path, r["glob"])), None)


def test_every_file_of_the_default_wheel_has_a_permissive_recorded_licence(wheel, rules) -> None:
    files = [n for n in wheel.namelist() if not n.endswith("/")]
    unrecorded = [n for n in files if _rule(n, rules) is None]
    assert not unrecorded, f"files with no licence in plateaug/licences/manifest.toml: {unrecorded}"
    not_permissive = sorted({(n, _rule(n, rules)["license"]) for n in files
                             if _rule(n, rules)["license"] not in PERMISSIVE})
    assert not not_permissive, not_permissive
    # the shipped default generator and the glyphs the default regions draw are in it
    assert any(n.endswith("export/plateaug_default.onnx") for n in files)
    assert any("fonts/real-cn_0/" in n for n in files)
    assert any(n.startswith("plateaug/stream/scenes/frames/") for n in files)
    assert not [n for n in files if "/real-us_" in n or "/real-br_" in n or "/real-eu_" in n]


def test_every_bitmap_typeface_in_the_wheel_records_a_permissive_licence(wheel) -> None:
    tomls = [n for n in wheel.namelist() if n.endswith("/typeface.toml")]
    assert tomls
    for name in tomls:
        licence = tomllib.loads(wheel.read(name).decode())["license"]
        assert licence.split(":")[0] in PERMISSIVE, (name, licence)


def test_wheel_metadata_names_exactly_the_shipped_licences_and_ships_their_texts(wheel, rules) -> None:
    meta = _metadata(wheel)
    files = [n for n in wheel.namelist() if not n.endswith("/")]
    used = {_rule(n, rules)["license"] for n in files}
    assert set(meta["License-Expression"].split(" AND ")) == used
    assert meta["License"] is None  # the SPDX expression only, no free-text field that could disagree
    texts = set(meta.get_all("License-File"))
    assert {_rule(n, rules)["text"] for n in files} <= texts
    dist_info = next(n.split("/")[0] for n in files if ".dist-info/" in n)
    assert all(f"{dist_info}/licenses/{t}" in files for t in texts)


def test_the_manifest_has_no_dead_rules(wheel, rules) -> None:
    """Every rule matches a shipped file (a rule for a file that no longer ships hides nothing,
    but says something untrue)."""
    files = [n for n in wheel.namelist() if not n.endswith("/")]
    dead = [r["glob"] for r in rules if not any(_rule(n, rules) is r for n in files)]
    assert dead == [], dead


def test_the_openalpr_extras_are_their_own_agpl_distribution(tmp_path) -> None:
    z = _wheel(_copy_source(EXTRAS, tmp_path / "src"), tmp_path / "dist")
    meta = _metadata(z)
    assert meta["Name"] == "plateaug-openalpr" and meta["License-Expression"] == "AGPL-3.0-only"
    assert meta.get_all("License-File") == ["LICENSE"]
    files = z.namelist()
    entry = next(n for n in files if n.endswith("entry_points.txt"))
    assert "[plateaug.fonts]" in z.read(entry).decode() and "plateaug_openalpr:FONTS" in z.read(entry).decode()
    tomls = [n for n in files if n.endswith("/typeface.toml")]
    assert len(tomls) == 24
    assert {n.rsplit("/", 1)[1] for n in files if "/generator/" in n} == {"openalpr_v2.onnx", "openalpr_v2_fp16.onnx",
                                                                         "openalpr_v2.pt"}
    assert all(tomllib.loads(z.read(n).decode())["license"].startswith("AGPL-3.0") for n in tomls)
    licence = next(n for n in files if n.endswith("licenses/LICENSE"))
    assert z.read(licence).decode().startswith("GNU AFFERO GENERAL PUBLIC LICENSE")
