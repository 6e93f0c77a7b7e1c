"""The layer-wise family's shared semantics, member by member.

Each test here failed on the code before the family got one core
(legw/_layerwise.py): complex parameters (|x|^2, not x^2), the trust ratio at
g = 0 with weight decay, autodiff through every transform, MCLR on sparse
layers, weight-decay schedules, and LARS = optax.lars on complex64.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

import legw
from legw import _reduce

# The three members, with all leaves scaled and decayed.
ALL = dict(trust_ratio_mask=True, weight_decay_mask=True)
MEMBERS = {
  "lars": lambda **kw: legw.scale_by_lars(0.02, **kw),
  "lars_combined": lambda **kw: legw.scale_by_lars(0.02, denominator="combined", **kw),
  "mclr": lambda **kw: legw.scale_by_median_curvature(**kw),
  "percent_delta": lambda **kw: legw.scale_by_percent_delta(**kw),
}


def _layer(seed, shape=(6, 5), dtype=jnp.float32, scale=1.0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=shape) * scale
  if jnp.issubdtype(dtype, jnp.complexfloating):
    x = x + 1j * rng.normal(size=shape) * scale
  return jnp.asarray(x, dtype)


def _update(tx, g, w, **extra):
  u, _ = tx.update({"k": g}, tx.init({"k": w}), {"k": w}, **extra)
  return u["k"]


# ---------------------------------------------------------------------------
# Complex parameters: |x|^2 everywhere.
# ---------------------------------------------------------------------------


def test_sum_of_squares_is_of_the_modulus():
  x = jnp.array([1j, 1 + 1j, 2.0], jnp.complex64)
  s = _reduce.sum_of_squares(x)
  assert s.dtype == jnp.float32
  np.testing.assert_allclose(s, 1 + 2 + 4, rtol=1e-7)  # x*x would sum to 4 + 2j


@pytest.mark.slow
@pytest.mark.parametrize("nesterov", [False, True])
def test_complex64_lars_combined_equals_optax_lars(nesterov):
  rng = np.random.default_rng(0)
  params = {
    k: _layer(i, s, jnp.complex64)
    for i, (k, s) in enumerate({"a": (4, 3), "b": (5,), "c": (2, 2, 3)}.items())
  }
  hp = dict(
    learning_rate=optax.polynomial_schedule(0.3, 0.0, 2, 10),
    weight_decay=1e-2,
    trust_coefficient=0.05,
    eps=1e-6,
    momentum=0.9,
    nesterov=nesterov,
  )
  ours = legw.lars(denominator="combined", **ALL, **hp)
  ref = optax.lars(**hp)
  p1 = p2 = params
  s1, s2 = ours.init(p1), ref.init(p2)
  for t in range(10):
    g = {
      k: jnp.asarray(rng.normal(size=v.shape) + 1j * rng.normal(size=v.shape), jnp.complex64)
      for k, v in params.items()
    }
    u1, s1 = ours.update(g, s1, p1)
    u2, s2 = ref.update(g, s2, p2)
    chex.assert_trees_all_equal_shapes_and_dtypes(u1, u2, p1)  # complex64 updates
    for k in params:
      np.testing.assert_allclose(
        u1[k],
        u2[k],
        rtol=2e-6,
        atol=2e-6 * float(jnp.abs(u2[k]).max()),
        err_msg=f"step {t}, leaf {k}",
      )
    p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)


def _np_rate(member, g, w, beta):
  """Reference rates on complex layers, from magnitudes (float64)."""
  ag, aw = np.abs(np.asarray(g, np.complex128)), np.abs(np.asarray(w, np.complex128))
  if member == "lars":
    size_w, size_g = np.linalg.norm(aw), np.linalg.norm(ag)
    return 0.02 * size_w / (size_g + beta * size_w)
  if member == "mclr":
    size_w, size_g = np.median(aw), np.median(ag)
  else:
    size_w, size_g = aw.size, np.sum(ag / aw)
  return size_w / (size_g + beta * size_w)


@pytest.mark.parametrize("member", ["lars", "mclr", "percent_delta"])
def test_complex_layers_use_magnitudes(member):
  w, g = _layer(1, dtype=jnp.complex64), _layer(2, dtype=jnp.complex64, scale=0.1)
  beta = 1e-2
  u = _update(MEMBERS[member](weight_decay=beta, **ALL), g, w)
  expected = _np_rate(member, g, w, beta) * (np.asarray(g) + beta * np.asarray(w))
  assert u.dtype == jnp.complex64
  np.testing.assert_allclose(u, expected, rtol=2e-5)


def test_cblr_radius_uses_the_modulus():
  """(1 + |u|^2)^1.5: at u = 1j it is 2^1.5 (u*u would give (1 - 1)^1.5 = 0)."""
  a = jnp.array([[1.0, 2.0], [3.0, 0.5]])
  obj = lambda p: jnp.sum(a * jnp.abs(p["k"]) ** 2)
  w = _layer(3, (2, 2), jnp.complex64)
  g = jnp.full((2, 2), 1j, jnp.complex64)
  tx = legw.scale_by_curvature_radius(max_radius=1e6, trust_ratio_mask=True)
  u = _update(tx, g, w, obj_fn=obj)
  np.testing.assert_allclose(u, 2**1.5 / (2 * np.asarray(a)) * 1j, rtol=1e-5)


def test_hutchinson_on_complex_leaves_is_real():
  a = jnp.array([[1.0, 2.0], [3.0, 0.5]])
  obj = lambda p: jnp.sum(a * jnp.abs(p["k"]) ** 2)
  est = legw.hutchinson_diagonal(
    obj, {"k": _layer(4, (2, 2), jnp.complex64)}, jax.random.PRNGKey(0)
  )["k"]
  assert est.dtype == jnp.float32
  np.testing.assert_allclose(est, 2 * np.asarray(a), rtol=1e-5)


# ---------------------------------------------------------------------------
# The rate at g = 0 with weight decay: finite, continuous.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("member", sorted(MEMBERS))
def test_rate_is_continuous_at_zero_gradient_with_weight_decay(member):
  w = _layer(5)
  tx = MEMBERS[member](weight_decay=1e-2, **ALL)
  at_zero = _update(tx, jnp.zeros_like(w), w)
  near_zero = _update(tx, jnp.full_like(w, 1e-9), w)
  np.testing.assert_allclose(at_zero, near_zero, rtol=1e-5)
  assert np.all(np.abs(np.asarray(at_zero)) > 0)


def test_lars_rate_at_zero_gradient_is_eta_over_beta():
  w = _layer(6)
  u = _update(legw.scale_by_lars(0.02, weight_decay=1e-2, **ALL), jnp.zeros_like(w), w)
  np.testing.assert_allclose(u, 0.02 / 1e-2 * 1e-2 * np.asarray(w), rtol=1e-6)


def test_zero_layer_and_zero_denominator_fall_back_to_one():
  w, g = _layer(7), _layer(8)
  for member, make in MEMBERS.items():
    tx = make(weight_decay=1e-2, **ALL)
    np.testing.assert_array_equal(_update(tx, g, jnp.zeros_like(w)), g, err_msg=member)
    tx = make(**ALL)  # no decay, eps = 0: the denominator is 0 at g = 0
    np.testing.assert_array_equal(_update(tx, jnp.zeros_like(w), w), 0.0, err_msg=member)


# ---------------------------------------------------------------------------
# MCLR on sparse layers: medians of the nonzero entries.
# ---------------------------------------------------------------------------


def _embedding_rate(nonzero):
  """MCLR's rate on a 16-entry layer whose gradient has `nonzero` entries."""
  rng = np.random.default_rng(0)
  w = jnp.asarray(rng.uniform(0.5, 1.5, (4, 4)) * np.sign(rng.normal(size=(4, 4))), jnp.float32)
  g = np.zeros(16)
  g[:nonzero] = rng.uniform(0.05, 0.15, nonzero) * np.sign(rng.normal(size=nonzero))
  g = jnp.asarray(g.reshape(4, 4), jnp.float32)
  u = _update(legw.scale_by_median_curvature(), g, w)
  touched = np.asarray(g) != 0
  rate = np.asarray(u)[touched] / np.asarray(g)[touched]
  np.testing.assert_allclose(rate, rate[0], rtol=1e-6)  # one rate per layer
  expected = np.median(np.abs(np.asarray(w))) / np.median(np.abs(np.asarray(g)[touched]))
  np.testing.assert_allclose(rate[0], expected, rtol=1e-6)
  return float(rate[0])


@pytest.mark.slow
def test_mclr_rate_is_continuous_in_the_number_of_nonzero_gradient_entries():
  """An embedding-like layer: rows the batch did not touch have zero gradient.
  The literal median of all |g| is 0 from 8 zeros on, and the rate jumped
  (to 1 by the eq. 19 guard: 10x between 7 and 9 nonzero entries)."""
  rates = {k: _embedding_rate(k) for k in range(5, 12)}
  for k in range(5, 11):
    assert 0.5 < rates[k] / rates[k + 1] < 2.0, rates
  assert min(rates.values()) > 3.0, rates  # ~ med|w| / med|g| ~ 1 / 0.1


def test_mclr_pruned_weights_use_the_surviving_weights():
  rng = np.random.default_rng(1)
  w = rng.normal(size=(8, 8))
  w[rng.random((8, 8)) < 0.7] = 0.0  # 70% pruned: the literal median |w| is 0
  g = rng.normal(size=(8, 8)) * 0.01
  u = _update(
    legw.scale_by_median_curvature(), jnp.asarray(g, jnp.float32), jnp.asarray(w, jnp.float32)
  )
  rate = np.median(np.abs(w[w != 0])) / np.median(np.abs(g))
  np.testing.assert_allclose(u, rate * g, rtol=1e-5)


# ---------------------------------------------------------------------------
# Autodiff through every public transform.
# ---------------------------------------------------------------------------


def _quartic(p):
  return sum(jnp.sum(0.25 * x**4 + 0.5 * x**2 + 0.1 * x) for x in jax.tree.leaves(p))


GRAD_CASES = {
  "scale_by_lars": lambda: legw.scale_by_lars(0.02, weight_decay=1e-2, **ALL),
  "scale_by_lars_combined_clip": lambda: legw.scale_by_lars(
    0.02, weight_decay=1e-2, denominator="combined", clip=True, learning_rate=0.01, **ALL
  ),
  "lars": lambda: legw.lars(0.1, weight_decay=1e-2, **ALL),
  "scale_by_percent_delta": lambda: legw.scale_by_percent_delta(weight_decay=1e-2, **ALL),
  "percent_delta": lambda: legw.percent_delta(0.1, weight_decay=1e-2, **ALL),
  "scale_by_curvature_radius": lambda: legw.scale_by_curvature_radius(
    weight_decay=1e-2, max_radius=1e3, **ALL
  ),
  "cblr": lambda: legw.cblr(0.1, weight_decay=1e-2, max_radius=1e3, **ALL),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(GRAD_CASES))
def test_gradients_through_the_update_match_finite_differences(name):
  """jax.grad (and jvp) of the update w.r.t. gradients and parameters."""
  with jax.enable_x64(True):
    tx = GRAD_CASES[name]()
    w = {"k": _layer(9, (4, 3), jnp.float64), "b": _layer(10, (3,), jnp.float64)}
    g = {"k": _layer(11, (4, 3), jnp.float64, 0.3), "b": _layer(12, (3,), jnp.float64, 0.3)}
    state = tx.init(w)
    extra = {"obj_fn": _quartic} if "curvature" in name or name == "cblr" else {}

    def f(g, w):
      return tx.update(g, state, w, **extra)[0]

    check_grads(f, (g, w), order=1, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)


def _mclr_reference(g, w, beta):
  """MCLR with jnp.median (dense layers: every entry nonzero)."""
  mw, mg = jnp.median(jnp.abs(w)), jnp.median(jnp.abs(g))
  return mw / (mg + beta * mw) * (g + beta * w)


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(5, 3), (4, 4)], ids=["odd", "even"])
@pytest.mark.parametrize("optimizer", [False, True])
def test_mclr_gradients_are_those_of_the_jnp_median_formula(shape, optimizer):
  """Before: the bisection median cut the gradient (5.7 against -23.7)."""
  beta, lr = 1e-2, 0.1
  tx = (
    legw.mclr(lr, weight_decay=beta, momentum=0.0, **ALL)
    if optimizer
    else legw.scale_by_median_curvature(weight_decay=beta, **ALL)
  )
  scale = -lr if optimizer else 1.0
  w, g = _layer(13, shape), _layer(14, shape, scale=0.1)
  c = _layer(15, shape)
  state = tx.init({"k": w})
  ours = lambda g, w: jnp.sum(c * tx.update({"k": g}, state, {"k": w})[0]["k"])
  ref = lambda g, w: jnp.sum(c * scale * _mclr_reference(g, w, beta))
  np.testing.assert_allclose(ours(g, w), ref(g, w), rtol=1e-5)
  chex.assert_trees_all_close(
    jax.grad(ours, (0, 1))(g, w), jax.grad(ref, (0, 1))(g, w), rtol=1e-4, atol=1e-6
  )


# ---------------------------------------------------------------------------
# weight_decay as an optax.Schedule.
# ---------------------------------------------------------------------------


def _wd_schedule(t):
  return 1e-2 * (1.0 + t)


@pytest.mark.slow
@pytest.mark.parametrize("member", sorted(MEMBERS))
def test_weight_decay_schedule_is_read_at_the_step_count(member):
  w, g = _layer(16), _layer(17, scale=0.1)
  tx = MEMBERS[member](weight_decay=_wd_schedule, **ALL)
  state = tx.init({"k": w})
  assert int(state.count) == 0
  for t in range(3):
    u, state = tx.update({"k": g}, state, {"k": w})
    const = MEMBERS[member](weight_decay=_wd_schedule(t), **ALL)
    chex.assert_trees_all_close(u, {"k": _update(const, g, w)}, rtol=1e-6)
  assert int(state.count) == 3


class WeightDecayScheduleTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_lars_weight_decay_schedule_equals_optax_lars(self):
    rng = np.random.default_rng(3)
    params = {"a": _layer(18, (4, 3)), "b": _layer(19, (5,))}
    hp = dict(learning_rate=0.1, weight_decay=_wd_schedule, trust_coefficient=0.05)
    ours, ref = legw.lars(denominator="combined", **ALL, **hp), optax.lars(**hp)
    update = self.variant(ours.update)
    s1, s2 = ours.init(params), ref.init(params)
    for _ in range(4):
      g = {k: jnp.asarray(rng.normal(size=v.shape), jnp.float32) for k, v in params.items()}
      u1, s1 = update(g, s1, params)
      u2, s2 = ref.update(g, s2, params)
      chex.assert_trees_all_close(u1, u2, rtol=1e-6)


def test_cblr_weight_decay_schedule():
  w, g = _layer(20, (3, 2)), _layer(21, (3, 2), scale=0.1)
  make = lambda wd: legw.scale_by_curvature_radius(weight_decay=wd, max_radius=1e3, **ALL)
  tx = make(_wd_schedule)
  state = tx.init({"k": w})
  for t in range(2):
    u, state = tx.update({"k": g}, state, {"k": w}, obj_fn=_quartic)
    expected = _update(make(_wd_schedule(t)), g, w, obj_fn=_quartic)
    chex.assert_trees_all_close(u, {"k": expected}, rtol=1e-6)


# ---------------------------------------------------------------------------
# Stateless transforms: optax.EmptyState.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("member", sorted(MEMBERS))
def test_constant_hyperparameters_give_an_empty_state(member):
  tx = MEMBERS[member](weight_decay=1e-3)
  assert isinstance(tx.init({"k": _layer(0)}), optax.EmptyState)
  assert isinstance(tx, optax.GradientTransformationExtraArgs)


def test_clip_with_scheduled_learning_rate_counts_steps():
  tx = legw.scale_by_lars(0.02, clip=True, learning_rate=lambda t: 0.1 / (1 + t))
  assert isinstance(tx.init({"k": _layer(0)}), legw.ScaleByLarsState)
