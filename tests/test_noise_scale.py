"""legw.gradient_noise_scale and legw.adascale: the estimates against closed form,
the gain's range, AdaScale on a noisy quadratic, the K samples from a stacked axis
(one device, sharded under jax.jit, FSDP), shard_map and pmap, chex variants,
orbax, and bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import legw

N, D = 512, 6


def _least_squares(seed=0):
  """A linear least-squares problem whose per-example gradients are known."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(N, D))
  w_star = rng.normal(size=D)
  y = x @ w_star + 0.5 * rng.normal(size=N)
  w = w_star + 0.5 * rng.normal(size=D)
  per_example = x * (x @ w - y)[:, None]  # float64
  g = per_example.mean(0)
  trace_cov = ((per_example - g) ** 2).sum(1).mean()  # sampling with replacement
  params = {"w": jnp.asarray(w, jnp.float32)}
  data = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
  return params, data, float(g @ g), float(trace_cov)


def _loss(p, x, y):
  return 0.5 * jnp.mean((x @ p["w"] - y) ** 2)


def _samples(params, data, key, k, b):
  """K gradient samples of b examples each, drawn with replacement."""
  x, y = data
  idx = jax.random.randint(key, (k, b), 0, N)
  return jax.vmap(jax.grad(_loss), in_axes=(None, 0, 0))(params, x[idx], y[idx])


@pytest.mark.parametrize("k", [2, 8])
def test_estimates_match_the_float64_truth(k):
  """Averaged over 5,000 draws at fixed parameters: within 5% of the truth."""
  params, data, grad_sq, trace_cov = _least_squares()
  batch = 64
  opt = legw.gradient_noise_scale(batch, decay=0.9995)

  def step(state, key):
    _, state = opt.update(_samples(params, data, key, k, batch // k), state, params)
    return state, None

  keys = jax.random.split(jax.random.key(1), 5000)
  state, _ = jax.lax.scan(step, opt.init(params), keys)
  np.testing.assert_allclose(float(state.grad_sq), grad_sq, rtol=0.05)
  np.testing.assert_allclose(float(state.trace_cov), trace_cov, rtol=0.05)
  np.testing.assert_allclose(float(state.noise_scale), trace_cov / grad_sq, rtol=0.05)
  assert state.noise_scale.dtype == jnp.float32 and int(state.count) == 5000


def test_one_step_estimates_are_the_papers_formulas():
  """decay=0: the state holds one step's estimates (App. A), computed here in float64."""
  g = np.random.default_rng(3).normal(size=(4, 5)) + 0.3
  opt = legw.gradient_noise_scale(32, decay=0.0)
  mean, state = opt.update({"w": jnp.asarray(g, jnp.float32)}, opt.init({"w": jnp.zeros(5)}))
  big, small = np.sum(g.mean(0) ** 2), np.mean(np.sum(g**2, 1))
  b, bb = 8, 32
  np.testing.assert_allclose(mean["w"], g.mean(0), rtol=1e-6)
  np.testing.assert_allclose(state.grad_sq_avg, (bb * big - b * small) / (bb - b), rtol=1e-5)
  np.testing.assert_allclose(state.trace_cov_avg, (small - big) / (1 / b - 1 / bb), rtol=1e-5)


def test_negative_estimates_are_clamped_and_averaged_raw():
  """Pure noise around a zero gradient: the |G|^2 estimate is often negative. The
  averages keep the raw (unbiased) values; grad_sq reads as 0 or more, and the
  noise scale is then inf, never NaN."""
  opt = legw.gradient_noise_scale(16, decay=0.0)
  g = jnp.array([[1.0, 0.0], [-1.0, 0.0]])  # mean 0: |G|^2 estimate = -b*small/(B-b) < 0
  _, state = opt.update({"w": g}, opt.init({"w": jnp.zeros(2)}))
  assert float(state.grad_sq_avg) < 0
  assert float(state.grad_sq) == 0 and float(state.trace_cov) > 0
  assert float(state.noise_scale) == np.inf
  ada = legw.scale_by_adascale(4, 16, learning_rate=1.0)
  _, s = ada.update({"w": g}, ada.init({"w": jnp.zeros(2)}))
  assert float(s.gain) == 1.0  # step 0: no estimate yet
  _, s = ada.update({"w": g}, s)
  assert float(s.gain) == 4.0  # all noise: the whole scale


@settings(max_examples=30, deadline=None)
@given(
  seed=st.integers(0, 2**31 - 1),
  scale=st.sampled_from([1, 2, 16, 64]),
  k=st.sampled_from([2, 4]),
  offset=st.floats(0.0, 10.0),
)
def test_gain_stays_in_one_to_s(seed, scale, k, offset):
  g = jax.random.normal(jax.random.key(seed), (k, 7)) + offset
  opt = legw.scale_by_adascale(8, 8 * scale, learning_rate=0.1, decay=0.0)
  params = {"w": jnp.zeros(7)}
  state, gains = opt.init(params), []
  for _ in range(3):
    _, state = opt.update({"w": g}, state, params)
    assert 1.0 <= float(state.gain) <= scale
    gains.append(float(state.gain))
  np.testing.assert_allclose(float(state.progress), sum(gains), rtol=1e-6)  # tau += r


def test_gain_formula():
  """r_t = (s2 + mu2)/(s2/S + mu2), s2 = trace_cov / B0, from the smoothed estimates
  through step t - 1; the learning rate is the base schedule's at the progress."""
  rng = np.random.default_rng(5)
  samples = [{"w": jnp.asarray(rng.normal(size=(8, 10)) + 0.5, jnp.float32)} for _ in range(3)]
  lr = lambda tau: 0.1 + 0.01 * tau
  opt = legw.scale_by_adascale(16, 128, learning_rate=lr, decay=0.5)
  state = opt.init({"w": jnp.zeros(10)})
  progress = 0.0
  for t, g in enumerate(samples):
    s2, mu2 = float(state.noise.trace_cov) / 16, float(state.noise.grad_sq)
    expected = 1.0 if t == 0 else (s2 + mu2) / (s2 / 8 + mu2)
    u, state = opt.update(g, state)
    np.testing.assert_allclose(float(state.gain), expected, rtol=1e-5)
    np.testing.assert_allclose(u["w"], lr(progress) * expected * g["w"].mean(0), rtol=1e-5)
    progress += expected
    np.testing.assert_allclose(float(state.progress), progress, rtol=1e-6)
  assert expected > 1.5


def _trees():
  params = {"dense": {"kernel": jnp.ones((4, 3)) * 0.3, "bias": jnp.zeros(3)}}
  key = jax.random.key(7)

  def samples(t, k=4):
    keys = jax.random.split(jax.random.fold_in(key, t), 2)
    return {
      "dense": {
        "kernel": jax.random.normal(keys[0], (k, 4, 3)),
        "bias": jax.random.normal(keys[1], (k, 3)),
      }
    }

  return params, samples


@pytest.mark.parametrize(
  "ours, ref",
  [
    (
      lambda lr: legw.adascale(lr, base_batch_size=32, batch_size=32),
      lambda lr: optax.sgd(lr, 0.9),
    ),
    (
      lambda lr: legw.adascale(lr, base_batch_size=32, batch_size=32, momentum=0.8, nesterov=True),
      lambda lr: optax.sgd(lr, 0.8, nesterov=True),
    ),
    (
      lambda lr: legw.adascale(
        lr, base_batch_size=32, batch_size=32, trust_coefficient=0.01, weight_decay=1e-3
      ),
      lambda lr: legw.lars(lr, trust_coefficient=0.01, weight_decay=1e-3),
    ),
  ],
  ids=["sgd", "nesterov", "lars"],
)
def test_scale_one_is_the_inner_optimizer(ours, ref):
  """S = 1: gain 1, progress = steps, and the updates of the inner optimizer on the
  mean gradient, over 5 steps of a schedule."""
  lr = optax.linear_schedule(0.05, 0.2, 4)
  params, samples = _trees()
  a, b = ours(lr), ref(lr)
  sa, sb = a.init(params), b.init(params)
  pa = pb = params
  for t in range(5):
    g = samples(t)
    ua, sa = a.update(g, sa, pa)
    ub, sb = b.update(jax.tree.map(lambda x: jnp.mean(x, 0), g), sb, pb)
    chex.assert_trees_all_close(ua, ub, rtol=1e-6, atol=1e-7)
    pa, pb = optax.apply_updates(pa, ua), optax.apply_updates(pb, ub)
    assert float(optax.tree.get(sa, "gain")) == 1.0
    assert float(optax.tree.get(sa, "progress")) == t + 1


def _quadratic_run(opt, k, b, steps, seed, stop=None):
  """SGD on 0.5 * sum(h w^2) with per-example gradient noise N(0, 1)."""
  h = jnp.logspace(-2, 0, 20)
  w = jnp.full(20, 3.0)
  state = opt.init(w)

  @jax.jit
  def step(w, state, key):
    g = h * w + jax.random.normal(key, (k, b, 20)).mean(1)
    u, state = opt.update(g if k > 1 else g[0], state, w)
    w = w + u
    return w, state, 0.5 * jnp.sum(h * w * w)

  losses, key = [], jax.random.key(seed)
  for _ in range(steps):
    key, sub = jax.random.split(key)
    w, state, loss = step(w, state, sub)
    losses.append(float(loss))
    if stop is not None and float(optax.tree.get(state, "progress")) >= stop:
      break
  return np.array(losses)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_noisy_quadratic_adascale_beats_linear_scaling(seed):
  """S = 16: AdaScale reaches the base run's final loss in fewer than T/2 steps;
  the same SGD with the learning rate times 16 diverges."""
  b0, s, steps, lr = 4, 16, 400, 0.5
  base = _quadratic_run(optax.sgd(lr), 1, b0, steps, seed)
  target = base[-50:].mean()
  ada_opt = legw.adascale(lr, base_batch_size=b0, batch_size=b0 * s, momentum=0.0)
  ada = _quadratic_run(ada_opt, s, b0, steps, seed, stop=steps)
  assert len(ada) < steps  # progress reached T in fewer steps
  assert (ada[: steps // 2] <= target).any()
  linear = _quadratic_run(optax.sgd(lr * s), 1, b0 * s, steps, seed)
  assert not np.isfinite(linear[-1]) or linear[-50:].mean() > target


# Where the K samples come from: one device, a sharded leading axis, FSDP, shard_map.


def _mesh():
  return jax.make_mesh((8,), ("data",))


def _reference(opt_fn, params, grads):
  opt = opt_fn()
  return opt.update(grads, opt.init(params), params)


OPTS = {
  "noise": lambda: legw.gradient_noise_scale(64),
  "adascale": lambda: legw.adascale(0.1, base_batch_size=8, batch_size=64),
  "adascale-lars": lambda: legw.adascale(
    0.1, base_batch_size=8, batch_size=64, trust_coefficient=0.01
  ),
}


@pytest.mark.parametrize("name", sorted(OPTS))
def test_sharded_leading_axis_equals_one_device(name):
  """jit with NamedSharding: K = 8 samples sharded over 8 devices (data parallel),
  and with the parameters sharded too (FSDP): the same numbers as one device."""
  params = {"dense": {"kernel": jnp.ones((8, 3)) * 0.3, "bias": jnp.zeros(3)}}
  g = jax.tree.map(lambda x: jax.random.normal(jax.random.key(x.ndim), (8, *x.shape)), params)
  expected = _reference(OPTS[name], params, g)
  mesh = _mesh()
  stacked = jax.tree.map(
    lambda x: jax.device_put(x, NamedSharding(mesh, P("data"))), g
  )  # one sample per device
  for p_spec in (P(), P("data")):  # replicated; FSDP (the kernel's rows over the data axis)
    sharded_params = {
      "dense": {
        "kernel": jax.device_put(params["dense"]["kernel"], NamedSharding(mesh, p_spec)),
        "bias": params["dense"]["bias"],
      }
    }
    opt = OPTS[name]()
    got = jax.jit(opt.update)(stacked, opt.init(sharded_params), sharded_params)
    chex.assert_trees_all_close(got, expected, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("name", sorted(OPTS))
def test_shard_map_and_pmap_equal_one_device(name):
  """Local gradients with axis_name: shard_map and pmap give the stacked numbers."""
  params = {"dense": {"kernel": jnp.ones((4, 3)) * 0.3, "bias": jnp.zeros(3)}}
  g = jax.tree.map(lambda x: jax.random.normal(jax.random.key(x.ndim), (8, *x.shape)), params)
  expected = _reference(OPTS[name], params, g)
  opt_fn = {
    "noise": lambda: legw.gradient_noise_scale(64, axis_name="data"),
    "adascale": lambda: legw.adascale(0.1, base_batch_size=8, batch_size=64, axis_name="data"),
    "adascale-lars": lambda: legw.adascale(
      0.1, base_batch_size=8, batch_size=64, trust_coefficient=0.01, axis_name="data"
    ),
  }[name]
  opt = opt_fn()
  state = opt.init(params)

  def local(g, state, params):
    g = jax.tree.map(lambda x: x[0], g)  # this device's own gradient
    return opt.update(g, state, params)

  mesh = _mesh()
  smap = jax.shard_map(local, mesh=mesh, in_specs=(P("data"), P(), P()), out_specs=P())
  sharded = jax.tree.map(lambda x: jax.device_put(x, NamedSharding(mesh, P("data"))), g)
  chex.assert_trees_all_close(jax.jit(smap)(sharded, state, params), expected, rtol=2e-6)
  pmapped = jax.pmap(
    lambda g, s, p: opt.update(g, s, p), axis_name="data", in_axes=(0, None, None)
  )(g, state, params)
  chex.assert_trees_all_close(jax.tree.map(lambda x: x[0], pmapped), expected, rtol=2e-6)


def test_shard_map_refuses_averaged_updates_and_fsdp_params():
  opt = legw.gradient_noise_scale(64, axis_name="data")
  mesh = _mesh()
  w = jnp.ones((8, 3))
  state = opt.init({"w": w})

  def averaged(g, s, p):
    return opt.update({"w": jax.lax.pmean(g, "data")}, s, {"w": p})

  g = jax.device_put(jnp.ones((8, 3)), NamedSharding(mesh, P("data")))
  with pytest.raises(ValueError, match="already averaged"):
    jax.jit(jax.shard_map(averaged, mesh=mesh, in_specs=(P("data"), P(), P()), out_specs=P()))(
      g, state, w
    )

  def fsdp(g, s, p):
    return opt.update({"w": g}, s, {"w": p})

  wp = jax.device_put(w, NamedSharding(mesh, P("data")))
  with pytest.raises(ValueError, match="FSDP"):
    jax.jit(jax.shard_map(fsdp, mesh=mesh, in_specs=(P("data"), P(), P("data")), out_specs=P()))(
      g, state, wp
    )


# Reading the state through wrappers; NaN gradients; orbax.


def test_state_is_readable_through_wrappers():
  """Stacked samples through chain and inject_hyperparams; local gradients (pmap,
  axis_name) through MultiSteps and apply_if_finite, which keep the updates' shape."""
  params = {"w": jnp.ones(3)}
  g = {"w": jnp.array([[1.0, 2.0, 3.0], [0.0, 1.0, 1.0]])}
  kw = dict(learning_rate=0.1, base_batch_size=4, batch_size=8, decay=0.0)
  ref_opt = legw.adascale(**kw)
  _, ref = ref_opt.update(g, ref_opt.init(params), params)
  fields = ("grad_sq", "trace_cov", "noise_scale", "gain", "progress")

  def check(state, name):
    for field in fields:
      np.testing.assert_allclose(
        optax.tree.get(state, field), optax.tree.get(ref, field), rtol=1e-6, err_msg=name
      )

  for name, opt in {
    "chain": optax.chain(legw.adascale(**kw), optax.scale(1.0)),
    "inject": optax.inject_hyperparams(legw.adascale)(**kw),
  }.items():
    check(opt.update(g, opt.init(params), params)[1], name)
  local = dict(kw, axis_name="d")
  for name, opt in {
    "multisteps": optax.MultiSteps(legw.adascale(**local), every_k_schedule=1),
    "apply_if_finite": optax.apply_if_finite(legw.adascale(**local), max_consecutive_errors=3),
  }.items():
    step = lambda g, s, opt=opt: opt.update(g, s, params)[1]
    state = jax.pmap(step, axis_name="d", in_axes=(0, None))(g, opt.init(params))
    check(jax.tree.map(lambda x: x[0], state), name)


def test_multisteps_accumulates_local_gradients():
  """optax.MultiSteps over local gradients (pmap, 2 devices, 2 mini-steps): the
  statistic of the accumulated samples, batch_size counting all of them."""
  params = {"w": jnp.zeros(3)}
  g1 = {"w": jnp.array([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0]])}
  g2 = {"w": jnp.array([[2.0, 0.0, 1.0], [1.0, 1.0, 3.0]])}
  multi = optax.MultiSteps(legw.gradient_noise_scale(16, decay=0.0, axis_name="d"), 2)

  def two_steps(a, b):
    state = multi.init(params)
    _, state = multi.update(a, state, params)
    return multi.update(b, state, params)[1]

  state = jax.tree.map(lambda x: x[0], jax.pmap(two_steps, axis_name="d")(g1, g2))
  one = legw.gradient_noise_scale(16, decay=0.0)
  _, ref = one.update(jax.tree.map(lambda a, b: (a + b) / 2, g1, g2), one.init(params), params)
  np.testing.assert_allclose(optax.tree.get(state, "noise_scale"), ref.noise_scale, rtol=1e-6)


@pytest.mark.parametrize("trust_coefficient", [None, 0.01])
def test_nan_gradients_skip_the_step_on_every_device(trust_coefficient):
  """A NaN in one sample: zero updates, the whole state kept (momentum included),
  skipped_steps counts it; with local gradients (pmap) the NaN on one device makes
  every device skip (the decision is of the whole step's estimates)."""
  params = {"w": jnp.ones(3), "b": jnp.zeros(3)}
  good = {"w": jnp.array([[1.0, 2.0, 3.0], [0.0, 1.0, 1.0]]), "b": jnp.ones((2, 3))}
  bad = {"w": good["w"].at[0, 1].set(jnp.nan), "b": good["b"]}
  kw = dict(base_batch_size=4, batch_size=8, trust_coefficient=trust_coefficient)
  opt = legw.adascale(0.1, **kw)
  _, s1 = opt.update(good, opt.init(params), params)
  u, s2 = opt.update(bad, s1, params)
  chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, params))
  chex.assert_trees_all_equal(s2[0]._replace(skipped_steps=0), s1[0]._replace(skipped_steps=0))
  assert int(optax.tree.get(s2, "skipped_steps")) == 1
  local = legw.adascale(0.1, axis_name="d", **kw)

  def two_steps(a, b):
    state = local.init(params)
    _, state = local.update(a, state, params)
    u, after = local.update(b, state, params)
    return u, state, after

  u, before, after = jax.pmap(two_steps, axis_name="d")(good, bad)
  chex.assert_trees_all_equal(u, jax.tree.map(lambda p: jnp.zeros((2, *p.shape)), params))
  for field in ("progress", "gain", "noise_scale"):
    np.testing.assert_array_equal(optax.tree.get(after, field), optax.tree.get(before, field))


def test_noise_scale_alone_leaves_nan_steps_out_and_chains_with_apply_if_finite():
  """gradient_noise_scale passes the mean on; optax.apply_if_finite after it sees the
  mean (the same on every device) and skips the step."""
  params = {"w": jnp.ones(3)}
  good = {"w": jnp.array([[1.0, 2.0, 3.0], [0.0, 1.0, 1.0]])}
  bad = {"w": good["w"].at[0, 1].set(jnp.nan)}
  opt = optax.chain(legw.gradient_noise_scale(8), optax.apply_if_finite(optax.sgd(0.1, 0.9), 5))
  _, s1 = opt.update(good, opt.init(params), params)
  u, s2 = opt.update(bad, s1, params)
  chex.assert_trees_all_equal(u, {"w": jnp.zeros(3)})
  chex.assert_trees_all_equal(s2[0], s1[0])
  assert int(optax.tree.get(s2, "notfinite_count")) == 1


def test_orbax_round_trip_resumes_progress_and_gain(tmp_path):
  import orbax.checkpoint as ocp

  params, samples = _trees()
  opt = legw.adascale(0.1, base_batch_size=8, batch_size=32, trust_coefficient=0.01)
  state = opt.init(params)
  for t in range(3):
    _, state = opt.update(samples(t), state, params)
  ckpt = ocp.StandardCheckpointer()
  ckpt.save(tmp_path / "ckpt", state)
  ckpt.wait_until_finished()
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  restored = ocp.StandardCheckpointer().restore(tmp_path / "ckpt", abstract)
  chex.assert_trees_all_equal(restored, state)
  u1, s1 = opt.update(samples(3), state, params)
  u2, s2 = opt.update(samples(3), restored, params)
  chex.assert_trees_all_equal((u1, s1), (u2, s2))


class VariantsTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True, with_pmap=True)
  @parameterized.named_parameters(
    ("noise", lambda: legw.gradient_noise_scale(16)),
    ("adascale", lambda: legw.adascale(0.1, base_batch_size=4, batch_size=16)),
    ("lars", lambda: legw.adascale(0.1, base_batch_size=4, batch_size=16, trust_coefficient=1e-2)),
  )
  def test_steps_trace_once(self, make):
    params, samples = _trees()
    opt = make()
    traces = []

    def step(g, state, params):
      traces.append(1)
      return opt.update(g, state, params)

    run = self.variant(step)
    state = first = opt.init(params)
    for t in range(4):
      updates, state = run(samples(t), state, params)
      chex.assert_tree_all_finite(updates)
      chex.assert_trees_all_equal_shapes_and_dtypes(updates, params)
      chex.assert_trees_all_equal_shapes_and_dtypes(state, first)
    if self.variant.type != chex.ChexVariantType.WITHOUT_JIT:
      assert len(traces) == 1


# Bad input.


def test_bad_input_raises_clearly():
  params = {"w": jnp.zeros(3)}
  with pytest.raises(ValueError, match="batch_size"):
    legw.gradient_noise_scale(0)
  with pytest.raises(ValueError, match="decay"):
    legw.gradient_noise_scale(8, decay=1.0)
  with pytest.raises(ValueError, match="must be >= base_batch_size"):
    legw.adascale(0.1, base_batch_size=64, batch_size=32)  # S < 1
  with pytest.raises(ValueError, match="learning_rate"):
    legw.adascale(-0.1, base_batch_size=8, batch_size=32)
  opt = legw.gradient_noise_scale(8)
  with pytest.raises(ValueError, match="K >= 2"):
    opt.update({"w": jnp.zeros((1, 3))}, opt.init(params), params)
  with pytest.raises(ValueError, match=r"\(K, \*param.shape\)"):
    opt.update({"w": jnp.zeros((4, 2))}, opt.init(params), params)
  two = {"a": jnp.zeros(3), "b": jnp.zeros(2)}
  with pytest.raises(ValueError, match="one size K"):
    opt.update({"a": jnp.zeros((2, 3)), "b": jnp.zeros((4, 2))}, opt.init(two))
  with pytest.raises(ValueError, match="multiple"):
    legw.gradient_noise_scale(9).update({"w": jnp.zeros((2, 3))}, opt.init(params), params)
  with pytest.raises(TypeError, match="int32"):
    opt.init({"w": jnp.zeros(3), "steps": jnp.zeros((), jnp.int32)})
  with pytest.raises(ValueError, match="AdamScale"):
    legw.scale_by_adascale(8, 32, learning_rate=0.1, inner=optax.scale_by_adam()).init(params)


def test_bfloat16_momentum_at_scale_one_is_legw_lars_bit_for_bit():
  params, samples = _trees()
  kw = dict(trust_coefficient=0.01, accumulator_dtype=jnp.bfloat16)
  a = legw.adascale(0.1, base_batch_size=8, batch_size=8, **kw)
  b = legw.lars(0.1, **kw)
  sa, sb = a.init(params), b.init(params)
  for t in range(3):
    g = samples(t)
    ua, sa = a.update(g, sa, params)
    ub, sb = b.update(jax.tree.map(lambda x: jnp.mean(x, 0), g), sb, params)
    chex.assert_trees_all_equal(ua, ub)


def test_stacked_layers_decay_and_trust_ratio_per_layer_as_legw_lars():
  """layer_axis=0: a stacked (L, d) norm scale is not decayed by the default mask (one
  layer's shape decides), and with a trust coefficient each layer gets its own ratio: at
  S = 1 both forms equal the non-AdaScale optimizer with the same layer_axis."""
  rng = np.random.default_rng(0)
  params = {"kernel": jnp.asarray(rng.normal(size=(3, 4, 4)), jnp.float32),
            "scale": jnp.asarray(rng.normal(size=(3, 4)) + 1, jnp.float32)}  # fmt: skip
  samples = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=(2, *p.shape)), jnp.float32), params)
  mean = jax.tree.map(lambda x: jnp.mean(x, 0), samples)
  kw = dict(momentum=0.9, weight_decay=0.1, layer_axis=0)
  pairs = [
    (legw.adascale(0.1, base_batch_size=4, batch_size=4, **kw), None),
    (
      legw.adascale(0.1, base_batch_size=4, batch_size=4, trust_coefficient=0.01, **kw),
      legw.lars(0.1, trust_coefficient=0.01, **kw),
    ),
  ]
  zero = jax.tree.map(jnp.zeros_like, samples)
  for ada, ref in pairs:
    if ref is None:  # momentum SGD: zero gradients move only the decayed (kernel) leaf
      u, _ = ada.update(zero, ada.init(params), params)
      assert float(jnp.abs(u["scale"]).max()) == 0.0
      assert float(jnp.abs(u["kernel"]).max()) > 0.0
      continue
    ua, _ = ada.update(samples, ada.init(params), params)
    ub, _ = ref.update(mean, ref.init(params), params)
    chex.assert_trees_all_close(ua, ub, rtol=1e-6, atol=1e-7)
