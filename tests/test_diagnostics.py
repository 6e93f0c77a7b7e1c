"""Per-layer diagnostics: statistics computed from parameters and gradients, and kept by updates.

* ``legw._diagnostics``: ``layerwise_stats`` (per-layer norms and their ratio),
  ``local_lipschitz`` (the curvature along a direction) and
  ``trust_coefficient_from_sgd``.
* ``keep_stats=True``: the per-layer rates and sizes an update applied, in its
  state (``applied_layerwise_stats``). Each test checks the kept values
  against an independent formula (numpy) or against the update itself: the
  kept ``trust_ratio`` is the factor the transform multiplied ``g + beta*w``
  by.
"""

import re

import chex
import flax.linen as nn
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import legw
from legw._masks import leaf_path

# ---------------------------------------------------------------------------
# layerwise_stats, local_lipschitz, trust_coefficient_from_sgd.
# ---------------------------------------------------------------------------


def _tree(seed=0):
  rng = np.random.default_rng(seed)
  params = {
    "encoder": {"kernel": rng.normal(size=(5, 4)), "bias": rng.normal(size=(4,))},
    "blocks": [rng.normal(size=(2, 3, 3)), rng.normal(size=(8,))],
  }
  grads = jax.tree.map(lambda x: rng.normal(size=x.shape) * 1e-2, params)
  return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params), jax.tree.map(
    lambda x: jnp.asarray(x, jnp.float32), grads
  )


def test_layerwise_stats_matches_numpy_with_paths():
  params, grads = _tree()
  stats = legw.layerwise_stats(params, grads)
  assert set(stats) == {"encoder/kernel", "encoder/bias", "blocks/0", "blocks/1"}
  pairs = {
    "encoder/kernel": (params["encoder"]["kernel"], grads["encoder"]["kernel"]),
    "encoder/bias": (params["encoder"]["bias"], grads["encoder"]["bias"]),
    "blocks/0": (params["blocks"][0], grads["blocks"][0]),
    "blocks/1": (params["blocks"][1], grads["blocks"][1]),
  }
  for name, (w, g) in pairs.items():
    wn = np.linalg.norm(np.asarray(w, np.float64))
    gn = np.linalg.norm(np.asarray(g, np.float64))
    assert set(stats[name]) == {"param_norm", "grad_norm", "norm_ratio"}
    np.testing.assert_allclose(stats[name]["param_norm"], wn, rtol=1e-6)
    np.testing.assert_allclose(stats[name]["grad_norm"], gn, rtol=1e-6)
    np.testing.assert_allclose(stats[name]["norm_ratio"], wn / gn, rtol=1e-6)


def test_layerwise_stats_jit_and_zero_gradient_and_float16():
  params, grads = _tree(1)
  jitted = jax.jit(legw.layerwise_stats)(params, grads)
  eager = legw.layerwise_stats(params, grads)
  for name in eager:
    for key in eager[name]:
      np.testing.assert_allclose(jitted[name][key], eager[name][key], rtol=1e-6)
  z = legw.layerwise_stats({"w": jnp.ones((2, 2))}, {"w": jnp.zeros((2, 2))})
  assert np.isinf(z["w"]["norm_ratio"])
  # float16 leaves whose sum of squares overflows float16 still give the norm.
  big = legw.layerwise_stats(
    {"w": jnp.full((100, 100), 300.0, jnp.float16)}, {"w": jnp.ones((100, 100), jnp.float16)}
  )
  np.testing.assert_allclose(big["w"]["param_norm"], 300.0 * 100, rtol=1e-3)
  assert big["w"]["param_norm"].dtype == jnp.float32


def test_layerwise_stats_paths_for_flax_linen_and_nnx():
  variables = nn.Dense(3).init(jax.random.PRNGKey(0), jnp.ones((1, 2)))
  stats = legw.layerwise_stats(variables, variables)
  assert set(stats) == {"params/kernel", "params/bias"}
  model = nnx.Sequential(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), nnx.Linear(3, 1, rngs=nnx.Rngs(1)))
  state = nnx.state(model, nnx.Param)
  stats = legw.layerwise_stats(state, state)
  assert set(stats) == {"layers/0/kernel", "layers/0/bias", "layers/1/kernel", "layers/1/bias"}
  np.testing.assert_allclose(stats["layers/1/kernel"]["norm_ratio"], 1.0, rtol=1e-6)
  assert leaf_path((jax.tree_util.DictKey("a"), jax.tree_util.SequenceKey(2))) == "a/2"


def test_layerwise_stats_structure_mismatch_raises():
  params, grads = _tree()
  with pytest.raises(ValueError, match="grads"):
    legw.layerwise_stats(params, {"encoder": grads["encoder"]})


def test_layerwise_stats_shard_map_is_whole_layer():
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices")
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]), ("x",))
  rng = np.random.default_rng(0)
  params = {
    "a": jnp.asarray(rng.normal(size=(16, 3)), jnp.float32),
    "b": jnp.asarray(rng.normal(size=(8,)), jnp.float32),
  }
  grads = jax.tree.map(lambda x: 0.1 * x + 0.01, params)
  single = legw.layerwise_stats(params, grads)

  def f(w, g):
    s = legw.layerwise_stats(w, g, axis_name="x")
    return jax.tree.map(lambda v: v[None], s)  # one copy per device

  out = jax.jit(jax.shard_map(f, mesh=mesh, in_specs=(P("x"), P("x")), out_specs=P("x")))(
    params, grads
  )
  for name in single:
    for key in single[name]:
      np.testing.assert_allclose(out[name][key], np.full(8, single[name][key]), rtol=1e-5)


def _quadratic_on_tree(A, c):
  def loss(p):
    z = jnp.concatenate([p["x"].ravel(), p["y"]])
    return 0.5 * z @ A @ z + c @ z + 3.0

  return loss


@pytest.mark.parametrize("definite", [True, False])
def test_local_lipschitz_on_quadratic_is_rayleigh_quotient(definite):
  rng = np.random.default_rng(1 if definite else 2)
  m = rng.normal(size=(7, 7))
  A = m @ m.T + np.eye(7) if definite else (m + m.T) / 2  # indefinite: |.| matters
  loss = _quadratic_on_tree(
    jnp.asarray(A, jnp.float32), jnp.asarray(rng.normal(size=7), jnp.float32)
  )
  params = {
    "x": jnp.asarray(rng.normal(size=(2, 2)), jnp.float32),
    "y": jnp.asarray(rng.normal(size=3), jnp.float32),
  }
  d = {
    "x": jnp.asarray(rng.normal(size=(2, 2)), jnp.float32),
    "y": jnp.asarray(rng.normal(size=3), jnp.float32),
  }
  dv = np.concatenate([np.asarray(d["x"]).ravel(), np.asarray(d["y"])]).astype(np.float64)
  expected = abs(dv @ A @ dv) / (dv @ dv)
  got = legw.local_lipschitz(loss, params, d)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  jitted = jax.jit(legw.local_lipschitz, static_argnums=0)(loss, params, d)
  np.testing.assert_allclose(jitted, expected, rtol=1e-5)
  # The Hessian of a quadratic does not depend on where it is taken, nor on |d|.
  moved = jax.tree.map(lambda v: v + 5.0, params)
  scaled = jax.tree.map(lambda v: -3.0 * v, d)
  np.testing.assert_allclose(legw.local_lipschitz(loss, moved, scaled), expected, rtol=1e-5)


def test_local_lipschitz_matches_full_hessian_on_a_network():
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(16, 3)), jnp.float32)
  y = jnp.asarray(rng.normal(size=(16,)), jnp.float32)
  params = {
    "w1": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
    "w2": jnp.asarray(rng.normal(size=(4,)), jnp.float32),
  }

  def loss(p):
    return jnp.mean((jnp.tanh(x @ p["w1"]) @ p["w2"] - y) ** 2)

  g = jax.grad(loss)(params)
  flat, unravel = jax.flatten_util.ravel_pytree(params)
  H = np.asarray(jax.jit(jax.hessian(lambda v: loss(unravel(v))))(flat), np.float64)
  gv = np.asarray(jax.flatten_util.ravel_pytree(g)[0], np.float64)
  expected = abs(gv @ H @ gv) / (gv @ gv)
  np.testing.assert_allclose(
    jax.jit(lambda p, d: legw.local_lipschitz(loss, p, d))(params, g), expected, rtol=1e-4
  )


def test_local_lipschitz_zero_direction_and_mismatch():
  loss = lambda p: jnp.sum(p["w"] ** 2)
  params = {"w": jnp.ones(3)}
  assert np.isnan(legw.local_lipschitz(loss, params, {"w": jnp.zeros(3)}))
  with pytest.raises(ValueError, match="direction"):
    legw.local_lipschitz(loss, params, {"v": jnp.zeros(3)})


def test_layerwise_stats_complex64_is_the_norm_of_abs_squared():
  # Issue 13: sum(x * x) of a complex leaf is complex (a rotated "norm"); the norm is
  # sqrt(sum |x|^2), real, as np.linalg.norm gives it.
  rng = np.random.default_rng(4)
  shapes = {"kernel": (5, 3), "bias": (3,)}
  params = {
    k: (rng.normal(size=s) + 1j * rng.normal(size=s)).astype(np.complex64)
    for k, s in shapes.items()
  }
  grads = {
    k: (0.1 * rng.normal(size=s) + 0.3j * rng.normal(size=s)).astype(np.complex64)
    for k, s in shapes.items()
  }
  for stats in (legw.layerwise_stats(params, grads), jax.jit(legw.layerwise_stats)(params, grads)):
    for k in shapes:
      wn = np.linalg.norm(params[k].astype(np.complex128))
      gn = np.linalg.norm(grads[k].astype(np.complex128))
      for key, want in (("param_norm", wn), ("grad_norm", gn), ("norm_ratio", wn / gn)):
        got = stats[k][key]
        assert got.dtype == jnp.float32, (k, key, got.dtype)
        np.testing.assert_allclose(got, want, rtol=1e-6)
  # Purely imaginary weights: sum(x * x) would be negative; |x|^2 is not.
  s = legw.layerwise_stats(
    {"w": jnp.full((4,), 2j, jnp.complex64)}, {"w": jnp.ones(4, jnp.complex64)}
  )
  np.testing.assert_allclose(s["w"]["param_norm"], 4.0, rtol=1e-6)


def test_local_lipschitz_complex64_is_the_real_curvature():
  # A real quadratic of the real and imaginary parts u = (Re z, Im z): f = u^T A u / 2 + c^T u,
  # whose Hessian in u is A. L(z, d) = |u_d^T A u_d| / |u_d|^2, computed by NumPy.
  rng = np.random.default_rng(5)
  n = 4
  m = rng.normal(size=(2 * n, 2 * n))
  A = (m + m.T) / 2
  c = rng.normal(size=2 * n)

  def loss(p):
    u = jnp.concatenate([jnp.real(p["z"]), jnp.imag(p["z"])])
    return 0.5 * u @ jnp.asarray(A, jnp.float32) @ u + jnp.asarray(c, jnp.float32) @ u

  params = {"z": jnp.asarray(rng.normal(size=n) + 1j * rng.normal(size=n), jnp.complex64)}
  d = {"z": jnp.asarray(rng.normal(size=n) + 1j * rng.normal(size=n), jnp.complex64)}
  dz = np.asarray(d["z"]).astype(np.complex128)
  ud = np.concatenate([dz.real, dz.imag])
  expected = abs(ud @ A @ ud) / (ud @ ud)
  got = legw.local_lipschitz(loss, params, d)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  np.testing.assert_allclose(
    jax.jit(legw.local_lipschitz, static_argnums=0)(loss, params, d), expected, rtol=1e-5
  )
  # A direction along the imaginary axis only: the curvature of the Im-block of A.
  di = {"z": jnp.asarray(1j * rng.normal(size=n), jnp.complex64)}
  v = np.asarray(di["z"]).imag.astype(np.float64)
  want = abs(v @ A[n:, n:] @ v) / (v @ v)
  np.testing.assert_allclose(legw.local_lipschitz(loss, params, di), want, rtol=1e-5)


def test_layerwise_stats_of_stacked_layers_are_per_slice():
  rng = np.random.default_rng(3)
  params = {
    "k": jnp.asarray(rng.normal(size=(3, 8, 5)), jnp.float32),
    "b": jnp.asarray(rng.normal(size=(4,)), jnp.float32),
  }
  grads = jax.tree.map(lambda p: p * 0.01 + 0.001, params)
  stacked = legw.layerwise_stats(params, grads, layer_axis={"k": 0, "b": None})
  assert stacked["k"]["param_norm"].shape == (3,) and stacked["b"]["param_norm"].shape == ()
  for i in range(3):
    one = legw.layerwise_stats({"k": params["k"][i]}, {"k": grads["k"][i]})["k"]
    for name in ("param_norm", "grad_norm", "norm_ratio"):
      np.testing.assert_allclose(stacked["k"][name][i], one[name], rtol=1e-6)
  # A stack on the last axis, given as an int for every leaf: "b" is 1-D, axis 0.
  last = legw.layerwise_stats(
    {"k": jnp.moveaxis(params["k"], 0, -1)}, {"k": jnp.moveaxis(grads["k"], 0, -1)}, layer_axis=2
  )
  np.testing.assert_allclose(last["k"]["param_norm"], stacked["k"]["param_norm"], rtol=1e-6)
  with pytest.raises(ValueError):
    legw.layerwise_stats(params, grads, layer_axis=3)


def test_trust_coefficient_from_sgd_is_the_median_ratio_over_trust_ratio_layers():
  params = {
    "a": jnp.ones((2, 2)),
    "b": jnp.ones((3, 3)),
    "c": jnp.ones((4, 4)),
    "bias": jnp.ones(2),
  }
  grads = {
    "a": 0.1 * params["a"],
    "b": 0.3 * params["b"],
    "c": 0.7 * params["c"],
    "bias": jnp.ones(2),
  }
  assert np.isclose(legw.trust_coefficient_from_sgd(params, grads), 0.3)
  only_a = {"a": True, "b": False, "c": False, "bias": False}
  assert np.isclose(legw.trust_coefficient_from_sgd(params, grads, trust_ratio_mask=only_a), 0.1)
  # LARS at the SGD learning rate then moves the median layer as SGD does.
  eta = legw.trust_coefficient_from_sgd(params, grads)
  updates, _ = legw.lars(0.5, trust_coefficient=eta, momentum=0.0).update(
    grads, legw.lars(0.5, trust_coefficient=eta, momentum=0.0).init(params), params
  )
  assert np.isclose(jnp.linalg.norm(updates["b"]), 0.5 * jnp.linalg.norm(grads["b"]), rtol=1e-5)
  # An NNX model, as nnx.Optimizer sees it: one call, no conversions.
  model = nnx.Sequential(nnx.Linear(4, 8, rngs=nnx.Rngs(0)), nnx.Linear(8, 2, rngs=nnx.Rngs(1)))
  loss = lambda m: jnp.mean(m(jnp.ones((3, 4))) ** 2)
  g = nnx.grad(loss)(model)
  eta = legw.trust_coefficient_from_sgd(nnx.state(model, nnx.Param), g)
  assert eta > 0
  with pytest.raises(ValueError, match="no trust-ratio layer"):
    legw.trust_coefficient_from_sgd({"w": jnp.zeros((2, 2))}, {"w": jnp.ones((2, 2))})


# ---------------------------------------------------------------------------
# keep_stats=True: applied_layerwise_stats.
# ---------------------------------------------------------------------------

RNG = np.random.default_rng(0)
PARAMS = {
  "dense": {"kernel": jnp.asarray(RNG.normal(size=(6, 4)), jnp.float32), "bias": jnp.zeros(4)},
  "out": {"kernel": jnp.asarray(RNG.normal(size=(4, 3)) * 0.1, jnp.float32)},
}
GRADS = jax.tree.map(lambda p: jnp.asarray(RNG.normal(size=p.shape) * 0.01, p.dtype), PARAMS)
KERNELS = ("dense/kernel", "out/kernel")
WD = 1e-2


def _np(x):
  return np.asarray(x, np.float64)


def _lars_sizes(w, g):
  return np.linalg.norm(_np(w)), np.linalg.norm(_np(g))


def _lars_combined_sizes(w, g):
  return np.linalg.norm(_np(w)), np.linalg.norm(_np(g) + WD * _np(w))


def _percent_delta_sizes(w, g):
  w, g = _np(w), _np(g)
  nz = w != 0
  return float(nz.sum()), float(np.abs(g[nz] / w[nz]).sum())


def _median_sizes(w, g):
  w, g = np.abs(_np(w)), np.abs(_np(g))
  return float(np.median(w[w != 0])), float(np.median(g[g != 0]))


# (name, transform, sizes(w, g), trust coefficient, paper form)
TRANSFORMS = [
  (
    "scale_by_lars",
    lambda: legw.scale_by_lars(0.01, weight_decay=WD, keep_stats=True),
    _lars_sizes,
    0.01,
    True,
  ),
  (
    "scale_by_lars(combined)",
    lambda: legw.scale_by_lars(0.01, weight_decay=WD, denominator="combined", keep_stats=True),
    _lars_combined_sizes,
    0.01,
    False,
  ),
  (
    "scale_by_percent_delta",
    lambda: legw.scale_by_percent_delta(WD, keep_stats=True),
    _percent_delta_sizes,
    1.0,
    True,
  ),
  (
    "scale_by_median_curvature",
    lambda: legw.scale_by_median_curvature(WD, keep_stats=True),
    _median_sizes,
    1.0,
    True,
  ),
]


@pytest.mark.parametrize("name,make,sizes,eta,paper", TRANSFORMS, ids=[t[0] for t in TRANSFORMS])
def test_kept_rate_is_the_applied_factor_and_sizes_match_numpy(name, make, sizes, eta, paper):
  tx = make()
  state = tx.init(PARAMS)
  updates, state = jax.jit(tx.update)(GRADS, state, PARAMS)
  kept = legw.applied_layerwise_stats(state)
  assert set(kept) == set(KERNELS)  # biases are off the trust ratio by default
  for path in KERNELS:
    layer, leaf = path.split("/")
    w, g = PARAMS[layer][leaf], GRADS[layer][leaf]
    want_w, want_g = sizes(w, g)
    np.testing.assert_allclose(kept[path]["weight_size"], want_w, rtol=1e-5)
    np.testing.assert_allclose(kept[path]["grad_size"], want_g, rtol=1e-5)
    denom = want_g + WD * want_w if paper else want_g
    np.testing.assert_allclose(kept[path]["trust_ratio"], eta * want_w / denom, rtol=1e-5)
    # The factor the update was multiplied by.
    np.testing.assert_allclose(
      updates[layer][leaf], kept[path]["trust_ratio"] * (g + WD * w), rtol=1e-5, atol=1e-9
    )
  assert int(state.count) == 1


def test_lamb_keeps_its_ratio_of_the_adam_direction():
  opt = legw.lamb(0.1, weight_decay=WD, keep_stats=True)
  state = opt.init(PARAMS)
  _, state = opt.update(GRADS, state, PARAMS)
  kept = legw.applied_layerwise_stats(state)
  adam = optax.tree.get(state, "mu")  # after one step r = m_hat / (sqrt(v_hat) + eps)
  nu = optax.tree.get(state, "nu")
  for path in KERNELS:
    layer, leaf = path.split("/")
    w = _np(PARAMS[layer][leaf])
    r = (_np(adam[layer][leaf]) / 0.1) / (np.sqrt(_np(nu[layer][leaf]) / 0.001) + 1e-6)
    want_g = np.linalg.norm(r + WD * w)
    np.testing.assert_allclose(kept[path]["weight_size"], np.linalg.norm(w), rtol=1e-6)
    np.testing.assert_allclose(kept[path]["grad_size"], want_g, rtol=1e-5)
    np.testing.assert_allclose(kept[path]["trust_ratio"], np.linalg.norm(w) / want_g, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
  "make",
  [
    lambda ks: legw.lars(0.1, weight_decay=WD, nesterov=True, keep_stats=ks),
    lambda ks: legw.lars(0.1, weight_decay=WD, clip=True, keep_stats=ks),
    lambda ks: legw.lamb(1e-3, weight_decay=WD, keep_stats=ks),
    lambda ks: legw.mclr(0.1, weight_decay=WD, keep_stats=ks),
    lambda ks: legw.percent_delta(0.1, weight_decay=WD, keep_stats=ks),
  ],
  ids=["lars", "lars-clip", "lamb", "mclr", "percent_delta"],
)
def test_keeping_stats_changes_no_update_and_traces_once(make):
  chex.clear_trace_counter()  # one count per parametrization
  plain, kept = make(False), make(True)
  s_plain, s_kept = plain.init(PARAMS), kept.init(PARAMS)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(params, state):
    updates, state = kept.update(GRADS, state, params)
    return optax.apply_updates(params, updates), state

  p_plain = p_kept = PARAMS
  for _ in range(3):
    u_plain, s_plain = plain.update(GRADS, s_plain, p_plain)
    p_plain = optax.apply_updates(p_plain, u_plain)
    p_kept, s_kept = step(p_kept, s_kept)
  chex.assert_trees_all_close(p_kept, p_plain, rtol=1e-6, atol=0)
  stats = legw.applied_layerwise_stats(s_kept)
  for path in KERNELS:
    assert stats[path]["trust_ratio"].dtype == jnp.float32
    assert float(stats[path]["trust_ratio"]) > 0


def test_clip_keeps_the_clipped_factor():
  lr = 0.05
  opt = legw.scale_by_lars(1.0, weight_decay=WD, clip=True, learning_rate=lr, keep_stats=True)
  _, state = opt.update(GRADS, opt.init(PARAMS), PARAMS)
  kept = legw.applied_layerwise_stats(state)
  for path in KERNELS:
    layer, leaf = path.split("/")
    w_n, g_n = _lars_sizes(PARAMS[layer][leaf], GRADS[layer][leaf])
    np.testing.assert_allclose(
      kept[path]["trust_ratio"], min(w_n / (g_n + WD * w_n) / lr, 1.0), rtol=1e-5
    )


def test_stacked_layers_keep_one_value_per_layer():
  stack = (
    jnp.asarray(RNG.normal(size=(3, 5, 4)), jnp.float32) * jnp.array([1.0, 2.0, 0.0])[:, None, None]
  )
  params = {"stack": stack, "bias": jnp.ones((3, 4))}
  grads = jax.tree.map(lambda p: jnp.ones_like(p) * 0.1, params)
  opt = legw.scale_by_lars(1.0, layer_axis=0, keep_stats=True)
  _, state = opt.update(grads, opt.init(params), params)
  kept = legw.applied_layerwise_stats(state)
  assert set(kept) == {"stack"}  # a stacked (L, d) bias is a bias
  for i in range(3):
    w_n, g_n = _lars_sizes(stack[i], grads["stack"][i])
    want = 1.0 if w_n == 0 else w_n / g_n  # the zero layer falls back to 1
    np.testing.assert_allclose(kept["stack"]["trust_ratio"][i], want, rtol=1e-6)
    np.testing.assert_allclose(kept["stack"]["weight_size"][i], w_n, rtol=1e-6)
  assert kept["stack"]["trust_ratio"].shape == (3,)


def test_inject_hyperparams_and_optax_tree_get():
  opt = optax.inject_hyperparams(legw.lars)(
    learning_rate=0.1, trust_coefficient=0.01, keep_stats=True
  )
  state = opt.init(PARAMS)
  _, state = jax.jit(opt.update)(GRADS, state, PARAMS)
  ratios = optax.tree.get(state, "trust_ratio")
  assert isinstance(ratios["dense"]["bias"], optax.MaskedNode)
  w_n, g_n = _lars_sizes(PARAMS["out"]["kernel"], GRADS["out"]["kernel"])
  np.testing.assert_allclose(ratios["out"]["kernel"], 0.01 * w_n / g_n, rtol=1e-5)
  # A traced trust coefficient changed between steps shows in the kept ratio.
  state.hyperparams["trust_coefficient"] = jnp.asarray(0.02)
  _, state = jax.jit(opt.update)(GRADS, state, PARAMS)
  np.testing.assert_allclose(
    optax.tree.get(state, "trust_ratio")["out"]["kernel"], 0.02 * w_n / g_n, rtol=1e-5
  )


def test_multisteps_keeps_the_stats_of_the_accumulated_step():
  opt = optax.MultiSteps(legw.lars(0.1, keep_stats=True), every_k_schedule=2)
  g2 = jax.tree.map(lambda g: -3.0 * g, GRADS)
  state = opt.init(PARAMS)
  _, state = opt.update(GRADS, state, PARAMS)
  zeros = legw.applied_layerwise_stats(state)  # no step applied yet
  assert all(float(v) == 0 for s in zeros.values() for v in s.values())
  _, state = opt.update(g2, state, PARAMS)
  mean = jax.tree.map(lambda a, b: (a + b) / 2, GRADS, g2)
  direct = legw.lars(0.1, keep_stats=True)
  _, want = direct.update(mean, direct.init(PARAMS), PARAMS)
  chex.assert_trees_all_close(
    legw.applied_layerwise_stats(state), legw.applied_layerwise_stats(want), rtol=1e-6
  )


def test_apply_if_finite_keeps_the_last_finite_stats():
  opt = optax.apply_if_finite(legw.lars(0.1, keep_stats=True), max_consecutive_errors=3)
  state = opt.init(PARAMS)
  _, state = opt.update(GRADS, state, PARAMS)
  before = legw.applied_layerwise_stats(state)
  bad = jax.tree.map(lambda g: g.at[0].set(jnp.nan), GRADS)
  updates, state = opt.update(bad, state, PARAMS)
  assert all(bool(jnp.all(u == 0)) for u in jax.tree.leaves(updates))
  chex.assert_trees_all_equal(legw.applied_layerwise_stats(state), before)
  chex.assert_tree_all_finite(legw.applied_layerwise_stats(state))


def test_fsdp_and_shard_map_keep_whole_layer_stats():
  mesh = Mesh(np.array(jax.devices()[:2]), ("d",))
  params = {"k": jnp.asarray(RNG.normal(size=(8, 6)), jnp.float32)}
  grads = {"k": jnp.asarray(RNG.normal(size=(8, 6)), jnp.float32) * 0.1}
  want_w, want_g = _lars_sizes(params["k"], grads["k"])
  opt = legw.scale_by_lars(1.0, keep_stats=True)
  # FSDP: jit over parameters sharded along their first axis.
  shard = NamedSharding(mesh, P("d"))
  p, g = jax.device_put(params, shard), jax.device_put(grads, shard)
  _, state = jax.jit(opt.update)(g, opt.init(p), p)
  np.testing.assert_allclose(state.weight_size["k"], want_w, rtol=1e-6)
  # shard_map with axis_name: every device holds half a layer.
  opt_sm = legw.scale_by_lars(1.0, keep_stats=True, axis_name="d")
  spec = P("d")

  def local(p, g):
    _, s = opt_sm.update(g, opt_sm.init(p), p)
    return s.weight_size["k"][None], s.grad_size["k"][None]

  sizes = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(spec, spec), out_specs=(spec, spec)))(
    params, grads
  )
  np.testing.assert_allclose(sizes[0], [want_w, want_w], rtol=1e-6)
  np.testing.assert_allclose(sizes[1], [want_g, want_g], rtol=1e-6)


def _compiled_step(opt, params, grads):
  state = opt.init(params)

  def step(p, s, g):
    u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), s

  return jax.jit(step, donate_argnums=(0, 1)).lower(params, state, grads).compile()


@pytest.mark.parametrize(
  "make",
  [
    lambda ks: legw.lars(0.1, weight_decay=WD, keep_stats=ks),
    lambda ks: legw.lamb(1e-3, weight_decay=WD, keep_stats=ks),
    lambda ks: legw.percent_delta(0.1, keep_stats=ks),
  ],
  ids=["lars", "lamb", "percent_delta"],
)
def test_keeping_stats_adds_no_pass_over_the_parameters(make):
  """Same reductions over the kernels, and the bytes the compiled step
  accesses grow by a few scalars per layer, not by a pass (64 KB a kernel)."""
  params = {f"k{i}": jnp.full((128, 128), 0.01 * (i + 1)) for i in range(6)}
  params.update({f"b{i}": jnp.ones(128) for i in range(6)})
  grads = jax.tree.map(lambda p: 0.1 * p + 1e-3, params)
  plain, kept = (_compiled_step(make(ks), params, grads) for ks in (False, True))
  kernel_reduces = lambda c: len(re.findall(r"reduce\([^)]*f32\[128,128\]", c.as_text()))
  assert kernel_reduces(kept) == kernel_reduces(plain)
  extra = kept.cost_analysis()["bytes accessed"] - plain.cost_analysis()["bytes accessed"]
  assert extra < 4096, extra  # one 128x128 float32 pass would be 65,536 bytes


def test_no_stats_kept_is_a_clear_error():
  for opt in (legw.lars(0.1), optax.sgd(0.1), legw.cblr(0.1)):
    state = opt.init(PARAMS)
    with pytest.raises(ValueError, match="keep_stats=True"):
      legw.applied_layerwise_stats(state)


def test_bad_keep_stats_raises_at_construction():
  for bad in ("yes", 1, None):
    with pytest.raises(TypeError, match="keep_stats must be True or False"):
      legw.lars(0.1, keep_stats=bad)
  with pytest.raises(TypeError, match="keep_stats"):
    legw.cblr(0.1, keep_stats=True)  # no per-layer rate to keep


def test_two_transforms_naming_one_leaf_raise():
  opt = optax.chain(legw.scale_by_lars(keep_stats=True), legw.scale_by_lars(keep_stats=True))
  _, state = opt.update(GRADS, opt.init(PARAMS), PARAMS)
  with pytest.raises(ValueError, match="dense/kernel"):
    legw.applied_layerwise_stats(state)


def test_multi_transform_stats_are_merged_by_leaf():
  labels = {"dense": {"kernel": "a", "bias": "a"}, "out": {"kernel": "b"}}
  opt = optax.multi_transform(
    {"a": legw.lars(0.1, keep_stats=True), "b": legw.lamb(1e-3, keep_stats=True)}, labels
  )
  _, state = opt.update(GRADS, opt.init(PARAMS), PARAMS)
  assert set(legw.applied_layerwise_stats(state)) == set(KERNELS)


def test_bfloat16_params_keep_float32_stats():
  params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), PARAMS)
  grads = jax.tree.map(lambda g: g.astype(jnp.bfloat16), GRADS)
  opt = legw.lars(0.1, keep_stats=True)
  state = opt.init(params)
  _, state2 = jax.jit(opt.update)(grads, state, params)
  chex.assert_trees_all_equal_shapes_and_dtypes(state, state2)
  assert legw.applied_layerwise_stats(state2)["out/kernel"]["trust_ratio"].dtype == jnp.float32


@pytest.mark.parametrize("make", [legw.lars, legw.lamb], ids=["lars", "lamb"])
def test_integer_leaves_pass_and_keep_no_stats(make):
  params = {**PARAMS, "step": jnp.array(3, jnp.int32)}
  grads = {**GRADS, "step": np.zeros((), jax.dtypes.float0)}
  opt = make(0.1, keep_stats=True)
  state = opt.init(params)
  updates, state2 = jax.jit(opt.update)(grads, state, params)
  chex.assert_trees_all_equal_shapes_and_dtypes(state, state2)
  assert set(legw.applied_layerwise_stats(state2)) == set(KERNELS)
  assert updates["step"].dtype == jax.dtypes.float0


def test_two_leaves_with_one_path_raise_instead_of_one_hiding_the_other():
  params = {"a/b": jnp.ones(2), "a": {"b": jnp.ones(3)}}
  with pytest.raises(ValueError, match="two leaves of params have the path 'a/b'"):
    legw.layerwise_stats(params, params)
  with pytest.raises(ValueError, match="two leaves of params have the path 'a/b'"):
    legw.trust_coefficient_from_sgd(params, params)
