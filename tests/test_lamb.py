"""legw.lamb and legw.scale_by_lamb: LAMB (You et al. 2020, Algorithm 2) on the layer-wise core."""

from __future__ import annotations

import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized
from test_conformance import xla_compilations

import legw


def _tree(seed=0):
  rs = np.random.RandomState(seed)
  return {
    "dense": {"kernel": jnp.asarray(rs.randn(5, 4), jnp.float32), "bias": jnp.asarray(rs.randn(4))},
    "conv": {"kernel": jnp.asarray(rs.randn(3, 3, 2, 4) * 0.1, jnp.float32)},
    "norm": {"scale": jnp.asarray(1 + 0.1 * rs.randn(4), jnp.float32)},
  }


def _grads(params, seed):
  rs = np.random.RandomState(1000 + seed)
  return jax.tree.map(lambda p: jnp.asarray(rs.randn(*p.shape), p.dtype) + 0.3 * p, params)


def _adam_state(state):
  """The one ``optax.ScaleByAdamState`` inside a (chained, wrapped) state."""
  found = [
    s
    for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
    if isinstance(s, optax.ScaleByAdamState)
  ]
  assert len(found) == 1
  return found[0]


def _close(a, b):
  """Equal to float32 rounding: rtol 1e-6, atol 1e-6 of the leaf's largest entry."""
  chex.assert_trees_all_equal_structs(a, b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    chex.assert_trees_all_close(x, y, rtol=1e-6, atol=1e-6 * max(np.abs(y).max(), 1e-30))


class MaskedInTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(
    ("defaults", dict()),
    ("decay", dict(weight_decay=0.01)),
    ("all-hyperparameters", dict(b1=0.8, b2=0.99, eps=1e-4, eps_root=1e-8, weight_decay=0.1)),
    ("decay-schedule", dict(weight_decay=optax.linear_schedule(0.1, 0.0, 4))),
  )
  def test_all_masked_in_equals_optax_lamb(self, hp):
    """trust_ratio_mask=True, weight_decay_mask=True: optax.lamb, state for
    state and update for update, over 6 steps (float32)."""
    lr = optax.linear_schedule(1e-3, 1e-2, 3)
    ours = legw.lamb(lr, trust_ratio_mask=True, weight_decay_mask=True, **hp)
    ref = optax.lamb(lr, **hp)
    upd_ours, upd_ref = self.variant(ours.update), self.variant(ref.update)
    params = _tree()
    s_ours, s_ref = ours.init(params), ref.init(params)
    _close(_adam_state(s_ours), _adam_state(s_ref))
    for t in range(6):
      grads = _grads(params, t)
      u_ours, s_ours = upd_ours(grads, s_ours, params)
      u_ref, s_ref = upd_ref(grads, s_ref, params)
      _close(u_ours, u_ref)
      a, b = _adam_state(s_ours), _adam_state(s_ref)
      assert int(a.count) == int(b.count) == t + 1
      _close((a.mu, a.nu), (b.mu, b.nu))
      params = optax.apply_updates(params, u_ref)  # the same trajectory for both


def test_transform_equals_optax_chain():
  """scale_by_lamb (all masked in) = scale_by_adam, add_decayed_weights,
  scale_by_trust_ratio."""
  ours = legw.scale_by_lamb(
    0.85, b2=0.95, weight_decay=0.05, trust_ratio_mask=True, weight_decay_mask=True
  )
  ref = optax.chain(
    optax.scale_by_adam(0.85, 0.95, eps=1e-6),
    optax.add_decayed_weights(0.05),
    optax.scale_by_trust_ratio(),
  )
  params = _tree(1)
  s_ours, s_ref = ours.init(params), ref.init(params)
  for t in range(4):
    grads = _grads(params, t)
    u_ours, s_ours = ours.update(grads, s_ours, params)
    u_ref, s_ref = ref.update(grads, s_ref, params)
    _close(u_ours, u_ref)
    params = optax.apply_updates(params, u_ref)


def test_default_masks_give_biases_plain_adam_without_decay():
  """ndim <= 1 leaves: optax.adam (no decay, no ratio); kernels: LAMB with decay."""
  lr, wd = 0.01, 0.1
  ours = legw.lamb(lr, weight_decay=wd)
  adam = optax.adam(lr, eps=1e-6)
  all_in = optax.lamb(lr, weight_decay=wd)
  params = _tree(2)
  s_ours, s_adam, s_all = ours.init(params), adam.init(params), all_in.init(params)
  for t in range(3):
    grads = _grads(params, t)
    u_ours, s_ours = ours.update(grads, s_ours, params)
    u_adam, s_adam = adam.update(grads, s_adam, params)
    u_all, s_all = all_in.update(grads, s_all, params)
    for vec in (("dense", "bias"), ("norm", "scale")):
      a, b = u_ours[vec[0]][vec[1]], u_adam[vec[0]][vec[1]]
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    for ker in ("dense", "conv"):
      _close(u_ours[ker]["kernel"], u_all[ker]["kernel"])
      # The step of a trust-ratio layer has norm lr * ||w||.
      np.testing.assert_allclose(
        np.linalg.norm(u_ours[ker]["kernel"]),
        lr * np.linalg.norm(params[ker]["kernel"]),
        rtol=1e-5,
      )
    params = optax.apply_updates(params, u_ours)


def test_zero_layer_still_trains_and_zero_direction_is_finite():
  """Ratio 1 where ||w|| = 0 (plain Adam step) or ||r + beta w|| = 0."""
  params = {"zero_w": jnp.zeros((3, 2)), "zero_g": jnp.ones((3, 2))}
  grads = {"zero_w": jnp.ones((3, 2)), "zero_g": jnp.zeros((3, 2))}
  opt = legw.lamb(0.1)
  u, _ = opt.update(grads, opt.init(params), params)
  adam, _ = optax.adam(0.1, eps=1e-6).update(grads, optax.adam(0.1).init(params))
  np.testing.assert_allclose(u["zero_w"], adam["zero_w"], rtol=1e-6)
  np.testing.assert_array_equal(u["zero_g"], 0.0)


def test_low_precision_norms_in_float32():
  """bfloat16 params whose sum of squares overflows float16: updates in
  bfloat16, equal to the float32 computation to bfloat16 rounding."""
  rs = np.random.RandomState(0)
  w = rs.uniform(100, 300, (64, 64)) * np.where(rs.rand(64, 64) < 0.5, -1, 1)
  g = rs.randn(64, 64)
  for dtype in (jnp.float16, jnp.bfloat16):
    params, grads = {"k": jnp.asarray(w, dtype)}, {"k": jnp.asarray(g, dtype)}
    opt = legw.lamb(0.01, weight_decay=0.01)
    u, _ = opt.update(grads, opt.init(params), params)
    up = lambda t: jax.tree.map(lambda x: x.astype(jnp.float32), t)
    ref, _ = opt.update(up(grads), opt.init(up(params)), up(params))
    assert u["k"].dtype == dtype
    eps = float(jnp.finfo(dtype).eps)
    np.testing.assert_allclose(
      np.asarray(u["k"], np.float32), ref["k"], rtol=8 * eps, atol=8 * eps * np.abs(ref["k"]).max()
    )


def test_legw_schedule_under_jit():
  """LAMB + LEGW (the LAMB paper's sqrt(k) scaling with a batch-grown warmup),
  jitted: the step of a kernel has norm schedule(t) * ||w|| at every step."""
  base, k = 1e-3, 16
  sched = legw.legw_schedule(
    base_learning_rate=base,
    base_batch_size=128,
    batch_size=128 * k,
    base_warmup_epochs=0.125,
    num_epochs=4,
    steps_per_epoch=4,
    decay="constant",
  )
  assert float(sched(1000)) == pytest.approx(base * np.sqrt(k))
  opt = legw.lamb(sched, weight_decay=0.01)
  target = _tree(5)

  def loss(p):
    return sum(jnp.sum((a - b) ** 2) for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(target)))

  @jax.jit
  @chex.assert_max_traces(n=1)  # the step count is an array: the schedule does not retrace
  def step(params, state):
    grads = jax.grad(loss)(params)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state, updates

  params = _tree(6)
  state = opt.init(params)
  first = float(loss(params))
  rates = [float(sched(t)) for t in range(16)]
  with xla_compilations() as compiled:
    for t in range(16):
      new, state, updates = step(params, state)
      chex.assert_tree_all_finite(updates)
      np.testing.assert_allclose(
        np.linalg.norm(updates["dense"]["kernel"]),
        rates[t] * np.linalg.norm(params["dense"]["kernel"]),
        rtol=1e-5,
        atol=1e-12,
      )
      params = new
  assert float(loss(params)) < first
  assert compiled == ["jit(step)"]  # compiled once


def test_hyperparameters_are_keyword_only():
  for fn, first in ((legw.lamb, "learning_rate"), (legw.scale_by_lamb, "b1")):
    ps = list(inspect.signature(fn).parameters.values())
    assert ps[0].name == first and ps[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in ps[1:])
  with pytest.raises(TypeError, match="positional"):
    legw.lamb(0.1, 0.9)  # optax.lamb's second positional argument is b1
  with pytest.raises(TypeError, match="positional"):
    legw.scale_by_lamb(0.9, 0.999)


@pytest.mark.parametrize(
  "arg, value, valid",
  [
    ("b1", 1.0, "[0, 1)"),
    ("b2", -0.1, "[0, 1)"),
    ("eps", -1e-8, "[0, inf)"),
    ("eps_root", -1.0, "[0, inf)"),
    ("weight_decay", -1e-4, "[0, inf)"),
  ],
)
def test_rejects_bad_hyperparameters(arg, value, valid):
  for make in (lambda **kw: legw.lamb(0.1, **kw), legw.scale_by_lamb):
    with pytest.raises(ValueError, match=arg) as info:
      make(**{arg: value})
    assert valid in str(info.value)
  with pytest.raises(ValueError, match="learning_rate"):
    legw.lamb(-0.1)


def test_update_without_params_says_so():
  params = _tree()
  opt = legw.lamb(0.1)
  with pytest.raises(ValueError, match="scale_by_lamb needs the current parameters"):
    opt.update(_grads(params, 0), opt.init(params), None)
