"""AGPL-3.0 extras for plateaug, installed only by choice: bitmap typefaces cut from the openalpr
benchmark plate images. plateaug's us, br_old, eu_sk and eu_sk_old regions draw them once this
distribution is installed (they list them as `extra_fonts`; plateaug finds this folder through the
"plateaug.fonts" entry point)."""

from pathlib import Path

FONTS = Path(__file__).parent / "fonts"  # real-us_0..7, real-br_0..7, real-eu_0..7
