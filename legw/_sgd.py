"""A member's optimizer: its transform, then the learning rate inside momentum SGD.

``optax.chain(transform, scale_by_learning_rate(lr), trace(...))``, as LARS Algorithm 1.
"""

from __future__ import annotations

import jax
import optax

from legw import _validation
from legw._reduce import is_trainable
from legw._state_dtype import with_state_dtype


def _split(tree, trainable):
  """``tree`` with its non-trainable leaves replaced by ``optax.MaskedNode``."""
  leaves, treedef = jax.tree.flatten(tree)
  return jax.tree.unflatten(
    treedef, [x if t else optax.MaskedNode() for x, t in zip(leaves, trainable)]
  )


def pass_untrainable(inner: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
  """``inner`` on the floating leaves (the others seen as ``optax.MaskedNode``; an ``obj_fn``
  is called on the full tree); other leaves pass through; ``inner`` itself if all are float."""
  inner = optax.with_extra_args_support(inner)

  def mask_of(params):
    return [is_trainable(x) for x in jax.tree.leaves(params)]

  def init_fn(params):
    trainable = mask_of(params)
    return inner.init(params if all(trainable) else _split(params, trainable))

  def update_fn(updates, state, params=None, **extra_args):
    u_leaves, treedef = jax.tree.flatten(updates)
    trainable = [is_trainable(u) for u in u_leaves]
    if params is not None:
      p_leaves = treedef.flatten_up_to(params)  # type: ignore[attr-defined]  # missing from jax's stubs
      trainable = [t and is_trainable(p) for t, p in zip(trainable, p_leaves)]
    if all(trainable):
      return inner.update(updates, state, params, **extra_args)
    obj_fn = extra_args.get("obj_fn")
    if obj_fn is not None and params is not None:
      full = treedef.flatten_up_to(params)  # type: ignore[attr-defined]  # missing from jax's stubs

      def sub_obj_fn(sub):
        sub = treedef.flatten_up_to(sub)  # type: ignore[attr-defined]  # missing from jax's stubs
        return obj_fn(
          jax.tree.unflatten(treedef, [s if t else f for s, f, t in zip(sub, full, trainable)])
        )

      extra_args = {**extra_args, "obj_fn": sub_obj_fn}
    sub_params = None if params is None else _split(params, trainable)
    sub_updates, state = inner.update(_split(updates, trainable), state, sub_params, **extra_args)
    sub_leaves = treedef.flatten_up_to(sub_updates)  # type: ignore[attr-defined]  # missing from jax's stubs
    return jax.tree.unflatten(
      treedef, [s if t else u for s, u, t in zip(sub_leaves, u_leaves, trainable)]
    ), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def momentum(decay, nesterov, accumulator_dtype=None) -> optax.GradientTransformation:
  """``optax.trace(decay, nesterov, accumulator_dtype)``, computing in the wider of
  the state and update dtypes (:func:`legw._state_dtype.with_state_dtype`)."""
  trace = optax.trace(decay=decay, nesterov=nesterov, accumulator_dtype=accumulator_dtype)
  return with_state_dtype(trace, "accumulator_dtype", accumulator_dtype, "trace")


def sgd_chain(
  scaler, learning_rate, momentum_decay, nesterov, accumulator_dtype=None
) -> optax.GradientTransformationExtraArgs:
  """``scaler``, then the learning rate inside the momentum (LARS Algorithm 1), with
  non-float leaves passed through."""
  return pass_untrainable(
    optax.chain(
      scaler,
      optax.scale_by_learning_rate(learning_rate),
      momentum(momentum_decay, nesterov, accumulator_dtype),
    )
  )


def check_optimizer_args(learning_rate, momentum):
  _validation.check_learning_rate(learning_rate)
  _validation.check_range("momentum", momentum, low=0.0, high=1.0, high_inclusive=False)


def sgd_optimizer(
  transform, learning_rate, momentum_decay, nesterov, /, *, accumulator_dtype=None, **kwargs
) -> optax.GradientTransformationExtraArgs:
  """A member's optimizer: checks, then ``sgd_chain(transform(**kwargs), ...)``; ``kwargs``
  may hold a ``learning_rate`` of the transform's own (LARC clip)."""
  check_optimizer_args(learning_rate, momentum_decay)
  _validation.check_state_dtype("accumulator_dtype", accumulator_dtype)
  return sgd_chain(transform(**kwargs), learning_rate, momentum_decay, nesterov, accumulator_dtype)
