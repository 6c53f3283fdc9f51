"""EfficientNet-Lite0 on other runtimes (ONNX Runtime, OpenVINO) against torch as shipped (issue 19).

    .venv/bin/python -m bench.bench_runtimes [--quick] [--rounds 4] [--images 96]

One run, one machine. The parent exports what the embedder serves to ONNX once: the pooled
features model of engine/vision/backbones.py with its batch norms folded, behind the
embedder's normalisation (uint8 NHWC in, ``(x - mean) / std`` in the graph); the L2
normalisation stays outside, in numpy, as in ``Embedder.forward``. Then each runtime runs in
its own fresh process, one at a time (two runtimes' thread pools busy together on 2 cores
ruin both figures; torch loaded on one thread and run on another ran at 0.6×), the
runtimes alternating order round by round so a shared machine's load falls on all alike.
In each process one thread does all the runtime's work:

- ``torch``: the real ``Embedder`` with default settings (precision ``auto``, batch size
  measured at start-up), timed by ``forward`` on its own worker (``call_on_worker``);
  also timed through ``submit`` (the queue and its micro-batching wait included);
- ``ort_basic``: ONNX Runtime fp32, basic graph optimisations only;
- ``ort_all``: ONNX Runtime fp32, all graph optimisations (its default; NCHWc layouts);
- ``ort_int8``: ONNX Runtime, static int8 quantisation (QDQ, per channel, calibrated on 64
  Fashion-MNIST pictures outside the agreement set), all optimisations;
- ``ov_fp32``: OpenVINO, inference precision hint f32;
- ``ov_default``: OpenVINO with its default hint (bf16 on CPUs with AMX / AVX512-BF16); the
  precision it ran each layer in is read back from the compiled model;
- ``ov_mixed``: torch's precision plan on OpenVINO: the model cut where torch's embedder
  starts bf16, the first part compiled with the f32 hint, the rest with the default.
  (OpenVINO's own way to keep layers in f32, the ``disable_fp16_compression`` run-time
  attribute, is not honoured when set from Python: every layer still ran bf16.)
- ``served_openvino``: what the product ships after this bench: the real ``Embedder`` with
  ``runtime="auto"`` (engine/vision/runtimes.py: the export cut at the plan's stage, kept
  if faster and agreeing), timed like ``torch``. Both embedder runs also time a garment
  photo's model work as the service sets it up (the finder's scan, on OpenVINO too where
  the embedder is, then a batch of 4), and this one OpenVINO's batch-1 forward right after
  a torch call, and torch's right after OpenVINO's, against each alone: what the two pools
  cost each other when they take turns on one thread (torch's scan before dc3c96f did).

Every runtime gets ``os.cpu_count()`` intra-op threads (OpenVINO: one stream, latency hint).
Speed: images/s at batch 1, 8 and the batch size torch's embedder picks, the median of the
rounds, and each as a ratio to torch as shipped (the median of the per-round ratios, and the
slowest round). Agreement: every vector against torch's plain fp32 model (the embedder's
``reference``) on real pictures: Fashion-MNIST, letterboxed by ``prepare`` as the product
does; cosine (min, mean) and the top-10 neighbours of each test query over a catalogue of
training pictures (mean overlap, share of queries with >= 9 of 10).

Results go to ``bench/results/runtimes.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RUNTIMES = {
    "torch": "torch as shipped (Embedder defaults: auto precision, measured batch; forward on its worker)",
    "ort_basic": "ONNX Runtime fp32, basic graph optimisations",
    "ort_all": "ONNX Runtime fp32, all graph optimisations",
    "ort_int8": "ONNX Runtime int8 (static QDQ, per channel), all optimisations",
    "ov_fp32": "OpenVINO, precision hint f32",
    "ov_default": "OpenVINO, default precision hint",
    "ov_mixed": "OpenVINO, torch's plan: f32 up to its cut, then the default hint (two compiled models)",
    "served_openvino": "the product after issue 19: Embedder(runtime='auto') as FashionService builds it",
}
MIN_COSINE = 0.999  # issue 19's bar for agreement with fp32
MIN_OVERLAP = 9  # of 10 neighbours
MIN_SPEEDUP = 1.15  # at batch 1 and at the served batch size
VECTOR_BATCH = 8


# ---- the runtimes (in the child process) -------------------------------------------
def l2(feats: np.ndarray) -> np.ndarray:
    """As ``Embedder.forward``: unit vectors, float32."""
    feats = feats.astype(np.float32, copy=False)
    return feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)


def ort_runner(model: Path, level: str) -> tuple[Any, dict]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(pixels: np.ndarray) -> np.ndarray:
        return l2(session.run(None, {name: pixels})[0])

    return run, {"onnxruntime": ort.__version__, "threads": options.intra_op_num_threads, "optimisation": level}


def ov_runner(parts: list[tuple[Path, str | None]]) -> tuple[Any, dict]:
    """OpenVINO, one compiled model per part, each part's output the next part's input."""
    import collections

    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[assignment]  # as engine/vision/runtimes.quiet_openvino
    import openvino as ov

    core = ov.Core()
    requests, info = [], []
    for model, precision in parts:
        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": os.cpu_count() or 1, "PERFORMANCE_HINT": "LATENCY"}
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        compiled = core.compile_model(str(model), "CPU", config)
        requests.append(compiled.create_infer_request())
        layers: collections.Counter[str] = collections.Counter()
        for op in compiled.get_runtime_model().get_ordered_ops():
            rt = op.get_rt_info()
            kind = rt["layerType"].astype(str) if "layerType" in rt else "?"
            if kind in ("Convolution", "Eltwise", "Reduce", "FullyConnected", "MatMul"):
                layers[f"{kind} {rt['runtimePrecision'].astype(str)}"] += 1
        info.append(
            {
                "model": model.name,
                "threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
                "streams": int(compiled.get_property("NUM_STREAMS")),
                "inference_precision": str(compiled.get_property("INFERENCE_PRECISION_HINT")),
                "layers_by_precision": dict(layers),  # what the compiled model actually runs
            }
        )

    def run(pixels: np.ndarray) -> np.ndarray:
        x: Any = pixels
        for request in requests:
            request.infer({0: x})
            x = request.get_output_tensor(0)
        return l2(x.data.copy())

    return run, {"openvino": ov.get_version(), "parts": info}


def timed(fn: Any, pixels: np.ndarray, images: int) -> float:
    """Images/s of ``fn`` on this stack: the median call after warm-up."""
    for _ in range(3):
        fn(pixels)
    calls = max(8, images // len(pixels))
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn(pixels)
        times.append(time.perf_counter() - t0)
    return len(pixels) / statistics.median(times)


def photo_path(emb: Any, pictures: np.ndarray, images: int, work: Path) -> dict[str, Any]:
    """The model's work for one photo on the garment path, on the worker: the garment
    finder's scan as ``FashionService.create`` sets it up (on OpenVINO too when the embedder
    runs there and it agrees and is faster: engine/vision/scan_runtime.py), then one batch of
    4 (the whole photo and its garments; 2.4 garments a photo in bench_served_garments).
    Median ms."""
    from PIL import Image

    from engine.vision import scan_runtime
    from engine.vision.garments import GarmentFinder

    finder = GarmentFinder.for_backbone(emb.backbone)
    scan_note = "torch"
    if emb.runtime == "openvino":
        scan_note = scan_runtime.accelerate(finder, work / "runtimes")
    photo = Image.fromarray(np.concatenate([pictures[0], pictures[1]], axis=1))  # 448×224, two garments
    batch = pictures[:4]
    scan, embed, total = [], [], []
    for i in range(max(8, images // 4) + 3):
        t0 = time.perf_counter()
        finder.scan(photo)
        t1 = time.perf_counter()
        emb.forward(batch)
        t2 = time.perf_counter()
        if i >= 3:
            scan.append(t1 - t0)
            embed.append(t2 - t1)
            total.append(t2 - t0)
    return {
        "scan": scan_note,
        "scan_ms": round(statistics.median(scan) * 1e3, 2),
        "embed4_after_scan_ms": round(statistics.median(embed) * 1e3, 2),
        "total_ms": round(statistics.median(total) * 1e3, 2),
    }


def taking_turns(emb: Any, x: np.ndarray, images: int) -> dict[str, float]:
    """Batch-1 images/s of the embedder's forward (OpenVINO) and of torch's fp32 reference,
    each alone and each right after a call of the other (the timed call only)."""
    ours = lambda: emb.forward(x)  # noqa: E731
    theirs = lambda: emb.forward(x, reference=True)  # noqa: E731

    def rate(fn: Any, before: Any = None) -> float:
        times = []
        for i in range(max(8, images) + 3):
            if before is not None:
                before()
            t0 = time.perf_counter()
            fn()
            if i >= 3:
                times.append(time.perf_counter() - t0)
        return round(1 / statistics.median(times), 1)

    return {
        "openvino_alone": rate(ours),
        "openvino_after_torch": rate(ours, theirs),
        "torch_fp32_alone": rate(theirs),
        "torch_fp32_after_openvino": rate(theirs, ours),
    }


def child(runtime: str, work: Path, task: str, sizes: list[int], images: int) -> dict:
    """One runtime in this fresh process; one thread does all its work."""
    pictures = np.load(work / "pixels.npy")
    started = time.perf_counter()
    out: dict[str, Any] = {}
    if runtime in ("torch", "served_openvino"):
        from functools import partial

        from engine.vision.backbones import load_efficientnet_lite
        from engine.vision.embedder import Embedder

        extra: dict[str, Any] = {}
        if runtime == "served_openvino":
            extra = {"runtime": "auto", "runtime_cache_dir": work / "runtimes"}
        emb = Embedder(
            partial(load_efficientnet_lite, "efficientnet-lite0"),
            batch_rates_file=work / f"batch_rates_{runtime}.json",
            **extra,
        )
        out["info"] = {
            "runtime": emb.runtime,
            "runtime_note": emb.runtime_note,
            "precision": emb.precision,
            "bf16_from": emb.bf16_from,
            "batch_size": emb.batch_size,
            "batch_rates": {str(b): round(r, 1) for b, r in emb.batch_rates.items()},
            "small_batch_fp32": emb.small_batch_fp32,
            "torch_threads": emb.call_on_worker(lambda: __import__("torch").get_num_threads()).result(),
        }
        out["startup_s"] = round(time.perf_counter() - started, 2)
        if task == "vectors":
            np.save(work / f"vectors_{runtime}.npy", emb.submit(pictures).result())
            if runtime == "torch":
                reference = emb.call_on_worker(
                    lambda: np.concatenate(
                        [
                            emb.forward(pictures[i : i + VECTOR_BATCH], reference=True)
                            for i in range(0, len(pictures), VECTOR_BATCH)
                        ]
                    )
                ).result()
                np.save(work / "vectors_reference.npy", reference)
        else:
            out["rates"] = {
                str(b): emb.call_on_worker(lambda b=b: timed(emb.forward, pictures[:b], images)).result() for b in sizes
            }
            out["submit_rates"] = {str(b): timed(lambda x: emb.submit(x).result(), pictures[:b], images) for b in sizes}
            out["photo"] = emb.call_on_worker(lambda: photo_path(emb, pictures, images, work)).result()
            if runtime == "served_openvino":
                out["turns"] = emb.call_on_worker(lambda: taking_turns(emb, pictures[:1], images)).result()
        emb.close()
        return out
    if runtime.startswith("ort_"):
        model = work / ("lite0_int8.onnx" if runtime == "ort_int8" else "lite0.onnx")
        run, info = ort_runner(model, "basic" if runtime == "ort_basic" else "all")
    elif runtime == "ov_mixed":
        run, info = ov_runner([(work / "lite0_head.onnx", "f32"), (work / "lite0_tail.onnx", None)])
    else:
        run, info = ov_runner([(work / "lite0.onnx", "f32" if runtime == "ov_fp32" else None)])
    out["info"] = info
    out["startup_s"] = round(time.perf_counter() - started, 2)
    if task == "vectors":
        vectors = np.concatenate([run(pictures[i : i + VECTOR_BATCH]) for i in range(0, len(pictures), VECTOR_BATCH)])
        np.save(work / f"vectors_{runtime}.npy", vectors)
    else:
        out["rates"] = {str(b): timed(run, pictures[:b], images) for b in sizes}
    return out


# ---- the parent ---------------------------------------------------------------------
def prepare_pictures(work: Path, catalogue: int, queries: int, calibration: int) -> None:
    """Fashion-MNIST as the product sees it: inverted to dark on white, letterboxed to 224."""
    from engine.catalogue.ingest.readers.fashion_mnist import fashion_mnist_picture, load_fashion_mnist
    from engine.vision.embedder import prepare

    train, _ = load_fashion_mnist("train")
    test, _ = load_fashion_mnist("test")
    cat = [prepare(fashion_mnist_picture(p), 224) for p in train[:catalogue]]
    qs = [prepare(fashion_mnist_picture(p), 224) for p in test[:queries]]
    cal = [prepare(fashion_mnist_picture(p), 224) for p in train[catalogue : catalogue + calibration]]
    np.save(work / "pixels.npy", np.stack(cat + qs))
    np.save(work / "calibration.npy", np.stack(cal))


def export(work: Path, cut: int | None) -> dict:
    """The served model to ONNX: uint8 NHWC pixels → the embedder's normalisation → the
    backbone's stages (engine/vision/precision.py; the exporter folds the batch norms, as
    the embedder does) → fp32 pooling → features (N, 1280); dynamic batch axis. Also, for
    OpenVINO's mixed plan, the same model cut in two where torch's embedder starts bf16
    (``cut``): ``lite0_head.onnx`` (normalisation and the fp32 stages) and ``lite0_tail.onnx``."""
    import torch

    from engine.vision.backbones import load_efficientnet_lite
    from engine.vision.precision import model_stages

    backbone = load_efficientnet_lite("efficientnet-lite0")
    split = model_stages(backbone.model.eval())
    assert split is not None
    body, end = split

    class Part(torch.nn.Module):
        def __init__(self, stages: list[torch.nn.Module], normalise: bool) -> None:
            super().__init__()
            self.stages = torch.nn.Sequential(*stages)
            self.normalise = normalise
            self.register_buffer("mean", torch.tensor(backbone.mean).view(1, 3, 1, 1) * 255.0)
            self.register_buffer("std", torch.tensor(backbone.std).view(1, 3, 1, 1) * 255.0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.normalise:  # as Embedder._normalise
                x = (x.permute(0, 3, 1, 2).float() - self.mean) / self.std
            return self.stages(x)

    def one(module: torch.nn.Module, example: torch.Tensor, name: str) -> torch.Tensor:
        torch.onnx.export(
            module.eval(),
            (example,),
            str(work / name),
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "n"}, "output": {0: "n"}},
            opset_version=17,
            dynamo=False,  # the torch.export-based exporter needs onnxscript, which is not installed
        )
        with torch.no_grad():  # not inference_mode: the result is traced again by the next export
            return module(example)

    started = time.perf_counter()
    pixels = torch.zeros(2, 224, 224, 3, dtype=torch.uint8)
    one(Part([*body, *end], True), pixels, "lite0.onnx")
    seconds = round(time.perf_counter() - started, 1)
    if cut is not None:
        middle = one(Part(body[:cut], True), pixels, "lite0_head.onnx")
        one(Part([*body[cut:], *end], False), middle, "lite0_tail.onnx")
    return {
        "exporter": "torch.onnx.export (TorchScript), opset 17, dynamic batch",
        "seconds": seconds,
        "bytes": (work / "lite0.onnx").stat().st_size,
        "backbone": backbone.model_key,
        "mixed_cut": cut,
    }


def quantise(work: Path) -> dict:
    """Static int8 (QDQ, per-channel weights, uint8 activations) calibrated on pictures that
    are neither catalogue nor queries."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calibration = np.load(work / "calibration.npy")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"input": calibration[i : i + 8]} for i in range(0, len(calibration), 8)])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    started = time.perf_counter()
    quant_pre_process(str(work / "lite0.onnx"), str(work / "lite0_pre.onnx"))
    quantize_static(
        str(work / "lite0_pre.onnx"),
        str(work / "lite0_int8.onnx"),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return {"seconds": round(time.perf_counter() - started, 1), "calibration_pictures": len(calibration)}


def run_child(runtime: str, work: Path, task: str, sizes: list[int], images: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "bench.bench_runtimes", "--child", runtime, "--work", str(work), "--task", task]
    cmd += ["--sizes", ",".join(map(str, sizes)), "--images", str(images)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{runtime} {task} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def agreement(work: Path, runtime: str, catalogue: int, k: int = 10) -> dict:
    ref = np.load(work / "vectors_reference.npy")
    got = np.load(work / f"vectors_{runtime}.npy")
    cos = np.sum(ref * got, axis=1)
    top_ref = np.argsort(-(ref[catalogue:] @ ref[:catalogue].T), axis=1)[:, :k]
    top_got = np.argsort(-(got[catalogue:] @ got[:catalogue].T), axis=1)[:, :k]
    overlaps = [len(set(r) & set(g)) for r, g in zip(top_ref, top_got)]
    return {
        "cosine_min": round(float(cos.min()), 6),
        "cosine_mean": round(float(cos.mean()), 6),
        "top10_overlap_mean": round(float(np.mean(overlaps)), 3),
        "share_queries_9_of_10": round(float(np.mean([o >= MIN_OVERLAP for o in overlaps])), 3),
        "agrees": bool(cos.min() >= MIN_COSINE and np.mean(overlaps) >= MIN_OVERLAP),
    }


def main(args: argparse.Namespace) -> dict:
    from bench.common import machine, save

    catalogue, queries = (500, 50) if args.quick else (2000, 200)
    rounds = args.rounds or (2 if args.quick else 4)
    images = args.images or (32 if args.quick else 96)
    load_before = os.getloadavg()
    started = time.perf_counter()
    runtimes = list(RUNTIMES) if not args.only else ["torch", *[r for r in args.only.split(",") if r != "torch"]]
    with tempfile.TemporaryDirectory(prefix="bench_runtimes_") as tmp:
        work = Path(tmp)
        prepare_pictures(work, catalogue, queries, calibration=64)
        info: dict[str, dict] = {}
        agree: dict[str, dict] = {}
        for runtime in runtimes:  # the vectors, once each (torch first: its reference is the bar, its plan the cut)
            got = run_child(runtime, work, "vectors", [], 0)
            info[runtime] = {"startup_s": got["startup_s"], **got["info"]}
            if runtime == "torch":
                exported = export(work, info["torch"]["bf16_from"])
                quantised = quantise(work) if "ort_int8" in runtimes else None
                print(f"exported ({exported['bytes'] / 1e6:.1f} MB, {exported['seconds']} s)", flush=True)
        for runtime in runtimes:
            agree[runtime] = agreement(work, runtime, catalogue)
            print(f"{runtime}: {agree[runtime]}", flush=True)
        served = int(info["torch"]["batch_size"])
        sizes = sorted({1, 8, served})

        rates: dict[str, dict[str, list[float]]] = {r: {str(b): [] for b in sizes} for r in runtimes}
        submit_rates: dict[str, dict[str, list[float]]] = {r: {str(b): [] for b in sizes} for r in runtimes}
        turns: list[dict[str, float]] = []
        photo: dict[str, list[dict[str, float]]] = {"torch": [], "served_openvino": []}
        for round_ in range(rounds):
            order = runtimes if round_ % 2 == 0 else list(reversed(runtimes))
            for runtime in order:
                got = run_child(runtime, work, "time", sizes, images)
                for b, r in got["rates"].items():
                    rates[runtime][b].append(round(r, 1))
                for b, r in got.get("submit_rates", {}).items():
                    submit_rates[runtime][b].append(round(r, 1))
                if "turns" in got:
                    turns.append(got["turns"])
                if "photo" in got:
                    photo[runtime].append(got["photo"])
            print(
                f"round {round_ + 1}: "
                + "; ".join(f"{r} " + "/".join(str(rates[r][str(b)][-1]) for b in sizes) for r in runtimes),
                flush=True,
            )

    results: dict[str, dict] = {}
    for runtime in runtimes:
        per_size = {}
        for b in sizes:
            mine, base = rates[runtime][str(b)], rates["torch"][str(b)]
            ratios = [m / t for m, t in zip(mine, base)]
            per_size[str(b)] = {
                "images_per_s_median": round(statistics.median(mine), 1),
                "runs": mine,
                "vs_torch_median": round(statistics.median(ratios), 3),
                "vs_torch_slowest_round": round(min(ratios), 3),
            }
        faster = all(per_size[str(b)]["vs_torch_slowest_round"] >= MIN_SPEEDUP for b in {1, served})
        results[runtime] = {
            "what": RUNTIMES[runtime],
            "by_batch": per_size,
            "agreement_with_fp32": agree[runtime],
            "info": info[runtime],
            "qualifies": runtime != "torch" and faster and agree[runtime]["agrees"],
        }
    for runtime in ("torch", "served_openvino"):
        if runtime in results:
            results[runtime]["through_submit"] = {
                b: {"images_per_s_median": round(statistics.median(rs), 1), "runs": rs}
                for b, rs in submit_rates[runtime].items()
            }
    for runtime, runs in photo.items():
        if runs:
            results[runtime]["garment_photo_model_work"] = {
                k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0] if k != "scan"
            } | {"scan": runs[-1]["scan"]}
    if photo["torch"] and photo["served_openvino"]:
        pairs = list(zip(photo["torch"], photo["served_openvino"]))
        results["served_openvino"]["garment_photo_vs_torch"] = {
            k: round(statistics.median(t[k] / o[k] for t, o in pairs), 3)
            for k in ("scan_ms", "embed4_after_scan_ms", "total_ms")
        }  # > 1: OpenVINO's photo is faster by that factor
    if turns:
        results["served_openvino"]["taking_turns_batch1"] = {
            k: round(statistics.median(t[k] for t in turns), 1) for k in turns[0]
        }
    qualifying = [r for r in runtimes if results[r]["qualifies"] and r != "served_openvino"]
    best = max(qualifying, key=lambda r: results[r]["by_batch"][str(served)]["vs_torch_median"], default=None)
    payload = {
        "benchmark": "EfficientNet-Lite0 served: torch as shipped vs ONNX Runtime and OpenVINO, one process per run",
        "quick": args.quick,
        "catalogue": catalogue,
        "queries": queries,
        "rounds": rounds,
        "images_per_size": images,
        "served_batch_size": served,
        "batch_sizes": sizes,
        "export": exported,
        "int8_quantisation": quantised,
        "results": results,
        "bar": {"speedup": MIN_SPEEDUP, "cosine_min": MIN_COSINE, "top10_overlap_mean": MIN_OVERLAP},
        "qualifying": qualifying,
        "fastest_qualifying": best,
        "seconds": round(time.perf_counter() - started, 1),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "machine": machine(),
    }
    path = save("runtimes_quick" if args.quick else "runtimes", payload)
    for runtime in runtimes:
        r = results[runtime]
        print(
            f"{runtime:11s} "
            + "  ".join(
                f"b{b}: {r['by_batch'][str(b)]['images_per_s_median']:6.1f} img/s "
                f"({r['by_batch'][str(b)]['vs_torch_median']:.2f}×)"
                for b in sizes
            )
            + f"  cos min {r['agreement_with_fp32']['cosine_min']:.5f}"
            f"  top-10 {r['agreement_with_fp32']['top10_overlap_mean']:.2f}"
            f"{'  QUALIFIES' if r['qualifies'] else ''}"
        )
    print(f"fastest qualifying: {best}; load {load_before} → {payload['load_average_after']} → {path}")
    return payload


def run_cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="500 items, 50 queries, 2 rounds, fewer images")
    parser.add_argument("--rounds", type=int, default=0, help="timing rounds, alternating order (default 4; quick 2)")
    parser.add_argument("--images", type=int, default=0, help="timed images per batch size (default 96; quick 32)")
    parser.add_argument("--only", default="", help="comma-separated runtimes beside torch (default: all)")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--work", default="", help=argparse.SUPPRESS)
    parser.add_argument("--task", default="", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        sizes = [int(s) for s in args.sizes.split(",") if s]
        print(json.dumps(child(args.child, Path(args.work), args.task, sizes, args.images)))
        return
    main(args)


if __name__ == "__main__":
    run_cli()
