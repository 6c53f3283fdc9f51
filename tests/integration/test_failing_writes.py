"""A full or read-only data directory during ingest and index save: one clear line, no
traceback, the previous index intact, and a rerun completes once there is room.

The data directory is a real tmpfs of a few megabytes (mounting needs root, which CI
and the developers' machines have), so SQLite and the index writer meet the kernel's
real ENOSPC and EROFS, not a simulated error.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_cli import run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fill(disk: Path) -> Path:
    """Fill the disk to the last byte (what is left to SQLite's journal is nothing)."""
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * (1 << 16))
                fh.flush()
        except OSError:
            pass
    return filler


def assert_one_clear_line(out: subprocess.CompletedProcess, *words: str) -> None:
    assert out.returncode != 0
    assert "Traceback" not in out.stderr, out.stderr
    last = [line for line in out.stderr.splitlines() if line.strip()][-1]
    assert any(w in last for w in words), out.stderr


def test_a_full_disk_during_ingest_is_one_clear_line_and_loses_nothing(small_disk) -> None:
    data = small_disk / "data"
    first = run(["ingest", "fashion-mnist", "--limit", "40"], data)
    assert first.returncode == 0, first.stderr
    index = data / "index.hnsw"
    before = digest(index)

    filler = fill(small_disk)
    full = run(["ingest", "fashion-mnist", "--limit", "400"], data)
    assert_one_clear_line(full, "space", "full")
    assert digest(index) == before  # the saved index was not half-overwritten

    filler.unlink()
    about = run(["about"], data)
    assert about.returncode == 0, about.stderr
    assert "index rebuilt" not in about.stdout.lower()
    again = run(["ingest", "fashion-mnist", "--limit", "400"], data)
    assert again.returncode == 0, again.stderr
    assert "Catalogue: 400 items" in again.stdout
    about = run(["about"], data)
    assert "Catalogue: 400 items; index: 400 items" in about.stdout, about.stdout


def test_a_read_only_data_dir_is_one_clear_line(small_disk) -> None:
    data = small_disk / "data"
    assert run(["ingest", "fashion-mnist", "--limit", "20"], data).returncode == 0
    before = digest(data / "index.hnsw")
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        out = run(["ingest", "fashion-mnist", "--limit", "60"], data)
        assert_one_clear_line(out, "read-only", "read only")
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert digest(data / "index.hnsw") == before
    out = run(["ingest", "fashion-mnist", "--limit", "60"], data)
    assert out.returncode == 0 and "Catalogue: 60 items" in out.stdout, out.stderr
