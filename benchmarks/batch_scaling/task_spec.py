"""What a benchmark task is: a scaling method, a tuned baseline, a task (plain data).

The registry of tasks is :mod:`benchmarks.batch_scaling.tasks`; a task defined in its own
module (e.g. :mod:`benchmarks.batch_scaling.lstm_lm`) builds its :class:`Task` from these
classes without importing the registry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn

from benchmarks import data as data_lib


@dataclasses.dataclass(frozen=True)
class Method:
  """A batch-size scaling rule for the learning rate and the warmup."""

  lr_scaling: str  # "sqrt" | "linear" | "none"  (legw.scale_learning_rate)
  warmup_scaling: str  # "linear" | "none"          (legw.scale_warmup_epochs)
  description: str = ""
  # True: the method has no rule from a baseline; it is tuned at the batch it
  # runs at, and a sweep must give its learning rate (``learning_rates``).
  tuned_per_batch: bool = False


@dataclasses.dataclass(frozen=True)
class Baseline:
  """A recipe tuned at ``base_batch_size`` on one data set (plain numbers).

  Attributes:
    base_batch_size: the batch size the recipe was tuned at.
    learning_rates: tuned peak LR per optimizer name (``"momentum"``,
      ``"lars"``, ``"adam"``), at ``base_batch_size``.
    base_warmup_epochs: warmup of the baseline, in epochs (gradual, from 0).
    num_epochs: training length, the same at every batch size.
    batch_sizes: the default sweep ladder.
    decay, power: the decay after warmup (see :func:`legw.legw_schedule`).
    notes: how the numbers were chosen.
    rule_learning_rates: the tuned LRs per base-LR selection rule
      (``"argmax"``, ``"one_se"``: see
      :func:`benchmarks.batch_scaling.select_learning_rates`), each an
      optimizer -> LR mapping like ``learning_rates``. The sweep runs every
      rule recorded here; empty: ``learning_rates`` alone (rule
      ``"baseline"``).
    schedule_kwargs: further keyword arguments of :func:`legw.legw_schedule`
      (e.g. the exponential decay's ``decay_rate``, ``decay_epochs``,
      ``decay_begin_epochs``, ``staircase``).
    headline_extras: further sweeps the default command runs after the
      ladder, each a mapping of :class:`benchmarks.batch_scaling.SweepConfig`
      overrides (e.g. more seeds at some batch sizes), so that the plain
      command produces every cell of the README's headline table.
  """

  base_batch_size: int
  learning_rates: Mapping[str, float]
  base_warmup_epochs: float
  num_epochs: float
  batch_sizes: tuple[int, ...]
  decay: str = "poly"
  power: float = 2.0
  notes: str = ""
  schedule_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  rule_learning_rates: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
  headline_extras: tuple[Mapping[str, Any], ...] = ()


@dataclasses.dataclass(frozen=True)
class Task:
  """A benchmark task.

  Attributes:
    name: registry key; results go to ``results/<name>-<dataset>.*``.
    description: one line.
    make_model: builds the Flax Linen module; ``apply(variables, x,
      train=bool)`` gives logits whose last axis are classes; labels are the
      integer targets of the same leading shape (so a language model, with
      logits (B, T, V) and labels (B, T), fits as well).
    optimizers: optimizer name per method (``"momentum"``, ``"lars"``, ``"adam"``).
    optimizer_kwargs: extra keyword arguments per optimizer name.
    metric: the headline metric, ``"accuracy"`` (higher is better) or
      ``"perplexity"`` (``exp`` of the mean test loss; lower is better).
    baselines: the tuned :class:`Baseline` per data set name.
    load_data: ``(name, data_dir, seed) -> (x_train, y_train, x_test, y_test)``.
    scan_epoch: compile each epoch as one ``lax.scan`` (True) or loop over a
      compiled step (False; see :class:`benchmarks.batch_scaling.train.Trainer`).
  """

  name: str
  description: str
  make_model: Callable[[], nn.Module]
  optimizers: Mapping[str, str]
  baselines: Mapping[str, Baseline]
  optimizer_kwargs: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
  metric: str = "accuracy"
  load_data: Callable[..., tuple] = data_lib.load_dataset
  scan_epoch: bool = True

  def optimizer_for(self, method: str) -> str:
    if method not in self.optimizers:
      raise ValueError(
        f"task {self.name!r} has no method {method!r}; choose from {sorted(self.optimizers)}."
      )
    return self.optimizers[method]
