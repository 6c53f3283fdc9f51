"""The crop adapter (engine/vision/crop_adapter.py): its file, its guard against another
model's vectors, and what the shipped one does to real garments cut from scenes."""

from __future__ import annotations

import numpy as np
import pytest

from engine.vision import crop_adapter as ca


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_a_fitted_adapter_saves_loads_and_moves_crops_towards_their_targets(tmp_path) -> None:
    rng = np.random.default_rng(0)
    targets = _unit(rng.normal(size=(400, 16)))
    shift = rng.normal(size=16) * 0.8  # what a scene adds to every crop
    crops = _unit(targets + shift + rng.normal(scale=0.05, size=(400, 16)))
    adapter = ca.CropAdapter.fit(crops[:300], targets[:300], "model-a", ridge=1.0)
    path = tmp_path / "a.npz"
    adapter.save(path)
    again = ca.CropAdapter.load(path)
    assert again.fingerprint == adapter.fingerprint and again.model_key == "model-a" and again.dim == 16
    moved = again.apply(crops[300:])
    assert np.allclose(np.linalg.norm(moved, axis=1), 1.0, atol=1e-5)
    before = np.mean(np.sum(crops[300:] * targets[300:], axis=1))
    after = np.mean(np.sum(moved * targets[300:], axis=1))
    assert after > before + 0.1, (before, after)


def test_a_strong_pull_to_the_identity_leaves_crops_where_they_are() -> None:
    rng = np.random.default_rng(1)
    x, y = _unit(rng.normal(size=(50, 8))), _unit(rng.normal(size=(50, 8)))
    adapter = ca.CropAdapter.fit(x, y, "m", ridge=1e6)
    assert np.allclose(adapter.apply(x), x, atol=1e-3)


def test_another_models_adapter_or_a_damaged_file_is_not_used(tmp_path) -> None:
    rng = np.random.default_rng(2)
    x = _unit(rng.normal(size=(40, 8)))
    path = tmp_path / "a.npz"
    ca.CropAdapter.fit(x, x, "model-a", ridge=1.0).save(path)
    assert ca.for_model("model-a", 8, path) is not None
    assert ca.for_model("model-b", 8, path) is None  # another model's vectors
    assert ca.for_model("model-a", 16, path) is None
    assert ca.for_model("model-a", 8, tmp_path / "absent.npz") is None
    path.write_bytes(b"not an adapter")
    assert ca.for_model("model-a", 8, path) is None  # a warning, never a crash


def test_the_shipped_adapter_brings_garments_cut_from_scenes_nearer_their_studio_shots() -> None:
    """Test-split garments (the adapter was fitted on the train split), each cut from a scene
    and shot in a studio, same colour: with the adapter a crop finds its own garment among
    the studio shots at least as often, and the ten nearest are of its class more often."""
    from engine.training import crop_adapter as training
    from engine.training import garment_scenes as gs
    from engine.training.scene_evaluation import production_embedding
    from engine.vision.backbones import load_efficientnet_lite

    backbone = load_efficientnet_lite("efficientnet-lite0")
    adapter = ca.for_model(backbone.model_key, backbone.dim)
    assert adapter is not None, "engine/vision/crop_adapter.npz is missing or not for the shipped Lite0"
    x, y = gs._fm("test")
    rng = np.random.default_rng(123)
    picks = rng.choice(len(y), 200, replace=False)
    pairs = [gs.crop_and_studio(x[i], rng) for i in picks]
    with production_embedding(backbone) as embed:
        crops, studios = embed([p[0] for p in pairs]), embed([p[1] for p in pairs])
    labels = y[picks]
    without = training.held_out_figures(crops, studios, labels)
    with_ = training.held_out_figures(adapter.apply(crops), studios, labels)
    assert with_["own_garment_in_top10"] >= without["own_garment_in_top10"], (without, with_)
    assert with_["class_p10"] > without["class_p10"] + 0.02, (without, with_)


@pytest.mark.parametrize("bad", [np.zeros((3, 4), np.float32)])
def test_a_matrix_that_is_not_square_is_refused(tmp_path, bad) -> None:
    import io
    import json

    buf = io.BytesIO()
    np.savez_compressed(buf, matrix=bad, header=np.array(json.dumps({"format": ca.FORMAT, "model_key": "m"})))
    (tmp_path / "a.npz").write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="square"):
        ca.CropAdapter.load(tmp_path / "a.npz")
