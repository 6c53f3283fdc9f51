"""Load through the real clients (issue 16's campaign): the figures behind docs/reliability.md.

    .venv/bin/python bench/bench_load.py            # both scenarios, then print bench/results/load.json
    .venv/bin/python bench/bench_load.py telegram   # one of them: telegram | web

The scenarios are the load tests themselves, so what CI asserts and what the docs
quote are one measurement:

* ``telegram``: tests/integration/test_telegram_load.py. 200 users send a photo at
  the same moment through python-telegram-bot (the real ``run_telegram``, long
  polling, Telegram's 30 requests/s flood limit) against the fake Bot API in its own
  thread, over the real engine.
* ``web``: tests/integration/test_load_web.py. 200 browsers upload a photo to the web
  chat at the same moment (each its own cookie jar and address, behind a trusted
  proxy); the chat takes 16 uploads at once and answers the rest with a friendly 503
  (``retry_after``), which the client honours and retries until served.

Each test records its section (answered, lost, retries, latency percentiles, the
event loop's longest stalls, peak RSS) with :func:`record` into
``bench/results/load.json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "load.json"
SCENARIOS = {
    "telegram": "tests/integration/test_telegram_load.py",
    "web": "tests/integration/test_load_web.py",
}


def record(section: str, figures: dict[str, Any]) -> Path:
    """Merge one scenario's figures into bench/results/load.json (other sections kept)."""
    import os
    import platform
    import time

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    try:
        current = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        current = {}
    current[section] = {
        **figures,
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        },
    }
    RESULTS.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    return RESULTS


def main(argv: list[str]) -> int:
    chosen = argv or list(SCENARIOS)
    unknown = [a for a in chosen if a not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s) {unknown}; choose from {sorted(SCENARIOS)}", file=sys.stderr)
        return 2
    tests = [SCENARIOS[a] for a in chosen]
    code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", *tests], cwd=ROOT)
    if RESULTS.exists():
        print(RESULTS.read_text())
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
