"""Benchmark (and calibration) of engine/styles/profile.py.

    .venv/bin/python bench/bench_styles.py              # timing, synthetic histories
    .venv/bin/python bench/bench_styles.py --calibrate  # threshold scan on real features
    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_styles.py --out /tmp/s.json  # one BLAS thread

On a busy 2-core machine one BLAS thread is faster than two (threads wait on
each other when cores are oversubscribed): the JSON records the load average.

Timing: ``build_profile`` on a 1,000-photo history at 1280-d (efficientnet-lite0)
and 2048-d (ResNet-50), median of repeats, against a baseline run in the same
process on the same data: the textbook scipy pipeline one writes straight from
the paper (``pdist(metric="cosine")`` -> average ``linkage`` -> ``fcluster``,
then cohesion from the full n x n similarity matrix). Same algorithm, same
partition (checked), so the ratio measures only our implementation choices (one
BLAS product for the distances, O(n d) cohesion). Results go to
``bench/results/styles.json``.

Calibration: embeds Fashion-MNIST test images with the offline efficientnet-lite0
weights, simulates users with 1-3 styles (categories) of various sizes, and
scores average linkage and Ward over a range of thresholds (adjusted Rand index
against the categories, and how often the representative cluster is the user's
biggest category). This is where ``DEFAULT_DISTANCE_THRESHOLD`` comes from.
Results go to ``bench/results/styles_calibration.json``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist, squareform

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.styles.profile import (  # noqa: E402
    DEFAULT_DISTANCE_THRESHOLD,
    _profile_from_labels,
    _unit_rows,
    build_profile,
    cluster_labels,
    cosine_condensed,
)

RESULTS = ROOT / "bench" / "results"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


# ---------------------------------------------------------------------------
# Synthetic histories
# ---------------------------------------------------------------------------
def synthetic_history(n: int, d: int, *, styles: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n unit vectors shaped like CNN features of one user's photos.

    Styles share a common component (unrelated photos still have cosine ~0.5, as
    with real non-negative CNN features), have Zipf-like sizes (one main style,
    a long tail) and within-style cosine ~0.75; 3% are one-off outliers.
    Returns (embeddings float32, true style per row, -1 for outliers).
    """
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((d, styles + 1)))[0].T
    directions = basis[0] + basis[1:]
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    sizes = 1.0 / np.arange(1, styles + 1)
    labels = rng.choice(styles, size=n, p=sizes / sizes.sum())
    outliers = rng.random(n) < 0.03
    x = directions[labels] + rng.standard_normal((n, d)) * 0.55 / np.sqrt(d)
    x[outliers] = rng.standard_normal((outliers.sum(), d))
    labels[outliers] = -1
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


# ---------------------------------------------------------------------------
# Baseline: the textbook scipy pipeline
# ---------------------------------------------------------------------------
def baseline_profile(x: np.ndarray, threshold: float) -> tuple[np.ndarray, int]:
    """pdist(cosine) -> average linkage -> fcluster -> cohesion from the full
    similarity matrix. Returns (labels, index of the representative cluster)."""
    condensed = pdist(x, metric="cosine")
    labels = fcluster(linkage(condensed, method="average"), t=threshold, criterion="distance") - 1
    similarity = 1.0 - squareform(condensed)
    best, rep = None, -1
    for c in range(labels.max() + 1):
        members = labels == c
        _centroid = x[members].mean(axis=0)
        _centroid /= np.linalg.norm(_centroid)
        key = (similarity[members].mean(), members.sum())
        if best is None or key > best:
            best, rep = key, c
    return labels, rep


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------
def time_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median, min and max wall time of ``fn`` in milliseconds."""
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1000.0)
    return {"median_ms": statistics.median(runs), "min_ms": min(runs), "max_ms": max(runs), "repeats": repeats}


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two labelings group the rows identically (label names aside)."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def stage_times(x: np.ndarray, threshold: float, repeats: int) -> dict[str, float]:
    """Median ms of each stage of build_profile, to show where the time goes."""
    unit = _unit_rows(x)
    condensed = cosine_condensed(unit)
    tree = linkage(condensed, method="average")
    labels = fcluster(tree, t=threshold, criterion="distance") - 1
    w = np.ones(len(x))
    return {
        "normalise": time_ms(lambda: _unit_rows(x), repeats)["median_ms"],
        "distances": time_ms(lambda: cosine_condensed(unit), repeats)["median_ms"],
        "linkage+fcluster": time_ms(
            lambda: fcluster(linkage(condensed, method="average"), t=threshold, criterion="distance"), repeats
        )["median_ms"],
        "centroids+cohesion+order": time_ms(lambda: _profile_from_labels(unit, w, labels), repeats)["median_ms"],
    }


def run_timing(sizes: list[int], dims: list[int], repeats: int, threshold: float) -> dict:
    cases = []
    for n in sizes:
        for d in dims:
            x, _ = synthetic_history(n, d, seed=n + d)
            ours = time_ms(lambda: build_profile(x, distance_threshold=threshold), repeats)
            base = time_ms(lambda: baseline_profile(x, threshold), max(3, repeats // 3))
            profile = build_profile(x, distance_threshold=threshold)
            ref_labels, ref_rep = baseline_profile(x, threshold)
            our_labels = cluster_labels(_unit_rows(x), threshold)
            agree = same_partition(our_labels, ref_labels)
            rep_agrees = set(profile.representative.members.tolist()) == set(
                np.flatnonzero(ref_labels == ref_rep).tolist()
            )
            case = {
                "photos": n,
                "dimension": d,
                "clusters": len(profile.clusters),
                "clusters_with_3_or_more": sum(c.size >= 3 for c in profile.clusters),
                "representative_share": round(profile.representative.share, 3),
                "build_profile": ours,
                "baseline": base,
                "speedup_vs_baseline": base["median_ms"] / ours["median_ms"],
                "same_partition_as_baseline": agree,
                "same_representative_as_baseline": rep_agrees,
                "stages_median_ms": stage_times(x, threshold, repeats),
            }
            cases.append(case)
            print(
                f"n={n:5d} d={d:4d}  build_profile {ours['median_ms']:7.1f} ms (median of {repeats})   "
                f"baseline {base['median_ms']:7.1f} ms   x{case['speedup_vs_baseline']:.1f}   "
                f"clusters {case['clusters']} ({case['clusters_with_3_or_more']} with >=3 photos), "
                f"rep share {case['representative_share']:.2f}, same partition {agree}, same rep {rep_agrees}"
            )
            print("          stages (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in case["stages_median_ms"].items()))
    return {
        "benchmark": "engine.styles.profile.build_profile",
        "baseline": "textbook scipy: pdist(metric='cosine') + linkage(method='average') + fcluster "
        "+ cohesion from the full n x n similarity matrix (same algorithm and partition)",
        "data": "synthetic: 12 Zipf-sized styles, within-style cosine ~0.75, between ~0.5, 3% outliers",
        "distance_threshold": threshold,
        "environment": environment(),
        "cases": cases,
    }


def environment() -> dict:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15min": [round(v, 2) for v in os.getloadavg()],  # a busy machine inflates timings
        "threads_env": {
            k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ
        },
    }


# ---------------------------------------------------------------------------
# Calibration on real features
# ---------------------------------------------------------------------------
def adjusted_rand_index(truth: np.ndarray, pred: np.ndarray) -> float:
    """ARI (Hubert & Arabie), numpy only so the benchmark needs no scikit-learn."""
    _, t = np.unique(truth, return_inverse=True)
    _, p = np.unique(pred, return_inverse=True)
    table = np.zeros((t.max() + 1, p.max() + 1))
    np.add.at(table, (t, p), 1)

    def pairs(v: np.ndarray) -> float:
        return float((v * (v - 1) / 2).sum())

    index, rows, cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    expected = rows * cols / pairs(np.array([len(truth)]))
    best = (rows + cols) / 2
    return 1.0 if best == expected else (index - expected) / (best - expected)


def fashion_mnist_features(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """efficientnet-lite0 features of ``per_class`` test images per category."""
    from PIL import Image

    from engine.vision.backbones import load_backbone
    from engine.vision.embedder import Embedder, prepare

    images = np.frombuffer(gzip.open(FASHION_MNIST / "t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16)
    labels = np.frombuffer(gzip.open(FASHION_MNIST / "t10k-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
    images = images.reshape(-1, 28, 28)
    rng = np.random.default_rng(seed)
    chosen = np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(10)])
    embedder = Embedder(load_backbone("efficientnet-lite0", allow_download=False), precision="fp32")
    try:
        size = embedder.input_size
        # Inverted: Fashion-MNIST is white-on-black, catalogue photos are shot on white.
        pixels = np.stack([prepare(Image.fromarray(255 - images[i]).convert("RGB"), size) for i in chosen])
        features = np.concatenate([embedder.forward(pixels[i : i + 50]) for i in range(0, len(pixels), 50)])
    finally:
        embedder.close()
    return features, labels[chosen].astype(np.intp)


def simulated_users(y: np.ndarray, lo: int, hi: int, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Users with 1-3 categories, lo..hi-1 photos in each."""
    users = []
    for _ in range(count):
        k = int(rng.integers(1, 4))
        classes = rng.choice(10, k, replace=False)
        sizes = rng.integers(lo, hi, size=k)
        users.append(
            np.concatenate([rng.choice(np.flatnonzero(y == c), s, replace=False) for c, s in zip(classes, sizes)])
        )
    return users


def score_users(x: np.ndarray, y: np.ndarray, users: list[np.ndarray], method: str, threshold: float) -> dict:
    aris, rep_is_biggest, rep_purity = [], [], []
    for ids in users:
        xu, yu = x[ids], y[ids]
        if method == "average":
            labels = cluster_labels(_unit_rows(xu), threshold)
        else:
            labels = fcluster(linkage(xu, method="ward"), t=threshold, criterion="distance") - 1
        truth_k = len(set(yu.tolist()))
        aris.append(adjusted_rand_index(yu, labels) if truth_k > 1 else float(len(set(labels.tolist())) == 1))
        rep = _profile_from_labels(_unit_rows(xu), np.ones(len(xu)), labels).representative
        values, counts = np.unique(yu[rep.members], return_counts=True)
        rep_is_biggest.append(values[counts.argmax()] == np.bincount(yu).argmax())
        rep_purity.append(counts.max() / rep.size)
    return {
        "ari": float(np.mean(aris)),
        "representative_is_biggest_category": float(np.mean(rep_is_biggest)),
        "representative_purity": float(np.mean(rep_purity)),
    }


def run_calibration(per_class: int, users_per_regime: int) -> dict:
    start = time.perf_counter()
    x, y = fashion_mnist_features(per_class, seed=0)
    print(f"embedded {len(x)} Fashion-MNIST images in {time.perf_counter() - start:.1f} s")
    rng = np.random.default_rng(1)
    grids = {"average": [0.40, 0.425, 0.45, 0.475, 0.50, 0.525, 0.55], "ward": [1.0, 1.2, 1.4, 1.6, 2.0, 2.5, 3.0]}
    regimes = {"3-11 per style": (3, 12), "2-39 per style": (2, 40), "20-59 per style": (20, 60)}
    rows = []
    for regime, (lo, hi) in regimes.items():
        users = simulated_users(y, lo, hi, users_per_regime, rng)
        for method, thresholds in grids.items():
            for t in thresholds:
                scores = score_users(x, y, users, method, t)
                rows.append({"regime": regime, "method": method, "threshold": t, **scores})
                print(
                    f"{regime:16s} {method:7s} t={t:<6} ARI {scores['ari']:.3f}  "
                    f"rep=biggest {scores['representative_is_biggest_category']:.2f}  "
                    f"rep purity {scores['representative_purity']:.2f}"
                )
    return {
        "calibration": "Fashion-MNIST test images, efficientnet-lite0 (1280-d) features, simulated users",
        "images": len(x),
        "users_per_regime": users_per_regime,
        "default_distance_threshold": DEFAULT_DISTANCE_THRESHOLD,
        "rows": rows,
        "environment": environment(),
    }


def write_json(path: Path, payload: dict) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000], help="photos per history")
    parser.add_argument("--dims", type=int, nargs="+", default=[1280, 2048], help="embedding dimensions")
    parser.add_argument("--repeats", type=int, default=21, help="timed runs per case (median reported)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_DISTANCE_THRESHOLD)
    parser.add_argument("--calibrate", action="store_true", help="threshold scan on real Fashion-MNIST features")
    parser.add_argument("--per-class", type=int, default=60, help="calibration: images per category")
    parser.add_argument("--users", type=int, default=200, help="calibration: simulated users per regime")
    parser.add_argument("--out", type=Path, help="JSON file (default bench/results/styles[_calibration].json)")
    args = parser.parse_args(argv)
    if args.calibrate:
        out = args.out or RESULTS / "styles_calibration.json"
        write_json(out, run_calibration(args.per_class, args.users))
    else:
        out = args.out or RESULTS / "styles.json"
        write_json(out, run_timing(args.sizes, args.dims, args.repeats, args.threshold))


if __name__ == "__main__":
    main()
