"""`python -m bench all [--quick]`: the performance figures of docs/benchmarks.md.

python -m bench all --quick        # a few minutes: small feeds and catalogues, the index at 100,000
python -m bench all                # the full set (about 40 minutes on 2 cores)
python -m bench shipped            # the headline only: the product as shipped against the baseline
python -m bench latency index      # some engine sections only (bench/bench_perf.py)
python -m bench postgres           # PostgreSQL beside SQLite, several workers (bench/bench_postgres.py)

``all`` runs, one after another (never two at once: the machine's cores are the resource measured):

- ``shipped`` (bench/bench_shipped.py): the product as shipped, from its own entry points, against
  the usual ResNet-50 recommender as its users run it and the obvious fast path, each in its own
  process: ingest, latency against catalogue size (and its plot), 50 users at once;
- ``served-thread`` (bench/bench_served_thread.py): Lite0 at batch 1 on the served path against
  the main thread;
- the engine sections of bench/bench_perf.py (ingest, latency, concurrency, index, agreement): the
  engine's parts against the baseline's, in one process, with the same ResNet-50 on both sides.

Every result file notes the machine's load average before and after.
"""

from __future__ import annotations

import argparse

from bench.bench_perf import SECTIONS, run

HEADLINE = ("shipped", "served-thread")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sections", nargs="+", choices=("all", *HEADLINE, *SECTIONS, "postgres"))
    parser.add_argument("--quick", action="store_true", help="smaller sizes; the index at 100,000 items")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="engine sections: embedder batch size (default: FASHIONBOT_BATCH_SIZE, or measured at start-up)",
    )
    parser.add_argument(
        "--precision",
        default=None,
        choices=("auto", "fp32", "bf16"),
        help="engine sections: our path's precision (default auto, as shipped)",
    )
    parser.add_argument(
        "--compile", action="store_true", help="engine sections: torch.compile our model (not the shipped default)"
    )
    args = parser.parse_args()
    everything = "all" in args.sections
    if everything or "shipped" in args.sections:
        from bench.bench_shipped import run as run_shipped

        run_shipped(args.quick)
    if everything or "served-thread" in args.sections:
        from bench.bench_served_thread import run_cli as run_served_thread

        run_served_thread(["--rounds", "2", "--images", "40"] if args.quick else [])
    sections = list(SECTIONS) if everything else [s for s in SECTIONS if s in args.sections]
    if sections:
        run(sections, args.quick, batch_size=args.batch_size, precision=args.precision, compile=args.compile)
    if "postgres" in args.sections:  # its own server and catalogue: not part of "all"
        from bench.bench_postgres import run_cli

        run_cli(["--catalogue", "500", "--queries", "40", "--repeats", "1"] if args.quick else [])


if __name__ == "__main__":
    main()
