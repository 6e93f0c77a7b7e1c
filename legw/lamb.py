r"""LAMB: the layer-wise trust ratio on the Adam direction.

Source: You, Li, Reddi, Hseu, Kumar, Bhojanapalli, Song, Demmel, Keutzer &
Hsieh, "Large Batch Optimization for Deep Learning: Training BERT in 76
Minutes", ICLR 2020, Algorithm 2 (LAMB).

Per layer (leaf) ``l``, with Adam moments :math:`m, v` and bias correction,

.. math::

   r_l = \hat m_l / (\sqrt{\hat v_l} + \epsilon), \qquad
   w_l \leftarrow w_l - \gamma_t\,
     \frac{\phi(\|w_l\|)}{\|r_l + \beta w_l\|}\,(r_l + \beta w_l),

with :math:`\phi` the identity.  The trust ratio is that of LARS in its
"combined" form (``legw.scale_by_lars(trust_coefficient=1,
denominator="combined")``) applied to :math:`r_l` instead of :math:`g_l`: it
is the same layer-wise core (``legw/_layerwise.py``), so masks, zero
fallbacks, float32 norms, complex :math:`|x|^2` and ``axis_name`` are those of
every other member.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.typing import DTypeLike

from legw import _layerwise, _validation
from legw._reduce import AxisName, stat_dtype
from legw.lars import LARS_STATISTIC, ScaleByLarsState
from legw.masks import LayerAxis, MaskOrFn


def _check_adam_args(b1: Any, b2: Any, eps: Any, eps_root: Any) -> None:
  _validation.check_range("b1", b1, low=0.0, high=1.0, high_inclusive=False)
  _validation.check_range("b2", b2, low=0.0, high=1.0, high_inclusive=False)
  _validation.check_range("eps", eps, low=0.0)
  _validation.check_range("eps_root", eps_root, low=0.0)


def _promoted(x):
  x = jnp.asarray(x)
  return x.astype(stat_dtype(x.dtype))


def _in_stat_dtype(inner: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
  r"""``inner`` on gradients and state in float32 or wider; updates cast back.

  Adam's second moment of a float16 gradient underflows (:math:`(1-\beta_2)
  g^2` loses precision below :math:`|g| \approx 0.25` and is 0 below about
  0.008), which turns
  :math:`\hat m / (\sqrt{\hat v} + \epsilon)` into :math:`g/\epsilon`: the
  moments are kept in :func:`legw._reduce.stat_dtype` (float32 for
  float16/bfloat16/float32 leaves, float64 for float64), and only the final
  update is rounded to the gradient's dtype.  For float32 leaves this is
  ``inner`` itself.
  """
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    return inner.init(jax.tree.map(_promoted, params))

  def update_fn(updates, state, params=None, **extra_args):
    out, state = inner.update(jax.tree.map(_promoted, updates), state, params, **extra_args)
    return jax.tree.map(lambda u, g: u.astype(jnp.result_type(g)), out, updates), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _adam(b1, b2, eps, eps_root, mu_dtype) -> optax.GradientTransformation:
  """``optax.scale_by_adam``: itself for ``mu_dtype=None``.

  With a ``mu_dtype``, ``init`` first refuses complex leaves (see
  :func:`legw._layerwise.check_state_dtype_of_leaves`), and ``update``
  widens the stored :math:`m` to the update's dtype before the step
  (``optax.scale_by_adam`` alone would round ``b1 * m`` to a bfloat16
  :math:`m`'s dtype), so that only the stored :math:`m` is rounded.
  """
  adam = optax.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype)
  if mu_dtype is None:
    return adam

  def init_fn(params):
    _layerwise.check_state_dtype_of_leaves("mu_dtype", mu_dtype, params)
    return adam.init(params)

  def update_fn(updates, state, params=None):
    wide = jax.tree.map(
      lambda m, u: m.astype(jnp.promote_types(m.dtype, jnp.result_type(u))), state.mu, updates
    )
    return adam.update(updates, state._replace(mu=wide), params)

  return optax.GradientTransformation(init_fn, update_fn)


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
  """Adam's direction, then the LARS trust ratio (combined form, eta = 1, no eps).

  On floating leaves only (the caller wraps it in ``pass_untrainable``).
  """
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

  Per leaf ``l`` (one layer's kernel, bias, ...), at step :math:`t` (from 1):

  .. math::

     m_l &\leftarrow \beta_1 m_l + (1 - \beta_1)\,g_l, \qquad
     v_l \leftarrow \beta_2 v_l + (1 - \beta_2)\,|g_l|^2 \\
     r_l &= \frac{m_l / (1 - \beta_1^t)}
                 {\sqrt{v_l / (1 - \beta_2^t) + \epsilon_{root}} + \epsilon} \\
     u_l &= \frac{\|w_l\|}{\|r_l + \beta w_l\|}\,(r_l + \beta w_l)

  (LAMB, You et al. 2020, Algorithm 2, with :math:`\phi` the identity;
  :math:`\beta` = ``weight_decay``).  The first two lines are
  ``optax.scale_by_adam`` (same state, same rounding); the trust ratio is the
  layer-wise core shared with :func:`legw.scale_by_lars` (it is LARS's
  ``denominator="combined"`` ratio with ``trust_coefficient=1``, ``eps=0``,
  on :math:`r_l` instead of :math:`g_l`).  Follow it with the learning rate
  (:func:`legw.lamb` does).

  * Zero layers: the ratio is 1 where :math:`\|w_l\| = 0` (a zero layer still
    trains) or :math:`\|r_l + \beta w_l\| = 0`, as in ``optax.lamb``.
  * Leaves outside ``trust_ratio_mask`` get ratio 1 (plain Adam); leaves
    outside ``weight_decay_mask`` get :math:`\beta = 0`.  Both default to
    :func:`legw.exclude_bias_and_norm`: biases and normalisation parameters
    (``ndim <= 1``) get plain Adam and no decay.  ``optax.lamb`` applies the
    ratio to every leaf and decays every leaf unless masked: pass
    ``trust_ratio_mask=True, weight_decay_mask=True`` for its behaviour.
  * Norms *and the Adam moments* in float32 (float64 for float64 leaves)
    whatever the leaf dtype (the stored :math:`m` in ``mu_dtype`` if one is
    given); norms of :math:`|x|^2` for complex leaves.
    ``optax.scale_by_adam`` keeps :math:`v` in the parameter dtype, where
    :math:`(1-\beta_2) g^2` of a float16 gradient underflows below
    :math:`|g| \approx 0.008` and :math:`\hat m/(\sqrt{\hat v}+\epsilon)`
    becomes :math:`g/\epsilon` (thousands, where the float32 value is
    about 1).  The update comes back in the gradient dtype; for float32
    leaves the state is ``optax.scale_by_adam``'s.  Leaves that are not
    floating (integers, ``float0`` gradients) pass through unchanged.
  * ``weight_decay`` may be an ``optax.Schedule`` of the step count; the
    trust-ratio state then counts the steps (:class:`legw.ScaleByLarsState`).
  * ``axis_name``: under ``shard_map`` with every leaf sharded over that mesh
    axis, the norms are ``psum``-ed (one stacked all-reduce), as in
    :func:`legw.scale_by_lars`.
  * ``mu_dtype`` (``optax.scale_by_adam``'s argument): the stored first
    moment :math:`m` in that dtype, e.g. ``jnp.bfloat16`` (as big_vision
    keeps it).  Each step still computes :math:`m`, :math:`r_l` and the
    norms in float32 and rounds only what it stores; the update comes back
    in the gradient's dtype.  With :math:`\beta_1 = 0.9` a step moves
    :math:`m` by 10% of the way to :math:`g`, far above bfloat16's relative
    rounding (:math:`2^{-9}` to :math:`2^{-8}`).  There is deliberately no
    ``nu_dtype`` (nor has optax one): with :math:`\beta_2 = 0.999` a step
    moves :math:`v` by 0.1% of the way to :math:`g^2`, below that rounding,
    so a bfloat16 :math:`v` rounds back to its old value: it never decays
    (1,000 steps of :math:`g = 0` leave it at 1.0, where float32 gives
    0.368) and grows only when :math:`g^2` is several times :math:`v` —
    the denominator :math:`\sqrt{\hat v}` would freeze.  (float16 resolves
    0.1% but :math:`(1-\beta_2) g^2` underflows, above.)  :math:`v` stays
    float32.

  Args:
    b1: :math:`\beta_1 \in [0, 1)`, decay of the first moment.  The only
      positional argument (as in ``optax.scale_by_adam``).
    b2: :math:`\beta_2 \in [0, 1)`, decay of the second moment.
    eps: :math:`\epsilon \ge 0`, added to :math:`\sqrt{\hat v}` (dimensionless
      in gradient units).
    eps_root: :math:`\epsilon_{root} \ge 0`, added to :math:`\hat v` inside
      the square root (squared gradient units).
    weight_decay: :math:`\beta \ge 0`, decoupled decay added to the Adam
      direction before the trust ratio, or an ``optax.Schedule``.
    trust_ratio_mask: ``None`` (default: :func:`legw.exclude_bias_and_norm`),
      a bool, a pytree of bools (or a prefix of one), or a callable of params.
    weight_decay_mask: same forms; which leaves get weight decay.
    axis_name: mesh axis name(s) over which every parameter is sharded
      (``shard_map``), or None.
    layer_axis: the stacked-layer axis of each leaf (scanned layers), or
      None: one trust ratio per slice, and the default masks judge one
      layer's shape (see :func:`legw.scale_by_lars`).  The Adam moments are
      elementwise, so only the ratio depends on it.
    mu_dtype: the dtype of the stored first moment :math:`m` (e.g.
      ``jnp.bfloat16``); ``None`` (default): float32 (float64 for float64
      leaves), as above.  The second moment always stays float32 (see
      above).
    keep_stats: keep each layer's applied trust ratio
      :math:`\|w_l\|/\|r_l + \beta w_l\|`, :math:`\|w_l\|` and
      :math:`\|r_l + \beta w_l\|` in the state (a
      :class:`legw.LayerwiseStatsState` beside Adam's), for logging with
      :func:`legw.applied_layerwise_stats`; no extra pass.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose ``update(updates,
    state, params)`` requires ``params``.

  Raises:
    ValueError: at construction, for ``b1`` or ``b2`` outside [0, 1), or a
      negative ``eps``, ``eps_root`` or ``weight_decay`` (concrete numbers
      only); at ``init``, for a bad mask or ``layer_axis``, or a
      ``mu_dtype`` with a complex parameter; at update, when ``params`` is
      not given.
    TypeError: at construction, for a ``weight_decay`` that is neither a
      number nor a schedule, or a ``mu_dtype`` that is not a floating dtype
      (e.g. ``jnp.int32``, ``"int8"``, ``bool``), or a ``keep_stats`` that
      is not a bool; for a hyperparameter passed by position after ``b1``.
  """
  _check_adam_args(b1, b2, eps, eps_root)
  _validation.check_state_dtype("mu_dtype", mu_dtype)
  return _layerwise.pass_untrainable(
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
  r"""LAMB (You et al. 2020, Algorithm 2): Adam with a layer-wise trust ratio.

  Per leaf (layer) ``l``, with :math:`\gamma_t` = ``learning_rate`` at step t,
  :math:`r_l = \hat m_l / (\sqrt{\hat v_l} + \epsilon)` the bias-corrected
  Adam direction and :math:`\beta` = ``weight_decay``:

  .. math::

     w_l \leftarrow w_l - \gamma_t\,\frac{\|w_l\|}{\|r_l + \beta w_l\|}\,
       (r_l + \beta w_l)

  Implemented as ``optax.chain(scale_by_lamb(...),
  optax.scale_by_learning_rate(learning_rate))``; see
  :func:`scale_by_lamb` for the moments, the zero fallback, masks, dtypes and
  ``axis_name``.  The paper (§4, and its BERT recipe) scales the learning
  rate with the batch size by :math:`\sqrt{k}` with a warmup that grows with
  the batch: :func:`legw.legw_schedule` as ``learning_rate``.

  Differences from ``optax.lamb``: (1) biases and normalisation parameters
  (``ndim <= 1``) are by default excluded from the trust ratio and weight
  decay (plain Adam); with ``trust_ratio_mask=True, weight_decay_mask=True``
  it equals ``optax.lamb`` (same state, updates equal to float32 rounding);
  (2) norms and Adam moments are float32 even for float16/bfloat16
  parameters;
  (3) ``axis_name`` gives whole-layer norms under ``shard_map``; (4) every
  argument after ``learning_rate`` is keyword-only (``optax.lamb``'s second
  positional argument is ``b1``); (5) non-floating leaves pass through.

  Args:
    learning_rate: :math:`\gamma_t \ge 0`, a float or an ``optax.Schedule`` of
      the step count (e.g. :func:`legw.legw_schedule`).  The step of a layer
      on the trust ratio has norm :math:`\gamma_t \|w_l\|`: a relative rate.
    b1: :math:`\beta_1 \in [0, 1)`, first-moment decay.
    b2: :math:`\beta_2 \in [0, 1)`, second-moment decay.
    eps: :math:`\epsilon \ge 0`, added to :math:`\sqrt{\hat v}`.
    eps_root: :math:`\ge 0`, added to :math:`\hat v` inside the square root.
    weight_decay: :math:`\beta \ge 0`, or an ``optax.Schedule`` of the step
      count.
    trust_ratio_mask: which leaves get the trust ratio; default
      :func:`legw.exclude_bias_and_norm`.
    weight_decay_mask: which leaves get weight decay; same default.
    axis_name: mesh axis name(s) for whole-layer norms under ``shard_map``
      (not for ``jax.jit`` with sharded arrays, nor replicated params).
    layer_axis: the stacked-layer axis of each leaf (scanned layers), or
      None; see :func:`scale_by_lamb`.
    mu_dtype: the dtype of the stored first moment (e.g. ``jnp.bfloat16``,
      as ``optax.adamw``'s ``mu_dtype``); ``None`` (default): float32.
      Statistics and the update's arithmetic stay float32; the second
      moment always stays float32, why in :func:`scale_by_lamb`.
    keep_stats: keep each layer's applied trust ratio and the two norms it
      came from in the state (:class:`legw.LayerwiseStatsState`), for
      logging with :func:`legw.applied_layerwise_stats`; no extra pass.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` requires params.

  Raises:
    ValueError: for a negative learning rate, ``b1`` or ``b2`` outside
      [0, 1), or a negative ``eps``, ``eps_root`` or weight decay (concrete
      numbers only, so ``optax.inject_hyperparams`` works); at ``init``, for
      a bad mask or ``layer_axis``, or a ``mu_dtype`` with a complex
      parameter; at update time when params are missing.
    TypeError: for a learning rate or weight decay that is neither a number
      nor a schedule (e.g. a :class:`legw.Recipe`), a ``mu_dtype`` that is
      not a floating dtype, a ``keep_stats`` that is not a bool, or a
      hyperparameter passed by position after ``learning_rate``.

  Example:
    >>> import jax.numpy as jnp, optax, legw
    >>> schedule = legw.legw_schedule(
    ...     base_learning_rate=1e-3, base_batch_size=256, batch_size=1024,
    ...     base_warmup_epochs=1, num_epochs=10, steps_per_epoch=100)
    >>> opt = legw.lamb(schedule, weight_decay=0.01)
    >>> params = {"w": jnp.ones((3, 3)), "b": jnp.zeros(3)}
    >>> state = opt.init(params)
    >>> grads = {"w": jnp.full((3, 3), 0.5), "b": jnp.ones(3)}
    >>> updates, state = opt.update(grads, state, params)
    >>> params = optax.apply_updates(params, updates)

    The first moment in bfloat16 (the second stays float32):

    >>> opt = legw.lamb(1e-3, mu_dtype=jnp.bfloat16)
    >>> adam_state = opt.init(params)[0][0]
    >>> adam_state.mu["w"].dtype, adam_state.nu["w"].dtype
    (dtype(bfloat16), dtype('float32'))
  """
  _validation.check_learning_rate(learning_rate)
  _check_adam_args(b1, b2, eps, eps_root)
  _validation.check_state_dtype("mu_dtype", mu_dtype)
  return _layerwise.pass_untrainable(
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
