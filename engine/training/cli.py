"""``fashionbot eval``, ``fashionbot train-head`` and ``fashionbot train-crop-adapter``:
measure retrieval quality, train the fashion head that raises it, and fit the crop adapter
that brings garments cut from photos near their product shots. All are CPU-heavy batch
jobs, so they run in a worker thread, never inside a bot process."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from engine.config import Settings

ALL_BACKBONES = ("resnet50", "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")


def _bar_factory():
    from tqdm import tqdm

    bars: list = []

    def stage(desc: str, total: int | None):
        if bars:
            bars[-1].close()
        bars.append(tqdm(total=total, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True, leave=False))
        return bars[-1].update

    def close() -> None:
        for b in bars:
            b.close()

    return stage, close


def add_parsers(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="measure retrieval quality (precision@1/@10, mAP@10, robustness) on Fashion-MNIST")
    ev.add_argument(
        "--backbones",
        default="all",
        help=f"comma-separated, or 'all' ({', '.join(ALL_BACKBONES)}; ResNet-50 only where its weights are)",
    )
    ev.add_argument(
        "--head",
        type=Path,
        default=None,
        help="also evaluate this head file (default: FASHIONBOT_HEAD, or data/head.pt when it exists)",
    )
    ev.add_argument("--catalogue", type=int, default=10_000, help="catalogue size: the first N training images")
    ev.add_argument("--queries", type=int, default=2_000, help="class-balanced test-split queries (10000 = all)")
    ev.add_argument("--robustness", type=int, default=500, help="queries per robustness variant (0 = skip)")
    ev.add_argument(
        "--scenes",
        type=int,
        default=200,
        help="garments in photos: N one-garment scenes, 3N/4 outfits, the no-garment pictures and 6N/5 product "
        "shots through the garment finder (0 = skip; default 200)",
    )
    ev.add_argument("--out", type=Path, default=None, help="JSON report (default: <data dir>/eval.json)")

    th = sub.add_parser(
        "train-head", help="train the fashion head (fine-tuned last blocks + projection) on Fashion-MNIST"
    )
    th.add_argument("--out", type=Path, default=None, help="head file (default: <data dir>/head.pt)")
    th.add_argument("--dim", type=int, default=128, help="vector size, at most 256")
    th.add_argument("--epochs", type=int, default=6, help="passes over the training images (default: 6)")
    th.add_argument("--tail-blocks", type=int, default=1, help="backbone blocks to fine-tune (0 = projection only)")
    th.add_argument("--catalogue", type=int, default=10_000, help="held-out catalogue: the first N training images")
    th.add_argument(
        "--head-train", type=int, default=None, help="train on N of the remaining training images (default all)"
    )
    th.add_argument("--queries", type=int, default=None, help="class-balanced test-split queries (default all 10000)")
    th.add_argument("--seed", type=int, default=0, help="random seed: the same seed trains the same head (default: 0)")
    th.add_argument(
        "--scene-crops",
        type=float,
        default=0.25,
        help="also train on in-scene crops (a training garment pasted into a scene, cropped as the garment "
        "finder crops it), as a share of the training images (default 0.25; 0: none)",
    )

    ca = sub.add_parser(
        "train-crop-adapter",
        help="fit the crop adapter: garments cut from photos searched closer to their product shots",
    )
    ca.add_argument(
        "--out", type=Path, default=None, help="adapter file (default: the shipped engine/vision/crop_adapter.npz)"
    )
    ca.add_argument(
        "--pairs",
        type=int,
        default=6000,
        help="(scene crop, studio shot) pairs, 1,000 (or a fifth) held out (default 6000)",
    )
    ca.add_argument("--ridge", type=float, default=3.0, help="pull towards no change (default 3)")
    ca.add_argument("--seed", type=int, default=7, help="random seed: the same seed fits the same adapter (default 7)")


def _table(rows: list[tuple], headers: tuple) -> str:
    cells = [tuple(str(c) for c in headers)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths), *map(line, cells[1:])])


def _default_head(settings: Settings, explicit: Path | None) -> Path | None:
    if explicit is not None:
        return explicit
    if settings.head is not None:
        return settings.head
    guess = settings.data_dir / "head.pt"
    return guess if guess.is_file() else None


def _run_eval(args: argparse.Namespace, settings: Settings) -> int:
    from engine.training.evaluation import evaluate_model, fashion_mnist_data, fashion_mnist_splits
    from engine.vision.backbones import BackboneUnavailable, load_backbone
    from engine.vision.head import with_head

    names = ALL_BACKBONES if args.backbones == "all" else tuple(n.strip() for n in args.backbones.split(","))
    data = fashion_mnist_data()
    splits = fashion_mnist_splits(catalogue=args.catalogue, queries=args.queries, test_labels=data.test_labels)
    head_path = _default_head(settings, args.head)
    if args.scenes < 0:
        print("--scenes must be 0 (skip) or a number of scenes", file=sys.stderr)
        return 2
    stage, close = _bar_factory()
    results, skipped = [], {}
    scenes = _SceneRun(args.scenes, stage)
    try:
        for name in names:
            try:
                backbone = load_backbone(name, settings.weights, allow_download=settings.allow_weight_download)
            except BackboneUnavailable as err:
                skipped[name] = str(err)
                print(f"{name}: skipped: {err}", file=sys.stderr)
                continue
            results.append(evaluate_model(backbone, data, splits, robustness_queries=args.robustness, progress=stage))
            scenes.judge(backbone, results[-1])
            if head_path is not None:
                try:
                    headed = with_head(backbone, head_path)
                except BackboneUnavailable:
                    continue  # the head belongs to another backbone
                results.append(evaluate_model(headed, data, splits, robustness_queries=args.robustness, progress=stage))
                scenes.judge(headed, results[-1])
    finally:
        close()
    if not results:
        print("No backbone could run: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()), file=sys.stderr)
        return 1
    report = {
        "dataset": data.name,
        "protocol": f"{len(splits.queries)} test-split queries against the first {len(splits.catalogue)} training "
        "images; relevant = same category; exact cosine search",
        "scene_protocol": scenes.protocol,
        "results": results,
        "skipped": skipped,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = args.out or settings.data_dir / "eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(format_eval(report))
    print(f"\nJSON: {out}")
    return 0


class _SceneRun:
    """The scene sets and the garment finder, built once for every model judged on them."""

    def __init__(self, n: int, stage) -> None:
        self.n, self.stage = n, stage
        self.sets: dict | None = None
        self.finder: Any = None  # a GarmentFinder, loaded on first use (it loads Lite0)

    @property
    def protocol(self) -> str | None:
        if not self.n:
            return None
        from engine.training.scene_evaluation import CATALOGUE

        return (
            f"garments in photos: {self.n} one-garment scenes, {self.n * 3 // 4} outfits, the no-garment pictures "
            f"and {self.n * 6 // 5} product shots (Fashion-MNIST test split on held-out photos) through the garment "
            f"finder; each garment's crop searched in the first {CATALOGUE} training images, within its group"
        )

    def judge(self, backbone, result: dict) -> None:
        if not self.n:
            return
        from engine.training.scene_evaluation import evaluate_backbone_on_scenes, scene_sets
        from engine.vision.garments import GarmentFinder

        if self.sets is None:
            self.sets = scene_sets(self.n)
            self.finder = GarmentFinder()
        assert self.finder is not None
        result["scenes"] = evaluate_backbone_on_scenes(backbone, self.finder, self.sets, self.stage)


def format_scenes(results: list[dict]) -> list[str]:
    """The scene table: what a user gets for a garment in a photo, per model."""
    judged = [r for r in results if r.get("scenes")]
    if not judged:
        return []
    rows = []
    for r in judged:
        s, g = r["scenes"]["sets"], r["scenes"]["goals"]
        rows.append(
            (
                r["model"],
                f"{s['garment_in_scene']['p10_per_garment']:.3f}",
                f"{s['garment_in_scene']['p10_whole_photo']:.3f}",
                f"{g['scene_vs_control']['control_p10']:.3f}",
                f"{g['scene_vs_control']['value']:.2f}x",
                f"{s['outfits']['p10_per_garment']:.3f}",
                f"{g['outfits_both']['value']:.0%}",
                f"{g['no_garment_refused']['value']:.1%}",
                f"{g['product_refused']['value']:.1%}",
                f"{r['scenes']['latency'].get('ratio_p50', 0):.2f}x",
            )
        )
    goals = judged[0]["scenes"]["goals"]
    verdict = ", ".join(f"{k} {'met' if v['met'] else 'NOT met'}" for k, v in goals.items())
    return [
        "",
        "Garments in photos: precision@10 of the garment's search (scene, outfit), of the whole photo, and of "
        "clean product shots (the control)",
        _table(
            rows,
            (
                "model",
                "scene",
                "scene whole",
                "control",
                "vs control",
                "outfit",
                "outfits both",
                "no-garment refused",
                "products refused",
                "latency vs whole",
            ),
        ),
        f"Goals (issue 15: scene >= 0.90x control, both garments in >= 70% of outfits, >= 90% of no-garment photos "
        f"refused, no product shot refused), {judged[0]['model']}: {verdict}",
    ]


def format_eval(report: dict) -> str:
    rows = [
        (
            r["model"],
            r["dim"],
            r["input_size"],
            r["precision"],
            f"{r['metrics']['precision_at_1']:.3f}",
            f"{r['metrics']['precision_at_10']:.3f}",
            f"{r['metrics']['map_at_10']:.3f}",
            f"{r['seconds']:.0f}",
        )
        for r in report["results"]
    ]
    text = [report["protocol"], "", _table(rows, ("model", "dim", "px", "precision", "P@1", "P@10", "mAP@10", "s"))]
    variants = [v for v in report["results"][0]["robustness"]] if report["results"][0]["robustness"] else []
    if variants:
        text += [
            "",
            "Robustness: precision@10 with chat-photo-like queries",
            _table(
                [
                    (r["model"], *(f"{r['robustness'][v]['precision_at_10']:.3f}" for v in variants))
                    for r in report["results"]
                ],
                ("model", *variants),
            ),
        ]
    cats = list(report["results"][0]["metrics"]["by_category"])
    text += [
        "",
        "precision@10 by category",
        _table(
            [
                (c, *(f"{r['metrics']['by_category'][c]['precision_at_10']:.3f}" for r in report["results"]))
                for c in cats
            ],
            ("category", *(r["model"] for r in report["results"])),
        ),
    ]
    text += format_scenes(report["results"])
    return "\n".join(text)


def _run_train_head(args: argparse.Namespace, settings: Settings) -> int:
    from engine.training.evaluation import fashion_mnist_data, fashion_mnist_splits
    from engine.training.train_head import TrainConfig, train_head
    from engine.vision.backbones import load_backbone

    cfg = TrainConfig(
        dim=args.dim, epochs=args.epochs, tail_blocks=args.tail_blocks, seed=args.seed, scene_crops=args.scene_crops
    )
    try:
        cfg.check()
    except ValueError as err:
        print(str(err), file=sys.stderr)
        return 2
    backbone = load_backbone(settings.backbone, settings.weights, settings.allow_weight_download)
    if backbone.note:
        print(backbone.note, file=sys.stderr)
    data = fashion_mnist_data()
    splits = fashion_mnist_splits(
        catalogue=args.catalogue,
        queries=args.queries,
        head_train=args.head_train,
        test_labels=data.test_labels,
        seed=args.seed,
    )
    out = args.out or settings.data_dir / "head.pt"
    stage, close = _bar_factory()
    try:
        report = train_head(
            backbone,
            out,
            pictures_train=data.train_picture,
            labels_train=data.train_labels,
            pictures_test=data.test_picture,
            labels_test=data.test_labels,
            splits=splits,
            class_names=data.class_names,
            trained_on=f"{data.name} (training split minus the catalogue)",
            cfg=cfg,
            progress=stage,
            precision=settings.precision,
            garment_pixels=data.train_pixels,
        )
    finally:
        close()
    report_path = out.with_name(out.name + ".json")
    report_path.write_text(json.dumps(report, indent=1))
    print(format_train_report(report))
    print(f"\nHead: {out} [{report['fingerprint']}]   report: {report_path}")
    print(f"To use it: FASHIONBOT_HEAD={out} fashionbot reindex   (then start the bots with the same setting)")
    return 0


def format_train_report(r: dict) -> str:
    rows = [
        (
            f"{r['backbone']} frozen",
            r["backbone_dim"],
            *(f"{r['frozen'][k]:.3f}" for k in ("precision_at_1", "precision_at_10", "map_at_10")),
        ),
        (
            f"{r['backbone']} + head",
            r["head_dim"],
            *(f"{r['head'][k]:.3f}" for k in ("precision_at_1", "precision_at_10", "map_at_10")),
        ),
    ]
    s = r["splits"]
    return "\n".join(
        [
            f"Trained on {s['head_train']} images; judged with {s['queries']} test queries against a held-out "
            f"catalogue of {s['catalogue']} (disjoint from training).",
            _table(rows, ("vectors", "dim", "P@1", "P@10", "mAP@10")),
            f"Vectors {r['smaller_by']}x smaller. Time: trunk {r['seconds']['trunk_maps']:.0f} s, "
            f"training {r['seconds']['training']:.0f} s, total {r['seconds']['total']:.0f} s on {r['torch_threads']} threads.",
        ]
    )


async def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    return await asyncio.to_thread(_run_eval, args, settings)


async def cmd_train_head(args: argparse.Namespace, settings: Settings) -> int:
    return await asyncio.to_thread(_run_train_head, args, settings)


def _run_train_crop_adapter(args: argparse.Namespace, settings: Settings) -> int:
    from engine.training.crop_adapter import train_crop_adapter
    from engine.vision.crop_adapter import SHIPPED
    from engine.vision.models import load_model

    backbone = load_model(settings)
    out = args.out or SHIPPED
    try:
        r = train_crop_adapter(
            backbone, out, pairs=args.pairs, seed=args.seed, ridge=args.ridge, precision=settings.precision
        )
    except ValueError as err:
        print(str(err), file=sys.stderr)
        return 2
    before, after = r["held_out_without"], r["held_out_with"]
    print(f"Fitted on {r['pairs']} pairs for {r['model_key']}; {r['held_out']} pairs held out:")
    print(
        _table(
            [
                ("crops as they are", before["own_garment_in_top10"], before["class_p10"]),
                ("crops moved by the adapter", after["own_garment_in_top10"], after["class_p10"]),
            ],
            ("", "own garment in top 10", "class p@10"),
        )
    )
    print(f"Shelf classifier: the right group for {r['held_out_shelf_group_accuracy']:.1%} of the held-out crops")
    print(f"Adapter: {out} [{r['fingerprint']}], {r['seconds']['total']:.0f} s")
    return 0


async def cmd_train_crop_adapter(args: argparse.Namespace, settings: Settings) -> int:
    return await asyncio.to_thread(_run_train_crop_adapter, args, settings)
