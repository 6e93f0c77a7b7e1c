"""Checks of concrete hyperparameters, shared by every public constructor.

Only concrete Python/NumPy numbers are checked: ``optax.inject_hyperparams``
passes hyperparameters as (possibly traced) JAX arrays, and those must pass
through untouched.
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
  """Raises ``ValueError`` when a concrete ``value`` is outside the range.

  Non-concrete values (JAX arrays, tracers, schedules) are not checked.
  """
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
  """A hyperparameter that may be a schedule: a non-negative number, an array
  (``optax.inject_hyperparams`` passes traced ones), or a callable.

  Raises:
    TypeError: for anything else, e.g. a :class:`legw.Recipe` (a recipe is
      not a schedule: it needs the batch size), with what to pass instead.
    ValueError: for a negative (or NaN, infinite) concrete number.
  """
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
  """A learning rate is a non-negative number or a callable schedule.

  Raises:
    TypeError: for a value that is neither (a :class:`legw.Recipe` or
      :class:`legw.ScaledRecipe` says to pass ``recipe.schedule(...)``).
    ValueError: for a negative (NaN, infinite) number.
  """
  _check_scalar_or_schedule("learning_rate", learning_rate)


def check_weight_decay(weight_decay: Any) -> None:
  """A weight decay is a non-negative number or a callable schedule."""
  _check_scalar_or_schedule("weight_decay", weight_decay)


def check_state_dtype(name: str, dtype: Any) -> None:
  """An optimizer-state dtype (``mu_dtype``, ``accumulator_dtype``): ``None``
  (the state follows the parameters, as in optax) or a real floating dtype.

  Raises:
    TypeError: for anything that is not a dtype, or a dtype that is not real
      floating (integers, bool, complex: a momentum must hold fractions, and
      a complex state of real parameters would make their updates complex).
  """
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
  """A flag is a Python (or NumPy) bool, never a string or a number.

  Raises:
    TypeError: naming the argument, for anything else (``"yes"``, ``1``, an
      array): a truthy string would silently switch the flag on.
  """
  if not isinstance(value, (bool, np.bool_)):
    raise TypeError(f"{name} must be True or False; got {value!r} ({type(value).__name__}).")
