"""A tuned small-batch recipe carried to any batch size with LEGW.

Source: LEGW paper (papers/legw-large-batch-lstm-and-beyond.txt) §3.3
"Minimal Tuning Effort": tune a baseline once; scaling the batch by k scales
the LR by sqrt(k) and the warmup epochs by k, in either direction.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import optax

from legw import _validation
from legw.scaling import scale_learning_rate, scale_warmup_epochs
from legw.schedules import legw_schedule


@dataclasses.dataclass(frozen=True)
class ScaledRecipe:
  """A :class:`Recipe` evaluated at one batch size (all plain numbers).

  Attributes:
    batch_size: examples per optimizer step.
    peak_learning_rate: LR at the end of warmup.
    warmup_epochs: warmup length in epochs.
    warmup_steps: warmup length in optimizer steps.
    steps_per_epoch: optimizer steps per epoch.
    total_steps: optimizer steps in ``num_epochs``.
    num_epochs: training length in epochs.
  """
  batch_size: int
  peak_learning_rate: float
  warmup_epochs: float
  warmup_steps: int
  steps_per_epoch: int
  total_steps: int
  num_epochs: float


@dataclasses.dataclass(frozen=True)
class Recipe:
  """A baseline tuned at one batch size, and its LEGW translation to others.

  Attributes:
    base_batch_size: batch size the recipe was tuned at (examples).
    base_learning_rate: tuned peak LR at that batch.
    base_warmup_epochs: tuned warmup length (epochs).
    num_epochs: training length (epochs; the same at every batch size).
    decay, power, end_value, boundary_epochs, decay_rate, decay_epochs,
    decay_begin_epochs, staircase, lr_scaling, warmup_scaling, warmup,
    warmup_value: as in :func:`legw.legw_schedule`.

  Example (LEGW paper Table 1)::

    r = legw.Recipe(base_batch_size=1024, base_learning_rate=2**2.5,
                    base_warmup_epochs=0.3125, num_epochs=90)
    r.at(32768, dataset_size=1_281_167).peak_learning_rate   # 2**5.0 = 32.0
    r.at(32768, dataset_size=1_281_167).warmup_epochs        # 10.0
    print(r.table([1024, 2048, 4096, 8192, 16384, 32768], dataset_size=1_281_167))
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

  def __post_init__(self):
    object.__setattr__(self, "boundary_epochs", tuple(self.boundary_epochs))
    # Validate everything once, at the base batch size.
    self._schedule_kwargs(self.base_batch_size, steps_per_epoch=1_000_000)

  def _schedule_kwargs(self, batch_size: int, steps_per_epoch: int) -> dict:
    kwargs = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    legw_schedule(batch_size=batch_size, steps_per_epoch=steps_per_epoch, **kwargs)
    return kwargs

  def steps_per_epoch(self, batch_size: int, dataset_size: int) -> int:
    """``dataset_size // batch_size`` (the last partial batch is dropped).

    Raises:
      ValueError: when ``dataset_size < batch_size`` (no full step per epoch).
    """
    for name, v in (("batch_size", batch_size), ("dataset_size", dataset_size)):
      if not isinstance(v, int) or isinstance(v, bool):
        raise TypeError(f"{name} must be an int; got {v!r}.")
      _validation.check_range(name, v, low=1)
    if dataset_size < batch_size:
      raise ValueError(
          f"dataset_size={dataset_size} is smaller than batch_size={batch_size}: "
          "no full optimizer step per epoch.")
    return dataset_size // batch_size

  def _resolve_steps(self, batch_size, dataset_size, steps_per_epoch) -> int:
    if (dataset_size is None) == (steps_per_epoch is None):
      raise ValueError("pass exactly one of dataset_size and steps_per_epoch.")
    if steps_per_epoch is None:
      return self.steps_per_epoch(batch_size, dataset_size)
    return steps_per_epoch

  def at(self, batch_size: int, *, dataset_size: int | None = None,
         steps_per_epoch: int | None = None) -> ScaledRecipe:
    """The recipe's numbers at ``batch_size``.

    Args:
      batch_size: target batch size, in examples.
      dataset_size: training examples per epoch (steps per epoch are
        ``dataset_size // batch_size``), or
      steps_per_epoch: the steps per epoch directly.

    Raises:
      ValueError: as :func:`legw.legw_schedule`, or when neither or both of
        ``dataset_size`` and ``steps_per_epoch`` are given.
    """
    spe = self._resolve_steps(batch_size, dataset_size, steps_per_epoch)
    self._schedule_kwargs(batch_size, spe)
    warmup_epochs = scale_warmup_epochs(
        self.base_warmup_epochs, self.base_batch_size, batch_size, self.warmup_scaling)
    return ScaledRecipe(
        batch_size=batch_size,
        peak_learning_rate=scale_learning_rate(
            self.base_learning_rate, self.base_batch_size, batch_size, self.lr_scaling),
        warmup_epochs=warmup_epochs,
        warmup_steps=int(round(warmup_epochs * spe)),
        steps_per_epoch=spe,
        total_steps=int(round(self.num_epochs * spe)),
        num_epochs=self.num_epochs,
    )

  def schedule(self, batch_size: int, *, dataset_size: int | None = None,
               steps_per_epoch: int | None = None) -> optax.Schedule:
    """The ``optax.Schedule`` (of the step count) at ``batch_size``."""
    spe = self._resolve_steps(batch_size, dataset_size, steps_per_epoch)
    return legw_schedule(batch_size=batch_size, steps_per_epoch=spe,
                         **self._schedule_kwargs(batch_size, spe))

  def rebase(self, batch_size: int) -> "Recipe":
    """The same recipe re-expressed with ``batch_size`` as its baseline.

    LEGW works in both directions (§3.3): ``Recipe(32768, ...).rebase(1024)``
    is the 1K recipe the 32K one implies.
    """
    return dataclasses.replace(
        self,
        base_batch_size=batch_size,
        base_learning_rate=scale_learning_rate(
            self.base_learning_rate, self.base_batch_size, batch_size, self.lr_scaling),
        base_warmup_epochs=scale_warmup_epochs(
            self.base_warmup_epochs, self.base_batch_size, batch_size, self.warmup_scaling),
    )

  def ladder(self, batch_sizes: Sequence[int], *, dataset_size: int | None = None,
             steps_per_epoch: int | None = None) -> list[ScaledRecipe]:
    """:meth:`at` for each batch size (``steps_per_epoch`` only for one size)."""
    return [self.at(b, dataset_size=dataset_size, steps_per_epoch=steps_per_epoch)
            for b in batch_sizes]

  def table(self, batch_sizes: Sequence[int], *, dataset_size: int) -> str:
    """A plain-text table of the batch-size ladder (Table 1 of the LEGW paper)."""
    header = ("batch", "k", "peak LR", "log2 LR", "warmup ep", "warmup steps",
              "steps/epoch", "total steps")
    rows = []
    for s in self.ladder(batch_sizes, dataset_size=dataset_size):
      lr = s.peak_learning_rate
      rows.append((
          f"{s.batch_size}", f"{s.batch_size / self.base_batch_size:g}",
          f"{lr:.6g}", f"{math.log2(lr):.2f}" if lr > 0 else "-",
          f"{s.warmup_epochs:g}", f"{s.warmup_steps}", f"{s.steps_per_epoch}",
          f"{s.total_steps}"))
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])
