"""``keep_stats=True``: the per-layer rates and sizes an update applied, in its state.

Each test checks the kept values against an independent formula (numpy) or
against the update itself: the kept ``trust_ratio`` is the factor the
transform multiplied ``g + beta*w`` by.
"""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import legw

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
  shard = NamedSharding(mesh, PartitionSpec("d"))
  p, g = jax.device_put(params, shard), jax.device_put(grads, shard)
  _, state = jax.jit(opt.update)(g, opt.init(p), p)
  np.testing.assert_allclose(state.weight_size["k"], want_w, rtol=1e-6)
  # shard_map with axis_name: every device holds half a layer.
  opt_sm = legw.scale_by_lars(1.0, keep_stats=True, axis_name="d")
  spec = PartitionSpec("d")

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
