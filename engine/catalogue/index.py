"""`VectorIndex`: hnswlib over unit vectors, a rebuildable cache of the database.

Pitfalls handled here, once: hnswlib forgets ``ef`` on load (we set it after
every load), ``add_items``/``resize_index`` must not run beside ``knn_query``
(a reader-writer lock), and asking for more neighbours than are reachable raises
(we clamp k and retry with a wider search). The file is saved atomically with a
JSON sidecar naming the backbone and weights it was built with.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import hnswlib
import numpy as np

log = logging.getLogger(__name__)

SIDE_CAR_VERSION = 1


class IndexMismatch(RuntimeError):
    """The saved index was built with another backbone, weights or head."""


@dataclass
class IndexMeta:
    backbone: str
    fingerprint: str  # backbone weights fingerprint
    dim: int
    head: str = ""  # fingerprint of the trained head the vectors came through ("" = none)
    count: int = 0
    last_item_id: int = 0
    m: int = 32
    ef_construction: int = 200
    version: int = SIDE_CAR_VERSION
    index_bytes: int = 0  # size of the index file, to catch a torn or swapped file


class RWLock:
    """Many readers or one writer; writers don't starve."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class VectorIndex:
    """Approximate nearest neighbours by cosine similarity (l2 on unit vectors)."""

    def __init__(self, meta: IndexMeta, *, ef: int = 96, capacity: int = 1024) -> None:
        self.meta = meta
        self.ef = ef
        self._lock = RWLock()
        self._save_lock = threading.Lock()
        self._index = hnswlib.Index(space="l2", dim=meta.dim)
        self._index.init_index(max_elements=max(capacity, 16), ef_construction=meta.ef_construction, M=meta.m)
        self._index.set_ef(ef)
        self._deleted: set[int] = set()

    # ---- size -------------------------------------------------------------
    def __len__(self) -> int:
        return self._index.get_current_count() - len(self._deleted)

    def __contains__(self, item_id: int) -> bool:
        with self._lock.read():
            return item_id not in self._deleted and _has_label(self._index, item_id)

    # ---- writes -----------------------------------------------------------
    def add(self, ids: np.ndarray | list[int], vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(ids), self.meta.dim):
            raise ValueError(f"expected {(len(ids), self.meta.dim)} vectors, got {vectors.shape}")
        with self._lock.write():
            needed = self._index.get_current_count() + len(ids)
            if needed > self._index.get_max_elements():
                self._index.resize_index(max(needed, 2 * self._index.get_max_elements()))
            for i in ids:
                if int(i) in self._deleted:
                    self._index.unmark_deleted(int(i))
                    self._deleted.discard(int(i))
            self._index.add_items(vectors, ids, replace_deleted=False)
            self.meta.count = self._index.get_current_count()
            self.meta.last_item_id = max(self.meta.last_item_id, int(ids.max()))

    def delete(self, item_id: int) -> None:
        with self._lock.write():
            if item_id not in self._deleted and _has_label(self._index, item_id):
                self._index.mark_deleted(item_id)
                self._deleted.add(item_id)

    # ---- reads ------------------------------------------------------------
    def search(
        self, vector: np.ndarray, k: int = 10, keep: Callable[[int], bool] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Ids and cosine similarities of up to ``k`` nearest items, best first; with
        ``keep``, of the items it keeps (hnswlib filters while it walks the graph, so a
        shelf far from the query still gives its nearest, not only those among the
        overall nearest). Blocking, and ``keep`` runs once per visited item: off the loop.

        Never raises for k larger than the catalogue: it returns what there is.
        """
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        with self._lock.read():
            available = self._index.get_current_count() - len(self._deleted)
            k = min(k, available)
            if k <= 0:
                return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
            if k <= self.ef:
                try:
                    labels, dists = self._index.knn_query(query, k=k, filter=keep)
                    return _as_result(labels, dists)
                except RuntimeError:
                    pass  # fewer reachable than k: widen the search below
        # Rare path (k above ef, or unreachable neighbours after deletions): ef is
        # index-wide state, so change it only under the write lock.
        with self._lock.write():
            ef = max(self.ef, k)
            try:
                while True:
                    self._index.set_ef(ef)
                    try:
                        labels, dists = self._index.knn_query(query, k=k, filter=keep)
                        return _as_result(labels, dists)
                    except RuntimeError:
                        if ef < 4 * available:
                            ef *= 2
                        elif k > 1:
                            k -= 1
                        else:
                            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
            finally:
                self._index.set_ef(self.ef)

    def vectors(self, ids: list[int]) -> np.ndarray:
        with self._lock.read():
            return np.asarray(self._index.get_items(ids), dtype=np.float32)

    # ---- persistence ------------------------------------------------------
    def save(self, path: Path) -> None:
        """Atomic: write unique temp files, fsync, rename index then sidecar.

        One lock serialises saves (two trends finishing together used to share one temp
        name); the sidecar's metadata is snapshotted under the same read lock as the
        file, so an ``add`` between the two cannot make the sidecar count differ."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._save_lock:
            tmp = _temp_beside(path)
            tmp_meta: Path | None = None
            try:
                with self._lock.read():
                    self._index.save_index(str(tmp))
                    snapshot = asdict(self.meta) | {
                        "count": self._index.get_current_count(),
                        "deleted": sorted(self._deleted),
                    }
                _fsync(tmp)
                snapshot["index_bytes"] = tmp.stat().st_size
                sidecar = sidecar_path(path)
                tmp_meta = _temp_beside(sidecar)
                tmp_meta.write_text(json.dumps(snapshot, indent=1))
                _fsync(tmp_meta)
                os.replace(tmp, path)
                os.replace(tmp_meta, sidecar)
                _fsync_dir(path.parent)
            finally:
                for leftover in (tmp, tmp_meta):
                    if leftover is not None:
                        leftover.unlink(missing_ok=True)
            self.meta.count = snapshot["count"]
            self.meta.index_bytes = snapshot["index_bytes"]

    @classmethod
    def load(cls, path: Path, *, ef: int = 96) -> VectorIndex:
        """Load a saved index; raises ``FileNotFoundError`` or ``ValueError`` (corrupt)."""
        sidecar = sidecar_path(path)
        raw = json.loads(sidecar.read_text())
        deleted = raw.pop("deleted", [])
        meta = IndexMeta(**raw)
        if meta.version != SIDE_CAR_VERSION:
            raise ValueError(f"index sidecar version {meta.version}, expected {SIDE_CAR_VERSION}")
        if path.stat().st_size != meta.index_bytes:
            raise ValueError("index file does not match its sidecar (torn write?)")
        self = cls.__new__(cls)
        self.meta = meta
        self.ef = ef
        self._lock = RWLock()
        self._save_lock = threading.Lock()
        self._index = hnswlib.Index(space="l2", dim=meta.dim)
        try:
            self._index.load_index(str(path), max_elements=max(meta.count, 16))
        except Exception as err:
            raise ValueError(f"index file unreadable: {err}") from None
        if self._index.get_current_count() != meta.count:
            raise ValueError("index count does not match its sidecar")
        self._index.set_ef(ef)  # hnswlib forgets ef on load
        self._deleted = set(int(i) for i in deleted)
        return self

    def check_compatible(self, backbone: str, fingerprint: str, dim: int, head: str = "") -> None:
        built = (self.meta.backbone, self.meta.fingerprint, self.meta.dim, self.meta.head)
        if built != (backbone, fingerprint, dim, head):
            raise IndexMismatch(
                f"The index was built with {_describe(*built)} but the engine runs "
                f"{_describe(backbone, fingerprint, dim, head)}. Run `fashionbot reindex` to rebuild it."
            )


def _describe(backbone: str, fingerprint: str, dim: int, head: str) -> str:
    return f"{backbone} (weights {fingerprint}, {f'head {head}, ' if head else 'no head, '}{dim}-d)"


def _as_result(labels: np.ndarray, dists: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # squared l2 between unit vectors = 2 - 2 cos
    return labels[0].astype(np.int64), (1.0 - dists[0] / 2.0).astype(np.float32)


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _has_label(index: hnswlib.Index, label: int) -> bool:
    try:
        index.get_items([label])
        return True
    except RuntimeError:
        return False


def _temp_beside(path: Path) -> Path:
    """A fresh temp file in the target's directory (so the rename is atomic), never shared."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    return Path(name)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        _fsync(path)
    except OSError:
        pass
