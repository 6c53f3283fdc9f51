"""Fashion-MNIST as catalogue rows: the demo catalogue and the tests' catalogue."""

from __future__ import annotations

import gzip
import hashlib
import io
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from db.store import NewItem
from engine.catalogue.ingest.rows import Row
from engine.vision.embedder import prepare
from engine.vision.encoder import PreparedImage

SOURCE = "fashion-mnist"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
# Demo prices: a plausible range per category, so the demo reads like a shop.
_PRICE_RANGES = [
    (9, 35), (25, 90), (29, 120), (35, 160), (60, 290), (19, 80), (19, 75), (45, 160), (25, 220), (60, 240),
]  # fmt: skip


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as fh:
        data = fh.read()
    magic = int.from_bytes(data[:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_fashion_mnist(split: str = "train", root: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) and labels of a split, from the Debian package's files, a
    torchvision download folder, or (when online) torchvision's download."""
    prefix = {"train": "train", "test": "t10k"}[split]
    for base in [root, FASHION_MNIST_DIR, Path("data/FashionMNIST/raw")]:
        if base is None:
            continue
        for ext in (".gz", ""):
            images, labels = base / f"{prefix}-images-idx3-ubyte{ext}", base / f"{prefix}-labels-idx1-ubyte{ext}"
            if images.exists() and labels.exists():
                return _read_idx(images), _read_idx(labels)
    try:
        from torchvision.datasets import FashionMNIST

        ds = FashionMNIST(root="data", train=split == "train", download=True)
        return ds.data.numpy(), ds.targets.numpy()
    except Exception as err:
        raise FileNotFoundError(
            "Fashion-MNIST not found: install Debian's dataset-fashion-mnist "
            f"(apt-get install dataset-fashion-mnist) or go online ({err})"
        ) from None


def fashion_mnist_picture(pixels28: np.ndarray) -> Image.Image:
    """Fashion-MNIST is light-on-black; product shots are dark-on-white, so invert."""
    return Image.fromarray(255 - pixels28, mode="L").convert("RGB")


def demo_price(category_index: int, key: str) -> float:
    lo, hi = _PRICE_RANGES[category_index]
    frac = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return round(lo + (hi - lo) * frac, 0) - 0.01


def _prepared(pixels28: np.ndarray, size: int, *, fixed: int | None = None) -> PreparedImage:
    """Blocking (the decode stage runs it on the pool): model pixels and the kept PNG."""
    size = fixed or size
    picture = fashion_mnist_picture(pixels28)
    png = io.BytesIO()
    Image.fromarray(255 - pixels28, mode="L").save(png, format="PNG")
    return PreparedImage(prepare(picture, size), png.getvalue())


def fashion_mnist_rows(
    split: str,
    limit: int | None,
    input_size: int | None = None,
    *,
    skip: set[str] | frozenset[str] = frozenset(),
    offset: int = 0,
    data: tuple[np.ndarray, np.ndarray] | None = None,
) -> Iterator[Row]:
    """Rows of the first ``limit`` images of a split (from ``offset``); ``skip`` holds ids
    already ingested, so a resumed run doesn't even decode them. Pictures are made in
    the decode stage, at ``input_size`` (default: the model's). ``data``: the split's
    (images, labels) when the caller has them loaded already."""
    images, labels = data if data is not None else load_fashion_mnist(split)
    end = len(images) if limit is None else min(len(images), offset + limit)
    for i in range(offset, end):
        ext_id = f"{split}-{i}"
        if ext_id in skip:
            continue
        label = int(labels[i])
        category = FASHION_MNIST_CLASSES[label]
        yield Row(
            line=i,
            item=NewItem(
                source=SOURCE,
                external_id=ext_id,
                title=f"{category} · style {i:05d}",
                image=b"",
                price=demo_price(label, ext_id),
                currency="EUR",
                category=category,
                shop="Fashion-MNIST demo",
            ),
            synth=partial(_prepared, images[i], fixed=input_size),
        )


__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "SOURCE",
    "demo_price",
    "fashion_mnist_picture",
    "fashion_mnist_rows",
    "load_fashion_mnist",
]
