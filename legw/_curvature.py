r"""Curvature-based per-layer learning rates: MCLR and PercentDelta.

The median (MCLR, eq. 20–22) and L1 (PercentDelta, eq. 24) members of the layer-wise family of
Gao & Zhong 2020 (arXiv:2012.08795, §4); LARS (eq. 23) is the L2 member.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import DTypeLike

from legw import _layerwise, _sgd
from legw._layerwise import sums_statistic
from legw._masks import LayerAxis, MaskOrFn
from legw._median import medians_of_magnitudes
from legw._reduce import AxisName, fused_sums, real_dtype

# Every median legw takes goes through this one name (exact, differentiable
# as jnp.median: legw/_median.py).
_medians_of_magnitudes = medians_of_magnitudes


# ---------------------------------------------------------------------------
# MCLR: median curvature radius (eq. 20–22).
# ---------------------------------------------------------------------------


class ScaleByMedianCurvatureState(NamedTuple):
  """State of :func:`scale_by_median_curvature` when ``weight_decay`` is a schedule
  (otherwise ``optax.EmptyState()``).

  Attributes:
    count: number of updates so far (int32).
  """

  count: jax.Array  # type: ignore[assignment]  # shadows tuple.count; renaming would break users


def _median_statistic(ws, gs, betas, axis_name):
  """MCLR's sizes: medians of the nonzero |w| and of the nonzero |g|."""
  # Real arrays go in signed: the median routine takes magnitudes itself,
  # inside its loop (a |w| computed here would be stored as a temporary
  # every step).  Complex ones go in as |x|.
  arrays = list(ws) + [g if b is None else g + b * w for w, g, b in zip(ws, gs, betas)]
  mags = [jnp.abs(a) if jnp.iscomplexobj(a) else a for a in arrays]
  # Over the nonzero entries (0 for a layer with none): see the docstring below.
  meds = _medians_of_magnitudes(mags, axis_name, nonzero=True)
  n = len(ws)
  return list(zip(meds[:n], meds[n:]))


def scale_by_median_curvature(
  weight_decay: optax.ScalarOrSchedule = 0.0,
  *,
  eps: float = 0.0,
  trust_ratio_mask: MaskOrFn = None,
  weight_decay_mask: MaskOrFn = None,
  axis_name: AxisName = None,
  layer_axis: LayerAxis = None,
  keep_stats: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""Scales each layer's update by its median curvature radius (MCLR; no LR).

  .. math::

     R_l = \frac{\mathrm{med}|w_l|}
                {\mathrm{med}|g_l| + \beta\,\mathrm{med}|w_l| + \epsilon}
     \qquad u_l = R_l\,(g_l + \beta w_l)

  per leaf ``l`` (a layer's kernel, ...). Unlike the literal eq. 20, the paper's "median
  values" are medians of *magnitudes* (signed medians are close to 0), over each layer's
  *nonzero* entries (so the rate is continuous in the zeros of sparse gradients or pruned
  weights; the same as eq. 20 for dense layers). Medians are exact (as ``numpy.median``),
  float32 or wider. :math:`R_l = 1` where :math:`\mathrm{med}|w_l| = 0` or the denominator is
  0; ``eps > 0`` caps it at :math:`\mathrm{med}|w_l|/\epsilon`. The LR comes after
  (:func:`legw.mclr`); numerics and cost: :doc:`/guides/curvature`.

  Args:
    weight_decay: :math:`\beta \ge 0`, or an ``optax.Schedule``; the only positional argument.
    eps: :math:`\epsilon \ge 0`, added to the denominator.
    trust_ratio_mask, weight_decay_mask, axis_name, layer_axis, keep_stats: as in
      :func:`legw.scale_by_lars` (``axis_name``: medians of the whole sharded layer).

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` requires ``params``.

  Raises:
    ValueError, TypeError: naming the argument, for a hyperparameter out of range or of the
      wrong type, or ``eps`` (or later) passed by position; at update, without ``params``.

  Example:
    >>> import jax.numpy as jnp, optax, legw
    >>> params = {"w": jnp.array([[1.0, -2.0], [3.0, -4.0]])}
    >>> tx = legw.scale_by_median_curvature()
    >>> grads = {"w": jnp.array([[0.1, 0.2], [-0.3, 0.4]])}
    >>> updates, _ = tx.update(grads, tx.init(params), params)
    >>> round(float(updates["w"][0, 0] / grads["w"][0, 0]), 4)  # med|w| / med|g|
    10.0

  References:
    Gao & Zhong, "Study on the Large Batch Size Training of Neural Networks Based on
    the Second Order Gradient", 2020, arXiv:2012.08795, §4.2, eq. 20–22.
  """
  # The member is its statistic; everything else is the family's core.
  return _layerwise.scale_by_layerwise_rate(
    _median_statistic,
    name="scale_by_median_curvature",
    state_cls=ScaleByMedianCurvatureState,
    weight_decay=weight_decay,
    eps=eps,
    trust_ratio_mask=trust_ratio_mask,
    weight_decay_mask=weight_decay_mask,
    axis_name=axis_name,
    layer_axis=layer_axis,
    keep_stats=keep_stats,
  )


def mclr(
  learning_rate: optax.ScalarOrSchedule,
  *,
  momentum: float = 0.9,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  eps: float = 0.0,
  nesterov: bool = False,
  weight_decay_mask: MaskOrFn = None,
  trust_ratio_mask: MaskOrFn = None,
  axis_name: AxisName = None,
  layer_axis: LayerAxis = None,
  accumulator_dtype: DTypeLike | None = None,
  keep_stats: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""SGD with the median-curvature learning rate (MCLR).

  .. math::

     v_l \leftarrow m\,v_l + \gamma_t R_l\,(g_l + \beta w_l) \qquad
     w_l \leftarrow w_l - v_l

  with :math:`R_l` from :func:`legw.scale_by_median_curvature`: the chain of
  :func:`legw.lars` with that transform. Leaves outside ``trust_ratio_mask`` (default:
  biases and norms) get plain momentum SGD at :math:`\gamma_t`. :math:`R_l` is of the order
  of :math:`\|w\|/\|g\|` (no trust coefficient), so :math:`\gamma` plays the part of the
  product :math:`\gamma\eta` of :func:`legw.lars`, not of its :math:`\gamma`.

  Args:
    learning_rate: :math:`\gamma_t \ge 0`, a float or an ``optax.Schedule``.
    momentum, nesterov: the momentum :math:`m \in [0, 1)`, and whether it is Nesterov's.
    weight_decay: :math:`\beta \ge 0` (eq. 22), or an ``optax.Schedule``.
    eps: :math:`\epsilon \ge 0`, added to the denominator of :math:`R_l`.
    weight_decay_mask, trust_ratio_mask, axis_name, layer_axis, keep_stats: as in
      :func:`legw.scale_by_median_curvature`.
    accumulator_dtype: the dtype of the stored momentum, as in :func:`legw.lars`.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` requires ``params``.

  Raises:
    ValueError, TypeError: as :func:`legw.lars`.

  Example:
    >>> import jax.numpy as jnp, optax, legw
    >>> params = {"w": jnp.ones((3, 3)), "b": jnp.zeros(3)}
    >>> opt = legw.mclr(1e-3, weight_decay=1e-4)
    >>> grads = {"w": jnp.full((3, 3), 0.5), "b": jnp.ones(3)}
    >>> updates, state = opt.update(grads, opt.init(params), params)
    >>> params = optax.apply_updates(params, updates)

  References:
    Gao & Zhong, "Study on the Large Batch Size Training of Neural Networks Based on
    the Second Order Gradient", 2020, arXiv:2012.08795, §4.2, eq. 20–22.
  """
  return _sgd.sgd_optimizer(
    scale_by_median_curvature,
    learning_rate,
    momentum,
    nesterov,
    accumulator_dtype=accumulator_dtype,
    weight_decay=weight_decay,
    eps=eps,
    trust_ratio_mask=trust_ratio_mask,
    weight_decay_mask=weight_decay_mask,
    axis_name=axis_name,
    layer_axis=layer_axis,
    keep_stats=keep_stats,
  )


# ---------------------------------------------------------------------------
# PercentDelta (eq. 24).
# ---------------------------------------------------------------------------


class ScaleByPercentDeltaState(NamedTuple):
  """State of :func:`scale_by_percent_delta` when ``weight_decay`` is a schedule
  (otherwise ``optax.EmptyState()``).

  Attributes:
    count: number of updates so far (int32).
  """

  count: jax.Array  # type: ignore[assignment]  # shadows tuple.count; renaming would break users


def _percent_delta_partials(w, g, beta, stacked=False):
  """sum over w != 0 of |g/w|, and the count of w != 0, in one pass (``fused_sums``); for
  one layer of a stack, off CPU, two plain sums (see ``sums_statistic``)."""
  x = g if beta is None else g + beta * w
  nonzero = w != 0
  rel = jnp.abs(x) / jnp.where(nonzero, jnp.abs(w), 1)
  arrays = [jnp.where(nonzero, rel, 0), nonzero.astype(real_dtype(w.dtype))]
  if not stacked:
    return fused_sums(arrays)
  return jax.lax.platform_dependent(
    *arrays, cpu=lambda *a: fused_sums(a), default=lambda *a: tuple(jnp.sum(x) for x in a)
  )


def _percent_delta_sizes(l1, n):
  return n, l1


# PercentDelta is the L1 member of the family (curvature paper eq. 24).
_PERCENT_DELTA_STATISTIC = sums_statistic(_percent_delta_partials, _percent_delta_sizes)


def scale_by_percent_delta(
  weight_decay: optax.ScalarOrSchedule = 0.0,
  *,
  eps: float = 0.0,
  trust_ratio_mask: MaskOrFn = None,
  weight_decay_mask: MaskOrFn = None,
  axis_name: AxisName = None,
  layer_axis: LayerAxis = None,
  keep_stats: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""Scales each layer's update by its PercentDelta rate (no LR).

  .. math::

     R_l = \frac{n_l}{\|g_l / w_l\|_1 + \beta n_l + \epsilon}
     \qquad u_l = R_l\,(g_l + \beta w_l)

  per leaf ``l`` with :math:`n_l` entries where :math:`w \ne 0`. With
  :math:`\beta = \epsilon = 0` and no zero weights this is :math:`\mathrm{size}(w)/\|g/w\|_1`,
  the harmonic mean over the layer of the radii :math:`|w_i/g_i|`. Entries with
  :math:`w_i = 0` are left out of the sum and the count (they still get the layer's
  update); :math:`R_l = 1` where :math:`n_l = 0` or the denominator is 0.

  Args:
    weight_decay: :math:`\beta \ge 0`, or an ``optax.Schedule``; the only positional argument.
    eps: :math:`\epsilon \ge 0`, added to the denominator.
    trust_ratio_mask, weight_decay_mask, axis_name, layer_axis, keep_stats: as in
      :func:`legw.scale_by_lars` (default masks :func:`legw.exclude_bias_and_norm`).

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` requires ``params``.

  Raises:
    ValueError, TypeError: naming the argument, for a hyperparameter out of range or of the
      wrong type; at update, without ``params``.

  Example:
    >>> import jax.numpy as jnp, optax, legw
    >>> params = {"w": jnp.array([[1.0, 2.0], [4.0, 0.0]])}
    >>> tx = legw.scale_by_percent_delta()
    >>> grads = {"w": jnp.array([[0.1, 0.2], [0.4, 1.0]])}
    >>> updates, _ = tx.update(grads, tx.init(params), params)
    >>> round(float(updates["w"][0, 0] / grads["w"][0, 0]), 4)  # 3 / (0.1 * 3)
    10.0

  References:
    Gao & Zhong, "Study on the Large Batch Size Training of Neural Networks Based on
    the Second Order Gradient", 2020, arXiv:2012.08795, eq. 24 (after Abuelhaija,
    2017).
  """
  return _layerwise.scale_by_layerwise_rate(
    _PERCENT_DELTA_STATISTIC,
    name="scale_by_percent_delta",
    state_cls=ScaleByPercentDeltaState,
    weight_decay=weight_decay,
    eps=eps,
    trust_ratio_mask=trust_ratio_mask,
    weight_decay_mask=weight_decay_mask,
    axis_name=axis_name,
    layer_axis=layer_axis,
    keep_stats=keep_stats,
  )


def percent_delta(
  learning_rate: optax.ScalarOrSchedule,
  *,
  momentum: float = 0.9,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  eps: float = 0.0,
  nesterov: bool = False,
  weight_decay_mask: MaskOrFn = None,
  trust_ratio_mask: MaskOrFn = None,
  axis_name: AxisName = None,
  layer_axis: LayerAxis = None,
  accumulator_dtype: DTypeLike | None = None,
  keep_stats: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""SGD with PercentDelta per-layer rates.

  .. math::

     v_l \leftarrow m\,v_l + \gamma_t R_l\,(g_l + \beta w_l) \qquad
     w_l \leftarrow w_l - v_l

  with :math:`R_l` from :func:`legw.scale_by_percent_delta`: the chain of
  :func:`legw.lars` with that transform. With momentum 0 and :math:`\beta = 0` the mean
  relative change of a layer's (non-zero) weights per step is :math:`\gamma_t`: the
  "percent delta". Leaves outside ``trust_ratio_mask`` (default: biases and norms) get
  plain momentum SGD at :math:`\gamma_t`.

  Args:
    learning_rate: :math:`\gamma_t \ge 0`, a float or an ``optax.Schedule``.
    momentum, nesterov: the momentum :math:`m \in [0, 1)`, and whether it is Nesterov's.
    weight_decay: :math:`\beta \ge 0`, or an ``optax.Schedule``.
    eps: :math:`\epsilon \ge 0`, added to the denominator of :math:`R_l`.
    weight_decay_mask, trust_ratio_mask, axis_name, layer_axis, keep_stats: as in
      :func:`legw.scale_by_percent_delta`.
    accumulator_dtype: the dtype of the stored momentum, as in :func:`legw.lars`.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` requires ``params``.

  Raises:
    ValueError, TypeError: as :func:`legw.lars`.

  Example:
    >>> import jax.numpy as jnp, optax, legw
    >>> params = {"w": jnp.ones((3, 3)), "b": jnp.zeros(3)}
    >>> opt = legw.percent_delta(1e-3)
    >>> grads = {"w": jnp.full((3, 3), 0.5), "b": jnp.ones(3)}
    >>> updates, state = opt.update(grads, opt.init(params), params)

  References:
    Gao & Zhong, "Study on the Large Batch Size Training of Neural Networks Based on
    the Second Order Gradient", 2020, arXiv:2012.08795, eq. 24.
  """
  return _sgd.sgd_optimizer(
    scale_by_percent_delta,
    learning_rate,
    momentum,
    nesterov,
    accumulator_dtype=accumulator_dtype,
    weight_decay=weight_decay,
    eps=eps,
    trust_ratio_mask=trust_ratio_mask,
    weight_decay_mask=weight_decay_mask,
    axis_name=axis_name,
    layer_axis=layer_axis,
    keep_stats=keep_stats,
  )
