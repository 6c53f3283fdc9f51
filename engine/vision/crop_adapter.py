"""The crop adapter: a garment cut from a photo, moved towards its product shot (issue 15).

A garment's crop carries its scene with it: background around the garment, the light of
the room, a box a little off. Its vector lies away from the catalogue's product shots, and
a garment in a scene is found less well than the same garment photographed in a studio. A
linear map ``W`` (the serving model's dimension squared), fitted by ridge regression
*towards the identity* on pairs made offline (``fashionbot train-crop-adapter``: a garment
cut from a scene; the same garment, same colour, on a plain studio background), moves a
crop's vector towards where its product shot's lies.

Only crops are moved: found garments and regions the user draws. Whole photos, product
shots and the catalogue are not, so the clean protocol is untouched. The target keeps the
garment's colour: an adapter fitted to Fashion-MNIST's grey catalogue shots instead
learned to ignore colour (the same garment among 1,000 coloured studio shots fell from
87.7 % to 59.3 % in the top 10; docs/benchmarks.md).

The same file carries the crop shelf (engine/vision/crop_shelf.py), a classifier of the
moved vectors fitted on the same crops: which shelf a garment the finder is unsure of is
shown and searched on. Files without it still load (the finder's groups are used).

The file names the model its vectors belong to (``LoadedBackbone.model_key``); another
model (a trained head, ResNet-50) gets no adapter until one is fitted for it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from engine.vision.crop_shelf import CropShelf

log = logging.getLogger(__name__)

FORMAT = "fashionbot-crop-adapter/1"
SHIPPED = Path(__file__).with_name("crop_adapter.npz")  # fitted for the plain ImageNet Lite0


@dataclass(frozen=True)
class CropAdapter:
    matrix: np.ndarray  # (d, d) float32: a crop's vector v becomes v @ matrix, then unit length
    model_key: str
    fingerprint: str
    meta: dict = field(default_factory=dict)
    shelf: CropShelf | None = None  # which shelf a moved crop belongs on (engine/vision/crop_shelf.py)

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[0])

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Rows of ``vectors`` moved and made unit length again (float32)."""
        moved = np.asarray(vectors, dtype=np.float32) @ self.matrix
        return moved / np.maximum(np.linalg.norm(moved, axis=1, keepdims=True), 1e-12)

    @classmethod
    def fit(
        cls, crops: np.ndarray, targets: np.ndarray, model_key: str, ridge: float, meta: dict | None = None
    ) -> CropAdapter:
        """argmin_W |crops·W − targets|² + ridge·|W − I|²: without evidence, a crop stays put."""
        x = np.asarray(crops, dtype=np.float64)
        d = x.shape[1]
        eye = np.eye(d)
        w = np.linalg.solve(x.T @ x + ridge * eye, x.T @ np.asarray(targets, dtype=np.float64) + ridge * eye)
        matrix = w.astype(np.float16).astype(np.float32)  # what the file keeps
        return cls(matrix, model_key, _fingerprint(matrix), dict(meta or {}, ridge=ridge))

    def with_shelf(self, shelf: CropShelf | None) -> CropAdapter:
        return replace(self, shelf=shelf)

    def save(self, path: Path) -> None:
        buf = io.BytesIO()
        arrays: dict[str, np.ndarray] = {
            "matrix": self.matrix.astype(np.float16),
            "header": np.array(json.dumps({"format": FORMAT, "model_key": self.model_key, "meta": self.meta})),
        }
        if self.shelf is not None:
            arrays |= {"shelf_weights": self.shelf.weights, "shelf_bias": self.shelf.bias}
        np.savez_compressed(buf, allow_pickle=False, **arrays)
        Path(path).write_bytes(buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> CropAdapter:
        with np.load(Path(path), allow_pickle=False) as blob:
            header = json.loads(str(blob["header"]))
            if header.get("format") != FORMAT:
                raise ValueError(f"{path} is not a crop adapter ({header.get('format')!r})")
            matrix = blob["matrix"].astype(np.float32)
            shelf = None
            if "shelf_weights" in blob.files:  # files fitted before 3 December have none
                shelf = CropShelf(blob["shelf_weights"].astype(np.float32), blob["shelf_bias"].astype(np.float32))
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"{path}: the adapter is not a square matrix ({matrix.shape})")
        if shelf is not None and shelf.weights.shape != (matrix.shape[0], len(shelf.bias)):
            raise ValueError(f"{path}: the shelf classifier does not fit the adapter ({shelf.weights.shape})")
        return cls(matrix, str(header["model_key"]), _fingerprint(matrix), header.get("meta", {}), shelf)


def for_model(model_key: str, dim: int, path: Path | None = SHIPPED) -> CropAdapter | None:
    """The adapter fitted for ``model_key``'s vectors, or None (crops searched as they are)."""
    if path is None or not Path(path).is_file():
        return None
    try:
        adapter = CropAdapter.load(Path(path))
    except (OSError, ValueError, KeyError) as err:
        log.warning("crop adapter %s unreadable (%s): garment crops are searched as they are", path, err)
        return None
    if adapter.model_key != model_key or adapter.dim != dim:
        log.info("crop adapter %s is for %s, not %s: not used", path, adapter.model_key, model_key)
        return None
    return adapter


def _fingerprint(matrix: np.ndarray) -> str:
    return hashlib.sha256(matrix.astype(np.float16).tobytes()).hexdigest()[:16]
