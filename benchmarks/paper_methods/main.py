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
from benchmarks.paper_methods.experiments import (
  batch_schedule_experiment,
  discard_experiment,
)


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
    prog="python -m benchmarks.paper_methods", description=experiments.__doc__
  )
  p.add_argument("experiment", choices=("discard", "batch-schedule"))
  p.add_argument("--epochs", type=int, default=12, help="batch-schedule: epochs")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out-dir", default=RUNS_DIR, help="default: benchmarks/runs/ (untracked)")
  return p


def main(argv: Sequence[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  t0, c0 = time.perf_counter(), time.process_time()
  if args.experiment == "discard":
    out = discard_experiment(seed=args.seed)
    for name, rows in out["points"].items():
      print(f"\n{name} (batch {out['batch_size']}):\n")
      print("| discard p | kept | loss | classifier mean abs grad | global grad norm |")
      print("|---|---|---|---|---|")
      for r in rows:
        print(
          f"| {r['fraction']:.1f} | {r['kept']} | {r['loss']:.4f} | "
          f"{r['classifier_mean_abs_grad']:.3e} | {r['global_grad_norm']:.4f} |"
        )
  else:
    out = batch_schedule_experiment(epochs=args.epochs, seed=args.seed)
    print("| run | phases (batch x epochs, steps, peak LR) | compilations | test acc % |")
    print("|---|---|---|---|")
    for name, r in out["runs"].items():
      ph = "; ".join(
        f"{q['batch_size']} x {q['num_epochs']:g} ep, {q['num_steps']} steps, "
        f"LR {q['peak_learning_rate']:.3g}"
        for q in r["phases"]
      )
      print(f"| {name} | {ph} | {r['compilations']} | {100 * r['test_accuracy']:.1f} |")
  out.update(
    platform=jax.devices()[0].platform,
    cpu_count=os.cpu_count(),
    wall_seconds=time.perf_counter() - t0,
    cpu_seconds=time.process_time() - c0,
  )
  os.makedirs(args.out_dir, exist_ok=True)
  path = os.path.join(args.out_dir, f"paper_methods-{args.experiment}.json")
  with open(path, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
  print(f"\nwall {out['wall_seconds']:.0f} s, CPU {out['cpu_seconds']:.0f} s; wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
