"""The garment scan on OpenVINO (engine/vision/scan_runtime.py): real weights, the real
runtime, real scenes. It is kept only where its maps agree with torch's, and a finder that
scans there finds what torch's finds."""

from __future__ import annotations

import pytest
import torch

from engine.training import garment_scenes as gs
from engine.vision import garments as gm
from engine.vision import scan_runtime


@pytest.fixture(scope="module")
def torch_finder() -> gm.GarmentFinder:
    torch.set_num_threads(2)
    return gm.GarmentFinder()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, torch_finder) -> tuple[gm.GarmentFinder, str, object]:
    cache = tmp_path_factory.mktemp("runtimes")
    finder = gm.GarmentFinder(torch_finder.model)
    note = scan_runtime.accelerate(finder, cache)
    return finder, note, cache


def test_the_export_agrees_with_torch_and_is_kept_in_the_data_dir(exported, torch_finder) -> None:
    finder, note, cache = exported
    files = list(cache.glob("scan-*.onnx"))  # type: ignore[attr-defined]
    assert len(files) == 1, note
    scan = scan_runtime.OpenVinoScan(files[0], 2)
    for x in scan_runtime.calibration_inputs(torch_finder):
        assert scan_runtime._difference(torch_finder, scan, x) < scan_runtime.AGREE
    # The decision is the measurement's: either way it says why, and only "openvino" sets it.
    assert note.startswith(("openvino:", "torch: OpenVINO's scan was not faster")), note
    assert (finder.runtime is not None) == note.startswith("openvino:")
    mtime = files[0].stat().st_mtime_ns
    again = gm.GarmentFinder(torch_finder.model)
    scan_runtime.accelerate(again, cache)
    assert files[0].stat().st_mtime_ns == mtime  # read back, not exported again


def test_an_openvino_scan_finds_what_torch_finds(exported, torch_finder) -> None:
    finder, _, cache = exported
    ov_finder = gm.GarmentFinder(torch_finder.model)
    ov_finder.runtime = scan_runtime.OpenVinoScan(next(cache.glob("scan-*.onnx")), 2)  # type: ignore[attr-defined]
    samples = gs.outfit_set(4) + gs.garment_scene_set(4) + gs.no_garment_set(4)
    for sample in samples:
        a, b = torch_finder.scan(sample.image), ov_finder.scan(sample.image)
        assert [g.group for g in a.garments] == [g.group for g in b.garments]
        assert a.product_shot == b.product_shot
        assert abs(a.clothing_score - b.clothing_score) < 1e-3
        for ga, gb in zip(a.garments, b.garments):
            assert ga.box.iou(gb.box) > 0.99


def test_without_openvino_torch_scans(monkeypatch, torch_finder, tmp_path) -> None:
    monkeypatch.setattr(scan_runtime, "available", lambda: "openvino is not installed")
    finder = gm.GarmentFinder(torch_finder.model)
    note = scan_runtime.accelerate(finder, tmp_path)
    assert finder.runtime is None and "openvino is not installed" in note
    assert not list(tmp_path.iterdir())


def test_a_failing_export_leaves_torch_scanning(monkeypatch, torch_finder, tmp_path) -> None:
    def broken(finder, path):
        raise RuntimeError("exporter gone")

    monkeypatch.setattr(scan_runtime, "export", broken)
    finder = gm.GarmentFinder(torch_finder.model)
    note = scan_runtime.accelerate(finder, tmp_path)
    assert finder.runtime is None and note == "torch: OpenVINO failed (RuntimeError)"
    assert finder.scan(gs.outfit_set(1)[0].image).garments  # and it still finds garments
