"""LARS: layer-wise adaptive rate scaling, exactly as the paper's Algorithm 1.

References:
  * You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks", 2017,
    arXiv:1708.03888, §4, eq. 4–6 and Algorithm 1.
  * You, Gitman & Ginsburg, "Scaling SGD Batch Size to 32K for ImageNet Training",
    2017, UC Berkeley tech report UCB/EECS-2017-156, §3.2.3.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import DTypeLike

from legw import _layerwise, _sgd, _validation
from legw._layerwise import combined_decay, sums_statistic
from legw._masks import LayerAxis, MaskOrFn
from legw._reduce import AxisName, real_dtype, sum_of_squares


class ScaleByLarsState(NamedTuple):
  """State of :func:`scale_by_lars` when a hyperparameter is a schedule.

  Used when ``weight_decay`` is an ``optax.Schedule``, or ``clip=True`` with a
  scheduled ``learning_rate``; otherwise the state is ``optax.EmptyState()``.

  Attributes:
    count: number of updates so far (int32), the step the schedules read.
  """

  count: jax.Array  # type: ignore[assignment]  # shadows tuple.count; renaming would break users


# Measurements behind the choices below: benchmarks/costs/README.md ("On TPU";
# `python -m benchmarks.costs.tpu_cost --parts ablations`).
def _lars_partials(w, g, beta, stacked=False):
  """||w||^2 and ||g||^2 (or ||g + beta*w||^2), of |x|^2, in float32 or wider.

  Two reductions (also for one layer of a stack, ``stacked``), with ``g +
  beta*w`` chosen for the target platform at lowering
  (``jax.lax.platform_dependent``):

  * XLA:CPU: through :func:`legw._layerwise.combined_decay`, whose anchor
    keeps XLA:CPU from storing a broadcast constant.  XLA:CPU has no
    multi-output fusion; two independent reductions run concurrently with
    other leaves' work.
  * Other platforms: plain ``g + beta*w``: the anchor would make the second
    reduction wait for the first one's all-reduce under FSDP (two
    all-reduces per step instead of one).

  Not one variadic reduce of both sums: XLA's TPU cost model puts that below
  two reductions on one chip, above them under FSDP, and far above them for
  LAMB, whose Adam direction's reduction XLA otherwise fuses into the fusion
  that computes it.
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
  r"""Scales each layer's update by its LARS trust ratio (no learning rate, no momentum).

  Per leaf ``l`` of the parameter tree (one leaf = one layer's kernel, bias, ...):

  .. math::

     \lambda_l = \eta \frac{\|w_l\|}{\|g_l\| + \beta\|w_l\| + \epsilon}
     \qquad u_l = \lambda_l (g_l + \beta w_l)

  with :math:`\eta` = ``trust_coefficient`` and :math:`\beta` = ``weight_decay``.
  :math:`\lambda_l = 1` exactly where :math:`\|w_l\| = 0` or the denominator is 0.
  ``denominator="combined"`` uses :math:`\|g_l + \beta w_l\| + \epsilon`, the form of
  ``optax.lars``. ``clip=True`` is NVIDIA apex's LARC clip: the update is scaled by
  :math:`\min(\lambda_l/\gamma_t, 1)`, an effective rate :math:`\min(\lambda_l, \gamma_t)`.
  Norms are of :math:`|x|^2`, in float32 or wider, and of the whole layer when sharded.

  Args:
    trust_coefficient: :math:`\eta > 0` (paper: 0.001); the only positional argument.
    weight_decay: :math:`\beta \ge 0`, or an ``optax.Schedule`` of the step count.
    eps: :math:`\epsilon \ge 0`, added to the denominator.
    denominator: ``"paper"`` (default) or ``"combined"``.
    clip: LARC clip mode; needs ``learning_rate``.
    learning_rate: :math:`\gamma_t` (a number or the optimizer's schedule), for ``clip``.
    trust_ratio_mask: which leaves get the trust ratio (others: 1): a bool, a pytree of
      bools, a callable of params, or ``None`` (:func:`legw.exclude_bias_and_norm`).
    weight_decay_mask: same forms and default; which leaves get weight decay.
    axis_name: the mesh axis every parameter is sharded over under ``shard_map`` (one
      ``psum``); ``None`` under ``jax.jit`` or for replicated parameters.
    layer_axis: the stacked-layer axis of each leaf (``None``, an int, or a pytree or
      callable as the masks): a leaf of L layers gets L trust ratios.
    keep_stats: keep each layer's applied ratio and norms in the state, for
      :func:`legw.applied_layerwise_stats`.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` requires ``params``.

  Raises:
    ValueError: for ``trust_coefficient <= 0``, negative ``weight_decay`` or ``eps``,
      an unknown ``denominator``, ``clip=True`` without ``learning_rate``; at update,
      without ``params`` or for a ``layer_axis`` out of range.
    TypeError: for a ``weight_decay`` or ``learning_rate`` that is neither a number
      nor a schedule, or a ``keep_stats`` that is not a bool.

  Example:
    >>> import jax.numpy as jnp, optax, legw
    >>> params = {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}
    >>> tx = optax.chain(legw.scale_by_lars(0.001), optax.scale(-0.1))
    >>> grads = {"w": jnp.full((2, 2), 0.5), "b": jnp.ones(2)}
    >>> updates, _ = tx.update(grads, tx.init(params), params)
    >>> round(float(updates["w"][0, 0]), 6)  # -0.1 * 0.001 * (2 / 1) * 0.5
    -0.0001

  References:
    You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks", 2017,
    arXiv:1708.03888, eq. 6 and Algorithm 1; You, Gitman & Ginsburg, "Scaling SGD
    Batch Size to 32K for ImageNet Training", 2017, UC Berkeley tech report
    UCB/EECS-2017-156, §3.2.3. Numerics and cost: :doc:`/guides/lars_from_sgd`.
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

  The learning rate sits *inside* the momentum; the updates returned are
  :math:`-v_l`. This is ``optax.chain(scale_by_lars(...),
  optax.scale_by_learning_rate(learning_rate), optax.trace(momentum, nesterov))``,
  with non-floating leaves passed through. Unlike ``optax.lars``: the paper's
  denominator (``denominator="combined"`` gives optax's), biases and normalisation
  parameters (``ndim <= 1``) off the trust ratio and weight decay by default,
  float32 norms, and every argument after ``learning_rate`` keyword-only.

  Args:
    learning_rate: :math:`\gamma_t \ge 0`, a float or an ``optax.Schedule`` of the step
      count (e.g. :func:`legw.legw_schedule`).
    momentum: :math:`m \in [0, 1)`.
    weight_decay: :math:`\beta \ge 0`, or an ``optax.Schedule`` of the step count.
    trust_coefficient: :math:`\eta > 0` (paper: 0.001).
    eps: :math:`\epsilon \ge 0`, added to the trust-ratio denominator.
    nesterov: Nesterov momentum.
    weight_decay_mask, trust_ratio_mask, denominator, clip: as in :func:`legw.scale_by_lars`.
    axis_name, layer_axis, keep_stats: as in :func:`legw.scale_by_lars`.
    accumulator_dtype: the dtype of the stored momentum :math:`v` (as
      ``optax.trace``), e.g. ``jnp.bfloat16``; ``None``: the parameters' dtype. Each
      step adds in the wider dtype; only the stored :math:`v` is rounded.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` requires ``params``.

  Raises:
    ValueError: for a negative learning rate, momentum outside [0, 1), negative
      weight decay or eps, ``trust_coefficient <= 0`` or an unknown denominator; at
      ``init``, for a bad mask or ``layer_axis``, or a real ``accumulator_dtype`` with
      a complex parameter; at update, without ``params``.
    TypeError: for a learning rate or weight decay that is neither a number nor a
      schedule (e.g. a :class:`legw.Recipe`), a non-floating ``accumulator_dtype``, a
      ``keep_stats`` that is not a bool, or a hyperparameter passed by position.

  Example:
    >>> import jax.numpy as jnp, optax, legw
    >>> params = {"w": jnp.ones((3, 3)), "b": jnp.zeros(3)}
    >>> opt = legw.lars(0.1, weight_decay=1e-4, accumulator_dtype=jnp.bfloat16)
    >>> state = opt.init(params)
    >>> grads = {"w": jnp.full((3, 3), 0.5), "b": jnp.ones(3)}
    >>> updates, state = opt.update(grads, state, params)
    >>> params = optax.apply_updates(params, updates)
    >>> state[2].trace["w"].dtype, updates["w"].dtype
    (dtype(bfloat16), dtype('float32'))

  References:
    You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks", 2017,
    arXiv:1708.03888, Algorithm 1.
  """
  return _sgd.sgd_optimizer(
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
