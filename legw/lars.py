"""LARS: layer-wise adaptive rate scaling, exactly as the paper's Algorithm 1.

Sources:
  * You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks"
    (papers/lars-layer-wise-adaptive-rate-scaling.txt), §4, eq. 4–6 and
    Algorithm 1.
  * You, Gitman & Ginsburg, "Scaling SGD Batch Size to 32K for ImageNet
    Training" (papers/lars-scaling-sgd-batch-32k-tech-report.txt), §3.2.3.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from legw import _validation
from legw._reduce import AxisName, psum_stacked, stat_dtype, sum_of_squares
from legw.masks import MaskOrFn, exclude_bias_and_norm, resolve_mask

DENOMINATORS = ("paper", "combined")


class ScaleByLarsState(NamedTuple):
  """State of :func:`scale_by_lars` (the trust ratio itself is stateless)."""


def _check_lars_args(trust_coefficient, weight_decay, eps, denominator):
  _validation.check_range("trust_coefficient", trust_coefficient, low=0.0, low_inclusive=False)
  _validation.check_range("weight_decay", weight_decay, low=0.0)
  _validation.check_range("eps", eps, low=0.0)
  _validation.check_choice("denominator", denominator, DENOMINATORS)


def _ratio(w_sq, g_sq, use_wd, *, trust_coefficient, weight_decay, eps, denominator, clip):
  """lambda_l from the squared norms of w and of g (or of g + beta*w)."""
  w_norm, g_norm = jnp.sqrt(w_sq), jnp.sqrt(g_sq)
  if denominator == "paper" and use_wd:
    denom = g_norm + weight_decay * w_norm + eps
  else:
    denom = g_norm + eps
  ratio = trust_coefficient * w_norm / denom
  # Tested on the squares (sqrt(x) == 0 iff x == 0): the update fusion then
  # takes one scalar per leaf, and XLA computes it in one tiny fusion.
  ratio = jnp.where((w_sq == 0) | (g_sq == 0), 1.0, ratio)
  if clip:
    ratio = jnp.minimum(ratio, 1.0)
  return ratio


def _lars_leaves(g_leaves, w_leaves, tr_mask, wd_mask, *, trust_coefficient,
                 weight_decay, eps, denominator, clip, axis_name):
  """:func:`scale_by_lars` on flat lists of leaves; returns the scaled updates.

  Memory traffic (what an optimizer step costs): per trust-ratio leaf, two
  reductions read w and g once each; the update (fused by XLA with the
  learning rate, the momentum and ``apply_updates``) reads them again.  Two
  things keep it at that:

  * nothing of parameter size is materialised: the reduction inputs are the
    leaves themselves, or, for ``denominator="combined"``, g + beta*w written
    so that XLA recomputes it inside the reduction instead of storing it
    (a stored temporary costs a write, a read and, on CPU, page faults);
  * the per-leaf scalar work is one small fusion (the ratio), not one op per
    arithmetic step.

  All squared norms go through one stacked ``psum`` when ``axis_name`` is
  given; under ``jax.jit`` with sharded arrays, XLA's SPMD partitioner
  inserts the all-reduces and combines the independent per-leaf ones.
  """
  hp = dict(trust_coefficient=trust_coefficient, weight_decay=weight_decay,
            eps=eps, denominator=denominator, clip=clip)
  decayed, sums, index = [], [], []
  for g, w, use_tr, use_wd in zip(g_leaves, w_leaves, tr_mask, wd_mask):
    dt = stat_dtype(g.dtype)
    g32, w32 = g.astype(dt), w.astype(dt)
    decayed.append(g32 + weight_decay * w32 if use_wd else g32)
    if not use_tr:
      index.append(None)
      continue
    index.append(len(sums))
    sums.append(sum_of_squares(w32))
    if denominator == "combined" and use_wd:
      # g - (-beta)*w == g + beta*w exactly (rounding is sign-symmetric), but
      # XLA does not merge it with `decayed`: each fusion recomputes it.  And
      # -beta is a per-leaf value XLA cannot fold (||w||^2 is never < 0; NaN
      # keeps -beta): a constant would be broadcast once per leaf shape,
      # shared by the reductions of all leaves of that shape, and stored by
      # XLA:CPU as a parameter-sized temporary that each of them reads
      # (24 MB on ResNet-50: benchmarks/step_cost.py; tests/test_conformance.py).
      neg_beta = jnp.where(sums[-1] < 0, jnp.zeros((), dt), jnp.asarray(-weight_decay, dt))
      sums.append(sum_of_squares(g32 - neg_beta * w32))
    else:
      sums.append(sum_of_squares(g32))
  sums = psum_stacked(sums, axis_name)

  out = []
  for g, u, use_wd, k in zip(g_leaves, decayed, wd_mask, index):
    if k is None:
      out.append(u.astype(g.dtype))
    else:
      ratio = _ratio(sums[k], sums[k + 1], use_wd, **hp)
      out.append((ratio * u).astype(g.dtype))
  return out


def scale_by_lars(
    trust_coefficient: float = 0.001,
    weight_decay: float = 0.0,
    eps: float = 0.0,
    *,
    denominator: str = "paper",
    clip: bool = False,
    trust_ratio_mask: MaskOrFn = None,
    weight_decay_mask: MaskOrFn = None,
    axis_name: AxisName = None,
) -> optax.GradientTransformation:
  r"""Scales each layer's update by its LARS trust ratio (no LR, no momentum).

  Per leaf ``l`` of the parameter tree (one leaf = one layer's kernel, bias, ...):

  .. math::

     \lambda_l = \eta \frac{\|w_l\|}{\|g_l\| + \beta\|w_l\| + \epsilon}
     \qquad u_l = \lambda_l (g_l + \beta w_l)

  with :math:`\eta` = ``trust_coefficient`` and :math:`\beta` = ``weight_decay``
  (LARS paper, eq. 6 and Algorithm 1; tech report §3.2.3).

  * ``denominator="paper"`` (default) is the formula above.
    ``denominator="combined"`` uses :math:`\|g_l + \beta w_l\| + \epsilon`
    instead, which is what ``optax.lars`` (via ``optax.scale_by_trust_ratio``
    after ``add_decayed_weights``) computes. The two agree when
    :math:`\beta = 0`; with weight decay the paper's denominator is the sum
    of the two norms, never smaller than the combined one, so its trust ratio
    is smaller or equal.
  * :math:`\lambda_l = 1` where :math:`\|w_l\| = 0` or the gradient norm (the
    norm in the denominator's first term) is 0, so a zero layer still trains.
  * ``clip=True`` is the LARC "clip" mode (NVIDIA apex): the local rate is
    capped, :math:`\min(\lambda_l, 1)`, so the effective rate after the global
    learning rate :math:`\gamma_t` is :math:`\min(\lambda_l\gamma_t, \gamma_t)`.
  * Leaves outside ``trust_ratio_mask`` get :math:`\lambda_l = 1`; leaves
    outside ``weight_decay_mask`` get :math:`\beta = 0`.  By default both
    masks are :func:`legw.exclude_bias_and_norm` (leaves with ``ndim <= 1``
    get neither), the practice of the MLPerf LARS submissions.
  * Norms are accumulated in float32 (float64 for float64 leaves), whatever
    the parameter dtype; updates come back in the update dtype.  A float32
    sum of squares is exact to rounding for a layer with norm below about
    1.8e19 whose norm does not come mostly from elements below about 1e-19
    (their squares flush to zero).  Outside that range: an overflowing
    ``||g||`` gives :math:`\lambda_l = 0` (the layer skips the step), an
    overflowing ``||w||`` gives a non-finite update (guard with
    ``optax.apply_if_finite``), and a layer whose elements are all below
    about 1e-19 counts as zero (:math:`\lambda_l = 1`).  An exact fallback
    (power-of-two rescaling under ``lax.cond``) was measured and rejected: it
    makes every ordinary step slower, by about 0.2x of a momentum-SGD step
    on ResNet-50 on a 2-core CPU (``python -m benchmarks.optimizer_step
    --ablations``, see ``benchmarks/README_optimizer_step.md``).
  * Sharding: the norms are always those of the whole layer.

    - ``jax.jit`` with sharded arrays (``NamedSharding``: FSDP, tensor
      parallel): nothing to pass; XLA's partitioner all-reduces the partial
      sums, and combines those of all layers into one all-reduce per mesh
      axis (not one per layer).
    - ``shard_map`` (or ``pmap``) where each device holds a shard of every
      parameter: pass the mesh axis as ``axis_name``; the squared norms of
      all leaves are ``psum``-ed in one stacked all-reduce.  Every leaf must
      be sharded over that axis: a leaf replicated over it would be counted
      once per device.
    - Replicated parameters (``pmap`` or ``shard_map`` data parallelism,
      gradients averaged with ``lax.pmean``): do not pass ``axis_name``.
  * Cost: two reductions (``||w||``, ``||g||``) per trust-ratio leaf, which
    read w and g once more than momentum SGD, and one tiny scalar fusion; no
    parameter-sized temporary (see ``benchmarks/optimizer_step.py``).

  Args:
    trust_coefficient: :math:`\eta > 0`, the LARS coefficient (paper: 0.001).
    weight_decay: :math:`\beta \ge 0`, L2 weight decay coefficient.
    eps: :math:`\epsilon \ge 0`, added to the denominator.
    denominator: ``"paper"`` or ``"combined"`` (see above).
    clip: LARC clip mode.
    trust_ratio_mask: ``None`` (default: :func:`legw.exclude_bias_and_norm`),
      a bool, a pytree of bools (or a prefix of one), or a callable of params.
    weight_decay_mask: same forms; which leaves get weight decay.
    axis_name: mesh axis name(s) over which every parameter is sharded
      (``shard_map``), or None (single device, ``jax.jit`` with sharded
      arrays, replicated parameters).

  Returns:
    An ``optax.GradientTransformation`` whose ``update(updates, state,
    params)`` requires ``params``.

  Raises:
    ValueError: at construction, for ``trust_coefficient <= 0``, negative
      ``weight_decay`` or ``eps``, or an unknown ``denominator``; at update,
      when ``params`` is not given.
  """
  _check_lars_args(trust_coefficient, weight_decay, eps, denominator)

  def init_fn(params):
    del params
    return ScaleByLarsState()

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args  # e.g. obj_fn for other members of an optax.chain
    if params is None:
      raise ValueError(
          "scale_by_lars needs the current parameters: call "
          "update(updates, state, params)."
      )
    g_leaves, treedef = jax.tree.flatten(updates)
    w_leaves = treedef.flatten_up_to(params)
    tr_mask = resolve_mask(trust_ratio_mask, params, exclude_bias_and_norm)
    wd_mask = resolve_mask(weight_decay_mask, params, exclude_bias_and_norm)
    out = _lars_leaves(
        g_leaves, w_leaves, tr_mask, wd_mask,
        trust_coefficient=trust_coefficient, weight_decay=weight_decay,
        eps=eps, denominator=denominator, clip=clip, axis_name=axis_name,
    )
    return jax.tree.unflatten(treedef, out), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def lars(
    learning_rate: optax.ScalarOrSchedule,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    trust_coefficient: float = 0.001,
    eps: float = 0.0,
    nesterov: bool = False,
    weight_decay_mask: MaskOrFn = None,
    trust_ratio_mask: MaskOrFn = None,
    denominator: str = "paper",
    clip: bool = False,
    axis_name: AxisName = None,
) -> optax.GradientTransformationExtraArgs:
  r"""SGD with LARS, as Algorithm 1 of the LARS paper.

  Per leaf (layer) ``l``, with :math:`\gamma_t` = ``learning_rate`` at step t:

  .. math::

     \lambda_l &= \eta\,\|w_l\| / (\|g_l\| + \beta\|w_l\| + \epsilon) \\
     v_l &\leftarrow m\,v_l + \gamma_t\,\lambda_l\,(g_l + \beta w_l) \\
     w_l &\leftarrow w_l - v_l

  The learning rate sits *inside* the momentum, as in Algorithm 1 (so a
  schedule change does not rescale past momentum). ``optax.apply_updates``
  performs the last line: the returned updates are :math:`-v_l`.
  Implemented as ``optax.chain(scale_by_lars(...),
  optax.scale_by_learning_rate(learning_rate), optax.trace(momentum,
  nesterov))``.

  Differences from ``optax.lars``: (1) the paper's denominator
  :math:`\|g\| + \beta\|w\|` rather than :math:`\|g + \beta w\|`
  (``denominator="combined"`` gives optax's form, which with
  ``trust_ratio_mask=True, weight_decay_mask=True`` reproduces ``optax.lars``
  exactly); (2) biases and normalisation parameters (``ndim <= 1``) are by
  default excluded from the trust ratio and weight decay, as in the MLPerf LARS
  submissions: they get plain momentum SGD at :math:`\gamma_t`; (3) norms are
  float32 even for float16/bfloat16 parameters; (4) ``axis_name`` gives
  whole-layer norms under ``shard_map``.

  Args:
    learning_rate: :math:`\gamma_t \ge 0`, a float or an ``optax.Schedule`` of
      the step count (steps, not epochs; see :func:`legw.legw_schedule`).
    momentum: :math:`m \in [0, 1)`.
    weight_decay: :math:`\beta \ge 0`.
    trust_coefficient: :math:`\eta > 0` (paper: 0.001).
    eps: :math:`\epsilon \ge 0`, added to the trust-ratio denominator.
    nesterov: Nesterov momentum (``optax.trace(nesterov=True)``).
    weight_decay_mask: which leaves get weight decay (see
      :func:`scale_by_lars`); default :func:`legw.exclude_bias_and_norm`.
    trust_ratio_mask: which leaves get the trust ratio; same default.
    denominator: ``"paper"`` or ``"combined"``.
    clip: LARC clip mode, effective rate :math:`\min(\lambda_l\gamma_t, \gamma_t)`.
    axis_name: mesh axis name(s) for whole-layer norms under ``shard_map``
      (see :func:`scale_by_lars`: not for ``jax.jit`` or replicated params).

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` requires params.

  Raises:
    ValueError: for a negative learning rate, momentum outside [0, 1),
      negative weight decay or eps, ``trust_coefficient <= 0``, or an unknown
      denominator (concrete numbers only, so ``optax.inject_hyperparams``
      works); at update time when params are missing.

  Example:
    >>> import jax.numpy as jnp, optax, legw
    >>> params = {"w": jnp.ones((3, 3)), "b": jnp.zeros(3)}
    >>> opt = legw.lars(0.1, weight_decay=1e-4)
    >>> state = opt.init(params)
    >>> grads = {"w": jnp.full((3, 3), 0.5), "b": jnp.ones(3)}
    >>> updates, state = opt.update(grads, state, params)
    >>> params = optax.apply_updates(params, updates)
  """
  _validation.check_learning_rate(learning_rate)
  _validation.check_range("momentum", momentum, low=0.0, high=1.0, high_inclusive=False)
  _check_lars_args(trust_coefficient, weight_decay, eps, denominator)
  return optax.chain(
      scale_by_lars(
          trust_coefficient=trust_coefficient,
          weight_decay=weight_decay,
          eps=eps,
          denominator=denominator,
          clip=clip,
          trust_ratio_mask=trust_ratio_mask,
          weight_decay_mask=weight_decay_mask,
          axis_name=axis_name,
      ),
      optax.scale_by_learning_rate(learning_rate),
      optax.trace(decay=momentum, nesterov=nesterov),
  )
