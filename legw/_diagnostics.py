r"""Per-layer statistics and the local Lipschitz estimate, for logging.

LARS paper (arXiv:1708.03888) Table 2; Gao & Zhong 2020 (arXiv:2012.08795) §4, eq. 20–24; LEGW
paper (arXiv:1901.08256) §4, Figure 3. Complex parameters count as pairs of reals, as in optax.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from legw._masks import (
  LayerAxis,
  MaskOrFn,
  exclude_bias_and_norm,
  leaf_path,
  per_layer_shapes,
  resolve_layer_axis,
  resolve_mask,
)
from legw._reduce import AxisName, stat_dtype, sum_of_squares


def _real_stat_dtype(dtype) -> jnp.dtype:
  """The real dtype of a leaf's statistics: float32 or wider (complex64 -> float32)."""
  return jnp.finfo(stat_dtype(dtype)).dtype


def _squared_norm(x: Any, layer_axis: int | None = None) -> jax.Array:
  """sum(|x|^2), real, in float32 or wider; with ``layer_axis``, one sum per slice."""
  x = jnp.asarray(x)
  if layer_axis is not None:
    return jax.vmap(_squared_norm, in_axes=layer_axis)(x)
  if jnp.iscomplexobj(x):
    return sum_of_squares(jnp.real(x)) + sum_of_squares(jnp.imag(x))
  return sum_of_squares(x)


def _real_inner(d: jax.Array, hd: jax.Array, dtype) -> jax.Array:
  r"""<d, Hd> over the reals from JAX's (conjugated) Hessian-vector product: for complex
  leaves :math:`\sum \mathrm{Re}\,d\,\mathrm{Re}\,hd - \mathrm{Im}\,d\,\mathrm{Im}\,hd`."""
  if jnp.iscomplexobj(d) or jnp.iscomplexobj(hd):
    re = jnp.sum(jnp.real(d).astype(dtype) * jnp.real(hd).astype(dtype))
    return re - jnp.sum(jnp.imag(d).astype(dtype) * jnp.imag(hd).astype(dtype))
  return jnp.sum(d.astype(dtype) * hd.astype(dtype))


class LayerwiseStatsState(NamedTuple):
  r"""The state of a layer-wise transform built with ``keep_stats=True``.

  :func:`legw.lars`, :func:`legw.lamb`, :func:`legw.mclr`, :func:`legw.percent_delta` and
  their ``scale_by_*`` transforms take ``keep_stats``. After each update it holds, per layer,
  what that update used: the rate :math:`R_l = \eta W_l / (G_l + \beta W_l + \epsilon)`
  (curvature paper §4; LARS Algorithm 1) and its two sizes, as the step computed them (no
  extra pass), in float32 (float64 for float64 leaves). Each field is a pytree like the
  parameters: a scalar per trust-ratio leaf (``(L,)`` for L stacked layers), else
  ``optax.MaskedNode()``; zeros until the first update. Read it by layer name with
  :func:`applied_layerwise_stats` (:doc:`/guides/logging_trust_ratios`).

  =============  ===========================  ====================================
  member         ``weight_size`` :math:`W_l`  ``grad_size`` :math:`G_l`
  =============  ===========================  ====================================
  LARS           :math:`\|w_l\|_2`            :math:`\|g_l\|_2` (combined form:
                                              :math:`\|g_l + \beta w_l\|_2`)
  LAMB           :math:`\|w_l\|_2`            :math:`\|r_l + \beta w_l\|_2`, of the
                                              Adam direction :math:`r_l`
  PercentDelta   :math:`n_l`, the entries     :math:`\sum_{w_i \ne 0} |g_i / w_i|`
                 with :math:`w_i \ne 0`
  MCLR           median of the nonzero        median of the nonzero :math:`|g_i|`
                 :math:`|w_i|`                (of :math:`g + \beta w`, combined)
  =============  ===========================  ====================================

  Attributes:
    count: number of updates so far (int32), the step schedules read.
    trust_ratio: the factor each layer's update was multiplied by, after the zero fallback
      and (``clip=True``) apex's LARC clip: the layer's rate is ``learning_rate * trust_ratio``.
    weight_size: :math:`W_l` as in the table.
    grad_size: :math:`G_l` as in the table.

  >>> import jax.numpy as jnp, legw
  >>> params = {"w": jnp.array([[3.0, 4.0]]), "b": jnp.zeros(2)}
  >>> tx = legw.scale_by_lars(1.0, keep_stats=True)
  >>> grads = {"w": jnp.array([[0.3, 0.4]]), "b": jnp.ones(2)}
  >>> _, state = tx.update(grads, tx.init(params), params)
  >>> float(state.trust_ratio["w"]), float(state.weight_size["w"]), float(state.grad_size["w"])
  (10.0, 5.0, 0.5)
  >>> state.trust_ratio["b"]  # a bias: off the trust ratio by default
  MaskedNode()

  References:
    Gao & Zhong, "Study on the Large Batch Size Training of Neural Networks Based on
    the Second Order Gradient", 2020, arXiv:2012.08795, §4, eq. 20–24.
  """

  count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states
  trust_ratio: Any
  weight_size: Any
  grad_size: Any


def _is_stats(x: Any) -> bool:
  return isinstance(x, LayerwiseStatsState)


def applied_layerwise_stats(opt_state: Any) -> dict[str, dict[str, jax.Array]]:
  r"""What a layer-wise optimizer applied at its last update, by layer name.

  Finds every :class:`LayerwiseStatsState` in ``opt_state`` (inside ``optax.chain``,
  ``inject_hyperparams``, ``MultiSteps``, ``apply_if_finite``, ``multi_transform``, a Flax
  NNX optimizer's state, ...). Reads the state only: no computation, jit-able.

  Args:
    opt_state: the state of an optimizer with a legw layer-wise transform built with
      ``keep_stats=True``.

  Returns:
    A dict from each trust-ratio leaf's path (e.g. ``"Dense_0/kernel"``) to
    ``{"trust_ratio", "weight_size", "grad_size"}``: scalars, or ``(L,)`` for stacked leaves.

  Raises:
    ValueError: when ``opt_state`` holds no such state (no ``keep_stats=True``, or not a
      legw layer-wise optimizer: ``legw.cblr`` keeps none), or two of them name one leaf.

  >>> import jax.numpy as jnp, legw
  >>> params = {"w": jnp.array([[3.0, 4.0]]), "b": jnp.zeros(2)}
  >>> opt = legw.lars(0.1, trust_coefficient=1.0, keep_stats=True)
  >>> grads = {"w": jnp.array([[0.3, 0.4]]), "b": jnp.ones(2)}
  >>> _, state = opt.update(grads, opt.init(params), params)
  >>> {k: float(v) for k, v in legw.applied_layerwise_stats(state)["w"].items()}
  {'trust_ratio': 10.0, 'weight_size': 5.0, 'grad_size': 0.5}
  """
  found = [s for s in jax.tree.leaves(opt_state, is_leaf=_is_stats) if _is_stats(s)]
  if not found:
    raise ValueError(
      "opt_state holds no per-layer statistics: build the optimizer with "
      "keep_stats=True (legw.lars, legw.lamb, legw.mclr, legw.percent_delta and "
      "their scale_by_* transforms take it; legw.cblr and optax's optimizers keep none)."
    )
  out: dict[str, dict[str, jax.Array]] = {}
  for s in found:
    ratios = jax.tree_util.tree_flatten_with_path(s.trust_ratio)[0]
    w_sizes, g_sizes = jax.tree.leaves(s.weight_size), jax.tree.leaves(s.grad_size)
    for (path, r), w, g in zip(ratios, w_sizes, g_sizes):
      name = leaf_path(path)
      if name in out:
        raise ValueError(
          f"two legw transforms in opt_state keep statistics for the leaf {name!r}; "
          "read each with optax.tree.get and a filtering on its position instead."
        )
      out[name] = {"trust_ratio": r, "weight_size": w, "grad_size": g}
  return out


def layerwise_stats(
  params: Any, grads: Any, *, axis_name: AxisName = None, layer_axis: LayerAxis = None
) -> dict[str, dict[str, jax.Array]]:
  r"""Per-layer parameter norm, gradient norm and their ratio (LARS Table 2).

  For every leaf ``l`` of ``params`` (a layer's kernel, bias, ...):

  .. math::

     \texttt{param\_norm} = \|w_l\|_2, \quad
     \texttt{grad\_norm} = \|g_l\|_2, \quad
     \texttt{norm\_ratio} = \|w_l\|_2 / \|g_l\|_2

  with :math:`\|x\|_2^2 = \sum |x_i|^2`, accumulated in float32 or wider. ``norm_ratio`` is a
  plain division (``inf`` for a zero gradient, ``nan`` if both are 0), *not* the rate an
  optimizer applies (after its masks, decay and fallbacks): for that build the optimizer
  with ``keep_stats=True`` and read :func:`applied_layerwise_stats`, with no extra pass over
  the parameters (:doc:`/guides/logging_trust_ratios`). Jit-able.

  Args:
    params: a pytree of arrays (any shapes; float or complex).
    grads: a pytree with the structure of ``params`` (arrays of equal shapes).
    axis_name: under ``shard_map`` with every leaf sharded over that mesh axis, the squared
      norms are ``psum``-ed (one all-reduce): norms of the whole layer.
    layer_axis: stacked layers, as in :func:`legw.scale_by_lars`: a leaf of L layers gets
      ``(L,)`` arrays.

  Returns:
    A dict from each leaf's path (e.g. ``"Dense_0/kernel"``) to ``{"param_norm",
    "grad_norm", "norm_ratio"}`` (scalars, or ``(L,)`` arrays for stacked leaves).

  Raises:
    ValueError: when ``grads`` does not have the structure of ``params``, ``layer_axis``
      does not fit it, or two leaves have one path (e.g. ``{"a/b": x, "a": {"b": y}}``).

  >>> import jax.numpy as jnp, legw
  >>> stats = legw.layerwise_stats({"w": jnp.array([3.0, 4.0])},
  ...                              {"w": jnp.array([0.3, 0.4])})
  >>> {k: round(float(v), 4) for k, v in stats["w"].items()}
  {'param_norm': 5.0, 'grad_norm': 0.5, 'norm_ratio': 10.0}

  References:
    You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks", 2017,
    arXiv:1708.03888, Table 2.
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
    name = leaf_path(path)
    if name in out:
      raise ValueError(
        f"two leaves of params have the path {name!r} (keys joined by '/'); rename one "
        "key so that each leaf has its own name."
      )
    out[name] = {
      "param_norm": w_norm,
      "grad_norm": g_norm,
      "norm_ratio": w_norm / g_norm,
    }
  return out


def local_lipschitz(loss_fn: Callable[[Any], jax.Array], params: Any, direction: Any) -> jax.Array:
  r"""Curvature of ``loss_fn`` along ``direction``: :math:`|d^T H d| / \|d\|^2`.

  With :math:`H` the Hessian of ``loss_fn`` at ``params`` and :math:`d` = ``direction``
  (usually the gradient), this is the LEGW paper's :math:`L(x, g)` (§4, Figure 3): its early
  peak in training is why warmup is needed. :math:`Hd` is an exact Hessian-vector product
  (``jax.jvp`` of ``jax.grad``), not the paper's finite difference; the Hessian is that of
  whatever ``loss_fn`` computes (the paper uses a small batch). Inner products in float32 or
  wider; complex parameters count as pairs of reals. Jit-able (``static_argnums=0``).

  Args:
    loss_fn: scalar function of ``params`` alone (close over the batch).
    params: the pytree :math:`x`.
    direction: pytree :math:`d` with the structure and shapes of ``params``.

  Returns:
    A real scalar array, float32 or wider, in loss units per squared parameter unit;
    ``nan`` where :math:`\|d\| = 0`.

  Raises:
    ValueError: when ``direction`` does not have the structure of ``params``.

  >>> import jax.numpy as jnp, legw
  >>> loss = lambda p: 2.0 * jnp.sum(p["w"] ** 2) + p["v"] ** 2  # H = diag(4, 4, 2)
  >>> params = {"w": jnp.ones(2), "v": jnp.array(1.0)}
  >>> float(legw.local_lipschitz(loss, params, {"w": jnp.ones(2), "v": jnp.array(0.0)}))
  4.0
  >>> float(legw.local_lipschitz(loss, params, {"w": jnp.zeros(2), "v": jnp.array(1.0)}))
  2.0

  References:
    You, Hseu, Ying, Demmel, Keutzer & Hsieh, "Large-Batch Training for LSTM and
    Beyond", SC 2019, arXiv:1901.08256, §4, Figure 3.
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


def trust_coefficient_from_sgd(
  params: Any, grads: Any, *, trust_ratio_mask: MaskOrFn = None, layer_axis: LayerAxis = None
) -> float:
  r"""The ``trust_coefficient`` that gives :func:`legw.lars` SGD's median relative step.

  Momentum SGD at learning rate :math:`\gamma` moves layer l by :math:`\gamma\|g_l\|/\|w_l\|`
  of its norm; LARS (weight decay 0) moves every trust-ratio layer by :math:`\gamma\eta`.
  This returns :math:`\eta = \operatorname{median}_l \|g_l\|_2 / \|w_l\|_2` over the
  trust-ratio layers with nonzero, finite norms, so that ``legw.lars(sgd_lr,
  trust_coefficient=eta)`` keeps the SGD recipe's learning rate and, on the median layer,
  its step. Measure it at initialisation on one batch; tune around it.

  Args:
    params: a pytree of arrays (Flax Linen params, an NNX ``nnx.State``, ...).
    grads: gradients with the structure of ``params``.
    trust_ratio_mask: as in :func:`legw.lars` (default :func:`legw.exclude_bias_and_norm`).
    layer_axis: stacked layers, as in :func:`legw.lars` (each layer of a stack counts).

  Returns:
    :math:`\eta` as a Python float.

  Raises:
    ValueError: when no trust-ratio layer has nonzero weights and gradient, or as
      :func:`legw.layerwise_stats`.

  Example:
    >>> import jax.numpy as jnp, legw
    >>> params = {"a": jnp.ones((2, 2)), "b": jnp.ones((3, 3)), "bias": jnp.ones(2)}
    >>> grads = {"a": jnp.full((2, 2), 0.1), "b": jnp.full((3, 3), 0.3), "bias": jnp.ones(2)}
    >>> round(legw.trust_coefficient_from_sgd(params, grads), 6)  # median of 0.1, 0.3
    0.2

  References:
    You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks", 2017,
    arXiv:1708.03888, §3 and Table 2.
  """
  axes = resolve_layer_axis(layer_axis, params)
  default = lambda p: exclude_bias_and_norm(per_layer_shapes(p, axes))
  mask = resolve_mask(trust_ratio_mask, params, default)
  stats = layerwise_stats(params, grads, layer_axis=layer_axis)
  names = [leaf_path(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  ratios = []
  for name, keep in zip(names, mask):
    if keep:
      w = np.ravel(np.asarray(stats[name]["param_norm"], np.float64))
      g = np.ravel(np.asarray(stats[name]["grad_norm"], np.float64))
      ok = (w > 0) & (g > 0) & np.isfinite(w) & np.isfinite(g)
      ratios.extend((g[ok] / w[ok]).tolist())
  if not ratios:
    raise ValueError(
      "trust_coefficient_from_sgd: no trust-ratio layer has nonzero, finite weights and "
      "gradient (check trust_ratio_mask, and measure on a real batch)."
    )
  return float(np.median(ratios))
