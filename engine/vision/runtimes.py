"""The embedder's model on OpenVINO, where it is faster and agrees (issue 19).

Eager torch spends most of EfficientNet-Lite0's time outside the arithmetic (its
depthwise convolutions are small kernels, one op call each); OpenVINO compiles the whole
graph, and on this 2-core machine (AVX512-BF16, no AMX) ran the same model, with the same precision plan,
2.7x faster at batch 1 and 1.9x at the served batch size (bench/bench_runtimes.py,
docs/benchmarks.md "Other runtimes"; ONNX Runtime fp32: 2.0x and 1.3x). So the
embedder may hand its forward pass to OpenVINO, decided at start-up:

- the model is what torch serves: the embedder's normalisation, its folded stages and its
  fp32 end, exported to ONNX and cut where the embedder's precision plan starts bf16
  (engine/vision/precision.py). The part before the cut is compiled with the f32 hint, the
  rest with bf16, so OpenVINO keeps the stages that bf16 would move in fp32, like torch;
  OpenVINO's default (bf16 everywhere, input normalisation included) moved Lite0's
  features to a cosine of 0.994, past the 0.999 promise;
- it must agree with torch's fp32 reference on the calibration pictures as the bf16 plan
  must (minimum cosine >= BF16_GATE), else the all-fp32 export is tried, else torch stays;
- ``auto`` times it against torch on the worker, at batch 1 and 8, and keeps the faster (the
  verdict is remembered in the data directory per model, plan and machine);
- torch stays when OpenVINO or onnx is not installed or the export fails.

The exported ONNX files are kept in the data directory, named by everything they depend
on (the backbone's fingerprint, input size, the cut, torch's version), so later starts
only read and compile them (about 0.3 s instead of 2 s).

Everything here runs on the embedder's worker thread, so OpenVINO's pool and torch's OpenMP
team (the garment finder's scan stays in torch) never run at once. Taking turns still costs:
right after a torch call OpenVINO's batch-1 forward ran at 0.55x its speed alone, torch's
OpenMP threads still spin-waiting for work beside it (``GOMP_SPINCOUNT=10000`` in the
environment removed most of that in a trial; not set here: it is process-wide and must be
set before torch loads).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from engine.vision.precision import PrecisionPlans, describe

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "openvino")
OPSET = 17
_FASTER = 1.0  # auto keeps OpenVINO only when it beats torch at both sizes timed
_VERDICTS: dict[str, bool] = {}  # auto's timing, once per process and model (tests build many embedders)
VERDICTS_FILE = "openvino_verdicts.json"  # auto's timing, in the cache dir: later starts skip it (~1 s)
_EXPORTED: dict[str, list[tuple[Path, str]]] = {}  # exports made by this process, by cache key


class _Part(nn.Module):
    """Stages of the embedder's plan as one module for export; the first part also does the
    embedder's normalisation, so the exported graph takes the uint8 NHWC pixels."""

    def __init__(self, stages: list[nn.Module], mean: torch.Tensor | None, std: torch.Tensor | None) -> None:
        super().__init__()
        self.stages = nn.Sequential(*stages)
        self.scale = None if mean is None or std is None else (mean, std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale is not None:  # as Embedder._normalise (constants in the exported graph)
            mean, std = self.scale
            x = (x.permute(0, 3, 1, 2).float() - mean) / std
        return self.stages(x)


class OpenVinoModel:
    """uint8 NHWC pixels → pooled features (float32, not yet L2-normalised), on OpenVINO:
    one compiled model per part, each part's output the next one's input."""

    name = "openvino"

    def __init__(self, parts: list[tuple[Path, str]], threads: int) -> None:
        quiet_openvino()
        import openvino as ov

        core = ov.Core()
        self.requests = []
        self.precisions: list[str] = []
        for path, precision in parts:
            config = {
                "INFERENCE_NUM_THREADS": threads,
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": precision,
            }
            compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
            self.requests.append(compiled.create_infer_request())
            self.precisions.append(str(compiled.get_property("INFERENCE_PRECISION_HINT")))

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        x: Any = np.require(pixels, dtype=np.uint8, requirements=["C"])
        for request in self.requests:
            request.infer({0: x})
            x = request.get_output_tensor(0)
        return np.array(x.data, dtype=np.float32)


def quiet_openvino() -> None:
    """Keep OpenVINO from phoning home; call before the process first imports it.

    ``import openvino`` sends a usage event to Google Analytics (openvino/tools/ovc/__init__.py,
    through the openvino-telemetry package its wheel depends on) unless the user has opted out,
    and writes a client id under ~/intel. A self-hosted bot that promises to keep nothing about
    its users must not do that. With the telemetry package unimportable, OpenVINO falls back to
    its own no-op stub (openvino/tools/ovc/telemetry_stub.py)."""
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", cast(Any, None))


def available() -> str | None:
    """None when OpenVINO can run here, else why not."""
    import importlib.util

    quiet_openvino()
    for name in ("openvino", "onnx"):  # onnx: torch's ONNX exporter needs it (imported only to export: 0.8 s)
        try:
            if importlib.util.find_spec(name) is None:
                return f"{name} is not installed"
        except (ImportError, ValueError):  # a module set to None (tests) or a broken install
            return f"{name} is not installed"
    return None


def export_parts(
    plans: PrecisionPlans,
    mean: torch.Tensor,
    std: torch.Tensor,
    input_size: int,
    bf16_from: int | None,
    directory: Path,
) -> list[tuple[Path, str]]:
    """The plan's model as ONNX files with their precision hints: one fp32 file, or two cut at
    ``bf16_from`` (the first fp32, the second bf16). Written whole or not at all."""
    k = plans.stages if bf16_from is None else bf16_from
    modules = [_Part(plans.body[:k] + (plans.end if bf16_from is None else []), mean, std)]
    if bf16_from is not None:
        modules.append(_Part(plans.body[k:] + plans.end, None, None))
    directory.mkdir(parents=True, exist_ok=True)
    x: torch.Tensor = torch.zeros(2, input_size, input_size, 3, dtype=torch.uint8)
    parts: list[tuple[Path, str]] = []
    for i, module in enumerate(modules):
        path = directory / f"part{i}.onnx"
        parts.append((path, "f32" if i == 0 else "bf16"))
        if path.exists():
            with torch.no_grad():
                x = module.eval()(x)
            continue
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with torch.no_grad(), warnings.catch_warnings():
            # Deprecated in favour of the torch.export-based exporter, which needs onnxscript;
            # when it goes, the export fails and torch serves (tests/unit/test_runtimes.py).
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                module.eval(),
                (x,),
                str(tmp),
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "n"}, "output": {0: "n"}},
                opset_version=OPSET,
                dynamo=False,  # the torch.export-based exporter needs onnxscript; this one only onnx
            )
            x = module.eval()(x)  # the next part's example input
        os.replace(tmp, path)
    return parts


def cache_key(model_key: str, input_size: int, bf16_from: int | None, stages: int) -> str:
    """Names an export by everything it depends on."""
    text = f"{model_key}|{input_size}|{describe(bf16_from, stages)}|torch {torch.__version__}|opset {OPSET}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build(
    plans: PrecisionPlans,
    mean: torch.Tensor,
    std: torch.Tensor,
    *,
    model_key: str,
    input_size: int,
    bf16_from: int | None,
    threads: int,
    cache_dir: Path | None,
) -> OpenVinoModel:
    """Export (or find the export of) the plan and compile it."""
    key = cache_key(model_key, input_size, bf16_from, plans.stages)
    earlier = _EXPORTED.get(key)
    if earlier and all(path.exists() for path, _ in earlier):  # another data dir of this process
        return OpenVinoModel(earlier, threads)
    if cache_dir is not None and room_for_exports(cache_dir):
        try:
            parts = export_parts(plans, mean, std, input_size, bf16_from, cache_dir / f"openvino-{key}")
            _EXPORTED[key] = parts
            return OpenVinoModel(parts, threads)
        except OSError as err:  # a read-only data dir: export to a temporary directory instead
            log.warning("could not keep the OpenVINO export in %s: %s", cache_dir, err)
    with tempfile.TemporaryDirectory(prefix="fashionbot-openvino-") as tmp:
        return OpenVinoModel(export_parts(plans, mean, std, input_size, bf16_from, Path(tmp)), threads)


EXPORT_ROOM = 256 * 1024 * 1024  # free bytes a data dir must keep beyond the exports (~35 MB)


def room_for_exports(directory: Path) -> bool:
    """Whether the exports may be kept in ``directory``: it is writable and its disk keeps
    ``EXPORT_ROOM`` free besides. The exports are a cache (rebuilt in 1-2 s); on a small or
    full disk the catalogue's database and index need the space, so they go to a temporary
    directory instead."""
    import shutil

    try:
        directory.mkdir(parents=True, exist_ok=True)
        return os.access(directory, os.W_OK) and shutil.disk_usage(directory).free > EXPORT_ROOM
    except OSError:
        return False


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.min(np.sum(a * b, axis=1)))


def faster_than_torch(
    ours: Callable[[np.ndarray], object], torch_forward: Callable[[np.ndarray], object], pictures: np.ndarray
) -> tuple[bool, dict[str, float]]:
    """Both timed at batch 1 and 8 on the served path (normalisation and L2 included for
    torch, the export's own for OpenVINO): best of 3 rounds, each runtime's calls in a block
    of their own and the blocks' order alternating (calls of the two interleaved one by one
    would time each pool waking up after the other's, not the runtime)."""
    stacks = {size: pictures[np.arange(size) % len(pictures)] for size in (1, 8)}
    runners = {"openvino": ours, "torch": torch_forward}
    best: dict[str, float] = {}
    for round_ in range(3):
        for name in runners if round_ % 2 == 0 else reversed(runners):
            fn = runners[name]
            for size, x in stacks.items():
                fn(x)  # the first call of a shape builds its kernels; later, it wakes the pool
                for _ in range(2):
                    t0 = time.perf_counter()
                    fn(x)
                    label = f"{name} {size}"
                    best[label] = min(best.get(label, float("inf")), time.perf_counter() - t0)
    rates = {label: float(label.split()[1]) / t for label, t in best.items()}
    faster = all(rates[f"openvino {s}"] > _FASTER * rates[f"torch {s}"] for s in stacks)
    return faster, {k: round(v, 1) for k, v in rates.items()}


def verdict_key(model_key: str, input_size: int, plan: str, torch_key: str) -> str:
    """Everything auto's timing depends on: both paths, the machine, both runtimes' versions."""
    import openvino as ov

    from engine.vision.batch_rates import machine_key

    return f"{model_key}|{input_size}|openvino {ov.__version__} {plan}|torch {torch_key}|{machine_key()}"


def read_verdicts(cache_dir: Path | None) -> dict:
    path = None if cache_dir is None else cache_dir / VERDICTS_FILE
    if path is None or not path.exists():
        return {}
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        log.warning("ignoring unreadable %s (%s): timing again", path, err)
        return {}
    return entries if isinstance(entries, dict) else {}


def remember_verdict(cache_dir: Path | None, key: str, verdict: dict) -> None:
    if cache_dir is None:
        return
    entries = read_verdicts(cache_dir)
    entries[key] = verdict
    path = cache_dir / VERDICTS_FILE
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(entries, indent=1))
        os.replace(tmp, path)  # whole or not at all
    except OSError as err:  # a read-only data dir only costs the next start the timing
        log.warning("could not save the runtime verdict to %s: %s", path, err)


def choose(
    requested: str,
    *,
    plans: PrecisionPlans,
    mean: torch.Tensor,
    std: torch.Tensor,
    model_key: str,
    input_size: int,
    bf16_from: int | None,
    cache_dir: Path | None,
    pictures: np.ndarray,
    reference: np.ndarray,
    torch_forward: Callable[[np.ndarray], object],
    gate: float,
    torch_key: str = "",
) -> tuple[OpenVinoModel | None, int | None, str]:
    """(OpenVINO's model or None for torch, the plan it runs, why). Call on the worker.

    ``reference``: torch's fp32 features of ``pictures`` (the calibration pictures); an
    OpenVINO plan must reach ``gate`` against them. ``auto`` then keeps OpenVINO only when
    it is faster than ``torch_forward`` at batch 1 and 8; that verdict is remembered per
    model, plan, torch's path (``torch_key``: its plan, compiled or not) and machine, in the
    process and in ``cache_dir``."""
    if requested not in RUNTIMES:
        raise ValueError(f"unknown runtime {requested!r}; use one of {', '.join(RUNTIMES)}")
    if requested == "torch":
        return None, bf16_from, "torch, as asked"
    missing = available()
    if missing:
        return None, bf16_from, f"torch: OpenVINO can't run ({missing})"
    tried = []
    for plan in dict.fromkeys([bf16_from, None]):  # torch's plan, then all fp32
        name = describe(plan, plans.stages)
        try:
            model = build(
                plans,
                mean,
                std,
                model_key=model_key,
                input_size=input_size,
                bf16_from=plan,
                threads=torch.get_num_threads(),
                cache_dir=cache_dir,
            )
            cosine = min_cosine(reference, model(pictures))
        except Exception as err:  # export or compilation failed: torch serves
            log.warning("OpenVINO (%s) failed, embedding with torch: %s", name, err)
            return None, bf16_from, f"torch: OpenVINO failed ({type(err).__name__})"
        tried.append(f"{name}: min cosine {cosine:.5f}")
        if cosine < gate:
            continue
        if requested == "openvino":
            return model, plan, f"openvino, as asked ({'; '.join(tried)})"
        key = verdict_key(model_key, input_size, name, torch_key)
        if key not in _VERDICTS:
            remembered = read_verdicts(cache_dir).get(key)
            if isinstance(remembered, dict) and isinstance(remembered.get("faster"), bool):
                _VERDICTS[key] = remembered["faster"]
            else:
                faster, rates = faster_than_torch(model, torch_forward, pictures)
                _VERDICTS[key] = faster
                log.info("OpenVINO against torch, images/s: %s", ", ".join(f"{k}: {v}" for k, v in rates.items()))
                remember_verdict(cache_dir, key, {"faster": faster, "images_per_s": rates})
        if _VERDICTS[key]:
            return model, plan, f"openvino: faster than torch and agrees ({'; '.join(tried)})"
        return None, bf16_from, f"torch: OpenVINO was not faster ({'; '.join(tried)})"
    return None, bf16_from, f"torch: OpenVINO disagrees with fp32 ({'; '.join(tried)})"
