"""Embedder throughput and index recall (the engine issue's figures).

    .venv/bin/python -m bench.bench_engine [--quick]

Embedder: images/second for ResNet-50 (random weights: ImageNet weights are not
available offline, and speed does not depend on the values) and EfficientNet-Lite0
(real weights), at batch 1, at the batch size start-up chose by measurement and at 32, in fp32, in bf16 everywhere, and in the
mixed plan the embedder picks at start-up (fp32 first stages, bf16 after; see
engine/vision/precision.py), where the CPU has native bf16; plus each one's feature cosine
against fp32 on real Fashion-MNIST images. The baseline of each ratio is fp32 at
batch 1 in the same run.

Index: hnswlib recall@10 against exact (brute-force) search on 50,000 vectors,
and query time, for our settings against numpy brute force in the same run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.common import machine, save
from engine.vision.backbones import LoadedBackbone, load_efficientnet_lite
from engine.vision.embedder import Embedder, cpu_has_native_bf16, prepare


def resnet50_random() -> LoadedBackbone:
    from torchvision.models import resnet50

    from engine.vision.backbones import _Pooled

    return LoadedBackbone(
        name="resnet50",
        model=_Pooled(resnet50(weights=None)).eval(),
        dim=2048,
        input_size=224,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        weights_source="random",
        fingerprint="random",
    )


def real_pixels(n: int, size: int) -> np.ndarray:
    from engine.catalogue.ingest import fashion_mnist_picture, load_fashion_mnist

    images, _ = load_fashion_mnist("test")
    return np.stack([prepare(fashion_mnist_picture(images[i]), size) for i in range(n)])


def images_per_second(emb: Embedder, pixels: np.ndarray, batch: int, seconds: float) -> float:
    """Timed on the embedder's own thread, where its torch work (calibration) already ran:
    a second thread running torch would bring up a second OpenMP team and slow both."""

    def timed() -> float:
        emb.forward(pixels[:batch])  # warm-up
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            i = (done // batch) % max(1, len(pixels) // batch)
            emb.forward(pixels[i * batch : (i + 1) * batch])
            done += batch
        return done / (time.perf_counter() - start)

    return emb.call_on_worker(timed).result()


def bench_embedder(quick: bool) -> dict:
    seconds = 3.0 if quick else 8.0
    out: dict = {}
    bf16_ok = cpu_has_native_bf16()
    for backbone in (load_efficientnet_lite(), resnet50_random()):
        pixels = real_pixels(64, backbone.input_size)
        row: dict = {}
        reference = None
        for precision in ("fp32", "auto", "bf16") if bf16_ok else ("fp32",):
            emb = Embedder(backbone, precision=precision)
            label = {"fp32": "fp32", "auto": "mixed", "bf16": "bf16"}[precision]
            row[f"{label}_plan"] = emb.precision
            # the batch size start-up chose by measurement, with the rates it measured
            row[f"{label}_batch_chosen"] = emb.batch_size
            row[f"{label}_startup_batch_rates"] = {str(b): round(r, 1) for b, r in emb.batch_rates.items()}
            for batch in sorted({1, emb.batch_size, 32}):
                key = f"batch{batch}_{label}"
                row[key] = round(images_per_second(emb, pixels, batch, seconds), 1)
                print(f"{backbone.name:20s} {key:14s} {row[key]:8.1f} img/s  ({emb.precision})", flush=True)
            feats = emb.call_on_worker(lambda emb=emb: emb.forward(pixels)).result()
            if reference is None:
                reference = feats
            else:
                cos = np.sum(reference * feats, axis=1)
                row[f"{label}_cosine_min"], row[f"{label}_cosine_mean"] = float(cos.min()), float(cos.mean())
                print(f"{backbone.name:20s} {label} vs fp32 cosine: min {cos.min():.5f} mean {cos.mean():.5f}")
            emb.close()
        base = row["batch1_fp32"]
        row["ratios_vs_batch1_fp32"] = {
            k: round(v / base, 2) for k, v in row.items() if k.startswith("batch") and isinstance(v, float)
        }
        out[backbone.name] = row
    return out


def bench_index(quick: bool) -> dict:
    from engine.catalogue.index import IndexMeta, VectorIndex
    from engine.config import Settings

    settings = Settings()
    n, dim, nq = (50_000, 1280, 200)
    rng = np.random.default_rng(0)
    # Clustered unit vectors, like image embeddings (random uniform ones are the
    # unrealistic worst case for any graph index).
    centres = rng.normal(size=(500, dim)).astype(np.float32)
    vecs = centres[rng.integers(0, 500, n + nq)] + rng.normal(scale=0.7, size=(n + nq, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    data, queries = vecs[:n], vecs[n:]
    t0 = time.perf_counter()
    index = VectorIndex(
        IndexMeta("bench", "x", dim, m=settings.index_m, ef_construction=settings.index_ef_construction),
        ef=settings.index_ef,
        capacity=n,
    )
    index.add(np.arange(n), data)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    exact = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    brute_ms = (time.perf_counter() - t0) / nq * 1000
    out = {
        "n": n,
        "dim": dim,
        "queries": nq,
        "build_seconds": round(build, 1),
        "brute_force_ms_per_query": round(brute_ms, 3),
        "by_ef": {},
    }
    for ef in (16, 32, 64, settings.index_ef, 200):
        index.ef = ef
        index._index.set_ef(ef)
        t0 = time.perf_counter()
        found = [index.search(q, 10)[0] for q in queries]
        ms = (time.perf_counter() - t0) / nq * 1000
        recall = np.mean([len(set(f.tolist()) & set(e.tolist())) / 10 for f, e in zip(found, exact)])
        out["by_ef"][ef] = {
            "recall_at_10": round(float(recall), 4),
            "ms_per_query": round(ms, 3),
            "speedup_vs_brute": round(brute_ms / ms, 1),
        }
        print(f"hnsw ef={ef:4d} recall@10 {recall:.4f}  {ms:.3f} ms/query  ({brute_ms / ms:.0f}x brute force)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    payload = {"machine": machine(), "embedder": bench_embedder(args.quick), "index": bench_index(args.quick)}
    print("saved", save("engine", payload))


if __name__ == "__main__":
    main()
