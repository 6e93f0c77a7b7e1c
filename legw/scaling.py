"""Batch-size scaling rules for the learning rate and the warmup length.

Source: You et al., "Large-Batch Training for LSTM and Beyond"
(papers/legw-large-batch-lstm-and-beyond.txt), §2.3 (Sqrt and Linear Scaling
rules), §3 (LEGW: warmup epochs grow linearly with the batch) and Table 1.
"""

from __future__ import annotations

import math

from legw import _validation

LR_RULES = ("sqrt", "linear", "none")
WARMUP_RULES = ("linear", "none")


def _check_batch_sizes(base_batch_size, batch_size) -> float:
  for name, value in (("base_batch_size", base_batch_size), ("batch_size", batch_size)):
    if not _validation.is_concrete_number(value):
      raise TypeError(f"{name} must be a number; got {value!r}.")
    _validation.check_range(name, value, low=0.0, low_inclusive=False)
  return float(batch_size) / float(base_batch_size)


def scale_learning_rate(
    base_learning_rate: float,
    base_batch_size: int,
    batch_size: int,
    rule: str = "sqrt",
) -> float:
  r"""The learning rate for ``batch_size`` from one tuned at ``base_batch_size``.

  With :math:`k` = ``batch_size / base_batch_size`` and :math:`\eta` =
  ``base_learning_rate``:

  * ``"sqrt"``: :math:`\eta\sqrt{k}` (Sqrt Scaling, LEGW paper §2.3 and §3.1;
    keeps the variance of the gradient estimate's step constant). This is LEGW.
  * ``"linear"``: :math:`\eta k` (Linear Scaling, Krizhevsky 2014; Goyal et al.).
  * ``"none"``: :math:`\eta`.

  Works in both directions (``k < 1`` scales down).

  Args:
    base_learning_rate: the tuned peak learning rate, >= 0.
    base_batch_size: the batch size it was tuned at, in examples, > 0.
    batch_size: the target batch size, in examples, > 0.
    rule: ``"sqrt"``, ``"linear"`` or ``"none"``.

  Returns:
    The scaled peak learning rate (a Python float).

  Raises:
    ValueError: for a negative learning rate, non-positive batch sizes or an
      unknown rule. TypeError: for non-numeric batch sizes.

  Example: ``scale_learning_rate(2**2.5, 1024, 32768)`` is ``2**5.0`` (Table 1).
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

  * ``"linear"``: :math:`e_0 k` epochs — Linear-Epoch Gradual Warmup (LEGW
    paper §3: "when we increase the batch size by k times, we also increase
    the warmup epochs by k times"). In *steps* this is constant, since an
    epoch has k times fewer steps.
  * ``"none"``: :math:`e_0` epochs at every batch size (the constant-epoch
    warmup of Goyal et al., e.g. 5 epochs).

  Args:
    base_warmup_epochs: warmup of the tuned baseline, in epochs, >= 0.
    base_batch_size: its batch size, in examples, > 0.
    batch_size: the target batch size, in examples, > 0.
    rule: ``"linear"`` or ``"none"``.

  Returns:
    The warmup length in epochs (a Python float).

  Raises:
    ValueError: negative warmup, non-positive batch sizes, unknown rule.

  Example: ``scale_warmup_epochs(0.3125, 1024, 32768)`` is ``10.0`` (Table 1).
  """
  _validation.check_range("base_warmup_epochs", base_warmup_epochs, low=0.0)
  _validation.check_choice("rule", rule, WARMUP_RULES)
  k = _check_batch_sizes(base_batch_size, batch_size)
  return float(base_warmup_epochs) * (k if rule == "linear" else 1.0)
