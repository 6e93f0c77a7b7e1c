"""The command line of :mod:`benchmarks.paper_methods.experiments`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

import jax

from benchmarks import RUNS_DIR
from benchmarks.paper_methods import experiments
from benchmarks.paper_methods.experiments import batch_schedule_experiment, discard_experiment


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
    prog="python -m benchmarks.paper_methods", description=experiments.__doc__
  )
  p.add_argument("experiment", nargs="?", choices=("discard", "batch-schedule"))
  p.add_argument("--epochs", type=int, default=12, help="batch-schedule: epochs")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out-dir", default=RUNS_DIR, help="default: benchmarks/runs/ (untracked)")
  p.add_argument(
    "--report", default=None, metavar="FILE.json", help="print the table of a results file"
  )
  return p


def main(argv: Sequence[str] | None = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  if args.report:
    print(experiments.render(args.report))
    return 0
  if not args.experiment:
    parser.error("name an experiment (discard, batch-schedule) or --report FILE.json")
  t0, c0 = time.perf_counter(), time.process_time()
  if args.experiment == "discard":
    out = discard_experiment(seed=args.seed)
  else:
    out = batch_schedule_experiment(epochs=args.epochs, seed=args.seed)
  args_given = sys.argv[1:] if argv is None else list(argv)
  out.update(
    command=" ".join(["python -m benchmarks.paper_methods", *args_given]),
    platform=jax.devices()[0].platform,
    cpu_count=os.cpu_count(),
    jax=jax.__version__,
    wall_seconds=time.perf_counter() - t0,
    cpu_seconds=time.process_time() - c0,
  )
  os.makedirs(args.out_dir, exist_ok=True)
  path = os.path.join(args.out_dir, f"paper_methods-{args.experiment}.json")
  with open(path, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
  print(experiments.render(path))
  return 0


if __name__ == "__main__":
  sys.exit(main())
