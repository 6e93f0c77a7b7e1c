"""benchmarks.costs.optimizer_step: its trees, its ablations and its probes.

The timings themselves are never asserted (they are the benchmark's output);
these tests check that what is timed is what the README says it is.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import legw
from benchmarks.costs import optimizer_step as ob

LR, M, WD = 0.1, 0.9, 1e-2


def _tree(seed=0):
  rng = np.random.default_rng(seed)
  shapes = {"conv": (3, 3, 4, 8), "dense": (16, 10), "bias": (10,), "scale": (8,)}
  return {k: jnp.asarray(rng.normal(size=s).astype(np.float32)) for k, s in shapes.items()}


def _run(opt, steps=3):
  params = _tree()
  state = opt.init(params)
  for t in range(steps):
    grads = jax.tree.map(lambda x: 0.1 * x, _tree(seed=t + 1))
    updates, state = jax.jit(opt.update)(grads, state, params)
    params = optax.apply_updates(params, updates)
  return params


def test_tree_shapes_are_as_described():
  info = ob.tree_info(ob.resnet50_shapes())
  assert info["leaves"] == 161 and round(info["params"] / 1e6, 1) == 25.6
  info = ob.tree_info(ob.transformer_shapes())
  assert info["leaves"] >= 1000


@pytest.mark.parametrize(
  "make",
  [
    lambda: ob.carried_norm_lars(LR, M, WD),
    lambda: ob.lars_probe("lars", LR, M, WD),
    lambda: ob.lars_probe("lars, stacked norms", LR, M, WD),
    lambda: ob.lars_probe("lars, rescue cond", LR, M, WD),
  ],
  ids=["carried", "probe-lars", "probe-stacked", "probe-rescue"],
)
def test_lars_ablations_compute_legw_lars(make):
  """The rejected designs time the same algorithm as legw.lars."""
  want = _run(legw.lars(LR, momentum=M, weight_decay=WD))
  got = _run(make())
  for k in want:
    np.testing.assert_allclose(got[k], want[k], rtol=2e-6, atol=1e-7, err_msg=k)
  assert not np.allclose(want["dense"], _tree()["dense"])


def test_probes_are_momentum_sgd_plus_their_part():
  sgd = _run(optax.sgd(LR, momentum=M))
  probe = _run(ob.lars_probe("sgd+wd read", LR, M, WD))
  for k in ("bias", "scale"):  # no weight decay, lambda = 1: momentum SGD
    np.testing.assert_allclose(probe[k], sgd[k], rtol=1e-6)
  plain = _run(legw.lars(LR, momentum=M, weight_decay=WD, trust_ratio_mask=False))
  for k in plain:  # kernels: lambda = 1 with weight decay
    np.testing.assert_allclose(probe[k], plain[k], rtol=1e-6, err_msg=k)
  with pytest.raises(ValueError, match="part must be one of"):
    ob.lars_probe("nope", LR, M, WD)


@pytest.mark.parametrize("scale", [1e20, 1e-18, 1.0])
def test_rescued_norm_is_exact_at_any_magnitude(scale):
  x = np.random.default_rng(0).normal(size=(64, 32)).astype(np.float32) * np.float32(scale)
  got = float(jax.jit(ob._rescued_norm)(jnp.asarray(x)))
  np.testing.assert_allclose(got, np.linalg.norm(x.astype(np.float64)), rtol=1e-6)


def test_sibling_fusion_probe_counts_fusions():
  """The probe the README's analysis cites (its value is recorded in each
  benchmark JSON as ``sibling_output_fusions``; 2 on XLA:CPU in jax 0.10)."""
  assert ob.sibling_fusions() in (1, 2)


def test_family_compile_tree_has_400_leaves():
  info = ob.tree_info(ob.mixed_kernel_shapes(200))
  assert info["leaves"] == 400 and info["kernels"] == 200
  assert round(info["params"] / 1e6, 1) == 1.4


def test_family_table_reports_step_and_compile_ratios():
  t = {"ratio_to_sgd": 2.0, "compile_ratio_to_sgd": 3.0, "median_ms": 1.0, "compile_s": 0.5}
  opts = {k: dict(t) for k in ("sgd", "legw.lars", "legw.percent_delta", "legw.mclr")}
  table = ob.family_table({"kernels-400": {"optimizers": opts}})
  assert "kernels-400: compile x SGD" in table and "| legw.mclr | 2.00 | 3.0 |" in table
  assert ob.family_table({}) == ""
