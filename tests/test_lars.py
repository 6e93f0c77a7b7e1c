"""legw.lars and legw.scale_by_lars against Algorithm 1 of the LARS paper."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

import legw

# --------------------------------------------------------------------------
# An independent NumPy implementation of Algorithm 1 (float64).
# --------------------------------------------------------------------------


def numpy_lars_trajectory(
  params,
  grads_fn,
  *,
  lr_fn,
  steps,
  momentum,
  weight_decay,
  trust_coefficient,
  eps,
  tr_mask,
  wd_mask,
):
  """Runs Algorithm 1 in float64; `params`/masks are dicts name -> array/bool."""
  w = {k: np.asarray(v, np.float64) for k, v in params.items()}
  v = {k: np.zeros_like(x) for k, x in w.items()}
  history = []
  for t in range(steps):
    g = {k: np.asarray(x, np.float64) for k, x in grads_fn(t).items()}
    gamma = lr_fn(t)
    for k in w:
      beta = weight_decay if wd_mask[k] else 0.0
      if tr_mask[k]:
        wn, gn = np.linalg.norm(w[k]), np.linalg.norm(g[k])
        denom = gn + beta * wn + eps  # finite at g = 0 when beta > 0 (eta / beta)
        lam = 1.0 if wn == 0 or denom == 0 else trust_coefficient * wn / denom
      else:
        lam = 1.0
      v[k] = momentum * v[k] + gamma * lam * (g[k] + beta * w[k])
      w[k] = w[k] - v[k]
    history.append({k: x.copy() for k, x in w.items()})
  return history


def make_tree(seed=0):
  rng = np.random.default_rng(seed)
  return {
    "conv": rng.normal(size=(3, 3, 4, 8)).astype(np.float32) * 0.1,
    "dense": rng.normal(size=(16, 10)).astype(np.float32) * 0.3,
    "bias": rng.normal(size=(10,)).astype(np.float32) * 0.1,
    "zero": np.zeros((5, 5), np.float32),
    "bn_scale": np.ones((8,), np.float32),
  }


def grads_fn_factory(tree, seed=1):
  rng = np.random.default_rng(seed)
  table = [
    {k: rng.normal(size=v.shape).astype(np.float32) for k, v in tree.items()} for _ in range(64)
  ]
  # One step with an all-zero gradient on a kernel: with weight decay lambda
  # is eta/beta there (the paper's formula, continuous at g = 0), without it 1.
  table[3]["dense"] = np.zeros_like(table[3]["dense"])
  return lambda t: table[t]


STEPS = 30
GAMMA0 = 0.5


def poly_lr(t):
  return GAMMA0 * (1.0 - t / STEPS) ** 2


@pytest.mark.parametrize("masks", ["all", "default"])
@pytest.mark.parametrize("eps", [0.0, 1e-3])
def test_lars_matches_numpy_algorithm_1(masks, eps):
  tree = make_tree()
  grads_fn = grads_fn_factory(tree)
  hp = dict(momentum=0.9, weight_decay=5e-3, trust_coefficient=0.02, eps=eps)
  if masks == "all":
    kwargs = dict(trust_ratio_mask=True, weight_decay_mask=True)
    tr = wd = {k: True for k in tree}
  else:
    kwargs = {}
    tr = wd = {k: v.ndim > 1 for k, v in tree.items()}
  schedule = optax.polynomial_schedule(GAMMA0, 0.0, 2, STEPS)
  opt = legw.lars(schedule, **hp, **kwargs)
  params = jax.tree.map(jnp.asarray, tree)
  state = opt.init(params)

  @jax.jit
  def step(params, state, grads):
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  got = []
  for t in range(STEPS):
    params, state = step(params, state, jax.tree.map(jnp.asarray, grads_fn(t)))
    got.append(jax.tree.map(np.asarray, params))
  want = numpy_lars_trajectory(
    tree, grads_fn, lr_fn=poly_lr, steps=STEPS, tr_mask=tr, wd_mask=wd, **hp
  )
  for t in (0, 1, 3, 4, 10, STEPS - 1):
    for k in tree:
      np.testing.assert_allclose(
        got[t][k], want[t][k], rtol=2e-5, atol=1e-6, err_msg=f"step {t}, leaf {k}"
      )
  # The parameters really moved (the test would be vacuous otherwise).
  assert np.abs(got[-1]["dense"] - tree["dense"]).max() > 1e-3
  assert np.abs(got[-1]["zero"]).max() > 1e-3  # a zero layer still trains


def test_default_masks_give_biases_plain_momentum_sgd():
  tree = make_tree()
  grads_fn = grads_fn_factory(tree)
  opt = legw.lars(0.1, momentum=0.9, weight_decay=1e-2)
  sgd = optax.sgd(0.1, momentum=0.9)
  params = jax.tree.map(jnp.asarray, tree)
  s1, s2 = opt.init(params), sgd.init(params)
  p1 = p2 = params
  for t in range(5):
    g = jax.tree.map(jnp.asarray, grads_fn(t))
    u1, s1 = opt.update(g, s1, p1)
    u2, s2 = sgd.update(g, s2, p2)
    p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
  for k in ("bias", "bn_scale"):
    np.testing.assert_allclose(p1[k], p2[k], rtol=1e-6, atol=1e-7)
  assert not np.allclose(p1["dense"], p2["dense"])


@pytest.mark.parametrize("nesterov", [False, True])
def test_combined_denominator_equals_optax_lars(nesterov):
  tree = make_tree()
  grads_fn = grads_fn_factory(tree)
  hp = dict(
    learning_rate=optax.polynomial_schedule(0.3, 0.0, 2, 20),
    weight_decay=1e-2,
    trust_coefficient=0.01,
    eps=1e-6,
    momentum=0.9,
    nesterov=nesterov,
  )
  ours = legw.lars(denominator="combined", trust_ratio_mask=True, weight_decay_mask=True, **hp)
  ref = optax.lars(**hp)
  p1 = p2 = jax.tree.map(jnp.asarray, tree)
  s1, s2 = ours.init(p1), ref.init(p2)
  for t in range(20):
    g = jax.tree.map(jnp.asarray, grads_fn(t))
    u1, s1 = ours.update(g, s1, p1)
    u2, s2 = ref.update(g, s2, p2)
    # rtol 1e-6, with float32 rounding measured on the leaf's scale (entries
    # near zero come from cancellation inside the momentum sum).
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * float(np.abs(b).max())),
      u1,
      u2,
    )
    p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)


def test_paper_and_combined_denominators_differ_with_weight_decay():
  w = {"k": jnp.ones((4, 4))}
  g = {"k": jnp.full((4, 4), 0.5)}
  paper = legw.scale_by_lars(1.0, weight_decay=0.5, denominator="paper")
  comb = legw.scale_by_lars(1.0, weight_decay=0.5, denominator="combined")
  up, _ = paper.update(g, paper.init(w), w)
  uc, _ = comb.update(g, comb.init(w), w)
  # ||w|| = 4, ||g|| = 2: paper lambda = 4 / (2 + 2) = 1, combined = 4 / ||g + 0.5 w|| = 1.
  # Use a gradient anti-aligned with w to separate them.
  g2 = {"k": jnp.full((4, 4), -0.5)}
  up2, _ = paper.update(g2, paper.init(w), w)
  uc2, _ = comb.update(g2, comb.init(w), w)
  np.testing.assert_allclose(up["k"], uc["k"], rtol=1e-6)
  # g2 + 0.5 w = 0: combined hits the zero-norm guard (lambda = 1), paper does not.
  np.testing.assert_allclose(up2["k"], 0.0, atol=1e-7)
  np.testing.assert_allclose(uc2["k"], 0.0, atol=1e-7)
  g3 = {"k": jnp.full((4, 4), -0.25)}
  up3, _ = paper.update(g3, paper.init(w), w)
  uc3, _ = comb.update(g3, comb.init(w), w)
  # paper: lambda = 4/(1 + 2) ; combined: lambda = 4/||0.25 * ones|| = 4/1
  np.testing.assert_allclose(up3["k"], 4 / 3 * 0.25, rtol=1e-6)
  np.testing.assert_allclose(uc3["k"], 4 / 1 * 0.25, rtol=1e-6)


def test_zero_layers_get_unit_trust_ratio():
  t = legw.scale_by_lars(0.001)
  w = {"zero_w": jnp.zeros((3, 3)), "w": jnp.ones((3, 3))}
  g = {"zero_w": jnp.ones((3, 3)), "w": jnp.zeros((3, 3))}
  u, _ = t.update(g, t.init(w), w)
  np.testing.assert_array_equal(u["zero_w"], g["zero_w"])
  np.testing.assert_array_equal(u["w"], g["w"])


def numpy_apex_larc_trajectory(
  params, grads_fn, *, lr, steps, momentum, weight_decay, trust_coefficient, eps, clip
):
  """NVIDIA apex ``LARC`` around ``torch.optim.SGD`` (momentum, lr outside the
  buffer: the same as Algorithm 1 for a constant lr), in float64 NumPy.

  apex, per parameter with non-zero weight and gradient norms:
  adaptive = tc ||p|| / (||g|| + wd ||p|| + eps); with clip,
  adaptive = min(adaptive / lr, 1); g <- (g + wd p) * adaptive.
  """
  w = {k: np.asarray(v, np.float64) for k, v in params.items()}
  buf = {k: np.zeros_like(x) for k, x in w.items()}
  history = []
  for t in range(steps):
    for k in w:
      g = np.asarray(grads_fn(t)[k], np.float64)
      pn, gn = np.linalg.norm(w[k]), np.linalg.norm(g)
      assert pn > 0 and gn > 0  # apex's zero-norm branch is not compared here
      adaptive = trust_coefficient * pn / (gn + pn * weight_decay + eps)
      if clip:
        adaptive = min(adaptive / lr, 1.0)
      g = (g + weight_decay * w[k]) * adaptive
      buf[k] = momentum * buf[k] + g
      w[k] = w[k] - lr * buf[k]
    history.append({k: x.copy() for k, x in w.items()})
  return history


@pytest.mark.parametrize("lr", [5.0, 0.05])
@pytest.mark.parametrize("clip", [True, False])
def test_clip_is_apex_larc(clip, lr):
  """clip=True is apex's LARC(clip=True): effective rate min(lambda, lr)."""
  tree = {k: v for k, v in make_tree().items() if k in ("conv", "dense")}
  table = grads_fn_factory(tree)
  grads_fn = lambda t: table(t + 5)  # no all-zero gradient
  hp = dict(momentum=0.9, weight_decay=1e-3, trust_coefficient=0.02, eps=1e-8)
  opt = legw.lars(lr, clip=clip, trust_ratio_mask=True, weight_decay_mask=True, **hp)
  params = jax.tree.map(jnp.asarray, tree)
  state = opt.init(params)
  want = numpy_apex_larc_trajectory(tree, grads_fn, lr=lr, steps=8, clip=clip, **hp)
  for t in range(8):
    updates, state = opt.update(jax.tree.map(jnp.asarray, grads_fn(t)), state, params)
    params = optax.apply_updates(params, updates)
    for k in tree:
      np.testing.assert_allclose(
        params[k], want[t][k], rtol=2e-5, atol=1e-6, err_msg=f"step {t}, leaf {k}"
      )


def test_clip_example_from_the_issue():
  """lambda = 0.001, lr = 5: apex's rate is 0.001 (legw's was 0.005)."""
  w = {"k": jnp.ones((4, 4))}
  g = {"k": jnp.full((4, 4), 1.0)}  # ||w|| = ||g|| = 4: lambda = eta = 0.001
  opt = legw.lars(5.0, momentum=0.0, trust_coefficient=0.001, clip=True)
  upd, _ = opt.update(g, opt.init(w), w)
  np.testing.assert_allclose(upd["k"], -0.001 * g["k"], rtol=1e-6)
  # With lr = 1e-4 < lambda the rate is lr.
  opt = legw.lars(1e-4, momentum=0.0, trust_coefficient=0.001, clip=True)
  upd, _ = opt.update(g, opt.init(w), w)
  np.testing.assert_allclose(upd["k"], -1e-4 * g["k"], rtol=1e-6)
  # A scheduled learning rate caps step by step (the state counts steps).
  sched = lambda t: jnp.where(t == 0, 5.0, 1e-4)
  opt = legw.lars(sched, momentum=0.0, trust_coefficient=0.001, clip=True)
  state = opt.init(w)
  u0, state = opt.update(g, state, w)
  u1, state = opt.update(g, state, w)
  np.testing.assert_allclose(u0["k"], -0.001 * g["k"], rtol=1e-6)
  np.testing.assert_allclose(u1["k"], -1e-4 * g["k"], rtol=1e-6)


def test_scale_by_lars_clip_needs_the_learning_rate():
  with pytest.raises(ValueError, match="learning_rate"):
    legw.scale_by_lars(0.001, clip=True)
  w = {"k": jnp.ones((4, 4))}
  g = {"k": jnp.full((4, 4), 1.0)}
  t = legw.scale_by_lars(0.001, clip=True, learning_rate=5.0)
  u, _ = t.update(g, t.init(w), w)
  np.testing.assert_allclose(u["k"], 0.001 / 5.0 * g["k"], rtol=1e-6)  # min(lambda/lr, 1)


def test_missing_params_raises():
  opt = legw.lars(0.1)
  params = {"w": jnp.ones((2, 2))}
  with pytest.raises(ValueError, match="params"):
    opt.update(params, opt.init(params))
  t = legw.scale_by_lars()
  with pytest.raises(ValueError, match="params"):
    t.update(params, t.init(params), None)


def test_float16_large_layer_is_finite_and_correct():
  w = {"k": jnp.ones((1024, 1024), jnp.float16)}
  g = {"k": jnp.full((1024, 1024), 0.5, jnp.float16)}
  opt = legw.lars(1.0, momentum=0.9, trust_coefficient=0.01)
  state = opt.init(w)
  u, state = opt.update(g, state, w)
  assert u["k"].dtype == jnp.float16
  # lambda = 0.01 * 1024 / 512 = 0.02; update = -1.0 * 0.02 * 0.5 = -0.01.
  np.testing.assert_allclose(np.asarray(u["k"], np.float32), -0.01, rtol=1e-3)
  assert jax.tree.map(lambda x: x.dtype, state[2]) == jax.tree.map(
    lambda x: x.dtype, opt.init(w)[2]
  )


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_dtypes_kept(dtype):
  tree = jax.tree.map(lambda x: jnp.asarray(x, dtype), make_tree())
  opt = legw.lars(0.1, weight_decay=1e-4)
  state = opt.init(tree)
  u, new_state = opt.update(tree, state, tree)
  for x in jax.tree.leaves(u):
    assert x.dtype == dtype
  assert jax.tree.map(lambda x: (x.shape, x.dtype), state) == jax.tree.map(
    lambda x: (x.shape, x.dtype), new_state
  )


@pytest.mark.parametrize(
  "kwargs, name",
  [
    (dict(learning_rate=-0.1), "learning_rate"),
    (dict(learning_rate=0.1, trust_coefficient=0.0), "trust_coefficient"),
    (dict(learning_rate=0.1, momentum=1.0), "momentum"),
    (dict(learning_rate=0.1, momentum=-0.1), "momentum"),
    (dict(learning_rate=0.1, weight_decay=-1e-4), "weight_decay"),
    (dict(learning_rate=0.1, eps=-1.0), "eps"),
    (dict(learning_rate=0.1, denominator="sum"), "denominator"),
  ],
)
def test_validation(kwargs, name):
  with pytest.raises(ValueError, match=name):
    legw.lars(**kwargs)


def test_inject_hyperparams_accepts_traced_values():
  opt = optax.inject_hyperparams(legw.lars)(learning_rate=0.1, weight_decay=1e-3)
  plain = legw.lars(0.1, weight_decay=1e-3)
  params = jax.tree.map(jnp.asarray, make_tree())
  grads = jax.tree.map(jnp.asarray, grads_fn_factory(make_tree())(0))
  u1, _ = jax.jit(opt.update)(grads, opt.init(params), params)
  u2, _ = plain.update(grads, plain.init(params), params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), u1, u2)


@pytest.mark.parametrize(
  "mask",
  [
    True,
    {"a": True, "b": False},
    {"a": True, "b": {"c": False, "d": False}},
    lambda p: {"a": True, "b": False},
  ],
)
def test_mask_forms(mask):
  params = {"a": jnp.ones((3, 3)), "b": {"c": jnp.ones((3, 3)), "d": jnp.ones((4, 2))}}
  grads = jax.tree.map(lambda x: 2.0 * x, params)
  t = legw.scale_by_lars(0.01, trust_ratio_mask=mask)
  u, _ = t.update(grads, t.init(params), params)
  np.testing.assert_allclose(u["a"], 0.01 * 3 / 6 * 2.0, rtol=1e-6)
  if mask is True:
    np.testing.assert_allclose(u["b"]["d"], 0.01 * np.sqrt(8) / np.sqrt(32) * 2.0, rtol=1e-6)
  else:
    np.testing.assert_allclose(u["b"]["c"], 2.0)  # excluded: unscaled


def test_exclude_bias_and_norm():
  params = {
    "kernel": jnp.ones((3, 4)),
    "bias": jnp.ones(4),
    "scale": jnp.ones(4),
    "conv": jnp.ones((3, 3, 2, 4)),
    "step": jnp.ones(()),
  }
  assert legw.exclude_bias_and_norm(params) == {
    "kernel": True,
    "bias": False,
    "scale": False,
    "conv": True,
    "step": False,
  }


def test_bad_mask_structure_raises():
  params = {"a": jnp.ones((3, 3))}
  t = legw.scale_by_lars(trust_ratio_mask={"a": True, "zzz": False})
  with pytest.raises(ValueError, match="mask"):
    t.update(params, t.init(params), params)


def test_nnx_model_trains_with_lars():
  class MLP(nnx.Module):
    def __init__(self, rngs):
      self.l1 = nnx.Linear(8, 32, rngs=rngs)
      self.bn = nnx.BatchNorm(32, rngs=rngs)
      self.l2 = nnx.Linear(32, 3, rngs=rngs)

    def __call__(self, x):
      return self.l2(nnx.relu(self.bn(self.l1(x))))

  model = MLP(nnx.Rngs(0))
  schedule = legw.legw_schedule(
    base_learning_rate=1.0,
    base_batch_size=64,
    batch_size=64,
    base_warmup_epochs=1,
    num_epochs=10,
    steps_per_epoch=10,
  )
  optimizer = nnx.Optimizer(
    model, legw.lars(schedule, weight_decay=1e-4, trust_coefficient=0.02), wrt=nnx.Param
  )
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(64, 8)), jnp.float32)
  y = jnp.asarray((x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0).astype(np.int32))

  def loss_fn(model):
    logits = model(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @nnx.jit
  def train_step(model, optimizer):
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  losses = [float(train_step(model, optimizer)) for _ in range(100)]
  assert losses[-1] < 0.5 * losses[0], losses[::10]


# --------------------------------------------------------------------------
# Properties (hypothesis).
# --------------------------------------------------------------------------

shapes = st.tuples(st.integers(1, 6), st.integers(2, 7))
floats = st.floats(-10, 10, allow_nan=False, width=32)


@st.composite
def layer(draw):
  shape = draw(shapes)
  seed = draw(st.integers(0, 2**31 - 1))
  rng = np.random.default_rng(seed)
  scale_w = draw(st.sampled_from([1e-15, 1e-3, 1.0, 1e3]))
  scale_g = draw(st.sampled_from([1e-6, 1.0, 1e4]))
  w = (rng.normal(size=shape) * scale_w).astype(np.float32)
  g = (rng.normal(size=shape) * scale_g).astype(np.float32)
  return w, g


@settings(max_examples=40, deadline=None)
@given(layer(), st.floats(1e-4, 10.0))
def test_property_update_norm_is_eta_times_weight_norm(wg, eta):
  w, g = wg
  t = legw.scale_by_lars(eta)
  u, _ = t.update({"k": jnp.asarray(g)}, t.init({"k": w}), {"k": jnp.asarray(w)})
  wn, gn = np.linalg.norm(w.astype(np.float64)), np.linalg.norm(g.astype(np.float64))
  un = np.linalg.norm(np.asarray(u["k"], np.float64))
  assert np.isfinite(un)
  if wn > 0 and gn > 0 and np.isfinite(eta * wn):
    np.testing.assert_allclose(un, eta * wn, rtol=1e-4)


@settings(max_examples=40, deadline=None)
@given(layer(), st.floats(1e-3, 1e3), st.floats(0.0, 0.1))
def test_property_gradient_scale_invariance(wg, c, beta):
  w, g = wg
  if np.linalg.norm(g) == 0 or np.linalg.norm(w) == 0:
    return
  t = legw.scale_by_lars(0.01)  # beta = 0: the update is invariant to g -> c g
  params = {"k": jnp.asarray(w)}
  u1, _ = t.update({"k": jnp.asarray(g)}, t.init(params), params)
  u2, _ = t.update({"k": jnp.asarray(g * np.float32(c))}, t.init(params), params)
  np.testing.assert_allclose(u1["k"], u2["k"], rtol=2e-4, atol=1e-30)
  # With weight decay the update is bounded by eta * ||w|| (eq. 4), finite.
  tw = legw.scale_by_lars(0.01, weight_decay=beta)
  u3, _ = tw.update({"k": jnp.asarray(g)}, tw.init(params), params)
  assert np.all(np.isfinite(u3["k"]))


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([0.0, 1e-38, 1e-20, 1e-5]), st.sampled_from([0.0, 1e-38, 1e-20, 1.0]))
def test_property_zero_and_tiny_layers_finite(wscale, gscale):
  w = {"k": jnp.full((4, 4), wscale, jnp.float32)}
  g = {"k": jnp.full((4, 4), gscale, jnp.float32)}
  opt = legw.lars(0.1, weight_decay=1e-4)
  u, _ = opt.update(g, opt.init(w), w)
  assert np.all(np.isfinite(u["k"]))


def test_float32_norm_range_is_as_documented():
  """The documented behaviour outside the float32 range of ||x||^2."""
  rng = np.random.default_rng(0)
  w = jnp.asarray(rng.normal(size=(32, 16)), jnp.float32)
  g = jnp.asarray(rng.normal(size=(32, 16)), jnp.float32)
  opt = legw.scale_by_lars(trust_coefficient=0.01, weight_decay=1e-4)
  ratio = lambda g, w: np.asarray(opt.update({"k": g}, opt.init({"k": w}), {"k": w})[0]["k"])
  # Inside the range: lambda = eta ||w|| / (||g|| + beta ||w||).
  want = 0.01 * np.linalg.norm(w) / (np.linalg.norm(g) + 1e-4 * np.linalg.norm(w))
  np.testing.assert_allclose(ratio(g, w), want * (g + 1e-4 * w), rtol=1e-5)
  # ||g||^2 overflows: lambda = 0, the layer skips the step.
  assert np.all(ratio(g * 1e20, w) == 0)
  # ||w||^2 overflows: a non-finite update (apply_if_finite is the guard).
  assert not np.all(np.isfinite(ratio(g, w * 1e20)))
  # Every element of g below ~1e-19: ||g|| counts as 0, and with weight decay
  # lambda = eta ||w|| / (beta ||w||) = eta / beta (the formula at g = 0).
  tiny = g * 1e-21
  np.testing.assert_allclose(ratio(tiny, w), 0.01 / 1e-4 * (tiny + 1e-4 * w), rtol=1e-5)
