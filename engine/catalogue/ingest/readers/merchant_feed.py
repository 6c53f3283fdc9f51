"""Google-Merchant-style product feeds: CSV (``,``, tab or ``;``) or JSON lines with
``id,title,link,image_link,price,brand,color,gender,product_type``.

``image_link`` is an ``http(s)`` URL (fetched later through the scraper's guarded
fetcher, see :mod:`engine.catalogue.ingest.stages`) or a path relative to the feed file.
Rows that can't be used become ``(line, reason)``; nothing here raises for bad data.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from db.store import NewItem
from engine.catalogue.ingest.rows import Row, RowOrBad
from engine.catalogue.prices import BadPrice, feed_price

FEED_COLUMNS = ("id", "title", "link", "image_link", "price", "brand", "color", "gender", "product_type")
REQUIRED = ("id", "title", "image_link")
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")


def merchant_rows(path: Path) -> Iterator[RowOrBad]:
    source = f"feed:{path.stem}"
    base = path.parent
    if path.suffix in JSON_SUFFIXES:
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
                yield merchant_row(line_no, record, source, base)
        return
    with open(path, newline="", encoding="utf-8-sig") as fh:
        sample = fh.read(4096)
        fh.seek(0)
        try:
            dialect: Any = csv.Sniffer().sniff(sample, delimiters=",\t;") if sample else csv.excel
        except csv.Error:
            dialect = csv.excel
        reader = csv.DictReader(fh, dialect=dialect)
        missing = set(REQUIRED) - set(reader.fieldnames or [])
        if missing:
            yield 1, f"missing columns: {', '.join(sorted(missing))}"
            return
        while True:
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as err:  # e.g. a NUL byte or an over-long field: this row only
                yield reader.line_num, f"unreadable CSV row: {err}"
                continue
            yield merchant_row(reader.line_num, record, source, base)


def _text(rec: dict[str, Any], key: str) -> str:
    value = rec.get(key)
    return "" if value is None else str(value).strip()


def merchant_row(line: int, rec: dict[str, Any], source: str, base: Path) -> RowOrBad:
    ext_id, title, image_link = _text(rec, "id"), _text(rec, "title"), _text(rec, "image_link")
    if not ext_id or not title or not image_link:
        return line, "id, title and image_link are required"
    link = _text(rec, "link") or None
    if link and not link.startswith(("http://", "https://")):
        return line, f"link is not an http(s) URL: {link[:80]!r}"
    try:
        price, currency = feed_price(rec.get("price"))
    except BadPrice as err:
        return line, str(err)
    remote = image_link.startswith(("http://", "https://"))
    if not remote and "://" in image_link:
        return line, f"unsupported image link {image_link[:80]!r}"
    category = _text(rec, "product_type").split(">")[-1].strip() or None
    brand = _text(rec, "brand") or None
    return Row(
        line=line,
        item=NewItem(
            source=source,
            external_id=ext_id[:256],
            title=title[:512],
            image=b"",
            url=link,
            image_url=image_link if remote else None,
            price=price,
            currency=currency,
            category=category,
            brand=brand,
            color=_text(rec, "color") or None,
            gender=_text(rec, "gender") or None,
            shop=brand or source.split(":", 1)[1],
        ),
        url=image_link if remote else None,
        path=None if remote else (base / image_link),
    )
