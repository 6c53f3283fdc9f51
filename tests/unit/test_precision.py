"""Mixed precision by stage (engine/vision/precision.py): the stage split is exact, the bf16
part really is bf16, and what the embedder serves agrees with fp32 on real pictures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.vision.embedder import BF16_MIN_COSINE, Embedder, cpu_has_native_bf16, fold_batch_norms, prepare
from engine.vision.precision import PrecisionPlans, StagedModel, model_stages


def _resnet50_random():
    from torchvision.models import resnet50

    from engine.vision.backbones import LoadedBackbone, _Pooled

    torch.manual_seed(0)
    return LoadedBackbone(
        name="resnet50",
        model=_Pooled(resnet50(weights=None)).eval(),
        dim=2048,
        input_size=224,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        weights_source="random",
        fingerprint="random",
    )


@pytest.fixture(scope="module")
def pictures():
    from engine.catalogue.ingest import fashion_mnist_picture, load_fashion_mnist

    images, _ = load_fashion_mnist("test")
    return np.stack([prepare(fashion_mnist_picture(images[i]), 224) for i in range(0, 2400, 100)])


def _normalised(backbone, pixels: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0
    mean, std = torch.tensor(backbone.mean).view(1, 3, 1, 1), torch.tensor(backbone.std).view(1, 3, 1, 1)
    return (x - mean) / std


@pytest.mark.parametrize("which", ["lite0", "resnet50"])
def test_stages_in_order_are_the_model(which, backbone, pictures) -> None:
    bb = backbone if which == "lite0" else _resnet50_random()
    body, end = model_stages(bb.model)
    assert len(body) == (18 if which == "lite0" else 17)
    x = _normalised(bb, pictures[:4])
    with torch.inference_mode():
        whole = bb.model(x)
        staged = StagedModel(body, [], end)(x)
    assert torch.allclose(whole, staged, atol=1e-5)


def test_a_mixed_model_runs_its_first_stages_in_fp32_and_the_rest_in_bf16(backbone) -> None:
    plans = PrecisionPlans(backbone.model, fold_batch_norms)
    mixed = plans.model(7)
    assert {p.dtype for p in mixed.fp32.parameters()} == {torch.float32}
    assert {p.dtype for p in mixed.bf16.parameters()} == {torch.bfloat16}
    assert len(mixed.fp32) == 7 and len(mixed.bf16) == plans.stages - 7
    # the fp32 reference shares nothing in bf16, and the backbone itself is untouched
    assert {p.dtype for p in plans.model(None).parameters()} == {torch.float32}
    assert {p.dtype for p in backbone.model.parameters()} == {torch.float32}


def test_the_served_features_agree_with_fp32_on_real_pictures(backbone, pictures) -> None:
    """The promise behind the speed: whatever plan start-up picks on this CPU, its features
    agree with the fp32 model (min cosine >= 0.999) on Fashion-MNIST pictures it never saw."""
    emb = Embedder(backbone, precision="auto", max_wait_ms=0)
    try:
        fast = np.concatenate([emb.forward(pictures[s : s + 8]) for s in range(0, len(pictures), 8)])
        ref = np.concatenate([emb.forward(pictures[s : s + 1], reference=True) for s in range(len(pictures))])
        assert float(np.min(np.sum(fast * ref, axis=1))) >= BF16_MIN_COSINE
        if cpu_has_native_bf16():
            # Lite0 in bf16 everywhere disagrees (min cosine ~0.997), so the plan must keep
            # the first stages in fp32 and still use bf16 for the rest.
            assert emb.bf16_from is not None and 0 < emb.bf16_from < emb._plans.stages, emb.precision
            assert "bf16 from stage" in emb.precision
        else:
            assert emb.precision == "fp32"
    finally:
        emb.close()


def test_bf16_everywhere_is_what_the_plan_avoids(backbone, pictures) -> None:
    """The measurement the plan rests on: forced bf16 everywhere moves Lite0's features
    more than the gate allows, on the same pictures."""
    forced = Embedder(backbone, precision="bf16", max_wait_ms=0)
    try:
        got, ref = forced.forward(pictures), forced.forward(pictures, reference=True)
        assert forced.precision == "bf16"
        assert float(np.min(np.sum(got * ref, axis=1))) < BF16_MIN_COSINE
    finally:
        forced.close()


def test_fp32_precision_serves_the_reference(backbone, pictures) -> None:
    emb = Embedder(backbone, precision="fp32", max_wait_ms=0)
    try:
        assert emb.precision == "fp32" and emb.model is emb.reference
        np.testing.assert_allclose(emb.forward(pictures[:3]), emb.forward(pictures[:3], reference=True))
    finally:
        emb.close()


def test_calibration_and_other_torch_work_run_on_the_model_thread(backbone, pictures) -> None:
    """One thread (one OpenMP team) does the embedder's torch work: calls queued with
    call_on_worker run there, in order with batches, and their errors reach the caller."""
    import threading

    emb = Embedder(backbone, precision="fp32", max_wait_ms=0)
    try:
        batch = emb.submit(pictures[:2])
        name = emb.call_on_worker(lambda: threading.current_thread().name)
        assert name.result(timeout=60) == "embedder" and batch.done()
        failing = emb.call_on_worker(lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            failing.result(timeout=60)
        assert emb.embed_pixels(pictures[:1]).shape == (1, 1280)  # the worker lived on
    finally:
        emb.close()


def test_a_lone_photo_runs_whichever_model_start_up_timed_faster(backbone, pictures) -> None:
    """Eager bf16 can be slower than fp32 for one image (Lite0's depthwise convolutions);
    start-up times both, and a lone photo then runs the faster one. Either way its
    features agree with fp32."""
    emb = Embedder(backbone, precision="auto", max_wait_ms=0)
    try:
        one = emb.forward(pictures[:1])
        ref = emb.forward(pictures[:1], reference=True)
        if emb.small_batch_fp32:
            np.testing.assert_array_equal(one, ref)
        assert float(np.sum(one * ref)) >= BF16_MIN_COSINE
        if not cpu_has_native_bf16():
            assert not emb.small_batch_fp32  # nothing to time: fp32 everywhere
    finally:
        emb.close()
