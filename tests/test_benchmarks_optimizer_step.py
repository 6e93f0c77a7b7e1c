"""benchmarks.costs.optimizer_step: its trees, its ablations and its probes.

The timings themselves are never asserted (they are the benchmark's output);
these tests check that what is timed is what the README says it is.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import legw
from benchmarks import RESULTS_DIR
from benchmarks.costs import optimizer_step as ob
from benchmarks.costs import step_report as sr

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


RESULTS = os.path.join(RESULTS_DIR, "optimizer_step.json")
ABLATIONS = os.path.join(RESULTS_DIR, "optimizer_step-ablations.json")
FAMILY_RUNS = os.path.join(RESULTS_DIR, "optimizer_step-family-runs.json")


def test_step_table_of_the_committed_run():
  d = ob.load(RESULTS)
  lines = sr.step_table(d, trees=["resnet50", "transformer"]).splitlines()
  assert lines[0].startswith("| tree | optimizer | step (ms) | × SGD |")
  assert lines[2].startswith("| ResNet-50: 161 leaves, 25.6 M params (102 MB) | optax.sgd")
  assert "|  | legw.lars | 23.3 | 1.59 | 1.58 | 62% | 0.01 |" in lines
  assert "|  | optax.lars | 122.8 | 8.23 | 8.99 | 12% | 306.4 |" in lines
  assert len(lines) == 2 + 8
  some = sr.step_table(d, trees=["scale-*"], optimizers=["legw.lars"]).splitlines()
  assert len(some) == 2 + 2 * 5 and not any("optax.lars" in line for line in some)
  assert "2-core AMD EPYC, jax 0.10.2 on CPU" in sr.caption(d)
  assert "31 repetitions per tree (10 above 30 M params)" in sr.caption(d)


def test_scaling_and_probe_tables_of_the_committed_runs():
  assert "| legw.lars | 0.044 | 1.82 | 1.000 | 19 |" in sr.scaling_table(ob.load(RESULTS))
  probes = sr.probe_table(ob.load(ABLATIONS)).splitlines()
  assert len(probes) == 2 + len(sr.PROBES)
  assert "| legw.lars | 1.57 | 1.40 |" in probes


def test_family_runs_table_and_spans():
  d = ob.load(FAMILY_RUNS)
  assert [r["commit"] for r in d["runs"]] == ["514afc4"] * 3
  rows = sr.runs_table(d).splitlines()
  assert rows[2] == (
    "| 1 | 15.6 | 1.49 (1.41) | 2.25 (2.32) | 6.70 (6.96) | 4.3 | 3.09 | 5.1 (4.4 s) |"
  )
  summary = sr.runs_summary(d)
  assert "percent_delta` step on ResNet-50: 2.2–2.4×" in summary
  assert "mclr` step on ResNet-50: 6.6–6.9×" in summary
  assert "(400 leaves): 4.2–5.1×" in summary
  assert "3 runs" in sr.caption(d) and "load average 0.2–1.5" in sr.caption(d)


def test_report_prints_every_table(capsys):
  ob.main(["--report", ABLATIONS])
  out = capsys.readouterr().out
  assert sr.probe_table(ob.load(ABLATIONS)) in out and sr.scaling_table(ob.load(ABLATIONS)) in out
  ob.main(["--report", FAMILY_RUNS])
  assert sr.runs_summary(ob.load(FAMILY_RUNS)) in capsys.readouterr().out


def test_write_run_appends_to_the_runs(tmp_path):
  path = str(tmp_path / "r.json")
  ob.write_run(path, {"n": 1}, append=True)
  ob.write_run(path, {"n": 2}, append=True)
  assert ob.load(path) == {"runs": [{"n": 1}, {"n": 2}]}
  ob.write_run(path, {"n": 3}, append=False)
  assert ob.runs_of(ob.load(path)) == [{"n": 3}]
