"""Train the garment head (engine/vision/garments.py) on synthetic scenes, reproducibly.

The trunk (Lite0 with its ImageNet weights) stays frozen: each scene goes through it
once (at one of a few sizes, so the head works at whatever size the finder scans), its
stride-16 and stride-32 maps are cached in fp16, and only the small head trains on the
cache. Targets per stride-16 cell: background / the Fashion-MNIST class of the garment
covering it (cells half-covered are left out), and, for garment cells, the distances
to that garment's box edges. Seeded end to end: the same seed gives the same file.

    python -m engine.training.garment_head --out engine/vision/garment_head.pt
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.training.garment_scenes import Sample, close_look_sample, training_scenes
from engine.vision.garments import (
    REFINE_CONTEXT,
    REFINE_SIDE,
    GarmentHead,
    load_lite0,
    save_head,
    scan_tensor,
    trunk_maps,
)

SIDES = (224, 256, 320)
CATALOGUE_HOLDOUT = 2000  # the benchmark's catalogue (first train images) never appears in training scenes
FULL, EMPTY = 0.4, 0.1  # a cell is a garment's when it covers ≥ FULL of it, background when all cover < EMPTY


def targets(sample: Sample, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(classes (gh, gw) int64: 0 background, 1+label garment, -100 ignored; distances (4, gh, gw))."""
    gh, gw = grid
    if sample.mask is None:
        raise ValueError("targets need a training sample (one made with its garment mask)")
    mask = torch.from_numpy(sample.mask.astype(np.int64))
    slots = len(sample.garments)
    cls = np.zeros((gh, gw), np.int64)
    dist = np.zeros((4, gh, gw), np.float32)
    if slots == 0:
        return cls, dist
    onehot = torch.stack([(mask == k).float() for k in range(slots)])[None]
    cover = nn.functional.adaptive_avg_pool2d(onehot, (gh, gw))[0].numpy()  # (slots, gh, gw)
    best = cover.argmax(axis=0)
    top = cover.max(axis=0)
    cls[(top >= EMPTY) & (top < FULL)] = -100
    cy, cx = np.meshgrid(np.arange(gh) + 0.5, np.arange(gw) + 0.5, indexing="ij")
    for k, g in enumerate(sample.garments):
        mine = (best == k) & (top >= FULL)
        cls[mine] = 1 + g.label
        x0, y0, x1, y1 = g.box
        d = np.stack([cx - x0 * gw, cy - y0 * gh, x1 * gw - cx, y1 * gh - cy])
        dist[:, mine] = np.maximum(d[:, mine], 0)
    return cls, dist


def build_cache(n_scenes: int, seed: int, model: nn.Module, log=print, close_looks: float = 0.0) -> dict:
    """Scenes → cached trunk maps and targets, bucketed by grid shape. ``close_looks``: for
    that share of the scenes with garments, also the close look at one of them
    (:func:`garment_scenes.close_look_sample`, at the finder's ``REFINE_SIDE``)."""
    rng = np.random.default_rng(seed + 1)
    close_rng = np.random.default_rng(seed + 2)  # its own stream: the scenes stay those of a run without
    buckets: dict[tuple, dict[str, list]] = {}
    t0 = time.perf_counter()
    exclude = np.arange(CATALOGUE_HOLDOUT)

    def add(sample: Sample, side: int) -> None:
        f16, f32 = trunk_maps(model, scan_tensor(sample.image, side))
        grid = (int(f16.shape[-2]), int(f16.shape[-1]))
        cls, dist = targets(sample, grid)
        b = buckets.setdefault(grid, {"f16": [], "f32": [], "cls": [], "dist": []})
        b["f16"].append(f16[0].half())
        b["f32"].append(f32[0].half())
        b["cls"].append(torch.from_numpy(cls))
        b["dist"].append(torch.from_numpy(dist))

    with torch.inference_mode():
        for i, sample in enumerate(training_scenes(n_scenes, seed=seed, exclude=exclude)):
            add(sample, int(rng.choice(SIDES)))
            if close_looks and sample.garments and close_rng.random() < close_looks:
                close = close_look_sample(sample, close_rng, REFINE_SIDE, REFINE_CONTEXT)
                if close is not None:
                    add(close, REFINE_SIDE)
            if log and (i + 1) % 500 == 0:
                log(f"  {i + 1}/{n_scenes} scenes through the trunk ({time.perf_counter() - t0:.0f} s)")
    return {k: {n: torch.stack(v) for n, v in b.items()} for k, b in buckets.items()}


def train_garment_head(
    out_path: Path,
    seed: int = 0,
    n_scenes: int = 1800,
    *,
    epochs: int = 16,
    batch: int = 32,
    lr: float = 3e-3,
    box_weight: float = 0.2,
    threads: int = 1,
    thresholds: dict | None = None,
    close_looks: float = 0.0,
    log=print,
) -> dict:
    """Train the head and save it (fp16, fingerprinted) to ``out_path``; returns a report.
    ``thresholds`` (calibrated by the benchmark) are stored with the weights."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    model = load_lite0().eval()
    cache = build_cache(n_scenes, seed, model, log, close_looks)
    t_cache = time.perf_counter() - t0
    head = GarmentHead()
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = sum(-(-len(b["cls"]) // batch) for b in cache.values())
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    # Background cells outnumber garment cells ~6:1; weigh them down a little.
    weight = torch.ones(11)
    weight[0] = 0.5
    ce = nn.CrossEntropyLoss(weight=weight, ignore_index=-100)
    g = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        head.train()
        order = [(k, idx) for k, b in cache.items() for idx in torch.randperm(len(b["cls"]), generator=g).split(batch)]
        order = [order[i] for i in torch.randperm(len(order), generator=g)]
        total = n = 0.0
        for key, idx in order:
            b = cache[key]
            f16, f32 = b["f16"][idx].float(), b["f32"][idx].float()
            cls, dist = b["cls"][idx], b["dist"][idx]
            logits, pred = head(f16, f32)
            loss = ce(logits, cls)
            fg = (cls > 0).unsqueeze(1).expand_as(pred)
            if fg.any():
                loss = loss + box_weight * nn.functional.smooth_l1_loss(pred[fg], dist[fg])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            n += len(idx)
        history.append(round(total / n, 4))
        if log and (epoch + 1) % 6 == 0:
            log(f"  epoch {epoch + 1}/{epochs}: loss {history[-1]}")
    head.eval()
    meta = {
        "seed": seed,
        "n_scenes": n_scenes,
        "epochs": epochs,
        "sides": list(SIDES),
        "close_looks": close_looks,
        "arch": {},
        "trunk": "efficientnet-lite0 ImageNet (frozen)",
        "catalogue_holdout": CATALOGUE_HOLDOUT,
        "loss_history": history,
        "thresholds": thresholds or {},
    }
    fingerprint = save_head(head, Path(out_path), meta)
    return {
        "out": str(out_path),
        "fingerprint": fingerprint,
        "seconds_cache": round(t_cache, 1),
        "seconds_total": round(time.perf_counter() - t0, 1),
        "final_loss": history[-1],
        "bytes": Path(out_path).stat().st_size,
        "params": sum(p.numel() for p in head.parameters()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "vision" / "garment_head.pt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scenes", type=int, default=1800)
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--close-looks", type=float, default=0.0, help="share of garment scenes also seen as the close look sees them"
    )
    p.add_argument(
        "--thresholds-from", type=Path, default=None, help="keep the calibrated thresholds of this head file"
    )
    args = p.parse_args(argv)
    thresholds = None
    if args.thresholds_from is not None:
        from engine.vision.garments import load_head

        thresholds = load_head(args.thresholds_from)[1].get("thresholds") or None
    report = train_garment_head(
        args.out,
        args.seed,
        args.scenes,
        epochs=args.epochs,
        threads=args.threads,
        thresholds=thresholds,
        close_looks=args.close_looks,
    )
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
