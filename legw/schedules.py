"""LEGW learning-rate schedules (``optax.Schedule`` builders).

Source: You et al., "Large-Batch Training for LSTM and Beyond"
(papers/legw-large-batch-lstm-and-beyond.txt), §3 (LEGW), §3.2 and Figure 2
(multistep and poly decays), Table 1 (ResNet-50 ladder); §2.3 (gradual and
constant warmup schemes); LARS paper Algorithm 1 (poly decay, power 2).
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import optax

from legw import _validation
from legw.scaling import LR_RULES, WARMUP_RULES, scale_learning_rate, scale_warmup_epochs

DECAYS = ("poly", "multistep", "exponential", "cosine", "constant")
WARMUPS = ("gradual", "constant")


def _positive(name, value):
  if not _validation.is_concrete_number(value):
    raise TypeError(f"{name} must be a number; got {value!r}.")
  _validation.check_range(name, value, low=0.0, low_inclusive=False)


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

    - ``"poly"``: :math:`e_v + (\eta - e_v)(1 - s/D)^p` (p = ``power``,
      :math:`e_v` = ``end_value``; LEGW paper §3.2, LARS Algorithm 1);
    - ``"multistep"``: :math:`\eta\,r^{n(t)}`, :math:`n(t)` = number of
      ``boundary_epochs`` b with :math:`t \ge` round(b * steps_per_epoch), r =
      ``decay_rate`` (LEGW Figure 2.1: boundaries 30, 60, 80 and r = 0.1);
    - ``"exponential"``: :math:`\eta\,r^{s'/P}` with P = ``decay_epochs`` in
      steps and :math:`s'` the steps since the decay began (``staircase``
      floors the exponent); floored at ``end_value`` when that is > 0;
    - ``"cosine"``: :math:`e_v + (\eta - e_v)(1 + \cos(\pi s/D))/2`;
    - ``"constant"``: :math:`\eta`.

    ``decay_begin_epochs`` (poly, exponential, cosine) holds the peak until
    that epoch and decays over the rest. With ``staircase=True`` the first
    reduction comes one ``decay_epochs`` period *after* ``decay_begin_epochs``:
    PTB in §5.1.2 (7 constant epochs, then halved after each epoch) is
    ``decay="exponential", decay_rate=0.5, staircase=True,
    decay_begin_epochs=6``.

  The schedule takes the integer step count (optax's ``count``, a Python int
  or a traced array under ``jax.jit``) and returns a float32 scalar.

  Args:
    base_learning_rate: tuned peak LR at the base batch, >= 0.
    base_batch_size, batch_size: batch sizes in examples, > 0.
    base_warmup_epochs: tuned warmup in epochs, >= 0.
    num_epochs: training length in epochs, > 0.
    steps_per_epoch: optimizer steps per epoch at ``batch_size``, > 0.
    decay: one of ``"poly"``, ``"multistep"``, ``"exponential"``,
      ``"cosine"``, ``"constant"``.
    power: poly power p > 0.
    end_value: final LR for poly/cosine (floor for exponential), >= 0.
    boundary_epochs: multistep boundaries, in epochs from the start of
      training, each strictly after the warmup and before ``num_epochs``.
    decay_rate: multiplier per boundary (multistep) or per ``decay_epochs``
      (exponential), in (0, 1].
    decay_epochs: exponential decay period, in epochs, > 0.
    decay_begin_epochs: epoch at which the decay begins (default: end of warmup).
    staircase: exponential decay in whole periods.
    lr_scaling: ``"sqrt"`` (LEGW), ``"linear"`` or ``"none"``.
    warmup_scaling: ``"linear"`` (LEGW) or ``"none"`` (constant epochs).
    warmup: ``"gradual"`` or ``"constant"``.
    warmup_value: LR during a constant warmup, >= 0.

  Returns:
    An ``optax.Schedule``.

  Raises:
    ValueError: naming the argument, for non-positive batch sizes, epochs or
      steps; an unknown rule, decay or warmup; a scaled warmup not shorter
      than training (with the length it came to and a suggestion); boundaries
      outside the run or inside the warmup.
    TypeError: for non-numeric sizes.
  """
  _validation.check_choice("decay", decay, DECAYS)
  _validation.check_choice("warmup", warmup, WARMUPS)
  _validation.check_choice("lr_scaling", lr_scaling, LR_RULES)
  _validation.check_choice("warmup_scaling", warmup_scaling, WARMUP_RULES)
  _positive("num_epochs", num_epochs)
  _positive("steps_per_epoch", steps_per_epoch)
  _positive("power", power)
  _positive("decay_epochs", decay_epochs)
  _validation.check_range("end_value", end_value, low=0.0)
  _validation.check_range("decay_rate", decay_rate, low=0.0, high=1.0, low_inclusive=False)
  if warmup_value is not None:
    _validation.check_range("warmup_value", warmup_value, low=0.0)

  peak = scale_learning_rate(base_learning_rate, base_batch_size, batch_size, lr_scaling)
  warmup_epochs = scale_warmup_epochs(base_warmup_epochs, base_batch_size, batch_size, warmup_scaling)
  if warmup_epochs >= num_epochs:
    k = batch_size / base_batch_size
    raise ValueError(
        f"base_warmup_epochs={base_warmup_epochs} scaled by {warmup_scaling!r} "
        f"(k={k:g}) gives a warmup of {warmup_epochs:g} epochs, not shorter than "
        f"num_epochs={num_epochs}; use num_epochs > {warmup_epochs:g} or a "
        f"base_warmup_epochs < {base_warmup_epochs * num_epochs / warmup_epochs:g}."
    )
  if end_value > peak and decay in ("poly", "cosine"):
    raise ValueError(f"end_value must be <= the peak learning rate {peak:g}; got {end_value}.")
  warmup_steps = int(round(warmup_epochs * steps_per_epoch))
  total_steps = int(round(num_epochs * steps_per_epoch))
  if warmup_steps >= total_steps:
    raise ValueError(
        f"warmup of {warmup_epochs:g} epochs rounds to {warmup_steps} steps, "
        f"not fewer than the {total_steps} training steps; increase num_epochs "
        "or steps_per_epoch."
    )

  begin = warmup_steps
  if decay_begin_epochs is not None:
    _validation.check_range("decay_begin_epochs", decay_begin_epochs, low=0.0,
                            high=num_epochs, high_inclusive=False)
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
    boundaries = jnp.asarray(sorted(boundaries), dtype=jnp.int32)

    def main(s):
      n = jnp.sum(jnp.asarray(s)[..., None] >= boundaries, axis=-1)
      return peak * jnp.power(jnp.float32(decay_rate), n)
  elif decay == "poly":
    main = optax.polynomial_schedule(peak, end_value, power, decay_steps, transition_begin=hold)
  elif decay == "cosine":
    cos = optax.cosine_decay_schedule(peak, decay_steps, alpha=end_value / peak if peak else 0.0)
    main = optax.join_schedules([optax.constant_schedule(peak), cos], [hold])
  elif decay == "exponential":
    main = optax.exponential_decay(
        peak, transition_steps=max(1, int(round(decay_epochs * steps_per_epoch))),
        decay_rate=decay_rate, transition_begin=hold, staircase=staircase,
        end_value=end_value if end_value > 0 else None)
  else:
    main = optax.constant_schedule(peak)

  if warmup_steps == 0:
    return _as_float32(main)
  if warmup == "gradual":
    head = optax.linear_schedule(0.0, peak, warmup_steps)
  else:
    head = optax.constant_schedule(base_learning_rate if warmup_value is None else warmup_value)
  return _as_float32(optax.join_schedules([head, main], [warmup_steps]))


def _as_float32(schedule: optax.Schedule) -> optax.Schedule:
  def wrapped(count):
    return jnp.asarray(schedule(count), dtype=jnp.float32)
  return wrapped
