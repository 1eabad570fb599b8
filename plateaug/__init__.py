"""plateaug: realistic, correctly labelled synthetic licence plates, rendered and translated by a
pix2pix GAN on the device, as a drop-in torch IterableDataset."""

__version__ = "0.1.0"

from .collate import collate, ctc_targets  # noqa: E402
from .models import create_generator, generator_input  # noqa: E402
from .onnx_export import ExportReport, ExportVerificationError, export_onnx  # noqa: E402
from .onnx_runtime import OnnxGenerator  # noqa: E402
from .outline import Outline, outline  # noqa: E402
from .renderer import PlateBatch, Renderer, render  # noqa: E402
from .spec import RegionSpec, RegionSpecError, builtin_regions, load_region  # noqa: E402
from .stream import PlateGANStream  # noqa: E402
from .text import TextBatch, encode_texts, sample_text  # noqa: E402
from .torch_generator import TorchGenerator  # noqa: E402

__all__ = [
    "ExportReport", "ExportVerificationError", "OnnxGenerator", "Outline", "PlateBatch", "PlateGANStream",
    "RegionSpec", "RegionSpecError", "Renderer", "TextBatch", "TorchGenerator", "builtin_regions", "collate",
    "create_generator", "ctc_targets", "encode_texts", "export_onnx", "generator_input", "load_region", "outline",
    "render", "sample_text",
]
