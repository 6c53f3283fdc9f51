"""Garments in photos, measured: the scene sets of ``fashionbot eval`` and of
``bench/bench_garments.py`` (issue 15, "Measure it").

Four seeded sets from :mod:`engine.training.garment_scenes` (Fashion-MNIST *test* split on
held-out photos): one garment in a scene at 30–50 % of its height, outfits (a top above,
shoes or a bag below), pictures without garments, and product shots (the control). Each
photo goes through the served garment finder; each garment the user could tap is cropped,
embedded and searched in a catalogue of the first :data:`CATALOGUE` Fashion-MNIST *train*
pictures (which the garment head never saw in a training scene), restricted to the groups
the served search uses (:func:`served_groups`).

precision@10 = share of the 10 results with the query garment's Fashion-MNIST class. The
control is the clean product shots' whole-photo precision@10 in the same run, so the goal
"a garment in a scene is found as well as a product shot" is a ratio within one run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image

from engine.training import garment_scenes as gs
from engine.vision import crop_adapter
from engine.vision import garment_boxes as gb
from engine.vision import garment_vocabulary as gv
from engine.vision import garments as gm
from engine.vision.crop_shelf import TRUST_FINDER_GROUP, CropShelf, shelf_for

K = 10
CATALOGUE = 2000  # = engine.training.garment_head.CATALOGUE_HOLDOUT: never pasted into a training scene
GOALS = {"scene_vs_control": 0.90, "outfits_both": 0.70, "no_garment_refused": 0.90, "product_refused": 0.0}

Embed = Callable[[list[Image.Image]], np.ndarray]  # pictures -> unit vectors (n, d)
Adapt = Callable[[np.ndarray], np.ndarray]  # crop vectors -> moved unit vectors (the crop adapter)
Progress = Callable[[str, int | None], Callable[[int], None]]


@dataclass(frozen=True)
class SceneCatalogue:
    """The items a scene's garments are searched in: unit vectors, class and group of each."""

    vectors: np.ndarray
    labels: np.ndarray
    groups: np.ndarray

    @classmethod
    def fashion_mnist(cls, embed: Embed, size: int = CATALOGUE) -> SceneCatalogue:
        x_train, y_train = gs._fm("train")
        vectors = embed([gs.fm_picture(x_train[i]) for i in range(size)])
        labels = y_train[:size]
        return cls(vectors, labels, np.array([gv.FM_GROUPS[int(c)] for c in labels]))


def scene_sets(n: int = 200) -> dict[str, list[gs.Sample]]:
    """The four sets, ``n`` single-garment scenes and proportionally many of the others
    (200 → 150 outfits, every no-garment picture, 240 product shots: the bench's sizes)."""
    return {
        "garment_in_scene": gs.garment_scene_set(n),
        "outfits": gs.outfit_set(max(1, n * 3 // 4)),
        "no_garment": gs.no_garment_set(),
        "product_shots": gs.product_shot_set(max(1, n * 6 // 5)),
    }


def search(vectors: np.ndarray, catalogue: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """Exact top-:data:`K` by cosine (rows of ``vectors`` against unit ``catalogue`` rows)."""
    sims = vectors @ catalogue.T
    if allowed is not None:
        sims = np.where(allowed, sims, -np.inf)
    return np.argsort(-sims, axis=1)[:, :K]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    return gb.Box(*a).iou(gb.Box(*b))


def served_groups(
    group: str,
    vector: np.ndarray,
    catalogue: SceneCatalogue,
    confidence: float = 0.0,
    shelf: CropShelf | None = None,
    label: str = "",
) -> tuple[str, ...]:
    """The shelves the served search uses for a garment of ``group`` (named ``label``) whose
    (moved) crop is ``vector`` (engine/service.py, ``Catalogue.nearest``), the group it is
    shown as first. With the crop ``shelf``: the shelves :func:`shelf_for` chooses when it
    chooses. Otherwise the finder's (and its related one), and, when the finder is not
    confident, the one most of the crop's nearest items come from."""
    choice = shelf_for(group, label, confidence, shelf.verdicts(vector[None])[0]) if shelf is not None else None
    if choice is not None and choice.shelves is not None:
        return choice.shelves
    if confidence >= TRUST_FINDER_GROUP:
        return gv.search_groups(group)
    nearest = np.argsort(-(catalogue.vectors @ vector))[: gv.GROUP_VOTERS]
    return gv.voted_search_groups(group, [str(g) for g in catalogue.groups[nearest]])


def set_figures(
    samples: Sequence[gs.Sample],
    scans: Sequence[gm.GarmentScan],
    crops_vec: Sequence[np.ndarray],
    whole_vec: np.ndarray,
    catalogue: SceneCatalogue,
    shelf: CropShelf | None = None,
) -> dict:
    """Detection, retrieval and refusal figures of one set.

    ``crops_vec[i]``: vectors of the crops of ``scans[i].garments``, in order. Each true
    garment is judged by what the user gets when tapping the found garment that overlaps it
    most (nothing when none overlaps it by more than 0.1). ``group_accuracy``: the group
    the user is shown (the crop ``shelf``'s when it overrules the finder);
    ``finder_group_accuracy``: the finder's own."""
    cat_vec, cat_labels, cat_groups = catalogue.vectors, catalogue.labels, catalogue.groups
    truths = hits = group_ok = finder_ok = 0
    p_garment, p_strict, p_whole, both, outfit_n = [], [], [], 0, 0
    refused = sum(1 for s in scans if not s.garments)
    for sample, scan, cv, wv in zip(samples, scans, crops_vec, whole_vec):
        found_ok = []
        for t in sample.garments:
            truths += 1
            ious = [iou(t.box, g.box.as_tuple()) for g in scan.garments]
            j = int(np.argmax(ious)) if ious else -1
            best = ious[j] if ious else 0.0
            hit = best >= 0.5
            hits += hit
            if ious and best > 0.1:
                g = scan.garments[j]
                shown = served_groups(g.group, cv[j], catalogue, g.confidence, shelf, g.label)
                group_ok += hit and shown[0] == t.group
                finder_ok += hit and g.group == t.group
                strict = cat_groups == shown[0]
                related = np.isin(cat_groups, shown)
                res = search(cv[j : j + 1], cat_vec, strict[None] if strict.sum() >= K else None)[0]
                prec_strict = float((cat_labels[res] == t.label).mean())
                res = search(cv[j : j + 1], cat_vec, related[None] if related.sum() >= K else None)[0]
                prec = float((cat_labels[res] == t.label).mean())
            else:
                prec = prec_strict = 0.0
            p_garment.append(prec)
            p_strict.append(prec_strict)
            p_whole.append(float((cat_labels[search(wv[None], cat_vec)[0]] == t.label).mean()))
            found_ok.append(hit and prec >= 0.3)
        if sample.kind == "outfit":
            outfit_n += 1
            both += len(found_ok) == 2 and all(found_ok)
    n = len(samples)
    out: dict = {"photos": n, "refused": round(refused / n, 4) if n else None}
    if truths:
        out.update(
            {
                "garments": truths,
                "recall_iou50": round(hits / truths, 4),
                "group_accuracy": round(group_ok / max(1, hits), 4),
                "finder_group_accuracy": round(finder_ok / max(1, hits), 4),
                "p10_per_garment": round(float(np.mean(p_garment)), 4),
                "p10_per_garment_strict_group": round(float(np.mean(p_strict)), 4),
                "p10_whole_photo": round(float(np.mean(p_whole)), 4),
            }
        )
    if outfit_n:
        out["outfits_both_found"] = round(both / outfit_n, 4)
    return out


def crop_vectors(
    embed: Embed,
    samples: Sequence[gs.Sample],
    scans: Sequence[gm.GarmentScan],
    dim: int,
    adapt: Adapt | None = None,
) -> list[np.ndarray]:
    """The vectors of each photo's garment crops as served: the box with a margin, moved by
    the crop adapter (``adapt``) unless the photo is a product shot."""
    crops = [[gb.crop(s.image, g.box, gb.GARMENT_MARGIN) for g in scan.garments] for s, scan in zip(samples, scans)]
    flat = [c for cs in crops for c in cs]
    vec = embed(flat) if flat else np.zeros((0, dim), np.float32)
    per, k = [], 0
    for cs, scan in zip(crops, scans):
        mine = vec[k : k + len(cs)]
        per.append(adapt(mine) if adapt is not None and len(cs) and not scan.product_shot else mine)
        k += len(cs)
    return per


def evaluate_scenes(
    finder: gm.GarmentFinder,
    embed: Embed,
    sets: dict[str, list[gs.Sample]],
    catalogue: SceneCatalogue,
    progress: Progress | None = None,
    latency_photos: int = 30,
    adapt: Adapt | None = None,
    shelf: CropShelf | None = None,
) -> dict:
    """Every set through ``finder`` (served thresholds) and ``embed``; the goals of issue 15
    as ratios within this run; the latency of one photo (scan, crops, searches) against the
    whole photo's embedding and search, alternating photo by photo in this process."""
    dim = int(catalogue.vectors.shape[1])
    figures: dict = {}
    for name, samples in sets.items():
        advance = progress(f"scenes: {name}", len(samples)) if progress else (lambda n: None)
        scans = []
        for s in samples:
            scans.append(finder.scan(s.image))
            advance(1)
        whole = embed([s.image for s in samples])
        figures[name] = set_figures(
            samples, scans, crop_vectors(embed, samples, scans, dim, adapt), whole, catalogue, shelf
        )
        if name == "product_shots":
            clean = [i for i, s in enumerate(samples) if s.source == "fashion-mnist"]
            sub = [samples[i] for i in clean]
            sub_scans = [scans[i] for i in clean]
            figures["product_shots_clean"] = set_figures(
                sub, sub_scans, crop_vectors(embed, sub, sub_scans, dim, adapt), whole[clean], catalogue, shelf
            )
    photos = [s.image for s in (sets["garment_in_scene"] + sets["outfits"])[:latency_photos]]
    report = {
        "finder": finder.mode,
        "catalogue": len(catalogue.labels),
        "backgrounds_held_out": gs.eval_photos()[1],
        "sets": figures,
        "latency": latency(finder, embed, catalogue, photos, adapt, shelf),
    }
    report["goals"] = goals(figures)
    return report


def goals(figures: dict) -> dict:
    """Issue 15's quality goals from one run's set figures."""
    control = figures["product_shots_clean"]["p10_whole_photo"]
    scene = figures["garment_in_scene"]["p10_per_garment"]
    out = {
        "scene_vs_control": {
            "value": round(scene / control, 3) if control else 0.0,
            "scene_p10": scene,
            "control_p10": control,
        },
        "outfits_both": {"value": figures["outfits"]["outfits_both_found"]},
        "no_garment_refused": {"value": figures["no_garment"]["refused"]},
        "product_refused": {"value": figures["product_shots"]["refused"]},
    }
    for k, v in out.items():
        v["goal"] = GOALS[k]
        v["met"] = v["value"] <= GOALS[k] if k == "product_refused" else v["value"] >= GOALS[k]
    return out


def latency(
    finder: gm.GarmentFinder,
    embed: Embed,
    catalogue: SceneCatalogue,
    photos: list[Image.Image],
    adapt: Adapt | None = None,
    shelf: CropShelf | None = None,
) -> dict:
    """p50 of one photo → garments → 10 items each, and of the whole photo → 10 items, in
    this process (no service, no database: the model and search work only)."""
    whole, garment = [], []
    for img in photos:
        t0 = time.perf_counter()
        search(embed([img]), catalogue.vectors)
        whole.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        scan = finder.scan(img)
        if scan.garments:
            vecs = embed([gb.crop(img, g.box, gb.GARMENT_MARGIN) for g in scan.garments])
            if adapt is not None and not scan.product_shot:
                vecs = adapt(vecs)
            for g, v in zip(scan.garments, vecs):
                allowed = np.isin(catalogue.groups, served_groups(g.group, v, catalogue, g.confidence, shelf, g.label))
                search(v[None], catalogue.vectors, allowed[None])
        garment.append(time.perf_counter() - t0)
    if not photos:
        return {"photos": 0}
    p50w, p50g = statistics.median(whole), statistics.median(garment)
    return {
        "photos": len(photos),
        "whole_photo_p50_ms": round(p50w * 1000, 1),
        "garments_p50_ms": round(p50g * 1000, 1),
        "ratio_p50": round(p50g / p50w, 3),
    }


def evaluate_backbone_on_scenes(
    backbone,
    finder: gm.GarmentFinder,
    sets: dict[str, list[gs.Sample]],
    progress: Progress | None = None,
    batch_size: int | None = None,
) -> dict:
    """:func:`evaluate_scenes` with ``backbone`` embedding the catalogue, the crops and the
    whole photos through the production embedder (folded batch norms, the precision it
    would serve with), as ``fashionbot eval`` judges the clean protocol."""
    started = time.monotonic()
    adapter = crop_adapter.for_model(backbone.model_key, backbone.dim)
    with production_embedding(backbone, batch_size=batch_size) as embed:
        advance = progress("scenes: catalogue", CATALOGUE) if progress else (lambda n: None)
        catalogue = SceneCatalogue.fashion_mnist(embed)
        advance(CATALOGUE)
        report = evaluate_scenes(
            finder,
            embed,
            sets,
            catalogue,
            progress,
            adapt=adapter.apply if adapter else None,
            shelf=adapter.shelf if adapter else None,
        )
    report["crop_adapter"] = adapter.fingerprint if adapter else None
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


@contextmanager
def production_embedding(backbone, batch_size: int | None = None, precision: str = "auto") -> Iterator[Embed]:
    """An :data:`Embed` through the production embedder (folded batch norms, the precision
    it would serve with, the serving letterbox), closed on exit."""
    from engine.vision.embedder import Embedder, prepare

    embedder = Embedder(backbone, batch_size=batch_size, precision=precision, max_wait_ms=0)
    size = embedder.input_size

    def embed(pictures: list[Image.Image], chunk: int = 128) -> np.ndarray:
        out = [
            embedder.embed_pixels(np.stack([prepare(p, size) for p in pictures[s : s + chunk]]))
            for s in range(0, len(pictures), chunk)
        ]
        return np.concatenate(out) if out else np.zeros((0, backbone.dim), np.float32)

    try:
        yield embed
    finally:
        embedder.close()
