"""The product as shipped against the usual recommender as its users run it (issue 19):
the headline figures of docs/benchmarks.md and the README.

    .venv/bin/python -m bench.bench_shipped [--quick]      # or: python -m bench shipped

Every side runs in its own process, one process at a time (``bench/standalone.py``):

- **ingest** (600×800 product JPEGs, q90, made from Fashion-MNIST):
  - baseline: ResNet-50 fp32 one image at a time, main thread, torch defaults;
  - obvious fast path: the same ResNet-50 with JPEG draft, channels-last, bf16 autocast,
    batches of 32;
  - product: ``fashionbot ingest feed FEED.csv`` with default settings on a fresh data
    directory, timed from outside for a 64- and a 320-picture feed (rounds alternate); the
    **marginal** rate between the two takes start-up (model load, batch measurement) out;
  - product with ``FASHIONBOT_COMPILE=true`` as an extra row.
- **latency** (one photo → 10 items, p50, at catalogue sizes up to 44,000): the baseline
  (refits its kNN per query), the fast path (exact numpy search), and the product through
  ``FashionService.recommend`` over a real catalogue (garments found and searched, as the
  front-ends call it; the whole-photo path as an extra row). The query photos are scenes
  and outfits from ``engine/training/garment_scenes.py``.
- **concurrency**: 50 users at once against the same 50 one by one, product as shipped.

Saved to ``bench/results/shipped.json``; the plot of latency against catalogue size to
``docs/img/latency-vs-catalogue.png``. The machine's load average is noted before and
after every process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import machine, save

ROOT = Path(__file__).resolve().parent.parent
PLOT = ROOT / "docs" / "img" / "latency-vs-catalogue.png"
GOALS = {"ingest_vs_baseline": 6.0, "ingest_vs_fast": 1.5, "latency_vs_baseline": 1 / 8, "users_at_once": 2.5}
SIZES = {
    True: dict(feed=(32, 320), rounds=1, baseline_n=48, fast_n=128, cat=[1000, 5000], queries=16, users=20),
    False: dict(
        feed=(64, 1280), rounds=2, baseline_n=96, fast_n=320, cat=[1000, 11000, 22000, 44000], queries=40, users=50
    ),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- data -------------------------------------------------------------------------------------
def write_data(folder: Path, products: int, queries: int) -> None:
    """p*.jpg: 600×800 product pictures; q*.jpg: chat photos (scenes and outfits);
    feed{N}.csv: Merchant feeds over the first N pictures."""
    from bench.bench_perf import product_jpegs
    from bench.bench_served_garments import photos

    for i, data in enumerate(product_jpegs(products)):
        (folder / f"p{i:04d}.jpg").write_bytes(data)
    for i, data in enumerate(photos(queries)):
        (folder / f"q{i:04d}.jpg").write_bytes(data)


def write_feed(folder: Path, n: int) -> Path:
    feed = folder / f"feed{n}.csv"
    lines = ["id,title,link,image_link,price,brand,color,gender,product_type"]
    lines += [
        f"f{i},Item {i},https://shop.example/{i},p{i:04d}.jpg,49.90 EUR,Acme,red,female,Apparel > Dresses"
        for i in range(n)
    ]
    feed.write_text("\n".join(lines) + "\n")
    return feed


# ---- processes ------------------------------------------------------------------------------
def _env(data_dir: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASHIONBOT_")}  # defaults, as shipped
    if data_dir is not None:
        env["FASHIONBOT_DATA_DIR"] = str(data_dir)
    return env | extra


def standalone(what: str, folder: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one ``bench.standalone`` measurement in its own process; its JSON result."""
    load = os.getloadavg()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.standalone", what, str(folder), *args],
        cwd=ROOT,
        env=env or _env(),
        capture_output=True,
        text=True,
        check=False,
    )
    sys.stderr.write(proc.stderr[-2000:] if proc.returncode else "")
    if proc.returncode:
        raise RuntimeError(f"bench.standalone {what} failed ({proc.returncode})")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["load_average_parent"] = [load, os.getloadavg()]
    return out


KEPT = ("fashionbot.sqlite3", "index.hnsw")  # what a fresh catalogue must not inherit


def fashionbot_ingest(feed: Path, work: Path, warm: Path | None = None, **extra: str) -> float:
    """Wall time of ``fashionbot ingest feed`` on a fresh catalogue. With ``warm``, the data
    directory starts with what an earlier run left there besides the catalogue (the start-up
    measurements: batch rates, the runtime's choice and export), as on a machine that has run
    it before: start-up then costs the same every run, and the marginal rate is not noise."""
    data = Path(tempfile.mkdtemp(prefix="data-", dir=work))
    if warm is not None:
        for path in warm.iterdir():
            if not path.name.startswith(KEPT):
                (shutil.copytree if path.is_dir() else shutil.copy2)(path, data / path.name)
    start = time.perf_counter()
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "fashionbot"), "ingest", "feed", str(feed)],
        cwd=work,
        env=_env(data, **extra),
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - start
    if proc.returncode:
        sys.stderr.write(proc.stderr[-2000:])
        raise RuntimeError(f"fashionbot ingest feed {feed.name} failed ({proc.returncode})")
    return took


def product_ingest(folder: Path, work: Path, sizes: tuple[int, int], rounds: int, **extra: str) -> dict[str, Any]:
    """The marginal rate between a small and a large feed, rounds alternating."""
    small, large = (write_feed(folder, n) for n in sizes)
    warm = Path(tempfile.mkdtemp(prefix="warm-", dir=work))
    subprocess.run(  # a first run on this machine: start-up measures what it remembers
        [str(Path(sys.executable).parent / "fashionbot"), "ingest", "feed", str(small)],
        cwd=work,
        env=_env(warm, **extra),
        capture_output=True,
        check=True,
    )
    times: dict[int, list[float]] = {sizes[0]: [], sizes[1]: []}
    for _ in range(rounds):
        for n, feed in zip(sizes, (small, large)):
            times[n].append(fashionbot_ingest(feed, work, warm, **extra))
    t_small, t_large = statistics.median(times[sizes[0]]), statistics.median(times[sizes[1]])
    rate = (sizes[1] - sizes[0]) / (t_large - t_small)
    return {
        "feeds": list(sizes),
        "wall_s": {str(k): v for k, v in times.items()},
        "marginal_images_per_s": rate,
        "whole_run_images_per_s": sizes[1] / t_large,
        "settings": extra or "defaults",
        "start_up": "as on a machine that has run it once (the data directory's start-up measurements kept)",
    }


# ---- the run --------------------------------------------------------------------------------------
def run(quick: bool) -> dict[str, Any]:
    cfg = SIZES[quick]
    started = machine()
    with tempfile.TemporaryDirectory(prefix="bench-shipped-") as tmp:
        work = Path(tmp)
        folder = work / "pictures"
        folder.mkdir()
        log("writing pictures and query photos")
        write_data(folder, cfg["feed"][1], cfg["queries"])

        log("ingest: baseline (own process)")
        baseline = standalone("baseline-ingest", folder, "--n", str(cfg["baseline_n"]))
        log(f"  {baseline['images_per_s']:.1f} img/s")
        log("ingest: the obvious fast path (own process)")
        fast = standalone("fast-ingest", folder, "--n", str(cfg["fast_n"]))
        log(f"  {fast['images_per_s']:.1f} img/s")
        log("ingest: fashionbot ingest feed, as shipped")
        product = product_ingest(folder, work, cfg["feed"], cfg["rounds"])
        log(f"  {product['marginal_images_per_s']:.1f} img/s (marginal)")
        log("ingest: fashionbot ingest feed, FASHIONBOT_COMPILE=true")
        compiled = product_ingest(folder, work, cfg["feed"], cfg["rounds"], FASHIONBOT_COMPILE="true")
        log(f"  {compiled['marginal_images_per_s']:.1f} img/s (marginal)")

        sizes = ",".join(str(n) for n in cfg["cat"])
        log("latency: baseline (own process)")
        base_lat = standalone("baseline-latency", folder, "--sizes", sizes)
        log("latency: the obvious fast path (own process)")
        fast_lat = standalone("fast-latency", folder, "--sizes", sizes)
        log("latency and 50 users: the product as shipped (own process, real catalogue)")
        prod_lat = standalone(
            "product-latency",
            folder,
            "--sizes",
            sizes,
            "--users",
            str(cfg["users"]),
            env=_env(work / "catalogue"),
        )
    payload = summarise(cfg, baseline, fast, product, compiled, base_lat, fast_lat, prod_lat)
    payload["machine"] = started
    payload["load_average_end"] = os.getloadavg()
    path = save("shipped_quick" if quick else "shipped", payload)
    plot(payload, PLOT if not quick else PLOT.with_name("latency-vs-catalogue-quick.png"))
    print_table(payload)
    log(f"saved {path}")
    return payload


def summarise(
    cfg: dict[str, Any],
    baseline: dict[str, Any],
    fast: dict[str, Any],
    product: dict[str, Any],
    compiled: dict[str, Any],
    base_lat: dict[str, Any],
    fast_lat: dict[str, Any],
    prod_lat: dict[str, Any],
) -> dict[str, Any]:
    rate = product["marginal_images_per_s"]
    largest = -1
    base_p50 = base_lat["rows"][largest]["p50_ms"]
    prod_row = prod_lat["rows"][largest]
    headline = {
        "ingest_vs_baseline": rate / baseline["images_per_s"],
        "ingest_vs_fast": rate / fast["images_per_s"],
        "ingest_compiled_vs_baseline": compiled["marginal_images_per_s"] / baseline["images_per_s"],
        "latency_vs_baseline": prod_row["garments"]["p50_ms"] / base_p50,
        "latency_whole_photo_vs_baseline": prod_row["whole_photo"]["p50_ms"] / base_p50,
        "latency_vs_fast": prod_row["garments"]["p50_ms"] / fast_lat["rows"][largest]["p50_ms"],
        "users_at_once": prod_lat["concurrency"]["ratio"],
        "latency_catalogue": prod_row["catalogue"],
    }
    met = {
        "ingest_vs_baseline": headline["ingest_vs_baseline"] >= GOALS["ingest_vs_baseline"],
        "ingest_vs_fast": headline["ingest_vs_fast"] >= GOALS["ingest_vs_fast"],
        "latency_vs_baseline": headline["latency_vs_baseline"] <= GOALS["latency_vs_baseline"],
        "users_at_once": headline["users_at_once"] >= GOALS["users_at_once"],
    }
    return {
        "benchmark": "the product as shipped against the usual recommender as its users run it",
        "sizes": cfg,
        "headline": headline,
        "goals": GOALS,
        "met": met,
        "ingest": {"baseline": baseline, "fast_path": fast, "product": product, "product_compiled": compiled},
        "latency": {"baseline": base_lat, "fast_path": fast_lat, "product": prod_lat},
    }


def print_table(p: dict[str, Any]) -> None:
    h, ing = p["headline"], p["ingest"]
    print(
        f"\ningest img/s: baseline {ing['baseline']['images_per_s']:.1f}, fast path {ing['fast_path']['images_per_s']:.1f}, "
        f"product {ing['product']['marginal_images_per_s']:.1f} ({h['ingest_vs_baseline']:.2f}× baseline, "
        f"{h['ingest_vs_fast']:.2f}× fast path), compiled {ing['product_compiled']['marginal_images_per_s']:.1f}"
    )
    lat = p["latency"]
    for b, f, o in zip(lat["baseline"]["rows"], lat["fast_path"]["rows"], lat["product"]["rows"]):
        print(
            f"latency @{b['catalogue']}: baseline {b['p50_ms']} ms, fast {f['p50_ms']} ms, product garments "
            f"{o['garments']['p50_ms']} ms / whole photo {o['whole_photo']['p50_ms']} ms"
        )
    print(
        f"latency ratio {h['latency_vs_baseline']:.3f} (whole photo {h['latency_whole_photo_vs_baseline']:.3f}); "
        f"users at once {h['users_at_once']:.2f}×; met: {p['met']}"
    )


def plot(p: dict[str, Any], path: Path) -> None:
    """p50 latency against catalogue size, log-log, one line a side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat = p["latency"]
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    series = [
        ("baseline (ResNet-50, kNN refit per query)", lat["baseline"]["rows"], lambda r: r["p50_ms"], "o-"),
        ("obvious fast path (ResNet-50 bf16, numpy search)", lat["fast_path"]["rows"], lambda r: r["p50_ms"], "s-"),
        ("fashionbot as shipped (garments)", lat["product"]["rows"], lambda r: r["garments"]["p50_ms"], "D-"),
        ("fashionbot, whole photo", lat["product"]["rows"], lambda r: r["whole_photo"]["p50_ms"], "^--"),
    ]
    for label, rows, value, style in series:
        ax.plot([r["catalogue"] for r in rows], [value(r) for r in rows], style, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("catalogue items")
    ax.set_ylabel("one photo → 10 items, p50 (ms)")
    load = p["machine"]["load_average"][0]
    ax.set_title(f"Latency against catalogue size ({p['machine']['cores']} cores, load {load:.1f})", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def run_ingest(rounds: int) -> dict[str, Any]:
    """The ingest ratio alone, ``rounds`` times (baseline, then the product, each round): a
    repeat of the headline's first row when one run lands near its goal. Saved to
    ``bench/results/shipped_ingest.json``."""
    cfg = SIZES[False]
    started = machine()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-shipped-ingest-") as tmp:
        work = Path(tmp)
        folder = work / "pictures"
        folder.mkdir()
        write_data(folder, cfg["feed"][1], 0)
        for r in range(rounds):
            baseline = standalone("baseline-ingest", folder, "--n", str(cfg["baseline_n"]))
            product = product_ingest(folder, work, cfg["feed"], cfg["rounds"])
            ratio = product["marginal_images_per_s"] / baseline["images_per_s"]
            log(
                f"round {r + 1}: baseline {baseline['images_per_s']:.1f} img/s, product "
                f"{product['marginal_images_per_s']:.1f} img/s (marginal) = {ratio:.2f}×"
            )
            rows.append({"baseline": baseline, "product": product, "ratio": ratio, "load_average": os.getloadavg()})
    payload = {
        "benchmark": "ingest: fashionbot ingest feed as shipped against the baseline as its users run it",
        "goal": GOALS["ingest_vs_baseline"],
        "ratios": [row["ratio"] for row in rows],
        "rounds": rows,
        "machine": started,
    }
    log(f"saved {save('shipped_ingest', payload)}")
    return payload


def run_cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a few minutes)")
    parser.add_argument(
        "--ingest-only", type=int, metavar="ROUNDS", help="only the ingest ratio, this many rounds (≈ 3 min each)"
    )
    args = parser.parse_args(argv)
    if args.ingest_only:
        run_ingest(args.ingest_only)
    else:
        run(args.quick)


if __name__ == "__main__":
    run_cli()
