"""A tuned small-batch recipe carried to any batch size with LEGW.

LEGW paper (You et al., SC 2019, arXiv:1901.08256) §3.3; with a measured gradient noise
scale, the epochs follow the batch too (McCandlish et al. 2018, arXiv:1812.06162, §2).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import optax

from legw._scaling import (
  as_count,
  as_positive_real,
  scale_learning_rate,
  scale_num_epochs,
  scale_warmup_epochs,
)
from legw._schedules import legw_schedule


@dataclasses.dataclass(frozen=True)
class ScaledRecipe:
  r"""A :class:`Recipe` evaluated at one batch size (all plain numbers), from :meth:`Recipe.at`.

  Attributes:
    batch_size: examples per optimizer step.
    peak_learning_rate: LR at the end of warmup, :math:`\eta_0\sqrt{k}` (LEGW paper §3).
    warmup_epochs: warmup length in epochs (:math:`e_0 k`).
    warmup_steps: warmup length in optimizer steps, ``round(warmup_epochs * steps_per_epoch)``.
    steps_per_epoch: optimizer steps per epoch.
    total_steps: ``round(num_epochs * steps_per_epoch)`` optimizer steps: the schedule's
      domain is ``[0, total_steps)``.
    num_epochs: training length in epochs (with a ``noise_scale``, the budget at
      ``batch_size``: :func:`legw.scale_num_epochs`).
    recipe: the :class:`Recipe` it came from (None when built by hand).

  Example (LEGW paper Table 1 at batch 32K):

  >>> import legw
  >>> r = legw.Recipe(base_batch_size=1024, base_learning_rate=2**2.5,
  ...                 base_warmup_epochs=0.3125, num_epochs=90)
  >>> s = r.at(32768, dataset_size=1_281_167)
  >>> round(s.peak_learning_rate, 6), s.warmup_epochs, s.warmup_steps, s.total_steps
  (32.0, 10.0, 390, 3510)
  >>> lr = s.schedule()
  >>> [round(float(lr(t)), 4) for t in (0, s.warmup_steps, s.total_steps)]
  [0.0, 32.0, 0.0]
  """

  batch_size: int
  peak_learning_rate: float
  warmup_epochs: float
  warmup_steps: int
  steps_per_epoch: int
  total_steps: int
  num_epochs: float
  recipe: Recipe | None = dataclasses.field(default=None, repr=False)

  def schedule(self) -> optax.Schedule:
    """The recipe's ``optax.Schedule`` at this batch size and steps per epoch.

    ``recipe.schedule(batch_size, steps_per_epoch=steps_per_epoch)``: a function of the
    optimizer *step* count, defined on ``[0, total_steps)`` (see :meth:`Recipe.schedule`).

    Raises:
      ValueError: when this ScaledRecipe was built by hand, without a recipe.

    >>> import legw
    >>> r = legw.Recipe(base_batch_size=256, base_learning_rate=0.1,
    ...                 base_warmup_epochs=1.0, num_epochs=10)
    >>> lr = r.at(1024, steps_per_epoch=50).schedule()
    >>> [round(float(lr(t)), 4) for t in (100, 200, 500)]
    [0.1, 0.2, 0.0]
    """
    if self.recipe is None:
      raise ValueError(
        "this ScaledRecipe has no recipe to build a schedule from: make it with "
        "legw.Recipe(...).at(batch_size, dataset_size=...)."
      )
    return self.recipe.schedule(self.batch_size, steps_per_epoch=self.steps_per_epoch)


@dataclasses.dataclass(frozen=True)
class Recipe:
  r"""A baseline tuned at one batch size, and its LEGW translation to others.

  LEGW paper §3.3: tune once at ``base_batch_size``; at a batch k times larger the peak LR
  is :math:`\eta_0\sqrt{k}` and the warmup :math:`e_0 k` epochs, with the same epochs and
  decay (:func:`legw.legw_schedule`), in either direction (:meth:`rebase`). Batch sizes are
  in examples, every length in epochs; the schedules it makes take the optimizer step count.

  Attributes:
    base_batch_size: batch size the recipe was tuned at (examples).
    base_learning_rate: tuned peak LR at that batch.
    base_warmup_epochs: tuned warmup length (epochs).
    num_epochs: training length (epochs), the same at every batch size without a ``noise_scale``.
    decay, power, end_value, boundary_epochs, decay_rate, decay_epochs,
    decay_begin_epochs, staircase, lr_scaling, warmup_scaling, warmup,
    warmup_value, poly_origin: as in :func:`legw.legw_schedule`.
    noise_scale: None, or a measured gradient noise scale :math:`B_{noise}` (examples,
      > 0): training at batch B then lasts :func:`legw.scale_num_epochs` epochs, and the
      decay's epochs stretch by the same factor (the warmup's do not). How to measure it,
      and what the rule assumes: :doc:`/guides/batch_size`.

  Raises:
    ValueError, TypeError: at construction, as :func:`legw.legw_schedule` at ``base_batch_size``.

  Warns:
    UserWarning: as :func:`legw.legw_schedule`, at construction and in :meth:`at` /
      :meth:`schedule`, naming the caller's line (not legw's).

  Example (LEGW paper Table 1):

  >>> import legw
  >>> r = legw.Recipe(base_batch_size=1024, base_learning_rate=2**2.5,
  ...                 base_warmup_epochs=0.3125, num_epochs=90)
  >>> r.at(2048, dataset_size=1_281_167).warmup_epochs
  0.625
  >>> print(r.table([1024, 32768], dataset_size=1_281_167))
  batch   k  peak LR  log2 LR  warmup ep  warmup steps  steps/epoch  total steps
  -----  --  -------  -------  ---------  ------------  -----------  -----------
   1024   1  5.65685     2.50     0.3125           391         1251       112590
  32768  32       32     5.00         10           390           39         3510

  References:
    You, Hseu, Ying, Demmel, Keutzer & Hsieh, "Large-Batch Training for LSTM and
    Beyond", SC 2019, arXiv:1901.08256, §3.3 and Table 1.
  """

  base_batch_size: int
  base_learning_rate: float
  base_warmup_epochs: float
  num_epochs: float
  decay: str = "poly"
  power: float = 2.0
  end_value: float = 0.0
  boundary_epochs: tuple[float, ...] = ()
  decay_rate: float = 0.1
  decay_epochs: float = 1.0
  decay_begin_epochs: float | None = None
  staircase: bool = False
  lr_scaling: str = "sqrt"
  warmup_scaling: str = "linear"
  warmup: str = "gradual"
  warmup_value: float | None = None
  poly_origin: str = "warmup_end"
  noise_scale: float | None = None

  def __post_init__(self):
    object.__setattr__(self, "boundary_epochs", tuple(self.boundary_epochs))
    if self.noise_scale is not None:
      object.__setattr__(self, "noise_scale", as_positive_real("noise_scale", self.noise_scale))
    # Validate everything once, at the base batch size.
    self._schedule(self.base_batch_size, steps_per_epoch=1_000_000)

  def _epoch_fields(self, batch_size: int) -> dict[str, Any]:
    """The epoch-valued fields at ``batch_size``: stretched by the noise-scale budget, if any."""
    fields = {
      "num_epochs": self.num_epochs,
      "boundary_epochs": self.boundary_epochs,
      "decay_epochs": self.decay_epochs,
      "decay_begin_epochs": self.decay_begin_epochs,
    }
    if self.noise_scale is None:
      return fields
    r = scale_num_epochs(1.0, self.base_batch_size, batch_size, noise_scale=self.noise_scale)
    begin = self.decay_begin_epochs
    return {
      "num_epochs": self.num_epochs * r,
      "boundary_epochs": tuple(b * r for b in self.boundary_epochs),
      "decay_epochs": self.decay_epochs * r,
      "decay_begin_epochs": None if begin is None else begin * r,
    }

  def _schedule(self, batch_size: int, steps_per_epoch: int) -> optax.Schedule:
    """:func:`legw_schedule` with this recipe's fields (it validates them, and warns once)."""
    kwargs = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    del kwargs["noise_scale"]
    kwargs.update(self._epoch_fields(batch_size))
    return legw_schedule(batch_size=batch_size, steps_per_epoch=steps_per_epoch, **kwargs)

  def steps_per_epoch(self, batch_size: int, dataset_size: int) -> int:
    """``dataset_size // batch_size``: optimizer steps per epoch (the last partial batch dropped).

    Args:
      batch_size: examples per optimizer step, an integer count, > 0.
      dataset_size: training examples per epoch, an integer count, >= ``batch_size``.

    Raises:
      ValueError: for ``dataset_size < batch_size`` or a size <= 0.
      TypeError: for a size that is not an integer count.

    >>> import legw
    >>> r = legw.Recipe(base_batch_size=1024, base_learning_rate=2**2.5,
    ...                 base_warmup_epochs=0.3125, num_epochs=90)
    >>> r.steps_per_epoch(32768, 1_281_167)
    39
    """
    batch_size = as_count("batch_size", batch_size)
    dataset_size = as_count("dataset_size", dataset_size)
    if dataset_size < batch_size:
      raise ValueError(
        f"dataset_size={dataset_size} is smaller than batch_size={batch_size}: "
        "no full optimizer step per epoch."
      )
    return dataset_size // batch_size

  def _resolve_steps(self, batch_size, dataset_size, steps_per_epoch) -> int:
    if (dataset_size is None) == (steps_per_epoch is None):
      raise ValueError("pass exactly one of dataset_size and steps_per_epoch.")
    if steps_per_epoch is None:
      return self.steps_per_epoch(batch_size, dataset_size)
    return as_count("steps_per_epoch", steps_per_epoch)

  def at(
    self, batch_size: int, *, dataset_size: int | None = None, steps_per_epoch: int | None = None
  ) -> ScaledRecipe:
    """The recipe's numbers at ``batch_size``, as a :class:`ScaledRecipe`.

    Args:
      batch_size: target batch size, in examples (an integer count).
      dataset_size: training examples per epoch (steps per epoch: ``dataset_size //
        batch_size``), or
      steps_per_epoch: the optimizer steps per epoch directly (not epochs, not examples).

    Raises:
      ValueError: as :func:`legw.legw_schedule`, or unless exactly one of ``dataset_size``
        and ``steps_per_epoch`` is given.
      TypeError: for sizes or steps that are not integer counts.

    >>> import legw
    >>> r = legw.Recipe(base_batch_size=256, base_learning_rate=0.1,
    ...                 base_warmup_epochs=1.0, num_epochs=10)
    >>> s = r.at(1024, steps_per_epoch=50)
    >>> round(s.peak_learning_rate, 6), s.warmup_epochs, s.warmup_steps
    (0.2, 4.0, 200)
    """
    spe = self._resolve_steps(batch_size, dataset_size, steps_per_epoch)
    batch_size = as_count("batch_size", batch_size)
    self._schedule(batch_size, spe)  # validates (and warns) as legw_schedule
    warmup_epochs = scale_warmup_epochs(
      self.base_warmup_epochs, self.base_batch_size, batch_size, self.warmup_scaling
    )
    num_epochs = self._epoch_fields(batch_size)["num_epochs"]
    return ScaledRecipe(
      batch_size=batch_size,
      peak_learning_rate=scale_learning_rate(
        self.base_learning_rate, self.base_batch_size, batch_size, self.lr_scaling
      ),
      warmup_epochs=warmup_epochs,
      warmup_steps=int(round(warmup_epochs * spe)),
      steps_per_epoch=spe,
      total_steps=int(round(num_epochs * spe)),
      num_epochs=num_epochs,
      recipe=self,
    )

  def schedule(
    self, batch_size: int, *, dataset_size: int | None = None, steps_per_epoch: int | None = None
  ) -> optax.Schedule:
    """The recipe's ``optax.Schedule`` at ``batch_size`` (:func:`legw.legw_schedule`).

    Domain: the optimizer *step* count (not epochs), meant for ``[0, T)``, T =
    ``round(num_epochs * steps_per_epoch)``; nothing is raised outside it.
    ``recipe.at(...).schedule()`` is the same schedule.

    Args:
      batch_size: target batch size, in examples (an integer count).
      dataset_size, steps_per_epoch: exactly one, as :meth:`at`.

    Raises:
      ValueError, TypeError: as :meth:`at`.

    >>> import legw
    >>> r = legw.Recipe(base_batch_size=256, base_learning_rate=0.1,
    ...                 base_warmup_epochs=1.0, num_epochs=10)
    >>> lr = r.schedule(1024, steps_per_epoch=50)
    >>> [round(float(lr(t)), 4) for t in (0, 100, 200, 350, 500)]
    [0.0, 0.1, 0.2, 0.05, 0.0]
    """
    spe = self._resolve_steps(batch_size, dataset_size, steps_per_epoch)
    return self._schedule(batch_size, spe)

  def rebase(self, batch_size: int) -> Recipe:
    r"""The same recipe re-expressed with ``batch_size`` as its baseline (LEGW §3.3).

    ``Recipe(32768, ...).rebase(1024)`` is the 1K recipe the 32K one implies (LR divided by
    :math:`\sqrt{k}`, warmup epochs by k); with a ``noise_scale``, ``num_epochs`` and the
    decay's epochs become their budget at the new base. Its schedules equal this one's at
    every batch size (up to rounding).

    Args:
      batch_size: the new base batch size, in examples (an integer count).

    Raises:
      ValueError, TypeError: as :class:`Recipe` for the new baseline.

    >>> import math, legw
    >>> big = legw.Recipe(base_batch_size=32768, base_learning_rate=2**5.0,
    ...                   base_warmup_epochs=10.0, num_epochs=90)
    >>> small = big.rebase(1024)
    >>> round(math.log2(small.base_learning_rate), 6), small.base_warmup_epochs
    (2.5, 0.3125)
    """
    batch_size = as_count("batch_size", batch_size)
    return dataclasses.replace(
      self,
      **self._epoch_fields(batch_size),
      base_batch_size=batch_size,
      base_learning_rate=scale_learning_rate(
        self.base_learning_rate, self.base_batch_size, batch_size, self.lr_scaling
      ),
      base_warmup_epochs=scale_warmup_epochs(
        self.base_warmup_epochs, self.base_batch_size, batch_size, self.warmup_scaling
      ),
    )

  def ladder(
    self,
    batch_sizes: Sequence[int],
    *,
    dataset_size: int | None = None,
    steps_per_epoch: int | None = None,
  ) -> list[ScaledRecipe]:
    """:meth:`at` for each of ``batch_sizes`` (examples): a list of :class:`ScaledRecipe`.

    ``steps_per_epoch`` holds for one batch size only; for several, pass ``dataset_size``.
    Raises as :meth:`at`.

    >>> import legw
    >>> r = legw.Recipe(base_batch_size=1024, base_learning_rate=2**2.5,
    ...                 base_warmup_epochs=0.3125, num_epochs=90)
    >>> [(s.batch_size, s.warmup_steps) for s in r.ladder([1024, 8192],
    ...                                                    dataset_size=1_281_167)]
    [(1024, 391), (8192, 390)]
    """
    batch_sizes = list(batch_sizes)
    if steps_per_epoch is not None and len(set(batch_sizes)) > 1:
      raise ValueError(
        "steps_per_epoch holds for one batch size only (it shrinks as the batch grows): "
        f"pass dataset_size= for the ladder {batch_sizes}."
      )
    return [
      self.at(b, dataset_size=dataset_size, steps_per_epoch=steps_per_epoch) for b in batch_sizes
    ]

  def table(
    self,
    batch_sizes: Sequence[int],
    *,
    dataset_size: int | None = None,
    steps_per_epoch: int | None = None,
  ) -> str:
    """A plain-text table of the batch-size ladder (Table 1 of the LEGW paper).

    One line per batch size (examples): k, peak LR and its log2, warmup (epochs and steps),
    steps per epoch, (with a ``noise_scale``: the epochs,) total steps. ``dataset_size`` or
    ``steps_per_epoch`` as :meth:`ladder`; raises as :meth:`at`.

    >>> import legw
    >>> r = legw.Recipe(base_batch_size=1024, base_learning_rate=2**2.5,
    ...                 base_warmup_epochs=0.3125, num_epochs=90)
    >>> print(r.table([2048], dataset_size=1_281_167))
    batch  k  peak LR  log2 LR  warmup ep  warmup steps  steps/epoch  total steps
    -----  -  -------  -------  ---------  ------------  -----------  -----------
     2048  2        8     3.00      0.625           391          625        56250
    """
    header = (
      "batch",
      "k",
      "peak LR",
      "log2 LR",
      "warmup ep",
      "warmup steps",
      "steps/epoch",
      *(() if self.noise_scale is None else ("epochs",)),
      "total steps",
    )
    rows = []
    for s in self.ladder(batch_sizes, dataset_size=dataset_size, steps_per_epoch=steps_per_epoch):
      lr = s.peak_learning_rate
      rows.append(
        (
          f"{s.batch_size}",
          f"{s.batch_size / self.base_batch_size:g}",
          f"{lr:.6g}",
          f"{math.log2(lr):.2f}" if lr > 0 else "-",
          f"{s.warmup_epochs:g}",
          f"{s.warmup_steps}",
          f"{s.steps_per_epoch}",
          *(() if self.noise_scale is None else (f"{s.num_epochs:.2f}",)),
          f"{s.total_steps}",
        )
      )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])
