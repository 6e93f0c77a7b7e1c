"""Per-leaf statistics reduced over a whole (possibly sharded) layer.

Every per-layer transform in legw needs a few scalars per leaf (squared norms,
sums).  They are computed in float32 (or wider: float64 leaves stay float64)
whatever the leaf dtype, so that a float16 layer whose sum of squares overflows
float16 still gives a finite, correct norm.

Under ``shard_map`` each device holds a shard of a parameter; passing the mesh
``axis_name`` makes the partial sums ``psum`` over that axis, so the statistic
is of the whole layer.  All leaves' partial sums are stacked into one vector
and reduced with a single ``psum`` (one all-reduce per step, not one per leaf).
Under ``jax.jit`` with sharded arrays no ``axis_name`` is needed: the SPMD
partitioner all-reduces each leaf's partial sum, and XLA's all-reduce
combiner merges these independent all-reduces into one per mesh axis
(tests/test_sharding.py counts them in the compiled HLO).  Keep per-leaf sums
independent of each other (no chain of reductions), or they cannot be merged.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

AxisName = str | tuple[str, ...] | None


def stat_dtype(dtype) -> jnp.dtype:
  """The dtype a leaf of ``dtype`` is computed in (>= float32).

  Complex leaves stay complex (complex64 or wider); :func:`real_dtype` gives
  the dtype of their real statistics.
  """
  return jnp.promote_types(dtype, jnp.float32)


def real_dtype(dtype) -> jnp.dtype:
  """The real dtype of the statistics of a leaf of ``dtype`` (>= float32).

  float16/bfloat16/float32 -> float32, float64 -> float64, complex64 ->
  float32, complex128 -> float64.
  """
  return jnp.finfo(stat_dtype(dtype)).dtype


def is_trainable(x) -> bool:
  """True for a floating or complex leaf (Python floats included).

  Integer and boolean leaves, and the ``float0`` gradients
  ``jax.grad(..., allow_int=True)`` gives for them, are not trained: every
  legw transform passes them through unchanged.
  """
  return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def abs_sq(x: jax.Array) -> jax.Array:
  """|x|^2 elementwise, real: x*x, or re(x)^2 + im(x)^2 for complex x.

  ``x * x`` of a complex x is complex (it rotates by twice the phase); every
  norm and magnitude in legw is of |x|^2, as in optax.
  """
  if jnp.iscomplexobj(x):
    return x.real * x.real + x.imag * x.imag
  return x * x


def sum_of_squares(x: jax.Array) -> jax.Array:
  """sum(|x|^2) accumulated in float32 or wider: real, also for complex x."""
  x = jnp.asarray(x)
  return jnp.sum(abs_sq(x.astype(stat_dtype(x.dtype))))


def psum_stacked(values: Sequence[jax.Array], axis_name: AxisName) -> list[jax.Array]:
  """``lax.psum`` a list of scalars over ``axis_name`` as one stacked vector.

  With ``axis_name=None`` the values are returned unchanged.
  """
  values = list(values)
  if axis_name is None or not values:
    return values
  dtype = jnp.result_type(*values)
  stacked = jax.lax.psum(jnp.stack([v.astype(dtype) for v in values]), axis_name)
  return [stacked[i].astype(v.dtype) for i, v in enumerate(values)]


def fused_reduce(arrays: Sequence[jax.Array], op=jax.lax.add, init=0) -> tuple[jax.Array, ...]:
  """Full reductions of same-shaped arrays by ``op``, in one variadic reduce.

  Why not ``jnp.sum`` (``jnp.min``) of each: XLA:CPU hands plain reductions
  to its YNN library, whose fusions take multiply/add producers but not
  compare, select, divide or convert, and it does not fuse a compare+convert
  producer into a one-operand reduce either: such producers are written out
  as parameter-sized temporaries and read back.  A variadic reduce of two or
  more arrays is emitted by XLA itself with every elementwise producer fused
  into one loop.  A single array is passed twice (the same pass, no
  temporary).
  """
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
  """Sums of same-shaped real arrays in one pass (:func:`fused_reduce`).

  Differentiable: ``jax.lax.reduce`` with several operands has no JVP rule
  (``jax.grad`` through it fails with an ``ad_util.Zero`` TypeError), so the
  rule is given here: the tangent of a sum is the sum of the tangents
  (plain ``jnp.sum``s, which reverse mode can transpose; integer arrays have
  ``float0`` tangents).
  """
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
