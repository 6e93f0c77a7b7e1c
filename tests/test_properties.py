"""Property-based tests (hypothesis) of the optimizers and the schedules.

Random trees (shapes, ndims, float16/bfloat16/float32 leaves side by side,
magnitudes, zero leaves) and random hyperparameters:

* every registry optimizer and transform gives finite updates of the
  parameters' dtype and shape, and a state whose structure, shapes and dtypes
  do not change;
* the LARS trust ratio's invariants: a kernel's update has norm ``eta * ||w||`` (no weight
  decay), never exceeds ``eta * ||w||`` with the paper's denominator (nor the
  combined denominator's update), is capped by ``clip`` (apex LARC), and excluded leaves
  (biases, norms) and zero layers pass through unchanged (``test_lars.py``
  has the float32 single-layer properties, e.g. gradient-scale invariance);
* LEGW schedules: never negative, finite, a monotone warmup that reaches the
  peak at the end of warmup, never above the peak, non-increasing afterwards.

Updates are computed eagerly (no compilation per random shape).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conformance_cases import CASES
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import legw

SETTINGS = settings(
  max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

DTYPES = (jnp.float16, jnp.bfloat16, jnp.float32)


# ---------------------------------------------------------------------------
# Random trees.
# ---------------------------------------------------------------------------


# Leaf shapes: scalars, biases/norms (ndim <= 1) and kernels (ndim > 1). A
# fixed menu, so that eager op-by-op execution compiles each op once per shape.
SHAPES = ((), (1,), (5,), (1, 1), (4, 3), (1, 7), (2, 3, 2), (3, 3, 1, 2))


@st.composite
def trees(draw, dtypes=DTYPES, min_leaves=1, max_leaves=4):
  """(params, grads): a dict of leaves of random shape and dtype.

  Magnitudes span 1e-3..1e2 (each leaf its own), and a leaf's weights or
  gradients may be all zero.
  """
  n = draw(st.integers(min_leaves, max_leaves))
  seed = draw(st.integers(0, 2**31 - 1))
  rs = np.random.RandomState(seed)
  params, grads = {}, {}
  for i in range(n):
    dtype = draw(st.sampled_from(dtypes))
    shape = draw(st.sampled_from(SHAPES))
    w_scale, g_scale = (10.0 ** draw(st.integers(-3, 2)) for _ in range(2))
    zero = draw(st.sampled_from(["none", "none", "none", "w", "g"]))
    w = rs.randn(*shape) * w_scale * (zero != "w")
    g = rs.randn(*shape) * g_scale * (zero != "g")
    params[f"l{i}"] = jnp.asarray(w, dtype)
    grads[f"l{i}"] = jnp.asarray(g, dtype)
  return params, grads


def _obj_fn(params):
  return sum(0.5 * jnp.sum(p.astype(jnp.float32) ** 2) for p in jax.tree.leaves(params))


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=str)
@settings(SETTINGS, max_examples=15)
@given(tree=trees(), lr=st.floats(0.0, 1.0), momentum=st.floats(0.0, 0.99))
def test_updates_are_finite_and_keep_dtype_and_state(case, tree, lr, momentum):
  """Two steps of an optimizer, one update of a bare transform."""
  params, grads = tree
  opt = case.public(**case.public_kwargs(lr, **({} if case.transform else {"momentum": momentum})))
  state = first = opt.init(params)
  for _ in range(1 if case.transform else 2):
    updates, state = opt.update(grads, state, params, **case.extra(_obj_fn))
    chex.assert_trees_all_equal_shapes_and_dtypes(state, first)
    chex.assert_trees_all_equal_shapes_and_dtypes(updates, params)
    chex.assert_tree_all_finite(updates)
    params = optax.apply_updates(params, updates)


# ---------------------------------------------------------------------------
# LARS trust-ratio invariants.
# ---------------------------------------------------------------------------


def _norm(x):
  return float(np.linalg.norm(np.asarray(x, np.float64)))


def _rtol(dtype):
  """Relative error of a norm of values rounded once to ``dtype`` (and slack)."""
  return 4 * float(jnp.finfo(dtype).eps)


def _atol(x):
  """Absolute error of the norm of ``x`` from values below ``dtype``'s normal
  range (subnormal, or flushed to zero)."""
  return float(np.sqrt(x.size) * jnp.finfo(x.dtype).tiny)


def _kernels(params, grads):
  """Names of the leaves the trust ratio applies to, with non-zero w and g."""
  return [k for k, w in params.items() if w.ndim > 1 and _norm(w) > 0 and _norm(grads[k]) > 0]


etas = st.floats(1e-3, 10.0)
betas = st.floats(0.0, 0.1)


@SETTINGS
@given(tree=trees(), eta=etas)
def test_update_norm_is_eta_times_weight_norm(tree, eta):
  params, grads = tree
  tx = legw.scale_by_lars(trust_coefficient=eta)
  u, _ = tx.update(grads, tx.init(params), params)
  for k in _kernels(params, grads):
    np.testing.assert_allclose(
      _norm(u[k]), eta * _norm(params[k]), rtol=_rtol(u[k].dtype), atol=_atol(u[k])
    )


@SETTINGS
@given(tree=trees(), eta=etas, beta=betas, eps=st.floats(0.0, 1e-3))
def test_paper_update_never_exceeds_eta_times_weight_norm(tree, eta, beta, eps):
  """||g + beta w|| <= ||g|| + beta ||w||, so the paper's ||u|| <= eta ||w||,
  and it is never larger than the combined ("optax") denominator's update."""
  params, grads = tree
  paper = legw.scale_by_lars(trust_coefficient=eta, weight_decay=beta, eps=eps)
  combined = legw.scale_by_lars(
    trust_coefficient=eta, weight_decay=beta, eps=eps, denominator="combined"
  )
  u, _ = paper.update(grads, paper.init(params), params)
  uc, _ = combined.update(grads, combined.init(params), params)
  for k in _kernels(params, grads):
    tol = 1 + _rtol(u[k].dtype)
    assert _norm(u[k]) <= eta * _norm(params[k]) * tol + _atol(u[k])
    assert _norm(u[k]) <= _norm(uc[k]) * tol + _atol(u[k])


@SETTINGS
@given(
  tree=trees(),
  eta=etas,
  beta=betas,
  lr=st.floats(1e-3, 10.0),
  denominator=st.sampled_from(["paper", "combined"]),
)
def test_clip_caps_the_local_rate_at_the_learning_rate(tree, eta, beta, lr, denominator):
  """apex LARC clip: the update is scaled by min(lambda / lr, 1), so it is
  never larger than the decayed gradient, nor than the unclipped update / lr."""
  params, grads = tree
  kw = dict(trust_coefficient=eta, weight_decay=beta, denominator=denominator)
  tx = legw.scale_by_lars(**kw, clip=True, learning_rate=lr)
  free = legw.scale_by_lars(**kw)
  u, _ = tx.update(grads, tx.init(params), params)
  uf, _ = free.update(grads, free.init(params), params)
  for k in _kernels(params, grads):
    tol = 1 + _rtol(u[k].dtype)
    decayed = np.asarray(grads[k], np.float64) + beta * np.asarray(params[k], np.float64)
    assert _norm(u[k]) <= _norm(decayed) * tol + _atol(u[k])
    assert _norm(u[k]) <= _norm(uf[k]) / lr * tol + _atol(u[k])


@SETTINGS
@given(tree=trees(), eta=etas, beta=betas, eps=st.floats(0.0, 1e-3))
def test_excluded_leaves_and_zero_layers_pass_through(tree, eta, beta, eps):
  """Biases/norms (ndim <= 1) get neither the trust ratio nor weight decay; a
  kernel with zero weights gets a local rate of 1, one with zero gradient the
  paper's formula eta ||w|| / (beta ||w|| + eps) (1 where that denominator is 0)."""
  params, grads = tree
  tx = legw.scale_by_lars(trust_coefficient=eta, weight_decay=beta, eps=eps)
  u, _ = tx.update(grads, tx.init(params), params)
  for k, w in params.items():
    if w.ndim <= 1 or _norm(w) == 0:
      chex.assert_trees_all_equal(u[k], grads[k])
    elif _norm(grads[k]) == 0:  # u = lambda * (0 + beta * w)
      denom = np.float32(beta) * np.float32(_norm(w)) + np.float32(eps)
      lam = 1.0 if denom == 0 else eta * _norm(w) / float(denom)
      expected = (lam * beta * np.asarray(w, np.float32)).astype(w.dtype)
      np.testing.assert_allclose(
        np.asarray(u[k], np.float64),
        np.asarray(expected, np.float64),
        rtol=_rtol(w.dtype),
        atol=1e-30,
      )


# ---------------------------------------------------------------------------
# Schedules.
# ---------------------------------------------------------------------------


_T_MAX = 640  # steps evaluated: beyond the longest run drawn (30 epochs * 20 steps)


@st.composite
def schedules(draw):
  """Keyword arguments of a valid legw_schedule with its (peak, W, T)."""
  base_batch = draw(st.sampled_from([32, 256, 1024]))
  k = 2.0 ** draw(st.integers(-2, 6))
  num_epochs = draw(st.integers(1, 30))
  steps_per_epoch = draw(st.integers(1, 20))
  frac = draw(st.floats(0.0, 0.9))
  decay = draw(st.sampled_from(legw._schedules.DECAYS))
  kwargs = dict(
    base_learning_rate=draw(st.floats(1e-4, 10.0)),
    base_batch_size=base_batch,
    batch_size=int(base_batch * k),
    base_warmup_epochs=frac * num_epochs / k,
    num_epochs=num_epochs,
    steps_per_epoch=steps_per_epoch,
    decay=decay,
    lr_scaling=draw(st.sampled_from(["sqrt", "linear", "none"])),
  )
  peak = legw.scale_learning_rate(
    kwargs["base_learning_rate"], base_batch, kwargs["batch_size"], kwargs["lr_scaling"]
  )
  warmup_epochs = legw.scale_warmup_epochs(
    kwargs["base_warmup_epochs"], base_batch, kwargs["batch_size"]
  )
  warmup = int(round(warmup_epochs * steps_per_epoch))
  total = int(round(num_epochs * steps_per_epoch))
  assume(warmup < total)
  if decay in ("poly", "cosine"):
    kwargs["end_value"] = peak * draw(st.sampled_from([0.0, 0.0, 0.01, 0.5]))
  if decay == "poly":
    kwargs["power"] = draw(st.floats(0.5, 4.0))
  if decay == "exponential":
    kwargs["decay_rate"] = draw(st.floats(0.05, 1.0))
    kwargs["decay_epochs"] = draw(st.floats(0.1, 5.0))
    kwargs["staircase"] = draw(st.booleans())
  if decay == "multistep":
    fracs = draw(st.lists(st.floats(0.01, 0.99), max_size=3))
    bounds = [warmup_epochs + f * (num_epochs - warmup_epochs) for f in fracs]
    kwargs["boundary_epochs"] = tuple(b for b in bounds if warmup_epochs < b < num_epochs)
    kwargs["decay_rate"] = draw(st.floats(0.05, 1.0))
  return kwargs, peak, warmup, total


@SETTINGS
@given(spec=schedules())
def test_schedule_invariants(spec):
  kwargs, peak, warmup, total = spec
  sched = legw.legw_schedule(**kwargs)
  lr = np.asarray(jax.vmap(sched)(jnp.arange(_T_MAX)), np.float64)
  tol = 1e-5 * peak
  assert sched(0).dtype == jnp.float32
  chex.assert_tree_all_finite(lr)
  assert np.all(lr >= 0)  # never negative
  assert np.all(lr <= peak + tol)  # never above the peak
  np.testing.assert_allclose(lr[warmup], peak, rtol=1e-5)  # peak at the end of warmup
  head = lr[: warmup + 1]
  assert np.all(np.diff(head) >= -tol)  # warmup monotone
  if warmup > 0:
    assert lr[0] == 0.0  # gradual warmup starts at 0
  assert np.all(np.diff(lr[warmup:]) <= tol)  # decay non-increasing
  # Step counts as Python ints (eager) give the same values.
  for s in {0, warmup, total - 1}:
    np.testing.assert_allclose(float(sched(int(s))), lr[s], rtol=1e-6, atol=1e-6 * peak)


@SETTINGS
@given(spec=schedules(), warmup_value_frac=st.floats(0.0, 1.0))
def test_constant_warmup_invariants(spec, warmup_value_frac):
  kwargs, peak, warmup, total = spec
  value = warmup_value_frac * peak
  sched = legw.legw_schedule(**kwargs, warmup="constant", warmup_value=value)
  lr = np.asarray(jax.vmap(sched)(jnp.arange(_T_MAX)), np.float64)
  assert np.all(lr >= 0) and np.all(lr <= peak * (1 + 1e-5))
  np.testing.assert_allclose(lr[:warmup], value, rtol=1e-6, atol=1e-37)
  np.testing.assert_allclose(lr[warmup], peak, rtol=1e-5)


@SETTINGS
@given(
  base_lr=st.floats(1e-4, 10.0),
  base_batch=st.sampled_from([32, 256, 1024]),
  log2_k1=st.integers(-3, 6),
  log2_k2=st.integers(-3, 6),
  rule=st.sampled_from(["sqrt", "linear", "none"]),
)
def test_scaling_rules_compose(base_lr, base_batch, log2_k1, log2_k2, rule):
  """Scaling by k1 then by k2 is scaling by k1 * k2 (LEGW works both ways)."""
  b1 = base_batch * 2.0**log2_k1
  b2 = b1 * 2.0**log2_k2
  direct = legw.scale_learning_rate(base_lr, base_batch, b2, rule)
  twice = legw.scale_learning_rate(
    legw.scale_learning_rate(base_lr, base_batch, b1, rule), b1, b2, rule
  )
  np.testing.assert_allclose(twice, direct, rtol=1e-12)
  back = legw.scale_learning_rate(direct, b2, base_batch, rule)
  np.testing.assert_allclose(back, base_lr, rtol=1e-12)
