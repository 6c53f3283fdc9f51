"""What a reader yields: a :class:`Row` (a product and where its picture comes from) or a
:data:`BadRow` ``(line, reason)`` for an input row that cannot be used."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from db.store import NewItem
from engine.vision.encoder import PreparedImage

BadRow = tuple[int, str]  # (line number in the source, reason), as IngestReport.bad_rows holds them


@dataclass
class Row:
    """One product to ingest. Exactly one picture source is set:

    - ``path``: a local file (read with the byte cap on the decode pool);
    - ``url``: a remote picture, fetched through the scraper's guarded fetcher;
    - ``data``: bytes in hand (stored pictures, for reindex);
    - ``synth``: a function of the model's input size that makes the pixels and the
      picture to keep (Fashion-MNIST: no outside bytes to distrust).

    ``keep``: store the decoded picture as the item's compact JPEG (new items do; a
    reindex keeps the stored one). ``item_id``: the stored item a reindex row is for.
    """

    line: int
    item: NewItem
    path: Path | None = None
    url: str | None = None
    data: bytes | None = None
    synth: Callable[[int], PreparedImage] | None = None
    keep: bool = True
    item_id: int | None = None


RowOrBad = Row | BadRow
