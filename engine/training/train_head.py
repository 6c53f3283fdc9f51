"""Train the fashion head: fine-tune the backbone's last blocks and a projection to a
small vector with a cosine classifier (CosFace margin), on labelled product images.

Two CPU cores can't afford running the whole network for every step, so the frozen
trunk runs once per image and its feature maps (7x7, fp16) are cached; epochs only
run the tail. Augmentation is a horizontal flip of the cached maps (a mirrored
garment is the same garment; flipping the map is the cheap stand-in for
re-running the trunk on the mirrored picture), plus in-scene crops cached the same
way: training garments pasted into scenes and cut as the garment finder cuts them,
so that a garment cut from a photo lands near the product shot of its kind.

Quality is judged here the way ``fashionbot eval`` judges it: test-split queries
against a catalogue split the head never trained on (``engine.training.evaluation.Splits``).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from engine.training.evaluation import K, Splits, retrieval_metrics, top_k
from engine.vision.backbones import LoadedBackbone
from engine.vision.embedder import fold_batch_norms, prepare
from engine.vision.head import MAX_HEAD_DIM, save_head, split_backbone
from engine.vision.precision import PrecisionPlans

log = logging.getLogger(__name__)

Progress = Callable[[str, int | None], Callable[[int], None]]  # (stage, total) -> advance(n)


@dataclass
class TrainConfig:
    dim: int = 128
    tail_blocks: int = 1
    epochs: int = 6
    batch_size: int = 128
    lr: float = 2e-3  # projection and classifier
    tail_lr: float = 3e-4  # fine-tuned blocks
    weight_decay: float = 1e-4
    scale: float = 16.0  # cosine-classifier logit scale
    margin: float = 0.2  # CosFace additive margin
    flip: bool = True
    bf16: bool | None = None  # autocast while training; None: where the CPU has native bf16
    seed: int = 0
    extract_batch: int = 64
    # In-scene crops added to the training images, as a share of them (0 = none): each is a
    # training garment pasted into a scene and cropped as the garment finder crops it. 0.25
    # against 0 (10,000 training images, the same seed, 3 December): a garment in a scene
    # precision@10 0.580 -> 0.661, outfits 0.566 -> 0.682, clean 0.879 -> 0.882.
    scene_crops: float = 0.25

    def check(self) -> None:
        if not 8 <= self.dim <= MAX_HEAD_DIM:
            raise ValueError(f"--dim must be between 8 and {MAX_HEAD_DIM}")
        if self.epochs < 1:
            raise ValueError("--epochs must be at least 1")
        if not 0.0 <= self.scene_crops <= 1.0:
            raise ValueError("--scene-crops must be a share between 0 and 1")


class CosineClassifier(nn.Module):
    """Logits = scale * cos(vector, class centre), with the margin taken off the true class
    while training: it pulls each class into a tight cone, which is what kNN wants."""

    def __init__(self, dim: int, classes: int, scale: float, margin: float) -> None:
        super().__init__()
        self.centres = nn.Parameter(torch.randn(classes, dim) * 0.01)
        self.scale, self.margin = scale, margin

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cos = nn.functional.normalize(z, dim=1) @ nn.functional.normalize(self.centres, dim=1).T
        if labels is not None:
            cos = cos - self.margin * nn.functional.one_hot(labels, cos.shape[1])
        return self.scale * cos


def extract_maps(
    trunk: nn.Module,
    pictures: Callable[[int], Image.Image],
    count: int,
    size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    batch: int = 64,
    advance: Callable[[int], None] | None = None,
    bf16_from: int | None = None,
) -> np.ndarray:
    """Run the frozen trunk over ``count`` pictures (``pictures(i)`` → PIL image); fp16 maps.
    ``bf16_from``: the serving embedder's precision plan, so training sees what serving
    computes (and runs faster where the CPU has bf16)."""
    plans = PrecisionPlans(trunk, fold_batch_norms)
    fused = plans.model(None if bf16_from is None or bf16_from >= plans.stages else bf16_from)
    m = torch.tensor(mean).view(1, 3, 1, 1) * 255.0
    s = torch.tensor(std).view(1, 3, 1, 1) * 255.0
    out: np.ndarray | None = None
    for start in range(0, count, batch):
        idx = range(start, min(count, start + batch))
        px = np.stack([prepare(pictures(i), size) for i in idx])
        x = ((torch.from_numpy(px).permute(0, 3, 1, 2).float() - m) / s).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            maps = fused(x).float().numpy().astype(np.float16)
        if out is None:
            out = np.empty((count, *maps.shape[1:]), dtype=np.float16)
        out[start : start + len(px)] = maps
        if advance:
            advance(len(px))
    assert out is not None
    return out


def embed_maps(tail: nn.Module, projection: nn.Module | None, maps: np.ndarray, batch: int = 512) -> np.ndarray:
    """Unit vectors from cached trunk maps (the frozen features when ``projection`` is None)."""
    tail.eval()
    outs = []
    with torch.inference_mode():
        for s in range(0, len(maps), batch):
            x = torch.from_numpy(maps[s : s + batch].astype(np.float32)).contiguous(memory_format=torch.channels_last)
            f = tail(x)
            if projection is not None:
                f = projection(f)
            outs.append(nn.functional.normalize(f, dim=1).numpy())
    return np.concatenate(outs)


def judge(
    vectors_q: np.ndarray, labels_q: np.ndarray, vectors_c: np.ndarray, labels_c: np.ndarray, class_names: list[str]
) -> dict:
    return retrieval_metrics(top_k(vectors_q, vectors_c, K), labels_q, labels_c, class_names, K)


def train_tail(
    tail: nn.Module,
    projection: nn.Linear,
    maps: np.ndarray,
    labels: np.ndarray,
    classes: int,
    cfg: TrainConfig,
    advance: Callable[[int], None] | None = None,
) -> list[dict]:
    """Fine-tune ``tail`` and ``projection`` in place; returns per-epoch loss and accuracy.
    Batch norms keep their ImageNet statistics (eval mode): with a few thousand steps
    on another domain, moving statistics make train and serve disagree. Where the CPU
    has native bf16, forward and backward run under bf16 autocast (weights and the
    optimiser stay fp32): about 1.6x faster per step here; the saved head is fp32."""
    from engine.vision.embedder import cpu_has_native_bf16

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    use_bf16 = cpu_has_native_bf16() if cfg.bf16 is None else cfg.bf16  # fp32 master weights either way
    tail.to(memory_format=torch.channels_last)
    classifier = CosineClassifier(projection.out_features, classes, cfg.scale, cfg.margin)
    tail_params = [p for p in tail.parameters()]
    for p in tail_params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(
        [
            {"params": tail_params, "lr": cfg.tail_lr},
            {"params": list(projection.parameters()) + list(classifier.parameters()), "lr": cfg.lr},
        ],
        weight_decay=cfg.weight_decay,
    )
    steps_per_epoch = math.ceil(len(maps) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    base = [g["lr"] for g in opt.param_groups]
    y_all = torch.from_numpy(labels.astype(np.int64))
    history = []
    step = 0
    tail.eval()  # see docstring: batch-norm statistics stay frozen
    for epoch in range(cfg.epochs):
        order = rng.permutation(len(maps))
        loss_sum, correct, seen, started = 0.0, 0, 0, time.monotonic()
        for s in range(0, len(order), cfg.batch_size):
            idx = np.sort(order[s : s + cfg.batch_size])
            x = torch.from_numpy(maps[idx].astype(np.float32))
            if cfg.flip:
                flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
                x[flip] = x[flip].flip(-1)
            x = x.contiguous(memory_format=torch.channels_last)
            y = y_all[idx]
            warm = min(1.0, (step + 1) / max(1, steps_per_epoch // 2))  # short warm-up, then cosine decay
            for g, lr in zip(opt.param_groups, base):
                g["lr"] = lr * warm * 0.5 * (1 + math.cos(math.pi * step / total))
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                z = projection(tail(x))
            z = z.float()
            logits = classifier(z, y)
            loss = nn.functional.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += loss.item() * len(idx)
            correct += int((classifier(z.detach()).argmax(1) == y).sum())
            seen += len(idx)
            if advance:
                advance(len(idx))
        history.append(
            {
                "epoch": epoch + 1,
                "loss": round(loss_sum / seen, 4),
                "train_accuracy": round(correct / seen, 4),
                "seconds": round(time.monotonic() - started, 1),
            }
        )
        log.info("epoch %d: %s", epoch + 1, history[-1])
    for p in tail.parameters():
        p.requires_grad_(False)
    return history


def train_head(
    backbone: LoadedBackbone,
    out: Path,
    *,
    pictures_train: Callable[[int], object],
    labels_train: np.ndarray,
    pictures_test: Callable[[int], object],
    labels_test: np.ndarray,
    splits: Splits,
    class_names: list[str],
    trained_on: str,
    cfg: TrainConfig,
    progress: Progress | None = None,
    precision: str = "auto",
    garment_pixels: Callable[[int], np.ndarray] | None = None,
) -> dict:
    """The whole run: cache trunk maps, judge the frozen features, train, judge the head,
    save. Returns a report (what ``fashionbot train-head`` prints and writes as JSON).
    ``garment_pixels(i)``: training image ``i``'s raw 28×28 garment (light on black), from
    which ``cfg.scene_crops`` in-scene crops are made."""
    cfg.check()
    splits.check_disjoint()
    started = time.monotonic()
    # Train on a copy: the caller's backbone keeps its ImageNet weights.
    trunk, tail = split_backbone(replace(backbone, model=copy.deepcopy(backbone.model)), cfg.tail_blocks)
    size = backbone.input_size

    def stage(name: str, total: int | None) -> Callable[[int], None]:
        return progress(name, total) if progress else (lambda n: None)

    def maps_of(pictures, indices: np.ndarray, name: str) -> np.ndarray:
        return extract_maps(
            trunk,
            lambda i: pictures(int(indices[i])),
            len(indices),
            size,
            backbone.mean,
            backbone.std,
            cfg.extract_batch,
            stage(name, len(indices)),
            bf16_from,
        )

    from engine.vision.embedder import Embedder

    probe = Embedder(backbone, precision=precision, max_wait_ms=0)  # the plan serving will use
    bf16_from = probe.bf16_from
    probe.close()

    train_maps = maps_of(pictures_train, splits.head_train, "trunk: head-training images")
    cat_maps = maps_of(pictures_train, splits.catalogue, "trunk: catalogue images")
    query_maps = maps_of(pictures_test, splits.queries, "trunk: query images")
    lab_train, lab_cat, lab_q = (
        labels_train[splits.head_train],
        labels_train[splits.catalogue],
        labels_test[splits.queries],
    )
    scene_count = 0
    if cfg.scene_crops > 0 and garment_pixels is not None:
        from engine.training.garment_scenes import scene_crop

        picks = np.random.default_rng(cfg.seed).permutation(splits.head_train)[
            : round(cfg.scene_crops * len(splits.head_train))
        ]

        def in_scene(i: int) -> Image.Image:  # one generator per picture: the same seed, the same crops
            return scene_crop(garment_pixels(int(picks[i])), np.random.default_rng((cfg.seed, int(picks[i]))))

        scene_maps = extract_maps(
            trunk,
            in_scene,
            len(picks),
            size,
            backbone.mean,
            backbone.std,
            cfg.extract_batch,
            stage("trunk: in-scene crops", len(picks)),
            bf16_from,
        )
        train_maps = np.concatenate([train_maps, scene_maps])
        lab_train = np.concatenate([lab_train, labels_train[picks]])
        scene_count = len(picks)
    extracted = time.monotonic()

    frozen = judge(embed_maps(tail, None, query_maps), lab_q, embed_maps(tail, None, cat_maps), lab_cat, class_names)

    torch.manual_seed(cfg.seed)
    projection = nn.Linear(_pooled_dim(tail, train_maps[:2]), cfg.dim)
    history = train_tail(
        tail, projection, train_maps, lab_train, len(class_names), cfg, stage("training", len(train_maps) * cfg.epochs)
    )
    trained = time.monotonic()
    head = judge(
        embed_maps(tail, projection, query_maps), lab_q, embed_maps(tail, projection, cat_maps), lab_cat, class_names
    )
    report = {
        "backbone": backbone.name,
        "backbone_fingerprint": backbone.fingerprint,
        "backbone_dim": backbone.dim,
        "head_dim": cfg.dim,
        "smaller_by": round(backbone.dim / cfg.dim, 1),
        "config": asdict(cfg),
        "splits": {
            "head_train": len(splits.head_train),
            "in_scene_crops": scene_count,
            "catalogue": len(splits.catalogue),
            "queries": len(splits.queries),
            "disjoint": True,
        },
        "frozen": frozen,
        "head": head,
        "history": history,
        "seconds": {
            "trunk_maps": round(extracted - started, 1),
            "training": round(trained - extracted, 1),
            "total": round(time.monotonic() - started, 1),
        },
        "torch_threads": torch.get_num_threads(),
        "trunk_precision_plan": bf16_from,
    }
    report["fingerprint"] = save_head(
        out,
        backbone=backbone,
        tail=tail,
        projection=projection,
        tail_blocks=cfg.tail_blocks,
        trained_on=trained_on,
        metrics={"frozen": _headline(frozen), "head": _headline(head)},
    )
    return report


def _headline(m: dict) -> dict:
    return {k: v for k, v in m.items() if k != "by_category"}


def _pooled_dim(tail: nn.Module, sample: np.ndarray) -> int:
    with torch.inference_mode():
        return int(tail(torch.from_numpy(sample.astype(np.float32))).shape[1])
