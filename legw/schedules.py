"""LEGW learning-rate schedules (``optax.Schedule`` builders).

Source: You et al., "Large-Batch Training for LSTM and Beyond"
(papers/legw-large-batch-lstm-and-beyond.txt), §3 (LEGW), §3.2 and Figure 2
(multistep and poly decays), Table 1 (ResNet-50 ladder); §2.3 (gradual and
constant warmup schemes); LARS paper Algorithm 1 (poly decay, power 2).

Units: a schedule's argument is the optimizer *step* count (optax's
``count``); lengths given to the builders are in *epochs*, turned into steps
with ``steps_per_epoch``; batch sizes are in *examples*.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax

from legw import _validation, _warnings
from legw.scaling import LR_RULES, WARMUP_RULES, as_count, scale_learning_rate, scale_warmup_epochs

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
  """The float dtype optax's schedules return for a step ``count``.

  ``optax.linear_schedule`` / ``polynomial_schedule`` divide the count, so
  their value has the dtype of ``count / 1``: float32 for int32 (optax's own
  ``count``) and for any count without ``jax_enable_x64``; float64 for Python
  ints and int64 counts under ``jax_enable_x64``; a float count keeps its
  dtype.
  """
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

  With :math:`k` = ``batch_size / base_batch_size``:

  * peak learning rate :math:`\eta = \eta_0\sqrt{k}` (``lr_scaling="sqrt"``;
    see :func:`legw.scale_learning_rate`);
  * warmup epochs :math:`e = e_0 k` (``warmup_scaling="linear"``; see
    :func:`legw.scale_warmup_epochs`), i.e. ``W = round(e * steps_per_epoch)``
    warmup steps;
  * ``warmup="gradual"``: :math:`\gamma_t = \eta\,t/W` for :math:`t < W`
    (linear from 0, reaching the peak at step W). ``warmup="constant"``: the
    constant-warmup scheme (LEGW paper §2.3; Goyal et al.), :math:`\gamma_t =`
    ``warmup_value`` (default: the unscaled ``base_learning_rate``) for
    :math:`t < W`;
  * from step W on, the decay, over the ``D = T - W`` remaining steps
    (``T = round(num_epochs * steps_per_epoch)``), starting at the peak
    (continuous at the end of gradual warmup), with :math:`s = t - W`:

    - ``"poly"``: with ``poly_origin="warmup_end"`` (the default)
      :math:`e_v + (\eta - e_v)(1 - s/D)^p` (p = ``power``, :math:`e_v` =
      ``end_value``): the decay counts the steps *after* warmup and is
      continuous at the peak, as in the MLPerf ResNet-50 LARS reference
      schedules (poly power 2 over the steps after warmup). With
      ``poly_origin="step_0"``: :math:`e_v + (\eta - e_v)(1 - t/T)^p`, the
      LEGW paper's text *literally* (§3.2, "the learning rate of iteration i
      is :math:`\eta \times (1 - i/I)^p`", I the total iterations; slides
      "Example for polynomial LR decay"), with i counted from step 0: the LR
      drops at step W from :math:`\eta` to :math:`\eta(1 - W/T)^p` — by
      :math:`(9/8)^2 \approx 1.27` at batch 32K of Table 1 (10 of 90 epochs
      of warmup). Without warmup (W = 0) both are LARS Algorithm 1's
      :math:`\gamma_0(1 - t/T)^2` (papers/lars-layer-wise-adaptive-rate-scaling.txt,
      §4, Algorithm 1);
    - ``"multistep"``: :math:`\eta\,r^{n(t)}`, :math:`n(t)` = number of
      ``boundary_epochs`` b with :math:`t \ge` round(b * steps_per_epoch), r =
      ``decay_rate`` (LEGW Figure 2.1: boundaries 30, 60, 80 and r = 0.1);
    - ``"exponential"``: :math:`\eta\,r^{s'/P}` with P = ``decay_epochs`` in
      steps and :math:`s'` the steps since the decay began (``staircase``
      floors the exponent); floored at ``end_value`` when that is > 0;
    - ``"cosine"``: :math:`e_v + (\eta - e_v)(1 + \cos(\pi s/D))/2`;
    - ``"constant"``: :math:`\eta`.

    ``decay_begin_epochs`` (poly, exponential, cosine) holds the peak until
    that epoch and decays over the rest (a ``"step_0"`` poly still counts i
    from step 0, so it drops when the hold ends). With ``staircase=True`` the
    first reduction comes one ``decay_epochs`` period *after*
    ``decay_begin_epochs``: PTB in §5.1.2 (7 constant epochs, then halved
    after each epoch) is ``decay="exponential", decay_rate=0.5,
    staircase=True, decay_begin_epochs=6``.

  **Domain of the schedule.** It maps the optimizer *step* count :math:`t`
  (optax's ``count``: steps taken so far, from 0; a Python/NumPy int, or a
  JAX integer array of any shape, traced under ``jax.jit``) — not epochs,
  not examples; for epoch e pass ``round(e * steps_per_epoch)``. Under
  ``optax.MultiSteps`` it counts optimizer steps, not micro-steps. Outside
  :math:`[0, T)` nothing is raised (a traced count cannot be checked): a
  negative count is read as step 0 (LR 0 for a gradual warmup); from step T
  on, ``"poly"`` and ``"cosine"`` give ``end_value``, ``"multistep"`` its
  last value, ``"constant"`` the peak, and ``"exponential"`` keeps decaying
  (floored at ``end_value`` when > 0). A run longer than T steps (e.g.
  ``steps_per_epoch`` from a data loader that keeps the last partial batch)
  so silently trains at the end value.

  The value has the float dtype optax's own schedules give the same count
  (float32 for optax's int32 ``count``; float64 for a Python int under
  ``jax_enable_x64``; see :func:`float_dtype`) and the count's shape.

  Args:
    base_learning_rate: tuned peak LR at the base batch, >= 0.
    base_batch_size: the batch size of the tuned recipe, in examples: an
      integer count (Python/NumPy/JAX integer or a whole float), > 0.
    batch_size: the target batch size, in examples, an integer count, > 0.
    base_warmup_epochs: tuned warmup, in epochs (not steps), >= 0.
    num_epochs: training length, in epochs, > 0.
    steps_per_epoch: optimizer steps per epoch at ``batch_size`` (e.g.
      ``dataset_size // batch_size``), an integer count, > 0.
    decay: one of ``"poly"``, ``"multistep"``, ``"exponential"``,
      ``"cosine"``, ``"constant"``.
    power: poly power p > 0.
    end_value: final LR for poly/cosine (floor for exponential), >= 0.
    boundary_epochs: multistep boundaries, in epochs from the start of
      training, each strictly after the warmup and before ``num_epochs``.
    decay_rate: multiplier per boundary (multistep) or per ``decay_epochs``
      (exponential), in (0, 1].
    decay_epochs: exponential decay period, in epochs, > 0.
    decay_begin_epochs: epoch at which the decay begins (default: end of
      warmup), in [0, num_epochs).
    staircase: exponential decay in whole periods.
    lr_scaling: ``"sqrt"`` (LEGW), ``"linear"`` or ``"none"``.
    warmup_scaling: ``"linear"`` (LEGW) or ``"none"`` (constant epochs).
    warmup: ``"gradual"`` or ``"constant"``.
    warmup_value: LR during a constant warmup, >= 0.
    poly_origin: where a ``"poly"`` decay counts its steps from:
      ``"warmup_end"`` (continuous; MLPerf LARS) or ``"step_0"`` (the LEGW
      paper's text, §3.2). Only with ``decay="poly"``.

  Returns:
    An ``optax.Schedule``: step count -> learning rate, as above.

  Raises:
    ValueError: naming the argument, for non-positive batch sizes, epochs or
      steps; an unknown rule, decay, warmup or poly origin; a
      ``poly_origin`` other than the default with a decay that is not poly;
      a scaled warmup not shorter than training (with the length it came to
      and a suggestion); boundaries outside the run or inside the warmup.
    TypeError: for non-numeric sizes, and batch sizes or ``steps_per_epoch``
      that are not integer counts (``312.5``).

  Warns:
    UserWarning: when the warmup is longer than half of training (often
      steps passed as epochs, or a batch scaled too far for ``num_epochs``),
      or when a non-zero warmup rounds to 0 steps.

  Example (LEGW paper Table 1, batch 32K on ImageNet: 2^5 peak after 10
  epochs of warmup, poly power 2 over 90 epochs):

  >>> import legw
  >>> spe = 1_281_167 // 32768  # 39 steps per epoch
  >>> s = legw.legw_schedule(base_learning_rate=2**2.5, base_batch_size=1024,
  ...                        batch_size=32768, base_warmup_epochs=0.3125,
  ...                        num_epochs=90, steps_per_epoch=spe)
  >>> [round(float(s(t)), 4) for t in (0, 195, 390, 1950, 3510)]
  [0.0, 16.0, 32.0, 8.0, 0.0]
  >>> lit = legw.legw_schedule(base_learning_rate=2**2.5, base_batch_size=1024,
  ...                          batch_size=32768, base_warmup_epochs=0.3125,
  ...                          num_epochs=90, steps_per_epoch=spe,
  ...                          poly_origin="step_0")
  >>> round(float(s(390) / lit(390)), 4)  # (9/8)^2 at the end of warmup
  1.2656
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
  if end_value > peak and decay in ("poly", "cosine"):
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
