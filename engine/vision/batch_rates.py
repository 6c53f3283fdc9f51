"""Remembered batch-size measurements (see Embedder._choose_batch_size).

Timing batches of 1, 2, 4 … 32 costs 2–6 s at start-up. A bot pays that once, but a
one-shot command (`fashionbot recommend photo.jpg`) would pay it every time, so the
rates are kept in memory for the process and in a small JSON file in the data
directory. The key names everything the rates depend on, the machine included: a
data directory copied to another computer measures again.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from pathlib import Path

import torch

log = logging.getLogger(__name__)

_IN_PROCESS: dict[str, dict[int, float]] = {}


def machine_key() -> str:
    """The CPU, its core count, torch's version and thread count."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}/{os.cpu_count()} cores/torch {torch.__version__}/{torch.get_num_threads()} threads"


class BatchRates:
    """Images/s by batch size, remembered per key in memory and, given a path, on disk."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def get(self, key: str) -> dict[int, float] | None:
        if key in _IN_PROCESS:
            return _IN_PROCESS[key]
        stored = self._read().get(key)
        try:
            rates = {int(b): float(r) for b, r in stored.items()} if isinstance(stored, dict) else None
        except (TypeError, ValueError):
            rates = None  # a hand-edited or damaged entry: measure again
        if rates and all(r > 0 for r in rates.values()):
            _IN_PROCESS[key] = rates
            return rates
        return None

    def put(self, key: str, rates: dict[int, float]) -> None:
        _IN_PROCESS[key] = rates
        if self.path is None:
            return
        entries = self._read()
        entries[key] = {str(b): r for b, r in rates.items()}
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(entries, indent=1))
            os.replace(tmp, self.path)  # whole or not at all: a crash can't leave half a file
        except OSError as err:  # a read-only data dir only costs the next start the measurement
            log.warning("could not save batch-size measurements to %s: %s", self.path, err)

    def _read(self) -> dict:
        if self.path is None or not self.path.exists():
            return {}
        try:
            entries = json.loads(self.path.read_text())
        except (OSError, ValueError) as err:
            log.warning("ignoring unreadable %s (%s): measuring again", self.path, err)
            return {}
        return entries if isinstance(entries, dict) else {}
