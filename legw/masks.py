"""Which leaves get the LARS trust ratio and weight decay.

The MLPerf ResNet-50 LARS submissions (and the LARS tech report's public code)
exclude biases and batch-norm scales/offsets from both the trust ratio and
weight decay.  A parameter tree does not say which leaf is a bias, but its
shape does: biases and normalisation parameters are vectors (``ndim <= 1``),
kernels are matrices or higher.  :func:`exclude_bias_and_norm` encodes that
rule and is the default mask of every legw optimizer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

MaskOrFn = None | bool | Any | Callable[[Any], Any]


def exclude_bias_and_norm(params: Any) -> Any:
  """Mask that is ``True`` for kernels and ``False`` for biases and norms.

  Args:
    params: a pytree of arrays (or ``jax.ShapeDtypeStruct``).

  Returns:
    A pytree of Python bools with the structure of ``params``: ``True`` where a
    leaf has ``ndim > 1`` (dense/conv kernels, embeddings), ``False`` where
    ``ndim <= 1`` (biases, BatchNorm/LayerNorm scales and offsets, scalars).

  Raises:
    Nothing of its own: any pytree works (a leaf without a shape counts as
    ``ndim`` 0).

  Source: not in the papers (Algorithm 1 of the LARS paper scales every
  layer; its Table 2 lists weights and biases separately); it is the
  practice of the MLPerf LARS submissions, which give biases and
  normalisation parameters neither the trust ratio nor weight decay.
  """
  return jax.tree.map(lambda p: np.ndim(p) > 1, params)


def resolve_mask(mask: MaskOrFn, params: Any, default: Callable[[Any], Any]) -> list[bool]:
  """Turns a mask spec into one Python bool per leaf of ``params``.

  Args:
    mask: ``None`` (use ``default(params)``), a bool (every leaf), a pytree of
      bools with the structure of ``params`` or a prefix of it, or a callable
      of ``params`` returning one of those.
    params: the parameter pytree.
    default: the mask function used when ``mask`` is ``None``.

  Returns:
    A list of bools in the order of ``jax.tree.leaves(params)``.

  Raises:
    ValueError: when the mask's structure is not a prefix of ``params``.
    TypeError: when a mask leaf is not a bool.
  """
  if mask is None:
    mask = default(params)
  elif callable(mask):
    mask = mask(params)
  try:
    full = jax.tree.map(lambda m, sub: jax.tree.map(lambda _: m, sub), mask, params)
  except ValueError as e:
    raise ValueError(
      "mask must be a bool, a pytree of bools with the structure of params "
      f"(or a prefix of it), or a callable returning one; got {mask!r}."
    ) from e
  leaves = jax.tree.leaves(full)
  for m in leaves:
    if not isinstance(m, (bool, np.bool_)):
      raise TypeError(f"mask leaves must be Python bools; got {m!r} of type {type(m).__name__}.")
  return [bool(m) for m in leaves]
