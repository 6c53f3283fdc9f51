"""Benchmark of the garment finder (engine/vision/garments.py), issue 15.

    .venv/bin/python bench/bench_garments.py                 # all sets, all variants
    .venv/bin/python bench/bench_garments.py --quick         # smaller sets
    .venv/bin/python bench/bench_garments.py --calibrate     # also re-derive the thresholds

One run, one machine, one torch thread. Sets (engine/training/garment_scenes.py, all from
the Fashion-MNIST *test* split): (1) one garment in a real-looking photo at 30–50 % of its
height, (2) outfits (a top above, shoes or a bag below), (3) pictures without garments,
(4) product shots (the clean catalogue pictures = the control, plus studio shots).

Catalogue: the first 2,000 Fashion-MNIST *train* pictures (never pasted into a training
scene) embedded with Lite0 (ImageNet) through ``prepare`` at 224 px. precision@10 = share
of the 10 results with the query garment's Fashion-MNIST class; per-garment search is
restricted to the shelf the served search uses (``se.served_groups``: the finder's group when
it is confident, else the crop shelf classifier's, engine/vision/crop_shelf.py; the row
``head+cam without shelf`` keeps the finder's groups, top <-> outerwear and the shelf most of
the crop's 20 nearest items come from); whole-photo search is not restricted.

Variants of the finder, read from one forward pass per picture: ``head+cam`` (served),
``head`` (the trained head alone), ``cam`` (Lite0's own ImageNet classifier only: what runs
when the head file is absent).

Calibration (``--calibrate``): on *training-distribution* scenes (train split, training
backgrounds, a seed the head never saw), the clothing-score threshold that maximises
(no-garment refused) − (garment scene refused), i.e. Youden's J; the eval sets are not used.

Writes bench/results/garments.json and docs/plots/garments_examples.png.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import machine, save  # noqa: E402
from engine.training import garment_scenes as gs  # noqa: E402
from engine.training import scene_evaluation as se  # noqa: E402
from engine.vision import crop_adapter  # noqa: E402
from engine.vision import garment_boxes as gb  # noqa: E402
from engine.vision import garments as gm  # noqa: E402
from engine.vision import product_shot as ps  # noqa: E402
from engine.vision.backbones import load_efficientnet_lite  # noqa: E402
from engine.vision.crop_shelf import CropShelf  # noqa: E402

K = se.K
CATALOGUE = se.CATALOGUE
EMBED_SIDE = 224
ADAPTER: crop_adapter.CropAdapter | None = None  # the served crop adapter, as main() finds it
SHELF: CropShelf | None = None  # its shelf classifier (engine/vision/crop_shelf.py), unless --no-shelf
GOALS = {
    "scene_vs_control": 0.90,
    "outfits_both": 0.70,
    "no_garment_refused": 0.90,
    "product_refused": 0.0,
    "latency_ratio": 2.0,
}


def _prepare():
    return gm.find_attr("prepare", ("engine.vision.embedder", "engine.vision.images", "engine.vision.encoder"))


class Embedder:
    """Lite0 pooled features of pictures letterboxed on white at 224 px, unit length."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.prepare = _prepare()

    @torch.inference_mode()
    def __call__(self, images: list[Image.Image], batch: int = 64, side: int = EMBED_SIDE) -> np.ndarray:
        out = []
        for s in range(0, len(images), batch):
            px = np.stack([self.prepare(im, side) for im in images[s : s + batch]])
            x = torch.from_numpy(px).permute(0, 3, 1, 2).float() / 127.5 - 1.0
            v = self.model.forward_features(x).numpy()
            out.append(v / np.linalg.norm(v, axis=1, keepdims=True))
        return np.concatenate(out) if out else np.zeros((0, 1280), np.float32)


# ---- one variant over one set (figures: engine/training/scene_evaluation.py) ----------------------
def run_variant(
    finder: gm.GarmentFinder,
    samples,
    checks,
    maps,
    embed: Embedder,
    whole_vec,
    catalogue,
    cut: bool = False,
    crop_side: int = EMBED_SIDE,
    shelf: CropShelf | None | bool = True,
) -> tuple:
    """One finder variant's figures on one set (``shelf``: True for the served one, SHELF)."""
    shelf = SHELF if shelf is True else (shelf or None)
    scans = [finder.refine(s.image, finder.decide(c, m)) for s, c, m in zip(samples, checks, maps)]
    crops = [
        [
            gb.cutout(s.image, g.box, scan.heat)
            if cut and not scan.product_shot
            else gb.crop(s.image, g.box, gb.GARMENT_MARGIN)
            for g in scan.garments
        ]
        for s, scan in zip(samples, scans)
    ]
    flat = [c for cs in crops for c in cs]
    vec = embed(flat, side=crop_side) if flat else np.zeros((0, 1280), np.float32)
    per, k = [], 0
    for cs, scan in zip(crops, scans):
        mine = vec[k : k + len(cs)]
        per.append(ADAPTER.apply(mine) if ADAPTER is not None and len(cs) and not scan.product_shot else mine)
        k += len(cs)
    return se.set_figures(samples, scans, per, whole_vec, catalogue, shelf), scans


# ---- calibration ---------------------------------------------------------------------------------
def calibrate(finder: gm.GarmentFinder, n: int = 400, seed: int = 99) -> dict:
    """Clothing-score threshold by Youden's J on training-distribution scenes (not the eval sets)."""
    samples = [s for s in gs.training_scenes(n, seed=seed, exclude=np.arange(CATALOGUE)) if s.kind != "product"]
    loose = replace(finder.thresholds, clothing=0.0)
    f = gm.GarmentFinder(finder.model, None, side=finder.side, thresholds=loose, use_cam=finder.use_cam)
    f.head, f.head_meta = finder.head, finder.head_meta
    scores = np.array(
        [f.decide(ps.ProductCheck(False, None, ""), finder.maps(s.image)).clothing_score for s in samples]
    )
    neg = np.array([not s.garments for s in samples])
    grid = np.round(np.arange(0.05, 0.96, 0.01), 2)
    j = [((scores[neg] < t).mean() - (scores[~neg] < t).mean(), t) for t in grid]
    best_j, best_t = max(j)
    return {
        "threshold": float(best_t),
        "youden_j": round(float(best_j), 4),
        "scenes": int((~neg).sum()),
        "no_garment": int(neg.sum()),
        "refused_no_garment": round(float((scores[neg] < best_t).mean()), 4),
        "refused_garment_scenes": round(float((scores[~neg] < best_t).mean()), 4),
    }


# ---- latency ---------------------------------------------------------------------------------------
def latency(
    finder: gm.GarmentFinder,
    embed: Embedder,
    catalogue: se.SceneCatalogue,
    photos,
    repeats: int = 1,
    cut: bool = False,
    crop_side: int = EMBED_SIDE,
) -> dict:
    cat_vec, cat_groups = catalogue.vectors, catalogue.groups
    whole, garment = [], []
    for img in photos:
        for _ in range(repeats):
            t0 = time.perf_counter()
            v = embed([img])
            se.search(v, cat_vec)
            whole.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            scan = finder.scan(img)
            if scan.garments:
                pieces = [
                    gb.cutout(img, g.box, scan.heat) if cut else gb.crop(img, g.box, gb.GARMENT_MARGIN)
                    for g in scan.garments
                ]
                vecs = embed(pieces, side=crop_side)
                if ADAPTER is not None and not scan.product_shot:
                    vecs = ADAPTER.apply(vecs)
                for g, v in zip(scan.garments, vecs):
                    allowed = np.isin(cat_groups, se.served_groups(g.group, v, catalogue, g.confidence, SHELF, g.label))
                    se.search(v[None], cat_vec, allowed[None])
            garment.append(time.perf_counter() - t0)
    p50w, p50g = statistics.median(whole), statistics.median(garment)
    return {
        "photos": len(photos) * repeats,
        "whole_photo_p50_ms": round(p50w * 1000, 1),
        "scan_and_garments_p50_ms": round(p50g * 1000, 1),
        "whole_photo_p90_ms": round(float(np.percentile(whole, 90)) * 1000, 1),
        "scan_and_garments_p90_ms": round(float(np.percentile(garment, 90)) * 1000, 1),
        "ratio_p50": round(p50g / p50w, 3),
    }


def scan_only_latency(finder: gm.GarmentFinder, photos) -> float:
    ts = []
    for img in photos:
        t0 = time.perf_counter()
        finder.scan(img)
        ts.append(time.perf_counter() - t0)
    return round(statistics.median(ts) * 1000, 1)


# ---- the picture -----------------------------------------------------------------------------------
COLOURS = {
    "top": (230, 40, 40),
    "outerwear": (250, 140, 0),
    "dress": (200, 0, 200),
    "bottoms": (30, 90, 255),
    "shoes": (0, 170, 60),
    "bag": (0, 170, 190),
    "other": (120, 120, 120),
}


def draw_examples(
    finder: gm.GarmentFinder, pictures: list[tuple[str, Image.Image, tuple]], path: Path, tile: int = 300
) -> None:
    font = None
    for cand in ("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",):
        if Path(cand).is_file():
            font = ImageFont.truetype(cand, 13)
    font = font or ImageFont.load_default()
    cols = 4
    rows = -(-len(pictures) // cols)
    sheet = Image.new("RGB", (cols * tile, rows * (tile + 34)), "white")
    for n, (title, img, truths) in enumerate(pictures):
        scan = finder.scan(img)
        im = img.copy()
        if max(im.size) < 120:
            im = im.resize((im.width * 6, im.height * 6), Image.Resampling.NEAREST)
        im.thumbnail((tile - 8, tile - 8))
        d = ImageDraw.Draw(im)
        for t in truths:
            d.rectangle(
                [t[0] * im.width, t[1] * im.height, t[2] * im.width - 1, t[3] * im.height - 1],
                outline=(255, 255, 255),
                width=1,
            )
        for k, g in enumerate(scan.garments, start=1):
            b = g.box
            c = COLOURS[g.group]
            d.rectangle(
                [b.x0 * im.width, b.y0 * im.height, b.x1 * im.width - 1, b.y1 * im.height - 1], outline=c, width=3
            )
            d.rectangle([b.x0 * im.width, b.y0 * im.height, b.x0 * im.width + 16, b.y0 * im.height + 16], fill=c)
            d.text((b.x0 * im.width + 4, b.y0 * im.height + 1), str(k), fill="white", font=font)
        x, y = (n % cols) * tile, (n // cols) * (tile + 34)
        sheet.paste(im, (x + (tile - im.width) // 2, y + 2))
        words = ", ".join(f"{k}:{g.group}/{g.label} {g.confidence:.2f}" for k, g in enumerate(scan.garments, 1))
        verdict = ("product shot · " if scan.product_shot else "") + (words or "no clothing (refused)")
        dd = ImageDraw.Draw(sheet)
        dd.text((x + 4, y + tile - 2), f"{title}  score {scan.clothing_score:.2f}", fill="black", font=font)
        dd.text((x + 4, y + tile + 14), verdict[:48], fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


# ---- the run ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--calibrate", action="store_true")
    p.add_argument("--head", type=Path, default=gm.HEAD_PATH)
    p.add_argument("--side", type=int, default=gm.SCAN_SIDE)
    p.add_argument("--sides", type=str, default="", help="also measure these scan sizes (comma-separated)")
    p.add_argument("--out", type=str, default="garments")
    p.add_argument("--no-adapter", action="store_true", help="garment crops as they are, without the crop adapter")
    p.add_argument("--no-shelf", action="store_true", help="the finder's groups, without the crop shelf classifier")
    p.add_argument("--plot", type=Path, default=ROOT / "docs" / "plots" / "garments_examples.png")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    n_scene, n_outfit, n_product = (60, 50, 80) if args.quick else (200, 150, 240)

    global ADAPTER, SHELF
    lite0 = load_efficientnet_lite("efficientnet-lite0")
    model = lite0.model.eval()
    ADAPTER = None if args.no_adapter else crop_adapter.for_model(lite0.model_key, lite0.dim)
    SHELF = None if args.no_shelf or ADAPTER is None else ADAPTER.shelf
    embed = Embedder(model)
    catalogue = se.SceneCatalogue.fashion_mnist(embed, CATALOGUE)
    cat_vec, cat_groups = catalogue.vectors, catalogue.groups

    finder = gm.GarmentFinder(model, args.head, side=args.side)
    variants = {finder.mode: finder}
    if finder.head is not None:
        variants["head"] = gm.GarmentFinder(model, args.head, side=args.side, use_cam=False)
        variants["cam"] = gm.GarmentFinder(model, None, side=args.side)

    calibration = calibrate(finder) if args.calibrate else None
    sets = {
        "garment_in_scene": gs.garment_scene_set(n_scene),
        "outfits": gs.outfit_set(n_outfit),
        "no_garment": gs.no_garment_set(),
        "product_shots": gs.product_shot_set(n_product),
    }
    photos_held_out = gs.eval_photos()[1]
    report: dict = {
        "machine": machine(),
        "finder": {
            "mode": finder.mode,
            "side": args.side,
            "head_fingerprint": finder.head_fingerprint,
            "thresholds": vars(finder.thresholds),
            "close_look": {"side": gm.REFINE_SIDE, "context": gm.REFINE_CONTEXT},
            "crop_margin": gb.GARMENT_MARGIN,
            "crop_adapter": ADAPTER.fingerprint if ADAPTER is not None else None,
            "crop_shelf": SHELF is not None,
        },
        "eval_backgrounds_held_out": photos_held_out,
        "catalogue": CATALOGUE,
        "sets": {},
        "calibration": calibration,
    }
    examples: list[tuple[str, Image.Image, tuple]] = []
    for name, samples in sets.items():
        t0 = time.perf_counter()
        checks = [ps.product_check(s.image) for s in samples]
        maps = [finder.maps(s.image) for s in samples]
        whole = embed([s.image for s in samples])
        report["sets"][name] = {}
        for vname, v in variants.items():
            fig, _scans = run_variant(v, samples, checks, maps, embed, whole, catalogue)
            report["sets"][name][vname] = fig
        if finder.head is not None and name in ("garment_in_scene", "outfits"):
            if SHELF is not None:  # the same crops, searched on the finder's groups (the A/B of the shelf)
                fig, _ = run_variant(finder, samples, checks, maps, embed, whole, catalogue, shelf=False)
                report["sets"][name][finder.mode + " without shelf"] = fig
            fig, _ = run_variant(finder, samples, checks, maps, embed, whole, catalogue, cut=True)
            report["sets"][name][finder.mode + "+cutout"] = fig
            fig, _ = run_variant(finder, samples, checks, maps, embed, whole, catalogue, cut=True, crop_side=160)
            report["sets"][name][finder.mode + "+cutout@160"] = fig
        _scans = [finder.decide(c, m) for c, m in zip(checks, maps)]
        if name == "product_shots":
            clean = [i for i, s in enumerate(samples) if s.source == "fashion-mnist"]
            sub = [samples[i] for i in clean]
            fig, _ = run_variant(
                finder, sub, [checks[i] for i in clean], [maps[i] for i in clean], embed, whole[clean], catalogue
            )
            report["sets"]["product_shots_clean"] = {finder.mode: fig}
        if name == "no_garment":
            by_source: dict[str, list[int]] = {}
            for s, sc in zip(samples, _scans):
                by_source.setdefault(s.source.split(":")[0], []).append(int(not sc.garments))
            report["sets"][name]["refused_by_source"] = {k: round(float(np.mean(v)), 3) for k, v in by_source.items()}
            held = set(gs.available(gs.EVAL_PHOTOS))
            ref = [int(not sc.garments) for s, sc in zip(samples, _scans) if s.source.split(":", 1)[-1] in held]
            report["sets"][name]["refused_held_out_photos"] = round(float(np.mean(ref)), 3) if ref else None
            report["sets"][name]["not_refused"] = [s.source for s, sc in zip(samples, _scans) if sc.garments][:30]
        print(f"{name}: {len(samples)} pictures in {time.perf_counter() - t0:.0f} s", flush=True)
        examples += [(name.split("_")[0], s.image, tuple(g.box for g in s.garments)) for s in samples[:3]]

    # Latency: scenes and outfits as a chat would send them, the served variant.
    lat_photos = [s.image for s in sets["garment_in_scene"][:25] + sets["outfits"][:25]]
    report["latency"] = latency(finder, embed, catalogue, lat_photos)
    report["latency_crops_at_160"] = latency(finder, embed, catalogue, lat_photos, crop_side=160)
    report["latency"]["scan_only_p50_ms"] = scan_only_latency(finder, lat_photos)
    report["latency"]["torch_threads"] = torch.get_num_threads()
    for side in [int(s) for s in args.sides.split(",") if s]:
        f = gm.GarmentFinder(model, args.head, side=side)
        sub = sets["garment_in_scene"][:80] + sets["outfits"][:60]
        checks = [ps.product_check(s.image) for s in sub]
        maps = [f.maps(s.image) for s in sub]
        whole = embed([s.image for s in sub])
        fig, _ = run_variant(f, sub, checks, maps, embed, whole, catalogue)
        fig["scan_only_p50_ms"] = scan_only_latency(f, [s.image for s in sub[:30]])
        report.setdefault("sides", {})[side] = fig

    report["served_crops"] = finder.mode  # plain crops: the cutout rows measured no gain
    report["goals"] = goals(report, finder.mode)
    people = [(ref.split(":")[1].split(".")[0], gs.load_photo(ref), ()) for ref in gs.available(gs.PEOPLE_PHOTOS)]
    for ref in people:
        sc = finder.scan(ref[1])
        report.setdefault("people_photos", {})[ref[0]] = {
            "garments": [
                {
                    "group": g.group,
                    "label": g.label,
                    "confidence": g.confidence,
                    "box": [round(v, 3) for v in g.box.as_tuple()],
                }
                for g in sc.garments
            ],
            "clothing_score": sc.clothing_score,
        }
    draw_examples(finder, people + examples, args.plot)
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    path = save(args.out, report)
    print_table(report, finder.mode)
    print(f"wrote {path} and {args.plot}")
    return 0


def goals(r: dict, mode: str) -> dict:
    s = r["sets"]
    control = s["product_shots_clean"][mode]["p10_whole_photo"]
    served = r["served_crops"]
    scene = s["garment_in_scene"][served]["p10_per_garment"]
    out = {
        "scene_vs_control": {"value": round(scene / control, 3), "scene_p10": scene, "control_p10": control},
        "outfits_both": {"value": s["outfits"][served]["outfits_both_found"]},
        "no_garment_refused": {"value": s["no_garment"][mode]["refused"]},
        "product_refused": {"value": s["product_shots"][mode]["refused"]},
        "latency_ratio": {"value": r["latency"]["ratio_p50"]},
    }
    for k, v in out.items():
        target = GOALS[k]
        v["goal"] = target
        v["met"] = v["value"] <= target if k in ("product_refused", "latency_ratio") else v["value"] >= target
    return out


def print_table(r: dict, mode: str) -> None:
    cols = (
        "refused",
        "recall_iou50",
        "group_accuracy",
        "p10_per_garment",
        "p10_per_garment_strict_group",
        "p10_whole_photo",
        "outfits_both_found",
    )
    print(f"\n{'set':22s} {'variant':9s} " + " ".join(f"{c[:14]:>14s}" for c in cols))
    for name, by_variant in r["sets"].items():
        for vname, fig in by_variant.items():
            if not isinstance(fig, dict) or "photos" not in fig:
                continue
            print(
                f"{name:22s} {vname:9s} "
                + " ".join(f"{fig.get(c, ''):>14}" if fig.get(c) is not None else f"{'':>14}" for c in cols)
            )
    print("\nlatency:", r["latency"])
    for k, v in r["goals"].items():
        print(f"goal {k:20s} value {v['value']:<8} goal {v['goal']:<5} {'met' if v['met'] else 'NOT met'}")


if __name__ == "__main__":
    raise SystemExit(main())
