"""The command line of :mod:`benchmarks.large_batch_tuning.experiment`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from benchmarks.batch_scaling import sweep
from benchmarks.large_batch_tuning.experiment import (
  BATCH_SIZE,
  NUM_TRIALS,
  PHASES,
  paths,
  run_phase,
  write_report,
)


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
    prog="python -m benchmarks.large_batch_tuning",
    description="LEGW at 64x (no tuning) against Nesterov momentum and Adam "
    f"tuned at batch {BATCH_SIZE} ({NUM_TRIALS} Halton trials each), mnist_lstm on "
    "fashion_mnist. Resumable.",
  )
  p.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
  p.add_argument("--jobs", type=int, default=1, help="runs at a time (worker processes)")
  p.add_argument("--data-dir", default=None, help="a directory of Fashion-MNIST IDX files")
  p.add_argument("--out-dir", default=sweep.DEFAULT_OUT_DIR)
  p.add_argument("--report", action="store_true", help="only write the report of what exists")
  p.add_argument("--no-progress", action="store_true")
  return p


def main(argv: Sequence[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  if not args.report:
    for phase in args.phases:
      run_phase(phase, args.out_dir, args.jobs, args.data_dir, not args.no_progress)
  print(write_report(args.out_dir))
  print(f"wrote {paths(args.out_dir)['report']}, {paths(args.out_dir)['plot']}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
