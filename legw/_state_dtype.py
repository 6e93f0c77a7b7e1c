"""Optimizer state kept in a narrower dtype (``accumulator_dtype``, ``mu_dtype``).

optax computes ``decay * state`` in the stored dtype; :func:`with_state_dtype` widens it first.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from legw._reduce import is_trainable


def check_state_dtype_of_leaves(name: str, dtype: Any, params: Any) -> None:
  """At ``init``: ValueError, naming the leaf, when ``dtype`` is set and a floating leaf is
  complex (a real state would lose the imaginary part)."""
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
  """``inner`` with its state's ``field`` stored in ``dtype``, each step computed in the wider
  of the state and update dtypes (updates in the incoming dtype); ``inner`` for None."""
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
