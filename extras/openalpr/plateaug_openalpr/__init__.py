"""AGPL-3.0 extras for plateaug, installed only by choice: bitmap typefaces cut from the openalpr
benchmark plate images, and the generator plateaug shipped until 2026-12-04 (trained on those images
and on CCPD crops). plateaug's us, br_old, eu_sk and eu_sk_old regions draw the typefaces once this
distribution is installed (they list them as `extra_fonts`; plateaug finds this folder through the
"plateaug.fonts" entry point); the generator is used by passing its path:
`PlateGANStream(generator=plateaug_openalpr.GENERATOR_ONNX)`."""

from pathlib import Path

HERE = Path(__file__).parent
FONTS = HERE / "fonts"  # real-us_0..7, real-br_0..7, real-eu_0..7
GENERATOR_ONNX = HERE / "generator" / "openalpr_v2.onnx"  # fp32
GENERATOR_FP16_ONNX = HERE / "generator" / "openalpr_v2_fp16.onnx"
GENERATOR_CHECKPOINT = HERE / "generator" / "openalpr_v2.pt"  # for generator="torch" use: TorchGenerator(path)
