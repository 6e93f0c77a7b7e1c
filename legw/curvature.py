r"""Curvature-based per-layer learning rates: MCLR, PercentDelta and CBLR.

Source: Gao & Zhong, "Study on the Large Batch Size Training of Neural Networks
Based on the Second Order Gradient"
(papers/curvature-based-lr-second-order-gradient.txt), §4, eq. 9–24.

The curvature radius of the loss along parameter :math:`w_i` (eq. 9) is

.. math::

   R_i = \frac{(1 + g_i^2)^{3/2}}{|\partial^2 L / \partial w_i^2|},

and the curvature-based rule (CBLR, eq. 10–11) steps each parameter by
:math:`\gamma R_i g_i` (:func:`scale_by_curvature_radius`, :func:`cblr`).
Near a minimum the loss is a parabola :math:`a_i (w_i - b_i)^2 + c_i`
(eq. 12), which with :math:`b_i \approx 0` and :math:`g_i^2 \ll 1` gives the
cheap, first-order estimate (eq. 17)

.. math::

   R_i \approx |w_i / g_i| .

It fails where :math:`w_i \to 0` or :math:`g_i \to 0` (eq. 18–19), so it is
only used through a *statistic of a group* (a layer = a leaf of the parameter
tree).  The per-layer rules of the field are then members of one family,
:math:`\eta_l = \gamma R_l`, that differ only in the statistic:

* LARS (eq. 23), the **L2-norm member**:
  :math:`R_l = \|w_l\|_2 / \|g_l\|_2` (:func:`legw.scale_by_lars` with
  ``trust_coefficient=1``);
* PercentDelta (eq. 24), the **L1-norm member**:
  :math:`R_l = n_l / \|g_l / w_l\|_1`, the harmonic mean over the layer of
  the eq. 17 radii (:func:`scale_by_percent_delta`);
* MCLR (eq. 20–21), the **median member**:
  :math:`R_l = \mathrm{med}|w_l| / \mathrm{med}|g_l|`
  (:func:`scale_by_median_curvature`).

With weight decay :math:`\beta` every member has the same form,
:math:`R_l = 1 / (S_l + \beta)`, where :math:`S_l` is the member's
gradient-to-weight statistic (:math:`\|g\|/\|w\|`, the mean of
:math:`|g_i/w_i|`, :math:`\mathrm{med}|g|/\mathrm{med}|w|`): this is eq. 22
for MCLR and Algorithm 1 of the LARS paper for LARS.  When a layer's gradient
is a multiple of its weights, :math:`g_l = c\,w_l`, all three give
:math:`R_l = 1/(c + \beta)`.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from legw import _validation
from legw._reduce import AxisName, fused_reduce, fused_sums, psum_stacked, stat_dtype
from legw.masks import MaskOrFn, exclude_bias_and_norm, resolve_mask


# ---------------------------------------------------------------------------
# Shared helpers.
# ---------------------------------------------------------------------------


def _check_positive_int(name: str, value: Any) -> None:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
    hint = ""
    if isinstance(value, jax.Array):
      hint = (f" It sets a loop length, so it cannot be an array: with "
              f"optax.inject_hyperparams pass static_args=({name!r}, ...).")
    raise ValueError(f"{name} must be an integer >= 1; got {value!r}.{hint}")


def _check_family_args(weight_decay, eps):
  _validation.check_range("weight_decay", weight_decay, low=0.0)
  _validation.check_range("eps", eps, low=0.0)


def _check_optimizer_args(learning_rate, momentum):
  _validation.check_learning_rate(learning_rate)
  _validation.check_range("momentum", momentum, low=0.0, high=1.0, high_inclusive=False)


def _leaves(name, updates, params, trust_ratio_mask, weight_decay_mask):
  """Flattens updates/params and resolves both masks to per-leaf bools."""
  if params is None:
    raise ValueError(
        f"{name} needs the current parameters: call update(updates, state, params)."
    )
  g_leaves, treedef = jax.tree.flatten(updates)
  w_leaves = treedef.flatten_up_to(params)
  tr_mask = resolve_mask(trust_ratio_mask, params, exclude_bias_and_norm)
  wd_mask = resolve_mask(weight_decay_mask, params, exclude_bias_and_norm)
  return g_leaves, w_leaves, treedef, tr_mask, wd_mask


def _chain(scaler, learning_rate, momentum, nesterov):
  return optax.chain(
      scaler,
      optax.scale_by_learning_rate(learning_rate),
      optax.trace(decay=momentum, nesterov=nesterov),
  )


# ---------------------------------------------------------------------------
# MCLR: median curvature radius (eq. 20–22).
# ---------------------------------------------------------------------------


class ScaleByMedianCurvatureState(NamedTuple):
  """State of :func:`scale_by_median_curvature` (stateless)."""


def _medians_of_magnitudes(arrays, axis_name):
  """Exact medians of non-negative arrays, each over its whole (sharded) layer.

  ``jnp.median`` sorts, and XLA's CPU sort is slow (hundreds of ms for a 784 x
  256 kernel).  Instead, for non-negative floats the integer bit patterns are
  ordered like the values, so the lower middle order statistic (k = (n-1)//2)
  is found by bisection on the bit pattern: 31 passes (63 for float64) that
  each count, per array, the entries at or below a threshold.  One more pass
  finds the upper middle value (the smallest entry above it, when n is even
  and the k-th value is not repeated), and the two are averaged, which is
  exactly ``numpy.median``.  With ``axis_name`` the counts of all arrays are
  ``psum``-ed in one stacked all-reduce per pass (and the last pass's minima
  ``pmin``-ed), so the medians are of the whole layers and no device gathers
  a layer.
  """
  medians = [None] * len(arrays)
  groups = {}
  for i, a in enumerate(arrays):
    groups.setdefault(jnp.dtype(a.dtype), []).append(i)
  for dt, idx in groups.items():
    int_t = jnp.int64 if dt.itemsize == 8 else jnp.int32
    top = jnp.iinfo(int_t).max
    bits = [jax.lax.bitcast_convert_type(arrays[i], int_t) for i in idx]
    n = jnp.stack(psum_stacked([jnp.asarray(b.size, int_t) for b in bits], axis_name))
    need = (n - 1) // 2 + 1  # entries at or below the lower middle value

    # Pairs of same-shaped arrays (e.g. a layer's |w| and |g|) are counted in
    # one variadic reduce: nothing stored per pass (legw._reduce.fused_reduce).
    # The bit patterns themselves are stored once (XLA hoists them out of the
    # loop).
    by_shape = {}
    for j, b in enumerate(bits):
      by_shape.setdefault(b.shape, []).append(j)
    pairs = [js[k:k + 2] for js in by_shape.values() for k in range(0, len(js), 2)]

    def count_at_or_below(t, bits=bits, pairs=pairs):
      counts = [None] * len(bits)
      for js in pairs:
        for j, c in zip(js, fused_sums([(bits[j] <= t[j]).astype(int_t) for j in js])):
          counts[j] = c
      return jnp.stack(psum_stacked(counts, axis_name))

    def body(_, bounds, need=need, count_at_or_below=count_at_or_below):
      lo, hi = bounds
      mid = lo + (hi - lo) // 2
      enough = count_at_or_below(mid) >= need
      return jnp.where(enough, lo, mid + 1), jnp.where(enough, mid, hi)

    bounds = (jnp.zeros(n.shape, int_t), jnp.full(n.shape, top, int_t))
    # The first pass is peeled so that the loop carry has the sharding type of
    # the counts (device-varying under shard_map without axis_name).
    bounds = body(0, bounds)
    lower, _ = jax.lax.fori_loop(1, 8 * dt.itemsize - 1, body, bounds)
    # Upper middle value: equal to the lower one unless n is even and exactly
    # n//2 entries are at or below it; then the smallest entry above it.
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
    values = (jax.lax.bitcast_convert_type(lower, dt)
              + jax.lax.bitcast_convert_type(upper, dt)) / 2
    for j, i in enumerate(idx):
      medians[i] = values[j]
  return medians


def _layer_medians(w_abs, g_abs, axis_name):
  """Medians of |w| and |g| per leaf, over the whole (sharded) layer."""
  meds = _medians_of_magnitudes(list(w_abs) + list(g_abs), axis_name)
  return meds[:len(w_abs)], meds[len(w_abs):]


def scale_by_median_curvature(
    weight_decay: float = 0.0,
    eps: float = 0.0,
    *,
    trust_ratio_mask: MaskOrFn = None,
    weight_decay_mask: MaskOrFn = None,
    axis_name: AxisName = None,
) -> optax.GradientTransformation:
  r"""Scales each layer's update by its median curvature radius (MCLR; no LR).

  Per leaf ``l`` (one layer's kernel, ...), with :math:`\beta` = ``weight_decay``
  and :math:`\epsilon` = ``eps``:

  .. math::

     R_l = \frac{\mathrm{med}|w_l|}
                {\mathrm{med}|g_l| + \beta\,\mathrm{med}|w_l| + \epsilon}
     \qquad u_l = R_l\,(g_l + \beta w_l)

  (curvature paper, eq. 20–22; the global LR :math:`\gamma` of eq. 21 is
  applied later, e.g. by :func:`legw.mclr`).  The paper's "median values" of
  :math:`w` and :math:`dL/dw` are taken here as medians of *magnitudes*,
  :math:`\mathrm{med}|w|` and :math:`\mathrm{med}|g|`: parameters and
  gradients are roughly symmetric about 0, so the median of the signed values
  is close to 0 and the signed ratio of eq. 20 would be noise, whereas the
  medians of magnitudes are the typical sizes eq. 17 (:math:`|w_i/g_i|`)
  needs.  :math:`R_l` is a ratio of medians, not the median of the ratios.

  * Failure cases (eq. 18–19): :math:`R_l = 1` where :math:`\mathrm{med}|w_l|
    = 0` (a zero or mostly-zero layer would otherwise never train) or
    :math:`\mathrm{med}|g_l| = 0` (e.g. more than half of the gradient entries
    exactly zero, where the ratio is undefined).  As the gradient median tends
    to 0 (very large batches, eq. 4) :math:`R_l` grows without bound; an
    ``eps > 0`` caps it at :math:`\mathrm{med}|w_l| / \epsilon`.
  * Leaves outside ``trust_ratio_mask`` get :math:`R_l = 1`; leaves outside
    ``weight_decay_mask`` get :math:`\beta = 0`.  Both default to
    :func:`legw.exclude_bias_and_norm`, as in :func:`legw.scale_by_lars`.
  * Medians are exact (equal to ``numpy.median``: the mean of the two middle
    values for an even size), in float32 (float64 for float64 leaves), and
    computed without sorting: the bit patterns of non-negative floats are
    ordered like their values, so the lower middle value is found by
    bisection on the bit pattern, 31 counting passes over the layer's
    :math:`|w|` and :math:`|g|` (63 for float64), plus one pass for the
    upper middle value.  That is O(32 n) memory-bound work instead of an
    O(n log n) sort (which XLA on CPU does slowly), but still several times
    the cost of LARS's two norms.  Updates come back in the update dtype.
  * ``axis_name``: under ``shard_map`` with every leaf sharded over that mesh
    axis, a median cannot be combined from per-shard medians.  Each
    bisection pass counts, on every shard, the entries at or below the
    current thresholds, and the counts of all masked leaves are ``psum``-ed
    in ONE stacked all-reduce per pass (32 small all-reduces and one
    ``pmin`` per step), so each median is that of the whole layer: exact,
    equal to the unsharded result, and no device ever gathers a layer.
    (Gathering the shards with ``lax.all_gather`` and taking ``jnp.median``
    would also be exact, but needs a copy of every layer on every device.)

  Args:
    weight_decay: :math:`\beta \ge 0`, L2 weight decay coefficient.
    eps: :math:`\epsilon \ge 0`, added to the denominator.
    trust_ratio_mask: which leaves get :math:`R_l`: ``None`` (default:
      :func:`legw.exclude_bias_and_norm`), a bool, a pytree of bools (or a
      prefix), or a callable of params.
    weight_decay_mask: same forms; which leaves get weight decay.
    axis_name: mesh axis name(s) over which parameters are sharded, or None.

  Returns:
    An ``optax.GradientTransformation`` whose ``update(updates, state,
    params)`` requires ``params`` (same tree as ``updates``).

  Raises:
    ValueError: at construction, for negative (or NaN) ``weight_decay`` or
      ``eps``; at update, when ``params`` is not given.
  """
  _check_family_args(weight_decay, eps)

  def init_fn(params):
    del params
    return ScaleByMedianCurvatureState()

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args  # e.g. obj_fn for other members of an optax.chain
    g_leaves, w_leaves, treedef, tr_mask, wd_mask = _leaves(
        "scale_by_median_curvature", updates, params, trust_ratio_mask, weight_decay_mask
    )
    decayed, w_abs, g_abs, index = [], [], [], []
    for g, w, use_tr, use_wd in zip(g_leaves, w_leaves, tr_mask, wd_mask):
      dt = stat_dtype(g.dtype)
      g32, w32 = g.astype(dt), w.astype(dt)
      decayed.append(g32 + weight_decay * w32 if use_wd else g32)
      if use_tr:
        index.append(len(w_abs))
        w_abs.append(jnp.abs(w32))
        g_abs.append(jnp.abs(g32))
      else:
        index.append(None)
    w_med, g_med = _layer_medians(w_abs, g_abs, axis_name)

    out = []
    for g, u, use_wd, k in zip(g_leaves, decayed, wd_mask, index):
      if k is None:
        out.append(u.astype(g.dtype))
        continue
      mw, mg = w_med[k], g_med[k]
      denom = mg + (weight_decay * mw if use_wd else 0.0) + eps
      ratio = mw / jnp.where(denom == 0, 1.0, denom)
      ratio = jnp.where((mw == 0) | (mg == 0), 1.0, ratio)
      out.append((ratio * u).astype(g.dtype))
    return jax.tree.unflatten(treedef, out), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def mclr(
    learning_rate: optax.ScalarOrSchedule,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    eps: float = 0.0,
    nesterov: bool = False,
    weight_decay_mask: MaskOrFn = None,
    trust_ratio_mask: MaskOrFn = None,
    axis_name: AxisName = None,
) -> optax.GradientTransformationExtraArgs:
  r"""SGD with the median-curvature learning rate (MCLR), curvature paper §4.2.

  Per leaf ``l``, with :math:`\gamma_t` = ``learning_rate`` at step t and
  :math:`R_l` from :func:`scale_by_median_curvature` (eq. 20–22):

  .. math::

     v_l \leftarrow m\,v_l + \gamma_t R_l\,(g_l + \beta w_l) \qquad
     w_l \leftarrow w_l - v_l

  Implemented as ``optax.chain(scale_by_median_curvature(...),
  optax.scale_by_learning_rate(learning_rate), optax.trace(momentum,
  nesterov))``, the shape of :func:`legw.lars`.  Leaves outside
  ``trust_ratio_mask`` (default: biases and norms, ``ndim <= 1``) get plain
  momentum SGD at :math:`\gamma_t`.  :math:`R_l` is of the order of
  :math:`\|w\|/\|g\|` (no trust coefficient), so :math:`\gamma` is typically
  about 1e-3 of a plain-SGD learning rate, as for LARS with
  ``trust_coefficient=0.001``.  The paper finds MCLR comparable to LARS at
  batch 1024 and worse at larger batches (gradients shrink, eq. 4, and the
  estimate fails, eq. 19).

  Args:
    learning_rate: :math:`\gamma_t \ge 0`, a float or an ``optax.Schedule``.
    momentum: :math:`m \in [0, 1)`.
    weight_decay: :math:`\beta \ge 0`.
    eps: :math:`\epsilon \ge 0`, added to the denominator of :math:`R_l`.
    nesterov: Nesterov momentum.
    weight_decay_mask: which leaves get weight decay; default
      :func:`legw.exclude_bias_and_norm`.
    trust_ratio_mask: which leaves get :math:`R_l`; same default.
    axis_name: mesh axis name(s) for whole-layer medians under ``shard_map``.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` requires params.

  Raises:
    ValueError: for a negative learning rate, momentum outside [0, 1), or a
      negative weight decay or eps (concrete numbers only, so
      ``optax.inject_hyperparams`` works); at update time without params.
  """
  _check_optimizer_args(learning_rate, momentum)
  _check_family_args(weight_decay, eps)
  return _chain(
      scale_by_median_curvature(
          weight_decay=weight_decay,
          eps=eps,
          trust_ratio_mask=trust_ratio_mask,
          weight_decay_mask=weight_decay_mask,
          axis_name=axis_name,
      ),
      learning_rate, momentum, nesterov,
  )


# ---------------------------------------------------------------------------
# PercentDelta (eq. 24).
# ---------------------------------------------------------------------------


class ScaleByPercentDeltaState(NamedTuple):
  """State of :func:`scale_by_percent_delta` (stateless)."""


def scale_by_percent_delta(
    weight_decay: float = 0.0,
    eps: float = 0.0,
    *,
    trust_ratio_mask: MaskOrFn = None,
    weight_decay_mask: MaskOrFn = None,
    axis_name: AxisName = None,
) -> optax.GradientTransformation:
  r"""Scales each layer's update by its PercentDelta rate (no LR).

  Per leaf ``l`` with :math:`n_l` entries where :math:`w \ne 0`:

  .. math::

     R_l = \frac{n_l}{\|g_l / w_l\|_1 + \beta n_l + \epsilon}
     \qquad u_l = R_l\,(g_l + \beta w_l)

  (curvature paper eq. 24, after Abuelhaija 2017; with :math:`\beta = 0`,
  :math:`\epsilon = 0` and no zero weights it is exactly
  :math:`\mathrm{size}(w)/\|g/w\|_1`, the harmonic mean over the layer of the
  eq. 17 radii :math:`|w_i/g_i|`).  Weight decay enters as in the other
  family members, :math:`R_l = 1/(\mathrm{mean}_i|g_i/w_i| + \beta)`.

  * Guard for :math:`w_i = 0` (eq. 18): such entries have no relative change;
    they are left out of both the L1 sum and the count :math:`n_l` (they
    still receive the layer's update).  :math:`R_l = 1` where the layer has no
    non-zero weight (:math:`n_l = 0`) or where the L1 sum is 0 (zero gradient
    on the non-zero weights, eq. 19).  Weights close to, but not exactly, 0
    dominate the sum and make :math:`R_l` small: that is the rule itself.
  * Masks, dtypes and defaults as :func:`scale_by_median_curvature`.
  * ``axis_name``: under ``shard_map`` with every leaf sharded over that mesh
    axis, the per-shard sums and counts of all leaves are ``psum``-ed in one
    stacked all-reduce, so :math:`R_l` is that of the whole layer.

  Args:
    weight_decay: :math:`\beta \ge 0`.
    eps: :math:`\epsilon \ge 0`, added to the denominator.
    trust_ratio_mask: which leaves get :math:`R_l` (default:
      :func:`legw.exclude_bias_and_norm`).
    weight_decay_mask: which leaves get weight decay (same default).
    axis_name: mesh axis name(s) over which parameters are sharded, or None.

  Returns:
    An ``optax.GradientTransformation``; ``update`` requires ``params``.

  Raises:
    ValueError: at construction, for negative ``weight_decay`` or ``eps``; at
      update, when ``params`` is not given.
  """
  _check_family_args(weight_decay, eps)

  def init_fn(params):
    del params
    return ScaleByPercentDeltaState()

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args  # e.g. obj_fn for other members of an optax.chain
    g_leaves, w_leaves, treedef, tr_mask, wd_mask = _leaves(
        "scale_by_percent_delta", updates, params, trust_ratio_mask, weight_decay_mask
    )
    decayed, sums, index = [], [], []
    for g, w, use_tr, use_wd in zip(g_leaves, w_leaves, tr_mask, wd_mask):
      dt = stat_dtype(g.dtype)
      g32, w32 = g.astype(dt), w.astype(dt)
      decayed.append(g32 + weight_decay * w32 if use_wd else g32)
      if use_tr:
        nonzero = w32 != 0
        rel = jnp.abs(g32) / jnp.where(nonzero, jnp.abs(w32), 1.0)
        index.append(len(sums))
        # One pass, nothing stored (see fused_sums).
        sums.extend(fused_sums([jnp.where(nonzero, rel, 0.0), nonzero.astype(dt)]))
      else:
        index.append(None)
    sums = psum_stacked(sums, axis_name)

    out = []
    for g, u, use_wd, k in zip(g_leaves, decayed, wd_mask, index):
      if k is None:
        out.append(u.astype(g.dtype))
        continue
      l1, n = sums[k], sums[k + 1]
      denom = l1 + (weight_decay * n if use_wd else 0.0) + eps
      ratio = n / jnp.where(denom == 0, 1.0, denom)
      ratio = jnp.where((n == 0) | (l1 == 0), 1.0, ratio)
      out.append((ratio * u).astype(g.dtype))
    return jax.tree.unflatten(treedef, out), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def percent_delta(
    learning_rate: optax.ScalarOrSchedule,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    eps: float = 0.0,
    nesterov: bool = False,
    weight_decay_mask: MaskOrFn = None,
    trust_ratio_mask: MaskOrFn = None,
    axis_name: AxisName = None,
) -> optax.GradientTransformationExtraArgs:
  r"""SGD with PercentDelta per-layer rates (curvature paper eq. 24).

  .. math::

     v_l \leftarrow m\,v_l + \gamma_t R_l\,(g_l + \beta w_l) \qquad
     w_l \leftarrow w_l - v_l

  with :math:`R_l` from :func:`scale_by_percent_delta`.  Implemented as
  ``optax.chain(scale_by_percent_delta(...),
  optax.scale_by_learning_rate(learning_rate), optax.trace(momentum,
  nesterov))``; leaves outside ``trust_ratio_mask`` (default: biases and
  norms) get plain momentum SGD at :math:`\gamma_t`.  With momentum 0 the
  mean relative change of a layer's (non-zero) weights per step is
  :math:`\gamma_t` when :math:`\beta = 0` — the "percent delta".

  Args:
    learning_rate: :math:`\gamma_t \ge 0`, a float or an ``optax.Schedule``.
    momentum: :math:`m \in [0, 1)`.
    weight_decay: :math:`\beta \ge 0`.
    eps: :math:`\epsilon \ge 0`, added to the denominator of :math:`R_l`.
    nesterov: Nesterov momentum.
    weight_decay_mask: which leaves get weight decay (default
      :func:`legw.exclude_bias_and_norm`).
    trust_ratio_mask: which leaves get :math:`R_l` (same default).
    axis_name: mesh axis name(s) for whole-layer sums under ``shard_map``.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` requires params.

  Raises:
    ValueError: for a negative learning rate, momentum outside [0, 1), or a
      negative weight decay or eps; at update time without params.
  """
  _check_optimizer_args(learning_rate, momentum)
  _check_family_args(weight_decay, eps)
  return _chain(
      scale_by_percent_delta(
          weight_decay=weight_decay,
          eps=eps,
          trust_ratio_mask=trust_ratio_mask,
          weight_decay_mask=weight_decay_mask,
          axis_name=axis_name,
      ),
      learning_rate, momentum, nesterov,
  )


# ---------------------------------------------------------------------------
# CBLR: per-parameter curvature radius with a Hutchinson Hessian diagonal.
# ---------------------------------------------------------------------------


class ScaleByCurvatureRadiusState(NamedTuple):
  """State of :func:`scale_by_curvature_radius`.

  Attributes:
    count: number of updates so far (int32).
    key: PRNG key for the next Rademacher probes.
    hessian_diag: the latest Hutchinson estimate of the Hessian diagonal,
      a tree like params in float32 (or wider); 0 on leaves outside the mask.
  """

  count: jax.Array
  key: jax.Array
  hessian_diag: Any


def hutchinson_diagonal(
    obj_fn: Callable[[Any], jax.Array],
    params: Any,
    key: jax.Array,
    num_probes: int = 1,
    mask: list[bool] | None = None,
) -> Any:
  r"""Hutchinson estimate of the Hessian diagonal of ``obj_fn`` at ``params``.

  .. math::

     \mathrm{diag}(H) \approx \frac{1}{K}\sum_{k=1}^K z_k \odot (H z_k),
     \qquad z_k \in \{-1, +1\}^P \text{ (Rademacher)},

  with :math:`Hz` computed exactly by forward-over-reverse differentiation,
  ``jax.jvp(jax.grad(obj_fn), (params,), (z,))``.  The estimate is unbiased;
  it is exact for any :math:`K` when :math:`H` is diagonal (a separable
  objective).  Probes are drawn in a ``lax.fori_loop`` (one HVP live at a
  time).

  Args:
    obj_fn: scalar objective of ``params`` alone.
    params: the pytree to differentiate at.
    key: PRNG key; probe ``k`` uses ``fold_in(key, k)``.
    num_probes: :math:`K \ge 1`.
    mask: optional list of bools, one per leaf of ``params``: leaves with
      ``False`` get a zero probe and a zero estimate (their block is skipped).

  Returns:
    A tree like ``params`` in float32 (or wider).

  Raises:
    ValueError: for ``num_probes`` not an integer >= 1, or a ``mask`` whose
      length is not the number of leaves of ``params``.

  Source: Hutchinson's trace estimator (Hutchinson, 1989) applied to the
  diagonal (Bekas, Kokiopoulou & Saad, 2007); it supplies the second
  derivative in the curvature radius of the curvature paper, eq. 9-11 (used
  by :func:`scale_by_curvature_radius`).
  """
  _check_positive_int("num_probes", num_probes)
  leaves, treedef = jax.tree.flatten(params)
  if mask is None:
    mask = [True] * len(leaves)
  elif len(mask) != len(leaves):
    raise ValueError(f"mask must have one bool per leaf of params ({len(leaves)}), "
                     f"got {len(mask)}.")

  def one_probe(k):
    keys = jax.random.split(jax.random.fold_in(key, k), len(leaves))
    z = [
        jax.random.rademacher(kk, p.shape, p.dtype) if m else jnp.zeros_like(p)
        for kk, p, m in zip(keys, leaves, mask)
    ]
    hz = jax.jvp(jax.grad(obj_fn), (params,), (jax.tree.unflatten(treedef, z),))[1]
    hz = treedef.flatten_up_to(hz)
    return [
        (zz.astype(stat_dtype(p.dtype)) * h.astype(stat_dtype(p.dtype)))
        if m else jnp.zeros(p.shape, stat_dtype(p.dtype))
        for zz, h, p, m in zip(z, hz, leaves, mask)
    ]

  if num_probes == 1:
    est = one_probe(0)
  else:
    zero = [jnp.zeros(p.shape, stat_dtype(p.dtype)) for p in leaves]
    total = jax.lax.fori_loop(
        0, num_probes, lambda k, acc: [a + e for a, e in zip(acc, one_probe(k))], zero
    )
    est = [t / num_probes for t in total]
  return jax.tree.unflatten(treedef, est)


def scale_by_curvature_radius(
    weight_decay: float = 0.0,
    max_radius: float = 100.0,
    *,
    num_probes: int = 1,
    update_every: int = 1,
    key: jax.Array | int = 0,
    trust_ratio_mask: MaskOrFn = None,
    weight_decay_mask: MaskOrFn = None,
    axis_name: AxisName = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Scales each parameter by its loss-curve curvature radius (CBLR; no LR).

  Per parameter :math:`i` (curvature paper eq. 9–11), with
  :math:`u = g + \beta w` and :math:`\hat h` a Hutchinson estimate of the
  Hessian diagonal of the objective:

  .. math::

     R_i = \min\!\Big(\frac{(1 + u_i^2)^{3/2}}{|\hat h_i + \beta|},\;
                      R_{\max}\Big)
     \qquad \text{update}_i = R_i\,u_i

  (:math:`\beta` = ``weight_decay``: the curvature is that of the regularised
  objective :math:`L + \tfrac{\beta}{2}\|w\|^2`; :math:`R_{\max}` =
  ``max_radius``).  The global LR :math:`\gamma` of eq. 10 is applied later,
  e.g. by :func:`legw.cblr`.  On a separable quadratic
  :math:`\sum_i a_i (w_i - b_i)^2` Hutchinson is exact, :math:`\hat h_i =
  2a_i`, and the update is :math:`(1 + g_i^2)^{3/2} g_i / (2a_i)`.

  * Clamp: flat or noisy directions (:math:`\hat h_i \to 0`, or a one-probe
    estimate near 0) would give unbounded steps; :math:`R_i` is capped at
    ``max_radius`` (default 100, i.e. a per-parameter LR of at most
    :math:`100\gamma`), and :math:`R_i = R_{\max}` where
    :math:`\hat h_i + \beta = 0` exactly.  Negative curvature uses
    :math:`|\hat h_i|`, as eq. 9.
  * The objective is passed to ``update`` as the keyword ``obj_fn``, a
    function of ``params`` alone returning a scalar (as
    ``optax.contrib.sophia``), e.g. ``obj_fn=lambda p: loss(p, batch)``.
    ``optax.chain`` forwards it (see :func:`legw.cblr`).
  * Hutchinson (:func:`hutchinson_diagonal`): ``num_probes`` Rademacher probes
    per estimate, each one Hessian-vector product (``jax.jvp`` of
    ``jax.grad``, about 2-3 times the cost of a gradient); the estimate
    is refreshed every ``update_every`` steps (steps 0, k, 2k, ...; a
    ``lax.cond`` in between reuses ``state.hessian_diag``).  The PRNG key is
    in the state and split every step.
  * Leaves outside ``trust_ratio_mask`` (default
    :func:`legw.exclude_bias_and_norm`) get :math:`R_i = 1` and a zero probe;
    leaves outside ``weight_decay_mask`` get :math:`\beta = 0`.
  * ``axis_name``: CBLR is per parameter, so no statistic is reduced.  Under
    ``shard_map`` with parameters sharded over that axis, the device index is
    folded into the probe key so that shards of one layer draw independent
    signs (identical signs on every shard would bias the estimate).
    ``obj_fn`` must then be the loss whose gradient w.r.t. the local shards is
    the right one (the usual ``shard_map`` autodiff rules).  With parameters
    *replicated* (pure data parallelism) do not pass ``axis_name``: make
    ``obj_fn`` the global loss (``lax.pmean`` of the local loss) so every
    device computes the same estimate.

  Args:
    weight_decay: :math:`\beta \ge 0`.
    max_radius: :math:`R_{\max} > 0`, the cap on :math:`R_i`.
    num_probes: Rademacher probes per estimate (integer >= 1).
    update_every: re-estimate the Hessian diagonal every this many steps
      (integer >= 1).
    key: PRNG key (or an integer seed) for the probes.
    trust_ratio_mask: which leaves get :math:`R_i`.
    weight_decay_mask: which leaves get weight decay.
    axis_name: mesh axis name(s) over which parameters are sharded, or None.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose ``update(updates,
    state, params, obj_fn=...)`` requires ``params`` and ``obj_fn``.

  Raises:
    ValueError: at construction, for negative ``weight_decay``,
      ``max_radius <= 0``, or ``num_probes``/``update_every`` not integers
      >= 1; at update, when ``params`` or ``obj_fn`` is not given.
  """
  _validation.check_range("weight_decay", weight_decay, low=0.0)
  _validation.check_range("max_radius", max_radius, low=0.0, low_inclusive=False)
  _check_positive_int("num_probes", num_probes)
  _check_positive_int("update_every", update_every)

  def init_fn(params):
    k = jax.random.PRNGKey(key) if isinstance(key, numbers.Integral) else key
    return ScaleByCurvatureRadiusState(
        count=jnp.zeros([], jnp.int32),
        key=k,
        hessian_diag=jax.tree.map(lambda p: jnp.zeros(p.shape, stat_dtype(p.dtype)), params),
    )

  def update_fn(updates, state, params=None, *, obj_fn=None, **extra_args):
    del extra_args
    g_leaves, w_leaves, treedef, tr_mask, wd_mask = _leaves(
        "scale_by_curvature_radius", updates, params, trust_ratio_mask, weight_decay_mask
    )
    if obj_fn is None:
      raise ValueError(
          "scale_by_curvature_radius needs the objective: call "
          "update(updates, state, params, obj_fn=lambda p: loss(p, batch))."
      )
    next_key, probe_key = jax.random.split(state.key)
    if axis_name is not None:
      probe_key = jax.random.fold_in(probe_key, jax.lax.axis_index(axis_name))

    def estimate():
      return hutchinson_diagonal(obj_fn, params, probe_key, num_probes, tr_mask)

    if update_every == 1:
      h_tree = estimate()
    else:
      h_tree = jax.lax.cond(
          state.count % update_every == 0, estimate, lambda: state.hessian_diag
      )
    h_leaves = treedef.flatten_up_to(h_tree)

    out = []
    for g, w, h, use_tr, use_wd in zip(g_leaves, w_leaves, h_leaves, tr_mask, wd_mask):
      dt = stat_dtype(g.dtype)
      u = g.astype(dt) + weight_decay * w.astype(dt) if use_wd else g.astype(dt)
      if not use_tr:
        out.append(u.astype(g.dtype))
        continue
      curv = jnp.abs(h.astype(dt) + weight_decay) if use_wd else jnp.abs(h.astype(dt))
      radius = (1.0 + u * u) ** 1.5 / jnp.where(curv == 0, 1.0, curv)
      radius = jnp.where(curv == 0, max_radius, jnp.minimum(radius, max_radius))
      out.append((radius * u).astype(g.dtype))
    new_state = ScaleByCurvatureRadiusState(
        count=optax.safe_increment(state.count), key=next_key, hessian_diag=h_tree
    )
    return jax.tree.unflatten(treedef, out), new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def cblr(
    learning_rate: optax.ScalarOrSchedule,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    max_radius: float = 100.0,
    num_probes: int = 1,
    update_every: int = 1,
    key: jax.Array | int = 0,
    nesterov: bool = False,
    weight_decay_mask: MaskOrFn = None,
    trust_ratio_mask: MaskOrFn = None,
    axis_name: AxisName = None,
) -> optax.GradientTransformationExtraArgs:
  r"""SGD with curvature-based per-parameter rates (CBLR, curvature paper eq. 9–11).

  .. math::

     v_i \leftarrow m\,v_i + \gamma_t R_i\,(g_i + \beta w_i) \qquad
     w_i \leftarrow w_i - v_i

  with :math:`R_i` from :func:`scale_by_curvature_radius` (Hutchinson Hessian
  diagonal, clamped at ``max_radius``).  Implemented as
  ``optax.chain(scale_by_curvature_radius(...),
  optax.scale_by_learning_rate(learning_rate), optax.trace(momentum,
  nesterov))``; ``optax.chain`` forwards the ``obj_fn`` keyword to the first
  transform::

     opt = legw.cblr(0.1)
     updates, state = opt.update(grads, state, params,
                                 obj_fn=lambda p: loss_fn(p, batch))

  Leaves outside ``trust_ratio_mask`` (default: biases and norms) get plain
  momentum SGD at :math:`\gamma_t`.  Each step costs ``num_probes``
  Hessian-vector products every ``update_every`` steps on top of the
  gradient.  With ``optax.inject_hyperparams``, the integers that shape the
  computation must be static: ``optax.inject_hyperparams(legw.cblr,
  static_args=("num_probes", "update_every", "key"))``.

  Args:
    learning_rate: :math:`\gamma_t \ge 0`, a float or an ``optax.Schedule``.
    momentum: :math:`m \in [0, 1)`.
    weight_decay: :math:`\beta \ge 0`.
    max_radius: cap on :math:`R_i` (> 0).
    num_probes: Rademacher probes per Hessian estimate (integer >= 1).
    update_every: steps between Hessian estimates (integer >= 1).
    key: PRNG key or integer seed for the probes.
    nesterov: Nesterov momentum.
    weight_decay_mask: which leaves get weight decay.
    trust_ratio_mask: which leaves get :math:`R_i`.
    axis_name: see :func:`scale_by_curvature_radius`.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` requires params
    and the keyword ``obj_fn``.

  Raises:
    ValueError: for a negative learning rate, momentum outside [0, 1),
      negative weight decay, ``max_radius <= 0``, or ``num_probes`` /
      ``update_every`` not integers >= 1; at update time without params or
      ``obj_fn``.
  """
  _check_optimizer_args(learning_rate, momentum)
  return _chain(
      scale_by_curvature_radius(
          weight_decay=weight_decay,
          max_radius=max_radius,
          num_probes=num_probes,
          update_every=update_every,
          key=key,
          trust_ratio_mask=trust_ratio_mask,
          weight_decay_mask=weight_decay_mask,
          axis_name=axis_name,
      ),
      learning_rate, momentum, nesterov,
  )
