"""Batch-size schedules: a few phases of constant batch size, each with its LR.

Gao & Zhong 2020, arXiv:2012.08795, §3.2 and §5 "Method 2"; each phase's LR is the LEGW one
for its batch size (You et al., arXiv:1901.08256, §3).
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Sequence

import jax.numpy as jnp
import numpy as np
import optax

from legw import _validation
from legw._recipe import Recipe
from legw._scaling import as_count
from legw._schedules import float_dtype

LearningRateFn = Callable[[int, int], optax.Schedule]


@dataclasses.dataclass(frozen=True)
class BatchPhase:
  """One phase of constant batch size in a :class:`BatchSizeSchedule`.

  Attributes:
    batch_size: examples per optimizer step in this phase.
    first_step: global step index of the phase's first step.
    num_steps: ``round(num_epochs * steps_per_epoch)`` optimizer steps (at least 1); the
      phase's global steps are ``range(first_step, end_step)``.
    first_epoch: epochs before the phase (the sum of the earlier phases' ``num_epochs``).
    num_epochs: the phase's length in epochs, as requested.
    steps_per_epoch: ``dataset_size // batch_size``.

  >>> import legw
  >>> bs = legw.batch_size_schedule([(1, 512), (2, 8192)], dataset_size=50_000)
  >>> p = bs.phases[1]
  >>> p.batch_size, p.first_step, p.num_steps, p.end_step, p.first_epoch
  (8192, 97, 12, 109, 1.0)
  """

  batch_size: int
  first_step: int
  num_steps: int
  first_epoch: float
  num_epochs: float
  steps_per_epoch: int

  @property
  def end_step(self) -> int:
    """One past the phase's last global step."""
    return self.first_step + self.num_steps


@dataclasses.dataclass(frozen=True)
class BatchSizeSchedule:
  """Per-step batch size and learning rate of a phased schedule (:func:`batch_size_schedule`).

  Steps are global optimizer steps, from 0 over all phases; epochs are passes over
  ``dataset_size`` examples.

  Attributes:
    phases: the :class:`BatchPhase` s, in order.
    total_steps: optimizer steps over all phases.
    num_epochs: epochs over all phases.
    learning_rate: ``optax.Schedule`` of the *global* step (not epochs), or None without a
      recipe. Domain ``[0, total_steps)``; nothing is raised outside it (a negative step
      reads the first phase's schedule; past the end, the last phase's continues).

  >>> import legw
  >>> bs = legw.batch_size_schedule([(1, 512), (2, 8192)], dataset_size=50_000)
  >>> bs.total_steps, bs.batch_sizes, bs.batch_size_at(96), bs.batch_size_at(97)
  (109, (512, 8192), 512, 8192)
  """

  phases: tuple[BatchPhase, ...]
  total_steps: int
  num_epochs: float
  learning_rate: optax.Schedule | None

  @property
  def batch_sizes(self) -> tuple[int, ...]:
    """The distinct batch sizes, in order of first use (one compilation each)."""
    return tuple(dict.fromkeys(p.batch_size for p in self.phases))

  def phase_at(self, step: int) -> BatchPhase:
    """The phase of global ``step``, a concrete integer in ``[0, total_steps)``.

    Raises:
      ValueError: for a step outside [0, total_steps).
      TypeError: for a step that is not an integer count.

    >>> import legw
    >>> bs = legw.batch_size_schedule([(1, 512), (2, 8192)], dataset_size=50_000)
    >>> bs.phase_at(100).batch_size
    8192
    """
    try:
      step = operator.index(step)  # Python/NumPy/JAX integer scalars
    except TypeError:
      raise TypeError(f"step must be a concrete integer; got {step!r}.") from None
    if not 0 <= step < self.total_steps:
      raise ValueError(f"step must be in [0, {self.total_steps}); got {step}.")
    for phase in self.phases:
      if step < phase.end_step:
        return phase
    raise AssertionError("unreachable")

  def batch_size_at(self, step: int) -> int:
    """The batch size of global ``step`` (a Python int); raises as :meth:`phase_at`.

    >>> import legw
    >>> bs = legw.batch_size_schedule([(1, 512), (2, 8192)], dataset_size=50_000)
    >>> bs.batch_size_at(0), bs.batch_size_at(108)
    (512, 8192)
    """
    return self.phase_at(step).batch_size

  def learning_rates(self) -> np.ndarray:
    """The learning rate of every step, shape (total_steps,), float32 (for logs).

    Raises:
      ValueError: when the schedule was built without a recipe.

    >>> import legw
    >>> recipe = legw.Recipe(base_batch_size=20, base_learning_rate=1.0,
    ...                      base_warmup_epochs=0.1, num_epochs=2, decay="constant")
    >>> bs = legw.batch_size_schedule([(1, 20), (1, 80)], dataset_size=800,
    ...                               recipe=recipe)
    >>> bs.learning_rates()[[0, 2, 4, 39, 40]].tolist()
    [0.0, 0.5, 1.0, 1.0, 2.0]
    """
    if self.learning_rate is None:
      raise ValueError("this BatchSizeSchedule has no learning rate: pass recipe=.")
    return np.asarray(self.learning_rate(jnp.arange(self.total_steps)), np.float32)


def batch_size_schedule(
  phases: Sequence[tuple[float, int]],
  *,
  dataset_size: int,
  recipe: Recipe | LearningRateFn | None = None,
) -> BatchSizeSchedule:
  r"""A schedule of a few constant-batch-size phases and their learning rates.

  Phase i trains ``num_epochs_i`` epochs at batch :math:`b_i`: ``round(num_epochs_i * s_i)``
  steps (at least 1), :math:`s_i` = ``dataset_size // b_i`` per epoch. Its learning rate is
  the recipe's LEGW schedule *for* :math:`b_i` (:class:`legw.Recipe`), read at the phase's
  epoch position: global step t gets ``schedule_i(t - first_step_i + round(first_epoch_i *
  s_i))``. So the LR follows the epochs, and jumps at a boundary by the factor the scaling
  rule gives the new batch. Phase lengths are in *epochs*, sizes in *examples*; the
  ``learning_rate`` takes the global optimizer *step* (domain ``[0, total_steps)``).

  Args:
    phases: ``(num_epochs, batch_size)`` pairs in training order; epochs > 0 (fractions
      allowed), batch sizes integer counts, 0 < batch size <= ``dataset_size``.
    dataset_size: training examples per epoch, an integer count, > 0.
    recipe: a :class:`legw.Recipe` (its ``num_epochs`` the phases' total), or a callable
      ``(batch_size, steps_per_epoch) -> optax.Schedule`` of the step within that batch
      size's own run (the curvature paper's hand-picked rates: ``lambda b, spe:
      optax.constant_schedule(0.005 if b == 512 else 0.05)``), or None (batch sizes only).

  Returns:
    A :class:`BatchSizeSchedule`.

  Raises:
    ValueError: for no phases, non-positive epochs or sizes, a batch larger than the data
      set, a phase of 0 steps, a recipe whose ``num_epochs`` differs from the phases'
      total, or as :func:`legw.legw_schedule` at a phase's batch size.
    TypeError: for sizes that are not integer counts, or a ``recipe`` of another type.

  Example (curvature paper §3.2: one epoch at batch 512, then 8192):

  >>> import legw
  >>> recipe = legw.Recipe(base_batch_size=8192, base_learning_rate=0.05,
  ...                      base_warmup_epochs=0.0, num_epochs=3, decay="constant")
  >>> bs = legw.batch_size_schedule([(1, 512), (2, 8192)], dataset_size=50_000,
  ...                               recipe=recipe)
  >>> [(p.batch_size, p.num_steps) for p in bs.phases]
  [(512, 97), (8192, 12)]
  >>> [round(float(bs.learning_rate(t)), 4) for t in (0, 96, 97, 108)]
  [0.0125, 0.0125, 0.05, 0.05]

  References:
    Gao & Zhong, "Study on the Large Batch Size Training of Neural Networks Based on
    the Second Order Gradient", 2020, arXiv:2012.08795, §3.2.
  """
  dataset_size = as_count("dataset_size", dataset_size)
  if not phases:
    raise ValueError("phases must hold at least one (num_epochs, batch_size) pair.")
  built = []
  step, epoch = 0, 0.0
  for i, phase in enumerate(phases):
    try:
      num_epochs, batch_size = phase
    except (TypeError, ValueError):
      raise ValueError(
        f"phases[{i}] must be a (num_epochs, batch_size) pair; got {phase!r}."
      ) from None
    batch_size = as_count(f"phases[{i}] batch_size", batch_size)
    if not _validation.is_concrete_number(num_epochs):
      raise TypeError(f"phases[{i}] num_epochs must be a number; got {num_epochs!r}.")
    _validation.check_range(f"phases[{i}] num_epochs", num_epochs, low=0.0, low_inclusive=False)
    if batch_size > dataset_size:
      raise ValueError(
        f"phases[{i}] batch_size={batch_size} is larger than dataset_size={dataset_size}."
      )
    spe = dataset_size // batch_size
    num_steps = int(round(num_epochs * spe))
    if num_steps < 1:
      raise ValueError(
        f"phases[{i}]: {num_epochs} epochs at batch {batch_size} ({spe} steps per "
        "epoch) round to 0 steps; lengthen the phase."
      )
    built.append(
      BatchPhase(
        batch_size=batch_size,
        first_step=step,
        num_steps=num_steps,
        first_epoch=epoch,
        num_epochs=float(num_epochs),
        steps_per_epoch=spe,
      )
    )
    step += num_steps
    epoch += float(num_epochs)
  built_phases = tuple(built)

  learning_rate = None
  if recipe is not None:
    if isinstance(recipe, Recipe):
      if abs(recipe.num_epochs - epoch) > 1e-9 * max(1.0, epoch):
        raise ValueError(
          f"recipe.num_epochs={recipe.num_epochs} differs from the phases' total of "
          f"{epoch:g} epochs."
        )
      make = lambda b, spe: recipe.schedule(b, steps_per_epoch=spe)
    elif callable(recipe):
      make = recipe
    else:
      raise TypeError(f"recipe must be a legw.Recipe, a callable or None; got {recipe!r}.")
    # One schedule per phase (built at its batch size), read at its epoch position.
    parts = [
      (
        p,
        make(p.batch_size, p.steps_per_epoch),
        p.first_step - int(round(p.first_epoch * p.steps_per_epoch)),
      )
      for p in built_phases
    ]
    learning_rate = _piecewise(parts)
  return BatchSizeSchedule(
    phases=built_phases, total_steps=step, num_epochs=epoch, learning_rate=learning_rate
  )


def _piecewise(parts) -> optax.Schedule:
  def schedule(count):
    count = jnp.asarray(count)
    dtype = float_dtype(count)
    _, last, shift = parts[-1]
    out = jnp.asarray(last(count - shift), dtype)  # the last phase runs on
    for phase, sched, shift in reversed(parts[:-1]):
      value = jnp.asarray(sched(count - shift), dtype)
      out = jnp.where(count < phase.end_step, value, out)
    return jnp.broadcast_to(out, count.shape)

  return schedule
