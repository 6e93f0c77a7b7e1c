"""The batch-size sweep: plan the runs, train them, resume an interrupted sweep.

A *sweep* (:class:`SweepConfig`, plain data) applies each scaling method's rule
to one baseline tuned at a small batch (``benchmarks/batch_scaling/tasks.py``);
:func:`plan_runs` turns it into runs (one dict each, keyed by its full
configuration: :func:`run_key`), :func:`execute` trains those not yet in the
results JSON (in this process or in worker processes) and rewrites the file
after every finished run, so an interrupted sweep loses only the runs in
progress. Tables and plots: :mod:`benchmarks.batch_scaling.report`; the base-LR tuning:
:mod:`benchmarks.batch_scaling.tuning`; the command line: :mod:`benchmarks.batch_scaling`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import sys
import time
import warnings
from typing import Any

import numpy as np

from benchmarks import RESULTS_DIR, RUNS_DIR  # noqa: F401  (RESULTS_DIR: the committed reference)

# The committed reference results (tracked by git), and where a run writes by
# default (ignored by git): running a command never rewrites a tracked file.


DEFAULT_OUT_DIR = RUNS_DIR


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """One sweep, as plain data. ``None`` fields take the task's tuned baseline.

  Attributes:
    task: a key of :data:`benchmarks.batch_scaling.tasks.TASKS`.
    dataset: a data set the task has a baseline for.
    methods: keys of :data:`benchmarks.batch_scaling.tasks.METHODS`.
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
  from benchmarks.batch_scaling.tasks import get_task

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
  from benchmarks.batch_scaling.tasks import METHODS

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

  (:attr:`benchmarks.batch_scaling.tasks.Baseline.headline_extras`: e.g. more seeds at the
  base and the largest batch, so the plain command yields every cell of the
  README's headline table.)
  """
  _, base = resolve(config)
  return [config] + [dataclasses.replace(config, **dict(o)) for o in base.headline_extras]


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
  from benchmarks.batch_scaling.tasks import get_task

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

  from benchmarks.batch_scaling.train import prepare_eval

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
  from benchmarks.batch_scaling.tasks import get_task
  from benchmarks.batch_scaling.train import Trainer, make_optimizer, schedule_values, train_run

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


def _jsonable(x: Any):
  if isinstance(x, (np.floating, np.integer)):
    return x.item()
  raise TypeError(f"not JSON serializable: {type(x)}")


def pipeline_sweep(config: SweepConfig, repeats: int = 3) -> list[dict]:
  """:func:`~benchmarks.batch_scaling.train.pipeline_check` at every batch size of the
  sweep's ladder, with the optimizer of its first method; one row per batch size."""
  import jax

  from benchmarks.batch_scaling.train import Trainer, make_optimizer, pipeline_check

  task, base = resolve(config)
  x_tr, y_tr, _, _ = load_data(config)
  x, y = jax.device_put(x_tr), jax.device_put(y_tr)
  opt = task.optimizer_for(config.methods[0])
  tx = make_optimizer(opt, **dict(task.optimizer_kwargs.get(opt, {})))
  trainer = Trainer(task.make_model(), tx, scan_epoch=task.scan_epoch)
  rows = []
  for b in base.batch_sizes:
    r = pipeline_check(trainer, x, y, batch_size=b, repeats=repeats)
    rows.append(dict(r, task=config.task, dataset=config.dataset, optimizer=opt, **_environment()))
  return rows
