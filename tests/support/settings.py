"""Settings for tests and benchmarks: a private data dir, the offline backbone, no downloads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.config import Settings

CATALOGUE_SIZE = 2000  # Fashion-MNIST training images in the shared test catalogue


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values = {"data_dir": data_dir, "backbone": "efficientnet-lite0", "allow_weight_download": False} | overrides
    return Settings(**values)
