"""Exact medians of non-negative arrays without sorting (MCLR's statistic).

MCLR (curvature paper, papers/curvature-based-lr-second-order-gradient.txt,
§4, eq. 20–22) scales each layer by ``med|w| / med|g|``: two medians per layer
and step.  ``jnp.median`` sorts, and XLA's CPU sort is slow (hundreds of ms
for a 784 x 256 kernel), so :func:`medians_of_magnitudes` selects the middle
values instead.  The bit patterns of non-negative floats, read as integers,
are ordered like the values, so the lower middle order statistic is the
smallest bit pattern ``b`` with ``count(x <= b) >= k + 1`` (``k = (n-1)//2``),
found by bisection on the bit pattern.

The results are exact: equal to ``numpy.median`` (the mean of the two middle
values for an even size), bit for bit.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp

from legw._reduce import AxisName, fused_reduce, fused_sums, psum_stacked, stat_dtype


def medians_of_magnitudes(arrays: Sequence[jax.Array], axis_name: AxisName = None
                          ) -> list[jax.Array]:
  """Exact medians of non-negative arrays, each over its whole (sharded) layer.

  Args:
    arrays: non-negative float arrays (float32, float64, bfloat16, float16;
      e.g. ``|w|`` and ``|g|`` of each layer).  Low-precision arrays are
      widened to float32, which is exact.
    axis_name: under ``shard_map``, the mesh axis (or axes) over which every
      array is sharded; the median is then of the whole array (all shards).

  Returns:
    One scalar per array, ``numpy.median`` of it, in float32 (float64 for
    float64 arrays).

  Differentiation: the derivative is that of ``jnp.median``: the tangent of the
  middle entry (the mean of the two middle entries' tangents for an even
  size).  Where the middle value is tied (several entries equal to it), its
  tangent is the mean of the tangents of all entries equal to it (``jnp.median``
  picks one of them by position instead; both are subgradients).
  """
  arrays = list(arrays)
  if not arrays:
    return []
  return list(_medians(axis_name, *arrays))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _medians(axis_name, *arrays):
  lower, upper = _middle_values(arrays, axis_name)
  return tuple((lo + hi) / 2 for lo, hi in zip(lower, upper))


@_medians.defjvp
def _medians_jvp(axis_name, primals, tangents):
  lower, upper = _middle_values(primals, axis_name)
  out = tuple((lo + hi) / 2 for lo, hi in zip(lower, upper))
  sums = []
  for a, t, lo, hi in zip(primals, tangents, lower, upper):
    x, t = a.astype(lo.dtype), t.astype(lo.dtype)
    at_lo, at_hi = x == lo, x == hi
    sums += [jnp.sum(jnp.where(at_lo, t, 0)), jnp.sum(at_lo.astype(lo.dtype)),
             jnp.sum(jnp.where(at_hi, t, 0)), jnp.sum(at_hi.astype(lo.dtype))]
  sums = psum_stacked(sums, axis_name)
  out_t = []
  for i in range(len(primals)):
    t_lo, n_lo, t_hi, n_hi = sums[4 * i:4 * i + 4]
    out_t.append((t_lo / jnp.maximum(n_lo, 1) + t_hi / jnp.maximum(n_hi, 1)) / 2)
  return out, tuple(out_t)


def _middle_values(arrays, axis_name):
  """Lower and upper middle values of each array (equal for an odd size)."""
  arrays = [a.astype(stat_dtype(a.dtype)) for a in arrays]
  lower, upper = [None] * len(arrays), [None] * len(arrays)
  groups = {}
  for i, a in enumerate(arrays):
    groups.setdefault(jnp.dtype(a.dtype), []).append(i)
  for dt, idx in groups.items():
    lo, hi = _bisect(dt, [arrays[i] for i in idx], axis_name)
    for j, i in enumerate(idx):
      lower[i], upper[i] = lo[j], hi[j]
  return lower, upper


def _bisect(dt, arrays, axis_name):
  """Bisection on the bit pattern: 31 counting passes (63 for float64)."""
  int_t = jnp.int64 if dt.itemsize == 8 else jnp.int32
  top = jnp.iinfo(int_t).max
  bits = [jax.lax.bitcast_convert_type(a, int_t) for a in arrays]
  n = jnp.stack(psum_stacked([jnp.asarray(b.size, int_t) for b in bits], axis_name))
  need = (n - 1) // 2 + 1  # entries at or below the lower middle value
  by_shape = {}
  for j, b in enumerate(bits):
    by_shape.setdefault(b.shape, []).append(j)
  pairs = [js[k:k + 2] for js in by_shape.values() for k in range(0, len(js), 2)]

  def count_at_or_below(t):
    counts = [None] * len(bits)
    for js in pairs:
      for j, c in zip(js, fused_sums([(bits[j] <= t[j]).astype(int_t) for j in js])):
        counts[j] = c
    return jnp.stack(psum_stacked(counts, axis_name))

  def body(_, bounds):
    lo, hi = bounds
    mid = lo + (hi - lo) // 2
    enough = count_at_or_below(mid) >= need
    return jnp.where(enough, lo, mid + 1), jnp.where(enough, mid, hi)

  bounds = (jnp.zeros(n.shape, int_t), jnp.full(n.shape, top, int_t))
  bounds = body(0, bounds)
  lower, _ = jax.lax.fori_loop(1, 8 * dt.itemsize - 1, body, bounds)
  at_or_below = count_at_or_below(lower)
  above = [None] * len(bits)
  for js in pairs:
    mins = fused_reduce([jnp.where(bits[j] > lower[j], bits[j], top) for j in js],
                        jax.lax.min, top)
    for j, m in zip(js, mins):
      above[j] = m
  above = jnp.stack(above)
  if axis_name is not None:
    above = jax.lax.pmin(above, axis_name)
  upper = jnp.where((n % 2 == 0) & (at_or_below < need + 1), above, lower)
  lower = jax.lax.bitcast_convert_type(lower, dt)
  upper = jax.lax.bitcast_convert_type(upper, dt)
  return [lower[j] for j in range(len(arrays))], [upper[j] for j in range(len(arrays))]
