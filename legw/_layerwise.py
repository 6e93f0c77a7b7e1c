r"""One core for the layer-wise family: LARS, MCLR, PercentDelta and LAMB.

A member is a :data:`Statistic`, the sizes :math:`(W_l, G_l)` of each layer; the core applies
:math:`R_l = \eta W_l / (G_l + \beta W_l + \epsilon)` and holds the rest (masks, decay, sharding).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from legw import _diagnostics, _validation
from legw._masks import (
  LayerAxis,
  MaskOrFn,
  exclude_bias_and_norm,
  per_layer_shapes,
  resolve_layer_axis,
  resolve_mask,
)
from legw._reduce import AxisName, is_trainable, psum_stacked, real_dtype, stat_dtype

# (ws, gs, betas, axis_name) -> [(W_l, G_l)], one pair per leaf.  ws and gs are
# the trust-ratio leaves in their compute dtype (stat_dtype); betas[i] is None
# (paper form, or no decay on that leaf) or the decay of the combined form,
# whose G_l is the statistic of g + beta * w (see `combined_decay`).
Statistic = Callable[
  [Sequence[jax.Array], Sequence[jax.Array], Sequence[Any], AxisName],
  list[tuple[jax.Array, jax.Array]],
]

DENOMINATORS = ("paper", "combined")


def check_args(weight_decay, eps, denominator="paper"):
  """Construction-time checks shared by every member."""
  _validation.check_weight_decay(weight_decay)
  _validation.check_range("eps", eps, low=0.0)
  _validation.check_choice("denominator", denominator, DENOMINATORS)


def sums_statistic(
  partials: Callable[..., Sequence[jax.Array]], finish: Callable[..., tuple[jax.Array, jax.Array]]
) -> Statistic:
  """A statistic of sums over the layer (LARS, PercentDelta): ``partials(w, g, beta)`` per
  leaf, ``psum``-ed for all leaves as one vector, then ``finish(*sums)`` gives ``(W, G)``."""
  # Stacked leaves: `partials` is vmapped over the layer axis (one reduction giving L sums)
  # and called with stacked=True: XLA's SPMD partitioner all-gathers the operands of a
  # variadic reduce that keeps an axis when they are sharded along a reduced one (FSDP of a
  # stack; tests/test_tpu_compile.py::test_stacked_layers_fsdp), so a member that fuses its
  # sums into one variadic reduce must not do so for a stack.

  def per_leaf(w, g, b, ax):
    if ax is None:
      return tuple(partials(w, g, b))
    per_layer = lambda w1, g1: tuple(partials(w1, g1, b, stacked=True))
    return tuple(jax.vmap(per_layer, in_axes=(ax, ax))(w, g))

  def statistic(ws, gs, betas, axis_name, layer_axes=None):
    if layer_axes is None:
      layer_axes = [None] * len(ws)
    parts = [per_leaf(w, g, b, ax) for w, g, b, ax in zip(ws, gs, betas, layer_axes)]
    flat = _psum_concat([s for p in parts for s in p], axis_name)
    out, k = [], 0
    for p in parts:
      out.append(finish(*flat[k : k + len(p)]))
      k += len(p)
    return out

  statistic.takes_layer_axes = True  # type: ignore[attr-defined]
  return statistic


def _psum_concat(values: list[jax.Array], axis_name: AxisName) -> list[jax.Array]:
  """:func:`psum_stacked` for scalars and per-layer vectors: one all-reduce."""
  if axis_name is None or not values:
    return values
  if all(jnp.ndim(v) == 0 for v in values):
    return psum_stacked(values, axis_name)
  dtype = jnp.result_type(*values)
  sizes = [int(jnp.size(v)) for v in values]
  total = jax.lax.psum(jnp.concatenate([jnp.ravel(v).astype(dtype) for v in values]), axis_name)
  out, k = [], 0
  for v, n in zip(values, sizes):
    out.append(total[k : k + n].reshape(jnp.shape(v)).astype(v.dtype))
    k += n
  return out


def combined_decay(g: jax.Array, w: jax.Array, beta: Any, anchor: jax.Array) -> jax.Array:
  """g + beta*w for an XLA:CPU reduction to read, recomputed inside it (never stored)."""
  # Written as g - (-beta)*w (equal: rounding is sign-symmetric) with -beta a per-leaf value
  # XLA cannot fold: `anchor` is a never-negative statistic of the leaf (e.g. ||w||^2; NaN
  # keeps -beta). A constant -beta would be broadcast once per leaf shape and stored by
  # XLA:CPU as a parameter-sized temporary read by the reductions of all leaves of that
  # shape (tests/test_conformance.py::test_step_stores_no_parameter_sized_temporary).
  # XLA:CPU only (`_lars_partials`): elsewhere the anchor makes this reduction wait for
  # `anchor`'s all-reduce under FSDP, two all-reduces a step instead of one
  # (tests/test_tpu_compile.py counts them).
  dt = real_dtype(g.dtype)
  neg_beta = jnp.where(anchor < 0, jnp.zeros((), dt), -jnp.asarray(beta, dt))
  return g - neg_beta * w


def _rate(size_w, size_g, beta, *, trust_coefficient, eps, paper_decay):
  """R_l = eta W / (G + beta W + eps); 1 where W = 0 or the denominator is 0."""
  denom = size_g + beta * size_w + eps if paper_decay else size_g + eps
  fallback = (size_w == 0) | (denom == 0)
  rate = trust_coefficient * size_w / jnp.where(denom == 0, 1, denom)
  return jnp.where(fallback, jnp.ones((), rate.dtype), rate), fallback


def _clip_factor(rate, fallback, gamma):
  """apex LARC clip: the update scaled by min(R / gamma, 1), a rate min(R, gamma) after the
  learning rate; a fallback layer keeps 1."""
  gamma = jnp.asarray(gamma, rate.dtype)
  below = rate < gamma  # implies gamma > 0
  return jnp.where(below & ~fallback, rate / jnp.where(below, gamma, 1), 1)


def _gather_slices(flat_sizes, slices):
  """The (W, G) of each leaf from those of its slices: vectors for a stack."""
  sizes, pos = [], 0
  for n in slices:
    if n is None:
      sizes.append(flat_sizes[pos])
      pos += 1
    else:
      layer = flat_sizes[pos : pos + n]
      sizes.append((jnp.stack([a for a, _ in layer]), jnp.stack([b for _, b in layer])))
      pos += n
  return sizes


def layerwise_leaves(
  g_leaves,
  w_leaves,
  tr_mask,
  wd_mask,
  statistic: Statistic,
  *,
  trust_coefficient,
  weight_decay,
  eps,
  denominator,
  clip_lr,
  axis_name,
  layer_axes=None,
):
  """The family's update on flat lists of leaves, and per leaf ``None`` (off the trust ratio)
  or the ``(factor, W, G)`` it applied; a stacked leaf's L slices get one rate each."""
  # Nothing of parameter size is materialised here: g + beta*w is written so that XLA
  # recomputes it inside each fusion that reads it.
  decayed: list[jax.Array | None] = []
  index: list[int | None] = []
  ws: list[jax.Array] = []
  gs: list[jax.Array] = []
  betas: list[Any] = []
  if layer_axes is None:
    layer_axes = [None] * len(g_leaves)
  # A statistic that takes layer axes reduces each slice itself (sums: one
  # vmapped reduction per stack); any other is handed the L slices.
  batched = getattr(statistic, "takes_layer_axes", False)
  stat_axes: list[int | None] = []  # per statistic input: its layer axis (batched)
  slices: list[int | None] = []  # per trust-ratio leaf: its number of layers, or None
  for g, w, use_tr, use_wd, ax in zip(g_leaves, w_leaves, tr_mask, wd_mask, layer_axes):
    if not (is_trainable(g) and is_trainable(w)):
      decayed.append(None)
      index.append(None)
      continue
    g, w = jnp.asarray(g), jnp.asarray(w)
    dt = stat_dtype(g.dtype)
    g32, w32 = g.astype(dt), w.astype(dt)
    decayed.append(g32 + weight_decay * w32 if use_wd else g32)
    if not use_tr:
      index.append(None)
      continue
    index.append(len(slices))
    beta_stat = weight_decay if use_wd and denominator == "combined" else None
    if ax is None or batched:
      slices.append(None)
      ws.append(w32)
      gs.append(g32)
      betas.append(beta_stat)
      stat_axes.append(ax)
      continue
    n = w32.shape[ax]
    slices.append(n)
    ws.extend(jax.lax.index_in_dim(w32, i, ax, keepdims=False) for i in range(n))
    gs.extend(jax.lax.index_in_dim(g32, i, ax, keepdims=False) for i in range(n))
    betas.extend([beta_stat] * n)
  if not ws:
    sizes = []
  elif batched:
    # takes_layer_axes: the statistic has a layer_axes keyword (sums_statistic).
    sizes = statistic(ws, gs, betas, axis_name, layer_axes=stat_axes)  # type: ignore[call-arg]
  else:
    sizes = _gather_slices(statistic(ws, gs, betas, axis_name), slices)

  out = []
  applied: list[tuple[jax.Array, jax.Array, jax.Array] | None] = []
  for g, u, use_wd, k, ax in zip(g_leaves, decayed, wd_mask, index, layer_axes):
    if u is None:  # not floating: passed through
      out.append(g)
      applied.append(None)
      continue
    out_dtype = jnp.result_type(g)
    if k is None:
      out.append(u.astype(out_dtype))
      applied.append(None)
      continue
    size_w, size_g = sizes[k]
    beta = weight_decay if use_wd else 0.0
    rate, fallback = _rate(
      size_w,
      size_g,
      beta,
      trust_coefficient=trust_coefficient,
      eps=eps,
      paper_decay=denominator == "paper",
    )
    if clip_lr is not None:
      rate = _clip_factor(rate, fallback, clip_lr)
    applied.append((rate, size_w, size_g))
    if ax is not None:  # one rate per layer, along the layer axis
      rate = jnp.reshape(rate, [-1 if d == ax else 1 for d in range(u.ndim)])
    out.append((rate * u).astype(out_dtype))
  return out, applied


def _stats_tree(treedef, leaves):
  """A tree of ``treedef`` from per-leaf values, ``optax.MaskedNode()`` for ``None``."""
  return jax.tree.unflatten(treedef, [optax.MaskedNode() if v is None else v for v in leaves])


def scale_by_layerwise_rate(
  statistic: Statistic,
  *,
  name: str,
  state_cls: type,
  trust_coefficient: Any = 1.0,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  eps: Any = 0.0,
  denominator: str = "paper",
  clip_learning_rate: optax.ScalarOrSchedule | None = None,
  trust_ratio_mask: MaskOrFn = None,
  weight_decay_mask: MaskOrFn = None,
  axis_name: AxisName = None,
  layer_axis: LayerAxis = None,
  keep_stats: bool = False,
) -> optax.GradientTransformationExtraArgs:
  """The family's transform for one ``statistic``; its state is ``state_cls(count=...)`` when a
  hyperparameter is a schedule, a :class:`LayerwiseStatsState` with ``keep_stats``."""
  _validation.check_range("trust_coefficient", trust_coefficient, low=0.0, low_inclusive=False)
  check_args(weight_decay, eps, denominator)
  _validation.check_bool("keep_stats", keep_stats)
  scheduled = callable(weight_decay) or callable(clip_learning_rate)

  def resolve(params):
    """The layer axes and the two masks, one per leaf (a bad spec raises)."""
    axes = resolve_layer_axis(layer_axis, params)
    default = lambda p: exclude_bias_and_norm(per_layer_shapes(p, axes))
    tr_mask = resolve_mask(trust_ratio_mask, params, default)
    return axes, tr_mask, resolve_mask(weight_decay_mask, params, default)

  def init_stats(params):
    """Zeros of the dtype and shape each trust-ratio leaf's statistics will have."""
    w_leaves, treedef = jax.tree.flatten(params)
    axes, tr_mask, _ = resolve(params)
    zeros: list[jax.Array | None] = []
    for w, use_tr, ax in zip(w_leaves, tr_mask, axes):
      if not (use_tr and is_trainable(w)):
        zeros.append(None)
        continue
      shape = () if ax is None else (jnp.shape(w)[ax],)
      zeros.append(jnp.zeros(shape, real_dtype(jnp.result_type(w))))
    tree = _stats_tree(treedef, zeros)
    return _diagnostics.LayerwiseStatsState(
      count=jnp.zeros([], jnp.int32), trust_ratio=tree, weight_size=tree, grad_size=tree
    )

  def init_fn(params):
    # Where the parameters are first seen: a bad mask or layer_axis (and a
    # legw.path_mask pattern that matches nothing) raises here, as
    # optax.masked calls its mask at init.
    resolve(params)
    if keep_stats:
      return init_stats(params)
    if scheduled:
      return state_cls(count=jnp.zeros([], jnp.int32))
    return optax.EmptyState()

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args  # e.g. obj_fn for other members of an optax.chain
    if params is None:
      raise ValueError(f"{name} needs the current parameters: call update(updates, state, params).")
    at = lambda v: v(state.count) if callable(v) else v
    g_leaves, treedef = jax.tree.flatten(updates)
    w_leaves = treedef.flatten_up_to(params)  # type: ignore[attr-defined]  # missing from jax's stubs
    axes, tr_mask, wd_mask = resolve(params)
    beta = at(weight_decay)
    if _validation.is_concrete_number(beta) and beta == 0:
      wd_mask = [False] * len(wd_mask)  # nothing to add (as optax.add_decayed_weights)
    out, applied = layerwise_leaves(
      g_leaves,
      w_leaves,
      tr_mask,
      wd_mask,
      statistic,
      trust_coefficient=trust_coefficient,
      weight_decay=beta,
      eps=eps,
      denominator=denominator,
      clip_lr=at(clip_learning_rate),
      axis_name=axis_name,
      layer_axes=axes,
    )
    if keep_stats:
      # Each value in the dtype init gave it (a traced hyperparameter may
      # promote the rate), so the state's types never change between steps.
      like = treedef.flatten_up_to(state.trust_ratio)  # type: ignore[attr-defined]
      fields = [
        _stats_tree(
          treedef,
          [
            None if a is None else jnp.asarray(a[i]).astype(z.dtype).reshape(z.shape)
            for a, z in zip(applied, like)
          ],
        )
        for i in range(3)
      ]
      state = _diagnostics.LayerwiseStatsState(optax.safe_increment(state.count), *fields)
    elif scheduled:
      state = state_cls(count=optax.safe_increment(state.count))
    return jax.tree.unflatten(treedef, out), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
