"""The garment finder's scan on OpenVINO, where the embedder runs there (issues 15 and 19).

With the embedder on OpenVINO (engine/vision/runtimes.py) the finder's torch forward pass
became the largest part of a photo's model time (13 ms of 27 at batch 1 here). The scan
network (Lite0's trunk, the garment head, the class-activation map over the clothing
classes and the two softmaxes) is exported to ONNX with a dynamic batch, height and
width (photos have many shapes) and compiled with the **f32** hint: bf16 moved the
garment map by up to 0.18 and changed verdicts (docs/benchmarks.md), so it is not used.

Kept only when, at start-up, on the model's thread:
- its maps agree with torch's on the calibration scenes (largest difference of the
  garment probability and of the CAM clothing mass ≤ ``AGREE``; measured ~1e-6), and
- it is faster than torch on the same scenes (best of three alternating blocks).

Otherwise torch scans, as before. The export is kept in the data directory, named by the
head's fingerprint, the scan side and torch's version.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from engine.vision.runtimes import OPSET, available, room_for_exports

if TYPE_CHECKING:
    from engine.vision.garments import GarmentFinder

log = logging.getLogger(__name__)

AGREE = 1e-3  # the largest difference of a map cell's probability torch and OpenVINO may have


class ScanNet(nn.Module):
    """The finder's network as one module: scan input (N, 3, H, W) → the head's class
    probabilities (N, 11, h, w), its box distances (N, 4, h, w) and the CAM's clothing-class
    probabilities (N, classes, h, w) at the stride-16 grid."""

    cam_idx: torch.Tensor

    def __init__(self, finder: GarmentFinder) -> None:
        super().__init__()
        from engine.vision.garments import trunk_maps

        self.trunk_maps = trunk_maps
        self.model, self.head = finder.model, finder.head
        self.register_buffer("cam_idx", finder._cam_idx.clone())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f16, f32 = self.trunk_maps(self.model, x)
        assert self.head is not None
        logits, dist = self.head(f16, f32)
        m = self.model
        cam = torch.einsum("kc,nchw->nkhw", m._fc.weight, f32) + m._fc.bias.view(1, -1, 1, 1)
        cam = nn.functional.interpolate(cam, size=(f16.shape[-2], f16.shape[-1]), mode="bilinear", align_corners=False)
        return torch.softmax(logits, dim=1), dist, torch.softmax(cam, dim=1).index_select(1, self.cam_idx)


class OpenVinoScan:
    """Scan inputs (float32 NCHW) → (class probabilities, distances, CAM probabilities)."""

    def __init__(self, path: Path, threads: int) -> None:
        import openvino as ov

        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        self.request = core.compile_model(core.read_model(str(path)), "CPU", config).create_infer_request()

    def __call__(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.request.infer({0: np.require(x.numpy(), dtype=np.float32, requirements=["C"])})
        out: Any = [np.array(self.request.get_output_tensor(i).data) for i in range(3)]
        return out[0], out[1], out[2]


def export(finder: GarmentFinder, path: Path) -> None:
    """The scan network as ONNX at ``path`` (written whole or not at all)."""
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated; failure → torch scans
        torch.onnx.export(
            ScanNet(finder).eval(),
            (torch.zeros(1, 3, finder.side, finder.side * 3 // 4),),
            str(tmp),
            input_names=["x"],
            output_names=["classes", "dist", "cam"],
            dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}},
            opset_version=OPSET,
            dynamo=False,
        )
    os.replace(tmp, path)


def cache_name(finder: GarmentFinder) -> str:
    text = f"scan|{finder.head_fingerprint}|{finder.side}|torch {torch.__version__}|opset {OPSET}"
    return f"scan-{hashlib.sha256(text.encode()).hexdigest()[:16]}.onnx"


def calibration_inputs(finder: GarmentFinder) -> list[torch.Tensor]:
    """Pictures of the shapes phones send (portrait, landscape, square, tall): smooth colour
    fields with a few darker blobs, so the maps are neither flat nor saturated. Agreement is
    numeric (the same network on two runtimes), so the content need not be clothing."""
    from PIL import Image

    from engine.vision.garments import scan_tensor

    rng = np.random.default_rng(0)
    out = []
    for w, h in [(384, 512), (512, 384), (480, 480), (360, 640)]:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        base = np.stack([np.sin(xx / rng.uniform(20, 90) + c) * np.cos(yy / rng.uniform(20, 90)) for c in range(3)], -1)
        picture = 160 + 70 * base
        for _ in range(3):
            cx, cy, r = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h, rng.uniform(0.1, 0.25) * min(w, h)
            picture[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] *= rng.uniform(0.2, 0.6, size=3)
        out.append(scan_tensor(Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8)), finder.side))
    return out


def accelerate(finder: GarmentFinder, cache_dir: Path | None) -> str:
    """Give ``finder`` an OpenVINO scan when it agrees and is faster; says what was decided.
    Call on the model's thread (where the finder's torch work runs)."""
    if finder.head is None or not finder.use_cam:
        return "torch: the scan's OpenVINO export needs the head and the CAM"
    missing = available()
    if missing:
        return f"torch: OpenVINO can't run ({missing})"
    try:
        inputs = calibration_inputs(finder)
        if cache_dir is not None and room_for_exports(cache_dir):
            path = cache_dir / cache_name(finder)
            if not path.exists():
                export(finder, path)
            scan = OpenVinoScan(path, torch.get_num_threads())
        else:
            with tempfile.TemporaryDirectory(prefix="fashionbot-scan-") as tmp:
                export(finder, Path(tmp) / "scan.onnx")
                scan = OpenVinoScan(Path(tmp) / "scan.onnx", torch.get_num_threads())
        difference = max(_difference(finder, scan, x) for x in inputs)
    except Exception as err:  # export or compilation failed: torch scans
        log.warning("the garment scan on OpenVINO failed, scanning with torch: %s", err)
        return f"torch: OpenVINO failed ({type(err).__name__})"
    if difference > AGREE:
        return f"torch: OpenVINO's maps differ by {difference:.1e}"
    ours, theirs = _timed(finder, scan, inputs)
    if ours >= theirs:
        return f"torch: OpenVINO's scan was not faster ({ours * 1e3:.1f} ms against {theirs * 1e3:.1f})"
    finder.runtime = scan
    return f"openvino: {ours * 1e3:.1f} ms a scan against torch's {theirs * 1e3:.1f}, maps within {difference:.0e}"


def _difference(finder: GarmentFinder, scan: OpenVinoScan, x: torch.Tensor) -> float:
    classes, _, cam = scan(x)
    with torch.inference_mode():
        t_classes, _, t_cam = ScanNet(finder).eval()(x)
    return float(max(np.abs(classes - t_classes.numpy()).max(), np.abs(cam - t_cam.numpy()).max()))


def _timed(finder: GarmentFinder, scan: OpenVinoScan, inputs: list[torch.Tensor]) -> tuple[float, float]:
    """Seconds a scan for OpenVINO and torch: best of three blocks each, alternating order."""
    net = ScanNet(finder).eval()

    def torch_scan(x: torch.Tensor) -> object:
        with torch.inference_mode():
            return net(x)

    best = {"openvino": float("inf"), "torch": float("inf")}
    runners: dict[str, Callable[[torch.Tensor], object]] = {"openvino": scan, "torch": torch_scan}
    for round_ in range(3):
        for name in runners if round_ % 2 == 0 else reversed(list(runners)):
            fn = runners[name]
            fn(inputs[0])  # wakes the pool; first calls of a shape build kernels
            start = time.perf_counter()
            for x in inputs:
                fn(x)
            best[name] = min(best[name], (time.perf_counter() - start) / len(inputs))
    return best["openvino"], best["torch"]
