"""Optimizer state kept in a narrower dtype (``accumulator_dtype``, ``mu_dtype``).

optax's ``trace(accumulator_dtype=)`` and ``scale_by_adam(mu_dtype=)`` store the
momentum in that dtype, but also compute ``decay * state`` in it (a Python-float
decay is weakly typed).  :func:`with_state_dtype` widens the stored state to the
update's dtype before the step, so only the stored value is rounded.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from legw._reduce import is_trainable


def check_state_dtype_of_leaves(name: str, dtype: Any, params: Any) -> None:
  """At ``init``: a real state dtype cannot hold a complex leaf's state.

  Raises:
    ValueError: when ``dtype`` is set and a floating leaf of ``params`` is
      complex (its state would lose the imaginary part), naming the leaf.
  """
  if dtype is None:
    return
  for path, p in jax.tree_util.tree_flatten_with_path(params)[0]:
    if is_trainable(p) and jnp.issubdtype(jnp.result_type(p), jnp.complexfloating):
      raise ValueError(
        f"{name}={jnp.dtype(dtype).name} is real, and the leaf {jax.tree_util.keystr(path)} "
        f"is {jnp.result_type(p)}: its state would lose the imaginary part. Leave "
        f"{name}=None for complex parameters."
      )


def with_state_dtype(
  inner: optax.GradientTransformation, name: str, dtype: Any, field: str
) -> optax.GradientTransformation:
  """``inner`` (whose state's ``field`` is stored in ``dtype``), computing in the
  wider of the state and update dtypes.

  With ``dtype=None`` this is ``inner`` itself (bit for bit).  Otherwise ``init``
  refuses complex leaves (:func:`check_state_dtype_of_leaves`, ``name`` in the
  message), and ``update`` widens the stored ``field`` to the update's dtype
  before the step, so the step is one computation in the wider dtype and only
  the stored state is rounded to ``dtype``; the updates come back in the incoming
  updates' dtype (a float32 state of bfloat16 parameters would otherwise hand
  float32 updates on).
  """
  if dtype is None:
    return inner

  def init_fn(params):
    check_state_dtype_of_leaves(name, dtype, params)
    return inner.init(params)

  def update_fn(updates, state, params=None):
    wide = jax.tree.map(
      lambda s, u: s.astype(jnp.promote_types(s.dtype, jnp.result_type(u))),
      getattr(state, field),
      updates,
    )
    out, state = inner.update(updates, state._replace(**{field: wide}), params)
    return jax.tree.map(lambda o, u: o.astype(jnp.result_type(u)), out, updates), state

  return optax.GradientTransformation(init_fn, update_fn)
