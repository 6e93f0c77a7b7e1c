r"""Per-layer statistics and the local Lipschitz estimate, for logging.

Sources:
  * You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks"
    (papers/lars-layer-wise-adaptive-rate-scaling.txt), Table 2: per-layer
    :math:`\|w\|`, :math:`\|\nabla L(w)\|` and their ratio at the first
    iteration.
  * You et al., "Large-Batch Training for LSTM and Beyond"
    (papers/legw-large-batch-lstm-and-beyond.txt), §4 and Figure 3: the local
    Lipschitz estimate :math:`L(x, g) = |g^T \nabla^2 f(x) g| / \|g\|^2`
    along training.

Complex parameters are treated as pairs of reals (as optax does): norms are
of :math:`|x|^2 = \mathrm{Re}(x)^2 + \mathrm{Im}(x)^2`, and the curvature is
that of the loss as a function of the real and imaginary parts.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from legw._reduce import AxisName, stat_dtype, sum_of_squares
from legw.masks import LayerAxis, resolve_layer_axis


def _real_stat_dtype(dtype) -> jnp.dtype:
  """The real dtype of a leaf's statistics: float32 or wider (complex64 -> float32)."""
  return jnp.finfo(stat_dtype(dtype)).dtype


def _squared_norm(x: Any, layer_axis: int | None = None) -> jax.Array:
  """sum(|x|^2), real, in float32 or wider (complex x: Re^2 + Im^2).

  With ``layer_axis``, one sum per slice along that axis.
  """
  x = jnp.asarray(x)
  if layer_axis is not None:
    return jax.vmap(_squared_norm, in_axes=layer_axis)(x)
  if jnp.iscomplexobj(x):
    return sum_of_squares(jnp.real(x)) + sum_of_squares(jnp.imag(x))
  return sum_of_squares(x)


def _real_inner(d: jax.Array, hd: jax.Array, dtype) -> jax.Array:
  r"""<d, Hd> over the reals, from JAX's (conjugated) Hessian-vector product.

  For a real loss of complex parameters, ``jax.grad`` gives the conjugate of
  the gradient with respect to (Re x, Im x) written as a complex number, and
  so does its ``jvp`` for :math:`Hd`: the real inner product is then
  :math:`\sum \mathrm{Re}(d \cdot hd) = \sum \mathrm{Re}\,d\,\mathrm{Re}\,hd
  - \mathrm{Im}\,d\,\mathrm{Im}\,hd`.
  """
  if jnp.iscomplexobj(d) or jnp.iscomplexobj(hd):
    re = jnp.sum(jnp.real(d).astype(dtype) * jnp.real(hd).astype(dtype))
    return re - jnp.sum(jnp.imag(d).astype(dtype) * jnp.imag(hd).astype(dtype))
  return jnp.sum(d.astype(dtype) * hd.astype(dtype))


def _key_name(k: Any) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def leaf_path(path: tuple) -> str:
  """The "/"-joined key names of a ``jax.tree_util`` key path.

  Dict keys, attribute names and sequence indices are written bare:
  ``["params"]["Dense_0"]["kernel"]`` (Flax Linen) becomes
  ``"params/Dense_0/kernel"``, ``[0]["w"]`` becomes ``"0/w"``.  A final
  ``.value`` attribute (the array inside a Flax NNX ``Variable``) is dropped:
  an NNX ``State`` leaf ``layers/0/kernel/.value`` is ``"layers/0/kernel"``.

  Args:
    path: a key path, as ``jax.tree_util.tree_flatten_with_path`` gives.

  Returns:
    The path as a string.

  >>> import jax
  >>> from legw.diagnostics import leaf_path
  >>> tree = {"params": {"Dense_0": {"kernel": 1.0}}, "layers": [{"w": 2.0}]}
  >>> [leaf_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
  ['layers/0/w', 'params/Dense_0/kernel']
  """
  path = tuple(path)
  if path and isinstance(path[-1], jax.tree_util.GetAttrKey) and path[-1].name == "value":
    path = path[:-1]
  return "/".join(_key_name(k) for k in path)


def layerwise_stats(
  params: Any, grads: Any, *, axis_name: AxisName = None, layer_axis: LayerAxis = None
) -> dict[str, dict[str, jax.Array]]:
  r"""Per-layer parameter norm, gradient norm and their ratio (LARS Table 2).

  For every leaf ``l`` of ``params`` (a layer's kernel, bias, ...):

  .. math::

     \texttt{param\_norm} = \|w_l\|_2, \quad
     \texttt{grad\_norm} = \|g_l\|_2, \quad
     \texttt{trust\_ratio} = \|w_l\|_2 / \|g_l\|_2

  with :math:`\|x\|_2^2 = \sum |x_i|^2` (real also for complex leaves)
  (LARS paper, Table 2 and eq. 6 with :math:`\eta = 1`).  The ratio is a plain
  division, for logging: ``inf`` where the gradient is 0 and the weights are
  not, ``nan`` where both are 0 (no guard, unlike :func:`legw.scale_by_lars`,
  so that a zero gradient is visible).  Norms are accumulated in float32 (or
  wider).  Jit-able; all values are scalar arrays.

  Args:
    params: a pytree of arrays (any shapes; float or complex).
    grads: a pytree with the structure of ``params`` (arrays of equal shapes).
    axis_name: under ``shard_map`` with every leaf sharded over that mesh axis,
      the squared norms are ``psum``-ed (one stacked all-reduce) so the norms
      are of the whole layer.
    layer_axis: stacked (scanned) layers, as in :func:`legw.scale_by_lars`:
      ``None``, an int for every leaf, or a pytree/callable of ``params``
      giving each leaf's stacked-layer axis (or ``None``).  A stacked leaf of
      L layers gets one value per layer: arrays of shape ``(L,)``.

  Returns:
    A dict from each leaf's path (:func:`leaf_path`, e.g.
    ``"Dense_0/kernel"``) to ``{"param_norm", "grad_norm", "trust_ratio"}``
    (scalars, or ``(L,)`` arrays for stacked leaves).

  Raises:
    ValueError: when ``grads`` does not have the structure of ``params``, or
      ``layer_axis`` does not fit it (see :func:`legw.scale_by_lars`).

  >>> import jax.numpy as jnp, legw
  >>> stats = legw.layerwise_stats({"w": jnp.array([3.0, 4.0])},
  ...                              {"w": jnp.array([0.3, 0.4])})
  >>> {k: round(float(v), 4) for k, v in stats["w"].items()}
  {'param_norm': 5.0, 'grad_norm': 0.5, 'trust_ratio': 10.0}
  """
  path_leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  try:
    g_leaves = treedef.flatten_up_to(grads)  # type: ignore[attr-defined]  # missing from jax's stubs
  except (ValueError, TypeError) as e:
    raise ValueError(f"grads must have the structure of params: {e}") from e
  axes = resolve_layer_axis(layer_axis, params)
  sums = []
  for (_, w), g, a in zip(path_leaves, g_leaves, axes):
    sums.append(_squared_norm(w, a))
    sums.append(_squared_norm(g, a))
  if axis_name is not None:  # one all-reduce of every (per-layer) sum
    sizes = [s.size for s in sums]
    flat = jax.lax.psum(jnp.concatenate([jnp.ravel(s) for s in sums]), axis_name)
    parts = jnp.split(flat, list(itertools.accumulate(sizes))[:-1])
    sums = [p.reshape(s.shape) for p, s in zip(parts, sums)]
  out = {}
  for i, (path, _) in enumerate(path_leaves):
    w_norm, g_norm = jnp.sqrt(sums[2 * i]), jnp.sqrt(sums[2 * i + 1])
    out[leaf_path(path)] = {
      "param_norm": w_norm,
      "grad_norm": g_norm,
      "trust_ratio": w_norm / g_norm,
    }
  return out


def local_lipschitz(loss_fn: Callable[[Any], jax.Array], params: Any, direction: Any) -> jax.Array:
  r"""Curvature of ``loss_fn`` along ``direction``: :math:`|d^T H d| / \|d\|^2`.

  With :math:`H = \nabla^2 f(x)` the Hessian of ``loss_fn`` at ``params`` and
  :math:`d` = ``direction`` (usually the gradient :math:`g`), this is the
  LEGW paper's :math:`L(x, g)` (§4, Figure 3): the step size
  :math:`1/L(x, g)` minimises the quadratic model of the loss along
  :math:`-g`, so a peak of :math:`L` early in training is a stretch where the
  learning rate must be small (the case for warmup).

  :math:`Hd` is an exact Hessian-vector product by forward-over-reverse
  differentiation (``jax.jvp`` of ``jax.grad``), not the paper's finite
  difference; the inner products are accumulated in float32 (or wider).
  For complex parameters :math:`d^T H d` is that of the loss as a function
  of the real and imaginary parts, and :math:`\|d\|^2 = \sum |d_i|^2`.
  The Hessian is that of whatever ``loss_fn`` computes: the paper evaluates
  it on a small batch.  Jit-able: ``jax.jit(local_lipschitz,
  static_argnums=0)`` or inside a jitted step.

  Args:
    loss_fn: scalar function of ``params`` alone (close over the batch).
    params: the pytree :math:`x`.
    direction: pytree :math:`d` with the structure and shapes of ``params``.

  Returns:
    A real scalar float32 (or wider) array, in loss units per squared
    parameter unit; ``nan`` where :math:`\|d\| = 0` (no direction,
    undefined curvature).

  Raises:
    ValueError: when ``direction`` does not have the structure of ``params``.

  >>> import jax.numpy as jnp, legw
  >>> loss = lambda p: 2.0 * jnp.sum(p["w"] ** 2) + p["v"] ** 2  # H = diag(4, 4, 2)
  >>> params = {"w": jnp.ones(2), "v": jnp.array(1.0)}
  >>> float(legw.local_lipschitz(loss, params, {"w": jnp.ones(2), "v": jnp.array(0.0)}))
  4.0
  >>> float(legw.local_lipschitz(loss, params, {"w": jnp.zeros(2), "v": jnp.array(1.0)}))
  2.0
  """
  w_leaves, treedef = jax.tree.flatten(params)
  try:
    d_leaves = treedef.flatten_up_to(direction)  # type: ignore[attr-defined]  # missing from jax's stubs
  except (ValueError, TypeError) as e:
    raise ValueError(f"direction must have the structure of params: {e}") from e
  d_cast = [d.astype(w.dtype) for d, w in zip(d_leaves, w_leaves)]
  hd = jax.jvp(jax.grad(loss_fn), (params,), (jax.tree.unflatten(treedef, d_cast),))[1]
  hd_leaves = treedef.flatten_up_to(hd)  # type: ignore[attr-defined]  # missing from jax's stubs
  dt = jnp.result_type(*(_real_stat_dtype(w.dtype) for w in w_leaves))
  num = sum(_real_inner(d, h, dt) for d, h in zip(d_cast, hd_leaves))
  den = sum(_squared_norm(d).astype(dt) for d in d_leaves)
  return jnp.where(den == 0, jnp.nan, jnp.abs(num) / jnp.where(den == 0, 1.0, den))
