"""Tests of legw._diagnostics: per-layer statistics and local Lipschitz estimate."""

import flax.linen as nn
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

import legw
from legw._masks import leaf_path


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
  import numpy as np
  from flax import nnx

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
