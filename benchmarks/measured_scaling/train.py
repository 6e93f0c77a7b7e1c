"""The measured-scaling experiment's runs, phase by phase, from :mod:`protocol`.

Every value comes from :mod:`benchmarks.measured_scaling.protocol` (committed before
any run) and the committed baselines of :mod:`benchmarks.batch_scaling.tasks`; the machinery is the
benchmarks' own: the sweep's run plans (:func:`benchmarks.batch_scaling.sweep.plan_runs`) and
:func:`benchmarks.batch_scaling.train.train_run` for LEGW and LARS, the noise-scale guide's
:class:`~benchmarks.guides.noise_scale.NoiseScaleTrainer` and ``summarize`` rule for
``B_simple``, and :func:`legw.adascale` on K vmapped gradient samples for AdaScale.

A phase writes one JSON (``<phase>.json``: the phase, its protocol values, one record
per run, a summary) and a CSV beside it (one row per run); both are rewritten after
every finished run (a run = one config and seed), and a run already in the JSON is
skipped, so an interrupted phase loses only the run in progress. Each record holds the
config, the seed, per-epoch train loss / test loss / test accuracy (validation
accuracy for the LARS grid), steps, examples, epochs, wall and CPU seconds, and the
machine (platform, CPU count), jax version and git commit.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import legw
from benchmarks import RUNS_DIR
from benchmarks.batch_scaling import sweep, tuning
from benchmarks.batch_scaling.tasks import get_task
from benchmarks.batch_scaling.train import (
  Trainer,
  TrainState,
  init_key,
  make_optimizer,
  prepare_eval,
  schedule_values,
  train_run,
)
from benchmarks.checkpoint import EpochCheckpoint
from benchmarks.guides import noise_scale as guide
from benchmarks.measured_scaling import protocol as p
from benchmarks.measured_scaling.records import (
  commit_at_start,
  execute_runs,
  load_phase,
  phase_path,
)

OUT_DIR = os.path.join(RUNS_DIR, "measured_scaling")  # untracked
QUICK_OUT_DIR = os.path.join(RUNS_DIR, "measured_scaling-quick")
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")  # committed

PHASES = p.ORDER
# --quick: a smoke test, not the measurement. Training sets cut to max(4096, 2 B)
# examples (2 steps an epoch at 8192), 1,000 test images, 2 epochs (3 at 8192: LEGW's
# warmup there is 2 epochs); AdaScale stops at
# 5 base steps (a crossing inside an epoch) or after 3 epochs; the noise runs take 32
# steps an epoch.
QUICK = dict(train=4096, test=1000, epochs=2, large_epochs=3, noise_steps=32)
QUICK.update(adascale_epochs=3, adascale_base_steps=5)


# -- data -----------------------------------------------------------------------


def data_config(dataset: str, batch_size: int, quick: bool, **kw) -> sweep.SweepConfig:
  """The sweep's data settings (``--quick``: a slice of the data)."""
  cut = {}
  if quick:
    train = max(QUICK["train"], 2 * batch_size)
    cut = dict(max_train_examples=train, max_test_examples=QUICK["test"])
  return sweep.SweepConfig(task=p.TASK, dataset=dataset, **cut, **kw)


_DATA: dict[str, tuple] = {}


def load_data(config: sweep.SweepConfig) -> tuple[np.ndarray, ...]:
  """:func:`benchmarks.batch_scaling.sweep.load_data`, cached per data setting for the process."""
  key = json.dumps(
    [config.dataset, config.max_train_examples, config.max_test_examples,
     config.validation_fraction, config.data_seed]
  )  # fmt: skip
  if key not in _DATA:
    _DATA.clear()
    _DATA[key] = tuple(sweep.load_data(config))
  return _DATA[key]


# -- the sweep's runs, evaluated after every epoch (LARS grid, LEGW, LARS at 8192) ----


class EpochEvalTrainer(Trainer):
  """:class:`benchmarks.batch_scaling.train.Trainer` that evaluates after every epoch.

  ``train_run`` drives it unchanged (initialisation, data order, divergence);
  ``history`` holds each epoch's mean train loss and eval loss and accuracy.
  """

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.eval_data, self.history = None, []

  def run_epoch(self, state, x, y, perm, lrs):
    state, losses = super().run_epoch(state, x, y, perm, lrs)
    loss, acc = self.evaluate(state, self.eval_data)
    self.history.append(dict(train_loss=float(jnp.mean(losses)), test_loss=loss, test_accuracy=acc))
    return state, losses


_TRAINERS: dict[str, EpochEvalTrainer] = {}


def as_lars(run: dict) -> dict:
  """A planned momentum run of the sweep as the protocol's LARS run (same schedule).

  ``legw.lars(trust_coefficient=LARS_TRUST_COEFFICIENT)``, weight decay 0, the default
  masks, momentum 0.9 (:func:`benchmarks.batch_scaling.train.make_optimizer`'s ``"lars"``); the
  run's key is recomputed, so no momentum run is ever taken for it.
  """
  run = dict(
    run,
    method="legw+lars",
    optimizer="lars",
    optimizer_kwargs=dict(trust_coefficient=p.LARS_TRUST_COEFFICIENT, weight_decay=0.0),
  )
  run["run_key"] = sweep.run_key(run)
  return run


def plan_lars_grid(
  train_size: int, seeds: Sequence[int] = p.LARS_TUNING_SEEDS, quick: bool = False
) -> list[dict]:
  """LARS at the base batch, every LR of ``LARS_GRID``, scored on the validation split."""
  runs = []
  for lr in p.LARS_GRID:
    cfg = data_config(
      p.DATASET, p.BASE_BATCH, quick, methods=("legw",), batch_sizes=(p.BASE_BATCH,),
      seeds=tuple(seeds), learning_rates={"momentum": lr},
      validation_fraction=tuning.VALIDATION_FRACTION,
      num_epochs=QUICK["epochs"] if quick else None,
    )  # fmt: skip
    runs += [as_lars(r) for r in sweep.plan_runs(cfg, train_size)]
  return runs


def train_planned(
  run: dict, data: tuple[np.ndarray, ...], progress: bool = True,
  checkpoint: EpochCheckpoint | None = None,
) -> dict:  # fmt: skip
  """Trains one run of :func:`~benchmarks.batch_scaling.sweep.plan_runs` (its LR schedule,
  epochs, data order) with :func:`~benchmarks.batch_scaling.train.train_run`, evaluating
  after every epoch; saved to and resumed from ``checkpoint`` after every epoch."""
  from tqdm.auto import tqdm

  x_tr, y_tr, x_ev, y_ev = data
  if len(x_tr) != run["train_size"]:
    raise ValueError(f"run planned for {run['train_size']} examples, data has {len(x_tr)}.")
  task = get_task(run["task"])
  key = json.dumps([run["task"], run["optimizer"], run["optimizer_kwargs"]], sort_keys=True)
  if key not in _TRAINERS:
    tx = make_optimizer(run["optimizer"], **run["optimizer_kwargs"])
    _TRAINERS[key] = EpochEvalTrainer(task.make_model(), tx, scan_epoch=task.scan_epoch)
  trainer = _TRAINERS[key]
  history = [] if checkpoint is None else checkpoint.logs.setdefault("history", [])
  trainer.eval_data, trainer.history = prepare_eval(x_ev, y_ev), history
  lrs = schedule_values(sweep._recipe_schedule(run), run["total_steps"])
  epochs = int(run["num_epochs"])
  bar = tqdm(total=epochs, unit="epoch", leave=False, disable=not progress, position=1)
  bar.update(len(history))

  def on_epoch(epoch, loss):
    bar.update(1)
    bar.set_postfix(loss=f"{loss:.3f}", acc=f"{trainer.history[-1]['test_accuracy']:.4f}")

  res = train_run(
    trainer, jax.device_put(x_tr), jax.device_put(y_tr), trainer.eval_data,
    batch_size=run["batch_size"], learning_rates=lrs, num_epochs=epochs, seed=run["seed"],
    on_epoch=on_epoch, checkpoint=checkpoint,
  )  # fmt: skip
  bar.close()
  spe = run["steps_per_epoch"]
  history = [
    dict(epoch=i + 1, step=(i + 1) * spe, examples=(i + 1) * spe * run["batch_size"], **h)
    for i, h in enumerate(trainer.history)
  ]
  return dict(
    epochs=history,
    steps=res.steps,
    examples=res.steps * run["batch_size"],
    epochs_run=res.epochs_run,
    final_accuracy=res.test_accuracy,
    accuracy_split=run["split"],
    eval_size=len(x_ev),
    diverged=res.diverged,
  )


def _planned_fn(data: tuple[np.ndarray, ...], progress: bool):
  """:func:`train_planned` as ``execute_runs``' ``train_fn(config, seed, checkpoint)``."""
  return lambda c, s, ck: train_planned(dict(c, seed=s), data, progress, ck)


def _planned(runs: list[dict]) -> list[tuple[str, dict, int]]:
  out = []
  for r in runs:
    cfg = {k: v for k, v in r.items() if k not in ("run_key", "seed")}
    cfg["quick"] = bool(r.get("max_train_examples"))
    label = f"{r['method']} B={r['batch_size']} lr={r['peak_learning_rate']:g}"
    out.append((label, cfg, r["seed"]))
  return out


def lars_selection(records: list[dict]) -> dict:
  """Both committed rules (:func:`~benchmarks.batch_scaling.tuning.select_learning_rates`)."""
  rows = [
    dict(
      optimizer=r["config"]["optimizer"],
      base_learning_rate=r["config"]["base_learning_rate"],
      test_accuracy=r["final_accuracy"],
      test_size=r["eval_size"],
    )
    for r in records
  ]
  return tuning.select_learning_rates(rows).get("lars", {}) if rows else {}


def lars_grid_summary(records: list[dict]) -> dict:
  sel = lars_selection(records)
  complete = len(records) == len(p.LARS_GRID) * len(p.LARS_TUNING_SEEDS)
  if sel:
    sel["grid"] = {f"{k:g}": v for k, v in sel["grid"].items()}
  return dict(selection=sel, complete=complete, runs=len(records))


# -- noise scale (the guide's trainer and rule) ---------------------------------


def base_config(dataset: str) -> dict[str, Any]:
  """The committed baseline of ``dataset`` in the guide's config form, with the
  protocol's K and logging interval."""
  cfg = guide.baseline()
  base = get_task(p.TASK).baselines[dataset]
  cfg.update(
    dataset=dataset,
    batch_size=base.base_batch_size,
    learning_rate=base.learning_rates[cfg["optimizer"]],
    warmup_epochs=base.base_warmup_epochs,
    num_epochs=base.num_epochs,
    decay=base.decay,
    power=base.power,
    schedule_kwargs=dict(base.schedule_kwargs),
    num_samples=p.NOISE_SAMPLES,
    log_every=p.LOG_EVERY,
  )
  cfg.pop("seed", None)
  return cfg


def train_noise(config: dict, seed: int, data: tuple[np.ndarray, ...], progress=True) -> dict:
  """One base run with the guide's NoiseScaleTrainer; its summary by the guide's rule."""
  cfg = dict(config, seed=seed)
  kw = {}
  if config.get("quick"):
    kw = dict(num_epochs=QUICK["epochs"], max_steps_per_epoch=QUICK["noise_steps"])
  out = guide.train(cfg, data, progress=progress, **kw)
  steps_per_epoch = len(data[0]) // cfg["batch_size"]
  run_steps = min(steps_per_epoch, kw.get("max_steps_per_epoch") or steps_per_epoch)
  epochs = [
    dict(e, step=e["epoch"] * run_steps, examples=e["epoch"] * run_steps * cfg["batch_size"])
    for e in out["epochs"]
  ]
  steps = len(epochs) * run_steps
  return dict(
    epochs=epochs,
    steps=steps,
    examples=steps * cfg["batch_size"],
    epochs_run=len(epochs),
    final_accuracy=epochs[-1]["test_accuracy"],
    accuracy_split="test",
    eval_size=len(data[2]),
    records=out["records"],
    noise_summary=guide.summarize(out["records"], out["steps"], cfg),
  )


def noise_summary(records: list[dict], required: Sequence[int] = p.SEEDS) -> dict:
  """Per-seed summaries, ``B_noise`` (the median over seeds) and the epoch budgets."""
  per_seed = {r["seed"]: r["noise_summary"]["b_noise"] for r in records}
  out = dict(rule=p.SUMMARY_RULE, b_noise_rule=p.B_NOISE_RULE, per_seed=per_seed)
  out["complete"] = all(s in per_seed for s in required)
  if per_seed:
    b = float(np.median(list(per_seed.values())))
    out["b_noise"] = b
    out["budget_epochs"] = {str(bs): p.budget_epochs(bs, b) for bs in p.ADASCALE_BATCHES}
  return out


def b_noise_from(out_dir: str, quick: bool = False) -> tuple[float, dict]:
  """B_noise of the noise-base phase; refuses an incomplete phase (any seed in --quick)."""
  doc = load_phase(out_dir, "noise-base")
  runs = [r for r in doc["runs"] if bool(r["config"].get("quick")) == quick]
  s = noise_summary(runs, required=() if quick else p.SEEDS)
  if not s["complete"] or "b_noise" not in s:
    raise RuntimeError(
      f"{phase_path(out_dir, 'noise-base')}: seeds {sorted(s['per_seed'])} of "
      f"{list(p.SEEDS)} done; run the noise-base phase first."
    )
  return s["b_noise"], s


# -- AdaScale -------------------------------------------------------------------


class AdaScaleTrainer(Trainer):
  """:class:`benchmarks.batch_scaling.train.Trainer` for :func:`legw.adascale` on K samples.

  A step's gradient is ``jax.vmap(jax.value_and_grad(loss))`` over the batch
  reshaped to ``(K, B // K, ...)`` (as the guide's NoiseScaleTrainer); the learning
  rate is AdaScale's own (the base schedule at its progress), so the trainer's
  per-step ``lr`` is ignored. Once ``progress >= base_steps`` before a step, the step
  is skipped inside the epoch's scan (parameters and state kept): the run ends at
  the exact step where the progress crossed. A step returns the loss and
  ``(gain, progress, active)``.
  """

  def __init__(self, model, optimizer: optax.GradientTransformation, k: int, base_steps: float):
    self.k, self.base_steps = k, float(base_steps)
    super().__init__(model, optimizer)

  def _step(self, state: TrainState, xb, yb, lr):
    del lr
    params, batch_stats, opt_state = state
    losses, grads = guide.sample_gradients(self, params, batch_stats, xb, yb)
    updates, new_opt = self.tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    active = optax.tree.get(opt_state, "progress") < self.base_steps

    def keep(new, old):
      return jnp.where(active, new, old)

    state = TrainState(
      jax.tree.map(keep, new_params, params), batch_stats, jax.tree.map(keep, new_opt, opt_state)
    )
    stats = (optax.tree.get(state.opt_state, "gain"), optax.tree.get(state.opt_state, "progress"))
    return state, (jnp.mean(losses), (*stats, active))


def adascale_config(dataset: str, batch_size: int, quick: bool = False) -> dict[str, Any]:
  """AdaScale from ``dataset``'s committed baseline to ``batch_size`` (K samples of B0)."""
  base = base_config(dataset)
  b0 = base["batch_size"]
  n = len(load_data(data_config(dataset, batch_size, quick))[0])
  base_steps = base["num_epochs"] * (n // b0)
  if dataset == p.DATASET and not quick:
    assert base_steps == p.BASE_STEPS, base_steps
  s = batch_size // b0
  return dict(
    task=p.TASK, dataset=dataset, method="adascale", optimizer="momentum", momentum=0.9,
    base_batch_size=b0, batch_size=batch_size, num_samples=s, scale=s,
    learning_rate=base["learning_rate"], warmup_epochs=base["warmup_epochs"],
    num_epochs=base["num_epochs"], decay=base["decay"], power=base["power"],
    schedule_kwargs=base["schedule_kwargs"], train_size=n,
    base_steps_per_epoch=n // b0,
    base_steps=QUICK["adascale_base_steps"] if quick else base_steps,
    quick=quick,
  )  # fmt: skip


def base_schedule(config: dict) -> optax.Schedule:
  """The base recipe's schedule, of base steps (AdaScale's ``learning_rate``)."""
  cfg = dict(config, batch_size=config["base_batch_size"])
  return guide.recipe(cfg).schedule(
    config["base_batch_size"], steps_per_epoch=config["base_steps_per_epoch"]
  )


def train_adascale(
  config: dict, seed: int, data: tuple[np.ndarray, ...], progress: bool = True,
  max_epochs: int | None = None, checkpoint: EpochCheckpoint | None = None,
) -> dict:  # fmt: skip
  """``legw.adascale(base schedule, base_batch_size=B0, batch_size=B, momentum=0.9)``,
  epochs of B-sized batches in the usual data order (``train_run``'s), test accuracy
  after every epoch, until the progress reaches ``config["base_steps"]``; saved to and
  resumed from ``checkpoint`` after every epoch.

  The crossing step is exact: the steps after it inside its epoch are skipped
  (:class:`AdaScaleTrainer`). Logs every step's gain and progress.
  """
  from tqdm.auto import tqdm

  x_tr, y_tr, x_te, y_te = data
  b, k, total = config["batch_size"], config["num_samples"], config["base_steps"]
  if config.get("quick") and max_epochs is None:
    max_epochs = QUICK["adascale_epochs"]
  tx = legw.adascale(
    base_schedule(config), base_batch_size=config["base_batch_size"], batch_size=b,
    momentum=config["momentum"],
  )  # fmt: skip
  trainer = AdaScaleTrainer(get_task(config["task"]).make_model(), tx, k, total)
  x_dev, y_dev = jax.device_put(x_tr), jax.device_put(y_tr)
  eval_data = prepare_eval(x_te, y_te)
  state = trainer.init(init_key(seed), x_dev[:1])
  rng = np.random.default_rng(seed)  # the data order of benchmarks.batch_scaling.train.train_run
  n = len(x_tr)
  steps = n // b
  zeros = np.zeros(steps, np.float32)
  log = dict(gains=[], progress=[], epochs=[], done_steps=0, crossed=None, diverged=False)
  if checkpoint is not None:
    state = checkpoint.restore(state, rng)
    log = checkpoint.logs.setdefault("loop", log)
  gains, progress_log, epochs = log["gains"], log["progress"], log["epochs"]
  bar = tqdm(total=round(total), unit="base step", leave=False, disable=not progress, position=1)
  while (
    log["crossed"] is None
    and not log["diverged"]
    and (max_epochs is None or len(epochs) < max_epochs)
  ):
    perm = rng.permutation(n)[: steps * b].reshape(steps, b)
    state, (loss, (gain, prog, active)) = trainer.run_epoch(state, x_dev, y_dev, perm, zeros)
    loss, gain, prog, active = (np.asarray(a) for a in (loss, gain, prog, active))
    ran = int(active.sum())
    gains += gain[active].tolist()
    progress_log += prog[active].tolist()
    log["done_steps"] = done_steps = log["done_steps"] + ran
    if ran < steps or prog[-1] >= total:
      log["crossed"] = done_steps
    test_loss, test_acc = trainer.evaluate(state, eval_data)
    train_loss = float(loss[active].mean()) if ran else float("nan")
    epochs.append(
      dict(
        epoch=len(epochs) + 1, step=done_steps, examples=done_steps * b,
        epochs_of_data=done_steps * b / n, progress=float(prog[-1]),
        train_loss=train_loss, test_loss=test_loss, test_accuracy=test_acc,
      )
    )  # fmt: skip
    bar.update(round(float(prog[-1])) - bar.n)
    bar.set_postfix(gain=f"{gain[-1]:.1f}", acc=f"{test_acc:.4f}")
    log["diverged"] = not math.isfinite(train_loss)
    if checkpoint is not None:
      checkpoint.save(state, rng)
  bar.close()
  done_steps, crossed, diverged = log["done_steps"], log["crossed"], log["diverged"]
  after = {str(e): epochs[e - 1]["test_accuracy"] for e in (p.BASE_EPOCHS,) if len(epochs) >= e}
  return dict(
    epochs=epochs,
    steps=done_steps,
    examples=done_steps * b,
    epochs_run=done_steps * b / n,
    final_accuracy=epochs[-1]["test_accuracy"],
    accuracy_split="test",
    eval_size=len(x_te),
    crossing_step=crossed,
    stopped="progress" if crossed is not None else ("diverged" if diverged else "max_epochs"),
    final_progress=float(progress_log[-1]) if progress_log else 0.0,
    accuracy_after_epochs=after,
    skipped_steps=int(optax.tree.get(state.opt_state, "skipped_steps")),
    diverged=diverged,
    gain=gains,
    progress=progress_log,
  )


def adascale_summary(records: list[dict]) -> dict:
  return dict(
    crossing_steps={r["seed"]: r["crossing_step"] for r in records},
    mean_gain={r["seed"]: float(np.mean(r["gain"])) if r["gain"] else None for r in records},
  )


# -- the phases -----------------------------------------------------------------


def quick_log(quick: bool) -> dict:
  """--quick logs B_simple every 10 steps (as the guide's --quick), so its rule has records."""
  return dict(log_every=10) if quick else {}


def _protocol_values(**kw) -> dict:
  return {**dict(task=p.TASK, base_batch=p.BASE_BATCH, base_epochs=p.BASE_EPOCHS), **kw}


def run_phase(
  phase: str,
  out_dir: str,
  seeds: Sequence[int] | None = None,
  quick: bool = False,
  progress: bool = True,
) -> dict:
  """Trains what is left of one phase of :data:`protocol.ORDER`; returns its JSON."""
  commit_at_start()
  kw = dict(progress=progress)
  if phase == "lars-grid":
    seeds = p.LARS_TUNING_SEEDS if seeds is None else seeds
    vf = tuning.VALIDATION_FRACTION
    data = load_data(data_config(p.DATASET, p.BASE_BATCH, quick, validation_fraction=vf))
    runs = plan_lars_grid(len(data[0]), seeds, quick)
    return execute_runs(
      out_dir, phase, _planned(runs), _planned_fn(data, progress),
      lars_grid_summary,
      _protocol_values(
        grid=p.LARS_GRID, trust_coefficient=p.LARS_TRUST_COEFFICIENT,
        seeds=p.LARS_TUNING_SEEDS, rules=p.LARS_RULES,
        validation_fraction=tuning.VALIDATION_FRACTION,
      ),
      **kw,
    )  # fmt: skip
  if phase == "noise-base":
    seeds = p.SEEDS if seeds is None else seeds
    data = load_data(data_config(p.DATASET, p.BASE_BATCH, quick))
    cfg = dict(base_config(p.DATASET), train_size=len(data[0]), quick=quick, **quick_log(quick))
    planned = [("noise base B=128", cfg, s) for s in seeds]
    return execute_runs(
      out_dir, phase, planned, lambda c, s, ck: train_noise(c, s, data, progress),
      lambda rs: noise_summary(rs, () if quick else p.SEEDS),
      _protocol_values(num_samples=p.NOISE_SAMPLES, log_every=p.LOG_EVERY), **kw,
    )  # fmt: skip
  if phase in ("adascale-2048", "adascale-8192"):
    seeds = p.SEEDS if seeds is None else seeds
    batch = int(phase.split("-")[1])
    assert batch in p.ADASCALE_BATCHES
    data = load_data(data_config(p.DATASET, batch, quick))
    cfg = adascale_config(p.DATASET, batch, quick)
    planned = [(f"adascale B={batch}", cfg, s) for s in seeds]
    return execute_runs(
      out_dir, phase, planned, lambda c, s, ck: train_adascale(c, s, data, progress, checkpoint=ck),
      adascale_summary, _protocol_values(base_steps=p.BASE_STEPS, batch=batch), **kw,
    )  # fmt: skip
  if phase == "legw-budget":
    seeds = p.SEEDS if seeds is None else seeds
    b_noise, noise = b_noise_from(out_dir, quick)
    budget = p.budget_epochs(p.LARGE_BATCH, b_noise)
    cfg = data_config(
      p.DATASET, p.LARGE_BATCH, quick, methods=("legw",), batch_sizes=(p.LARGE_BATCH,),
      seeds=tuple(seeds), num_epochs=QUICK["large_epochs"] if quick else budget,
    )  # fmt: skip
    data = load_data(cfg)
    runs = sweep.plan_runs(cfg, len(data[0]))
    runs = [dict(r, b_noise=b_noise, budget_epochs=budget) for r in runs]
    return execute_runs(
      out_dir, phase, _planned(runs), _planned_fn(data, progress),
      lambda rs: dict(b_noise=b_noise, budget_epochs=budget, noise=noise),
      _protocol_values(batch=p.LARGE_BATCH, b_noise=b_noise, budget_epochs=budget), **kw,
    )  # fmt: skip
  if phase == "lars-8192":
    seeds = p.SEEDS if seeds is None else seeds
    picks = lars_picks(out_dir, quick)
    runs = []
    for rule, lr in picks.items():
      cfg = data_config(
        p.DATASET, p.LARGE_BATCH, quick, methods=("legw",), batch_sizes=(p.LARGE_BATCH,),
        seeds=tuple(seeds), learning_rates={"momentum": lr},
        num_epochs=QUICK["large_epochs"] if quick else None,
      )  # fmt: skip
      data = load_data(cfg)
      runs += [dict(as_lars(r), lr_rule=rule) for r in sweep.plan_runs(cfg, len(data[0]))]
    return execute_runs(
      out_dir, phase, _planned(runs), _planned_fn(data, progress),
      lambda rs: dict(picks=picks),
      _protocol_values(batch=p.LARGE_BATCH, rules=p.LARS_RULES), **kw,
    )  # fmt: skip
  if phase == "mnist5k":
    seeds = p.SEEDS if seeds is None else seeds
    data = load_data(data_config("mnist5k", p.MNIST5K_BATCH, quick))
    ada = adascale_config("mnist5k", p.MNIST5K_BATCH, quick)
    noise = dict(base_config("mnist5k"), train_size=len(data[0]), quick=quick, **quick_log(quick))
    planned = [(f"adascale B={p.MNIST5K_BATCH}", ada, s) for s in seeds]
    planned += [("noise base B=8", noise, 0)] if 0 in seeds else []

    def train_fn(c, s, ck):
      if c.get("method") == "adascale":
        return train_adascale(c, s, data, progress, checkpoint=ck)
      return train_noise(c, s, data, progress)

    return execute_runs(
      out_dir, phase, planned, train_fn,
      lambda rs: dict(
        adascale=adascale_summary([r for r in rs if r["config"].get("method") == "adascale"]),
        noise=noise_summary([r for r in rs if r["config"].get("method") != "adascale"], (0,)),
      ),
      _protocol_values(base_batch=p.MNIST5K_BASE_BATCH, batch=p.MNIST5K_BATCH), **kw,
    )  # fmt: skip
  raise ValueError(f"unknown phase {phase!r}; choose from {PHASES}.")


def lars_picks(out_dir: str, quick: bool = False) -> dict[str, float]:
  """The base LR of each rule from a complete LARS grid; equal picks are one rule
  (``"argmax=one_se"``). Refuses an incomplete grid (any run in --quick)."""
  doc = load_phase(out_dir, "lars-grid")
  runs = [r for r in doc["runs"] if bool(r["config"].get("quick")) == quick]
  need = 1 if quick else len(p.LARS_GRID) * len(p.LARS_TUNING_SEEDS)
  if len(runs) < need:
    raise RuntimeError(
      f"{phase_path(out_dir, 'lars-grid')}: {len(runs)} of {need} runs done; "
      "run the lars-grid phase first."
    )
  sel = lars_selection(runs)
  picks: dict[str, float] = {}
  for rule in p.LARS_RULES:
    same = next((r for r, lr in picks.items() if lr == sel[rule]), None)
    if same is None:
      picks[rule] = sel[rule]
    else:
      picks[f"{same}={rule}"] = picks.pop(same)
  return picks
