"""The ingest pipeline as it was before the staged runner (issue 19), kept verbatim for
bench/bench_ingest.py's before/after comparison only. Not used by the product."""
# ruff: noqa
# mypy: ignore-errors

from __future__ import annotations

import asyncio
import csv
import gzip
import hashlib
import io
import itertools
import json
import logging
import socket
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from db.store import NewItem
from engine.catalogue.catalogue import Catalogue
from engine.errors import BadImage
from engine.api import Progress
from engine.types import IngestReport
from engine.vision.embedder import prepare
from engine.vision.encoder import Encoder

log = logging.getLogger(__name__)

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
# Demo prices: a plausible range per category, so the demo reads like a shop.
_PRICE_RANGES = [
    (9, 35),
    (25, 90),
    (29, 120),
    (35, 160),
    (60, 290),
    (19, 80),
    (19, 75),
    (45, 160),
    (25, 220),
    (60, 240),
]
FEED_COLUMNS = ("id", "title", "link", "image_link", "price", "brand", "color", "gender", "product_type")


@dataclass
class Row:
    """One product to ingest: its metadata and a way to get its image bytes."""

    line: int
    item: NewItem  # image filled in once loaded
    load: Callable[[], bytes] | None = None  # blocking loader (file or URL); None when item.image is set
    pixels: np.ndarray | None = None  # already decoded (Fashion-MNIST)


# ---- Fashion-MNIST --------------------------------------------------------------------
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


def fashion_mnist_rows(
    split: str, limit: int | None, input_size: int, *, skip: set[str] = frozenset(), offset: int = 0
) -> Iterator[Row]:
    """Rows of the first ``limit`` images of a split; ``skip`` holds ids already ingested,
    so a resumed run doesn't even decode them."""
    images, labels = load_fashion_mnist(split)
    end = len(images) if limit is None else min(len(images), offset + limit)
    for i in range(offset, end):
        ext_id = f"{split}-{i}"
        if ext_id in skip:
            continue
        label = int(labels[i])
        category = FASHION_MNIST_CLASSES[label]
        picture = fashion_mnist_picture(images[i])
        png = io.BytesIO()
        picture.convert("L").save(png, format="PNG")
        yield Row(
            line=i,
            item=NewItem(
                source="fashion-mnist",
                external_id=ext_id,
                title=f"{category} · style {i:05d}",
                image=png.getvalue(),
                price=demo_price(label, ext_id),
                currency="EUR",
                category=category,
                shop="Fashion-MNIST demo",
            ),
            pixels=prepare(picture, input_size),
        )


# ---- product feeds -------------------------------------------------------------------
def _parse_price(raw: str | float | None) -> tuple[float | None, str]:
    """'19.99 EUR', '€19.99', '19,99', 19.99 → (19.99, 'EUR'); garbage → ValueError."""
    if raw is None or raw == "":
        return None, "EUR"
    if isinstance(raw, (int, float)):
        return float(raw), "EUR"
    text = str(raw).strip()
    currency = "EUR"
    for sym, code in (("€", "EUR"), ("$", "USD"), ("£", "GBP")):
        if sym in text:
            currency, text = code, text.replace(sym, "")
    parts = text.split()
    if len(parts) == 2 and parts[1].isalpha():
        text, currency = parts[0], parts[1].upper()
    text = text.replace(",", ".") if text.count(",") == 1 and "." not in text else text.replace(",", "")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"price {str(raw)[:40]!r} is not a number") from None
    if not (0 <= value < 1_000_000):
        raise ValueError(f"implausible price {raw!r}")
    return value, currency


def _image_loader(ref: str, base: Path, max_bytes: int) -> Callable[[], bytes]:
    if ref.startswith(("http://", "https://")):
        return lambda: _download(ref, max_bytes)
    if "://" in ref:
        raise ValueError(f"unsupported image link {ref[:80]!r}")
    path = (base / ref).resolve()
    return lambda: _read_capped(path, max_bytes)


def _read_capped(path: Path, max_bytes: int) -> bytes:
    with open(path, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise BadImage(f"image over {max_bytes} bytes")
    return data


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003 - urllib's signature
        return None  # a redirect surfaces as an HTTPError: feed images must link directly


def _download(url: str, max_bytes: int) -> bytes:
    """Fetch a feed image: public addresses only (the scraper's SSRF rules), no
    redirects, size-capped while reading."""
    from scraper.ssrf import forbidden_reason

    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror as err:
        raise OSError(f"can't resolve {host}: {err.strerror}") from None
    for address in addresses:
        reason = forbidden_reason(address)
        if reason:
            raise OSError(f"refused {host}: {reason} address")
    opener = urllib.request.build_opener(_NoRedirects)
    req = urllib.request.Request(url, headers={"User-Agent": "fashionbot-feed-ingest"})
    with opener.open(req, timeout=20) as resp:
        data = resp.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise BadImage(f"image over {max_bytes} bytes")
    return data


def feed_rows(path: Path, max_bytes: int) -> Iterator[Row | tuple[int, str]]:
    """Rows of a Google-Merchant CSV / JSON-lines feed or a Kaggle styles.csv; yields
    (line, reason) for rows that can't be used."""
    source = f"feed:{path.stem}"
    if path.is_dir() or path.name == "styles.csv":
        yield from _kaggle_rows(path if path.is_dir() else path.parent)
        return
    base = path.parent
    if path.suffix in (".jsonl", ".ndjson", ".json"):
        with open(path, encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    if not isinstance(record, dict):
                        raise ValueError("not a JSON object")
                except ValueError as err:
                    yield line_no, f"invalid JSON: {err}"
                    continue
                yield _merchant_row(line_no, record, source, base, max_bytes)
        return
    with open(path, newline="", encoding="utf-8-sig") as fh:
        sample = fh.read(4096)
        fh.seek(0)
        dialect = csv.Sniffer().sniff(sample, delimiters=",\t;") if sample else csv.excel
        reader = csv.DictReader(fh, dialect=dialect)
        missing = {"id", "title", "image_link"} - set(reader.fieldnames or [])
        if missing:
            yield 1, f"missing columns: {', '.join(sorted(missing))}"
            return
        for record in reader:
            yield _merchant_row(reader.line_num, record, source, base, max_bytes)


def _merchant_row(line: int, rec: dict, source: str, base: Path, max_bytes: int) -> Row | tuple[int, str]:
    try:
        ext_id = str(rec.get("id") or "").strip()
        title = str(rec.get("title") or "").strip()
        image_link = str(rec.get("image_link") or "").strip()
        if not ext_id or not title or not image_link:
            return line, "id, title and image_link are required"
        link = str(rec.get("link") or "").strip() or None
        if link and not link.startswith(("http://", "https://")):
            return line, f"link is not an http(s) URL: {link[:80]!r}"
        price, currency = _parse_price(rec.get("price"))
        loader = _image_loader(image_link, base, max_bytes)
    except ValueError as err:
        return line, str(err)
    product_type = str(rec.get("product_type") or "").strip()
    category = product_type.split(">")[-1].strip() or None
    return Row(
        line=line,
        item=NewItem(
            source=source,
            external_id=ext_id[:256],
            title=title[:512],
            image=b"",
            url=link,
            image_url=image_link if image_link.startswith("http") else None,
            price=price,
            currency=currency,
            category=category,
            brand=(rec.get("brand") or None),
            color=(rec.get("color") or None),
            gender=(rec.get("gender") or None),
            shop=(rec.get("brand") or source.split(":", 1)[1]),
        ),
        load=loader,
    )


def _kaggle_rows(root: Path) -> Iterator[Row | tuple[int, str]]:
    """Kaggle fashion-product-images: styles.csv (id, gender, masterCategory, subCategory,
    articleType, baseColour, season, year, usage, productDisplayName) + images/<id>.jpg."""
    styles = root / "styles.csv"
    with open(styles, newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.DictReader(fh)
        for rec in reader:
            line = reader.line_num
            ext_id = (rec.get("id") or "").strip()
            if not ext_id or None in rec:  # the real file has rows with extra commas
                yield line, "malformed row (missing id or extra fields)"
                continue
            image = root / "images" / f"{ext_id}.jpg"
            if not image.exists():
                yield line, f"image images/{ext_id}.jpg not found"
                continue
            yield Row(
                line=line,
                item=NewItem(
                    source="kaggle-fashion",
                    external_id=ext_id,
                    title=(rec.get("productDisplayName") or rec.get("articleType") or f"Item {ext_id}")[:512],
                    image=b"",
                    category=rec.get("articleType") or rec.get("subCategory"),
                    color=rec.get("baseColour") or None,
                    gender=rec.get("gender") or None,
                    shop="Kaggle fashion product images",
                ),
                load=(lambda p=image: p.read_bytes()),
            )


# ---- the pipeline ---------------------------------------------------------------------
async def ingest_rows(
    catalogue: Catalogue,
    encoder: Encoder,
    rows: Iterable[Row | tuple[int, str]],
    *,
    batch_size: int = 256,
    progress: Progress | None = None,
    total: int | None = None,
) -> IngestReport:
    """Embed, store and index ``rows``; rows already in the catalogue are skipped.
    ``total``: how many rows are expected, when known (for progress bars)."""
    report = IngestReport(total=total)
    if progress is not None and total is not None:
        progress.total = total
    iterator = iter(rows)
    while True:
        # Producing rows decodes pictures and reads files: do it off the loop.
        chunk = await asyncio.to_thread(lambda: list(itertools.islice(iterator, batch_size)))
        if not chunk:
            break
        batch: list[Row] = []
        for row in chunk:
            if isinstance(row, tuple):
                report.bad_rows.append(row)
                log.warning("line %d skipped: %s", *row)
            else:
                batch.append(row)
        await _ingest_batch(catalogue, encoder, batch, report)
        if progress is not None:
            progress.update(len(chunk))
    if report.added:
        await catalogue.save()
    return report


async def _ingest_batch(catalogue: Catalogue, encoder: Encoder, batch: list[Row], report: IngestReport) -> None:
    by_source: dict[str, list[Row]] = {}
    for r in batch:
        by_source.setdefault(r.item.source, []).append(r)
    fresh: list[Row] = []
    for source, group in by_source.items():
        existing = await catalogue.store.existing_external_ids(source, [r.item.external_id for r in group])
        seen: set[str] = set()
        for r in group:
            if r.item.external_id in existing or r.item.external_id in seen:
                report.skipped_existing += 1
            else:
                seen.add(r.item.external_id)
                fresh.append(r)
    ready = await asyncio.gather(*(_materialise(encoder, r, report) for r in fresh))
    good = [r for r in ready if r is not None]
    if good:
        vectors = await encoder.embed(np.stack([r.pixels for r in good]))
        await catalogue.add_items([r.item for r in good], vectors)
        report.added += len(good)


async def _materialise(encoder: Encoder, row: Row, report: IngestReport) -> Row | None:
    """Load and decode a row's image (off the loop); None (and a report line) if unusable."""
    if row.pixels is not None:
        return row
    try:
        data = await asyncio.to_thread(row.load) if row.load else row.item.image
        prepared = await encoder.prepare(data, keep=True)
    except (BadImage, OSError, ValueError) as err:
        reason = str(err) if isinstance(err, BadImage) else f"image unavailable: {type(err).__name__}: {err}"
        report.bad_rows.append((row.line, reason))
        log.warning("line %d skipped: %s", row.line, reason)
        return None
    return replace(row, item=replace(row.item, image=prepared.jpeg or b""), pixels=prepared.pixels)


# ---- what the service calls ---------------------------------------------------------
async def ingest_fashion_mnist(
    catalogue: Catalogue,
    encoder: Encoder,
    *,
    split: str = "train",
    limit: int | None = None,
    chunk: int = 128,
    progress: Progress | None = None,
) -> IngestReport:
    """The first ``limit`` Fashion-MNIST products of ``split`` not in the catalogue yet
    (resumable: ids already ingested are not even decoded)."""
    skip = await catalogue.store.all_external_ids("fashion-mnist")
    images, _ = await asyncio.to_thread(load_fashion_mnist, split)
    total = len(images) if limit is None else min(limit, len(images))
    done = sum(1 for e in skip if e.startswith(f"{split}-") and int(e.split("-", 1)[1]) < total)
    rows = fashion_mnist_rows(split, total, encoder.input_size, skip=skip)
    report = await ingest_rows(catalogue, encoder, rows, batch_size=chunk, progress=progress, total=total - done)
    report.skipped_existing += done
    return report


async def ingest_feed(
    catalogue: Catalogue, encoder: Encoder, path: Path, *, progress: Progress | None = None
) -> IngestReport:
    rows = feed_rows(path, encoder.settings.max_image_bytes)
    return await ingest_rows(catalogue, encoder, rows, batch_size=64, progress=progress)


async def reembed(catalogue: Catalogue, encoder: Encoder, *, chunk: int = 128, progress: Progress | None = None) -> int:
    """Embed every item that has no embedding for the current model (after a backbone or
    head change) from its stored picture; returns how many."""
    done = 0
    if progress is not None:
        progress.total = await catalogue.store.count_to_embed(catalogue.model_key)
    while True:
        todo = await catalogue.store.items_to_embed(catalogue.model_key, limit=chunk)
        if not todo:
            return done
        prepared = await asyncio.gather(*(encoder.prepare(image) for _, image in todo))
        vectors = await encoder.embed(np.stack([p.pixels for p in prepared]))
        await catalogue.store.set_embeddings(
            catalogue.model_key, [(i, v.tobytes()) for (i, _), v in zip(todo, vectors)]
        )
        done += len(todo)
        if progress is not None:
            progress.update(len(todo))
