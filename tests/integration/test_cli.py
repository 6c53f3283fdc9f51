"""The `fashionbot` command as a user runs it: a real process, real files."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.pictures import BAD


def run(args: list[str], data_dir: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FASHIONBOT_")}
    environ |= {"FASHIONBOT_DATA_DIR": str(data_dir), "FASHIONBOT_ALLOW_WEIGHT_DOWNLOAD": "false"} | env
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args], capture_output=True, text=True, env=environ, timeout=600
    )


@pytest.fixture
def data_dir(catalogue_dir, tmp_path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(catalogue_dir, target)
    return target


def test_recommend_json_and_text(data_dir, tmp_path, photo_of) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(photo_of("Trouser"))
    out = run(["recommend", str(photo), "--json"], data_dir)
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    assert payload["backbone"] == "efficientnet-lite0"
    assert len(payload["items"]) == 10
    assert set(payload["items"][0]) >= {"rank", "id", "title", "url", "image", "price", "currency", "category", "score"}
    assert {"garments", "no_garment", "photo_size", "garment"} <= set(payload)
    assert sum(i["category"] == "Trouser" for i in payload["items"]) >= 8
    text = run(["recommend", str(photo)], data_dir)
    lines = text.stdout.splitlines()
    assert text.returncode == 0 and lines[0].startswith("I see ") and lines[1].startswith("1. ")
    assert "% similar" in text.stdout
    # -k has no default of its own: FASHIONBOT_TOP_K decides, as on the bots
    three = run(["recommend", str(photo), "--json"], data_dir, FASHIONBOT_TOP_K="3")
    assert three.returncode == 0, three.stderr
    assert len(json.loads(three.stdout)["items"]) == 3


def test_about_says_which_backbone_and_why(data_dir) -> None:
    out = run(["about"], data_dir)
    assert out.returncode == 0, out.stderr
    assert "efficientnet-lite0" in out.stdout and "Catalogue: 2000 items" in out.stdout
    auto = run(["about"], data_dir, FASHIONBOT_BACKBONE="auto")
    assert "auto fell back to efficientnet-lite0" in auto.stdout


def test_bad_photo_and_empty_catalogue_give_one_clear_line(tmp_path) -> None:
    photo = tmp_path / "x.jpg"
    photo.write_bytes(BAD["text named .jpg"])
    empty = tmp_path / "empty"
    out = run(["recommend", str(photo)], empty)
    assert out.returncode == 1 and "catalogue is empty" in out.stderr and "Traceback" not in out.stderr
    missing = run(["recommend", str(tmp_path / "nope.jpg")], empty)
    assert missing.returncode == 2 and "Can't read" in missing.stderr


def test_ingest_twice_embeds_nothing_twice(tmp_path) -> None:
    data = tmp_path / "d"
    first = run(["ingest", "fashion-mnist", "--limit", "20"], data)
    assert first.returncode == 0, first.stderr
    assert "20 added" in first.stdout
    second = run(["ingest", "fashion-mnist", "--limit", "20"], data)
    assert "0 added, 20 already in the catalogue" in second.stdout


def test_resnet50_from_a_weights_file_and_reindex(tmp_path, photo_of) -> None:
    """The mission's backbone: torchvision ResNet-50, 2048-d. ImageNet weights can't be
    had offline, so this uses a state dict saved from torchvision's own constructor
    (random weights): what is tested is the loading, fingerprinting and the refusal
    of an index built with another backbone, not ResNet-50's accuracy."""
    import torch
    from torchvision.models import resnet50

    weights = tmp_path / "resnet50.pth"
    torch.manual_seed(0)
    torch.save(resnet50(weights=None).state_dict(), weights)
    data = tmp_path / "d"
    assert run(["ingest", "fashion-mnist", "--limit", "12"], data).returncode == 0  # Lite0 index
    env = {"FASHIONBOT_BACKBONE": "resnet50", "FASHIONBOT_WEIGHTS": str(weights)}
    photo = tmp_path / "p.jpg"
    photo.write_bytes(photo_of("Bag"))
    refused = run(["recommend", str(photo)], data, **env)
    assert refused.returncode == 1 and "fashionbot reindex" in refused.stderr
    reindexed = run(["reindex"], data, **env)
    assert reindexed.returncode == 0 and "resnet50: 12 items" in reindexed.stdout
    assert "12/12" in reindexed.stderr and "100%" in reindexed.stderr  # a real bar: the total was known
    about = run(["about"], data, **env)
    assert "resnet50 (2048-d" in about.stdout and str(weights) in about.stdout
    ok = run(["recommend", str(photo), "--json"], data, **env)
    assert ok.returncode == 0 and json.loads(ok.stdout)["backbone"] == "resnet50"


# ---- issue 18: the command's own surface -------------------------------------------------------
def test_every_argument_has_a_help_text() -> None:
    """``--help`` is the manual: an argument without a line there is undocumented."""
    from bot.cli import build_parser

    missing: list[str] = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:  # argparse has no public walk over sub-commands
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "fashionbot")
    assert missing == []


def test_version_and_verbosity(tmp_path) -> None:
    from importlib.metadata import version

    out = run(["--version"], tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == f"fashionbot {version('fashionbot')}"
    probe = "import logging, sys; from bot.cli import main; main(sys.argv[1:]); print(logging.getLogger().level)"
    levels = []
    for flags in ([], ["-v"], ["-vv"]):  # a missing photo ends the command before any model loads
        done = subprocess.run(
            [sys.executable, "-c", probe, *flags, "recommend", str(tmp_path / "none.jpg")],
            capture_output=True, text=True, timeout=120,
            env={k: v for k, v in os.environ.items() if not k.startswith("FASHIONBOT_")},
        )  # fmt: skip
        assert "Can't read" in done.stderr, done.stderr
        levels.append(int(done.stdout.split()[-1]))
    assert levels == [logging.WARNING, logging.INFO, logging.DEBUG]


def test_invalid_settings_are_one_line_per_bad_variable(tmp_path) -> None:
    bad = {"FASHIONBOT_RATE_LIMIT_PER_MINUTE": "abc", "FASHIONBOT_WEB_PORT": "x", "FASHIONBOT_STYLE_WEIGHT": "2"}
    out = run(["about"], tmp_path, **bad)
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.splitlines()
    assert sorted(line.split(":")[0] for line in lines) == sorted(f"Invalid setting {name}" for name in bad)
    assert "Traceback" not in out.stderr and "validation error" not in out.stderr


def test_train_crop_adapter_fits_a_file_the_service_would_use(tmp_path) -> None:
    """A small fit, as a user would run it with ``--pairs``: the file loads, names the serving
    model, and the figures on its held-out pairs are printed."""
    from engine.vision import crop_adapter
    from engine.vision.backbones import load_efficientnet_lite

    out = tmp_path / "adapter.npz"
    done = run(["train-crop-adapter", "--pairs", "120", "--out", str(out)], tmp_path / "data")
    assert done.returncode == 0, done.stderr
    assert "crops moved by the adapter" in done.stdout and "held out" in done.stdout
    assert "Shelf classifier: the right group for" in done.stdout
    backbone = load_efficientnet_lite("efficientnet-lite0")
    adapter = crop_adapter.for_model(backbone.model_key, backbone.dim, out)
    assert adapter is not None and adapter.meta["report"]["held_out"] == 24
    assert adapter.shelf is not None and adapter.shelf.weights.shape == (backbone.dim, 10)
    assert 0.0 <= adapter.meta["report"]["held_out_shelf_group_accuracy"] <= 1.0
    refused = run(["train-crop-adapter", "--pairs", "10", "--out", str(out)], tmp_path / "data")
    assert refused.returncode == 2 and "at least 50" in refused.stderr
