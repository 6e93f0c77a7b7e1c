"""Checks of concrete hyperparameters, shared by every public constructor.

Only concrete Python/NumPy numbers are checked: ``optax.inject_hyperparams``
passes hyperparameters as (possibly traced) JAX arrays, and those must pass
through untouched.
"""

from __future__ import annotations

import math
import numbers
from typing import Any


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
    raise ValueError(
        f"{name} must be one of {', '.join(repr(c) for c in choices)}; "
        f"got {value!r}."
    )


def check_learning_rate(learning_rate: Any) -> None:
  """A learning rate is a non-negative number or a callable schedule."""
  if callable(learning_rate):
    return
  check_range("learning_rate", learning_rate, low=0.0)
