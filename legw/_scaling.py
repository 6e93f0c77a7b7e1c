"""Batch-size scaling rules for the learning rate and the warmup length.

LEGW paper (You et al., SC 2019, arXiv:1901.08256) §2.3 and §3; the epochs a batch needs
from a gradient noise scale: McCandlish et al. 2018, arXiv:1812.06162, §2.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

import jax

from legw import _validation

LR_RULES = ("sqrt", "linear", "none")
WARMUP_RULES = ("linear", "none")


def as_count(name: str, value: Any, *, positive: bool = True) -> int:
  """A whole-number count (steps, examples) as a Python int: an int, a NumPy integer, a
  concrete 0-d integer array or a whole float; else TypeError or ValueError naming ``name``."""
  if isinstance(value, bool) or isinstance(value, jax.core.Tracer):
    kind = "a traced value" if isinstance(value, jax.core.Tracer) else repr(value)
    raise TypeError(f"{name} must be a concrete integer count; got {kind}.")
  if not isinstance(value, numbers.Number) and not hasattr(value, "dtype"):
    raise TypeError(f"{name} must be an integer count; got {value!r}.")
  if hasattr(value, "shape") and getattr(value, "ndim", 0) != 0:
    raise TypeError(f"{name} must be a scalar integer count; got shape {value.shape}.")
  try:
    count = operator.index(value)  # int, NumPy/JAX integer scalars
  except TypeError:
    try:
      as_float = float(value)
    except (TypeError, ValueError):
      raise TypeError(f"{name} must be an integer count; got {value!r}.") from None
    if not math.isfinite(as_float):
      raise ValueError(
        f"{name} must be in {'(0' if positive else '[0'}, inf); got {value!r}."
      ) from None
    if not as_float.is_integer():
      raise TypeError(f"{name} must be a whole number (an integer count); got {value!r}.") from None
    count = int(as_float)
  if count < (1 if positive else 0):
    raise ValueError(f"{name} must be in {'(0' if positive else '[0'}, inf); got {value!r}.")
  return count


def _batch_size(name: str, value: Any) -> float:
  """A positive batch size: an integer count, or any positive real (only k matters)."""
  try:
    return float(as_count(name, value))
  except TypeError:
    if not _validation.is_concrete_number(value):
      raise
  _validation.check_range(name, value, low=0.0, low_inclusive=False)
  return float(value)


def _check_batch_sizes(base_batch_size, batch_size) -> float:
  base = _batch_size("base_batch_size", base_batch_size)
  return _batch_size("batch_size", batch_size) / base


def scale_learning_rate(
  base_learning_rate: float,
  base_batch_size: int,
  batch_size: int,
  rule: str = "sqrt",
) -> float:
  r"""The learning rate for ``batch_size`` from one tuned at ``base_batch_size``.

  With :math:`k` = ``batch_size / base_batch_size`` and :math:`\eta` = ``base_learning_rate``:
  ``"sqrt"`` gives :math:`\eta\sqrt{k}` (Sqrt Scaling, LEGW paper §2.3 and §3.1: LEGW),
  ``"linear"`` :math:`\eta k` (Linear Scaling, Krizhevsky 2014; Goyal et al.), ``"none"``
  :math:`\eta`. Either direction (``k < 1`` scales down); the LR is per optimizer step.

  Args:
    base_learning_rate: the tuned peak learning rate (a scalar), >= 0.
    base_batch_size: the batch size it was tuned at, in examples, > 0 (only k enters, so a
      float is accepted here; the schedule builders require integer counts).
    batch_size: the target batch size, in examples, > 0.
    rule: ``"sqrt"``, ``"linear"`` or ``"none"``.

  Returns:
    The scaled peak learning rate (a Python float).

  Raises:
    ValueError: for a negative learning rate, non-positive batch sizes or an unknown rule.
    TypeError: for a batch size that is not a number (a string, a traced value, an array).

  Example (LEGW paper Table 1: ``2**2.5`` at 1K is ``2**5.0`` at 32K):

  >>> import math, legw
  >>> math.log2(legw.scale_learning_rate(2**2.5, 1024, 32768))
  5.0
  >>> legw.scale_learning_rate(0.1, 256, 1024, rule="linear")
  0.4

  References:
    You, Hseu, Ying, Demmel, Keutzer & Hsieh, "Large-Batch Training for LSTM and
    Beyond", SC 2019, arXiv:1901.08256, §2.3 and §3.1; Goyal et al., "Accurate,
    Large Minibatch SGD: Training ImageNet in 1 Hour", 2017, arXiv:1706.02677.
  """
  _validation.check_range("base_learning_rate", base_learning_rate, low=0.0)
  _validation.check_choice("rule", rule, LR_RULES)
  k = _check_batch_sizes(base_batch_size, batch_size)
  factor = {"sqrt": math.sqrt(k), "linear": k, "none": 1.0}[rule]
  return float(base_learning_rate) * factor


def scale_warmup_epochs(
  base_warmup_epochs: float,
  base_batch_size: int,
  batch_size: int,
  rule: str = "linear",
) -> float:
  r"""Warmup length, in epochs, for ``batch_size`` from the tuned baseline.

  With :math:`k` = ``batch_size / base_batch_size`` and :math:`e_0` = ``base_warmup_epochs``:
  ``"linear"`` gives :math:`e_0 k` epochs (LEGW paper §3: "when we increase the batch size
  by k times, we also increase the warmup epochs by k times"; about constant in *steps*);
  ``"none"`` keeps :math:`e_0` epochs (the constant-epoch warmup of Goyal et al.).

  Args:
    base_warmup_epochs: warmup of the tuned baseline, in *epochs* (not steps), >= 0.
    base_batch_size: its batch size, in examples, > 0 (as in :func:`scale_learning_rate`).
    batch_size: the target batch size, in examples, > 0.
    rule: ``"linear"`` or ``"none"``.

  Returns:
    The warmup in epochs (a Python float); times the steps per epoch at ``batch_size``,
    rounded, it is in steps (as :func:`legw.legw_schedule` does).

  Raises:
    ValueError: negative warmup, non-positive batch sizes, unknown rule.
    TypeError: for a batch size that is not a number.

  Example (LEGW paper Table 1: 0.3125 epochs at 1K is 10 epochs at 32K):

  >>> import legw
  >>> legw.scale_warmup_epochs(0.3125, 1024, 32768)
  10.0
  >>> legw.scale_warmup_epochs(5.0, 256, 8192, rule="none")
  5.0

  References:
    You, Hseu, Ying, Demmel, Keutzer & Hsieh, "Large-Batch Training for LSTM and
    Beyond", SC 2019, arXiv:1901.08256, §3 and Table 1.
  """
  _validation.check_range("base_warmup_epochs", base_warmup_epochs, low=0.0)
  _validation.check_choice("rule", rule, WARMUP_RULES)
  k = _check_batch_sizes(base_batch_size, batch_size)
  return float(base_warmup_epochs) * (k if rule == "linear" else 1.0)


def as_positive_real(name: str, value: Any) -> float:
  """A finite real number > 0 (epochs, a noise scale) as a Python float; else TypeError or
  ValueError naming ``name``.

  >>> from legw._scaling import as_positive_real
  >>> as_positive_real("noise_scale", 2500)
  2500.0
  """
  dtype = getattr(value, "dtype", None)
  real_array = (
    dtype is not None
    and getattr(value, "ndim", 1) == 0
    and not isinstance(value, jax.core.Tracer)
    and (
      jax.numpy.issubdtype(dtype, jax.numpy.integer)
      or jax.numpy.issubdtype(dtype, jax.numpy.floating)
    )
  )
  if not (_validation.is_concrete_number(value) or real_array):
    raise TypeError(f"{name} must be a real number in (0, inf); got {value!r}.")
  _validation.check_range(name, float(value), low=0.0, low_inclusive=False)
  return float(value)


def scale_num_epochs(
  base_num_epochs: float, base_batch_size: int, batch_size: int, *, noise_scale: float
) -> float:
  r"""Training epochs at ``batch_size`` from a run of ``base_num_epochs`` at ``base_batch_size``.

  With :math:`B_n` = ``noise_scale``, reaching a loss at batch B takes
  :math:`E_{min}(1 + B/B_n)` examples (McCandlish et al.), hence
  :math:`e(B) = e_0 (1 + B/B_n) / (1 + B_0/B_n)`, in either direction. It assumes
  :math:`B_n` constant over training and a well-tuned LR at each batch;
  :doc:`/guides/batch_size` measures :math:`B_n` and discusses both.

  Args:
    base_num_epochs: epochs of the base run, > 0.
    base_batch_size: its batch size, in examples, an integer count > 0.
    batch_size: the target batch size, in examples, an integer count > 0.
    noise_scale: the gradient noise scale :math:`B_n`, in examples, > 0.

  Returns:
    The epochs at ``batch_size`` (a float; times its steps per epoch: steps).

  Raises:
    ValueError, TypeError: naming the argument, for a value out of range or not a number.

  Example (B_noise = 2,500, 25 epochs at batch 128, 64x larger batch):

  >>> import legw
  >>> round(legw.scale_num_epochs(25, 128, 8192, noise_scale=2500), 4)
  101.7123

  References:
    McCandlish, Kaplan, Amodei et al., "An Empirical Model of Large-Batch Training",
    2018, arXiv:1812.06162, §2, eq. 2.11-2.12.
  """
  epochs = as_positive_real("base_num_epochs", base_num_epochs)
  base, batch = as_count("base_batch_size", base_batch_size), as_count("batch_size", batch_size)
  noise = as_positive_real("noise_scale", noise_scale)
  return epochs * ((1.0 + batch / noise) / (1.0 + base / noise))  # exactly epochs at B = B0
