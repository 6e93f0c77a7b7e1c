"""Exact medians of magnitudes without sorting (MCLR's statistic).

``jnp.median`` sorts, and XLA's CPU sort is slow: :func:`medians_of_magnitudes` selects the
middle values by a search on the bit patterns, equal to ``numpy.median`` bit for bit.
"""

# Algorithm. The bit patterns of non-negative floats, read as integers, are ordered like the
# values, so the lower middle value (rank k = (n-1)//2) is the least pattern b with
# count(x <= b) >= k + 1. A (T+1)-ary search finds it: each pass counts, per array, the
# entries at or below T thresholds that split the current bracket into T + 1 parts (one
# variadic reduce per array, nothing stored) and keeps the part holding rank k (T: see
# `_T_CPU`). The last pass counts every pattern of its bracket, so the upper middle value
# (rank n//2) follows from the same counts, or is the least entry above the bracket (a min
# in the same reduce). `nonzero=True` counts the zeros in the same reduce and shifts both
# ranks past them. An even size's median is (lower + upper) / 2 rounded as numpy rounds it
# (`_mean_of_two`, subnormals included). NaN entries give an unspecified result.
#
# Layout. All passes run in one fori_loop for all arrays of a dtype. Arrays under `_SMALL`
# entries are copied into one buffer of `_ROW`-entry rows (a pass over them is one reduce
# plus a segment sum, whatever their number); larger ones are counted in place (`_select`).
# The medians come out as separate scalars (`_unstack`): the compile time stays flat.
#
# Sharding. Under shard_map the counts of all arrays are psum-ed as one block per pass and
# the final minima pmin-ed once: each median is that of the whole array.

# Measured cost: benchmarks/costs/README.md ("What MCLR's exact medians cost on CPU").

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from legw._reduce import AxisName, psum_stacked, stat_dtype


def medians_of_magnitudes(
  arrays: Sequence[jax.Array], axis_name: AxisName = None, *, nonzero: bool = False
) -> list[jax.Array]:
  """Exact medians of ``|x|`` (as ``numpy.median``) over each whole (sharded) array, float32 or
  wider; ``nonzero``: of the nonzero entries (0 if none). Pass ``w``, not a computed ``|w|``."""
  # Derivative: that of jnp.median of |x| (the middle entries' tangents); a tied middle
  # value gets the mean tangent of all entries equal to it (jnp.median picks one of them by
  # position; both are subgradients).
  arrays = list(arrays)
  if not arrays:
    return []
  mesh = _explicit_mesh(arrays)
  if mesh is None:
    return list(_medians(axis_name, nonzero, *arrays))
  # Arrays typed with Explicit mesh axes (jax.make_mesh's default): the search
  # reshapes and slices them, which explicit sharding refuses, so it runs with
  # those axes made Auto and lets the partitioner place it, as for a Mesh
  # with Auto axes.  The medians come back replicated.
  with jax.sharding.use_abstract_mesh(mesh):
    fn = jax.sharding.auto_axes(
      lambda *a: _medians(axis_name, nonzero, *a),
      out_sharding=tuple(jax.sharding.PartitionSpec() for _ in arrays),
    )
    return list(fn(*arrays))


def _explicit_mesh(arrays):
  """The (abstract) mesh of the first array typed with an Explicit mesh axis, or None."""
  for a in arrays:
    mesh = getattr(jax.typeof(a).sharding, "mesh", None)
    types = getattr(mesh, "axis_types", ()) or ()
    if any(t == jax.sharding.AxisType.Explicit for t in types):
      return mesh
  return None


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _medians(axis_name, nonzero, *arrays):
  return tuple(_middle_values(arrays, axis_name, nonzero, middle_values=False)[2])


@_medians.defjvp
def _medians_jvp(axis_name, nonzero, primals, tangents):
  lower, upper, out = _middle_values(primals, axis_name, nonzero)
  out = tuple(out)
  sums = []
  # An array with no nonzero entry (nonzero=True) has median 0 whatever its
  # tangent: its "middle values" are then no entries (lower 0, upper inf).
  for a, t, lo, hi in zip(primals, tangents, lower, upper):
    # Ties compared on bit patterns (float compares would treat subnormals as 0).
    int_t = jnp.int64 if lo.dtype.itemsize == 8 else jnp.int32
    x = _magnitude_bits(a.astype(lo.dtype))
    # The median is of |a|: the tangent of an entry is sign(a) t (0 at a = 0,
    # as jnp.abs's).
    t = jnp.sign(a.astype(lo.dtype)) * t.astype(lo.dtype)
    at_lo = x == jax.lax.bitcast_convert_type(lo, int_t)
    at_hi = x == jax.lax.bitcast_convert_type(hi, int_t)
    sums += [
      jnp.sum(jnp.where(at_lo, t, 0)),
      jnp.sum(at_lo.astype(lo.dtype)),
      jnp.sum(jnp.where(at_hi, t, 0)),
      jnp.sum(at_hi.astype(lo.dtype)),
    ]
  sums = psum_stacked(sums, axis_name)
  out_t = []
  for i in range(len(primals)):
    t_lo, n_lo, t_hi, n_hi = sums[4 * i : 4 * i + 4]
    dt = (t_lo / jnp.maximum(n_lo, 1) + t_hi / jnp.maximum(n_hi, 1)) / 2
    if nonzero:
      dt = jnp.where(jnp.isinf(upper[i]), jnp.zeros_like(dt), dt)
    out_t.append(dt)
  return out, tuple(out_t)


# Thresholds per counting pass (the bracket is split into T + 1 parts).  On
# XLA:CPU a pass over ResNet-50's in-place arrays cost about 8 ms + 1.2 ms
# per threshold, so 12 passes of 5 beat 8 passes of 15: the medians took 125
# ms against 233 ms (`python -m benchmarks.costs.median_cost`; table in
# benchmarks/costs/README.md, "What MCLR's exact medians cost on CPU").  On GPU/TPU a
# pass should be bound by reading the array, so 15 (fewer passes) is kept
# there; not measured.  The choice is the *target's*, made when the
# computation is lowered (:func:`_select_for_target`), never from
# ``jax.default_backend()`` at trace time: a TPU executable compiled on a CPU
# host (AOT, ``jax.export``) gets the TPU variant.
_T_CPU = 5
_T_ACCELERATOR = 15


def _thresholds_by_platform() -> dict[str, int]:
  """Thresholds per pass for each lowering platform: XLA:CPU, and the rest (GPU, TPU)."""
  return {"cpu": _T_CPU, "default": _T_ACCELERATOR}


def _select_for_target(dt, arrays, axis_name, nonzero=False):
  """:func:`_select` with the thresholds of the platform the computation is lowered for
  (``platform_dependent``; both branches give the same exact values)."""
  by_platform = _thresholds_by_platform()
  if by_platform["cpu"] == by_platform["default"]:
    return _select(dt, arrays, axis_name, nonzero, by_platform["cpu"])

  def branch(thresholds):
    return lambda *xs: _select(dt, list(xs), axis_name, nonzero, thresholds)

  return jax.lax.platform_dependent(
    *arrays, cpu=branch(by_platform["cpu"]), default=branch(by_platform["default"])
  )


# Arrays with fewer entries (per device) are copied into one buffer of rows
# of `_ROW` entries, so that their passes are one reduction (compile time);
# larger ones are counted in place (no parameter-sized copy).
_SMALL = 1 << 16
_ROW = 128


def _middle_values(arrays, axis_name, nonzero=False, middle_values=True):
  """Lower and upper middle values and medians of each array, as lists of scalars (the first
  two None with ``middle_values=False``); ``nonzero`` and no nonzero entry: 0, inf, 0."""
  arrays = [a.astype(stat_dtype(a.dtype)) for a in arrays]
  lower: list[Any] = [None] * len(arrays)
  upper: list[Any] = [None] * len(arrays)
  med: list[Any] = [None] * len(arrays)
  groups: dict[np.dtype, list[int]] = {}
  for i, a in enumerate(arrays):
    groups.setdefault(jnp.dtype(a.dtype), []).append(i)
  for dt, idx in groups.items():
    lo, hi, count = _select_for_target(dt, [arrays[i] for i in idx], axis_name, nonzero)
    mid = jnp.where(count % 2 == 1, lo, _mean_of_two(lo, hi))
    if nonzero:  # no nonzero entry: median 0, upper middle value inf
      mid = jnp.where(count == 0, jnp.zeros((), dt), mid)
      hi = jnp.where(count == 0, jnp.asarray(jnp.inf, dt), hi)
    k = len(idx)
    if middle_values:
      scalars = _unstack(jnp.concatenate([mid, lo, hi]))
      for j, i in enumerate(idx):
        lower[i], upper[i] = scalars[k + j], scalars[2 * k + j]
    else:
      scalars = _unstack(mid)
    for j, i in enumerate(idx):
      med[i] = scalars[j]
  return lower, upper, med


# Entries per variadic reduce in `_unstack`.
_UNSTACK_CHUNK = 64


def _unstack(v: jax.Array) -> list[jax.Array]:
  """The entries of a vector as separate scalars: ``list(v)``, exactly (on bit patterns)."""
  # Compile time, not correctness: XLA:CPU compiles one kernel per distinct fusion, and
  # v[i] puts the constant i into each consumer's kernel (N kernels for N rates). Here each
  # chunk of 64 entries is one variadic reduce whose j-th output sums where(iota == j, v, 0):
  # one kernel per chunk, and the consumers of same-shaped leaves share theirs.
  # On the bit patterns: float adds would flush subnormals to zero (XLA:CPU).
  int_t = jnp.int64 if v.dtype.itemsize == 8 else jnp.int32
  bits = jax.lax.bitcast_convert_type(v, int_t)
  out: list[jax.Array] = []
  for start in range(0, v.shape[0], _UNSTACK_CHUNK):
    part = bits[start : start + _UNSTACK_CHUNK]
    k = part.shape[0]
    pos = jax.lax.iota(jnp.int32, k)
    zero = jnp.zeros((), int_t)
    out += jax.lax.reduce(
      tuple(jnp.where(pos == j, part, zero) for j in range(k)),
      (zero,) * k,
      lambda x, y: tuple(a + b for a, b in zip(x, y)),
      (0,),
    )
  out = [jax.lax.bitcast_convert_type(x, v.dtype) for x in out]
  return out


def _mean_of_two(a, b):
  """``numpy``'s ``(a + b) / 2`` of floats ``0 <= a <= b``, subnormals included."""
  # XLA:CPU flushes subnormal inputs and results of float arithmetic to zero; numpy does
  # not. Below twice the least normal number, values are their bit patterns times the least
  # subnormal, so both roundings (of the sum, then of the halving) are done on integers;
  # below 2**-100 (float64: 2**-900) both are scaled up by a power of two. Above that, a
  # subnormal a is below half an ulp of b and drops out of a + b anyway.
  dt = jnp.dtype(a.dtype)
  f64 = dt.itemsize == 8
  int_t = jnp.int64 if f64 else jnp.int32
  mant = 52 if f64 else 23
  tiny, scale = (2.0**-900, 2.0**512) if f64 else (2.0**-100, 2.0**64)
  ia = jax.lax.bitcast_convert_type(a, int_t)
  ib = jax.lax.bitcast_convert_type(b, int_t)
  # Exponent fields 0 and 1: value = bits * least subnormal, and a + b < 2**(mant + 2)
  # rounds to an even pattern at or above 2**(mant + 1): one formula for both roundings.
  s = ia + ib
  q = s >> 1
  linear = jax.lax.bitcast_convert_type(q + (s & q & 1), dt)
  # Small normal b: scale by a power of two (exact); a subnormal a enters
  # through its integer significand.
  small = b < tiny
  k = jnp.where(small, jnp.asarray(scale, dt), jnp.asarray(1.0, dt))
  least = 2.0**-1074 if f64 else 2.0**-149  # the least subnormal, times the scale:
  a_sub = jnp.where(small, ia.astype(dt) * jnp.asarray(least * scale, dt), 0)  # a normal
  a_scaled = jnp.where(ia < (1 << mant), a_sub, a * k)
  scaled = (a_scaled + b * k) / 2 / k
  return jnp.where(ib < (1 << (mant + 1)), linear, scaled)


def _passes(bits: int, parts: int) -> int:
  """Passes that narrow a bracket of ``2**bits`` patterns to one, ``parts`` parts each."""
  width, passes = 1 << bits, 0
  while width > 1:
    width, passes = -(-width // parts), passes + 1
  return passes


def _reduce(operands, inits, ops, axes):
  """One variadic reduce: ``ops[i]`` (add or min) folds ``operands[i]``."""
  return jax.lax.reduce(
    tuple(operands), tuple(inits), lambda x, y: tuple(op(a, b) for op, a, b in zip(ops, x, y)), axes
  )


def _magnitude_bits(x):
  """The bit pattern of ``|x|`` as a signed integer (the sign bit cleared); not ``jnp.abs``,
  which XLA:CPU may flush to zero for a subnormal."""
  int_t = jnp.int64 if x.dtype.itemsize == 8 else jnp.int32
  return jax.lax.bitcast_convert_type(x, int_t) & jnp.iinfo(int_t).max


def _select(dt, arrays, axis_name, nonzero, T):
  """Lower and upper middle values of same-dtype arrays and the count each median is of
  (vectors, one entry per array): the (T+1)-ary search, T thresholds a pass."""
  int_t = jnp.int64 if dt.itemsize == 8 else jnp.int32
  top = jnp.iinfo(int_t).max
  n_parts = T + 1
  passes = _passes(8 * dt.itemsize - 1, n_parts)
  big = [i for i, a in enumerate(arrays) if a.size >= _SMALL]
  small = [i for i, a in enumerate(arrays) if a.size < _SMALL]
  order = big + small  # the row order of every stacked per-array vector
  nb = len(big)

  # Large arrays are read in place: the loop takes the arrays themselves and
  # each pass computes the patterns of |x| (-0.0 is 0; ordered like the
  # values) from `where(lo < 0, 0, x)`: always x (the bracket's lower end
  # lo starts at 0 and never decreases), but XLA cannot prove it
  # loop-invariant.  A pattern array computed outside the loop, or an
  # invariant one inside it (XLA hoists those), is stored as a
  # parameter-sized temporary every step.
  raw = [arrays[i] for i in big]
  if small:
    parts: list[jax.Array] = []
    rows: list[int] = []
    for k, i in enumerate(small):
      a = _magnitude_bits(arrays[i]).reshape(-1)
      pad = -a.size % _ROW
      parts.append(a)
      if pad:  # NaN pads: above every threshold while the middle values are not NaN
        parts.append(jax.lax.bitcast_convert_type(jnp.full((pad,), jnp.nan, dt), int_t))
      rows += [k] * ((a.size + pad) // _ROW)
    buf = jnp.concatenate(parts).reshape(-1, _ROW)
    row_of = np.asarray(rows, np.int32)

  n = jnp.asarray([arrays[i].size for i in order], int_t)
  if axis_name is not None:
    n = jax.lax.psum(n, axis_name)
  # With `nonzero`, every pass also counts the zeros (one more output of its
  # reduce; a separate count would store its compare as a temporary).
  cols = T + 1 if nonzero else T
  # Zeros with the sharding types (under shard_map) of the local data and of
  # the all-reduced counts: the loop carry keeps its types across passes.
  local0 = sum(_magnitude_bits(x.reshape(-1)[0]) for x in raw[:1]) + (buf[0, 0] if small else 0)
  local0 = local0 * 0
  reduced0 = local0 if axis_name is None else jax.lax.psum(local0, axis_name)
  js = jnp.arange(1, n_parts, dtype=int_t)

  def count(t, hi, flip):
    """Entries <= each threshold ``t`` (A, T; with ``nonzero`` also the zeros) and the least
    entry > ``hi`` (A,); ``flip`` is always False, computed from the loop carry."""
    counts, mins = [], []
    for k, x in enumerate(raw):
      b = _magnitude_bits(jnp.where(flip[k], jnp.zeros((), x.dtype), x))
      out = _reduce(
        [(b <= t[k, j]).astype(int_t) for j in range(T)]
        + [(b == 0).astype(int_t)] * (cols - T)
        + [jnp.where(b > hi[k], b, top)],
        [int_t(0)] * cols + [int_t(top)],
        [jax.lax.add] * cols + [jax.lax.min],
        tuple(range(b.ndim)),
      )
      counts.append(jnp.stack(out[:cols]))
      mins.append(out[cols])
    if small:
      t_row, hi_row = t[nb:][row_of], hi[nb:][row_of]
      out = _reduce(
        [(buf <= t_row[:, j : j + 1]).astype(int_t) for j in range(T)]
        + [(buf == 0).astype(int_t)] * (cols - T)
        + [jnp.where(buf > hi_row[:, None], buf, top)],
        [int_t(0)] * cols + [int_t(top)],
        [jax.lax.add] * cols + [jax.lax.min],
        (1,),
      )
      counts.append(
        jax.ops.segment_sum(jnp.stack(out[:cols], 1), row_of, len(small), indices_are_sorted=True)
      )
      mins.append(jax.ops.segment_min(out[cols], row_of, len(small), indices_are_sorted=True))
    counted = jnp.concatenate([c.reshape(-1, cols) for c in counts])
    if axis_name is not None:
      counted = jax.lax.psum(counted, axis_name)
    return counted, jnp.concatenate([m.reshape(-1) for m in mins])

  def need(z):
    """Entries at or below the lower middle value: rank z + (n - z - 1) // 2."""
    return z + (n - z - 1) // 2 + 1

  def body(_, carry):
    lo, hi, c_hi = carry[:3]
    # T thresholds split [lo, hi] into T + 1 near-equal parts:
    # t_j = lo - 1 + floor(j (hi - lo + 1) / (T + 1)), without overflow.
    d = hi - lo
    t = (
      (lo - 1)[:, None]
      + (d // n_parts)[:, None] * js
      + ((d % n_parts + 1)[:, None] * js) // n_parts
    )
    c, m = count(t, hi, lo < 0)
    c, z = c[:, :T], (c[:, T] if nonzero else jnp.zeros_like(lo))
    enough = c >= need(z)[:, None]
    new_hi = jnp.min(jnp.where(enough, t, hi[:, None]), axis=1)
    new_c_hi = jnp.min(jnp.where(enough, c, c_hi[:, None]), axis=1)
    new_lo = jnp.max(jnp.where(enough, lo[:, None], t + 1), axis=1)
    out = (new_lo, new_hi, new_c_hi, t, c, hi, c_hi, z)
    return tuple(v + reduced0 for v in out) + (m + local0,)

  num = len(order)
  init = (
    jnp.zeros(num, int_t),
    jnp.full(num, top, int_t),
    n,
    jnp.zeros((num, T), int_t),
    jnp.zeros((num, T), int_t),
    jnp.zeros(num, int_t),
    n,
    jnp.zeros(num, int_t),
    jnp.zeros(num, int_t),
  )
  carry = tuple(v + reduced0 for v in init[:-1]) + (init[-1] + local0,)
  lower, _, c_lower, t, c, hi, c_hi, z, m = jax.lax.fori_loop(0, passes, body, carry)
  n_med = n - z  # entries the median is of
  need2 = z + n_med // 2 + 1  # entries at or below the upper middle value
  # The last pass counted every pattern in its bracket [lo, hi - 1]: the
  # least entry above `lower` is the least threshold whose count exceeds
  # count(<= lower), else `hi` if its count does, else the least entry > hi.
  if axis_name is not None:
    m = jax.lax.pmin(m, axis_name)
  nxt = jnp.min(jnp.where((t > lower[:, None]) & (c > c_lower[:, None]), t, top), axis=1)
  nxt = jnp.minimum(nxt, jnp.where(c_hi > c_lower, hi, m))
  upper = jnp.where(c_lower >= need2, lower, nxt)
  # Back to the caller's order of arrays.
  perm = np.argsort(np.asarray(order))
  return (
    jax.lax.bitcast_convert_type(lower[perm], dt),
    jax.lax.bitcast_convert_type(upper[perm], dt),
    n_med[perm],
  )
