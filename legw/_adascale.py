r"""AdaScale SGD: a learning-rate gain and a progress clock from the noise scale.

Johnson, Agrawal, Gu & Guestrin, "AdaScale SGD: A User-Friendly Algorithm for Distributed
Training", ICML 2020, arXiv:2007.05105, Algorithm 1.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import DTypeLike

from legw import _noise_scale, _validation
from legw._lars import scale_by_lars
from legw._masks import (
  LayerAxis,
  MaskOrFn,
  exclude_bias_and_norm,
  per_layer_shapes,
  resolve_layer_axis,
)
from legw._reduce import AxisName
from legw._sgd import check_optimizer_args
from legw._sgd import momentum as momentum_trace


class ScaleByAdaScaleState(NamedTuple):
  """State of :func:`legw.scale_by_adascale`.

  Attributes:
    noise: the noise-scale estimates (:class:`legw.GradientNoiseScaleState`).
    gain: :math:`r_t`, the gain of the last step, in [1, S].
    progress: :math:`\\tau`, base-run steps done so far (float).
    inner_state: the state of ``inner``.
    skipped_steps: steps skipped for a non-finite gradient (int32).

  Example:
    >>> import jax.numpy as jnp, optax, legw
    >>> state = legw.adascale(0.1, base_batch_size=32, batch_size=256).init({"w": jnp.zeros(2)})
    >>> float(optax.tree.get(state, "progress")), float(optax.tree.get(state, "gain"))
    (0.0, 1.0)
  """

  noise: _noise_scale.GradientNoiseScaleState
  gain: jax.Array
  progress: jax.Array
  inner_state: Any
  skipped_steps: jax.Array


def adascale_gain(grad_sq, trace_cov, base_batch_size, scale):
  """:math:`r = (\\sigma^2 + \\mu^2)/(\\sigma^2/S + \\mu^2)`, :math:`\\sigma^2 = \\mathrm{tr}
  (\\Sigma)/B_0` (the variance of a base-batch gradient), in [1, S]; 1 when both are 0."""
  var = trace_cov / base_batch_size
  num, den = var + grad_sq, var / scale + grad_sq
  gain = jnp.where(den > 0, num / jnp.where(den > 0, den, 1), 1)
  return jnp.clip(gain, 1, scale).astype(grad_sq.dtype)


def _check_not_adaptive(inner_state) -> None:
  try:
    found = optax.tree.get(inner_state, "nu", default=None) is not None
  except (KeyError, ValueError):  # several Adam states
    found = True
  if found:
    raise ValueError(
      "scale_by_adascale: the inner transform keeps a second moment (nu: Adam, LAMB, "
      "...). AdaScale's gain is derived for SGD, whose step grows linearly with the "
      "learning rate; an Adam step divides by the gradient's own scale. The square-root "
      "gain on preconditioned gradients (adaptdl's AdamScale) is not offered: it is less "
      "validated. Use momentum SGD or legw.scale_by_lars as the inner transform."
    )


def scale_by_adascale(
  base_batch_size: int,
  batch_size: int,
  *,
  learning_rate: optax.ScalarOrSchedule,
  inner: optax.GradientTransformation | None = None,
  decay: float | None = None,
  axis_name: AxisName = None,
) -> optax.GradientTransformationExtraArgs:
  r"""AdaScale's gain and progress on K gradient samples (no sign flip, no momentum).

  From K samples (as :func:`legw.gradient_noise_scale` takes them), with :math:`S = B/B_0`
  and the smoothed :math:`\sigma^2 = \mathrm{tr}(\Sigma)/B_0`, :math:`\mu^2 = |G|^2`:

  .. math::

     r_t = \frac{\sigma^2 + \mu^2}{\sigma^2/S + \mu^2} \in [1, S],\qquad
     u_t = \eta(\tau_t)\, r_t\, \mathrm{inner}(g_B),\qquad \tau_{t+1} = \tau_t + r_t,

  :math:`\eta` the *base run's* schedule of its step count: the run is done when
  ``optax.tree.get(state, "progress")`` reaches the base run's steps. Departure from
  Algorithm 1, which folds step t's estimates into the averages before taking :math:`r_t`:
  here :math:`r_t` is of the averages through step t - 1 (step 0: 1), so the update waits
  for no extra pass over the mean gradient (with the decay near 1 the gains differ little).
  A step with a non-finite sample on any device is skipped on all (zero updates, the state
  kept, counted in ``skipped_steps``).

  Args:
    base_batch_size: :math:`B_0`, the batch (examples) the recipe was tuned at.
    batch_size: B, examples per step over all K samples; ``B >= B_0``.
    learning_rate: the base run's learning rate, a number or an ``optax.Schedule`` of base
      steps (e.g. ``recipe.schedule(base_batch_size, dataset_size=...)``).
    inner: a transform of the mean gradient before the gain (e.g. :func:`legw.scale_by_lars`).
    decay, axis_name: as in :func:`legw.gradient_noise_scale`.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with :class:`legw.ScaleByAdaScaleState`.

  Raises:
    ValueError: for ``B < B_0``, a negative learning rate, an Adam-like ``inner`` (at init:
      AdaScale is derived for SGD), and as :func:`legw.gradient_noise_scale`.

  Example:
    >>> import jax, jax.numpy as jnp, optax, legw
    >>> opt, params = legw.scale_by_adascale(16, 64, learning_rate=0.1), {"w": jnp.zeros(3)}
    >>> samples = {"w": jax.random.normal(jax.random.key(0), (4, 3)) + 1.0}
    >>> u, state = opt.update(samples, opt.init(params), params)
    >>> 1.0 <= float(optax.tree.get(state, "gain")) <= 4.0
    True

  References:
    Johnson, Agrawal, Gu & Guestrin, "AdaScale SGD: A User-Friendly Algorithm for Distributed
    Training", ICML 2020, arXiv:2007.05105, Algorithm 1.
  """
  return _scale_by_adascale(base_batch_size, batch_size, learning_rate, inner, decay, axis_name)


STEP_ARG = "adascale_step"  # the extra argument that carries lr(tau) * r to `_scale_by_step`


def _scale_by_step() -> optax.GradientTransformationExtraArgs:
  """Multiplies the updates by the ``adascale_step`` extra argument (inside ``inner``)."""

  def update_fn(updates, state, params=None, **extra_args):
    step = extra_args[STEP_ARG]
    return jax.tree.map(lambda u: (u * step).astype(u.dtype), updates), state

  return optax.GradientTransformationExtraArgs(optax.init_empty_state, update_fn)


def _scale_by_adascale(base, batch_size, learning_rate, inner, decay, axis_name, step_inside=False):
  """:func:`scale_by_adascale`; with ``step_inside``, ``inner`` applies lr(tau) * r itself
  (:func:`_scale_by_step`: LARS keeps its learning rate inside momentum)."""
  base = _noise_scale.check_count("base_batch_size", base)
  batch_size = _noise_scale.check_args(batch_size, decay)
  _validation.check_learning_rate(learning_rate)
  concrete = not isinstance(base, jax.Array) and not isinstance(batch_size, jax.Array)
  if concrete and batch_size < base:
    raise ValueError(
      f"batch_size ({batch_size}) must be >= base_batch_size ({base}): AdaScale's "
      f"scale S = batch_size / base_batch_size must be >= 1."
    )
  inner = optax.with_extra_args_support(inner or optax.identity())

  def init_fn(params):
    _noise_scale.check_floating(params, "parameters", "scale_by_adascale")
    noise = _noise_scale.init_state(params)
    inner_state = inner.init(params)
    _check_not_adaptive(inner_state)
    one, zero = jnp.ones((), noise.grad_sq.dtype), jnp.zeros((), noise.grad_sq.dtype)
    return ScaleByAdaScaleState(noise, one, zero, inner_state, jnp.zeros((), jnp.int32))

  def update_fn(updates, state, params=None, **extra_args):
    dtype = state.progress.dtype
    mean, big_sq, small_sq, k = _noise_scale.sample_sums(
      updates, params, batch_size=batch_size, axis_name=axis_name,
      name="scale_by_adascale", dtype=dtype,
    )  # fmt: skip
    # The gain of step t is of the estimates through step t - 1 (see the docstring):
    # the update then waits for no reduction over the mean gradient.
    scale = jnp.asarray(batch_size, dtype) / jnp.asarray(base, dtype)
    prev = state.noise
    gain = adascale_gain(prev.grad_sq, prev.trace_cov, jnp.asarray(base, dtype), scale)
    noise = _noise_scale.update_state(prev, big_sq, small_sq, batch_size, k, decay)
    lr = learning_rate(state.progress) if callable(learning_rate) else learning_rate
    step = jnp.asarray(lr, dtype) * gain
    if step_inside:
      extra_args = {**extra_args, STEP_ARG: step}

    direction, inner_state = inner.update(mean, state.inner_state, params, **extra_args)
    if not step_inside:
      direction = jax.tree.map(lambda u: (u * step).astype(u.dtype), direction)
    # A non-finite step is skipped: zero updates, the state kept. Decided from the
    # mean of the samples' squared norms (all samples, all devices: every device
    # agrees; finite iff every sample is, and then |g_B|^2 is too). Selects, not
    # lax.cond, so that XLA fuses them into the update.
    finite = jnp.isfinite(small_sq)
    keep = lambda new, old: jnp.where(finite, new, old)
    out = jax.tree.map(lambda u: jnp.where(finite, u, jnp.zeros_like(u)), direction)
    return out, ScaleByAdaScaleState(
      noise,
      keep(gain, state.gain),
      keep(state.progress + gain, state.progress),
      jax.tree.map(keep, inner_state, state.inner_state),
      state.skipped_steps + (~finite).astype(jnp.int32),
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def adascale(
  learning_rate: optax.ScalarOrSchedule,
  *,
  base_batch_size: int,
  batch_size: int,
  momentum: float = 0.9,
  nesterov: bool = False,
  weight_decay: float = 0.0,
  trust_coefficient: float | None = None,
  weight_decay_mask: MaskOrFn = None,
  trust_ratio_mask: MaskOrFn = None,
  decay: float | None = None,
  axis_name: AxisName = None,
  accumulator_dtype: DTypeLike | None = None,
  layer_axis: LayerAxis = None,
) -> optax.GradientTransformationExtraArgs:
  r"""AdaScale SGD (momentum SGD, or LARS with ``trust_coefficient``) from a base recipe.

  With the gain :math:`r_t` and progress :math:`\tau_t` of :func:`legw.scale_by_adascale`,
  momentum SGD (``trust_coefficient=None``) is :math:`v \leftarrow m v + g_B + \beta w`,
  :math:`w \leftarrow w - \eta(\tau_t)\, r_t\, v` (``optax.sgd``'s form, as fairscale's
  ``AdaScale`` over PyTorch's SGD), and LARS is
  :math:`v \leftarrow m v + \eta(\tau_t)\, r_t\, \lambda_l (g_B + \beta w)`,
  :math:`w \leftarrow w - v` (:func:`legw.lars`'s form). At ``batch_size == base_batch_size``
  the gain is 1. Stop when ``optax.tree.get(state, "progress")`` reaches the base run's steps.

  Args:
    learning_rate: the base run's learning rate or ``optax.Schedule`` of base steps.
    base_batch_size: :math:`B_0` (examples) the recipe was tuned at.
    batch_size: B (examples per step, over all K gradient samples), ``>= B_0``.
    momentum, nesterov: the momentum :math:`m \in [0, 1)`, and whether it is Nesterov's.
    weight_decay: :math:`\beta \ge 0` (L2, on the leaves of ``weight_decay_mask``).
    trust_coefficient: None (momentum SGD), or LARS's :math:`\eta > 0`.
    weight_decay_mask, trust_ratio_mask, layer_axis: as in :func:`legw.lars` (default mask:
      :func:`legw.exclude_bias_and_norm` of one layer's shape).
    decay, axis_name: as in :func:`legw.gradient_noise_scale`.
    accumulator_dtype: dtype of the stored momentum, as in :func:`legw.lars`.

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  Raises:
    ValueError, TypeError: as :func:`legw.scale_by_adascale` and :func:`legw.lars`.

  Example:
    >>> import jax, jax.numpy as jnp, optax, legw
    >>> opt = legw.adascale(0.1, base_batch_size=32, batch_size=256)
    >>> params = {"w": jnp.ones(3)}
    >>> state, base_steps = opt.init(params), 50
    >>> loss = lambda p, x: jnp.mean((x - p["w"]) ** 2)
    >>> data = jax.random.normal(jax.random.key(0), (8, 32, 3))  # K = 8 samples of 32
    >>> while optax.tree.get(state, "progress") < base_steps:
    ...   grads = jax.vmap(jax.grad(loss), in_axes=(None, 0))(params, data)
    ...   updates, state = opt.update(grads, state, params)
    ...   params = optax.apply_updates(params, updates)

  References:
    Johnson, Agrawal, Gu & Guestrin, "AdaScale SGD", ICML 2020, arXiv:2007.05105,
    Algorithm 1.
  """
  check_optimizer_args(learning_rate, momentum)
  _validation.check_range("weight_decay", weight_decay, low=0.0)
  _validation.check_state_dtype("accumulator_dtype", accumulator_dtype)
  trace = momentum_trace(momentum, nesterov, accumulator_dtype)
  if trust_coefficient is None:
    mask = weight_decay_mask
    if mask is None:  # one layer's shape decides, as in legw.lars (stacked norm scales: no decay)
      mask = lambda p: exclude_bias_and_norm(per_layer_shapes(p, resolve_layer_axis(layer_axis, p)))
    no_decay = _validation.is_concrete_number(weight_decay) and weight_decay == 0
    inner = trace if no_decay else optax.chain(optax.add_decayed_weights(weight_decay, mask), trace)
    return optax.chain(
      _scale_by_adascale(base_batch_size, batch_size, learning_rate, inner, decay, axis_name),
      optax.scale(-1.0),
    )
  lars = scale_by_lars(
    trust_coefficient,
    weight_decay=weight_decay,
    weight_decay_mask=weight_decay_mask,
    trust_ratio_mask=trust_ratio_mask,
    layer_axis=layer_axis,
  )
  inner = optax.chain(lars, _scale_by_step(), trace)
  return optax.chain(
    _scale_by_adascale(base_batch_size, batch_size, learning_rate, inner, decay, axis_name, True),
    optax.scale(-1.0),
  )
