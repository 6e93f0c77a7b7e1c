"""LARS: layer-wise adaptive rate scaling, exactly as the paper's Algorithm 1.

Sources:
  * You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks"
    (papers/lars-layer-wise-adaptive-rate-scaling.txt), §4, eq. 4–6 and
    Algorithm 1.
  * You, Gitman & Ginsburg, "Scaling SGD Batch Size to 32K for ImageNet
    Training" (papers/lars-scaling-sgd-batch-32k-tech-report.txt), §3.2.3.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import DTypeLike

from legw import _layerwise, _validation
from legw._layerwise import combined_decay, sums_statistic
from legw._reduce import AxisName, real_dtype, sum_of_squares
from legw.masks import LayerAxis, MaskOrFn


class ScaleByLarsState(NamedTuple):
  """State of :func:`scale_by_lars` when a hyperparameter is a schedule.

  Used when ``weight_decay`` is an ``optax.Schedule``, or ``clip=True`` with a
  scheduled ``learning_rate``; otherwise the state is ``optax.EmptyState()``.

  Attributes:
    count: number of updates so far (int32), the step the schedules read.
  """

  count: jax.Array  # type: ignore[assignment]  # shadows tuple.count; renaming would break users


def _lars_partials(w, g, beta, stacked=False):
  """||w||^2 and ||g||^2 (or ||g + beta*w||^2), of |x|^2, in float32 or wider.

  Two reductions (also for one layer of a stack, ``stacked``), with ``g +
  beta*w`` chosen for the target platform at lowering
  (``jax.lax.platform_dependent``):

  * XLA:CPU: through :func:`legw._layerwise.combined_decay`, whose anchor
    keeps XLA:CPU from storing a broadcast constant.  XLA:CPU has no
    multi-output fusion; two independent reductions run concurrently with
    other leaves' work (``benchmarks/README_optimizer_step.md``).
  * Other platforms: plain ``g + beta*w``: the anchor would make the second
    reduction wait for the first one's all-reduce under FSDP (two
    all-reduces per step instead of one).

  Not one variadic reduce of both sums: XLA's TPU cost model puts that below
  two reductions on one chip, above them under FSDP, and far above them for
  LAMB, whose Adam direction's reduction XLA otherwise fuses into the fusion
  that computes it (``python -m benchmarks.tpu_cost --parts ablations``;
  ``benchmarks/README_optimizer_step.md``, "On TPU").
  """
  del stacked  # two plain sums partition well for a sharded stack too

  def cpu(w, g):
    w_sq = sum_of_squares(w)
    return w_sq, sum_of_squares(g if beta is None else combined_decay(g, w, beta, w_sq))

  def other(w, g):
    x = g if beta is None else g + jnp.asarray(beta, real_dtype(g.dtype)) * w
    return sum_of_squares(w), sum_of_squares(x)

  return jax.lax.platform_dependent(w, g, cpu=cpu, default=other)


def _lars_sizes(w_sq, g_sq):
  return jnp.sqrt(w_sq), jnp.sqrt(g_sq)


# LARS is the L2-norm member of the family (curvature paper eq. 23); LAMB uses it too.
LARS_STATISTIC = sums_statistic(_lars_partials, _lars_sizes)


def scale_by_lars(
  trust_coefficient: float = 0.001,
  *,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  eps: float = 0.0,
  denominator: str = "paper",
  clip: bool = False,
  learning_rate: optax.ScalarOrSchedule | None = None,
  trust_ratio_mask: MaskOrFn = None,
  weight_decay_mask: MaskOrFn = None,
  axis_name: AxisName = None,
  layer_axis: LayerAxis = None,
  keep_stats: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""Scales each layer's update by its LARS trust ratio (no LR, no momentum).

  Per leaf ``l`` of the parameter tree (one leaf = one layer's kernel, bias, ...):

  .. math::

     \lambda_l = \eta \frac{\|w_l\|}{\|g_l\| + \beta\|w_l\| + \epsilon}
     \qquad u_l = \lambda_l (g_l + \beta w_l)

  with :math:`\eta` = ``trust_coefficient`` and :math:`\beta` = ``weight_decay``
  (LARS paper, eq. 6 and Algorithm 1; tech report §3.2.3).  LARS is the
  L2-norm member of the per-layer family of the curvature paper (§4, eq. 23),
  and shares its core with :func:`legw.scale_by_median_curvature` and
  :func:`legw.scale_by_percent_delta`.

  * ``denominator="paper"`` (default) is the formula above.
    ``denominator="combined"`` uses :math:`\|g_l + \beta w_l\| + \epsilon`
    instead, which is what ``optax.lars`` (via ``optax.scale_by_trust_ratio``
    after ``add_decayed_weights``) computes. The two agree when
    :math:`\beta = 0`; with weight decay the paper's denominator is the sum
    of the two norms, never smaller than the combined one, so its trust ratio
    is smaller or equal.
  * Zero layers: :math:`\lambda_l = 1` exactly where :math:`\|w_l\| = 0` (a
    zero layer still trains) or where the denominator is 0 (zero gradient,
    no decay, :math:`\epsilon = 0`: the update is 0 anyway).  With
    :math:`\beta > 0` the paper's formula is finite at :math:`g = 0`,
    :math:`\lambda_l = \eta/\beta` (for :math:`\epsilon = 0`), and it is
    used there: the trust ratio is continuous as the gradient tends to 0.
  * ``clip=True`` is the LARC "clip" mode of NVIDIA apex (``LARC(clip=True)``;
    not in the LARS paper): the update is scaled by
    :math:`\min(\lambda_l/\gamma_t, 1)`, so that after the learning rate
    :math:`\gamma_t` the effective per-layer rate is
    :math:`\min(\lambda_l, \gamma_t)`: the schedule caps the trust ratio
    instead of multiplying it.  It needs the learning rate,
    ``learning_rate`` (a number or the same ``optax.Schedule`` as the
    optimizer's; :func:`legw.lars` passes it).  A layer on the zero fallback
    keeps the rate :math:`\gamma_t`, as in apex.
  * Leaves outside ``trust_ratio_mask`` get :math:`\lambda_l = 1`; leaves
    outside ``weight_decay_mask`` get :math:`\beta = 0`.  By default both
    masks are :func:`legw.exclude_bias_and_norm` (leaves with ``ndim <= 1``
    get neither), the practice of the MLPerf LARS submissions.
  * ``weight_decay`` may be an ``optax.Schedule`` of the step count (as in
    ``optax.lars``); the state then counts the steps (:class:`ScaleByLarsState`).
  * Complex parameters: norms are of :math:`|x|^2` (as in optax); the update
    keeps the gradient's phase.  Leaves that are not floating (integers, and
    ``float0`` gradients) pass through unchanged.
  * Norms are accumulated in float32 (float64 for float64 leaves), whatever
    the parameter dtype; updates come back in the update dtype.  A float32
    sum of squares is exact to rounding for a layer with norm below about
    1.8e19 whose norm does not come mostly from elements below about 1e-19
    (their squares flush to zero).  Outside that range: an overflowing
    ``||g||`` gives :math:`\lambda_l = 0` (the layer skips the step), an
    overflowing ``||w||`` gives a non-finite update (guard with
    ``optax.apply_if_finite``), and a layer whose elements are all below
    about 1e-19 counts as zero.  An exact fallback
    (power-of-two rescaling under ``lax.cond``) was measured and rejected: it
    makes every ordinary step slower, by about 0.2x of a momentum-SGD step
    on ResNet-50 on a 2-core CPU (``python -m benchmarks.optimizer_step
    --ablations``, see ``benchmarks/README_optimizer_step.md``).
  * Sharding: the norms are always those of the whole layer.

    - ``jax.jit`` with sharded arrays (``NamedSharding``: FSDP, tensor
      parallel): nothing to pass; XLA's partitioner all-reduces the partial
      sums, and combines those of all layers into one all-reduce per mesh
      axis (not one per layer).
    - ``shard_map`` (or ``pmap``) where each device holds a shard of every
      parameter: pass the mesh axis as ``axis_name``; the squared norms of
      all leaves are ``psum``-ed in one stacked all-reduce.  Every leaf must
      be sharded over that axis: a leaf replicated over it would be counted
      once per device.
    - Replicated parameters (``pmap`` or ``shard_map`` data parallelism,
      gradients averaged with ``lax.pmean``): do not pass ``axis_name``.
  * Cost: two reductions (``||w||``, ``||g||``) per trust-ratio leaf, which
    read w and g once more than momentum SGD, and one tiny scalar fusion; no
    parameter-sized temporary (see ``benchmarks/optimizer_step.py``).
  * Differentiable: ``jax.grad`` through the update (e.g. w.r.t. the
    gradients or parameters) is exact away from zero layers.

  Args:
    trust_coefficient: :math:`\eta > 0`, the LARS coefficient (paper: 0.001).
      The only positional argument; the others are keyword-only.
    weight_decay: :math:`\beta \ge 0`, L2 weight decay coefficient, or an
      ``optax.Schedule`` of the step count.
    eps: :math:`\epsilon \ge 0`, added to the denominator.
    denominator: ``"paper"`` or ``"combined"`` (see above).
    clip: LARC clip mode (apex), effective rate :math:`\min(\lambda_l, \gamma_t)`.
    learning_rate: :math:`\gamma_t`, needed by (and only used by) ``clip=True``.
    trust_ratio_mask: ``None`` (default: :func:`legw.exclude_bias_and_norm`),
      a bool, a pytree of bools (or a prefix of one), or a callable of params.
    weight_decay_mask: same forms; which leaves get weight decay.
    axis_name: mesh axis name(s) over which every parameter is sharded
      (``shard_map``), or None (single device, ``jax.jit`` with sharded
      arrays, replicated parameters).
    layer_axis: stacked (scanned) layers: ``None`` (each leaf is one layer),
      an int (every leaf stacks its layers on that axis), or a pytree of
      ints or ``None`` (or a prefix of one, or a callable of params, as the
      masks).  A stacked leaf of L layers gets L trust ratios, each from its
      own slice: the update of running ``scale_by_lars`` on each slice
      separately.  The default masks then judge one layer's shape: a stacked
      ``(L, d)`` bias or norm scale is excluded, a ``(L, d, d)`` kernel is not.
    keep_stats: keep, in the state, each layer's applied trust ratio
      (after the zero fallback and the clip), :math:`\|w_l\|` and
      :math:`\|g_l\|` (or :math:`\|g_l + \beta w_l\|`, combined), for
      logging: the state is then a :class:`legw.LayerwiseStatsState`
      (read it with :func:`legw.applied_layerwise_stats`).  The values are
      those the step computes anyway: no extra pass over the parameters.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose ``update(updates,
    state, params)`` requires ``params``.

  Raises:
    ValueError: at construction, for ``trust_coefficient <= 0``, negative
      ``weight_decay`` or ``eps``, an unknown ``denominator``, or
      ``clip=True`` without ``learning_rate``; at update, when ``params`` is
      not given or a ``layer_axis`` is out of range for its leaf.
    TypeError: at construction, for a ``weight_decay`` or ``learning_rate``
      that is neither a number nor a schedule, or a ``keep_stats`` that is
      not a bool.
  """
  if learning_rate is not None:
    _validation.check_learning_rate(learning_rate)
  elif clip:
    raise ValueError(
      "scale_by_lars(clip=True) needs the learning rate it caps the trust "
      "ratio with: pass learning_rate= (the optimizer's number or schedule)."
    )
  return _layerwise.scale_by_layerwise_rate(
    LARS_STATISTIC,
    name="scale_by_lars",
    state_cls=ScaleByLarsState,
    trust_coefficient=trust_coefficient,
    weight_decay=weight_decay,
    eps=eps,
    denominator=denominator,
    clip_learning_rate=learning_rate if clip else None,
    trust_ratio_mask=trust_ratio_mask,
    weight_decay_mask=weight_decay_mask,
    axis_name=axis_name,
    layer_axis=layer_axis,
    keep_stats=keep_stats,
  )


def lars(
  learning_rate: optax.ScalarOrSchedule,
  *,
  momentum: float = 0.9,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  trust_coefficient: float = 0.001,
  eps: float = 0.0,
  nesterov: bool = False,
  weight_decay_mask: MaskOrFn = None,
  trust_ratio_mask: MaskOrFn = None,
  denominator: str = "paper",
  clip: bool = False,
  axis_name: AxisName = None,
  layer_axis: LayerAxis = None,
  accumulator_dtype: DTypeLike | None = None,
  keep_stats: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""SGD with LARS, as Algorithm 1 of the LARS paper.

  Per leaf (layer) ``l``, with :math:`\gamma_t` = ``learning_rate`` at step t:

  .. math::

     \lambda_l &= \eta\,\|w_l\| / (\|g_l\| + \beta\|w_l\| + \epsilon) \\
     v_l &\leftarrow m\,v_l + \gamma_t\,\lambda_l\,(g_l + \beta w_l) \\
     w_l &\leftarrow w_l - v_l

  The learning rate sits *inside* the momentum, as in Algorithm 1 (so a
  schedule change does not rescale past momentum). ``optax.apply_updates``
  performs the last line: the returned updates are :math:`-v_l`.
  Implemented as ``optax.chain(scale_by_lars(...),
  optax.scale_by_learning_rate(learning_rate), optax.trace(momentum,
  nesterov))``; leaves that are not floating (integer parameters, ``float0``
  gradients) pass through unchanged.

  Differences from ``optax.lars``: (1) the paper's denominator
  :math:`\|g\| + \beta\|w\|` rather than :math:`\|g + \beta w\|`
  (``denominator="combined"`` gives optax's form, which with
  ``trust_ratio_mask=True, weight_decay_mask=True`` reproduces ``optax.lars``
  exactly, complex parameters included); (2) biases and normalisation
  parameters (``ndim <= 1``) are by default excluded from the trust ratio and
  weight decay, as in the MLPerf LARS submissions: they get plain momentum
  SGD at :math:`\gamma_t`; (3) norms are float32 even for float16/bfloat16
  parameters; (4) ``axis_name`` gives whole-layer norms under ``shard_map``;
  (5) every argument after ``learning_rate`` is keyword-only (``optax.lars``'s
  second positional argument is ``weight_decay``, legw's was ``momentum``:
  ``legw.lars(0.1, 1e-4)`` raises ``TypeError`` rather than guess).

  Zero layers and ``clip`` as in :func:`scale_by_lars`: :math:`\lambda_l = 1`
  only where :math:`\|w_l\| = 0` or the denominator is 0; ``clip=True`` is
  apex's LARC clip, effective rate :math:`\min(\lambda_l, \gamma_t)`.

  Args:
    learning_rate: :math:`\gamma_t \ge 0`, a float or an ``optax.Schedule`` of
      the step count (steps, not epochs; e.g. ``recipe.schedule(batch_size,
      dataset_size=...)`` or :func:`legw.legw_schedule`).
    momentum: :math:`m \in [0, 1)`.
    weight_decay: :math:`\beta \ge 0`, or an ``optax.Schedule`` of the step
      count.
    trust_coefficient: :math:`\eta > 0` (paper: 0.001).
    eps: :math:`\epsilon \ge 0`, added to the trust-ratio denominator.
    nesterov: Nesterov momentum (``optax.trace(nesterov=True)``).
    weight_decay_mask: which leaves get weight decay (see
      :func:`scale_by_lars`); default :func:`legw.exclude_bias_and_norm`.
    trust_ratio_mask: which leaves get the trust ratio; same default.
    denominator: ``"paper"`` or ``"combined"``.
    clip: LARC clip mode (apex), effective rate :math:`\min(\lambda_l, \gamma_t)`.
    axis_name: mesh axis name(s) for whole-layer norms under ``shard_map``
      (see :func:`scale_by_lars`: not for ``jax.jit`` or replicated params).
    layer_axis: the stacked-layer axis of each leaf (scanned layers), or
      None; see :func:`scale_by_lars`.
    accumulator_dtype: the dtype of the momentum :math:`v` in the state
      (``optax.trace``'s argument), e.g. ``jnp.bfloat16`` to halve its
      memory; ``None`` (default): the parameters' dtype.  Only the stored
      :math:`v` is rounded: each step adds in the wider of the two dtypes,
      the norms and trust ratios are float32 (they read :math:`w` and
      :math:`g`, never :math:`v`), and the update comes back in the
      gradient's dtype.  Momentum 0.9 keeps a bfloat16 :math:`v` sound:
      each step moves it by 10% of itself, far above bfloat16's relative
      rounding (at most :math:`2^{-8}`, 0.4%; see
      ``docs/guides/optimizer_state_and_masks.md``).
    keep_stats: keep each layer's applied trust ratio and the two norms it
      came from in the state (:class:`legw.LayerwiseStatsState`, first in
      the chain), for logging with :func:`legw.applied_layerwise_stats`;
      see :func:`scale_by_lars`.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` requires params.

  Raises:
    ValueError: for a negative learning rate, momentum outside [0, 1),
      negative weight decay or eps, ``trust_coefficient <= 0``, or an unknown
      denominator (concrete numbers only, so ``optax.inject_hyperparams``
      works); at ``init``, for a bad mask or ``layer_axis``, or a real
      ``accumulator_dtype`` with a complex parameter; at update time when
      params are missing.
    TypeError: for a learning rate or weight decay that is neither a number
      nor a schedule (e.g. a :class:`legw.Recipe`: pass
      ``recipe.schedule(batch_size, dataset_size=...)``), an
      ``accumulator_dtype`` that is not a floating dtype (e.g. ``jnp.int32``,
      ``"int8"``, ``bool``), a ``keep_stats`` that is not a bool, or a
      hyperparameter passed by position after ``learning_rate``.

  Example:
    >>> import jax.numpy as jnp, optax, legw
    >>> params = {"w": jnp.ones((3, 3)), "b": jnp.zeros(3)}
    >>> opt = legw.lars(0.1, weight_decay=1e-4)
    >>> state = opt.init(params)
    >>> grads = {"w": jnp.full((3, 3), 0.5), "b": jnp.ones(3)}
    >>> updates, state = opt.update(grads, state, params)
    >>> params = optax.apply_updates(params, updates)

    The momentum in bfloat16, the update in the parameters' float32:

    >>> opt = legw.lars(0.1, accumulator_dtype=jnp.bfloat16)
    >>> state = opt.init(params)
    >>> updates, state = opt.update(grads, state, params)
    >>> state[2].trace["w"].dtype, updates["w"].dtype
    (dtype(bfloat16), dtype('float32'))
  """
  return _layerwise.sgd_optimizer(
    scale_by_lars,
    learning_rate,
    momentum,
    nesterov,
    accumulator_dtype=accumulator_dtype,
    trust_coefficient=trust_coefficient,
    weight_decay=weight_decay,
    eps=eps,
    denominator=denominator,
    clip=clip,
    learning_rate=learning_rate if clip else None,
    trust_ratio_mask=trust_ratio_mask,
    weight_decay_mask=weight_decay_mask,
    axis_name=axis_name,
    layer_axis=layer_axis,
    keep_stats=keep_stats,
  )
