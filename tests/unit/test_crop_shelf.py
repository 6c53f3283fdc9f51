"""The crop shelf (engine/vision/crop_shelf.py): which shelf a garment cut from a photo is
searched on, its file inside the crop adapter's, and what the shipped one does to real
garments cut from scenes."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from engine.vision import crop_adapter as ca
from engine.vision.crop_shelf import SHELF_SURE, TRUST_FINDER_GROUP, CropShelf, ShelfChoice, ShelfVerdict, shelf_for
from engine.vision.garment_vocabulary import FM_GROUPS


def _clusters(n: int, d: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors around one centre per Fashion-MNIST class, and their classes."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, d))
    labels = rng.integers(0, 10, n)
    x = centres[labels] + rng.normal(scale=0.4, size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


def test_a_fitted_shelf_names_each_crops_group_and_the_word_of_its_class() -> None:
    x, y = _clusters(600)
    shelf = CropShelf.fit(x[:500], y[:500])
    assert shelf.weights.shape == (24, 10) and shelf.bias.shape == (10,)
    p = shelf.probabilities(x[500:])
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-5) and (p >= 0).all()
    verdicts = shelf.verdicts(x[500:])
    assert shelf.group_accuracy(x[500:], y[500:]) >= 0.95
    sneakers = [v for v, c in zip(verdicts, y[500:]) if c == 7]
    assert sneakers and all(v.group == "shoes" and v.word == "sneaker" for v in sneakers)
    assert all(0.0 <= v.probability <= 1.0 for v in verdicts)


def test_a_shelf_that_learned_nothing_is_no_better_than_chance() -> None:
    x, _ = _clusters(600, seed=1)
    shuffled = np.random.default_rng(2).integers(0, 10, 600)  # classes unrelated to the vectors
    shelf = CropShelf.fit(x[:500], shuffled[:500])
    assert shelf.group_accuracy(x[500:], shuffled[500:]) < 0.6


def test_the_finder_keeps_its_group_when_it_is_sure_and_the_shelf_decides_when_it_is_not() -> None:
    dress = ShelfVerdict("dress", "dress", 0.9)
    assert shelf_for("top", "T-shirt", TRUST_FINDER_GROUP, dress) == ShelfChoice("top", None, ("top",))  # sure
    assert shelf_for("top", "T-shirt", 0.99, dress) == ShelfChoice("top", None, ("top",))
    # unsure: the shelf's group and word, searched on its shelf alone
    assert shelf_for("top", "T-shirt", 0.5, dress) == ShelfChoice("dress", "dress", ("dress",))
    assert shelf_for("top", "T-shirt", 0.5, None) == ShelfChoice("top", None, None)  # no shelf: the finder's rule
    agreed = shelf_for("shoes", "sneaker", 0.3, ShelfVerdict("shoes", "sandal", 0.6))
    assert agreed == ShelfChoice("shoes", None, ("shoes",))  # agreed: the finder's word stays
    # a garment Lite0's ImageNet classes named (a suit): real clothes, the finder's group stands
    suit = shelf_for("outerwear", "suit", 0.59, ShelfVerdict("top", "T-shirt", 0.34))
    assert suit == ShelfChoice("outerwear", None, ("outerwear",))
    # an unsure classifier does not overrule an unsure finder (a real photo's shirt and tie, 0.34 a bag)
    shirt = shelf_for("top", "T-shirt", 0.37, ShelfVerdict("bag", "bag", SHELF_SURE - 0.01))
    assert shirt == ShelfChoice("top", None, ("top",))
    assert shelf_for("top", "T-shirt", 0.37, ShelfVerdict("bag", "bag", SHELF_SURE)) == ShelfChoice(
        "bag", "bag", ("bag",)
    )


def test_the_shelf_travels_in_the_adapters_file_and_an_older_file_has_none(tmp_path) -> None:
    x, y = _clusters(300)
    adapter = ca.CropAdapter.fit(x, x, "model-a", ridge=1.0)
    old = tmp_path / "old.npz"
    adapter.save(old)
    assert ca.CropAdapter.load(old).shelf is None  # a file fitted before the shelf: the finder's groups
    shelf = CropShelf.fit(adapter.apply(x), y)
    path = tmp_path / "a.npz"
    adapter.with_shelf(shelf).save(path)
    again = ca.for_model("model-a", 24, path)
    assert again is not None and again.shelf is not None and again.fingerprint == adapter.fingerprint
    assert [v.group for v in again.shelf.verdicts(x[:50])] == [v.group for v in shelf.verdicts(x[:50])]


def test_a_shelf_of_the_wrong_size_is_refused(tmp_path) -> None:
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        matrix=np.eye(8, dtype=np.float16),
        header=np.array(json.dumps({"format": ca.FORMAT, "model_key": "m"})),
        shelf_weights=np.zeros((16, 10), np.float32),
        shelf_bias=np.zeros(10, np.float32),
    )
    (tmp_path / "a.npz").write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="shelf"):
        ca.CropAdapter.load(tmp_path / "a.npz")
    assert ca.for_model("m", 8, tmp_path / "a.npz") is None  # served: a warning, crops as they are


def test_the_shipped_shelf_names_the_group_of_test_split_garments_cut_from_scenes() -> None:
    """Test-split garments (the shelf was fitted on the train split) cut from scenes as the
    finder's crops show them, moved by the shipped adapter: the shelf names their group far
    more often than the commonest group would (tops: 3 of the 10 classes)."""
    from engine.training import garment_scenes as gs
    from engine.training.scene_evaluation import production_embedding
    from engine.vision.backbones import load_efficientnet_lite

    backbone = load_efficientnet_lite("efficientnet-lite0")
    adapter = ca.for_model(backbone.model_key, backbone.dim)
    assert adapter is not None and adapter.shelf is not None, "engine/vision/crop_adapter.npz has no shelf"
    x, y = gs._fm("test")
    rng = np.random.default_rng(321)
    picks = rng.choice(len(y), 150, replace=False)
    crops = [gs.crop_and_studio(x[i], rng)[0] for i in picks]
    with production_embedding(backbone) as embed:
        moved = adapter.apply(embed(crops))
    accuracy = adapter.shelf.group_accuracy(moved, y[picks])
    commonest = max(np.mean([FM_GROUPS[int(c)] == g for c in y[picks]]) for g in set(FM_GROUPS))
    assert accuracy >= 0.8 and accuracy > commonest + 0.3, (accuracy, commonest)
