"""Lite0 at batch 1 on the served path against the same model on a main thread (issue 19).

    .venv/bin/python -m bench.bench_served_thread [--rounds 4] [--images 80]

Each variant runs in its own fresh process (a process's threads share OpenMP state, so
one process can't measure both fairly), the variants alternating round by round so a
shared machine's load falls on all alike; the median of the rounds is reported.

- ``main thread``: the model as its users run it: load, then call it on the main thread
  (torch defaults, fp32, batch 1);
- ``served, as shipped``: ``Embedder(partial(load_model, …))`` as ``FashionService.create``
  builds it: the weights are loaded on the embedder's worker, which then does all torch
  work, so the process has one OpenMP team (fp32, and the default ``auto`` precision);
- ``served, model loaded elsewhere``: what the product did before: the backbone loaded on
  another thread (asyncio.to_thread), then served on the worker. Two threads have entered
  parallel regions, so two OpenMP teams share 2 cores and libgomp throttles its spinning.

Results go to ``bench/results/served_thread.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import machine, save

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "main_thread": "main thread (torch defaults, fp32)",
    "served_fp32": "served, as shipped (loaded on the worker), fp32",
    "served_auto": "served, as shipped, default precision (auto)",
    "served_preloaded_fp32": "served, model loaded on another thread first (before this fix), fp32",
}

CHILD = r"""
import json, statistics, sys, time
from functools import partial
import numpy as np
variant, n = sys.argv[1], int(sys.argv[2])
from engine.vision.backbones import load_efficientnet_lite
loader = partial(load_efficientnet_lite, "efficientnet-lite0")
if variant == "main_thread":
    import torch
    model = loader().model.eval()
    x = torch.randn(1, 3, 224, 224)
    def one():
        with torch.inference_mode():
            model(x)
else:
    import concurrent.futures
    from engine.vision.embedder import Embedder
    source = loader
    if variant == "served_preloaded_fp32":
        pool = concurrent.futures.ThreadPoolExecutor(1)  # as asyncio.to_thread did: the thread stays
        source = pool.submit(loader).result()
    emb = Embedder(source, precision="auto" if variant == "served_auto" else "fp32", batch_size=8, max_wait_ms=0)
    px = np.random.default_rng(0).integers(0, 255, (1, 224, 224, 3), dtype=np.uint8)
    def one():
        emb.embed_pixels(px)
for _ in range(10):
    one()
ts = []
for _ in range(n):
    t = time.perf_counter(); one(); ts.append(time.perf_counter() - t)
print(json.dumps({"images_per_s": 1 / statistics.median(ts)}))
"""


def one_run(variant: str, images: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", CHILD, variant, str(images)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["images_per_s"])


def main(args: argparse.Namespace) -> dict:
    load_before = os.getloadavg()
    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    started = time.perf_counter()
    for r in range(args.rounds):
        order = list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))
        for variant in order:
            rates[variant].append(round(one_run(variant, args.images), 1))
        print(f"round {r + 1}: " + ", ".join(f"{v} {rates[v][-1]}" for v in VARIANTS), flush=True)
    med = {v: statistics.median(rs) for v, rs in rates.items()}
    base = med["main_thread"]
    results = {
        v: {
            "what": VARIANTS[v],
            "images_per_s_median": round(med[v], 1),
            "runs": rates[v],
            "vs_main_thread": round(med[v] / base, 3),
        }
        for v in VARIANTS
    }
    payload = {
        "benchmark": "EfficientNet-Lite0, batch 1: served path vs main thread, one process per run",
        "images_per_run": args.images,
        "rounds": args.rounds,
        "results": results,
        "goal": "served path at batch 1 >= main-thread speed (issue 19)",
        "met": results["served_fp32"]["vs_main_thread"] >= 0.95,  # within the noise of a shared machine
        "seconds": round(time.perf_counter() - started, 1),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "machine": machine(),
    }
    path = save("served_thread", payload)
    print(
        ", ".join(f"{v}: {r['images_per_s_median']} img/s ({r['vs_main_thread']}×)" for v, r in results.items()),
        "→",
        path,
    )
    return payload


def run_cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4, help="runs of each variant, alternating")
    parser.add_argument("--images", type=int, default=80, help="timed images per run (after 10 warm-up)")
    main(parser.parse_args(argv))


if __name__ == "__main__":
    run_cli()
