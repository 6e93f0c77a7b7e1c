"""LARS: layer-wise adaptive rate scaling, exactly as the paper's Algorithm 1.

You, Gitman & Ginsburg, arXiv:1708.03888 (2017), Algorithm 1; UCB/EECS-2017-156, §3.2.3.
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
  """State of :func:`scale_by_lars` when ``weight_decay`` (or, with ``clip=True``, the
  ``learning_rate``) is a schedule; otherwise the state is ``optax.EmptyState()``.

  Attributes:
    count: number of updates so far (int32), the step the schedules read.
  """

  count: jax.Array  # type: ignore[assignment]  # shadows tuple.count; renaming would break users


# Measurements behind the choices below: benchmarks/costs/README.md ("On TPU";
# `python -m benchmarks.costs.tpu_cost --parts ablations`).
def _lars_partials(w, g, beta, stacked=False):
  """||w||^2 and ||g||^2 (or ||g + beta*w||^2) of |x|^2, in float32 or wider: two reductions,
  with ``g + beta*w`` written for the platform the step is lowered for."""
  # XLA:CPU: through `combined_decay` (see there). Other platforms: plain g + beta*w; the
  # anchor would make the second reduction wait for the first one's all-reduce under FSDP.
  # Not one variadic reduce of both sums: XLA's TPU cost model puts it below two reductions
  # on one chip, above them under FSDP, and far above them for LAMB.
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

  .. math::

     \lambda_l = \eta \frac{\|w_l\|}{\|g_l\| + \beta\|w_l\| + \epsilon}
     \qquad u_l = \lambda_l (g_l + \beta w_l)

  per leaf ``l`` (a layer's kernel, bias, ...), 1 where :math:`\|w_l\| = 0` or the denominator
  is 0. ``denominator="combined"`` uses :math:`\|g_l + \beta w_l\| + \epsilon` (``optax.lars``).
  ``clip=True`` is NVIDIA apex's LARC clip, not in the paper: it scales the update by
  :math:`\min(\lambda_l/\gamma_t, 1)`. Norms are of :math:`|x|^2`, float32 or wider, of the
  whole layer when sharded (numerics: :doc:`/guides/lars_from_sgd`).

  Args:
    trust_coefficient: :math:`\eta > 0` (paper: 0.001); the only positional argument.
    weight_decay: :math:`\beta \ge 0`, or an ``optax.Schedule`` of the step count.
    eps: :math:`\epsilon \ge 0`, added to the denominator.
    denominator: ``"paper"`` (default) or ``"combined"``.
    clip, learning_rate: LARC clip mode, and its :math:`\gamma_t` (a number or the LR schedule).
    trust_ratio_mask, weight_decay_mask: which leaves get the trust ratio (others: 1) and weight
      decay: a bool, bool pytree, callable of params, or None (:func:`legw.exclude_bias_and_norm`).
    axis_name: under ``shard_map``, the mesh axis all parameters are sharded over (a ``psum``).
    layer_axis: each leaf's stacked-layer axis (None, an int, or as the masks): a ratio per layer.
    keep_stats: keep the applied ratios and norms (:func:`legw.applied_layerwise_stats`).

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` requires ``params``.

  Raises:
    ValueError, TypeError: naming the argument, for a hyperparameter out of range or of the
      wrong type, or ``clip`` without ``learning_rate``; at update, without ``params``.

  Example:
    >>> import jax.numpy as jnp, optax, legw
    >>> params, grads = {"w": jnp.ones((2, 2))}, {"w": jnp.full((2, 2), 0.5)}
    >>> tx = optax.chain(legw.scale_by_lars(0.001), optax.scale(-0.1))
    >>> updates, _ = tx.update(grads, tx.init(params), params)
    >>> round(float(updates["w"][0, 0]), 6)  # -0.1 * 0.001 * (2 / 1) * 0.5
    -0.0001

  References:
    You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks", 2017,
    arXiv:1708.03888, eq. 6, Algorithm 1; "Scaling SGD Batch Size to 32K for ImageNet
    Training", 2017, UC Berkeley tech report UCB/EECS-2017-156, §3.2.3.
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
  r"""SGD with LARS, as Algorithm 1 of the LARS paper, per leaf (layer) ``l``:

  .. math::

     \lambda_l &= \eta\,\|w_l\| / (\|g_l\| + \beta\|w_l\| + \epsilon) \\
     v_l &\leftarrow m\,v_l + \gamma_t\,\lambda_l\,(g_l + \beta w_l) \\
     w_l &\leftarrow w_l - v_l

  The learning rate sits *inside* the momentum (``optax.chain(scale_by_lars(...),
  optax.scale_by_learning_rate(lr), optax.trace(momentum, nesterov))``; non-floating leaves
  pass through). Unlike ``optax.lars``: the paper's denominator (``"combined"`` is optax's),
  biases and norm parameters (``ndim <= 1``) off the trust ratio and weight decay by default
  (MLPerf's practice), float32 norms, keyword-only arguments after ``learning_rate``.

  Args:
    learning_rate: :math:`\gamma_t \ge 0`, a float or a schedule (:func:`legw.legw_schedule`).
    momentum, nesterov: the momentum :math:`m \in [0, 1)`, and whether it is Nesterov's.
    weight_decay: :math:`\beta \ge 0`, or an ``optax.Schedule`` of the step count.
    trust_coefficient, eps: :math:`\eta > 0` (paper: 0.001) and :math:`\epsilon \ge 0`, as above.
    weight_decay_mask, trust_ratio_mask, denominator, clip: as in :func:`legw.scale_by_lars`.
    axis_name, layer_axis, keep_stats: as in :func:`legw.scale_by_lars`.
    accumulator_dtype: the dtype of the stored momentum :math:`v` (as ``optax.trace``), e.g.
      ``jnp.bfloat16``; ``None``: the parameters' dtype. Only the stored :math:`v` is rounded.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` requires ``params``.

  Raises:
    ValueError, TypeError: as :func:`legw.scale_by_lars`; for a learning rate that is negative
      or not a schedule (e.g. a :class:`legw.Recipe`), a non-floating ``accumulator_dtype`` or
      a real one with a complex parameter (at ``init``), or hyperparameters by position.

  Example:
    >>> import jax.numpy as jnp, optax, legw
    >>> params = {"w": jnp.ones((3, 3)), "b": jnp.zeros(3)}
    >>> opt = legw.lars(0.1, weight_decay=1e-4, accumulator_dtype=jnp.bfloat16)
    >>> grads = {"w": jnp.full((3, 3), 0.5), "b": jnp.ones(3)}
    >>> updates, state = opt.update(grads, opt.init(params), params)
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
