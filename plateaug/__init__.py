"""plateaug: realistic, correctly labelled synthetic licence plates, rendered and translated by a
pix2pix GAN on the device, as a drop-in torch IterableDataset."""

from ._version import __version__
from .generator.backends import GeneratorOutputError
from .generator.onnx_export import ExportReport, ExportVerificationError, export_onnx
from .generator.onnx_runtime import OnnxGenerator
from .generator.torch_generator import TorchGenerator
from .models import create_generator, generator_input
from .renderer.draw import PlateBatch, Renderer, render
from .renderer.outline import Outline, outline
from .renderer.spec import RegionSpec, RegionSpecError
from .renderer.spec_loader import builtin_regions, load_region
from .renderer.text import TextBatch, encode_texts, sample_text
from .stream.allocator import tune_malloc
from .stream.collate import collate, ctc_targets
from .stream.composite import Harmonise
from .stream.copy_paste import paste_plates
from .stream.dataset import NonFiniteBatchError, PlateGANStream
from .stream.degrade import Degrade
from .stream.framing import Framing
from .stream.lighting import Lighting, relight_hint
from .stream.photos import ScenePhotos, ScenePhotosError
from .stream.scene_options import Scene
from .stream.scene_prior import ScenePrior

__all__ = [
    "__version__",
    "Degrade", "ExportReport", "ExportVerificationError", "Framing", "GeneratorOutputError", "Harmonise", "Lighting",
    "NonFiniteBatchError", "OnnxGenerator", "Outline", "PlateBatch", "PlateGANStream", "RegionSpec",
    "RegionSpecError", "Renderer", "Scene", "ScenePhotos", "ScenePhotosError", "ScenePrior", "TextBatch",
    "TorchGenerator", "builtin_regions", "collate", "create_generator", "ctc_targets", "encode_texts", "export_onnx",
    "generator_input", "load_region", "outline", "paste_plates", "relight_hint", "render", "sample_text",
    "tune_malloc",
]
