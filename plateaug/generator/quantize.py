"""int8 generator: ONNX Runtime static quantisation (QDQ) of the fp32 export, calibrated on
renders of every shipped region, verified against the fp32 torch model before it is put in place.

Calibration: `generator_input` of renders of every shipped region (`builtin_regions()`), at the
region's own canvas (what the stream feeds the generator) and resized to the stream's crop size
64x256; a fixed seed, so the same checkpoint always gives the same file. Weights are int8 per
output channel, activations uint8 per tensor (MinMax ranges), the u8 x s8 combination that
ONNX Runtime's CPU kernels run with VNNI. Inputs and outputs stay float32: an int8 file is a drop-in
for the fp32 one (`OnnxGenerator`, `PlateGANStream(generator=PATH)`).

ConvTranspose stays float: ONNX Runtime's CPU provider has no int8 ConvTranspose kernel, so
quantising it would only add a quantise/dequantise round trip (error, no speed).

Tolerance (int8 is looser than fp32's relative 1e-4 / fp16's 1e-2), |int8 - torch fp32| in [0, 1]
RGB units: on fresh renders of every region, mean <= 0.02 (5 grey levels of 255) and 99.9th
percentile <= 0.1; on uniform random inputs, which lie outside the calibrated ranges, mean <= 0.04.
The max is reported, not limited: it is a single pixel where an activation left its calibrated
range, and it moves with the calibration set (0.13-0.22 on the shipped unet_s for 4-16 plates per
region, while the 99.9th percentile stays at 0.05). Measured on the shipped unet_s (16 plates):
renders mean 0.008, 99.9th percentile 0.05, max 0.15; random mean 0.010, max 0.07.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
import torch.nn.functional as F
from torch import nn

from ..models.contract import IN_CHANNELS, generator_input
from ..renderer.draw import render
from ..renderer.spec_loader import builtin_regions, load_region
from ..renderer.text import sample_text
from ..writers.atomic import publish
from .onnx_export import (
    INPUT_NAME,
    VERIFY_BATCHES,
    VERIFY_CANVASES,
    ExportReport,
    ExportVerificationError,
    _load,
    _set_metadata,
    export_onnx,
)

CROP = (64, 256)  # the stream's crop size (stream.dataset.DEFAULT_SIZE["crop"]; the generator layer does not import it)
CALIBRATION_SEED = 20260
VERIFY_SEED = 4321  # renders and random inputs for verification: never the calibration ones
CALIBRATION_PER_REGION = 16  # plates per region and size
VERIFY_PER_REGION = 8
FLOAT_OPS = ("ConvTranspose",)  # no int8 CPU kernel in ONNX Runtime: left in float
# limits, in [0, 1] RGB units, against the fp32 torch model
TOLERANCE = {"render_mean": 0.02, "render_p999": 0.1, "random_mean": 0.04}


@dataclass(frozen=True)
class Int8ExportReport:
    """What was written and how closely ONNX Runtime (CPU) running the int8 file matched the fp32
    torch model, on renders of every shipped region and on random inputs."""

    path: Path
    opset: int
    exporter: str
    calibration: dict  # regions, sizes, plates, seed, method, format, per_channel, float ops
    render_max_abs: float | None  # None when not verified
    render_mean_abs: float | None
    render_p999_abs: float | None  # 99.9th percentile of |int8 - fp32| over the render pixels
    random_max_abs: float | None
    random_mean_abs: float | None
    random_sizes: tuple[tuple[int, int, int], ...]  # (B, H, W) random inputs checked
    render_regions: tuple[str, ...]  # regions whose renders were checked (at their canvas and at CROP)
    tolerance: dict
    fp32: ExportReport | None = None  # the fp32 export it was quantised from (verified as usual)
    fp16: bool = False  # for code that reads ExportReport.fp16
    dtype: str = "int8"

    @property
    def verified(self) -> bool:
        return self.render_mean_abs is not None


def calibration_inputs(regions: list[str] | None = None, per_region: int = CALIBRATION_PER_REGION,
                       seed: int = CALIBRATION_SEED, crop: tuple[int, int] | None = CROP
                       ) -> list[tuple[str, torch.Tensor]]:
    """(label, generator input (n, 4, H, W) float32 in [0, 1]) for every region: renders at the
    region's canvas and, when `crop` is given, the same renders resized to `crop` (H, W)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for name in regions if regions is not None else builtin_regions():
        spec = load_region(name)
        images = render(spec, sample_text(spec, per_region, g)).images  # (n, 3, h, w) in [0, 1]
        h, w = images.shape[-2:]
        out.append((f"{spec.name} {h}x{w}", generator_input(images)))
        if crop is not None and tuple(crop) != (h, w):
            small = F.interpolate(images, size=tuple(crop), mode="bilinear", align_corners=False,
                                  antialias=True).clamp(0, 1)
            out.append((f"{spec.name} {crop[0]}x{crop[1]}", generator_input(small)))
    return out


def export_int8(checkpoint_or_model: dict | str | Path | nn.Module, out_path: str | Path, opset: int = 18,
                verify: bool = True, per_channel: bool = True, regions: list[str] | None = None,
                per_region: int = CALIBRATION_PER_REGION, seed: int = CALIBRATION_SEED) -> Int8ExportReport:
    """Write the generator as an int8 (QDQ) ONNX file to `out_path`: the fp32 export (verified as
    usual), quantised statically with ONNX Runtime, calibrated on renders of `regions` (default:
    every shipped region), metadata plateaug.dtype="int8" plus plateaug.calibration, verified
    against the fp32 torch model (TOLERANCE). The file is written under a temporary name and
    renamed into place only after verification passed: a failed export leaves out_path untouched."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not isinstance(per_region, int) or per_region < 1:
        raise ValueError(f"per_region (calibration plates per region and size) must be a positive int, "
                         f"got {per_region!r}")
    model, _ = _load(checkpoint_or_model)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    calib = calibration_inputs(regions, per_region, seed)
    with tempfile.TemporaryDirectory(prefix="plateaug-int8-") as work:
        work = Path(work)
        try:
            fp32 = export_onnx(checkpoint_or_model, work / "fp32.onnx", opset=opset, verify=verify)
            fp32_proto = onnx.load(str(fp32.path))
            meta = {p.key: p.value for p in fp32_proto.metadata_props if p.key.startswith("plateaug.")}
            # ONNX shape inference + ORT's basic optimisations (BatchNorm folded into the convolutions, so
            # it is not quantised on its own); ORT's symbolic shape inference cannot finish on the dynamic
            # H/W of the U-Net's concatenations, and is not needed for convolutions
            quant_pre_process(str(fp32.path), str(work / "pre.onnx"), skip_symbolic_shape=True)
            pre = onnx.load(str(work / "pre.onnx"))
            float_nodes = [n.name for n in pre.graph.node if n.op_type in FLOAT_OPS]
            info = {"regions": sorted({label.split()[0] for label, _ in calib}),
                    "sizes": sorted({label.split()[1] for label, _ in calib}), "plates_per_region_and_size": per_region,
                    "images": sum(len(x) for _, x in calib), "seed": seed, "method": "MinMax", "format": "QDQ",
                    "weights": "int8 per channel" if per_channel else "int8 per tensor",
                    "activations": "uint8 per tensor", "float_ops": list(FLOAT_OPS)}
            quantize_static(str(work / "pre.onnx"), str(work / "int8.onnx"), _Reader(calib),
                            quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=float_nodes)
            proto = onnx.load(str(work / "int8.onnx"))
            onnx.checker.check_model(proto)
            _set_metadata(proto, {**meta, "plateaug.dtype": "int8",
                                  "plateaug.calibration": json.dumps(info, sort_keys=True)})
            onnx.save(proto, str(tmp))
            errors: dict = {}
            if verify:
                errors = _verify_int8(model, tmp, regions)
                bad = [f"{k} {errors[k]:.3g} > {lim:g}" for k, lim in TOLERANCE.items()
                       if not errors[k] <= lim]  # NaN fails too
                if bad:
                    raise ExportVerificationError(
                        f"int8 export for {out_path} does not match the fp32 torch model: {', '.join(bad)} (renders "
                        f"max {errors['render_max']:.3g} 99.9th percentile {errors['render_p999']:.3g} mean "
                        f"{errors['render_mean']:.3g}, random max {errors['random_max']:.3g} mean "
                        f"{errors['random_mean']:.3g})")
                proto = onnx.load(str(tmp))  # record what was measured next to the calibration
                _set_metadata(proto, {**meta, "plateaug.dtype": "int8",
                                      "plateaug.calibration": json.dumps(info, sort_keys=True),
                                      "plateaug.int8_error": json.dumps({k: round(v, 6) for k, v in errors.items()
                                                                         if isinstance(v, float)}, sort_keys=True)})
                onnx.save(proto, str(tmp))
            publish(tmp, out_path)
        finally:
            if tmp.exists():
                tmp.unlink()
    return Int8ExportReport(
        path=out_path, opset=opset, exporter=fp32.exporter, calibration=info,
        render_max_abs=errors.get("render_max"), render_mean_abs=errors.get("render_mean"),
        render_p999_abs=errors.get("render_p999"),
        random_max_abs=errors.get("random_max"), random_mean_abs=errors.get("random_mean"),
        random_sizes=tuple(errors.get("random_sizes", ())), render_regions=tuple(errors.get("render_regions", ())),
        tolerance=dict(TOLERANCE), fp32=fp32)


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over prepared generator inputs (the ABC
    accepts any class with get_next)."""

    def __init__(self, batches: list[tuple[str, torch.Tensor]]):
        self._batches = [x.contiguous().numpy() for _, x in batches]
        self._it = iter(self._batches)

    def get_next(self) -> dict | None:
        x = next(self._it, None)
        return None if x is None else {INPUT_NAME: x}

    def rewind(self) -> None:
        self._it = iter(self._batches)


@torch.no_grad()
def _verify_int8(model: nn.Module, path: Path, regions: list[str] | None) -> dict:
    """Max and mean |int8 - torch fp32| over fresh renders of every region (at their canvas and at
    CROP; not the calibration plates) and over uniform random inputs, the file run by OnnxGenerator
    on the CPU (so its metadata checks run too)."""
    from .onnx_runtime import OnnxGenerator  # late: keeps the export core importable on its own

    gen = OnnxGenerator(path, device="cpu")

    def errors(inputs: list[torch.Tensor]) -> tuple[float, float, float]:
        """(max, mean, 99.9th percentile) of |int8 - fp32| over every output value; NaN if any is NaN."""
        err = torch.cat([(gen(x) - model(x).float()).abs().flatten() for x in inputs])
        if bool(torch.isnan(err).any()):
            return math.nan, math.nan, math.nan
        k = max(1, math.ceil(0.999 * len(err)))
        return err.max().item(), err.double().mean().item(), err.kthvalue(k).values.item()

    renders = calibration_inputs(regions, VERIFY_PER_REGION, VERIFY_SEED)
    rng = torch.Generator().manual_seed(VERIFY_SEED)
    sizes = [(b, h, w) for h, w in VERIFY_CANVASES for b in VERIFY_BATCHES]
    randoms = [torch.rand((b, IN_CHANNELS, h, w), generator=rng) for b, h, w in sizes]
    render_max, render_mean, render_p999 = errors([x for _, x in renders])
    random_max, random_mean, _ = errors(randoms)
    return {"render_max": render_max, "render_mean": render_mean, "render_p999": render_p999, "random_max": random_max,
            "random_mean": random_mean, "random_sizes": sizes,
            "render_regions": sorted({label.split()[0] for label, _ in renders})}
