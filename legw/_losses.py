"""Discarding small-loss samples from the batch mean.

Gao & Zhong 2020, arXiv:2012.08795, §3.1 "Discarding Small-loss Samples", Figures 9–10.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from legw import _validation, _warnings
from legw._scaling import as_count
from legw._schedules import float_dtype

# Products fraction * n within this of an integer round to it (float32 error).
_ROUND_SLACK = 1e-3


def discard_small_loss(
  per_example_losses: Any,
  fraction: Any,
  *,
  mask: Any | None = None,
) -> jax.Array:
  r"""Mean of the per-example losses without the ``fraction`` smallest ones.

  With :math:`n` valid samples (all, or those where ``mask`` is True), :math:`p` =
  ``fraction`` and :math:`k = \min(\lfloor p\,n \rfloor,\ n - 1)` (one sample is always kept):

  .. math::  \frac{1}{n - k} \sum_{i \,\notin\, \text{the } k \text{ smallest}} \ell_i ,

  the batch mean over the :math:`n - k` largest losses. The gradient flows to the kept
  samples only, each with weight :math:`1/(n-k)`; the ranking is not differentiated. A NaN
  loss is kept (it ranks above every number). ``fraction = 0`` is the plain (masked) mean;
  no valid sample gives 0. ``fraction`` may be traced, so one compiled step serves the
  paper's schedule (:func:`legw.discard_small_loss_schedule`: 30% for the first 100 epochs,
  then the full mean). Ties and sharding: :doc:`/guides/curvature`.

  Args:
    per_example_losses: array of per-sample losses, any shape (every element is one
      sample; average a language model's token losses over time first to rank sequences).
    fraction: p in [0, 1], a Python number or a (traced) scalar array; ``floor(p * n)`` is
      computed in float32, products within 1e-3 of an integer rounded to it (0.3 * 10 drops 3).
    mask: optional boolean array broadcastable to ``per_example_losses``; False marks
      padding, which is neither ranked nor averaged.

  Returns:
    A scalar in per-example loss units: float32, or the losses' dtype if wider.

  Raises:
    ValueError: for a concrete ``fraction`` outside [0, 1].
    TypeError: for a non-floating ``per_example_losses``.

  >>> import jax.numpy as jnp, legw
  >>> losses = jnp.array([1.0, 8.0, 2.0, 6.0, 3.0, 9.0, 5.0, 4.0, 7.0, 10.0])
  >>> float(legw.discard_small_loss(losses, 0.3))  # drops 1, 2, 3: mean of 4..10
  7.0
  >>> float(legw.discard_small_loss(losses, 0.0))  # the plain mean
  5.5

  References:
    Gao & Zhong, "Study on the Large Batch Size Training of Neural Networks Based on
    the Second Order Gradient", 2020, arXiv:2012.08795, §3.1, Figures 9–10.
  """
  _validation.check_range("fraction", fraction, low=0.0, high=1.0)
  losses = jnp.asarray(per_example_losses)
  if not jnp.issubdtype(losses.dtype, jnp.floating):
    raise TypeError(f"per_example_losses must be floating point; got {losses.dtype}.")
  dtype = jnp.promote_types(losses.dtype, jnp.float32)
  flat = losses.reshape(-1).astype(dtype)
  if mask is None:
    valid = jnp.ones(flat.shape, bool)
  else:
    valid = jnp.broadcast_to(jnp.asarray(mask, bool), losses.shape).reshape(-1)
  if flat.size == 0:
    return jnp.zeros((), dtype)

  n = jnp.sum(valid).astype(jnp.float32)
  p = jnp.asarray(fraction, jnp.float32)
  k = jnp.floor(p * n + _ROUND_SLACK)
  k = jnp.clip(k, 0.0, jnp.maximum(n - 1.0, 0.0)).astype(jnp.int32)

  # Order: valid samples first, ascending loss (NaN last), stable by index.
  key = jax.lax.stop_gradient(flat)
  index = jnp.arange(flat.size, dtype=jnp.int32)
  _, _, order = jax.lax.sort(
    (jnp.logical_not(valid).astype(jnp.int32), key, index), num_keys=2, is_stable=True
  )
  rank = jnp.zeros_like(index).at[order].set(index)
  keep = valid & (rank >= k)
  kept = jnp.maximum(n - k.astype(jnp.float32), 1.0)
  return jnp.sum(jnp.where(keep, flat, 0.0)) / kept.astype(dtype)


def discard_small_loss_schedule(
  fraction: float = 0.3,
  *,
  num_epochs: float = 100.0,
  steps_per_epoch: int,
) -> optax.Schedule:
  r"""The discard fraction of each step: ``fraction`` for the first epochs, then 0.

  :math:`p_t = p` for :math:`t <` round(``num_epochs`` * ``steps_per_epoch``), else 0: with
  the defaults the curvature paper's 30% for the first 100 epochs (§3.1, Figure 10). Feed
  :math:`p_t` to :func:`discard_small_loss`. **Domain:** the optimizer *step* count (optax's
  ``count``, an int or a traced integer array), not the epoch; nothing is raised outside
  the run (a negative count gives :math:`p`). The value has the float dtype optax's
  schedules give the count, and its shape.

  Args:
    fraction: p in [0, 1].
    num_epochs: how many epochs to discard for, in epochs (not steps), >= 0.
    steps_per_epoch: optimizer steps per epoch, an integer count, > 0.

  Returns:
    An ``optax.Schedule``: step count (int or traced) -> fraction.

  Raises:
    ValueError: for a fraction outside [0, 1], negative epochs or non-positive steps.
    TypeError: for a non-numeric argument, or ``steps_per_epoch`` not an integer count.

  Warns:
    UserWarning: when ``fraction > 0`` but the epochs round to 0 steps.

  >>> import legw
  >>> p = legw.discard_small_loss_schedule(0.3, num_epochs=2, steps_per_epoch=10)
  >>> [round(float(p(t)), 4) for t in (0, 19, 20, 1000)]
  [0.3, 0.3, 0.0, 0.0]

  References:
    Gao & Zhong, "Study on the Large Batch Size Training of Neural Networks Based on
    the Second Order Gradient", 2020, arXiv:2012.08795, §3.1, Figure 10.
  """
  for name, value in (("fraction", fraction), ("num_epochs", num_epochs)):
    if not _validation.is_concrete_number(value):
      raise TypeError(f"{name} must be a number; got {value!r}.")
  _validation.check_range("fraction", fraction, low=0.0, high=1.0)
  _validation.check_range("num_epochs", num_epochs, low=0.0)
  steps_per_epoch = as_count("steps_per_epoch", steps_per_epoch)
  end = int(round(num_epochs * steps_per_epoch))
  if fraction > 0 and end == 0:
    _warnings.warn(
      f"discard_small_loss_schedule: num_epochs={num_epochs:g} at "
      f"steps_per_epoch={steps_per_epoch} rounds to 0 steps, so no sample is "
      "ever discarded; num_epochs is in epochs, steps_per_epoch in optimizer steps."
    )

  def schedule(count):
    count = jnp.asarray(count)
    dtype = float_dtype(count)
    return jnp.where(count < end, jnp.asarray(fraction, dtype), jnp.zeros((), dtype))

  return schedule
