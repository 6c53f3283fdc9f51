"""`python -m bench all [--quick]`: the performance benchmarks of issue #8 (see bench/bench_perf.py).

python -m bench all --quick        # a few minutes; the index at 100,000 items
python -m bench all                # the full set; the index at 1,000,000 items
python -m bench latency index      # some sections only
python -m bench postgres           # PostgreSQL beside SQLite, several workers (bench/bench_postgres.py)
"""

from __future__ import annotations

import argparse

from bench.bench_perf import SECTIONS, run


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sections", nargs="+", choices=("all", *SECTIONS, "postgres"))
    parser.add_argument("--quick", action="store_true", help="smaller sizes; the index at 100,000 items")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="embedder batch size (default: FASHIONBOT_BATCH_SIZE, or measured at start-up)",
    )
    parser.add_argument(
        "--precision",
        default=None,
        choices=("auto", "fp32", "bf16"),
        help="our path's precision (default auto: bf16 from the stage where it agrees with fp32, on CPUs with native bf16)",
    )
    parser.add_argument("--no-compile", action="store_true", help="run our model eagerly (no torch.compile)")
    args = parser.parse_args()
    sections = list(SECTIONS) if "all" in args.sections else [s for s in SECTIONS if s in args.sections]
    if sections:
        run(sections, args.quick, batch_size=args.batch_size, precision=args.precision, compile=not args.no_compile)
    if "postgres" in args.sections:  # its own server and catalogue: not part of "all" (issue #8's set)
        from bench.bench_postgres import run_cli

        run_cli(["--catalogue", "500", "--queries", "40", "--repeats", "1"] if args.quick else [])


if __name__ == "__main__":
    main()
