"""One measurement in its own process, the way its users run it (issue 19).

    .venv/bin/python -m bench.standalone baseline-ingest DIR
    .venv/bin/python -m bench.standalone fast-ingest DIR
    .venv/bin/python -m bench.standalone baseline-latency DIR --sizes 1000,44000
    .venv/bin/python -m bench.standalone fast-latency DIR --sizes 1000,44000
    .venv/bin/python -m bench.standalone product-latency DIR --sizes 1000,44000 --users 50

Each prints one JSON object on its last stdout line. ``bench/bench_shipped.py`` starts them
one after another (never two at once: two processes' OpenMP teams on 2 cores would slow
each other) and compares what they print.

- **baseline**: the usual recommender as its users run it (``bench.baseline``): a
  standalone script, main thread, torch defaults, ResNet-50 fp32 one image at a time, full
  decode, ``NearestNeighbors`` refitted for every query.
- **fast**: the obvious fast path a careful user writes beside it: JPEG draft decoding,
  channels-last, bf16 autocast (where the CPU has native bf16), batches of 32 for ingest;
  at query time one image and an exact numpy search (no refit).
- **product**: ``FashionService`` with default settings (``FASHIONBOT_DATA_DIR`` only), a
  real Fashion-MNIST catalogue ingested through the service, ``recommend`` as the web chat
  calls it (garments found and searched), plus the whole-photo path as an extra row and
  50 users at once against the same 50 one by one.

The two ResNet-50 sides get the same random weights (seed 0): no ResNet-50 ImageNet
weights install offline, and speed does not depend on the values. Their catalogues are
vectors spread around real features of the product pictures (their search cost depends
only on the size); the product's is real items.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

FAST_BATCH = 32


def _resnet50() -> Any:
    import torch
    from torchvision.models import resnet50

    torch.manual_seed(0)
    return resnet50(weights=None).eval()


def _pictures(folder: Path, pattern: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted(folder.glob(pattern))]


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def _ms(xs: list[float]) -> dict[str, float]:
    return {"p50_ms": round(_pct(xs, 50) * 1e3, 1), "p90_ms": round(_pct(xs, 90) * 1e3, 1)}


# ---- the baseline ---------------------------------------------------------------------------
def _baseline() -> Any:
    from bench.baseline import BaselineRecommender

    return BaselineRecommender(_resnet50().state_dict())


def baseline_ingest(folder: Path, n: int) -> dict[str, Any]:
    """The usual code's catalogue build: read each file, embed it alone, stack the features."""
    base = _baseline()
    paths = sorted(folder.glob("p*.jpg"))[:n]
    base.embed(paths[0].read_bytes())  # warm-up
    start = time.perf_counter()
    features = np.stack([base.embed(p.read_bytes()) for p in paths])
    took = time.perf_counter() - start
    return {"images": len(features), "seconds": took, "images_per_s": len(features) / took}


def _catalogue(features: np.ndarray, n: int, seed: int = 1) -> np.ndarray:
    from bench.bench_perf import synth_catalogue

    return synth_catalogue(features, n, seed)


def baseline_latency(folder: Path, sizes: list[int]) -> dict[str, Any]:
    base = _baseline()
    queries = _pictures(folder, "q*.jpg")
    seeds = np.stack([base.embed(d) for d in _pictures(folder, "p*.jpg")[:32]])
    catalogue = _catalogue(seeds, max(sizes))
    rows = []
    for n in sizes:
        cat = catalogue[:n]
        base.recommend(queries[0], cat)
        took = []
        for q in queries:
            start = time.perf_counter()
            base.recommend(q, cat)
            took.append(time.perf_counter() - start)
        rows.append({"catalogue": n, **_ms(took)})
        print(f"baseline @{n}: p50 {rows[-1]['p50_ms']} ms", file=sys.stderr, flush=True)
    return {"queries": len(queries), "rows": rows}


# ---- the obvious fast path ---------------------------------------------------------------------
class FastPath:
    """ResNet-50 as a careful user would run it: draft decode, channels-last, bf16 autocast."""

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.model = _resnet50()
        self.model.fc = torch.nn.Identity()
        self.model = self.model.to(memory_format=torch.channels_last)
        self.bf16 = _native_bf16()
        self.mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        self.std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def decode(self, data: bytes) -> np.ndarray:
        from PIL import Image

        img = Image.open(io.BytesIO(data))
        img.draft("RGB", (224, 224))
        return np.asarray(img.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR))

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        torch = self.torch
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255)
        x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            feats = self.model(x).float().numpy()
        return feats / np.linalg.norm(feats, axis=1, keepdims=True)


def _native_bf16() -> bool:
    try:
        flags = next((line for line in open("/proc/cpuinfo") if line.startswith("flags")), "")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def fast_ingest(folder: Path, n: int) -> dict[str, Any]:
    fast = FastPath()
    paths = sorted(folder.glob("p*.jpg"))[:n]
    fast.embed(np.stack([fast.decode(p.read_bytes()) for p in paths[:FAST_BATCH]]))  # warm-up
    start = time.perf_counter()
    out = []
    for s in range(0, len(paths), FAST_BATCH):
        out.append(fast.embed(np.stack([fast.decode(p.read_bytes()) for p in paths[s : s + FAST_BATCH]])))
    took = time.perf_counter() - start
    count = sum(len(o) for o in out)
    return {"images": count, "seconds": took, "images_per_s": count / took, "bf16": fast.bf16}


def fast_latency(folder: Path, sizes: list[int]) -> dict[str, Any]:
    fast = FastPath()
    queries = _pictures(folder, "q*.jpg")
    seeds = fast.embed(np.stack([fast.decode(d) for d in _pictures(folder, "p*.jpg")[:32]]))
    catalogue = _catalogue(seeds, max(sizes))
    rows = []
    for n in sizes:
        cat = catalogue[:n]

        def one(data: bytes, cat: np.ndarray = cat) -> np.ndarray:
            vec = fast.embed(fast.decode(data)[None])[0]
            scores = cat @ vec
            top = np.argpartition(-scores, 10)[:10]
            return top[np.argsort(-scores[top])]

        one(queries[0])
        took = []
        for q in queries:
            start = time.perf_counter()
            one(q)
            took.append(time.perf_counter() - start)
        rows.append({"catalogue": n, **_ms(took)})
        print(f"fast path @{n}: p50 {rows[-1]['p50_ms']} ms", file=sys.stderr, flush=True)
    return {"queries": len(queries), "rows": rows, "bf16": fast.bf16}


# ---- the product ---------------------------------------------------------------------------------
async def product_latency(folder: Path, sizes: list[int], users: int) -> dict[str, Any]:
    """The service as shipped over a growing real catalogue: ``recommend`` photo by photo
    (garments, as the front-ends call it) and, interleaved, the whole-photo path."""
    from engine.config import Settings
    from engine.service import FashionService
    from engine.types import UserRef

    queries = _pictures(folder, "q*.jpg")
    service = await FashionService.create(Settings())  # FASHIONBOT_DATA_DIR from the environment
    try:
        about = await service.about()
        rows = []
        for n in sizes:
            start = time.perf_counter()
            await service.ingest_fashion_mnist(split="train", limit=n)
            ingest_s = time.perf_counter() - start
            size = await service.catalogue_size()
            await service.recommend(queries[0], UserRef("bench", "warm"))
            garments: list[float] = []
            whole: list[float] = []
            found: list[int] = []
            for i, q in enumerate(queries):
                user = UserRef("bench", f"u{i % 10}")
                order = (False, True) if i % 2 == 0 else (True, False)
                for whole_photo in order:
                    start = time.perf_counter()
                    rec = await service.recommend(q, user, whole_photo=whole_photo)
                    (whole if whole_photo else garments).append(time.perf_counter() - start)
                    if not whole_photo:
                        found.append(len(rec.garments))
            rows.append(
                {
                    "catalogue": size,
                    "garments": _ms(garments),
                    "whole_photo": _ms(whole),
                    "garments_per_photo": round(statistics.fmean(found), 2),
                    "ingest_s": round(ingest_s, 1),
                }
            )
            print(
                f"product @{size}: garments p50 {rows[-1]['garments']['p50_ms']} ms, "
                f"whole photo p50 {rows[-1]['whole_photo']['p50_ms']} ms",
                file=sys.stderr,
                flush=True,
            )
        concurrency = await _users_at_once(service, queries, users)
        embedder = service.encoder.embedder
        return {
            "queries": len(queries),
            "rows": rows,
            "concurrency": concurrency,
            "backbone": about.backbone,
            "batch_size": embedder.batch_size,
            "precision": embedder.precision,
        }
    finally:
        await service.close()


async def _users_at_once(service: Any, queries: list[bytes], users: int) -> dict[str, Any]:
    """``users`` people each send a photo at once, against the same photos one by one
    (three rounds each, alternating; medians)."""
    from engine.types import UserRef

    photos = [queries[i % len(queries)] for i in range(users)]

    async def one(i: int) -> None:
        await service.recommend(photos[i], UserRef("crowd", f"c{i}"))

    async def one_by_one() -> float:
        start = time.perf_counter()
        for i in range(users):
            await one(i)
        return time.perf_counter() - start

    async def together() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(users)))
        return time.perf_counter() - start

    await together()  # warm-up
    seq, conc = [], []
    for _ in range(3):
        seq.append(await one_by_one())
        conc.append(await together())
    s, c = statistics.median(seq), statistics.median(conc)
    return {
        "users": users,
        "one_by_one_per_s": round(users / s, 2),
        "together_per_s": round(users / c, 2),
        "ratio": round(s / c, 3),
        "one_by_one_runs_s": seq,
        "together_runs_s": conc,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "what", choices=("baseline-ingest", "fast-ingest", "baseline-latency", "fast-latency", "product-latency")
    )
    parser.add_argument("folder", type=Path, help="p*.jpg product pictures and q*.jpg query photos")
    parser.add_argument("--n", type=int, default=10**9, help="pictures to ingest (default: all p*.jpg)")
    parser.add_argument("--sizes", default="1000,44000", help="catalogue sizes, comma-separated")
    parser.add_argument("--users", type=int, default=50)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    started = os.getloadavg()
    if args.what == "baseline-ingest":
        out = baseline_ingest(args.folder, args.n)
    elif args.what == "fast-ingest":
        out = fast_ingest(args.folder, args.n)
    elif args.what == "baseline-latency":
        out = baseline_latency(args.folder, sizes)
    elif args.what == "fast-latency":
        out = fast_latency(args.folder, sizes)
    else:
        out = asyncio.run(product_latency(args.folder, sizes, args.users))
    import torch

    out["torch_threads"] = torch.get_num_threads()
    out["load_average"] = [started, os.getloadavg()]
    print(json.dumps(out, default=float))


if __name__ == "__main__":
    main()
