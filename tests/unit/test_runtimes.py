"""The embedder on OpenVINO (engine/vision/runtimes.py), with the real runtime and the real
EfficientNet-Lite0 weights: it agrees with torch's fp32 model on real pictures, keeps the
precision plan's cut, is exported once per data dir, and torch takes over whenever
OpenVINO can't run, fails, disagrees or is slower."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from engine.vision import embedder as embedder_module
from engine.vision import runtimes
from engine.vision.embedder import BF16_MIN_COSINE, Embedder, prepare


@pytest.fixture(scope="module")
def pictures() -> np.ndarray:
    from engine.catalogue.ingest import fashion_mnist_picture, load_fashion_mnist

    images, _ = load_fashion_mnist("test")
    return np.stack([prepare(fashion_mnist_picture(images[i]), 224) for i in range(0, 4000, 50)])


@pytest.fixture
def fresh(monkeypatch):
    """No verdicts or exports remembered from other tests of this process."""
    monkeypatch.setattr(runtimes, "_VERDICTS", {})
    monkeypatch.setattr(runtimes, "_EXPORTED", {})


def embedder(backbone, tmp_path, runtime: str, **kw) -> Embedder:
    return Embedder(
        backbone, batch_size=8, max_wait_ms=0, runtime=runtime, runtime_cache_dir=tmp_path / "runtimes", **kw
    )


def test_openvino_agrees_with_fp32_on_real_pictures(backbone, tmp_path, pictures, fresh) -> None:
    emb = embedder(backbone, tmp_path, "openvino")
    try:
        assert emb.runtime == "openvino", emb.runtime_note
        assert emb.precision.endswith("on OpenVINO")
        got = emb.submit(pictures).result()
        ref = emb.call_on_worker(lambda: emb.forward(pictures, reference=True)).result()
        assert got.dtype == np.float32 and got.shape == (len(pictures), backbone.dim)
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        cosine = np.sum(got * ref, axis=1)
        assert cosine.min() >= BF16_MIN_COSINE, cosine.min()
        # The same nearest neighbours: each picture's top 10 among the others.
        top = lambda v: np.argsort(-(v @ v.T), axis=1)[:, 1:11]  # noqa: E731
        overlap = [len(set(a) & set(b)) for a, b in zip(top(ref), top(got))]
        assert np.mean(overlap) >= 9, overlap
    finally:
        emb.close()


def test_it_keeps_the_precision_plans_cut(backbone, tmp_path, fresh) -> None:
    emb = embedder(backbone, tmp_path, "openvino")
    try:
        if emb.bf16_from is None:
            pytest.skip("no native bf16 here: the plan is all fp32")
        assert emb._runtime_plan == emb.bf16_from
        model = emb._runtime_model
        assert isinstance(model, runtimes.OpenVinoModel)
        assert [p.split("'")[1] for p in model.precisions] == ["float32", "bfloat16"]
    finally:
        emb.close()


def test_the_export_is_kept_in_the_data_dir_and_reused(backbone, tmp_path, fresh) -> None:
    first = embedder(backbone, tmp_path, "openvino")
    first.close()
    exports = sorted((tmp_path / "runtimes").glob("openvino-*/part*.onnx"))
    assert exports and not list((tmp_path / "runtimes").rglob("*.tmp"))
    stamps = [p.stat().st_mtime_ns for p in exports]
    runtimes._EXPORTED.clear()  # a later start: only the data dir remembers
    second = embedder(backbone, tmp_path, "openvino")
    second.close()
    assert second.runtime == "openvino"
    assert [p.stat().st_mtime_ns for p in exports] == stamps  # read, not exported again


def test_torch_as_asked_runs_no_openvino(backbone, tmp_path) -> None:
    emb = embedder(backbone, tmp_path, "torch")
    try:
        assert emb.runtime == "torch" and emb._runtime_model is None
        assert "OpenVINO" not in emb.precision
        assert not (tmp_path / "runtimes").exists()
    finally:
        emb.close()


def test_torch_when_openvino_is_not_installed(backbone, tmp_path, monkeypatch, fresh) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino → ImportError
    emb = embedder(backbone, tmp_path, "openvino")
    try:
        assert emb.runtime == "torch"
        assert "openvino is not installed" in emb.runtime_note
    finally:
        emb.close()


def test_torch_when_the_export_fails(backbone, tmp_path, monkeypatch, fresh) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("exporter broke")

    monkeypatch.setattr(runtimes, "export_parts", broken)
    emb = embedder(backbone, tmp_path, "auto")
    try:
        assert emb.runtime == "torch" and "OpenVINO failed" in emb.runtime_note
        assert emb.embed_pixels(np.full((1, 224, 224, 3), 255, np.uint8)).shape == (1, backbone.dim)
    finally:
        emb.close()


def test_torch_when_openvino_disagrees(backbone, tmp_path, monkeypatch, fresh) -> None:
    monkeypatch.setattr(embedder_module, "BF16_GATE", 1.01)  # nothing can agree this well
    emb = embedder(backbone, tmp_path, "openvino")
    try:
        assert emb.runtime == "torch" and "disagrees" in emb.runtime_note
    finally:
        emb.close()


@pytest.mark.parametrize("faster", [True, False])
def test_auto_keeps_the_faster(backbone, tmp_path, monkeypatch, fresh, faster) -> None:
    calls = []

    def timed(ours, torch_forward, pictures):
        calls.append(len(pictures))
        return faster, {}

    monkeypatch.setattr(runtimes, "faster_than_torch", timed)
    emb = embedder(backbone, tmp_path, "auto")
    try:
        assert calls, "auto must time OpenVINO against torch"
        assert emb.runtime == ("openvino" if faster else "torch"), emb.runtime_note
    finally:
        emb.close()


def test_auto_remembers_its_verdict_in_the_data_dir(backbone, tmp_path, monkeypatch, fresh) -> None:
    """A later start (a new process: nothing in memory) reads the verdict instead of timing."""
    calls = []
    monkeypatch.setattr(runtimes, "faster_than_torch", lambda *a: calls.append(1) or (True, {"openvino 1": 1.0}))
    embedder(backbone, tmp_path, "auto").close()
    assert len(calls) == 1 and (tmp_path / "runtimes" / runtimes.VERDICTS_FILE).exists()
    runtimes._VERDICTS.clear()
    second = embedder(backbone, tmp_path, "auto")
    second.close()
    assert len(calls) == 1 and second.runtime == "openvino"


def test_auto_measures_for_real(backbone, tmp_path, fresh) -> None:
    """The real timing runs and its verdict names what serves."""
    emb = embedder(backbone, tmp_path, "auto")
    try:
        assert emb.runtime in ("openvino", "torch")
        assert emb.runtime_note.startswith(emb.runtime)
        assert len(runtimes._VERDICTS) == 1
    finally:
        emb.close()


def test_the_batch_size_is_measured_per_runtime(backbone, tmp_path, monkeypatch, fresh) -> None:
    """Batch rates remembered for torch must not be reused for OpenVINO: the key names the runtime."""
    keys = []
    real_get = embedder_module.BatchRates.get
    monkeypatch.setattr(embedder_module.BatchRates, "get", lambda self, key: keys.append(key) or real_get(self, key))
    for runtime in ("torch", "openvino"):
        Embedder(backbone, max_wait_ms=0, runtime=runtime, runtime_cache_dir=tmp_path / "runtimes").close()
    assert len(keys) == 2 and keys[0] != keys[1] and "OpenVINO" in keys[1]


def test_an_unknown_runtime_is_refused(backbone, tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown runtime"):
        embedder(backbone, tmp_path, "tensorrt")


def test_openvino_does_not_phone_home(tmp_path) -> None:
    """A fresh process that runs the embedder's OpenVINO check, imports and compiles sends no
    usage telemetry: OpenVINO's no-op stub is in use and nothing is written under ~/intel."""
    import os
    import subprocess

    code = (
        "import sys\n"
        "from engine.vision import runtimes\n"
        "assert runtimes.available() is None\n"
        "import openvino as ov\n"
        "ov.Core()\n"
        "assert 'openvino.tools.ovc.telemetry_stub' in sys.modules, sorted(m for m in sys.modules if 'telemetry' in m)\n"
    )
    env = dict(os.environ, HOME=str(tmp_path), PYTHONPATH=os.getcwd())
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    assert not (tmp_path / "intel").exists()


def test_the_setting(monkeypatch) -> None:
    from pydantic import ValidationError

    from engine.config import Settings

    monkeypatch.delenv("FASHIONBOT_RUNTIME", raising=False)  # the suite's conftest sets torch
    assert Settings().runtime == "auto"
    monkeypatch.setenv("FASHIONBOT_RUNTIME", "torch")
    assert Settings().runtime == "torch"
    monkeypatch.setenv("FASHIONBOT_RUNTIME", "onnx")
    with pytest.raises(ValidationError):
        Settings()
