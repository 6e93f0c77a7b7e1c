"""BatchNorm at large batch: the running averages' momentum when training is ~30 steps.

Flax's ``nn.BatchNorm`` keeps running averages of the batch mean and variance,
``ra <- momentum * ra + (1 - momentum) * batch_stat``, starting from mean 0 and
variance 1, and uses them at evaluation. Its default momentum, 0.99, averages over
about 100 steps; a large-batch run of a few epochs may take only ~30, so the averages
still mostly hold their initial values. The trained weights do not depend on the
momentum (training normalises with the batch's own statistics), so this script trains
the same small CNN with ``legw.lars`` once per momentum, checks that the weights agree,
and compares test accuracy with the running averages and with averages recomputed
after training from a few training batches.

    python -m benchmarks.guides.batchnorm      # ~1-2 CPU-minutes
"""

from __future__ import annotations

import argparse
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import legw
from benchmarks.data import load_dataset
from benchmarks.guides import common

BATCH_SIZE = 512
NUM_EPOCHS = 4  # 4,096 images / 512 = 8 steps an epoch: 32 steps in all
MOMENTA = (0.9, 0.99)
RECALIBRATION_BATCHES = 4
FLAX_DEFAULT_MOMENTUM = 0.99  # nn.BatchNorm's


class SmallCNN(nn.Module):
  """Two strided 3x3 convolutions with BatchNorm and ReLU, then a dense layer."""

  bn_momentum: float = 0.99

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = x[..., None]
    for i, width in enumerate((32, 64)):
      x = nn.Conv(width, (3, 3), strides=(2, 2), use_bias=False, name=f"conv{i}")(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, name=f"bn{i}")(x)
      x = nn.relu(x)
    return nn.Dense(10, name="head")(x.reshape(x.shape[0], -1))


def make_optimizer(steps_per_epoch: int, num_epochs: int) -> optax.GradientTransformation:
  """``legw.lars`` (eta 0.02, weight decay 5e-4) with 1 warmup epoch and poly-2 decay."""
  schedule = legw.legw_schedule(
    base_learning_rate=1.0,
    base_batch_size=BATCH_SIZE,
    batch_size=BATCH_SIZE,
    base_warmup_epochs=1,
    num_epochs=num_epochs,
    steps_per_epoch=steps_per_epoch,
  )
  return legw.lars(schedule, momentum=0.9, weight_decay=5e-4, trust_coefficient=0.02)


def train(bn_momentum: float, data, num_epochs: int = NUM_EPOCHS, seed: int = 0) -> dict[str, Any]:
  """Trains :class:`SmallCNN`; returns its params and batch statistics."""
  x_train, y_train, _, _ = data
  model = SmallCNN(bn_momentum=bn_momentum)
  key = jax.random.PRNGKey(seed)
  variables = model.init(key, jnp.zeros((1, 28, 28)))
  params, batch_stats = variables["params"], variables["batch_stats"]
  steps = len(x_train) // BATCH_SIZE
  optimizer = make_optimizer(steps, num_epochs)
  opt_state = optimizer.init(params)

  def loss_fn(params, batch_stats, x, y):
    logits, updates = model.apply(
      {"params": params, "batch_stats": batch_stats}, x, train=True, mutable=["batch_stats"]
    )
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, updates["batch_stats"]

  def step(carry, batch):
    params, batch_stats, opt_state = carry
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      params, batch_stats, *batch
    )
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), batch_stats, opt_state), loss

  @jax.jit
  def epoch(carry, perm_key):
    perm = jax.random.permutation(perm_key, len(x_train))[: steps * BATCH_SIZE]
    xb = jnp.asarray(x_train)[perm].reshape(steps, BATCH_SIZE, 28, 28)
    yb = jnp.asarray(y_train)[perm].reshape(steps, BATCH_SIZE)
    return jax.lax.scan(step, carry, (xb, yb))

  carry = (params, batch_stats, opt_state)
  for e in range(num_epochs):
    carry, _ = epoch(carry, jax.random.fold_in(key, e))
  params, batch_stats, _ = carry
  return {"model": model, "params": params, "batch_stats": batch_stats, "steps": steps * num_epochs}


def accuracy(model: nn.Module, params, batch_stats, x: np.ndarray, y: np.ndarray) -> float:
  """Test accuracy with the given running averages (evaluation mode)."""
  logits = model.apply({"params": params, "batch_stats": batch_stats}, x, train=False)
  return float(jnp.mean(jnp.argmax(logits, -1) == y))


def recalibrate(model: nn.Module, params, batch_stats, x_train: np.ndarray) -> Any:
  """Running averages recomputed with the final weights: the mean over a few training batches.

  A BatchNorm with momentum 0 over each batch, averaged: the statistics of the trained
  network, with none of the initial values left.
  """
  fresh = SmallCNN(bn_momentum=0.0)
  stats = []
  for i in range(RECALIBRATION_BATCHES):
    xb = x_train[i * BATCH_SIZE : (i + 1) * BATCH_SIZE]
    _, updates = fresh.apply(
      {"params": params, "batch_stats": batch_stats}, xb, train=True, mutable=["batch_stats"]
    )
    stats.append(updates["batch_stats"])
  return jax.tree.map(lambda *s: jnp.mean(jnp.stack(s), axis=0), *stats)


def run(num_epochs: int = NUM_EPOCHS) -> dict[str, Any]:
  """Trains once per momentum in :data:`MOMENTA`; accuracies and the weights' agreement."""
  data = load_dataset("mnist5k")
  x_train, _, x_test, y_test = data
  out: dict[str, Any] = {
    "setup": f"SmallCNN (2 conv + BatchNorm, 32/64 channels) on mnist5k (4,096 train / "
    f"904 test), legw.lars peak LR 1.0, eta 0.02, wd 5e-4, batch {BATCH_SIZE}, "
    f"{num_epochs} epochs = {num_epochs * len(x_train) // BATCH_SIZE} steps, seed 0",
    "runs": {},
  }
  trained = {m: train(m, data, num_epochs) for m in MOMENTA}
  for m, t in trained.items():
    stats = t["batch_stats"]
    recal = recalibrate(t["model"], t["params"], stats, x_train)
    initial_weight = m ** t["steps"]
    out["runs"][f"momentum {m}"] = {
      "steps": t["steps"],
      "weight_of_initial_values": round(initial_weight, 4),
      "test_accuracy_running_averages": round(
        accuracy(t["model"], t["params"], stats, x_test, y_test), 4
      ),
      "test_accuracy_recalibrated": round(
        accuracy(t["model"], t["params"], recal, x_test, y_test), 4
      ),
    }
  a, b = (trained[m]["params"] for m in MOMENTA)
  out["max_abs_param_difference"] = float(
    max(jnp.max(jnp.abs(x - y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  )
  return out


def markdown_table(results: dict[str, Any]) -> str:
  """Per momentum: the initial values' weight and test accuracy, running vs recalibrated."""
  runs = results["runs"]
  steps = {r["steps"] for r in runs.values()}
  lines = [
    f"| BatchNorm momentum | initial values' weight after {' or '.join(map(str, sorted(steps)))}"
    " steps | test accuracy, running averages | test accuracy, recalibrated |",
    "|---:|---:|---:|---:|",
  ]
  for name, r in runs.items():
    momentum = float(name.removeprefix("momentum "))
    label = f"{momentum:g}" + (" (Flax's default)" if momentum == FLAX_DEFAULT_MOMENTUM else "")
    lines.append(
      f"| {label} | {r['weight_of_initial_values']:.3f} "
      f"| **{100 * r['test_accuracy_running_averages']:.1f}%** "
      f"| {100 * r['test_accuracy_recalibrated']:.1f}% |"
    )
  return "\n".join(lines)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=NUM_EPOCHS, help="training epochs")
  args = parser.parse_args(argv)
  results, seconds = common.timed(lambda: run(args.epochs))
  results["wall_seconds"] = round(seconds, 1)
  for key, value in results.items():
    print(f"{key}: {value}")
  print(f"\n{markdown_table(results)}\n")
  if args.epochs == NUM_EPOCHS:
    print(
      "wrote", common.write_results("batchnorm", results, "python -m benchmarks.guides.batchnorm")
    )


if __name__ == "__main__":
  main()
