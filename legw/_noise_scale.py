r"""The gradient noise scale: how far the data let the batch grow.

McCandlish, Kaplan, Amodei et al., "An Empirical Model of Large-Batch Training", 2018,
arXiv:1812.06162, §2 and Appendix A.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from legw import _validation
from legw._masks import leaf_path
from legw._reduce import AxisName, abs_sq, real_dtype, stat_dtype
from legw._scaling import as_count


class GradientNoiseScaleState(NamedTuple):
  """State of :func:`legw.gradient_noise_scale` (scalars, float32 or wider).

  Attributes:
    count: steps whose estimates were finite and entered the averages (int32).
    grad_sq_avg: moving average of the :math:`|G|^2` estimates (not debiased).
    trace_cov_avg: moving average of the :math:`\\mathrm{tr}(\\Sigma)` estimates.
    grad_sq: debiased average of :math:`|G|^2`, clamped at 0.
    trace_cov: debiased average of :math:`\\mathrm{tr}(\\Sigma)` (per example), clamped at 0.
    noise_scale: :math:`B_\\text{simple}` = ``trace_cov / grad_sq`` (examples);
      ``inf`` while ``grad_sq`` is 0 and ``trace_cov`` is not, 0 before any step.

  Example:
    >>> import jax.numpy as jnp, optax, legw
    >>> state = legw.gradient_noise_scale(batch_size=8).init({"w": jnp.zeros(2)})
    >>> float(optax.tree.get(state, "noise_scale"))
    0.0
  """

  count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
  grad_sq_avg: jax.Array
  trace_cov_avg: jax.Array
  grad_sq: jax.Array
  trace_cov: jax.Array
  noise_scale: jax.Array


def check_floating(tree: Any, what: str, name: str) -> None:
  """TypeError naming the first leaf of ``tree`` that is not floating."""
  for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if not jnp.issubdtype(jnp.result_type(x), jnp.inexact):
      raise TypeError(
        f"{name} needs floating {what}; the leaf {leaf_path(path)} is "
        f"{jnp.result_type(x)}. Keep integer values out of the tree the optimizer sees."
      )


def init_state(params: Any) -> GradientNoiseScaleState:
  """The empty state, in float32 (float64 when a parameter is float64)."""
  leaves = jax.tree.leaves(params)
  dtype = real_dtype(jnp.result_type(*leaves)) if leaves else jnp.float32
  zero = jnp.zeros((), dtype)
  return GradientNoiseScaleState(jnp.zeros((), jnp.int32), zero, zero, zero, zero, zero)


def _varying_axes(x) -> frozenset | None:
  """The manual mesh axes ``x`` varies over inside ``shard_map``, or None if unknown."""
  aval = jax.typeof(x)
  mat = getattr(aval, "manual_axis_type", None)
  varying = getattr(mat, "varying", None) if mat is not None else getattr(aval, "vma", None)
  return frozenset(varying) if varying is not None else None


def _check_local(updates, params, names: tuple, name: str) -> None:
  """Under ``shard_map``: the updates must vary over the axis (each device's own gradient),
  the parameters must not (not FSDP-sharded over it)."""
  tracked = _varying_axes(jax.lax.axis_index(names))
  if not tracked or not set(names) <= tracked:  # pmap, or shard_map(check_vma=False)
    return
  u_axes = [_varying_axes(u) for u in jax.tree.leaves(updates)]
  p_axes = [] if params is None else [_varying_axes(p) for p in jax.tree.leaves(params)]
  if any(a is not None and not set(names) <= a for a in u_axes):
    raise ValueError(
      f"{name}(axis_name={names}) got updates that are the same on every device of the "
      f"axis (already averaged, e.g. by lax.pmean): pass each device's own gradient; "
      f"{name} averages them and returns the mean."
    )
  if any(a is not None and set(names) & a for a in p_axes):
    raise ValueError(
      f"{name}(axis_name={names}): the parameters are sharded over that axis (FSDP), "
      f"so no device holds a whole gradient of its own examples and the statistic would "
      f"be wrong. Use jax.jit with NamedSharding instead: stack the per-replica "
      f"gradients on a leading axis and pass axis_name=None (the norms are then of the "
      f"whole arrays, whatever the parameters' sharding)."
    )


def sample_sums(updates, params, *, batch_size, axis_name: AxisName, name: str, dtype):
  """The mean of the K gradient samples (like the parameters, in the updates' dtypes),
  :math:`|g_B|^2` and :math:`\\overline{|g_b|^2}` (in ``dtype``), and K (a Python int)."""
  leaves, treedef = jax.tree.flatten(updates)
  check_floating(updates, "gradients", name)
  if axis_name is None:
    shapes = {x.shape[0] if x.ndim else None for x in leaves}
    if None in shapes or len(shapes) != 1:
      raise ValueError(
        f"{name} (axis_name=None) needs the gradient samples stacked on a leading axis "
        f"of one size K on every leaf (jax.vmap(jax.grad(loss), in_axes=(None, 0)) over "
        f"the batch reshaped to (K, batch_size // K, ...)); got leading sizes "
        f"{sorted(x.shape[0] if x.ndim else '()' for x in leaves)}."
      )
    k = int(leaves[0].shape[0])
    if params is not None:
      for (path, p), x in zip(jax.tree_util.tree_flatten_with_path(params)[0], leaves):
        if x.shape != (k, *jnp.shape(p)):
          raise ValueError(
            f"{name}: the update of {leaf_path(path)} has shape {x.shape}, not (K, "
            f"*param.shape) = ({k}, *{jnp.shape(p)}): stack the K gradient samples on "
            f"a new leading axis."
          )
  else:
    k = int(jax.lax.psum(1, axis_name))
    names = axis_name if isinstance(axis_name, tuple) else (axis_name,)
    _check_local(updates, params, names, name)
  if k < 2:
    raise ValueError(
      f"{name} needs K >= 2 gradient samples per step (no variance can be estimated "
      f"from one); got K = {k}."
    )
  if not isinstance(batch_size, jax.Array) and batch_size % k:
    raise ValueError(
      f"batch_size ({batch_size}) must be a multiple of the number of gradient samples "
      f"K = {k}: each sample is the gradient of batch_size / K examples."
    )

  def as_stat(x):
    return x.astype(stat_dtype(x.dtype))

  if axis_name is None:
    small = sum(jnp.sum(abs_sq(as_stat(x)).reshape(k, -1), axis=1) for x in leaves)
    small_sq = jnp.mean(small)
    means = [jnp.mean(as_stat(x), axis=0) for x in leaves]
  else:
    small_sq = jax.lax.pmean(sum(jnp.sum(abs_sq(as_stat(x))) for x in leaves), axis_name)
    means = [jax.lax.pmean(x, axis_name) for x in leaves]
  big_sq = sum(jnp.sum(abs_sq(as_stat(m))) for m in means)
  mean = jax.tree.unflatten(treedef, [m.astype(x.dtype) for m, x in zip(means, leaves)])
  return mean, jnp.asarray(big_sq, dtype), jnp.asarray(small_sq, dtype), k


def default_decay(k: int) -> float:
  """fairscale's AdaScale default, ``max(1 - K/1000, 0)``: about 1000 samples averaged."""
  return max(1.0 - k / 1000.0, 0.0)


def update_state(state: GradientNoiseScaleState, big_sq, small_sq, batch_size, k, decay):
  """The step's unbiased estimates (App. A) into the debiased moving averages."""
  dtype = state.grad_sq_avg.dtype
  big_b = jnp.asarray(batch_size, dtype)
  small_b = big_b / k
  grad_sq = (big_b * big_sq - small_b * small_sq) / (big_b - small_b)
  trace_cov = (small_sq - big_sq) / (1 / small_b - 1 / big_b)
  finite = jnp.isfinite(grad_sq) & jnp.isfinite(trace_cov)  # a NaN step is skipped
  d = jnp.asarray(default_decay(k) if decay is None else decay, dtype)
  count = state.count + finite.astype(jnp.int32)
  g_avg = jnp.where(finite, d * state.grad_sq_avg + (1 - d) * grad_sq, state.grad_sq_avg)
  t_avg = jnp.where(finite, d * state.trace_cov_avg + (1 - d) * trace_cov, state.trace_cov_avg)
  debias = 1 - d ** count.astype(dtype)
  safe = jnp.where(count > 0, debias, 1)
  g = jnp.where(count > 0, jnp.maximum(g_avg / safe, 0), 0)
  t = jnp.where(count > 0, jnp.maximum(t_avg / safe, 0), 0)
  ratio = jnp.where(g > 0, t / jnp.where(g > 0, g, 1), jnp.where(t > 0, jnp.inf, 0))
  return GradientNoiseScaleState(count, g_avg, t_avg, g, t, ratio.astype(dtype))


def check_count(name: str, value):
  """A positive integer count, checked when concrete (``optax.inject_hyperparams``'s
  arrays pass unchecked)."""
  if isinstance(value, jax.Array) and not isinstance(value, jax.core.Tracer):
    value = value.item() if value.ndim == 0 else value
  if isinstance(value, jax.Array):
    return value
  return as_count(name, value)


def check_args(batch_size, decay):
  batch_size = check_count("batch_size", batch_size)
  if decay is not None:
    _validation.check_range("decay", decay, low=0.0, high=1.0, high_inclusive=False)
  return batch_size


def gradient_noise_scale(
  batch_size: int, *, decay: float | None = None, axis_name: AxisName = None
) -> optax.GradientTransformationExtraArgs:
  r"""Measures the gradient noise scale and passes the mean gradient on.

  From K gradient samples of one step, each of :math:`b = B/K` examples (McCandlish et al.
  2018, App. A):

  .. math::

     |G|^2 \approx \frac{B|g_B|^2 - b\,\overline{|g_b|^2}}{B - b},\quad
     \mathrm{tr}(\Sigma) \approx \frac{\overline{|g_b|^2} - |g_B|^2}{1/b - 1/B},\quad
     B_\text{simple} = \frac{\mathrm{tr}(\Sigma)}{|G|^2},

  each estimate smoothed by a debiased moving average (the ratio of the averages, not the
  average of ratios) and clamped at 0 when read. A step whose estimates are not finite is
  left out of the averages (chain ``optax.apply_if_finite`` *after* this transform). Read
  the state (:class:`legw.GradientNoiseScaleState`) with ``optax.tree.get(state, "noise_scale")``.

  Args:
    batch_size: B, the examples in one step, over all K samples.
    decay: the moving averages' decay in [0, 1); ``None``: ``max(1 - K/1000, 0)``
      (fairscale's ``AdaScale`` default).
    axis_name: ``None``: each update leaf is ``(K, *param.shape)`` (``jax.vmap`` of ``jax.grad``
      over the batch as ``(K, B // K, ...)``); a mesh axis name: under ``shard_map``/``pmap``,
      each device's own, not yet averaged gradient (K = the axis size). :doc:`/guides/batch_size`.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` returns the mean gradient.

  Raises:
    ValueError: for ``batch_size`` or ``decay`` out of range; at update, for K < 2, leading axes
      that differ, B not a multiple of K, or (``shard_map``) averaged updates or FSDP.
    TypeError: for integer parameters or gradients.

  Example:
    >>> import jax, jax.numpy as jnp, optax, legw
    >>> opt = legw.gradient_noise_scale(batch_size=64)
    >>> params = {"w": jnp.zeros(3)}
    >>> samples = {"w": jax.random.normal(jax.random.key(0), (8, 3)) + 1.0}  # K = 8
    >>> mean, state = opt.update(samples, opt.init(params), params)
    >>> mean["w"].shape, float(optax.tree.get(state, "noise_scale")) > 0
    ((3,), True)

  References:
    McCandlish, Kaplan, Amodei et al., "An Empirical Model of Large-Batch
    Training", 2018, arXiv:1812.06162, §2 and Appendix A.
  """
  batch_size = check_args(batch_size, decay)

  def init_fn(params):
    check_floating(params, "parameters", "gradient_noise_scale")
    return init_state(params)

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    mean, big_sq, small_sq, k = sample_sums(
      updates,
      params,
      batch_size=batch_size,
      axis_name=axis_name,
      name="gradient_noise_scale",
      dtype=state.grad_sq_avg.dtype,
    )
    return mean, update_state(state, big_sq, small_sq, batch_size, k, decay)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
