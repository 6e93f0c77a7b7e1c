"""The gradient noise scale of the Fashion-MNIST baseline, and the epochs it implies.

Trains the committed Fashion-MNIST baseline of the ``mnist_lstm`` task (its batch,
momentum-SGD learning rate, warmup, constant LR after it, epochs: read from
:data:`benchmarks.batch_scaling.tasks.TASKS`), seed 0, with the optimizer
``optax.chain(legw.gradient_noise_scale(batch), <the task's momentum SGD>)``. Each
step's gradient is ``jax.vmap(jax.grad(loss), in_axes=(None, 0))`` over the batch
reshaped to ``(K, batch // K, ...)``: the mean of the K gradients is the batch
gradient of the mean loss, so the run is the plain baseline run (up to rounding)
with the noise scale measured on the side. Logs ``B_simple``, ``|G|^2`` and
``tr(Sigma)`` every :data:`LOG_EVERY` steps and the test accuracy after every epoch.

The summary is a fixed rule, stated here before any result was seen (it is
:func:`legw.scale_num_epochs`'s recommendation): ``b_noise`` = the median of the
logged ``noise_scale`` over the second half of the steps; then the epoch budget
``legw.scale_num_epochs(num_epochs, batch, B, noise_scale=b_noise)`` for B in
:data:`TARGET_BATCHES`.

Writes ``noise_scale.{json,png}``; the guide ``docs/guides/batch_size.md`` shows
both.

    python -m benchmarks.guides.noise_scale --out benchmarks/guides/results  # ~25 min, 2 CPUs
    python -m benchmarks.guides.noise_scale --quick                          # smoke test
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import legw
from benchmarks import git_commit
from benchmarks.batch_scaling.tasks import METHODS, get_task
from benchmarks.batch_scaling.train import (
  Trainer,
  TrainState,
  init_key,
  make_optimizer,
  prepare_eval,
)
from benchmarks.guides import common

TASK = "mnist_lstm"
DATASET = "fashion_mnist"
METHOD = "legw"  # at the base batch every method's rule gives the baseline itself
NUM_SAMPLES = 8  # K: gradient samples per step
LOG_EVERY = 50  # steps between logged records
SEED = 0
TARGET_BATCHES = (512, 2048, 8192)


def baseline() -> dict[str, Any]:
  """The committed baseline: task, optimizer name and kwargs, LR, warmup, epochs."""
  task = get_task(TASK)
  base = task.baselines[DATASET]
  opt = task.optimizer_for(METHOD)
  return dict(
    task=TASK,
    dataset=DATASET,
    optimizer=opt,
    optimizer_kwargs=dict(task.optimizer_kwargs.get(opt, {})),
    batch_size=base.base_batch_size,
    learning_rate=base.learning_rates[opt],
    warmup_epochs=base.base_warmup_epochs,
    num_epochs=base.num_epochs,
    decay=base.decay,
    power=base.power,
    schedule_kwargs=dict(base.schedule_kwargs),
    num_samples=NUM_SAMPLES,
    log_every=LOG_EVERY,
    seed=SEED,
  )


def recipe(config: dict[str, Any]) -> legw.Recipe:
  """The baseline as a :class:`legw.Recipe` (as the sweep builds it)."""
  method = METHODS[METHOD]
  return legw.Recipe(
    base_batch_size=config["batch_size"],
    base_learning_rate=config["learning_rate"],
    base_warmup_epochs=config["warmup_epochs"],
    num_epochs=config["num_epochs"],
    decay=config["decay"],
    power=config["power"],
    lr_scaling=method.lr_scaling,
    warmup_scaling=method.warmup_scaling,
    **config["schedule_kwargs"],
  )


def sample_gradients(trainer, params, batch_stats, xb, yb):
  """The losses and gradients of ``trainer.k`` microbatches, stacked on a leading axis:
  ``jax.vmap(jax.value_and_grad(loss))`` over the batch reshaped to ``(K, B // K, ...)``."""
  if batch_stats:
    raise ValueError(f"{type(trainer).__name__}: models with batch statistics are not supported.")

  def loss_of(p, batch):
    x, y = batch
    return trainer.loss_fn(trainer.model.apply({"params": p}, x, train=True), y).mean()

  k = trainer.k
  batches = jax.tree.map(lambda a: a.reshape(k, a.shape[0] // k, *a.shape[1:]), (xb, yb))
  return jax.vmap(jax.value_and_grad(loss_of), in_axes=(None, 0))(params, batches)


class NoiseScaleTrainer(Trainer):
  """:class:`~benchmarks.batch_scaling.train.Trainer` with ``gradient_noise_scale`` first.

  Its optimizer is ``optax.chain(legw.gradient_noise_scale(batch_size), inner)``,
  ``inner`` from :func:`benchmarks.batch_scaling.train.make_optimizer` (an injected learning
  rate); a step returns the loss and ``(noise_scale, grad_sq, trace_cov)``.
  """

  def __init__(self, model, inner: optax.GradientTransformation, batch_size: int, k: int):
    self.k = k
    super().__init__(model, optax.chain(legw.gradient_noise_scale(batch_size), inner))

  def _step(self, state: TrainState, xb, yb, lr):
    params, batch_stats, (noise, inner) = state
    losses, grads = sample_gradients(self, params, batch_stats, xb, yb)
    hyper = dict(inner.hyperparams)
    hyper["learning_rate"] = jnp.asarray(lr, hyper["learning_rate"].dtype)
    opt_state = (noise, inner._replace(hyperparams=hyper))
    updates, opt_state = self.tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    stats = tuple(optax.tree.get(opt_state, n) for n in ("noise_scale", "grad_sq", "trace_cov"))
    return TrainState(params, batch_stats, opt_state), (jnp.mean(losses), stats)


def train(
  config: dict[str, Any],
  data: tuple[np.ndarray, ...],
  *,
  num_epochs: int | None = None,
  max_steps_per_epoch: int | None = None,
  progress: bool = True,
) -> dict[str, Any]:
  """The run: a record per :data:`LOG_EVERY` steps and the test accuracy per epoch."""
  from tqdm import tqdm

  x_train, y_train, x_test, y_test = data
  batch, k = config["batch_size"], config["num_samples"]
  num_epochs = int(config["num_epochs"] if num_epochs is None else num_epochs)
  n = len(x_train)
  steps = n // batch
  schedule = recipe(config).schedule(batch, steps_per_epoch=steps)
  task = get_task(TASK)
  inner = make_optimizer(config["optimizer"], **config["optimizer_kwargs"])
  trainer = NoiseScaleTrainer(task.make_model(), inner, batch, k)
  x_dev, y_dev = jax.device_put(x_train), jax.device_put(y_train)
  eval_data = prepare_eval(x_test, y_test)
  state = trainer.init(init_key(config["seed"]), x_dev[:1])
  rng = np.random.default_rng(
    config["seed"]
  )  # the data order of benchmarks.batch_scaling.train.train_run
  run_steps = min(steps, max_steps_per_epoch or steps)
  records, epochs, losses = [], [], []
  bar = tqdm(total=num_epochs * run_steps, disable=not progress, unit="step")
  for epoch in range(num_epochs):
    perm = rng.permutation(n)[: steps * batch].reshape(steps, batch)[:run_steps]
    first = epoch * steps
    lrs = np.asarray(jax.vmap(schedule)(jnp.arange(first, first + run_steps)), np.float32)
    state, (loss, stats) = trainer.run_epoch(state, x_dev, y_dev, perm, lrs)
    loss, stats = np.asarray(loss), [np.asarray(s) for s in stats]
    for i in range(run_steps):
      done = first + i + 1  # steps done (as if every epoch ran all its steps)
      if done % config["log_every"] == 0:
        records.append(
          dict(
            step=done,
            epoch=done / steps,
            noise_scale=float(stats[0][i]),
            grad_sq=float(stats[1][i]),
            trace_cov=float(stats[2][i]),
          )
        )
    test_loss, test_acc = trainer.evaluate(state, eval_data)
    losses.append(float(loss.mean()))
    epochs.append(
      dict(epoch=epoch + 1, train_loss=losses[-1], test_loss=test_loss, test_accuracy=test_acc)
    )
    bar.update(run_steps)
    bar.set_postfix(b_simple=f"{stats[0][-1]:.0f}", test_acc=f"{test_acc:.4f}")
    if not math.isfinite(losses[-1]):
      break
  bar.close()
  return {"records": records, "epochs": epochs, "steps": num_epochs * steps, "state": state}


def summarize(records: list[dict], total_steps: int, config: dict[str, Any]) -> dict[str, Any]:
  """The fixed rule: the median logged ``noise_scale`` over the second half of the
  steps, and :func:`legw.scale_num_epochs` at each of :data:`TARGET_BATCHES`."""
  late = [r["noise_scale"] for r in records if r["step"] > total_steps / 2]
  b_noise = float(np.median(late))
  base, epochs = config["batch_size"], config["num_epochs"]
  return dict(
    rule="median of the logged noise_scale over the second half of the steps",
    b_noise=b_noise,
    records_in_rule=len(late),
    epochs={
      str(b): legw.scale_num_epochs(epochs, base, b, noise_scale=b_noise) for b in TARGET_BATCHES
    },
  )


def run(quick: bool = False, progress: bool = True) -> dict[str, Any]:
  """The whole measurement (``quick``: 2 epochs of 120 steps on the first 5,000
  test images, for a smoke test)."""
  config = baseline()
  data = get_task(TASK).load_data(DATASET, None, 0)
  kwargs = {}
  if quick:
    config["log_every"] = 10
    data = (*data[:2], data[2][:5000], data[3][:5000])
    kwargs = dict(num_epochs=2, max_steps_per_epoch=120)
  t0, cpu0 = time.perf_counter(), time.process_time()
  out = train(config, data, progress=progress, **kwargs)
  wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
  return {
    "setup": (
      f"{TASK} on {DATASET} ({len(data[0])} train / {len(data[2])} test), the committed "
      f"baseline: {config['optimizer']} (momentum 0.9) LR {config['learning_rate']} at "
      f"batch {config['batch_size']}, warmup {config['warmup_epochs']} epochs, decay "
      f"{config['decay']!r}, {config['num_epochs']} epochs, seed {config['seed']}; "
      f"optax.chain(legw.gradient_noise_scale({config['batch_size']}), that optimizer) on "
      f"K = {config['num_samples']} vmapped gradients of {config['batch_size'] // NUM_SAMPLES} "
      f"examples" + (" (QUICK smoke test: not the measurement)" if quick else "")
    ),
    "config": config,
    "records": out["records"],
    "epochs": out["epochs"],
    "summary": summarize(out["records"], out["steps"], config),
    "final_test_accuracy": out["epochs"][-1]["test_accuracy"],
    "environment": dict(
      platform=jax.devices()[0].platform,
      processor=platform.machine(),
      cpu_count=os.cpu_count(),
      jax_version=jax.__version__,
      git_commit=git_commit(short=False),
    ),
    "wall_seconds": round(wall, 1),
    "cpu_seconds": round(cpu, 1),
  }


def plot(results: dict[str, Any], path: str) -> None:
  """B_simple against epoch (log y) with the target batches and b_noise; test accuracy."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, (ax, acc_ax) = plt.subplots(
    2, 1, figsize=(7, 6), sharex=True, height_ratios=(3, 1.3), constrained_layout=True
  )
  rec = results["records"]
  ax.plot([r["epoch"] for r in rec], [r["noise_scale"] for r in rec], lw=1, label="$B_{simple}$")
  b_noise = results["summary"]["b_noise"]
  ax.axhline(b_noise, color="C3", lw=1.2, label=f"summary $B_{{noise}}$ = {b_noise:,.0f}")
  for b, style in ((2048, "--"), (8192, ":")):
    ax.axhline(b, color="0.3", lw=1, linestyle=style, label=f"batch {b:,}")
  ax.axhline(results["config"]["batch_size"], color="0.6", lw=1, label="base batch")
  ax.set(yscale="log", ylabel="examples", title="Gradient noise scale, Fashion-MNIST LSTM")
  ax.legend(fontsize=8, loc="lower right")
  ep = results["epochs"]
  acc_ax.plot([e["epoch"] for e in ep], [e["test_accuracy"] for e in ep], "o-", ms=3)
  acc_ax.set(xlabel="epoch", ylabel="test accuracy")
  fig.savefig(path, dpi=110)


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--out", default="", help="directory; default: benchmarks/runs/guides (untracked)")
  p.add_argument("--quick", action="store_true", help="a few steps: a smoke test")
  p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
  args = p.parse_args(argv)
  results = run(quick=args.quick, progress=not args.no_progress)
  command = "python -m benchmarks.guides.noise_scale" + (" --quick" if args.quick else "")
  path = common.write_results("noise_scale", results, command, args.out)
  plot(results, os.path.splitext(path)[0] + ".png")
  s = results["summary"]
  print(f"b_noise {s['b_noise']:.1f} ({s['rule']}); epochs: {s['epochs']}")
  print(f"final test accuracy {results['final_test_accuracy']:.4f}, {results['wall_seconds']} s")
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
