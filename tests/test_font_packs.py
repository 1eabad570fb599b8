"""Font packs: typefaces other installed distributions register ("plateaug.fonts" entry points), the
way the AGPL-3.0 openalpr glyphs reach the regions only once the user installs them."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest

import plateaug.renderer.font_packs as font_packs
import plateaug.renderer.spec_loader as spec_loader
from plateaug import PlateGANStream, load_region
from plateaug.renderer.spec import FONTS_DIR

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = ROOT / "extras" / "openalpr"
PACK_REGIONS = {"us": "us", "br_old": "br", "eu_sk": "eu", "eu_sk_old": "eu"}


@pytest.fixture
def no_packs(monkeypatch):
    monkeypatch.setattr(spec_loader, "installed_font_dirs", lambda: ())


def test_the_default_stream_uses_only_files_inside_plateaug(no_packs) -> None:
    stream = PlateGANStream()
    for spec in stream.specs:
        fonts = {f for c in spec.classes for f in c.fonts} | {b.font for b in spec.bands}
        assert all(Path(f).is_relative_to(FONTS_DIR) for f in fonts), spec.name
    assert load_region("us").n_fonts == 5  # the open typefaces alone


def test_installed_pack_adds_its_typefaces_to_the_regions(monkeypatch, tmp_path) -> None:
    pack = tmp_path / "pack"
    for key in PACK_REGIONS.values():
        for i in range(8):
            if not (pack / f"real-{key}_{i}").exists():
                shutil.copytree(EXTRAS / "plateaug_openalpr" / "fonts" / f"real-{key}_{i}", pack / f"real-{key}_{i}")
    monkeypatch.setattr(spec_loader, "installed_font_dirs", lambda: (pack,))
    for region, key in PACK_REGIONS.items():
        spec = load_region(region)
        names = [Path(f).name for f in spec.classes[0].fonts]
        assert names[5:] == [f"real-{key}_{i}" for i in range(8)], region  # after the 5 open typefaces
        assert spec.n_fonts == 13


def test_a_pack_missing_some_typefaces_adds_those_it_has(monkeypatch, tmp_path) -> None:
    pack = tmp_path / "pack"
    shutil.copytree(EXTRAS / "plateaug_openalpr" / "fonts" / "real-us_3", pack / "real-us_3")
    monkeypatch.setattr(spec_loader, "installed_font_dirs", lambda: (pack,))
    assert [Path(f).name for f in load_region("us").classes[0].fonts][5:] == ["real-us_3"]


def test_a_broken_pack_typeface_is_an_error_naming_it(monkeypatch, tmp_path) -> None:
    bad = tmp_path / "pack" / "real-us_0"
    bad.mkdir(parents=True)
    (bad / "typeface.toml").write_text('license = 3\n')
    (bad / "0041.png").write_bytes(b"not a png")
    monkeypatch.setattr(spec_loader, "installed_font_dirs", lambda: (tmp_path / "pack",))
    with pytest.raises(spec_loader.RegionSpecError, match="real-us_0.*license must be a string"):
        load_region("us")


def test_extra_fonts_must_be_a_list_within_the_font_bound(write_spec, mini_spec_text) -> None:
    spec = mini_spec_text.replace('font = "DejaVuSansCondensed-Bold"',
                                  'font = "DejaVuSansCondensed-Bold"\nextra_fonts = "real-us_0"')
    with pytest.raises(spec_loader.RegionSpecError, match="text.extra_fonts"):
        load_region(write_spec(spec, "extra_str"))
    many = ", ".join(f'"x{i}"' for i in range(16))
    spec = mini_spec_text.replace('font = "DejaVuSansCondensed-Bold"',
                                  f'font = "DejaVuSansCondensed-Bold"\nextra_fonts = [{many}]')
    with pytest.raises(spec_loader.RegionSpecError, match="at most 16"):
        load_region(write_spec(spec, "extra_many"))
    extra = 'font = "DejaVuSansCondensed-Bold"\nextra_fonts = ["not-installed", "DejaVuSans-Bold"]'
    spec = mini_spec_text.replace('font = "DejaVuSansCondensed-Bold"', extra)
    assert [Path(f).stem for f in load_region(write_spec(spec, "extra_ok")).classes[0].fonts] == \
        ["DejaVuSansCondensed-Bold", "DejaVuSans-Bold"]


def test_font_packs_come_from_the_entry_point_group(monkeypatch, tmp_path) -> None:
    class EP:
        def __init__(self, name, value):
            self.name, self.value, self._v = name, f"mod:{name}", value

        def load(self):
            if isinstance(self._v, Exception):
                raise self._v
            return self._v

    good, also = tmp_path / "a", tmp_path / "b"
    good.mkdir()
    also.mkdir()
    eps = [EP("zeta", also), EP("alpha", lambda: good), EP("broken", ImportError("no module")),
           EP("nowhere", tmp_path / "missing")]
    monkeypatch.setattr(font_packs.importlib.metadata, "entry_points",
                        lambda group: eps if group == font_packs.ENTRY_POINT_GROUP else [])
    monkeypatch.delenv(font_packs.DISABLE_ENV, raising=False)  # the suite hides packs (conftest)
    font_packs._discovered_font_dirs.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert font_packs.installed_font_dirs() == (good, also)  # sorted by pack name, bad ones skipped
        messages = " ".join(str(w.message) for w in caught)
        assert "'broken'" in messages and "'nowhere'" in messages
        monkeypatch.setenv(font_packs.DISABLE_ENV, "0")
        assert font_packs.installed_font_dirs() == ()  # the user's switch back to the default install
    finally:
        font_packs._discovered_font_dirs.cache_clear()
