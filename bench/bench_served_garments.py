"""One photo → garments → their items, through the service as shipped, against the
whole-photo path the product had before the garment finder (issue 15's latency goal).

    .venv/bin/python -m bench.bench_served_garments [--catalogue 5000] [--photos 60]

Both paths run in one process on one service (defaults: EfficientNet-Lite0, SQLite, a
``--catalogue`` Fashion-MNIST catalogue), photo by photo, alternating which goes first, so
a shared machine's load falls on both alike:

- ``whole photo``: the finder switched off (``service.finder = None``): decode, one
  embedding, one search; what ``recommend`` did before issue 15;
- ``garments``: ``recommend`` as shipped: decode, the finder's scan, the crops, one batch
  of embeddings (the whole photo and each garment), a search per garment.

Both for a known user (the photo's vectors, garments and the recommendations are written).
The photos are the garment benchmark's own scenes and outfits (engine/training/garment_scenes.py),
as JPEGs, the way a chat sends them. Also timed: the finder's scan alone and the embedding
batch alone, on the model thread, to say where the time goes. Results go to
``bench/results/served_garments.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from bench.bench_trend import build_catalogue, settings_for
from bench.common import machine, save
from engine.service import WORKING_SIDE
from engine.types import UserRef

GOAL_RATIO = 2.0  # issue 15: p50 ≤ 2× today's whole-photo path


def photos(n: int) -> list[bytes]:
    """Scenes with one garment and outfits, half each, as JPEG (quality 90) like a phone sends."""
    from engine.training import garment_scenes as gs

    samples = gs.garment_scene_set(n // 2 + n % 2) + gs.outfit_set(n // 2)
    out = []
    for s in samples:
        buf = io.BytesIO()
        s.image.convert("RGB").save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def ms(xs: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(xs) * 1000, 1),
        "p90_ms": round(sorted(xs)[int(0.9 * (len(xs) - 1))] * 1000, 1),
        "mean_ms": round(statistics.fmean(xs) * 1000, 1),
    }


async def measure(service: Any, jpegs: list[bytes], warmup: int) -> dict[str, Any]:
    finder = service.finder
    times: dict[str, list[float]] = {"whole_photo": [], "garments": [], "scan": [], "embed_batch": []}
    garments_seen: list[int] = []
    for i, jpeg in enumerate(jpegs):
        user = UserRef("bench", f"user{i % 10}")
        order = ("whole_photo", "garments") if i % 2 == 0 else ("garments", "whole_photo")
        for path in order:
            service.finder = None if path == "whole_photo" else finder
            start = time.perf_counter()
            rec = await service.recommend(jpeg, user)
            took = time.perf_counter() - start
            if i >= warmup:
                times[path].append(took)
                if path == "garments":
                    garments_seen.append(len(rec.garments))
        service.finder = finder
        if i >= warmup and finder is not None:  # where the time goes: the two model steps alone
            picture = await service.encoder.decode(jpeg, working_size=WORKING_SIDE)
            start = time.perf_counter()
            scan = await service.encoder.on_model_thread(partial(finder.scan, picture))
            times["scan"].append(time.perf_counter() - start)
            from engine.vision.garment_boxes import Box, crop

            crops = [crop(picture, Box(*g.box.as_tuple())) for g in scan.garments]
            start = time.perf_counter()
            await service.encoder.embed_pictures([picture, *crops])
            times["embed_batch"].append(time.perf_counter() - start)
    out: dict[str, Any] = {k: ms(v) for k, v in times.items() if v}
    out["photos"] = len(times["garments"])
    out["garments_per_photo_mean"] = round(statistics.fmean(garments_seen), 2) if garments_seen else 0.0
    out["ratio_p50"] = round(out["garments"]["p50_ms"] / out["whole_photo"]["p50_ms"], 3)
    out["goal_ratio"] = GOAL_RATIO
    out["met"] = out["ratio_p50"] <= GOAL_RATIO
    return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    from engine.service import FashionService

    load_before = os.getloadavg()
    jpegs = await asyncio.to_thread(photos, args.photos + args.warmup)
    with tempfile.TemporaryDirectory(prefix="bench-served-") as tmp:
        data = Path(tmp) / "data"
        await build_catalogue(data, args.catalogue, None)
        # As `fashionbot` starts it: the service loads its own backbone (on the model thread).
        service = await FashionService.create(settings_for(data))
        try:
            about = await service.about()
            result = await measure(service, jpegs, args.warmup)
        finally:
            await service.close()
    payload = {
        "benchmark": "one photo through FashionService.recommend: garments (as shipped) vs the whole-photo path",
        "catalogue_items": args.catalogue,
        "backbone": about.backbone if hasattr(about, "backbone") else "efficientnet-lite0",
        "results": result,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "machine": machine(),
    }
    path = save("served_garments", payload)
    r = result
    print(
        f"whole photo p50 {r['whole_photo']['p50_ms']} ms; garments p50 {r['garments']['p50_ms']} ms "
        f"(scan {r['scan']['p50_ms']} ms, embedding batch {r['embed_batch']['p50_ms']} ms, "
        f"{r['garments_per_photo_mean']} garments a photo): {r['ratio_p50']}× (goal ≤ {GOAL_RATIO}×) → {path}"
    )
    return payload


def run_cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalogue", type=int, default=5000, help="Fashion-MNIST items in the catalogue")
    parser.add_argument("--photos", type=int, default=60, help="photos timed on each path")
    parser.add_argument("--warmup", type=int, default=6, help="photos sent first and not counted")
    asyncio.run(main(parser.parse_args(argv)))


if __name__ == "__main__":
    run_cli()
