"""Checks of concrete hyperparameters, shared by every public constructor.

Only concrete numbers are checked: ``optax.inject_hyperparams`` passes (traced) arrays.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax.numpy as jnp
import numpy as np


def is_concrete_number(value: Any) -> bool:
  """True for Python/NumPy real numbers (not bools, not JAX arrays)."""
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_range(
  name: str,
  value: Any,
  *,
  low: float | None = None,
  high: float | None = None,
  low_inclusive: bool = True,
  high_inclusive: bool = True,
) -> None:
  """Raises ``ValueError`` when a concrete ``value`` is outside the range (others pass)."""
  if not is_concrete_number(value):
    return
  v = float(value)
  ok = math.isfinite(v)  # NaN and +-inf fail every range.
  if ok and low is not None:
    ok = v >= low if low_inclusive else v > low
  if ok and high is not None:
    ok = v <= high if high_inclusive else v < high
  if not ok:
    lo = "(-inf" if low is None else ("[" if low_inclusive else "(") + f"{low:g}"
    hi = "inf)" if high is None else f"{high:g}" + ("]" if high_inclusive else ")")
    raise ValueError(f"{name} must be in {lo}, {hi}; got {value!r}.")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
  """Raises ``ValueError`` unless ``value`` is one of ``choices``."""
  if value not in choices:
    raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}.")


def _check_scalar_or_schedule(name: str, value: Any) -> None:
  """A non-negative number, an array or a callable; else TypeError (a Recipe is told what to
  pass instead), or ValueError for a negative, NaN or infinite number."""
  if callable(value):
    return
  kind = type(value).__name__
  if kind == "Recipe":
    raise TypeError(
      f"{name} got a legw.Recipe, which is not a schedule (it needs the batch "
      f"size): pass recipe.schedule(batch_size, dataset_size=...) (an "
      f"optax.Schedule of the step count)."
    )
  if kind == "ScaledRecipe":
    raise TypeError(
      f"{name} got a legw.ScaledRecipe (the numbers of a recipe at one batch "
      f"size), not a schedule: pass recipe.schedule(batch_size, "
      f"dataset_size=...) of the Recipe, or scaled.peak_learning_rate for a "
      f"constant rate."
    )
  if not (is_concrete_number(value) or hasattr(value, "dtype")):
    raise TypeError(
      f"{name} must be a number, a JAX array or an optax.Schedule (a callable "
      f"of the step count); got {value!r} of type {kind}."
    )
  check_range(name, value, low=0.0)


def check_learning_rate(learning_rate: Any) -> None:
  """A learning rate: a non-negative number or a callable schedule."""
  _check_scalar_or_schedule("learning_rate", learning_rate)


def check_weight_decay(weight_decay: Any) -> None:
  """A weight decay is a non-negative number or a callable schedule."""
  _check_scalar_or_schedule("weight_decay", weight_decay)


def check_state_dtype(name: str, dtype: Any) -> None:
  """An optimizer-state dtype: ``None`` (the parameters', as in optax) or a real floating
  dtype; TypeError otherwise (a momentum holds fractions, a complex one makes updates complex)."""
  if dtype is None:
    return
  try:
    dt = jnp.dtype(dtype)
  except TypeError as e:
    raise TypeError(
      f"{name} must be None or a floating dtype (e.g. jnp.bfloat16, 'float32'); got {dtype!r}."
    ) from e
  if not jnp.issubdtype(dt, jnp.floating):
    raise TypeError(
      f"{name} must be None or a floating dtype (e.g. jnp.bfloat16, 'float32'); "
      f"got {dtype!r} ({dt.name})."
    )


def check_bool(name: str, value: Any) -> None:
  """A flag is a Python or NumPy bool; TypeError naming it otherwise ("yes" would switch it on)."""
  if not isinstance(value, (bool, np.bool_)):
    raise TypeError(f"{name} must be True or False; got {value!r} ({type(value).__name__}).")
