"""Which leaves get the LARS trust ratio and weight decay.

:func:`exclude_bias_and_norm` (by shape, the default of every legw optimizer) and
:func:`path_mask` (by name).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from legw._reduce import is_trainable

MaskOrFn = None | bool | Any | Callable[[Any], Any]


def exclude_bias_and_norm(params: Any) -> Any:
  """Mask that is ``True`` for kernels and ``False`` for biases and norms.

  ``True`` where a leaf has ``ndim > 1`` (dense/conv kernels, embeddings), ``False`` where
  ``ndim <= 1`` (biases, BatchNorm/LayerNorm scales and offsets, scalars; a leaf without a
  shape counts as ``ndim`` 0). The default mask of every legw optimizer.

  Args:
    params: a pytree of arrays (or ``jax.ShapeDtypeStruct``).

  Returns:
    A pytree of Python bools with the structure of ``params``.

  References:
    Not in the papers (Algorithm 1 of the LARS paper scales every layer; its Table 2 lists
    weights and biases apart): the practice of the MLPerf LARS submissions, which give
    biases and normalisation parameters neither the trust ratio nor weight decay.
  """
  return jax.tree.map(lambda p: np.ndim(p) > 1, params)


def resolve_mask(mask: MaskOrFn, params: Any, default: Callable[[Any], Any]) -> list[bool]:
  """One Python bool per leaf of ``params`` from a mask spec (None: ``default(params)``, a
  bool, a prefix pytree of bools, or a callable of params returning one); else raises."""
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
  """One stacked-layer axis (a non-negative int) or None per leaf of ``params``, from a
  ``layer_axis`` spec in a mask's forms; non-floating leaves get None."""
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


def leaf_path(path: Any) -> str:
  """The "/"-joined keys of a key path, less a final NNX ``.value``: the name
  :func:`path_mask` matches, and the key of every per-layer dict and message.

  >>> import jax
  >>> from legw._masks import leaf_path
  >>> tree = {"params": {"Dense_0": {"kernel": 1.0}}, "layers": [{"w": 2.0}]}
  >>> [leaf_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
  ['layers/0/w', 'params/Dense_0/kernel']
  """
  path = tuple(path)
  if path and isinstance(path[-1], jax.tree_util.GetAttrKey) and path[-1].name == "value":
    path = path[:-1]
  return jax.tree_util.keystr(path, simple=True, separator="/")


def _compile(argument: str, patterns: Any) -> tuple[re.Pattern[str], ...]:
  if patterns is None:
    return ()
  if isinstance(patterns, str):
    patterns = (patterns,)
  try:
    patterns = tuple(patterns)
  except TypeError:
    raise TypeError(
      f"{argument} must be a regular expression (a str) or a sequence of them; got {patterns!r}."
    ) from None
  out = []
  for p in patterns:
    if not isinstance(p, str):
      raise TypeError(f"{argument} patterns must be str (regular expressions); got {p!r}.")
    try:
      out.append(re.compile(p))
    except re.error as e:
      raise ValueError(f"{argument} pattern {p!r} is not a valid regular expression: {e}.") from e
  return tuple(out)


class _PathMask:
  """The callable :func:`path_mask` returns (a class for its ``repr``)."""

  def __init__(self, include, exclude, strict):
    self.include = _compile("include", include)
    self.exclude = _compile("exclude", exclude)
    if not self.include and not self.exclude:
      raise ValueError(
        "path_mask needs include= or exclude= (a regular expression or a sequence of them)."
      )
    if not isinstance(strict, bool):
      raise TypeError(f"strict must be a bool; got {strict!r}.")
    self.strict = strict

  def __repr__(self) -> str:
    parts = []
    if self.include:
      parts.append(f"include={tuple(p.pattern for p in self.include)!r}")
    if self.exclude:
      parts.append(f"exclude={tuple(p.pattern for p in self.exclude)!r}")
    if not self.strict:
      parts.append("strict=False")
    return f"legw.path_mask({', '.join(parts)})"

  def __call__(self, params: Any) -> Any:
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    paths = [leaf_path(path) for path, _ in flat]
    if self.strict:
      for argument, patterns in (("include", self.include), ("exclude", self.exclude)):
        for p in patterns:
          if not any(p.search(s) for s in paths):
            shown = ", ".join(repr(s) for s in paths[:6])
            more = f", ... ({len(paths)} leaves)" if len(paths) > 6 else ""
            raise ValueError(
              f"path_mask {argument} pattern {p.pattern!r} matches no parameter path; "
              f"the paths are {shown or '(none)'}{more}. Pass strict=False to allow it."
            )
    mask = [
      (not self.include or any(p.search(s) for p in self.include))
      and not any(p.search(s) for p in self.exclude)
      for s in paths
    ]
    return jax.tree_util.tree_unflatten(treedef, mask)


def path_mask(
  *,
  include: str | Sequence[str] | None = None,
  exclude: str | Sequence[str] | None = None,
  strict: bool = True,
) -> Callable[[Any], Any]:
  r"""A mask by regular expressions over the parameter paths.

  A leaf's path is its keys joined by "/" (the final ``.value`` of a Flax NNX ``Variable``
  dropped), e.g. ``Dense_0/kernel`` in Flax Linen ``params``. A pattern matches a path if
  ``re.search`` finds it anywhere in it (anchor with ``^`` and ``$``). Per path :math:`s`:

  .. math::

     \mathrm{mask}(s) = \big(\text{no include} \lor \exists p \in
     \text{include}: p \sim s\big) \land \lnot\,\exists q \in
     \text{exclude}: q \sim s

  For any legw (or optax) mask; unlike :func:`legw.exclude_bias_and_norm`, it can take out
  embeddings or stacked norm scales (:doc:`/guides/optimizer_state_and_masks`).

  Args:
    include: a regular expression (a ``str``) or a sequence of them; a leaf is in the
      mask only if its path matches one. Default (``None``): every leaf.
    exclude: same forms; a leaf whose path matches one is out of the mask.
    strict: if True (default), every pattern must match at least one path.

  Returns:
    A callable of ``params`` returning a pytree of Python bools shaped as ``params``.

  Raises:
    ValueError: at construction, for an invalid regular expression, or neither ``include``
      nor ``exclude``; at ``init``, with ``strict=True``, for a pattern that matches no path.
    TypeError: at construction, for a pattern that is not a ``str``, or a non-bool ``strict``.

  Example:
    >>> import jax.numpy as jnp, legw
    >>> params = {"embed": {"embedding": jnp.ones((10, 4))},
    ...           "ln": {"scale": jnp.ones(4), "bias": jnp.zeros(4)},
    ...           "dense": {"kernel": jnp.ones((4, 4)), "bias": jnp.zeros(4)}}
    >>> mask = legw.path_mask(exclude=("bias", "ln/", "embed"))
    >>> mask(params)
    {'dense': {'bias': False, 'kernel': True}, 'embed': {'embedding': False},
     'ln': {'bias': False, 'scale': False}}
    >>> opt = legw.lars(0.1, trust_ratio_mask=mask, weight_decay_mask=mask)

  References:
    The ``skip_list`` of MLPerf's TensorFlow LARS; ``exclude_from_weight_decay`` and
    ``exclude_from_layer_adaptation`` of TensorFlow Addons' LAMB; big_vision's regular
    expressions over "/"-joined paths.
  """
  return _PathMask(include, exclude, strict)
