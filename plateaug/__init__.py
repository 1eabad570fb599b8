"""plateaug: realistic, correctly labelled synthetic licence plates, rendered and translated by a
pix2pix GAN on the device, as a drop-in torch IterableDataset."""

from .outline import Outline, outline
from .renderer import PlateBatch, Renderer, render
from .spec import RegionSpec, RegionSpecError, builtin_regions, load_region
from .text import TextBatch, encode_texts, sample_text

__version__ = "0.1.0"

__all__ = [
    "Outline", "PlateBatch", "RegionSpec", "RegionSpecError", "Renderer", "TextBatch",
    "builtin_regions", "encode_texts", "load_region", "outline", "render", "sample_text",
]
