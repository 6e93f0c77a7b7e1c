"""Tests of legw._curvature: MCLR, PercentDelta, CBLR (curvature paper §4)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

import legw
from legw import _curvature

# ---------------------------------------------------------------------------
# NumPy references (float64).
# ---------------------------------------------------------------------------


def _nonzero_median(x):
  """Median of the nonzero magnitudes (0 if there are none)."""
  x = np.abs(x[x != 0])
  return np.median(x) if x.size else 0.0


def _family_rate(size_w, size_g, beta, eps):
  """R = W / (G + beta W + eps); 1 where W = 0 or the denominator is 0."""
  denom = size_g + beta * size_w + eps
  return 1.0 if size_w == 0 or denom == 0 else size_w / denom


def np_mclr_rate(g, w, beta=0.0, eps=0.0):
  return _family_rate(_nonzero_median(w), _nonzero_median(g), beta, eps)


def np_percent_delta_rate(g, w, beta=0.0, eps=0.0):
  nz = w != 0
  return _family_rate(nz.sum(), np.sum(np.abs(g[nz]) / np.abs(w[nz])), beta, eps)


def np_reference(rate_fn, grads, params, beta, eps, tr_mask, wd_mask):
  out = {}
  for k in params:
    g, w = np.asarray(grads[k], np.float64), np.asarray(params[k], np.float64)
    u = g + beta * w if wd_mask[k] else g
    r = rate_fn(g, w, beta if wd_mask[k] else 0.0, eps) if tr_mask[k] else 1.0
    out[k] = r * u
  return out


def random_tree(seed, zero_frac=0.0):
  rng = np.random.default_rng(seed)
  shapes = {"conv": (3, 3, 4, 8), "dense": (16, 7), "odd": (5, 3, 3), "bias": (8,)}
  params, grads = {}, {}
  for i, (k, s) in enumerate(shapes.items()):
    w = rng.normal(size=s) * (0.1 + i)
    if zero_frac:
      w[rng.random(size=s) < zero_frac] = 0.0
    params[k] = jnp.asarray(w, jnp.float32)
    grads[k] = jnp.asarray(rng.normal(size=s) * 10.0 ** (-1 - i), jnp.float32)
  return params, grads


def to_np(tree):
  return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def allclose_tree(a, b, rtol=2e-5, atol=1e-7):
  for k in b:
    np.testing.assert_allclose(np.asarray(a[k], np.float64), b[k], rtol=rtol, atol=atol, err_msg=k)


SCALERS = {
  "mclr": (_curvature.scale_by_median_curvature, np_mclr_rate),
  "percent_delta": (_curvature.scale_by_percent_delta, np_percent_delta_rate),
}


# ---------------------------------------------------------------------------
# MCLR and PercentDelta against NumPy.
# ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SCALERS))
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("beta,eps", [(0.0, 0.0), (1e-2, 0.0), (5e-4, 1e-3)])
def test_scaler_matches_numpy(name, seed, beta, eps):
  make, rate_fn = SCALERS[name]
  params, grads = random_tree(seed, zero_frac=0.2 if name == "percent_delta" else 0.0)
  tx = make(weight_decay=beta, eps=eps)
  updates, _ = tx.update(grads, tx.init(params), params)
  default_mask = {k: np.ndim(v) > 1 for k, v in params.items()}
  expected = np_reference(
    rate_fn, to_np(grads), to_np(params), beta, eps, default_mask, default_mask
  )
  allclose_tree(updates, expected)
  # The bias (ndim 1) is excluded by default: plain gradient, no decay.
  np.testing.assert_array_equal(updates["bias"], grads["bias"])


@pytest.mark.parametrize("name", sorted(SCALERS))
def test_scaler_custom_masks(name):
  make, rate_fn = SCALERS[name]
  params, grads = random_tree(3)
  tr = {"conv": False, "dense": True, "odd": True, "bias": True}
  wd = {"conv": True, "dense": False, "odd": True, "bias": True}
  tx = make(weight_decay=0.1, trust_ratio_mask=tr, weight_decay_mask=lambda p: wd)
  updates, _ = tx.update(grads, tx.init(params), params)
  expected = np_reference(rate_fn, to_np(grads), to_np(params), 0.1, 0.0, tr, wd)
  allclose_tree(updates, expected)


def test_mclr_medians_are_of_magnitudes_and_even_sizes_average():
  # Signed medians would be 0 here; the magnitude medians are 2.5 and 0.25.
  w = jnp.array([[-4.0, -1.0], [2.0, 3.0]])
  g = jnp.array([[0.1, -0.2], [0.3, -0.4]])
  tx = legw.scale_by_median_curvature()
  u, _ = tx.update({"w": g}, tx.init({"w": w}), {"w": w})
  np.testing.assert_allclose(u["w"], (2.5 / 0.25) * g, rtol=1e-6)


@pytest.mark.slow
def test_mclr_guards_zero_weights_and_zero_gradients():
  params = {
    "zero_w": jnp.zeros((4, 4)),
    "half_zero_g": jnp.ones((2, 3)),
    "ok": jnp.full((2, 2), 2.0),
    "zero_g": jnp.full((2, 2), 2.0),
  }
  grads = {
    "zero_w": jnp.ones((4, 4)),
    # 4 of 6 entries exactly 0: the median of the nonzero |g| is 1.5.
    "half_zero_g": jnp.array([[0.0, 0.0, 0.0], [0.0, 1.0, 2.0]]),
    "ok": jnp.full((2, 2), 0.5),
    "zero_g": jnp.zeros((2, 2)),
  }
  tx = legw.scale_by_median_curvature(weight_decay=0.5)
  u, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(u["zero_w"], grads["zero_w"])  # rate 1, decay of 0 is 0
  np.testing.assert_allclose(
    u["half_zero_g"],
    1.0 / (1.5 + 0.5 * 1.0) * (grads["half_zero_g"] + 0.5 * params["half_zero_g"]),
    rtol=1e-6,
  )
  # g = 0 with decay: the formula is finite, 2 / (0 + 0.5 * 2) = 1 / beta.
  np.testing.assert_allclose(u["zero_g"], 2.0 * 0.5 * params["zero_g"], rtol=1e-6)
  np.testing.assert_allclose(u["ok"], 2.0 / (0.5 + 1.0) * (0.5 + 1.0) * jnp.ones((2, 2)), rtol=1e-6)
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(u))


def test_mclr_eps_caps_the_rate():
  w, g = jnp.full((3, 3), 2.0), jnp.full((3, 3), 1e-12)
  tx = legw.scale_by_median_curvature(eps=1e-2)
  u, _ = tx.update({"w": g}, tx.init({"w": w}), {"w": w})
  np.testing.assert_allclose(u["w"], 2.0 / (1e-12 + 1e-2) * g, rtol=1e-5)


def test_percent_delta_guards_zero_weights():
  # Entries with w = 0 are left out of both the L1 sum and the count.
  w = jnp.array([[0.0, 2.0], [0.0, -4.0]])
  g = jnp.array([[5.0, 1.0], [7.0, 2.0]])
  tx = legw.scale_by_percent_delta()
  u, _ = tx.update({"w": g}, tx.init({"w": w}), {"w": w})
  rate = 2.0 / (1.0 / 2.0 + 2.0 / 4.0)
  np.testing.assert_allclose(u["w"], rate * g, rtol=1e-6)
  # A layer of zeros, and a zero gradient, get rate 1.
  params = {"a": jnp.zeros((2, 2)), "b": jnp.ones((2, 2))}
  grads = {"a": jnp.ones((2, 2)), "b": jnp.zeros((2, 2))}
  u, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_array_equal(u["a"], grads["a"])
  np.testing.assert_array_equal(u["b"], grads["b"])


def test_percent_delta_relative_step_is_the_learning_rate():
  # With momentum 0 and no decay the mean |delta w / w| of a layer is gamma.
  params, grads = random_tree(7)
  opt = legw.percent_delta(0.01, momentum=0.0)
  updates, _ = opt.update(grads, opt.init(params), params)
  for k in ("conv", "dense", "odd"):
    rel = np.mean(np.abs(np.asarray(updates[k]) / np.asarray(params[k])))
    np.testing.assert_allclose(rel, 0.01, rtol=1e-5)


# ---------------------------------------------------------------------------
# The per-layer-rate family: LARS = L2, PercentDelta = L1, MCLR = median.
# ---------------------------------------------------------------------------


def _rates(tx, grads, params, beta):
  u, _ = tx.update(grads, tx.init(params), params)
  return {k: float(jnp.mean(u[k] / (grads[k] + beta * params[k]))) for k in params}


@pytest.mark.slow
@pytest.mark.parametrize("beta", [0.0, 0.01])
def test_family_statistics(beta):
  params, grads = random_tree(11)
  params = {k: v for k, v in params.items() if v.ndim > 1}
  grads = {k: grads[k] for k in params}
  mask = {"trust_ratio_mask": True, "weight_decay_mask": True}
  lars = _rates(legw.scale_by_lars(1.0, weight_decay=beta, **mask), grads, params, beta)
  pd = _rates(legw.scale_by_percent_delta(beta, **mask), grads, params, beta)
  med = _rates(legw.scale_by_median_curvature(beta, **mask), grads, params, beta)
  for k in params:
    g, w = np.asarray(grads[k], np.float64), np.asarray(params[k], np.float64)
    l2 = np.linalg.norm(g) / np.linalg.norm(w)  # ||g||_2 / ||w||_2
    l1 = np.mean(np.abs(g / w))  # ||g/w||_1 / size(w)
    md = np.median(np.abs(g)) / np.median(np.abs(w))
    np.testing.assert_allclose(lars[k], 1 / (l2 + beta), rtol=1e-5)
    np.testing.assert_allclose(pd[k], 1 / (l1 + beta), rtol=1e-5)
    np.testing.assert_allclose(med[k], 1 / (md + beta), rtol=1e-5)
    # The three statistics really differ on random layers.
    assert len({round(l2, 6), round(l1, 6), round(md, 6)}) == 3


def test_family_members_agree_when_gradient_is_proportional_to_weights():
  params, _ = random_tree(5)
  params = {k: v for k, v in params.items() if v.ndim > 1}
  cs = {"conv": 0.5, "dense": 3.0, "odd": 0.02}
  grads = {k: cs[k] * params[k] for k in params}
  beta = 0.1
  for tx in (
    legw.scale_by_lars(1.0, weight_decay=beta),
    legw.scale_by_percent_delta(beta),
    legw.scale_by_median_curvature(beta),
  ):
    rates = _rates(tx, grads, params, beta)
    for k in params:
      np.testing.assert_allclose(rates[k], 1 / (cs[k] + beta), rtol=1e-5)


# ---------------------------------------------------------------------------
# CBLR.
# ---------------------------------------------------------------------------


def _quadratic(a, b):
  def obj(p):
    return sum(jnp.sum(a[k] * (p[k] - b[k]) ** 2) for k in p)

  return obj


def _quadratic_problem(seed=0):
  rng = np.random.default_rng(seed)
  shapes = {"k1": (4, 3), "k2": (2, 2, 3), "bias": (5,)}
  a = {k: jnp.asarray(rng.uniform(0.5, 3.0, s), jnp.float32) for k, s in shapes.items()}
  b = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}
  w = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}
  return a, b, w


@pytest.mark.slow
@pytest.mark.parametrize("num_probes", [1, 3])
def test_cblr_exact_on_separable_quadratic(num_probes):
  a, b, w = _quadratic_problem()
  obj = _quadratic(a, b)
  g = jax.grad(obj)(w)
  tx = legw.scale_by_curvature_radius(max_radius=1e8, num_probes=num_probes)
  u, state = jax.jit(functools.partial(tx.update, obj_fn=obj))(g, tx.init(w), w)
  for k in ("k1", "k2"):
    expected = (
      (1 + np.asarray(g[k], np.float64) ** 2) ** 1.5 / (2 * np.asarray(a[k])) * np.asarray(g[k])
    )
    np.testing.assert_allclose(u[k], expected, rtol=1e-5)
    np.testing.assert_allclose(state.hessian_diag[k], 2 * a[k], rtol=1e-6)
  # Bias excluded by default: plain gradient, zero probe, zero estimate.
  np.testing.assert_array_equal(u["bias"], g["bias"])
  np.testing.assert_array_equal(state.hessian_diag["bias"], 0.0)


def test_cblr_weight_decay_is_curvature_of_regularised_objective():
  a, b, w = _quadratic_problem(1)
  obj = _quadratic(a, b)
  g = jax.grad(obj)(w)
  beta = 0.3
  tx = legw.scale_by_curvature_radius(weight_decay=beta, max_radius=1e8, trust_ratio_mask=True)
  u, _ = jax.jit(functools.partial(tx.update, obj_fn=obj))(g, tx.init(w), w)
  for k in ("k1", "k2"):  # kernels: decayed (default weight_decay_mask)
    uu = np.asarray(g[k], np.float64) + beta * np.asarray(w[k], np.float64)
    expected = (1 + uu**2) ** 1.5 / (2 * np.asarray(a[k]) + beta) * uu
    np.testing.assert_allclose(u[k], expected, rtol=1e-5)
  gb = np.asarray(g["bias"], np.float64)
  np.testing.assert_allclose(
    u["bias"], (1 + gb**2) ** 1.5 / (2 * np.asarray(a["bias"])) * gb, rtol=1e-5
  )


def test_cblr_clamps_flat_directions():
  a = {"w": jnp.array([[1.0, 1e-9, 0.0]])}
  b = {"w": jnp.zeros((1, 3))}
  w = {"w": jnp.array([[0.1, 0.1, 0.1]])}
  obj = _quadratic(a, b)
  g = jax.grad(obj)(w)
  g = {"w": g["w"].at[0, 2].set(0.05)}  # a nonzero gradient in the flat (a = 0) direction
  tx = legw.scale_by_curvature_radius(max_radius=50.0)
  u, _ = jax.jit(functools.partial(tx.update, obj_fn=obj))(g, tx.init(w), w)
  r0 = (1 + 0.2**2) ** 1.5 / 2.0
  np.testing.assert_allclose(u["w"], [[r0 * 0.2, 50.0 * g["w"][0, 1], 50.0 * 0.05]], rtol=1e-5)


def test_hutchinson_is_unbiased_on_non_separable_quadratic():
  rng = np.random.default_rng(0)
  m = rng.normal(size=(6, 6))
  A = jnp.asarray(m @ m.T / 6 + np.eye(6), jnp.float32)
  obj = lambda p: (
    0.5 * jnp.concatenate([p["x"].ravel(), p["y"]]) @ A @ jnp.concatenate([p["x"].ravel(), p["y"]])
  )
  params = {"x": jnp.ones((2, 2)), "y": jnp.ones(2)}
  one = legw.hutchinson_diagonal(obj, params, jax.random.PRNGKey(1))
  est = legw.hutchinson_diagonal(obj, params, jax.random.PRNGKey(1), num_probes=4000)
  diag = np.diag(np.asarray(A))
  got = np.concatenate([np.asarray(est["x"]).ravel(), np.asarray(est["y"])])
  np.testing.assert_allclose(got, diag, atol=0.1)
  got1 = np.concatenate([np.asarray(one["x"]).ravel(), np.asarray(one["y"])])
  assert np.max(np.abs(got1 - diag)) > 0.1  # a single probe is not exact here


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(num_probes=0), "num_probes must be an integer >= 1"),
    (dict(num_probes=2.5), "num_probes must be an integer >= 1"),
    (dict(mask=[True]), "one bool per leaf of params \\(2\\), got 1"),
  ],
)
def test_hutchinson_rejects_bad_arguments(kwargs, match):
  params = {"x": jnp.ones((2, 2)), "y": jnp.ones(2)}
  obj = lambda p: jnp.sum(p["x"] ** 2) + jnp.sum(p["y"] ** 2)
  with pytest.raises(ValueError, match=match):
    legw.hutchinson_diagonal(obj, params, jax.random.PRNGKey(0), **kwargs)


def test_cblr_update_every_and_key_in_state():
  rng = np.random.default_rng(2)
  m = rng.normal(size=(16, 16))
  A = jnp.asarray(m @ m.T + np.eye(16), jnp.float32)
  obj = lambda p: 0.5 * p["w"].ravel() @ A @ p["w"].ravel()
  w = {"w": jnp.ones((4, 4))}
  g = jax.grad(obj)(w)
  tx = legw.scale_by_curvature_radius(update_every=3, key=7)
  state = tx.init(w)
  np.testing.assert_array_equal(state.key, jax.random.PRNGKey(7))
  update = jax.jit(functools.partial(tx.update, obj_fn=obj))
  hs, keys = [], []
  for _ in range(7):
    _, state = update(g, state, w)
    hs.append(np.asarray(state.hessian_diag["w"]))
    keys.append(np.asarray(state.key))
  assert int(state.count) == 7
  np.testing.assert_array_equal(hs[0], hs[1])
  np.testing.assert_array_equal(hs[0], hs[2])
  np.testing.assert_array_equal(hs[3], hs[5])
  assert not np.array_equal(hs[2], hs[3])  # re-estimated at step 3 with a new probe
  assert len({k.tobytes() for k in keys}) == 7


def test_cblr_missing_obj_fn_and_params_raise():
  tx = legw.scale_by_curvature_radius()
  w = {"w": jnp.ones((2, 2))}
  with pytest.raises(ValueError, match="obj_fn"):
    tx.update(w, tx.init(w), w)
  with pytest.raises(ValueError, match="params"):
    tx.update(w, tx.init(w), obj_fn=lambda p: jnp.sum(p["w"]))
  opt = legw.cblr(0.1)
  with pytest.raises(ValueError, match="obj_fn"):
    opt.update(w, opt.init(w), w)


# ---------------------------------------------------------------------------
# Validation, params, jit, inject_hyperparams, dtypes.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
  "factory,kwargs,name",
  [
    (legw.scale_by_median_curvature, {"weight_decay": -1.0}, "weight_decay"),
    (legw.scale_by_median_curvature, {"eps": -1e-3}, "eps"),
    (legw.scale_by_percent_delta, {"weight_decay": float("nan")}, "weight_decay"),
    (legw.scale_by_percent_delta, {"eps": -1.0}, "eps"),
    (legw.scale_by_curvature_radius, {"max_radius": 0.0}, "max_radius"),
    (legw.scale_by_curvature_radius, {"num_probes": 0}, "num_probes"),
    (legw.scale_by_curvature_radius, {"num_probes": 1.5}, "num_probes"),
    (legw.scale_by_curvature_radius, {"update_every": True}, "update_every"),
    (legw.scale_by_curvature_radius, {"weight_decay": -0.1}, "weight_decay"),
    (functools.partial(legw.mclr, -0.1), {}, "learning_rate"),
    (functools.partial(legw.mclr, 0.1), {"momentum": 1.0}, "momentum"),
    (functools.partial(legw.mclr, 0.1), {"eps": -1.0}, "eps"),
    (functools.partial(legw.percent_delta, 0.1), {"momentum": -0.5}, "momentum"),
    (functools.partial(legw.percent_delta, 0.1), {"weight_decay": -1.0}, "weight_decay"),
    (functools.partial(legw.cblr, -1.0), {}, "learning_rate"),
    (functools.partial(legw.cblr, 0.1), {"update_every": 0}, "update_every"),
    (functools.partial(legw.cblr, 0.1), {"max_radius": -5.0}, "max_radius"),
  ],
)
def test_constructor_value_errors_name_the_argument(factory, kwargs, name):
  with pytest.raises(ValueError, match=name):
    factory(**kwargs)


@pytest.mark.parametrize("factory", [legw.scale_by_median_curvature, legw.scale_by_percent_delta])
def test_missing_params_raise(factory):
  tx = factory()
  g = {"w": jnp.ones((2, 2))}
  with pytest.raises(ValueError, match="params"):
    tx.update(g, tx.init(g))


@pytest.mark.slow
@pytest.mark.parametrize("factory", [legw.mclr, legw.percent_delta])
def test_optimizer_jit_matches_eager_and_inject_hyperparams(factory):
  params, grads = random_tree(4)
  opt = factory(0.05, weight_decay=1e-3)
  state = opt.init(params)
  eager, _ = opt.update(grads, state, params)
  jitted, _ = jax.jit(opt.update)(grads, state, params)
  allclose_tree(jitted, to_np(eager), rtol=1e-6)
  # Hyperparameters as traced arrays pass validation and give the same result.
  inj = optax.inject_hyperparams(factory)(learning_rate=0.05, weight_decay=1e-3)
  u, _ = jax.jit(inj.update)(grads, inj.init(params), params)
  allclose_tree(u, to_np(eager), rtol=1e-6)


@pytest.mark.parametrize("factory", [legw.scale_by_median_curvature, legw.scale_by_percent_delta])
def test_low_precision_params_use_float32_statistics(factory):
  # Values whose float16 sums of |g/w| overflow (> 65504) still give finite rates.
  w = jnp.full((64, 64), 1e-2, jnp.float16)
  g = jnp.full((64, 64), 1.0, jnp.float16)
  tx = factory()
  u, _ = tx.update({"w": g}, tx.init({"w": w}), {"w": w})
  assert u["w"].dtype == jnp.float16
  np.testing.assert_allclose(np.asarray(u["w"], np.float32), 1e-2, rtol=1e-2)
  wb, gb = w.astype(jnp.bfloat16), g.astype(jnp.bfloat16)
  u, _ = tx.update({"w": gb}, tx.init({"w": wb}), {"w": wb})
  assert u["w"].dtype == jnp.bfloat16


def _regression_problem():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(64, 8)), jnp.float32)
  w_true = jnp.asarray(rng.normal(size=(8, 3)), jnp.float32)
  y = x @ w_true + 0.5
  params = {"kernel": jnp.asarray(rng.normal(size=(8, 3)) * 0.3, jnp.float32), "bias": jnp.zeros(3)}

  def loss(p):
    return jnp.mean((x @ p["kernel"] + p["bias"] - y) ** 2)

  return params, loss


@pytest.mark.parametrize(
  "make",
  [
    lambda: legw.mclr(0.05, momentum=0.9),
    lambda: legw.percent_delta(0.02, momentum=0.9, nesterov=True),
    lambda: legw.cblr(0.2, momentum=0.5, num_probes=2, update_every=2),
  ],
  ids=["mclr", "percent_delta", "cblr"],
)
def test_optimizers_reduce_a_simple_loss(make):
  params, loss = _regression_problem()
  opt = make()

  @jax.jit
  def run(params):
    def step(carry, _):
      p, s = carry
      g = jax.grad(loss)(p)
      u, s = opt.update(g, s, p, obj_fn=loss)
      return (optax.apply_updates(p, u), s), None

    (p, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=100)
    return p

  start = float(loss(params))
  end = float(loss(run(params)))
  assert end < 0.05 * start, (start, end)


def test_optimizer_is_the_chain_of_lars_shape():
  params, grads = random_tree(9)
  lr, m = 0.1, 0.9
  opt = legw.mclr(lr, momentum=m, weight_decay=1e-3)
  state = opt.init(params)
  u1, state = opt.update(grads, state, params)
  u2, state = opt.update(grads, state, params)
  scaled, _ = legw.scale_by_median_curvature(1e-3).update(grads, None, params)
  for k in params:
    np.testing.assert_allclose(u1[k], -lr * scaled[k], rtol=1e-6)
    np.testing.assert_allclose(u2[k], -lr * (1 + m) * scaled[k], rtol=1e-6)


# ---------------------------------------------------------------------------
# shard_map over 8 simulated CPU devices.
# ---------------------------------------------------------------------------


def _mesh():
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)")
  return jax.sharding.Mesh(np.array(jax.devices()[:8]), ("x",))


def _sharded_tree(seed):
  rng = np.random.default_rng(seed)
  shapes = {"k1": (16, 5), "k2": (8, 3, 4), "k3": (24, 2), "bias": (8,)}
  params = {
    k: jnp.asarray(rng.normal(size=s) * (1 + i), jnp.float32)
    for i, (k, s) in enumerate(shapes.items())
  }
  grads = {
    k: jnp.asarray(rng.normal(size=s) * 10.0 ** -(i + 1), jnp.float32)
    for i, (k, s) in enumerate(shapes.items())
  }
  params["k3"] = params["k3"].at[::3].set(0.0)  # zeros for PercentDelta's guard
  return params, grads


@pytest.mark.slow
@pytest.mark.parametrize("factory", [legw.scale_by_median_curvature, legw.scale_by_percent_delta])
def test_shard_map_statistics_are_of_the_whole_layer(factory):
  mesh = _mesh()
  params, grads = _sharded_tree(0)
  single, _ = factory(weight_decay=1e-2).update(grads, None, params)

  def sharded(axis_name):
    tx = factory(weight_decay=1e-2, axis_name=axis_name)

    def f(g, w):
      return tx.update(g, tx.init(w), w)[0]

    return jax.jit(jax.shard_map(f, mesh=mesh, in_specs=(P("x"), P("x")), out_specs=P("x")))(
      grads, params
    )

  allclose_tree(sharded("x"), to_np(single), rtol=1e-5)
  # Without axis_name each shard uses its own statistics: a different answer.
  local = sharded(None)
  assert not np.allclose(np.asarray(local["k1"]), np.asarray(single["k1"]), rtol=1e-3)


@pytest.mark.slow
def test_shard_map_cblr_matches_single_device():
  mesh = _mesh()
  rng = np.random.default_rng(3)
  shapes = {"k1": (16, 3), "k2": (8, 2, 2)}
  a = {k: jnp.asarray(rng.uniform(0.5, 2.0, s), jnp.float32) for k, s in shapes.items()}
  b = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}
  w = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}
  g = jax.grad(_quadratic(a, b))(w)
  tx1 = legw.scale_by_curvature_radius(max_radius=1e8)
  single, _ = jax.jit(functools.partial(tx1.update, obj_fn=_quadratic(a, b)))(g, tx1.init(w), w)
  tx = legw.scale_by_curvature_radius(max_radius=1e8, axis_name="x")

  def f(g, w, a, b):
    return tx.update(g, tx.init(w), w, obj_fn=_quadratic(a, b))[0]  # local part of a separable loss

  spec = (P("x"),) * 4
  out = jax.jit(jax.shard_map(f, mesh=mesh, in_specs=spec, out_specs=P("x")))(g, w, a, b)
  allclose_tree(out, to_np(single), rtol=1e-5)


def test_exact_medians_without_sorting_match_numpy():
  rng = np.random.default_rng(0)
  arrays = [
    np.abs(rng.normal(size=(37, 11))),  # odd size
    np.abs(rng.normal(size=(6, 4))) * 1e-30,  # tiny values (even size)
    np.array([0.0, 0.0, 0.0, 5.0]),  # mostly zeros
    np.array([3.0, 3.0, 3.0, 3.0, 1.0, 7.0]),  # ties in the middle
    np.array([1e-40, 2e-40, 3.0e38, np.inf]),  # subnormals and inf
    np.array([2.5]),
  ]
  got = jax.jit(lambda a: _curvature._medians_of_magnitudes(a, None))(
    [jnp.asarray(a, jnp.float32) for a in arrays]
  )
  for a, m in zip(arrays, got):
    np.testing.assert_array_equal(np.float32(m), np.median(a.astype(np.float32)))


def test_exact_medians_float64():
  with jax.enable_x64(True):
    a = np.abs(np.random.default_rng(1).normal(size=(10, 7)))
    m = jax.jit(lambda v: _curvature._medians_of_magnitudes(v, None))([jnp.asarray(a)])[0]
    assert m.dtype == jnp.float64
    assert float(m) == np.median(a)


def test_cblr_inject_hyperparams_with_static_integers():
  a, b, w = _quadratic_problem(4)
  obj = _quadratic(a, b)
  g = jax.grad(obj)(w)
  with pytest.raises(ValueError, match="static_args"):
    optax.inject_hyperparams(legw.cblr)(learning_rate=0.1, num_probes=2).init(w)
  inj = optax.inject_hyperparams(legw.cblr, static_args=("num_probes", "update_every", "key"))(
    learning_rate=0.1, max_radius=1e8, num_probes=2, momentum=0.0
  )
  u, _ = jax.jit(functools.partial(inj.update, obj_fn=obj))(g, inj.init(w), w)
  for k in ("k1", "k2"):
    gk = np.asarray(g[k], np.float64)
    expected = -0.1 * (1 + gk**2) ** 1.5 / (2 * np.asarray(a[k])) * gk
    np.testing.assert_allclose(u[k], expected, rtol=1e-5)
