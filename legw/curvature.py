r"""Curvature-based per-layer learning rates: MCLR and PercentDelta.

Source: Gao & Zhong, "Study on the Large Batch Size Training of Neural Networks
Based on the Second Order Gradient"
(papers/curvature-based-lr-second-order-gradient.txt), §4, eq. 12–24.

The curvature-based rule (CBLR, eq. 9–11: :mod:`legw.cblr`) steps each
parameter by :math:`\gamma R_i g_i`, with :math:`R_i` the curvature radius of
the loss along :math:`w_i`, from the Hessian diagonal.
Near a minimum the loss is a parabola :math:`a_i (w_i - b_i)^2 + c_i`
(eq. 12), which with :math:`b_i \approx 0` and :math:`g_i^2 \ll 1` gives the
cheap, first-order estimate (eq. 17)

.. math::

   R_i \approx |w_i / g_i| .

It fails where :math:`w_i \to 0` or :math:`g_i \to 0` (eq. 18–19), so it is
only used through a *statistic of a group* (a layer = a leaf of the parameter
tree).  The per-layer rules of the field are then members of one family,
:math:`\eta_l = \gamma R_l`, that differ only in the statistic:

* LARS (eq. 23), the **L2-norm member**:
  :math:`R_l = \|w_l\|_2 / \|g_l\|_2` (:func:`legw.scale_by_lars` with
  ``trust_coefficient=1``);
* PercentDelta (eq. 24), the **L1-norm member**:
  :math:`R_l = n_l / \|g_l / w_l\|_1`, the harmonic mean over the layer of
  the eq. 17 radii (:func:`scale_by_percent_delta`);
* MCLR (eq. 20–21), the **median member**:
  :math:`R_l = \mathrm{med}|w_l| / \mathrm{med}|g_l|`
  (:func:`scale_by_median_curvature`).

With weight decay :math:`\beta` every member has the same form,
:math:`R_l = 1 / (S_l + \beta)`, where :math:`S_l` is the member's
gradient-to-weight statistic (:math:`\|g\|/\|w\|`, the mean of
:math:`|g_i/w_i|`, :math:`\mathrm{med}|g|/\mathrm{med}|w|`): this is eq. 22
for MCLR and Algorithm 1 of the LARS paper for LARS.  When a layer's gradient
is a multiple of its weights, :math:`g_l = c\,w_l`, all three give
:math:`R_l = 1/(c + \beta)`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import DTypeLike

from legw import _layerwise
from legw._layerwise import sums_statistic
from legw._median import medians_of_magnitudes
from legw._reduce import AxisName, fused_sums, real_dtype
from legw.masks import LayerAxis, MaskOrFn

# Every median legw takes goes through this one name (exact, differentiable
# as jnp.median: legw/_median.py).
_medians_of_magnitudes = medians_of_magnitudes


# ---------------------------------------------------------------------------
# MCLR: median curvature radius (eq. 20–22).
# ---------------------------------------------------------------------------


class ScaleByMedianCurvatureState(NamedTuple):
  """State of :func:`scale_by_median_curvature` when ``weight_decay`` is a
  schedule (otherwise ``optax.EmptyState()``).

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

  Per leaf ``l`` (one layer's kernel, ...), with :math:`\beta` = ``weight_decay``
  and :math:`\epsilon` = ``eps``:

  .. math::

     R_l = \frac{\mathrm{med}|w_l|}
                {\mathrm{med}|g_l| + \beta\,\mathrm{med}|w_l| + \epsilon}
     \qquad u_l = R_l\,(g_l + \beta w_l)

  (curvature paper, eq. 20–22; the global LR :math:`\gamma` of eq. 21 is
  applied later, e.g. by :func:`legw.mclr`).  The paper's "median values" of
  :math:`w` and :math:`dL/dw` are taken here as medians of *magnitudes*,
  :math:`\mathrm{med}|w|` and :math:`\mathrm{med}|g|`: parameters and
  gradients are roughly symmetric about 0, so the median of the signed values
  is close to 0 and the signed ratio of eq. 20 would be noise, whereas the
  medians of magnitudes are the typical sizes eq. 17 (:math:`|w_i/g_i|`)
  needs.  :math:`R_l` is a ratio of medians, not the median of the ratios.

  * Sparse layers: each median is over the layer's **nonzero** entries (a
    departure from the literal eq. 20).  An embedding's gradient is zero on
    the rows the batch did not touch, a pruned layer's weights are zero where
    pruned; the literal median of all entries is then 0 as soon as more than
    half are zero, and the rate jumps (to 1 by the eq. 19 guard: a 10x jump
    between 7 and 9 nonzero entries of a 16-entry layer).  Over the nonzero
    entries the median moves by one order statistic per entry, so the rate
    is continuous in the number of nonzero entries, and it equals the
    literal eq. 20 wherever no entry is exactly zero (dense layers).  A layer
    whose gradient is all zero has :math:`\mathrm{med}|g_l| = 0`.  Cost: one
    count of the zeros per array; the selection then skips past them.
  * Zero fallback (eq. 18–19), as every member of the family: :math:`R_l = 1`
    where :math:`\mathrm{med}|w_l| = 0` (a zero layer still trains) or the
    denominator is 0 (zero gradient and no decay: the update is 0 anyway);
    with :math:`\beta > 0` the formula is finite at :math:`g = 0` and used.
    As the gradient median tends to 0 (very large batches, eq. 4)
    :math:`R_l` grows without bound; an ``eps > 0`` caps it at
    :math:`\mathrm{med}|w_l| / \epsilon`.
  * Leaves outside ``trust_ratio_mask`` get :math:`R_l = 1`; leaves outside
    ``weight_decay_mask`` get :math:`\beta = 0`.  Both default to
    :func:`legw.exclude_bias_and_norm`, as in :func:`legw.scale_by_lars`.
    ``weight_decay`` may be an ``optax.Schedule`` of the step count.
    Complex leaves: medians of :math:`|x|`.  Non-floating leaves pass through.
  * Medians are exact (equal to ``numpy.median``: the mean of the two middle
    values for an even count), in float32 (float64 for float64 leaves), and
    computed without sorting (``legw/_median.py``: selection on the bit
    patterns, which are ordered like the values of non-negative floats).
    Updates come back in the update dtype.
  * Cost: the selection reads float32 ``w`` and ``g`` of each layer 12 times on CPU
    (8 times on GPU/TPU); a ResNet-50 step measured 6.6-7.5x a momentum-SGD
    step on a 2-core CPU (benchmarks/README_optimizer_step.md).
  * Differentiable: ``jax.grad`` through the update follows ``jnp.median``'s
    derivative (the middle entries' tangents).
  * ``axis_name``: under ``shard_map`` with every leaf sharded over that mesh
    axis, a median cannot be combined from per-shard medians: the selection
    counts entries on every shard and ``psum``-s the counts of all leaves
    together, so each median is that of the whole layer, equal to the
    unsharded result, and no device ever gathers a layer.

  Args:
    weight_decay: :math:`\beta \ge 0`, L2 weight decay coefficient, or an
      ``optax.Schedule``.  The only positional argument.
    eps: :math:`\epsilon \ge 0`, added to the denominator.
    trust_ratio_mask: which leaves get :math:`R_l`: ``None`` (default:
      :func:`legw.exclude_bias_and_norm`), a bool, a pytree of bools (or a
      prefix), or a callable of params.
    weight_decay_mask: same forms; which leaves get weight decay.
    axis_name: mesh axis name(s) over which parameters are sharded, or None.
    layer_axis: the stacked-layer axis of each leaf (scanned layers), or
      None: the statistic is taken per slice, and the default masks judge one
      layer's shape (see :func:`legw.scale_by_lars`).
    keep_stats: keep each layer's applied rate :math:`R_l` and its two sizes
      in the state (:class:`legw.LayerwiseStatsState`), for logging with
      :func:`legw.applied_layerwise_stats`; no extra pass.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose ``update(updates,
    state, params)`` requires ``params`` (same tree as ``updates``).

  Raises:
    ValueError: at construction, for negative (or NaN) ``weight_decay`` or
      ``eps``; at update, when ``params`` is not given.
    TypeError: for a ``weight_decay`` that is not a number or an
      ``optax.Schedule``, a ``keep_stats`` that is not a bool, or ``eps`` (or
      a later argument) passed by position.
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
  r"""SGD with the median-curvature learning rate (MCLR), curvature paper §4.2.

  Per leaf ``l``, with :math:`\gamma_t` = ``learning_rate`` at step t and
  :math:`R_l` from :func:`scale_by_median_curvature` (eq. 20–22; medians of
  the nonzero magnitudes):

  .. math::

     v_l \leftarrow m\,v_l + \gamma_t R_l\,(g_l + \beta w_l) \qquad
     w_l \leftarrow w_l - v_l

  Implemented as ``optax.chain(scale_by_median_curvature(...),
  optax.scale_by_learning_rate(learning_rate), optax.trace(momentum,
  nesterov))``, the shape of :func:`legw.lars`.  Leaves outside
  ``trust_ratio_mask`` (default: biases and norms, ``ndim <= 1``) get plain
  momentum SGD at :math:`\gamma_t`; non-floating leaves pass through.
  :math:`R_l` is of the order of :math:`\|w\|/\|g\|` (no trust coefficient),
  so :math:`\gamma` is typically about 1e-3 of a plain-SGD learning rate, as
  for LARS with ``trust_coefficient=0.001``.  The paper finds MCLR comparable
  to LARS at batch 1024 and worse at larger batches (gradients shrink, eq. 4,
  and the estimate fails, eq. 19).

  Args:
    learning_rate: :math:`\gamma_t \ge 0`, a float or an ``optax.Schedule``.
    momentum: :math:`m \in [0, 1)` (keyword-only, as every argument after
      ``learning_rate``).
    weight_decay: :math:`\beta \ge 0` (eq. 22), or an ``optax.Schedule``.
    eps: :math:`\epsilon \ge 0`, added to the denominator of :math:`R_l`
      (it caps :math:`R_l` at :math:`\mathrm{med}|w_l|/\epsilon`).
    nesterov: Nesterov momentum.
    weight_decay_mask: which leaves get weight decay; default
      :func:`legw.exclude_bias_and_norm`.
    trust_ratio_mask: which leaves get :math:`R_l`; same default.
    axis_name: mesh axis name(s) for whole-layer medians under ``shard_map``.
    layer_axis: the stacked-layer axis of each leaf (scanned layers), or
      None: the statistic is taken per slice, and the default masks judge one
      layer's shape (see :func:`legw.scale_by_lars`).
    accumulator_dtype: the dtype of the momentum in the state
      (``optax.trace``'s argument), e.g. ``jnp.bfloat16``; ``None``
      (default): the parameters' dtype.  Only the stored momentum is
      rounded; the per-layer statistics stay float32 and the update comes
      back in the gradient's dtype (see :func:`legw.lars`).
    keep_stats: keep each layer's applied rate and its two sizes in the
      state (:class:`legw.LayerwiseStatsState`, first in the chain), for
      logging with :func:`legw.applied_layerwise_stats`.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` requires params.

  Raises:
    ValueError: for a negative learning rate, momentum outside [0, 1), or a
      negative weight decay or eps (concrete numbers only, so
      ``optax.inject_hyperparams`` works); at ``init``, for a real
      ``accumulator_dtype`` with a complex parameter; at update time without
      params.
    TypeError: for a learning rate or weight decay neither a number nor a
      schedule (e.g. a :class:`legw.Recipe`), an ``accumulator_dtype``
      that is not a floating dtype, or a ``keep_stats`` that is not a bool.
  """
  return _layerwise.sgd_optimizer(
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
  """State of :func:`scale_by_percent_delta` when ``weight_decay`` is a
  schedule (otherwise ``optax.EmptyState()``).

  Attributes:
    count: number of updates so far (int32).
  """

  count: jax.Array  # type: ignore[assignment]  # shadows tuple.count; renaming would break users


def _percent_delta_partials(w, g, beta, stacked=False):
  """sum over w != 0 of |g/w|, and the count of w != 0: one pass, nothing
  stored (a variadic reduce, see legw._reduce.fused_sums).  One layer of a
  stack (``stacked``) on a platform other than CPU: two sums, which XLA's
  partitioner all-reduces where it would all-gather a sharded stack's
  variadic reduce (:func:`legw._layerwise.sums_statistic`)."""
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

  Per leaf ``l`` with :math:`n_l` entries where :math:`w \ne 0`:

  .. math::

     R_l = \frac{n_l}{\|g_l / w_l\|_1 + \beta n_l + \epsilon}
     \qquad u_l = R_l\,(g_l + \beta w_l)

  (curvature paper eq. 24, after Abuelhaija 2017; with :math:`\beta = 0`,
  :math:`\epsilon = 0` and no zero weights it is exactly
  :math:`\mathrm{size}(w)/\|g/w\|_1`, the harmonic mean over the layer of the
  eq. 17 radii :math:`|w_i/g_i|`).  Weight decay enters as in the other
  family members, :math:`R_l = 1/(\mathrm{mean}_i|g_i/w_i| + \beta)`.

  * Guard for :math:`w_i = 0` (eq. 18): such entries have no relative change;
    they are left out of both the L1 sum and the count :math:`n_l` (they
    still receive the layer's update).  Zero fallback, as every member of the
    family: :math:`R_l = 1` where the layer has no non-zero weight
    (:math:`n_l = 0`) or where the denominator is 0 (zero gradient on the
    non-zero weights, no decay, eq. 19); with :math:`\beta > 0` the formula
    is finite at :math:`g = 0` (:math:`1/\beta`) and used.  Weights close to,
    but not exactly, 0 dominate the sum and make :math:`R_l` small: that is
    the rule itself.
  * Masks, dtypes, complex leaves (:math:`|x|`), schedules of
    ``weight_decay`` and defaults as :func:`scale_by_median_curvature`.
  * Differentiable: ``jax.grad`` through the update is exact away from
    :math:`w_i = 0` and zero layers.
  * ``axis_name``: under ``shard_map`` with every leaf sharded over that mesh
    axis, the per-shard sums and counts of all leaves are ``psum``-ed in one
    stacked all-reduce, so :math:`R_l` is that of the whole layer.

  Args:
    weight_decay: :math:`\beta \ge 0`, or an ``optax.Schedule``.  The only
      positional argument.
    eps: :math:`\epsilon \ge 0`, added to the denominator.
    trust_ratio_mask: which leaves get :math:`R_l` (default:
      :func:`legw.exclude_bias_and_norm`).
    weight_decay_mask: which leaves get weight decay (same default).
    axis_name: mesh axis name(s) over which parameters are sharded, or None.
    layer_axis: the stacked-layer axis of each leaf (scanned layers), or
      None: the statistic is taken per slice, and the default masks judge one
      layer's shape (see :func:`legw.scale_by_lars`).
    keep_stats: keep each layer's applied rate :math:`R_l` and its two sizes
      in the state (:class:`legw.LayerwiseStatsState`), for logging with
      :func:`legw.applied_layerwise_stats`; no extra pass.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` requires ``params``.

  Raises:
    ValueError: at construction, for negative ``weight_decay`` or ``eps``; at
      update, when ``params`` is not given.
    TypeError: for a ``weight_decay`` neither a number nor a schedule, or
      a ``keep_stats`` that is not a bool.
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
  r"""SGD with PercentDelta per-layer rates (curvature paper eq. 24).

  .. math::

     v_l \leftarrow m\,v_l + \gamma_t R_l\,(g_l + \beta w_l) \qquad
     w_l \leftarrow w_l - v_l

  with :math:`R_l` from :func:`scale_by_percent_delta`.  Implemented as
  ``optax.chain(scale_by_percent_delta(...),
  optax.scale_by_learning_rate(learning_rate), optax.trace(momentum,
  nesterov))``; leaves outside ``trust_ratio_mask`` (default: biases and
  norms) get plain momentum SGD at :math:`\gamma_t`; non-floating leaves pass
  through.  With momentum 0 the mean relative change of a layer's (non-zero)
  weights per step is :math:`\gamma_t` when :math:`\beta = 0` — the "percent
  delta".

  Args:
    learning_rate: :math:`\gamma_t \ge 0`, a float or an ``optax.Schedule``.
    momentum: :math:`m \in [0, 1)` (keyword-only, as every argument after
      ``learning_rate``).
    weight_decay: :math:`\beta \ge 0`, or an ``optax.Schedule``.
    eps: :math:`\epsilon \ge 0`, added to the denominator of :math:`R_l`
      (it caps :math:`R_l` at :math:`n_l/\epsilon`).
    nesterov: Nesterov momentum.
    weight_decay_mask: which leaves get weight decay (default
      :func:`legw.exclude_bias_and_norm`).
    trust_ratio_mask: which leaves get :math:`R_l` (same default).
    axis_name: mesh axis name(s) for whole-layer sums under ``shard_map``.
    layer_axis: the stacked-layer axis of each leaf (scanned layers), or
      None: the statistic is taken per slice, and the default masks judge one
      layer's shape (see :func:`legw.scale_by_lars`).
    accumulator_dtype: the dtype of the momentum in the state
      (``optax.trace``'s argument), e.g. ``jnp.bfloat16``; ``None``
      (default): the parameters' dtype.  Only the stored momentum is
      rounded; the per-layer statistics stay float32 and the update comes
      back in the gradient's dtype (see :func:`legw.lars`).
    keep_stats: keep each layer's applied rate and its two sizes in the
      state (:class:`legw.LayerwiseStatsState`, first in the chain), for
      logging with :func:`legw.applied_layerwise_stats`.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` requires params.

  Raises:
    ValueError: for momentum outside [0, 1), a negative learning rate, weight
      decay or eps; at ``init``, for a real ``accumulator_dtype`` with a
      complex parameter; at update time without params.
    TypeError: for a learning rate or weight decay that is not a number or an
      ``optax.Schedule`` (e.g. a :class:`legw.Recipe`), an
      ``accumulator_dtype`` that is not a floating dtype, a ``keep_stats``
      that is not a bool, or for a hyperparameter passed by position after
      ``learning_rate``.
  """
  return _layerwise.sgd_optimizer(
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
