"""Performance against the usual recommender (issue #8): every figure is a ratio
against `bench.baseline.BaselineRecommender`, run in the same process on the same data.

    .venv/bin/python -m bench all [--quick]
    .venv/bin/python -m bench ingest|latency|concurrency|index|agreement [--quick]

Sections
- ingest: decode + embed + index of 600×800 product JPEGs made from Fashion-MNIST
  (tinted, upscaled, noisy, on a white 600×800 canvas), ResNet-50, same weights.
- latency: one photo → 10 items at catalogue sizes up to 44,000 (p50, p90).
- concurrency: 50 users at once vs the same 50 one by one (our path).
- index: hnswlib alone at 1,000,000 (100,000 with --quick) synthetic vectors whose
  spectrum is taken from real EfficientNet-Lite0 embeddings; 1280-d, PCA and random
  projection to 256-d; recall@10 against exact search; p50/p99; RSS delta.
- agreement: fast path (bf16 / channels-last / batched) features vs the fp32 path on
  real images: cosine, top-10 overlap, Fashion-MNIST precision@10.

ResNet-50 ImageNet weights are not available offline: both pipelines get the same
randomly initialised ResNet-50 (seed 0) whose BatchNorm statistics are re-estimated on
the product images (so activations have a realistic scale); speed does not depend on
the values. Quality and agreement on real weights use EfficientNet-Lite0.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import os
import time

import numpy as np
import torch
from PIL import Image

from bench.baseline import BaselineRecommender
from bench.common import machine, save
from engine.catalogue.index import IndexMeta, VectorIndex
from engine.vision.backbones import LoadedBackbone, _Pooled, load_efficientnet_lite
from engine.vision.embedder import Embedder, prepare
from engine.vision.images import open_image

SIZES = {
    True: dict(
        ingest=64,
        queries=20,
        cat_sizes=[1000, 11000, 22000, 44000],
        users=50,
        index_n=100_000,
        index_q=300,
        index_configs=[(16, 100), (32, 200)],
        fm_catalogue=2000,
        fm_queries=200,
        calib=64,
    ),
    False: dict(
        ingest=256,
        queries=40,
        cat_sizes=[1000, 5000, 11000, 22000, 33000, 44000],
        users=50,
        index_n=1_000_000,
        index_q=1000,
        index_configs=[(16, 100)],
        fm_catalogue=5000,
        fm_queries=500,
        calib=128,
    ),
}


_SHARED: dict = {}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def trimmed_rss() -> int:
    """RSS after handing freed heap memory back to the OS (malloc_trim), so that an index
    which reuses memory an earlier free() left behind is still counted in full."""
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss()


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


# ---- data -----------------------------------------------------------------------
def product_jpegs(n: int, seed: int = 0, split: str = "test") -> list[bytes]:
    """Realistic product JPEGs, 600×800: a Fashion-MNIST garment, tinted, upscaled to
    560 px, with sensor-like noise, centred on white, JPEG quality 90."""
    from engine.catalogue.ingest import load_fashion_mnist

    images, _ = load_fashion_mnist(split)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        dark = (images[i].astype(np.float32) / 255.0)[..., None]  # garment = 1, background = 0
        colour = rng.uniform(0.15, 0.95, size=3).astype(np.float32)
        small = 255.0 * (1.0 - dark * (1.0 - colour))
        garment = Image.fromarray(np.clip(small, 0, 255).astype(np.uint8)).resize((560, 560), Image.Resampling.LANCZOS)
        canvas = np.full((800, 600, 3), 255.0, dtype=np.float32)
        canvas[120:680, 20:580] = np.asarray(garment, dtype=np.float32)
        canvas += rng.normal(0, 4.0, size=canvas.shape).astype(np.float32)
        buf = io.BytesIO()
        Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def fmnist_query_jpeg(pixels28: np.ndarray) -> bytes:
    """As tests/conftest.fmnist_jpeg: a chat photo, dark on white, 280 px JPEG."""
    from engine.catalogue.ingest import fashion_mnist_picture

    buf = io.BytesIO()
    fashion_mnist_picture(pixels28).resize((280, 280), Image.Resampling.BICUBIC).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


# ---- models -----------------------------------------------------------------------
def shared_resnet50_state(jpegs: list[bytes]) -> dict[str, torch.Tensor]:
    """Random ResNet-50 (seed 0) with BatchNorm statistics estimated on ``jpegs``."""
    from torchvision.models import resnet50

    torch.manual_seed(0)
    net = resnet50(weights=None)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    tf = BaselineRecommender.__new__(BaselineRecommender)
    BaselineRecommender.__init__(tf, net.state_dict())  # only for its transform
    net.train()
    with torch.no_grad():
        for s in range(0, len(jpegs), 32):
            x = torch.stack([tf.transform(Image.open(io.BytesIO(d)).convert("RGB")) for d in jpegs[s : s + 32]])
            net(x)
    return net.eval().state_dict()


def our_resnet50(state: dict[str, torch.Tensor]) -> LoadedBackbone:
    from torchvision.models import resnet50

    net = resnet50(weights=None)
    net.load_state_dict(state)
    return LoadedBackbone(
        name="resnet50",
        model=_Pooled(net).eval(),
        dim=2048,
        input_size=224,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        weights_source="random (bench)",
        fingerprint="bench",
    )


def decode(data: bytes, size: int) -> np.ndarray:
    """Our decode: allow-listed open with JPEG draft, letterbox (what service.prepare does)."""
    return prepare(open_image(data, target_size=size), size)


def new_index(
    dim: int, capacity: int, m: int | None = None, efc: int | None = None, ef: int | None = None
) -> VectorIndex:
    from engine.config import Settings

    s = Settings()
    meta = IndexMeta("bench", "bench", dim, m=m or s.index_m, ef_construction=efc or s.index_ef_construction)
    return VectorIndex(meta, ef=ef or s.index_ef, capacity=capacity)


# ---- sections --------------------------------------------------------------------
def ingest_ours(emb: Embedder, jpegs: list[bytes], index: VectorIndex, decode_threads: int = 2) -> np.ndarray:
    """Decode on a thread pool, overlapping the model (which runs in the embedder's worker)."""
    size, batch = emb.input_size, emb.batch_size
    with concurrent.futures.ThreadPoolExecutor(decode_threads) as pool:
        decoded = [pool.submit(decode, d, size) for d in jpegs]
        embedded = []
        for s in range(0, len(jpegs), batch):
            embedded.append(emb.submit(np.stack([f.result() for f in decoded[s : s + batch]])))
        vectors = np.concatenate([f.result() for f in embedded])
    index.add(np.arange(len(vectors)), vectors)
    return vectors


def bench_ingest(cfg: dict, base: BaselineRecommender, emb: Embedder, jpegs: list[bytes]) -> dict:
    n = cfg["ingest"]
    data = jpegs[:n]
    # All torch work runs on the embedder's thread (one OpenMP team, as in the service).
    emb.call_on_worker(lambda: base.embed(data[0])).result()
    t0 = time.perf_counter()
    feats = emb.call_on_worker(lambda: np.stack([base.embed(d) for d in data])).result()  # the baseline's "index"
    base_s = time.perf_counter() - t0
    ingest_ours(emb, data[: emb.batch_size], new_index(2048, 64))  # warm-up
    runs = []
    for _ in range(2):
        index = new_index(2048, n)
        t0 = time.perf_counter()
        ingest_ours(emb, data, index)
        runs.append(time.perf_counter() - t0)
    ours_s = min(runs)
    out = {
        "images": n,
        "image_size": "600x800 JPEG q90",
        "baseline_images_per_s": n / base_s,
        "ours_images_per_s": n / ours_s,
        "ours_runs_s": runs,
        "ratio": base_s / ours_s,
        "goal": 4.0,
    }
    log(f"ingest: baseline {n / base_s:.1f} img/s, ours {n / ours_s:.1f} img/s, ratio {out['ratio']:.2f}")
    return out


def synth_catalogue(feats: np.ndarray, n: int, seed: int = 1) -> np.ndarray:
    """n catalogue vectors around the real features of the product images."""
    rng = np.random.default_rng(seed)
    d = feats.shape[1]
    cat = feats[rng.integers(0, len(feats), n)] + rng.normal(0, 0.5 / np.sqrt(d), size=(n, d)).astype(np.float32)
    return (cat / np.linalg.norm(cat, axis=1, keepdims=True)).astype(np.float32)


def query_ours(emb: Embedder, index: VectorIndex, data: bytes) -> np.ndarray:
    vec = emb.submit(decode(data, emb.input_size)).result()[0]
    return index.search(vec, 10)[0]


def bench_latency(cfg: dict, base: BaselineRecommender, emb: Embedder, jpegs: list[bytes], feats: np.ndarray) -> dict:
    sizes = cfg["cat_sizes"]
    catalogue = synth_catalogue(feats, sizes[-1])
    queries = jpegs[-cfg["queries"] :]
    index = new_index(2048, sizes[-1])
    rows, have = [], 0
    for n in sizes:
        t0 = time.perf_counter()
        index.add(np.arange(have, n), catalogue[have:n])
        build = time.perf_counter() - t0
        have = n
        cat = catalogue[:n]
        emb.call_on_worker(lambda: base.recommend(queries[0], cat)).result()
        query_ours(emb, index, queries[0])
        b, o = [], []
        for q in queries:  # interleaved, so load changes hit both alike
            # The baseline runs on the embedder's thread too: a second thread running torch
            # would bring up a second OpenMP team, and two teams on 2 cores slow each other.
            t0 = time.perf_counter()
            emb.call_on_worker(lambda q=q: base.recommend(q, cat)).result()
            b.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            query_ours(emb, index, q)
            o.append(time.perf_counter() - t0)
        row = {
            "catalogue": n,
            "baseline_p50_ms": pct(b, 50) * 1e3,
            "baseline_p90_ms": pct(b, 90) * 1e3,
            "ours_p50_ms": pct(o, 50) * 1e3,
            "ours_p90_ms": pct(o, 90) * 1e3,
            "index_add_s": build,
        }
        row["ratio_p50"] = row["ours_p50_ms"] / row["baseline_p50_ms"]
        rows.append(row)
        log(
            f"latency @{n}: baseline p50 {row['baseline_p50_ms']:.1f} ms, ours p50 {row['ours_p50_ms']:.1f} ms, ratio {row['ratio_p50']:.3f}"
        )
    # Where our time goes, at the largest size.
    q = queries[0]
    parts = {"decode": [], "embed": [], "search": []}
    for q in queries:
        t0 = time.perf_counter()
        px = decode(q, emb.input_size)
        t1 = time.perf_counter()
        vec = emb.submit(px).result()[0]
        t2 = time.perf_counter()
        index.search(vec, 10)
        t3 = time.perf_counter()
        parts["decode"].append(t1 - t0)
        parts["embed"].append(t2 - t1)
        parts["search"].append(t3 - t2)
    _SHARED["catalogue_index"] = index
    return {
        "queries": len(queries),
        "rows": rows,
        "goal_ratio": 1 / 6,
        "ours_breakdown_p50_ms": {k: pct(v, 50) * 1e3 for k, v in parts.items()},
    }


async def _users(emb: Embedder, index: VectorIndex, data: list[bytes], together: bool) -> float:
    loop = asyncio.get_running_loop()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)  # as FashionService's pool

    async def one(d: bytes) -> np.ndarray:
        px = await loop.run_in_executor(pool, decode, d, emb.input_size)
        vec = await emb.embed_one(px)
        return (await loop.run_in_executor(pool, index.search, vec, 10))[0]

    t0 = time.perf_counter()
    if together:
        await asyncio.gather(*(one(d) for d in data))
    else:
        for d in data:
            await one(d)
    wall = time.perf_counter() - t0
    pool.shutdown()
    return wall


def bench_concurrency(cfg: dict, emb: Embedder, jpegs: list[bytes], feats: np.ndarray) -> dict:
    n = cfg["users"]
    data = [jpegs[i % len(jpegs)] for i in range(n)]
    index = _SHARED.get("catalogue_index")  # the latency section's 44,000-item index
    if index is None:
        catalogue = synth_catalogue(feats, 44_000)
        index = new_index(2048, len(catalogue))
        index.add(np.arange(len(catalogue)), catalogue)
    asyncio.run(_users(emb, index, data[:8], True))  # warm-up
    seq, conc = [], []
    for _ in range(3):
        seq.append(asyncio.run(_users(emb, index, data, False)))
        b0 = emb.batches_run
        conc.append(asyncio.run(_users(emb, index, data, True)))
        batches = emb.batches_run - b0
    s, c = float(np.median(seq)), float(np.median(conc))
    out = {
        "users": n,
        "catalogue": len(index),
        "one_by_one_per_s": n / s,
        "together_per_s": n / c,
        "ratio": s / c,
        "goal": 2.0,
        "one_by_one_runs_s": seq,
        "together_runs_s": conc,
        "model_batches_last_run": batches,
    }
    log(f"concurrency: one by one {n / s:.1f}/s, together {n / c:.1f}/s, ratio {s / c:.2f} ({batches} batches)")
    return out


# ---- index at scale -------------------------------------------------------------------
def lite0_spectrum(n: int) -> np.ndarray:
    """Eigenvalues of the covariance of real EfficientNet-Lite0 embeddings (Fashion-MNIST)."""
    from engine.catalogue.ingest import fashion_mnist_picture, load_fashion_mnist

    images, _ = load_fashion_mnist("train")
    emb = Embedder(load_efficientnet_lite(), precision="fp32")
    px = np.stack([prepare(fashion_mnist_picture(images[i]), emb.input_size) for i in range(n)])
    feats = np.concatenate([emb.forward(px[s : s + 64]) for s in range(0, n, 64)])
    emb.close()
    feats = feats - feats.mean(axis=0)
    eig = np.linalg.eigvalsh(feats.T @ feats / len(feats))[::-1]
    return np.clip(eig, eig[min(len(feats), len(eig)) - 2] if len(feats) < len(eig) else 1e-9, None)


def synth_vectors(n: int, spectrum: np.ndarray, seed: int, centres: np.ndarray) -> np.ndarray:
    """Clustered unit vectors: centre + noise, both with the real spectrum (axis-aligned)."""
    rng = np.random.default_rng(seed)
    d = len(spectrum)
    out = np.empty((n, d), dtype=np.float32)
    scale = np.sqrt(spectrum * 0.5).astype(np.float32)
    for s in range(0, n, 50_000):
        m = min(50_000, n - s)
        x = centres[rng.integers(0, len(centres), m)] + rng.standard_normal((m, d), dtype=np.float32) * scale
        out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def exact_top10(queries: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Exact top-10 by l2 distance, chunked."""
    best_d = np.full((len(queries), 10), np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 10), dtype=np.int64)
    qn = (queries**2).sum(1)[:, None]
    for s in range(0, len(data), 100_000):
        chunk = data[s : s + 100_000]
        d = qn - 2 * queries @ chunk.T + (chunk**2).sum(1)[None, :]
        part = np.argpartition(d, 10, axis=1)[:, :10]
        cand_d = np.concatenate([best_d, np.take_along_axis(d, part, 1)], axis=1)
        cand_i = np.concatenate([best_i, part + s], axis=1)
        order = np.argsort(cand_d, axis=1)[:, :10]
        best_d, best_i = np.take_along_axis(cand_d, order, 1), np.take_along_axis(cand_i, order, 1)
    return best_i


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / 10 for f, t in zip(found, truth)]))


def int8_codes(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-vector symmetric int8 quantisation of the full-size vectors (1 byte a dimension)."""
    scales = (np.abs(data).max(axis=1) / 127.0).astype(np.float32)
    codes = np.empty(data.shape, dtype=np.int8)
    for s in range(0, len(data), 100_000):
        codes[s : s + 100_000] = np.rint(data[s : s + 100_000] / scales[s : s + 100_000, None])
    return codes, scales


def rerank(
    index: VectorIndex, codes: np.ndarray, scales: np.ndarray, q: np.ndarray, q_full: np.ndarray, k: int
) -> np.ndarray:
    ids, _ = index.search(q, k)
    sims = (codes[ids].astype(np.float32) @ q_full) * scales[ids]
    return ids[np.argsort(-sims)[:10]]


def build_measured(vectors: np.ndarray, m: int, efc: int) -> tuple[VectorIndex, float, int]:
    """A product VectorIndex over ``vectors``, added 100,000 at a time: (index, build seconds,
    RSS growth in bytes, measured from a trimmed heap so freed arrays don't hide it)."""
    n = len(vectors)
    before = trimmed_rss()
    index = new_index(vectors.shape[1], n, m=m, efc=efc, ef=64)
    t0 = time.perf_counter()
    for s in range(0, n, 100_000):
        index.add(np.arange(s, min(n, s + 100_000)), vectors[s : s + 100_000])
    return index, time.perf_counter() - t0, rss() - before


def timed_queries(search, queries) -> tuple[np.ndarray, list[float]]:
    """Run ``search`` on each query, one at a time: the stacked results and each one's seconds."""
    found, times = [], []
    for q in queries:
        t0 = time.perf_counter()
        found.append(search(q))
        times.append(time.perf_counter() - t0)
    return np.stack(found), times


def bench_index(cfg: dict) -> dict:
    n, nq, d_out = cfg["index_n"], cfg["index_q"], 256
    log(f"index: spectrum from real Lite0 embeddings; generating {n:,} x 1280 vectors")
    spectrum = lite0_spectrum(1500 if n <= 100_000 else 3000)
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((2000, 1280), dtype=np.float32) * np.sqrt(spectrum * 0.5).astype(np.float32)
    data = synth_vectors(n, spectrum, 4, centres)
    queries = synth_vectors(nq, spectrum, 5, centres)
    t0 = time.perf_counter()
    truth = exact_top10(queries, data)
    exact_ms = (time.perf_counter() - t0) / nq * 1e3
    # PCA on a sample of the catalogue.
    sample = data[np.random.default_rng(6).choice(n, 20_000, replace=False)]
    mean = sample.mean(0)
    cov = (sample - mean).T @ (sample - mean) / len(sample)
    vals, vecs = np.linalg.eigh(cov)
    pca = vecs[:, ::-1][:, :d_out].astype(np.float32)
    explained = float(vals[::-1][:d_out].sum() / vals.sum())
    rand = np.linalg.qr(np.random.default_rng(7).standard_normal((1280, d_out)))[0].astype(np.float32)
    out: dict = {
        "n": n,
        "queries": nq,
        "dim": 1280,
        "projected_dim": d_out,
        "pca_explained_variance": explained,
        "exact_numpy_ms_per_query_1280d": exact_ms,
    }
    proj = {}
    for name, w in (("pca", pca), ("random", rand)):
        pd_, pq = ((data - mean) @ w).astype(np.float32), ((queries - mean) @ w).astype(np.float32)
        truth_p = exact_top10(pq, pd_)
        proj[name] = (pd_, pq, truth_p)
        out[f"{name}_projection_exact_recall_vs_1280d"] = recall(truth_p, truth)
        log(
            f"index: {name} 256-d, exact search: recall@10 vs exact 1280-d {out[f'{name}_projection_exact_recall_vs_1280d']:.4f}"
        )
    codes, scales = int8_codes(data)
    del data
    pd_, pq, truth_p = proj["pca"]
    del proj["random"]
    hnsw_1280_bytes = n * (1280 * 4 + 32 * 2 * 4 + 4 + 8)  # level 0 alone, M=32
    out["hnswlib_1280d_level0_bytes_estimate"] = hnsw_1280_bytes
    configs = []
    for m, efc in cfg["index_configs"]:
        index, build, mem = build_measured(pd_, m, efc)
        row = {
            "m": m,
            "ef_construction": efc,
            "build_s": build,
            "rss_delta_bytes": mem,
            "rerank_int8_bytes": codes.nbytes + scales.nbytes,
            "by_ef": [],
        }
        log(
            f"index: M={m} efc={efc} built in {build:.0f} s, RSS +{mem / 2**30:.2f} GiB "
            f"(+ {row['rerank_int8_bytes'] / 2**30:.2f} GiB int8 codes for re-ranking)"
        )
        for ef in (10, 16, 24, 32, 48, 64, 96, 128, 200):
            index.ef = ef
            index._index.set_ef(ef)
            found, times = timed_queries(lambda q: index.search(q, 10)[0], pq)
            r = {
                "ef": ef,
                "recall_vs_exact_1280d": recall(found, truth),
                "recall_vs_exact_256d": recall(found, truth_p),
                "p50_ms": pct(times, 50) * 1e3,
                "p99_ms": pct(times, 99) * 1e3,
                "qps_one_thread": 1 / np.mean(times),
            }
            # Two stages: ef candidates from the 256-d graph, re-ranked with int8 codes of the 1280-d vectors.
            found, times = timed_queries(
                lambda qq: rerank(index, codes, scales, qq[0], qq[1], min(ef, 100)), list(zip(pq, queries))
            )
            r["rerank"] = {
                "candidates": min(ef, 100),
                "recall_vs_exact_1280d": recall(found, truth),
                "p50_ms": pct(times, 50) * 1e3,
                "p99_ms": pct(times, 99) * 1e3,
                "qps_one_thread": 1 / np.mean(times),
            }
            row["by_ef"].append(r)
            log(
                f"  ef={ef:3d} recall {r['recall_vs_exact_1280d']:.4f} (256-d {r['recall_vs_exact_256d']:.4f}) p50 {r['p50_ms']:.3f} ms p99 {r['p99_ms']:.3f} ms"
                f" | +int8 re-rank: recall {r['rerank']['recall_vs_exact_1280d']:.4f} p50 {r['rerank']['p50_ms']:.3f} ms p99 {r['rerank']['p99_ms']:.3f} ms"
            )
        configs.append(row)
        del index
    out["configs"] = configs
    # The goal: the cheapest setting with recall >= 0.95 against exact 1280-d search.
    ok = [
        (r["p99_ms"], c["m"], c["ef_construction"], r, c["rss_delta_bytes"], "PCA-256 graph")
        for c in configs
        for r in c["by_ef"]
        if r["recall_vs_exact_1280d"] >= 0.95
    ]
    ok += [
        (
            r["rerank"]["p99_ms"],
            c["m"],
            c["ef_construction"],
            r["rerank"] | {"ef": r["ef"]},
            c["rss_delta_bytes"] + c["rerank_int8_bytes"],
            "PCA-256 graph + int8 1280-d re-rank",
        )
        for c in configs
        for r in c["by_ef"]
        if r["rerank"]["recall_vs_exact_1280d"] >= 0.95
    ]
    if ok:
        p99, m, efc, r, mem, kind = min(ok, key=lambda t: t[0])
        out["goal_pick"] = {
            "kind": kind,
            "m": m,
            "ef_construction": efc,
            "ef": r["ef"],
            "recall": r["recall_vs_exact_1280d"],
            "p99_ms": p99,
            "memory_bytes": mem,
        }
    else:
        best = max(((c, r) for c in configs for r in c["by_ef"]), key=lambda t: t[1]["recall_vs_exact_1280d"])
        out["goal_pick"] = {
            "m": best[0]["m"],
            "ef_construction": best[0]["ef_construction"],
            "ef": best[1]["ef"],
            "recall": best[1]["recall_vs_exact_1280d"],
            "p99_ms": best[1]["p99_ms"],
            "memory_bytes": best[0]["rss_delta_bytes"],
            "kind": "PCA-256 graph",
            "note": "no setting reached recall 0.95",
        }
    return out


def bench_index_head(cfg: dict, dim: int = 128) -> dict:
    """The product's own index (VectorIndex) at the trained head's vector size: no
    projection, no re-rank, so recall is measured against exact search in the space the
    product searches. Vectors: clustered, with the top of Lite0's real spectrum (the
    head's own vectors are more tightly clustered by category, which only makes a graph
    index's job easier)."""
    n, nq = cfg["index_n"], cfg["index_q"]
    spectrum = lite0_spectrum(1500 if n <= 100_000 else 3000)[:dim]
    rng = np.random.default_rng(13)
    centres = rng.standard_normal((2000, dim), dtype=np.float32) * np.sqrt(spectrum * 0.5).astype(np.float32)
    data = synth_vectors(n, spectrum, 14, centres)
    queries = synth_vectors(nq, spectrum, 15, centres)
    truth = exact_top10(queries, data)
    m, efc = 16, 100
    index, build, mem = build_measured(data, m, efc)
    del data
    out: dict = {
        "n": n,
        "dim": dim,
        "queries": nq,
        "m": m,
        "ef_construction": efc,
        "build_s": build,
        "rss_delta_bytes": mem,
        "by_ef": [],
    }
    log(f"index (head, {dim}-d): {n:,} items, M={m} efc={efc}, built in {build:.0f} s, RSS +{mem / 2**30:.2f} GiB")
    for ef in (16, 24, 32, 48, 64, 96):
        index.ef = ef
        index._index.set_ef(ef)
        found, times = timed_queries(lambda q: index.search(q, 10)[0], queries)
        r = {"ef": ef, "recall": recall(found, truth), "p50_ms": pct(times, 50) * 1e3, "p99_ms": pct(times, 99) * 1e3}
        out["by_ef"].append(r)
        log(f"  ef={ef:3d} recall {r['recall']:.4f} p50 {r['p50_ms']:.3f} ms p99 {r['p99_ms']:.3f} ms")
    ok = [r for r in out["by_ef"] if r["recall"] >= 0.95]
    pick = min(ok, key=lambda r: r["p99_ms"]) if ok else max(out["by_ef"], key=lambda r: r["recall"])
    out["goal_pick"] = pick | {"memory_bytes": mem}
    return out


# ---- agreement and quality ------------------------------------------------------------
def top10(q: np.ndarray, cat: np.ndarray) -> np.ndarray:
    return np.argsort(-(q @ cat.T), axis=1)[:, :10]


def bench_agreement(cfg: dict, res_emb: Embedder, jpegs: list[bytes]) -> dict:
    from engine.catalogue.ingest import FASHION_MNIST_CLASSES, fashion_mnist_picture, load_fashion_mnist  # noqa: F401

    out: dict = {}
    # EfficientNet-Lite0, real weights: Fashion-MNIST catalogue and chat-photo queries.
    # The same precision choice and compilation as the ResNet-50 fast path under test.
    lite = Embedder(load_efficientnet_lite(), precision=res_emb.requested_precision, compile=bool(res_emb.buckets))
    tr_img, tr_lab = load_fashion_mnist("train")
    te_img, te_lab = load_fashion_mnist("test")
    nc, nq = cfg["fm_catalogue"], cfg["fm_queries"]
    cat_px = np.stack([prepare(fashion_mnist_picture(tr_img[i]), lite.input_size) for i in range(nc)])
    q_px = np.stack([decode(fmnist_query_jpeg(te_img[i]), lite.input_size) for i in range(nq)])
    for name, emb, qpx, cpx, labels in (
        ("efficientnet-lite0 (real weights, Fashion-MNIST)", lite, q_px, cat_px, (tr_lab[:nc], te_lab[:nq])),
        (
            "resnet50 (random weights, product JPEGs)",
            res_emb,
            np.stack([decode(d, 224) for d in jpegs[: min(64, len(jpegs) // 2)]]),
            np.stack([decode(d, 224) for d in jpegs[min(64, len(jpegs) // 2) :]]),
            None,
        ),
    ):
        fp32_q = np.concatenate([emb.forward(qpx[s : s + 1], reference=True) for s in range(len(qpx))])  # batch 1
        fp32_c = np.concatenate([emb.forward(cpx[s : s + 32], reference=True) for s in range(0, len(cpx), 32)])
        row: dict = {"fast_path_plan": emb.precision, "compiled": bool(emb.buckets)}
        for variant, ref in (("fp32_batched", True), ("fast_path", False)):
            fq = np.concatenate([emb.forward(qpx[s : s + 32], reference=ref) for s in range(0, len(qpx), 32)])
            fc = np.concatenate([emb.forward(cpx[s : s + 32], reference=ref) for s in range(0, len(cpx), 32)])
            cos = np.concatenate([(fq * fp32_q).sum(1), (fc * fp32_c).sum(1)])
            ref, got = top10(fp32_q, fp32_c), top10(fq, fc)
            overlap = float(np.mean([len(set(a) & set(b)) for a, b in zip(ref, got)]))
            r = {"cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()), "top10_overlap_mean": overlap}
            if labels is not None:
                cl, ql = labels
                r["precision_at_10"] = float(np.mean(cl[got] == ql[:, None]))
                r["precision_at_10_fp32_batch1"] = float(np.mean(cl[ref] == ql[:, None]))
            row[variant] = r
            log(
                f"agreement {name} {variant}: cos min {r['cosine_min']:.5f} mean {r['cosine_mean']:.5f}, top-10 overlap {overlap:.2f}"
                + (
                    f", P@10 {r['precision_at_10']:.3f} (fp32 b1 {r['precision_at_10_fp32_batch1']:.3f})"
                    if labels is not None
                    else ""
                )
            )
        out[name] = row
    lite.close()
    return out


# ---- table and plots ------------------------------------------------------------------
def table(res: dict) -> str:
    lines = ["| Goal | Baseline | Ours | Ratio | Goal ratio | Met |", "| --- | --- | --- | --- | --- | --- |"]
    if "ingest" in res:
        g = res["ingest"]
        lines.append(
            f"| Ingest, {g['images']} 600×800 JPEGs, ResNet-50 | {g['baseline_images_per_s']:.1f} img/s | "
            f"{g['ours_images_per_s']:.1f} img/s | {g['ratio']:.2f}× | ≥ 4× | {'yes' if g['ratio'] >= 4 else 'no'} |"
        )
    if "latency" in res:
        r = res["latency"]["rows"][-1]
        lines.append(
            f"| One photo → 10 items, {r['catalogue']:,} items, p50 | {r['baseline_p50_ms']:.1f} ms | "
            f"{r['ours_p50_ms']:.1f} ms | {r['ratio_p50']:.3f} | ≤ 0.167 | {'yes' if r['ratio_p50'] <= 1 / 6 else 'no'} |"
        )
    if "concurrency" in res:
        c = res["concurrency"]
        lines.append(
            f"| {c['users']} users at once vs one by one (ours) | {c['one_by_one_per_s']:.1f} req/s | "
            f"{c['together_per_s']:.1f} req/s | {c['ratio']:.2f}× | ≥ 2× | {'yes' if c['ratio'] >= 2 else 'no'} |"
        )
    if "index" in res:
        i = res["index"]
        p = i["goal_pick"]
        lines.append(
            f"| Index alone, {i['n']:,} items ({p['kind']}, M={p['m']}, ef={p['ef']}) | exact numpy 1280-d "
            f"{i['exact_numpy_ms_per_query_1280d']:.1f} ms/query | {_index_goal_cells(p)}"
        )
    if "index_head" in res:
        h = res["index_head"]
        p = h["goal_pick"]
        lines.append(
            f"| Index alone, {h['n']:,} items at the head's {h['dim']}-d (VectorIndex, M={h['m']}, ef={p['ef']}) | – | "
            f"{_index_goal_cells(p)}"
        )
    if "agreement" in res:
        for name, row in res["agreement"].items():
            r = row["fast_path"]
            met = r["cosine_min"] >= 0.999 and r["top10_overlap_mean"] >= 9
            lines.append(
                f"| Fast path ({row['fast_path_plan']}{', compiled' if row['compiled'] else ''}, batched) "
                f"vs fp32 batch 1: {name} | – | cos min {r['cosine_min']:.4f}, top-10 overlap "
                f"{r['top10_overlap_mean']:.2f} | – | cos ≥ 0.999, ≥ 9/10 | {'yes' if met else 'no'} |"
            )
    return "\n".join(lines)


def _index_goal_cells(p: dict) -> str:
    """The result, goal and verdict cells of an index row: recall >= 0.95, p99 <= 2 ms, <= 4 GB."""
    met = p["recall"] >= 0.95 and p["p99_ms"] <= 2 and p["memory_bytes"] <= 4 * 2**30
    return (
        f"recall {p['recall']:.3f}, p99 {p['p99_ms']:.2f} ms, {p['memory_bytes'] / 2**30:.2f} GiB | – | "
        f"recall ≥ 0.95, p99 ≤ 2 ms, ≤ 4 GB | {'yes' if met else 'no'} |"
    )


def plots(res: dict, out_dir) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    if "latency" in res:
        rows = res["latency"]["rows"]
        x = [r["catalogue"] for r in rows]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(
            x,
            [r["baseline_p50_ms"] for r in rows],
            "o-",
            color="C0",
            label="baseline p50 (ResNet-50 fp32 + sklearn refit)",
        )
        ax.plot(x, [r["ours_p50_ms"] for r in rows], "o-", color="C1", label="ours p50 (band: to p90)")
        ax.fill_between(
            x, [r["baseline_p50_ms"] for r in rows], [r["baseline_p90_ms"] for r in rows], color="C0", alpha=0.2
        )
        ax.fill_between(x, [r["ours_p50_ms"] for r in rows], [r["ours_p90_ms"] for r in rows], color="C1", alpha=0.2)
        ax.set_xlabel("catalogue size (items)")
        ax.set_ylabel("one photo → 10 items (ms)")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"perf_latency_vs_catalogue{'_quick' if res.get('quick') else ''}.png"
        fig.savefig(path, dpi=110)
        made.append(str(path))
        plt.close(fig)
    if "index" in res:
        fig, ax = plt.subplots(figsize=(6, 4))
        for c in res["index"]["configs"]:
            ax.plot(
                [r["recall_vs_exact_1280d"] for r in c["by_ef"]],
                [r["qps_one_thread"] for r in c["by_ef"]],
                "o-",
                label=f"M={c['m']}, ef_construction={c['ef_construction']} (vs exact 1280-d)",
            )
            ax.plot(
                [r["rerank"]["recall_vs_exact_1280d"] for r in c["by_ef"]],
                [r["rerank"]["qps_one_thread"] for r in c["by_ef"]],
                "s--",
                label=f"M={c['m']}, ef_construction={c['ef_construction']} + int8 1280-d re-rank",
            )
            for r in c["by_ef"]:
                ax.annotate(str(r["ef"]), (r["recall_vs_exact_1280d"], r["qps_one_thread"]), fontsize=6)
                ax.annotate(
                    str(r["ef"]), (r["rerank"]["recall_vs_exact_1280d"], r["rerank"]["qps_one_thread"]), fontsize=6
                )
        ax.axvline(0.95, color="grey", ls="--", lw=0.8)
        ax.set_xlabel("recall@10")
        ax.set_ylabel("queries per second (one thread)")
        ax.set_yscale("log")
        ax.set_title(f"hnswlib, {res['index']['n']:,} items, PCA 256-d (labels: ef)", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"perf_index_recall_qps_{res['index']['n']}.png"
        fig.savefig(path, dpi=110)
        made.append(str(path))
        plt.close(fig)
    return made


SECTIONS = ("agreement", "ingest", "latency", "concurrency", "index", "index_head")


def run(
    sections: list[str], quick: bool, batch_size: int | None = None, precision: str | None = None, compile: bool = True
) -> dict:
    from pathlib import Path

    cfg = SIZES[quick]
    torch.set_num_threads(os.cpu_count() or 1)
    res: dict = {"quick": quick, "config": cfg, "machine": machine()}
    needs_models = any(s in sections for s in ("ingest", "latency", "concurrency", "agreement"))
    if needs_models:
        n_img = max(cfg["ingest"], cfg["queries"] + 64, 128)
        log(f"making {n_img} product JPEGs, ResNet-50 weights (BN statistics on {cfg['calib']} images)")
        jpegs = product_jpegs(n_img)
        res["jpeg_mean_bytes"] = float(np.mean([len(j) for j in jpegs]))
        state = shared_resnet50_state(jpegs[: cfg["calib"]])
        base = BaselineRecommender(state)
        from engine.config import Settings

        # The fast path: the precision the product picks (bf16 from the stage where it
        # agrees with fp32, where the CPU has native bf16; fp32 otherwise).
        precision = precision or "auto"
        t0 = time.perf_counter()
        emb = Embedder(
            our_resnet50(state),
            precision=precision,
            batch_size=batch_size or Settings().batch_size,
            compile=compile,
            max_wait_ms=Settings().micro_batch_wait_ms,
        )
        res["ours"] = {
            "precision": emb.precision,
            "batch_size": emb.batch_size,
            "input_size": emb.input_size,
            "threads": torch.get_num_threads(),
            "compiled_buckets": list(emb.buckets),
            "batch_rates_at_startup": {str(b): r for b, r in emb.batch_rates.items()},
            "startup_s": time.perf_counter() - t0,
            "max_wait_ms": emb.max_wait * 1e3,
        }
        log(f"ours: {res['ours']}")
    if "agreement" in sections:
        res["agreement"] = bench_agreement(cfg, emb, jpegs)
    if "ingest" in sections:
        res["ingest"] = bench_ingest(cfg, base, emb, jpegs)
    if any(s in sections for s in ("latency", "concurrency")):
        feats = emb.call_on_worker(lambda: np.stack([base.embed(d) for d in jpegs[:64]])).result()
    if "latency" in sections:
        res["latency"] = bench_latency(cfg, base, emb, jpegs, feats)
    if "concurrency" in sections:
        res["concurrency"] = bench_concurrency(cfg, emb, jpegs, feats)
    if needs_models:
        emb.close()
    if "index" in sections:
        res["index"] = bench_index(cfg)
    if "index_head" in sections:
        res["index_head"] = bench_index_head(cfg)
    res["table"] = table(res)
    res["plots"] = plots(res, Path(__file__).resolve().parent.parent / "docs" / "plots")
    name = "perf_quick" if quick else "perf"
    if set(sections) != set(SECTIONS):
        name += "_" + "_".join(sections)
    path = save(name, res)
    print(res["table"])
    log(f"saved {path}")
    return res
