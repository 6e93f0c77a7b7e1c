"""LAMB: the layer-wise trust ratio on the Adam direction.

LARS's ``"combined"`` trust ratio (``trust_coefficient=1``) on Adam's direction, through the
family's core (``legw._layerwise``). You et al., ICLR 2020, arXiv:1904.00962, Algorithm 2.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.typing import DTypeLike

from legw import _layerwise, _sgd, _validation
from legw._lars import LARS_STATISTIC, ScaleByLarsState
from legw._masks import LayerAxis, MaskOrFn
from legw._reduce import AxisName, stat_dtype
from legw._state_dtype import with_state_dtype


def _check_adam_args(b1: Any, b2: Any, eps: Any, eps_root: Any) -> None:
  _validation.check_range("b1", b1, low=0.0, high=1.0, high_inclusive=False)
  _validation.check_range("b2", b2, low=0.0, high=1.0, high_inclusive=False)
  _validation.check_range("eps", eps, low=0.0)
  _validation.check_range("eps_root", eps_root, low=0.0)


def _promoted(x):
  x = jnp.asarray(x)
  return x.astype(stat_dtype(x.dtype))


def _in_stat_dtype(inner: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
  """``inner`` on gradients and state in float32 or wider (Adam's second moment of a float16
  gradient underflows: docs/guides/lamb.md); the updates cast back to the gradients' dtypes."""
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    return inner.init(jax.tree.map(_promoted, params))

  def update_fn(updates, state, params=None, **extra_args):
    out, state = inner.update(jax.tree.map(_promoted, updates), state, params, **extra_args)
    return jax.tree.map(lambda u, g: u.astype(jnp.result_type(g)), out, updates), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _adam(b1, b2, eps, eps_root, mu_dtype) -> optax.GradientTransformation:
  """``optax.scale_by_adam``, computing in the wider of the state and update dtypes
  (:func:`legw._state_dtype.with_state_dtype`); itself for ``mu_dtype=None``."""
  adam = optax.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype)
  return with_state_dtype(adam, "mu_dtype", mu_dtype, "mu")


def _lamb_direction(
  b1,
  b2,
  eps,
  eps_root,
  weight_decay,
  trust_ratio_mask,
  weight_decay_mask,
  axis_name,
  layer_axis,
  mu_dtype=None,
  keep_stats=False,
) -> optax.GradientTransformation:
  """Adam's direction, then the LARS trust ratio (combined form, eta = 1, no eps), on
  floating leaves only (the caller wraps it in ``pass_untrainable``)."""
  return optax.chain(
    _adam(b1, b2, eps, eps_root, mu_dtype),
    _layerwise.scale_by_layerwise_rate(
      LARS_STATISTIC,
      name="scale_by_lamb",
      state_cls=ScaleByLarsState,
      trust_coefficient=1.0,
      weight_decay=weight_decay,
      eps=0.0,
      denominator="combined",
      trust_ratio_mask=trust_ratio_mask,
      weight_decay_mask=weight_decay_mask,
      axis_name=axis_name,
      layer_axis=layer_axis,
      keep_stats=keep_stats,
    ),
  )


def scale_by_lamb(
  b1: float = 0.9,
  *,
  b2: float = 0.999,
  eps: float = 1e-6,
  eps_root: float = 0.0,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  trust_ratio_mask: MaskOrFn = None,
  weight_decay_mask: MaskOrFn = None,
  axis_name: AxisName = None,
  layer_axis: LayerAxis = None,
  mu_dtype: DTypeLike | None = None,
  keep_stats: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""Scales each layer's Adam direction by its LAMB trust ratio (no learning rate).

  .. math::

     m_l &\leftarrow \beta_1 m_l + (1 - \beta_1)\,g_l, \qquad
     v_l \leftarrow \beta_2 v_l + (1 - \beta_2)\,|g_l|^2 \\
     r_l &= \frac{m_l / (1 - \beta_1^t)}
                 {\sqrt{v_l / (1 - \beta_2^t) + \epsilon_{root}} + \epsilon} \\
     u_l &= \frac{\|w_l\|}{\|r_l + \beta w_l\|}\,(r_l + \beta w_l)

  per leaf ``l`` at step :math:`t` (from 1): ``optax.scale_by_adam``, then
  :func:`legw.scale_by_lars`'s ``"combined"`` ratio with ``trust_coefficient=1``, ``eps=0``
  (1 where :math:`\|w_l\| = 0` or :math:`\|r_l + \beta w_l\| = 0`). Leaves outside the masks
  get plain Adam and no decay. Moments and norms are float32 or wider whatever the leaf dtype
  (:doc:`/guides/lamb`), the update in the gradient's. Then the LR (as :func:`legw.lamb`).

  Args:
    b1, b2: :math:`\beta_1, \beta_2 \in [0, 1)`; ``b1`` is the only positional argument.
    eps, eps_root: :math:`\epsilon, \epsilon_{root} \ge 0`, added outside and inside the root.
    weight_decay: :math:`\beta \ge 0`, or an ``optax.Schedule`` of the step count.
    trust_ratio_mask, weight_decay_mask, axis_name, layer_axis: as in
      :func:`legw.scale_by_lars` (default masks :func:`legw.exclude_bias_and_norm`).
    mu_dtype: the stored first moment's dtype (e.g. ``jnp.bfloat16``; None: float32). v: float32.
    keep_stats: keep the applied ratios and norms (:class:`legw.LayerwiseStatsState`).

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` requires ``params``.

  Raises:
    ValueError, TypeError: naming the argument, for a hyperparameter out of range or of the
      wrong type; at ``init``, for a bad mask or ``layer_axis``, or a ``mu_dtype`` with a
      complex parameter; at update, without ``params``.

  Example:
    >>> import jax.numpy as jnp, optax, legw
    >>> params = {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}
    >>> tx = optax.chain(legw.scale_by_lamb(), optax.scale(-1e-3))
    >>> grads = {"w": jnp.full((2, 2), 0.5), "b": jnp.ones(2)}
    >>> updates, _ = tx.update(grads, tx.init(params), params)

  References:
    You, Li, Reddi, Hseu, Kumar, Bhojanapalli, Song, Demmel, Keutzer & Hsieh, "Large
    Batch Optimization for Deep Learning: Training BERT in 76 minutes", ICLR 2020,
    arXiv:1904.00962, Algorithm 2.
  """
  _check_adam_args(b1, b2, eps, eps_root)
  _validation.check_state_dtype("mu_dtype", mu_dtype)
  return _sgd.pass_untrainable(
    _in_stat_dtype(
      _lamb_direction(
        b1,
        b2,
        eps,
        eps_root,
        weight_decay,
        trust_ratio_mask,
        weight_decay_mask,
        axis_name,
        layer_axis,
        mu_dtype,
        keep_stats,
      )
    )
  )


def lamb(
  learning_rate: optax.ScalarOrSchedule,
  *,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-6,
  eps_root: float = 0.0,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  trust_ratio_mask: MaskOrFn = None,
  weight_decay_mask: MaskOrFn = None,
  axis_name: AxisName = None,
  layer_axis: LayerAxis = None,
  mu_dtype: DTypeLike | None = None,
  keep_stats: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""LAMB: Adam with a layer-wise trust ratio.

  Per leaf ``l``, with :math:`\beta` = ``weight_decay`` and the bias-corrected Adam direction
  :math:`r_l = \hat m_l / (\sqrt{\hat v_l} + \epsilon)`:

  .. math::

     w_l \leftarrow w_l - \gamma_t\,\frac{\|w_l\|}{\|r_l + \beta w_l\|}\,(r_l + \beta w_l)

  This is ``optax.chain(scale_by_lamb(...), optax.scale_by_learning_rate(lr))``: a layer on
  the trust ratio moves by :math:`\gamma_t \|w_l\|`. Unlike ``optax.lamb``: biases and
  normalisation parameters (``ndim <= 1``) get plain Adam and no decay by default
  (``trust_ratio_mask=True, weight_decay_mask=True`` gives ``optax.lamb``), float32 moments
  and norms for low-precision parameters, and keyword-only arguments after
  ``learning_rate``. For a larger batch use :func:`legw.legw_schedule` (:doc:`/guides/lamb`).

  Args:
    learning_rate: :math:`\gamma_t \ge 0`, a float or an ``optax.Schedule`` of the step count.
    b1, b2, eps, eps_root, weight_decay: as in :func:`legw.scale_by_lamb`.
    trust_ratio_mask, weight_decay_mask, axis_name, layer_axis: as in ``scale_by_lamb``.
    mu_dtype, keep_stats: as in :func:`legw.scale_by_lamb`.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` requires ``params``.

  Raises:
    ValueError, TypeError: as :func:`legw.scale_by_lamb`, and for a learning rate that is
      negative or not a schedule (e.g. a :class:`legw.Recipe`).

  Example:
    >>> import jax.numpy as jnp, optax, legw
    >>> schedule = legw.legw_schedule(
    ...     base_learning_rate=1e-3, base_batch_size=256, batch_size=1024,
    ...     base_warmup_epochs=1, num_epochs=10, steps_per_epoch=100)
    >>> opt = legw.lamb(schedule, weight_decay=0.01, mu_dtype=jnp.bfloat16)
    >>> params = {"w": jnp.ones((3, 3)), "b": jnp.zeros(3)}
    >>> grads = {"w": jnp.full((3, 3), 0.5), "b": jnp.ones(3)}
    >>> updates, state = opt.update(grads, opt.init(params), params)
    >>> state[0][0].mu["w"].dtype, state[0][0].nu["w"].dtype
    (dtype(bfloat16), dtype('float32'))

  References:
    You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76
    minutes", ICLR 2020, arXiv:1904.00962, Algorithm 2 and §4.
  """
  _validation.check_learning_rate(learning_rate)
  _check_adam_args(b1, b2, eps, eps_root)
  _validation.check_state_dtype("mu_dtype", mu_dtype)
  return _sgd.pass_untrainable(
    _in_stat_dtype(
      optax.chain(
        _lamb_direction(
          b1,
          b2,
          eps,
          eps_root,
          weight_decay,
          trust_ratio_mask,
          weight_decay_mask,
          axis_name,
          layer_axis,
          mu_dtype,
          keep_stats,
        ),
        optax.scale_by_learning_rate(learning_rate),
      )
    )
  )
