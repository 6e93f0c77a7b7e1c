r"""Curvature-based learning rates per parameter (CBLR), with a Hutchinson Hessian diagonal.

Gao & Zhong 2020, arXiv:2012.08795, §4, eq. 9–11; the layer-wise members of the family
(LARS, MCLR, PercentDelta) are in :mod:`legw._lars` and :mod:`legw._curvature`.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import DTypeLike

from legw import _sgd, _validation
from legw._masks import MaskOrFn, exclude_bias_and_norm, resolve_mask
from legw._reduce import AxisName, abs_sq, is_trainable, real_dtype, stat_dtype


def _check_positive_int(name: str, value: Any) -> None:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
    hint = ""
    if isinstance(value, jax.Array):
      hint = (
        f" It sets a loop length, so it cannot be an array: with "
        f"optax.inject_hyperparams pass static_args=({name!r}, ...)."
      )
    raise ValueError(f"{name} must be an integer >= 1; got {value!r}.{hint}")


# ---------------------------------------------------------------------------
# CBLR: per-parameter curvature radius with a Hutchinson Hessian diagonal.
# ---------------------------------------------------------------------------


class ScaleByCurvatureRadiusState(NamedTuple):
  """State of :func:`scale_by_curvature_radius`.

  Attributes:
    count: number of updates so far (int32).
    key: PRNG key for the next Rademacher probes.
    hessian_diag: the latest Hutchinson estimate of the Hessian diagonal, a tree like
      params in float32 (or wider); 0 on leaves outside the mask.
  """

  count: jax.Array  # type: ignore[assignment]  # shadows tuple.count; renaming would break users
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

  with :math:`Hz` exact, by forward-over-reverse differentiation (``jax.jvp`` of
  ``jax.grad``), one at a time in a ``lax.fori_loop``. Unbiased; exact for any :math:`K`
  when :math:`H` is diagonal. A complex leaf gets the real part of :math:`z \odot Hz` (the
  curvature along the real part); non-floating leaves get no probe and a zero estimate.

  Args:
    obj_fn: scalar objective of ``params`` alone.
    params: the pytree to differentiate at.
    key: PRNG key; probe ``k`` uses ``fold_in(key, k)``.
    num_probes: :math:`K \ge 1`.
    mask: optional list of bools, one per leaf of ``params``: leaves with ``False`` get a
      zero probe and a zero estimate.

  Returns:
    A tree like ``params``, real, in float32 (or wider).

  Raises:
    ValueError: for ``num_probes`` not an integer >= 1, or a ``mask`` whose length is not
      the number of leaves of ``params``.

  References:
    Hutchinson, 1989 (the trace estimator); Bekas, Kokiopoulou & Saad, 2007 (the
    diagonal). It supplies the second derivative in the curvature radius of Gao & Zhong,
    2020, arXiv:2012.08795, eq. 9–11 (:func:`legw.scale_by_curvature_radius`).
  """
  _check_positive_int("num_probes", num_probes)
  leaves, treedef = jax.tree.flatten(params)
  if mask is None:
    mask = [True] * len(leaves)
  elif len(mask) != len(leaves):
    raise ValueError(
      f"mask must have one bool per leaf of params ({len(leaves)}), got {len(mask)}."
    )
  leaves = [jnp.asarray(p) if is_trainable(p) else p for p in leaves]
  params = jax.tree.unflatten(treedef, leaves)
  probed = [m and is_trainable(p) for p, m in zip(leaves, mask)]
  out_dt = [real_dtype(p.dtype) if is_trainable(p) else jnp.float32 for p in leaves]
  hvp_fn = jax.grad(obj_fn, allow_int=True)

  def one_probe(k):
    keys = jax.random.split(jax.random.fold_in(key, k), len(leaves))
    z = [
      jax.random.rademacher(kk, p.shape, real_dtype(p.dtype)).astype(p.dtype)
      if m
      else jnp.zeros_like(p)
      if is_trainable(p)
      else np.zeros(np.shape(p), jax.dtypes.float0)
      for kk, p, m in zip(keys, leaves, probed)
    ]
    hz = jax.jvp(hvp_fn, (params,), (jax.tree.unflatten(treedef, z),))[1]
    hz = treedef.flatten_up_to(hz)  # type: ignore[attr-defined]  # missing from jax's stubs
    # z is real (+-1), so z * Hz's real part is the diagonal (of the real
    # part's block, for a complex leaf).
    return [
      jnp.real(zz.astype(stat_dtype(p.dtype)) * h.astype(stat_dtype(p.dtype))).astype(dt)
      if m
      else jnp.zeros(np.shape(p), dt)
      for zz, h, p, m, dt in zip(z, hz, leaves, probed, out_dt)
    ]

  if num_probes == 1:
    est = one_probe(0)
  else:
    zero = [jnp.zeros(np.shape(p), dt) for p, dt in zip(leaves, out_dt)]
    total = jax.lax.fori_loop(
      0, num_probes, lambda k, acc: [a + e for a, e in zip(acc, one_probe(k))], zero
    )
    est = [t / num_probes for t in total]
  return jax.tree.unflatten(treedef, est)


def scale_by_curvature_radius(
  weight_decay: optax.ScalarOrSchedule = 0.0,
  *,
  max_radius: float = 100.0,
  num_probes: int = 1,
  update_every: int = 1,
  key: jax.Array | int = 0,
  trust_ratio_mask: MaskOrFn = None,
  weight_decay_mask: MaskOrFn = None,
  axis_name: AxisName = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Scales each parameter by its loss-curve curvature radius (CBLR; no LR).

  .. math::

     R_i = \min\!\Big(\frac{(1 + |u_i|^2)^{3/2}}{|\hat h_i + \beta|},\;
                      R_{\max}\Big)
     \qquad \text{update}_i = R_i\,u_i

  per parameter :math:`i`, with :math:`u = g + \beta w` and :math:`\hat h` a Hutchinson
  estimate of the objective's Hessian diagonal (:func:`legw.hutchinson_diagonal`);
  :math:`R_{\max}` also where :math:`\hat h_i + \beta = 0`. ``update`` takes the objective
  as the keyword ``obj_fn``, a scalar function of ``params`` (as ``optax.contrib.sophia``).
  Leaves outside ``trust_ratio_mask`` get :math:`R_i = 1` and no probe. The LR comes after
  (:func:`legw.cblr`); numerics: :doc:`/guides/curvature`.

  Args:
    weight_decay: :math:`\beta \ge 0`, or an ``optax.Schedule``; the only positional argument.
    max_radius: :math:`R_{\max} > 0`, the cap for flat or noisy directions.
    num_probes, update_every: Hessian-vector products per estimate, and steps per estimate.
    key: PRNG key (or an integer seed) for the probes; the state carries it on.
    trust_ratio_mask, weight_decay_mask: which leaves get :math:`R_i`, weight decay (default
      :func:`legw.exclude_bias_and_norm`).
    axis_name: the ``shard_map`` axis the parameters are sharded over (folded into the probe keys).

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` needs ``params``, ``obj_fn``.

  Raises:
    ValueError, TypeError: naming the argument, for a hyperparameter out of range or of the
      wrong type; at update, without ``params`` or ``obj_fn``.

  Example:
    >>> import jax.numpy as jnp, legw
    >>> loss = lambda p: jnp.sum(2.0 * p["w"] ** 2)  # separable: Hutchinson is exact, h = 4
    >>> params = {"w": jnp.array([[0.5, 0.0], [0.0, 0.0]])}
    >>> tx = legw.scale_by_curvature_radius()
    >>> grads = {"w": jnp.array([[2.0, 0.0], [0.0, 0.0]])}
    >>> updates, _ = tx.update(grads, tx.init(params), params, obj_fn=loss)
    >>> round(float(updates["w"][0, 0]), 4)  # (1 + 2^2)^1.5 * 2 / 4
    5.5902

  References:
    Gao & Zhong, "Study on the Large Batch Size Training of Neural Networks Based on
    the Second Order Gradient", 2020, arXiv:2012.08795, §4, eq. 9–11.
  """
  _validation.check_weight_decay(weight_decay)
  _validation.check_range("max_radius", max_radius, low=0.0, low_inclusive=False)
  _check_positive_int("num_probes", num_probes)
  _check_positive_int("update_every", update_every)

  def init_fn(params):
    # A bad mask (or a legw.path_mask pattern that matches nothing) raises here, as in
    # the layer-wise optimizers and optax.masked, not at the first update.
    resolve_mask(trust_ratio_mask, params, exclude_bias_and_norm)
    resolve_mask(weight_decay_mask, params, exclude_bias_and_norm)
    k = jax.random.PRNGKey(key) if isinstance(key, int | numbers.Integral) else key
    return ScaleByCurvatureRadiusState(
      count=jnp.zeros([], jnp.int32),
      key=k,
      hessian_diag=jax.tree.map(
        lambda p: jnp.zeros(
          np.shape(p), real_dtype(jnp.result_type(p)) if is_trainable(p) else jnp.float32
        ),
        params,
      ),
    )

  def update_fn(updates, state, params=None, *, obj_fn=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError(
        "scale_by_curvature_radius needs the current parameters: call "
        "update(updates, state, params, obj_fn=...)."
      )
    if obj_fn is None:
      raise ValueError(
        "scale_by_curvature_radius needs the objective: call "
        "update(updates, state, params, obj_fn=lambda p: loss(p, batch))."
      )
    g_leaves, treedef = jax.tree.flatten(updates)
    w_leaves = treedef.flatten_up_to(params)  # type: ignore[attr-defined]  # missing from jax's stubs
    tr_mask = resolve_mask(trust_ratio_mask, params, exclude_bias_and_norm)
    wd_mask = resolve_mask(weight_decay_mask, params, exclude_bias_and_norm)
    beta = weight_decay(state.count) if callable(weight_decay) else weight_decay
    next_key, probe_key = jax.random.split(state.key)
    if axis_name is not None:
      probe_key = jax.random.fold_in(probe_key, jax.lax.axis_index(axis_name))

    def estimate():
      return hutchinson_diagonal(obj_fn, params, probe_key, num_probes, tr_mask)

    if update_every == 1:
      h_tree = estimate()
    else:
      h_tree = jax.lax.cond(state.count % update_every == 0, estimate, lambda: state.hessian_diag)
    h_leaves = treedef.flatten_up_to(h_tree)  # type: ignore[attr-defined]  # missing from jax's stubs

    out = []
    for g, w, h, use_tr, use_wd in zip(g_leaves, w_leaves, h_leaves, tr_mask, wd_mask):
      if not (is_trainable(g) and is_trainable(w)):
        out.append(g)  # integer leaves (float0 gradients) pass through
        continue
      g, w = jnp.asarray(g), jnp.asarray(w)
      dt = stat_dtype(g.dtype)
      u = g.astype(dt) + beta * w.astype(dt) if use_wd else g.astype(dt)
      if not use_tr:
        out.append(u.astype(g.dtype))
        continue
      curv = jnp.abs(h + beta) if use_wd else jnp.abs(h)
      # |u|^2, real also for complex u ((1 + u*u) would rotate it).
      radius = (1.0 + abs_sq(u)) ** 1.5 / jnp.where(curv == 0, 1.0, curv)
      radius = jnp.where(curv == 0, max_radius, jnp.minimum(radius, max_radius))
      out.append((radius * u).astype(g.dtype))
    new_state = ScaleByCurvatureRadiusState(
      count=optax.safe_increment(state.count), key=next_key, hessian_diag=h_tree
    )
    return jax.tree.unflatten(treedef, out), new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def cblr(
  learning_rate: optax.ScalarOrSchedule,
  *,
  momentum: float = 0.9,
  weight_decay: optax.ScalarOrSchedule = 0.0,
  max_radius: float = 100.0,
  num_probes: int = 1,
  update_every: int = 1,
  key: jax.Array | int = 0,
  nesterov: bool = False,
  weight_decay_mask: MaskOrFn = None,
  trust_ratio_mask: MaskOrFn = None,
  axis_name: AxisName = None,
  accumulator_dtype: DTypeLike | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""SGD with curvature-based per-parameter rates (CBLR).

  .. math::

     v_i \leftarrow m\,v_i + \gamma_t R_i\,(g_i + \beta w_i) \qquad
     w_i \leftarrow w_i - v_i

  with :math:`R_i` from :func:`legw.scale_by_curvature_radius`: the chain of
  :func:`legw.lars` with that transform; ``optax.chain`` forwards the ``obj_fn`` keyword
  of ``update`` to it. Leaves outside ``trust_ratio_mask`` (default: biases and norms)
  get plain momentum SGD at :math:`\gamma_t`. Under ``optax.inject_hyperparams`` pass
  ``static_args=("num_probes", "update_every", "key")``.

  Args:
    learning_rate: :math:`\gamma_t \ge 0`, a float or an ``optax.Schedule``.
    momentum, nesterov: the momentum :math:`m \in [0, 1)`, and whether it is Nesterov's.
    weight_decay: :math:`\beta \ge 0`, or an ``optax.Schedule``.
    max_radius, num_probes, update_every, key: as in :func:`legw.scale_by_curvature_radius`.
    weight_decay_mask, trust_ratio_mask, axis_name: as in ``scale_by_curvature_radius``.
    accumulator_dtype: the dtype of the stored momentum, as in :func:`legw.lars`.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; ``update`` requires ``params`` and
    the keyword ``obj_fn``.

  Raises:
    ValueError, TypeError: as :func:`legw.lars` and :func:`legw.scale_by_curvature_radius`.

  Example:
    >>> import jax.numpy as jnp, optax, legw
    >>> loss = lambda p: jnp.sum((p["w"] - 1.0) ** 2)
    >>> params = {"w": jnp.zeros((2, 2))}
    >>> opt = legw.cblr(0.1)
    >>> grads = {"w": jnp.full((2, 2), -2.0)}  # jax.grad(loss)(params)
    >>> updates, state = opt.update(grads, opt.init(params), params, obj_fn=loss)
    >>> params = optax.apply_updates(params, updates)

  References:
    Gao & Zhong, "Study on the Large Batch Size Training of Neural Networks Based on
    the Second Order Gradient", 2020, arXiv:2012.08795, §4, eq. 9–11.
  """
  return _sgd.sgd_optimizer(
    scale_by_curvature_radius,
    learning_rate,
    momentum,
    nesterov,
    accumulator_dtype=accumulator_dtype,
    weight_decay=weight_decay,
    max_radius=max_radius,
    num_probes=num_probes,
    update_every=update_every,
    key=key,
    trust_ratio_mask=trust_ratio_mask,
    weight_decay_mask=weight_decay_mask,
    axis_name=axis_name,
  )
