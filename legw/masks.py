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
import jax.numpy as jnp
import numpy as np

from legw._reduce import is_trainable

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


LayerAxis = None | int | Any | Callable[[Any], Any]


def resolve_layer_axis(layer_axis: LayerAxis, params: Any) -> list[int | None]:
  """Turns a ``layer_axis`` spec into one stacked-layer axis (or None) per leaf.

  Args:
    layer_axis: ``None`` (no leaf is stacked), an int (every floating leaf
      stacks its layers on that axis), a pytree of ints or ``None`` with the
      structure of ``params`` or a prefix of it, or a callable of ``params``
      returning one of those.
    params: the parameter pytree.

  Returns:
    A list in the order of ``jax.tree.leaves(params)``: a non-negative axis,
    or ``None``.  Leaves that are not floating always get ``None``.

  Raises:
    ValueError: when the structure is not a prefix of ``params``, or an axis
      is out of range for its leaf.
    TypeError: when an entry is neither an int nor ``None``.
  """
  leaves = jax.tree.leaves(params)
  if layer_axis is None:
    return [None] * len(leaves)
  if callable(layer_axis):
    layer_axis = layer_axis(params)
  is_none = lambda x: x is None
  try:
    full = jax.tree.map(
      lambda a, sub: jax.tree.map(lambda _: _AxisLeaf(a), sub), layer_axis, params, is_leaf=is_none
    )
  except ValueError as e:
    raise ValueError(
      "layer_axis must be None, an int, a pytree of ints or None with the structure of "
      f"params (or a prefix of it), or a callable returning one; got {layer_axis!r}."
    ) from e
  axes = [a.axis for a in jax.tree.leaves(full, is_leaf=lambda x: isinstance(x, _AxisLeaf))]
  out: list[int | None] = []
  for a, p in zip(axes, leaves):
    if a is not None and (isinstance(a, bool) or not isinstance(a, (int, np.integer))):
      raise TypeError(f"layer_axis entries must be ints or None; got {a!r}.")
    if a is None or not is_trainable(p):
      out.append(None)
      continue
    ndim = np.ndim(p)
    if not -ndim <= a < ndim:
      raise ValueError(f"layer_axis {a} is out of range for a leaf of shape {np.shape(p)}.")
    out.append(int(a) % ndim)
  return out


def per_layer_shapes(params: Any, axes: list[int | None]) -> Any:
  """``params`` with each stacked leaf replaced by one layer's ``ShapeDtypeStruct``."""
  leaves, treedef = jax.tree.flatten(params)
  return jax.tree.unflatten(
    treedef,
    [
      p
      if a is None
      else jax.ShapeDtypeStruct(np.shape(p)[:a] + np.shape(p)[a + 1 :], jnp.result_type(p))
      for p, a in zip(leaves, axes)
    ],
  )


class _AxisLeaf:
  """A layer axis as a pytree leaf (``None`` would be an empty subtree)."""

  def __init__(self, axis):
    self.axis = axis
