"""Where ingest time goes (issue 19): the staged pipeline against the model's own rate and
against the sequential pipeline it replaced, in one run.

    .venv/bin/python -m bench.bench_ingest [--quick]

Rows (images/s, EfficientNet-Lite0, default settings otherwise: batch size measured at
start-up, precision auto):
- ``model_alone``: pre-letterboxed pixels pushed through the product's executor
  (``Encoder.embed``: the embedder's worker, micro-batched) in chunks of 128;
- ``fashion_mnist``: ``FashionService.ingest_fashion_mnist`` (what ``fashionbot ingest
  fashion-mnist`` and the demo call), staged pipeline and, as ``before``, the sequential
  one (bench/legacy_ingest.py, the module as it was);
- ``demo``: the 5,000-item demo ingest (staged), and its ratio to ``model_alone``;
- ``feed``: a Merchant CSV feed of local 600×800 JPEGs (q90), staged against before.

Every ingest runs on a fresh data directory (a fresh SQLite file and index), one service
at a time (one OpenMP team). Saved to bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from bench import legacy_ingest
from bench.common import machine, save
from engine.catalogue import ingest
from engine.service import EMBED_CHUNK, FashionService
from engine.vision.backbones import load_backbone
from engine.vision.embedder import prepare
from tests.support.settings import make_settings


def log(msg: str) -> None:
    print(msg, flush=True)


def product_jpegs(n: int, out: Path) -> list[Path]:
    """n distinct 600×800 product-like JPEGs (a garment shape on white, q90)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        img = Image.new("RGB", (600, 800), (250, 250, 250))
        draw = ImageDraw.Draw(img)
        colour = tuple(int(c) for c in rng.integers(20, 230, 3))
        x0, y0 = int(rng.integers(60, 160)), int(rng.integers(60, 160))
        draw.rounded_rectangle([x0, y0, 600 - x0, 800 - y0 // 2], radius=40, fill=colour)
        for k in range(0, 600, int(rng.integers(12, 40))):
            draw.line([(k, y0), (k + 80, 800 - y0)], fill=tuple(255 - c for c in colour), width=3)
        noise = rng.integers(0, 12, (800, 600, 3), dtype=np.uint8)
        img = Image.fromarray(np.clip(np.asarray(img, dtype=np.int16) - noise, 0, 255).astype(np.uint8))
        path = out / f"p{i:04d}.jpg"
        img.save(path, format="JPEG", quality=90)
        paths.append(path)
    return paths


def write_feed(paths: list[Path], feed: Path) -> None:
    lines = ["id,title,link,image_link,price,brand,color,gender,product_type"]
    lines += [
        f"f{i},Dress {i},https://shop.example/{i},{p.name},49.90 EUR,Acme,red,female,Apparel > Dresses"
        for i, p in enumerate(paths)
    ]
    feed.write_text("\n".join(lines) + "\n")


class Bench:
    def __init__(self, root: Path, batch_size: int | None = None) -> None:
        self.root = root
        self.batch_size = batch_size
        self.backbone = load_backbone("efficientnet-lite0")
        self.runs = 0
        self.batch_rates: Path | None = None

    async def service(self) -> FashionService:
        """A fresh data dir; the start-up batch measurement is done once and shared."""
        self.runs += 1
        data = self.root / f"data{self.runs}"
        data.mkdir()
        if self.batch_rates is not None:
            shutil.copy(self.batch_rates, data / "batch_rates.json")
        extra = {"batch_size": self.batch_size} if self.batch_size else {}
        svc = await FashionService.create(make_settings(data, **extra), backbone=self.backbone)
        if self.batch_rates is None and (data / "batch_rates.json").exists():
            self.batch_rates = data / "batch_rates.json"
        return svc

    async def model_alone(self, n: int) -> dict[str, Any]:
        svc = await self.service()
        try:
            size = svc.encoder.input_size
            images, _ = ingest.load_fashion_mnist("train")
            pixels = np.stack([prepare(ingest.fashion_mnist_picture(images[i]), size) for i in range(n)])
            await svc.encoder.embed(pixels[:EMBED_CHUNK])  # warm-up
            t0 = time.perf_counter()
            for s in range(0, n, EMBED_CHUNK):
                await svc.encoder.embed(pixels[s : s + EMBED_CHUNK])
            took = time.perf_counter() - t0
            return {
                "images": n,
                "seconds": took,
                "images_per_s": n / took,
                "batch_size": svc.encoder.embedder.batch_size,
                "precision": svc.encoder.embedder.precision,
            }
        finally:
            await svc.close()

    async def fashion_mnist(self, n: int, *, staged: bool) -> dict[str, Any]:
        svc = await self.service()
        try:
            await svc.encoder.embed(
                np.zeros((EMBED_CHUNK, svc.encoder.input_size, svc.encoder.input_size, 3), np.uint8)
            )
            t0 = time.perf_counter()
            if staged:
                report = await svc.ingest_fashion_mnist(limit=n)
            else:
                report = await legacy_ingest.ingest_fashion_mnist(
                    svc.catalogue, svc.encoder, limit=n, chunk=EMBED_CHUNK
                )
            took = time.perf_counter() - t0
            assert report.added == n, report.summary()
            return {"images": n, "seconds": took, "images_per_s": n / took}
        finally:
            await svc.close()

    async def feed(self, feed: Path, n: int, *, staged: bool) -> dict[str, Any]:
        svc = await self.service()
        try:
            await svc.encoder.embed(
                np.zeros((EMBED_CHUNK, svc.encoder.input_size, svc.encoder.input_size, 3), np.uint8)
            )
            t0 = time.perf_counter()
            if staged:
                report = await svc.ingest_feed(feed)
            else:
                rows = legacy_ingest.feed_rows(feed, svc.settings.max_image_bytes)
                report = await legacy_ingest.ingest_rows(svc.catalogue, svc.encoder, rows, batch_size=64)
            took = time.perf_counter() - t0
            assert report.added == n, report.summary()
            return {"images": n, "seconds": took, "images_per_s": n / took}
        finally:
            await svc.close()

    async def stage_costs(self, jpeg: Path) -> dict[str, Any]:
        """Each stage alone, per image, on one thread: where the time goes when nothing
        overlaps (decode and thumbnail, the database commit, the index insert)."""
        svc = await self.service()
        try:
            enc, size = svc.encoder, svc.encoder.input_size
            images, _ = ingest.load_fashion_mnist("train")
            rows = list(ingest.fashion_mnist_rows("train", EMBED_CHUNK, data=(images, _)))
            data = await asyncio.to_thread(jpeg.read_bytes)

            def per_image(fn: Any, n: int) -> float:
                t0 = time.perf_counter()
                for i in range(n):
                    fn(i)
                return (time.perf_counter() - t0) / n * 1e3

            fm_ms = per_image(lambda i: rows[i].synth(size), EMBED_CHUNK)  # type: ignore[misc]
            jpeg_ms = per_image(lambda _i: enc.prepare_sync(data, True), 32)
            pixels = np.stack([r.synth(size).pixels for r in rows])  # type: ignore[misc]
            vectors = await enc.embed(pixels)

            def items(tag: str) -> list[Any]:
                return [
                    replace(
                        r.item,
                        external_id=f"{tag}-{r.line}",
                        image=b"x" * 900,
                        embedding=v.tobytes(),
                        embedding_model=svc.model_key,
                    )
                    for r, v in zip(rows, vectors)
                ]

            await svc.store.add_items(items("warm-up"))  # the first commit compiles SQLAlchemy's statements
            chunks = [items(f"c{k}") for k in range(3)]
            t0 = time.perf_counter()
            for chunk in chunks:
                await svc.store.add_items(chunk)
            db_ms = (time.perf_counter() - t0) / (3 * len(rows)) * 1e3
            t0 = time.perf_counter()
            svc.catalogue.index.add(np.arange(10_000, 10_000 + len(vectors)), vectors)
            index_ms = (time.perf_counter() - t0) / len(vectors) * 1e3
            return {
                "fashion_mnist_decode_ms": fm_ms,
                "jpeg_600x800_decode_thumbnail_letterbox_ms": jpeg_ms,
                "db_commit_ms_per_item": db_ms,
                "index_insert_ms_per_item": index_ms,
            }
        finally:
            await svc.close()


async def main_async(quick: bool, batch_size: int | None = None) -> dict[str, Any]:
    sizes = (
        {"model": 512, "fashion_mnist": 768, "demo": 2000, "feed": 96}
        if quick
        else {"model": 1024, "fashion_mnist": 1536, "demo": 5000, "feed": 192}
    )
    out: dict[str, Any] = {
        "machine": machine(),
        "sizes": sizes,
        "backbone": "efficientnet-lite0",
        "batch_size_setting": batch_size or "measured at start-up",
    }
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        root = Path(tmp)
        bench = Bench(root, batch_size)
        pictures = root / "pictures"
        pictures.mkdir()
        feed = pictures / "feed.csv"
        write_feed(product_jpegs(sizes["feed"], pictures), feed)
        started = time.perf_counter()
        model = await bench.model_alone(sizes["model"])
        log(f"model alone: {model['images_per_s']:.1f} img/s (batch {model['batch_size']}, {model['precision']})")
        # Before and after interleaved (twice, best of each), so a passing load on this shared
        # machine hits both alike.
        pairs = [
            (
                await bench.fashion_mnist(sizes["fashion_mnist"], staged=False),
                await bench.fashion_mnist(sizes["fashion_mnist"], staged=True),
            )
            for _ in range(2)
        ]
        before = max((p[0] for p in pairs), key=lambda r: r["images_per_s"]) | {"runs": [p[0] for p in pairs]}
        after = max((p[1] for p in pairs), key=lambda r: r["images_per_s"]) | {"runs": [p[1] for p in pairs]}
        log(f"fashion-mnist ingest: before {before['images_per_s']:.1f}, after {after['images_per_s']:.1f} img/s")
        feed_pairs = [
            (await bench.feed(feed, sizes["feed"], staged=False), await bench.feed(feed, sizes["feed"], staged=True))
            for _ in range(2)
        ]
        feed_before = max((p[0] for p in feed_pairs), key=lambda r: r["images_per_s"]) | {
            "runs": [p[0] for p in feed_pairs]
        }
        feed_after = max((p[1] for p in feed_pairs), key=lambda r: r["images_per_s"]) | {
            "runs": [p[1] for p in feed_pairs]
        }
        log(
            f"feed (600x800 JPEG): before {feed_before['images_per_s']:.1f}, "
            f"after {feed_after['images_per_s']:.1f} img/s"
        )
        demo = await bench.fashion_mnist(sizes["demo"], staged=True)
        model_end = await bench.model_alone(sizes["model"])  # again: the load may have moved
        log(
            f"demo {sizes['demo']} items: {demo['images_per_s']:.1f} img/s; "
            f"model alone again {model_end['images_per_s']:.1f}"
        )
        costs = await bench.stage_costs(pictures / "p0000.jpg")
        log("stage costs (ms per image, one thread): " + ", ".join(f"{k} {v:.2f}" for k, v in costs.items()))
        model_rate = (model["images_per_s"] + model_end["images_per_s"]) / 2
        out |= {
            "model_alone": model,
            "model_alone_end": model_end,
            "model_images_per_s": model_rate,
            "fashion_mnist": {
                "before": before,
                "after": after,
                "speedup": after["images_per_s"] / before["images_per_s"],
                "before_vs_model": before["images_per_s"] / model_rate,
                "after_vs_model": after["images_per_s"] / model_rate,
            },
            "feed_600x800_jpeg": {
                "before": feed_before,
                "after": feed_after,
                "speedup": feed_after["images_per_s"] / feed_before["images_per_s"],
                "after_vs_model": feed_after["images_per_s"] / model_rate,
            },
            "demo": demo | {"vs_model": demo["images_per_s"] / model_rate, "goal": 0.8},
            "stage_costs": costs | {"model_ms_per_image": 1e3 / model_rate},
            "seconds": time.perf_counter() - started,
        }
        out["machine"]["load_average_end"] = os.getloadavg()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (demo 2,000 items)")
    parser.add_argument("--batch-size", type=int, default=None, help="fix the embedder's batch (default: measured)")
    args = parser.parse_args()
    result = asyncio.run(main_async(args.quick, args.batch_size))
    path = save("ingest", result)
    f, d = result["fashion_mnist"], result["demo"]
    log(
        f"fashion-mnist: {f['speedup']:.2f}x faster than before; {f['after_vs_model']:.2f}x the model's rate "
        f"(before {f['before_vs_model']:.2f}x); demo {d['vs_model']:.2f}x (goal 0.8); "
        f"feed {result['feed_600x800_jpeg']['speedup']:.2f}x faster. Saved {path}"
    )


if __name__ == "__main__":
    main()
