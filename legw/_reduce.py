"""Per-leaf statistics reduced over a whole (possibly sharded) layer, in float32 or wider.

With ``axis_name`` (``shard_map``) the partial sums of all leaves are ``psum``-ed as one vector.
"""

# Under jax.jit with sharded arrays the SPMD partitioner all-reduces each leaf's partial sum
# and XLA's all-reduce combiner merges them into one per mesh axis (tests/test_sharding.py
# counts them): keep the per-leaf sums independent of each other, or they cannot be merged.

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

AxisName = str | tuple[str, ...] | None


def stat_dtype(dtype) -> jnp.dtype:
  """The dtype a leaf of ``dtype`` is computed in: >= float32; complex stays complex."""
  return jnp.promote_types(dtype, jnp.float32)


def real_dtype(dtype) -> jnp.dtype:
  """The real dtype of a leaf's statistics: >= float32 (complex64 -> float32)."""
  return jnp.finfo(stat_dtype(dtype)).dtype


def is_trainable(x) -> bool:
  """True for a floating or complex leaf; integer and bool leaves (and their ``float0``
  gradients) pass through every legw transform unchanged."""
  return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def abs_sq(x: jax.Array) -> jax.Array:
  """|x|^2 elementwise, real: x*x, or re^2 + im^2 for complex x (x*x would rotate it)."""
  if jnp.iscomplexobj(x):
    return x.real * x.real + x.imag * x.imag
  return x * x


def sum_of_squares(x: jax.Array) -> jax.Array:
  """sum(|x|^2) accumulated in float32 or wider: real, also for complex x."""
  x = jnp.asarray(x)
  return jnp.sum(abs_sq(x.astype(stat_dtype(x.dtype))))


def psum_stacked(values: Sequence[jax.Array], axis_name: AxisName) -> list[jax.Array]:
  """``lax.psum`` of a list of scalars as one stacked vector (unchanged for ``None``)."""
  values = list(values)
  if axis_name is None or not values:
    return values
  dtype = jnp.result_type(*values)
  stacked = jax.lax.psum(jnp.stack([v.astype(dtype) for v in values]), axis_name)
  return [stacked[i].astype(v.dtype) for i, v in enumerate(values)]


def fused_reduce(arrays: Sequence[jax.Array], op=jax.lax.add, init=0) -> tuple[jax.Array, ...]:
  """Full reductions of same-shaped arrays by ``op`` in one variadic reduce (a single array is
  passed twice: the same pass, no temporary)."""
  # Not jnp.sum (jnp.min) of each: XLA:CPU hands plain reductions to its YNN library, whose
  # fusions take multiply/add producers but not compare, select, divide or convert (nor a
  # compare+convert producer into a one-operand reduce): those are written out as
  # parameter-sized temporaries. XLA emits a variadic reduce itself, every producer fused.
  # Before and after on the ResNet-50 tree: `python -m benchmarks.costs.step_cost`
  # (benchmarks/costs/README.md).
  arrays = tuple(arrays)
  single = len(arrays) == 1
  if single:
    arrays = arrays * 2
  inits = tuple(jnp.asarray(init, a.dtype) for a in arrays)
  out = jax.lax.reduce(
    arrays, inits, lambda x, y: tuple(op(a, b) for a, b in zip(x, y)), tuple(range(arrays[0].ndim))
  )
  return out[:1] if single else out


def fused_sums(arrays: Sequence[jax.Array]) -> tuple[jax.Array, ...]:
  """Sums of same-shaped real arrays in one pass (:func:`fused_reduce`), differentiable: the
  JVP rule a multi-operand ``lax.reduce`` lacks is given here (plain sums of the tangents)."""
  return _fused_sums(*arrays)


@jax.custom_jvp
def _fused_sums(*arrays):
  return fused_reduce(arrays, jax.lax.add, 0)


@_fused_sums.defjvp
def _fused_sums_jvp(primals, tangents):
  out = _fused_sums(*primals)
  out_t = tuple(
    jnp.sum(t) if jnp.issubdtype(p.dtype, jnp.inexact) else np.zeros((), jax.dtypes.float0)
    for p, t in zip(primals, tangents)
  )
  return out, out_t
