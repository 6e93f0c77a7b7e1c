"""LEGW learning-rate schedules (``optax.Schedule`` builders)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax

from legw import _validation, _warnings
from legw._scaling import LR_RULES, WARMUP_RULES, as_count, scale_learning_rate, scale_warmup_epochs

DECAYS = ("poly", "multistep", "exponential", "cosine", "constant")
WARMUPS = ("gradual", "constant")
POLY_ORIGINS = ("warmup_end", "step_0")

# A warmup longer than this fraction of training draws a warning.
_LONG_WARMUP_FRACTION = 0.5


def _positive(name, value):
  if not _validation.is_concrete_number(value):
    raise TypeError(f"{name} must be a number; got {value!r}.")
  _validation.check_range(name, value, low=0.0, low_inclusive=False)


def float_dtype(count: Any) -> np.dtype:
  """The float dtype optax's schedules return for a step ``count`` (that of ``count / 1``:
  float32 for an int32 count, float64 for an int64 one under ``jax_enable_x64``)."""
  dtype = jnp.result_type(count)  # canonical: int64 -> int32 without x64
  if jnp.issubdtype(dtype, jnp.inexact):
    return dtype
  return jnp.result_type(jnp.float64 if dtype.itemsize == 8 else jnp.float32)


def _in_float_dtype(schedule: optax.Schedule) -> optax.Schedule:
  """``schedule`` with its value cast to :func:`float_dtype` and the count's shape."""

  def wrapped(count):
    count = jnp.asarray(count)
    dtype = float_dtype(count)
    value = jnp.asarray(schedule(jnp.maximum(count, 0)), dtype)  # count < 0 is step 0
    return jnp.broadcast_to(value, count.shape)

  return wrapped


def legw_schedule(
  *,
  base_learning_rate: float,
  base_batch_size: int,
  batch_size: int,
  base_warmup_epochs: float,
  num_epochs: float,
  steps_per_epoch: int,
  decay: str = "poly",
  power: float = 2.0,
  end_value: float = 0.0,
  boundary_epochs: Sequence[float] = (),
  decay_rate: float = 0.1,
  decay_epochs: float = 1.0,
  decay_begin_epochs: float | None = None,
  staircase: bool = False,
  lr_scaling: str = "sqrt",
  warmup_scaling: str = "linear",
  warmup: str = "gradual",
  warmup_value: float | None = None,
  poly_origin: str = "warmup_end",
) -> optax.Schedule:
  r"""The LEGW schedule for ``batch_size`` from a recipe tuned at ``base_batch_size``.

  With :math:`k` = ``batch_size / base_batch_size``: a linear warmup over W steps (:math:`e_0 k`
  epochs) to :math:`\eta = \eta_0\sqrt{k}`, then the decay; poly is :math:`\gamma_t = e_v +
  (\eta - e_v)(1 - (t - W)/(T - W))^p` over T steps, counted from the end of warmup as in
  MLPerf's LARS reference (``poly_origin="step_0"``: the LEGW paper's literal
  :math:`\eta(1 - t/T)^p`, which drops at step W). **Domain:** the optimizer *step* count, not
  epochs; nothing is raised outside :math:`[0, T)` (in full: :doc:`/guides/legw_recipes`).

  Args:
    base_learning_rate: tuned peak LR :math:`\eta_0 \ge 0` at the base batch.
    base_batch_size, batch_size: the tuned and the target batch size, in examples (integers).
    base_warmup_epochs: tuned warmup :math:`e_0 \ge 0`, in epochs.
    num_epochs: training length, in epochs, > 0.
    steps_per_epoch: optimizer steps per epoch at ``batch_size`` (an integer count).
    decay: ``"poly"``, ``"multistep"``, ``"exponential"``, ``"cosine"`` or ``"constant"``.
    power, end_value: the poly power :math:`p > 0`, and the final LR >= 0 (exponential: floor).
    boundary_epochs: multistep boundaries, in epochs, after warmup and before the end.
    decay_rate: factor per boundary or per ``decay_epochs``, in (0, 1].
    decay_epochs, staircase: the exponential decay period (epochs, > 0), and whole periods only.
    decay_begin_epochs: epoch the decay begins (default: the end of warmup).
    lr_scaling: ``"sqrt"`` (LEGW), ``"linear"`` or ``"none"``.
    warmup_scaling: ``"linear"`` (LEGW) or ``"none"``.
    warmup, warmup_value: ``"gradual"`` or ``"constant"``, and the constant warmup's LR
      (default ``base_learning_rate``).
    poly_origin: ``"warmup_end"`` (MLPerf LARS) or ``"step_0"`` (the paper's text).

  Returns:
    An ``optax.Schedule``: step count -> learning rate (float, as optax's schedules).

  Raises:
    ValueError: naming the argument, for a value out of range or a warmup not shorter than training.
    TypeError: for sizes or ``steps_per_epoch`` that are not integer counts.

  Example:
    >>> import legw  # LEGW Table 1, batch 32K: a 2^5 peak after 10 warmup epochs
    >>> s = legw.legw_schedule(base_learning_rate=2**2.5, base_batch_size=1024, batch_size=32768,
    ...                        base_warmup_epochs=0.3125, num_epochs=90, steps_per_epoch=39)
    >>> [round(float(s(t)), 4) for t in (0, 195, 390, 1950, 3510)]
    [0.0, 16.0, 32.0, 8.0, 0.0]

  References:
    You, Hseu, Ying, Demmel, Keutzer & Hsieh, "Large-Batch Training for LSTM and Beyond", SC 2019,
    arXiv:1901.08256, §3, §3.2, Figure 2, Table 1.
  """
  _validation.check_choice("decay", decay, DECAYS)
  _validation.check_choice("warmup", warmup, WARMUPS)
  _validation.check_choice("lr_scaling", lr_scaling, LR_RULES)
  _validation.check_choice("warmup_scaling", warmup_scaling, WARMUP_RULES)
  _validation.check_choice("poly_origin", poly_origin, POLY_ORIGINS)
  if poly_origin != "warmup_end" and decay != "poly":
    raise ValueError(
      f"poly_origin={poly_origin!r} applies to decay='poly' only; got decay={decay!r}."
    )
  _positive("num_epochs", num_epochs)
  steps_per_epoch = as_count("steps_per_epoch", steps_per_epoch)
  _positive("power", power)
  _positive("decay_epochs", decay_epochs)
  _validation.check_range("end_value", end_value, low=0.0)
  _validation.check_range("decay_rate", decay_rate, low=0.0, high=1.0, low_inclusive=False)
  if warmup_value is not None:
    _validation.check_range("warmup_value", warmup_value, low=0.0)

  base_batch_size = as_count("base_batch_size", base_batch_size)
  batch_size = as_count("batch_size", batch_size)
  k = batch_size / base_batch_size
  peak = scale_learning_rate(base_learning_rate, base_batch_size, batch_size, lr_scaling)
  warmup_epochs = scale_warmup_epochs(
    base_warmup_epochs, base_batch_size, batch_size, warmup_scaling
  )
  if warmup_epochs >= num_epochs:
    raise ValueError(
      f"base_warmup_epochs={base_warmup_epochs} scaled by {warmup_scaling!r} "
      f"(k={k:g}) gives a warmup of {warmup_epochs:g} epochs, not shorter than "
      f"num_epochs={num_epochs}; use num_epochs > {warmup_epochs:g} or a "
      f"base_warmup_epochs < {base_warmup_epochs * num_epochs / warmup_epochs:g} "
      "(both are in epochs, not steps: was a step count passed as epochs?)."
    )
  if end_value > peak and decay in ("poly", "cosine", "exponential"):
    raise ValueError(f"end_value must be <= the peak learning rate {peak:g}; got {end_value}.")
  warmup_steps = int(round(warmup_epochs * steps_per_epoch))
  total_steps = int(round(num_epochs * steps_per_epoch))
  if warmup_steps >= total_steps:
    raise ValueError(
      f"warmup of {warmup_epochs:g} epochs rounds to {warmup_steps} steps, "
      f"not fewer than the {total_steps} training steps; increase num_epochs "
      "or steps_per_epoch (warmup and training lengths are in epochs, not steps: "
      "was a step count passed as epochs?)."
    )
  if warmup_steps > _LONG_WARMUP_FRACTION * total_steps:
    _warnings.warn(
      f"legw_schedule: the warmup is {warmup_steps} of the {total_steps} training "
      f"steps ({warmup_epochs:g} of num_epochs={num_epochs:g} epochs, "
      f"base_warmup_epochs={base_warmup_epochs:g} scaled by k={k:g}), more than half "
      "of training. Check that base_warmup_epochs and num_epochs are in epochs "
      "(not steps) and that the batch is not scaled past what num_epochs allows."
    )
  if warmup_steps == 0 and warmup_epochs > 0:
    _warnings.warn(
      f"legw_schedule: a warmup of {warmup_epochs:g} epochs at {steps_per_epoch} "
      "steps per epoch rounds to 0 steps: the schedule starts at the peak "
      f"{peak:g}. Check steps_per_epoch (steps, not epochs or examples)."
    )

  begin = warmup_steps
  if decay_begin_epochs is not None:
    _validation.check_range(
      "decay_begin_epochs", decay_begin_epochs, low=0.0, high=num_epochs, high_inclusive=False
    )
    begin = max(begin, int(round(decay_begin_epochs * steps_per_epoch)))
  hold = begin - warmup_steps  # steps held at the peak after the warmup
  decay_steps = total_steps - begin

  if decay == "multistep":
    boundaries = []
    for b in boundary_epochs:
      if not _validation.is_concrete_number(b) or not (warmup_epochs < b < num_epochs):
        raise ValueError(
          "boundary_epochs must lie strictly between the end of warmup "
          f"({warmup_epochs:g} epochs) and num_epochs={num_epochs}; got {b!r}."
        )
      boundaries.append(int(round(b * steps_per_epoch)) - warmup_steps)
    boundary_steps = np.asarray(sorted(boundaries), dtype=np.int64)

    def main(s):
      s = jnp.asarray(s)
      n = jnp.sum(s[..., None] >= boundary_steps.astype(s.dtype), axis=-1)
      return peak * jnp.asarray(decay_rate, float_dtype(s)) ** n
  elif decay == "poly" and poly_origin == "step_0":
    # LEGW §3.2 literally: i counted from step 0 (main gets s = t - W).
    literal = optax.polynomial_schedule(peak, end_value, power, total_steps)

    def main(s):
      s = jnp.asarray(s)
      return jnp.where(s < hold, peak, literal(s + warmup_steps))
  elif decay == "poly":
    main = optax.polynomial_schedule(peak, end_value, power, decay_steps, transition_begin=hold)
  elif decay == "cosine":
    cos = optax.cosine_decay_schedule(peak, decay_steps, alpha=end_value / peak if peak else 0.0)
    main = optax.join_schedules([optax.constant_schedule(peak), cos], [hold])
  elif decay == "exponential":
    main = optax.exponential_decay(
      peak,
      transition_steps=max(1, int(round(decay_epochs * steps_per_epoch))),
      decay_rate=decay_rate,
      transition_begin=hold,
      staircase=staircase,
      end_value=end_value if end_value > 0 else None,
    )
  else:
    main = optax.constant_schedule(peak)

  if warmup_steps == 0:
    return _in_float_dtype(main)
  if warmup == "gradual":
    head = optax.linear_schedule(0.0, peak, warmup_steps)
  else:
    head = optax.constant_schedule(base_learning_rate if warmup_value is None else warmup_value)
  return _in_float_dtype(optax.join_schedules([head, main], [warmup_steps]))
