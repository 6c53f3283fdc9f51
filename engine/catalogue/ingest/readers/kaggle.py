"""The Kaggle "fashion product images" layout: ``styles.csv`` (id, gender, masterCategory,
subCategory, articleType, baseColour, season, year, usage, productDisplayName) beside
``images/<id>.jpg``."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from db.store import NewItem
from engine.catalogue.ingest.rows import Row, RowOrBad

SOURCE = "kaggle-fashion"


def is_kaggle(path: Path) -> bool:
    return path.is_dir() or path.name == "styles.csv"


def kaggle_rows(path: Path) -> Iterator[RowOrBad]:
    root = path if path.is_dir() else path.parent
    with open(root / "styles.csv", newline="", encoding="utf-8", errors="replace") as fh:
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
                    source=SOURCE,
                    external_id=ext_id,
                    title=(rec.get("productDisplayName") or rec.get("articleType") or f"Item {ext_id}")[:512],
                    image=b"",
                    category=rec.get("articleType") or rec.get("subCategory"),
                    color=rec.get("baseColour") or None,
                    gender=rec.get("gender") or None,
                    shop="Kaggle fashion product images",
                ),
                path=image,
            )
