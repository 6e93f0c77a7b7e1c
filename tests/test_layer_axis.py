"""layer_axis: stacked (scanned) layers get one per-layer statistic per slice."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import legw


def _stacked(seed=0, n=3):
  rs = np.random.RandomState(seed)
  # Layers of very different scales, so one ratio for the stack would differ.
  scale = np.array([0.1, 1.0, 10.0])[:n]
  params = {
    "kernel": jnp.asarray(rs.randn(n, 8, 8) * scale[:, None, None], jnp.float32),
    "bias": jnp.asarray(rs.randn(n, 8), jnp.float32),
  }
  grads = {
    "kernel": jnp.asarray(rs.randn(n, 8, 8), jnp.float32),
    "bias": jnp.asarray(rs.randn(n, 8), jnp.float32),
  }
  return params, grads


def _run(opt, params, grads_seq):
  state = opt.init(params)
  out = []
  for g in grads_seq:
    u, state = opt.update(g, state, params)
    params = optax.apply_updates(params, u)
    out.append(u)
  return out


def _slice(tree, i, axis=0):
  return jax.tree.map(lambda x: jnp.take(x, i, axis=axis), tree)


@pytest.mark.parametrize(
  "kwargs",
  [
    dict(weight_decay=1e-2),
    dict(weight_decay=1e-2, denominator="combined", nesterov=True),
    dict(weight_decay=1e-2, trust_ratio_mask=True, weight_decay_mask=True),
    dict(clip=True),
  ],
  ids=["paper", "combined-nesterov", "all-masked-in", "clip"],
)
def test_stacked_lars_equals_lars_on_each_slice(kwargs):
  """layer_axis=0: a (3, 8, 8) kernel and a (3, 8) bias give exactly the
  updates of lars on each (8, 8) kernel and (8,) bias separately."""
  params, grads = _stacked()
  grads_seq = [grads, jax.tree.map(lambda g: 0.5 * g + 0.1, grads)]
  got = _run(legw.lars(0.1, trust_coefficient=0.01, layer_axis=0, **kwargs), params, grads_seq)
  for i in range(3):
    want = _run(
      legw.lars(0.1, trust_coefficient=0.01, **kwargs),
      _slice(params, i),
      [_slice(g, i) for g in grads_seq],
    )
    for t in range(len(grads_seq)):
      for k in ("kernel", "bias"):
        np.testing.assert_array_equal(got[t][k][i], want[t][k], err_msg=f"layer {i}, {k}, step {t}")
  # Not one ratio for the whole stack: that differs.
  whole = _run(legw.lars(0.1, trust_coefficient=0.01, **kwargs), params, grads_seq)
  assert not np.allclose(whole[0]["kernel"], got[0]["kernel"], rtol=1e-3)


def test_default_masks_judge_the_per_layer_shape():
  """A stacked (L, d) bias is a bias (plain momentum SGD); with no
  layer_axis it would count as a kernel."""
  params, grads = _stacked()
  u = _run(legw.lars(0.1, weight_decay=1e-2, layer_axis=0), params, [grads])[0]
  np.testing.assert_allclose(u["bias"], -0.1 * grads["bias"], rtol=1e-6)
  u_flat = _run(legw.lars(0.1, weight_decay=1e-2), params, [grads])[0]
  assert not np.allclose(u_flat["bias"], -0.1 * grads["bias"], rtol=1e-3)


@pytest.mark.parametrize(
  "layer_axis",
  [
    {"kernel": 2, "bias": 1},
    {"kernel": -1, "bias": -1},
    lambda p: jax.tree.map(lambda x: x.ndim - 1, p),
  ],
  ids=["pytree", "negative", "callable"],
)
def test_other_axes_pytrees_and_callables(layer_axis):
  """Layers stacked on the last axis, given per leaf: equal to float32
  rounding (the vmapped reduction adds a slice's entries in another order
  than a reduction of the slice alone; on axis 0 the order is the same)."""
  params, grads = _stacked(1)
  params = jax.tree.map(lambda x: jnp.moveaxis(x, 0, -1), params)
  grads = jax.tree.map(lambda x: jnp.moveaxis(x, 0, -1), grads)
  got = _run(legw.scale_by_lars(0.01, weight_decay=1e-2, layer_axis=layer_axis), params, [grads])
  for i in range(3):
    want = _run(
      legw.scale_by_lars(0.01, weight_decay=1e-2),
      _slice(params, i, -1),
      [_slice(grads, i, -1)],
    )
    for k in ("kernel", "bias"):
      np.testing.assert_allclose(got[0][k][..., i], want[0][k], rtol=1e-6)


def test_none_entries_and_unstacked_leaves():
  """None in the pytree: that leaf is one layer (today's behaviour)."""
  params, grads = _stacked(2)
  params["dense"], grads["dense"] = jnp.ones((4, 5)), jnp.full((4, 5), 0.3)
  axes = {"kernel": 0, "bias": 0, "dense": None}
  got = _run(legw.lars(0.1, layer_axis=axes), params, [grads])[0]
  want = _run(legw.lars(0.1), {"dense": params["dense"]}, [{"dense": grads["dense"]}])[0]
  np.testing.assert_array_equal(got["dense"], want["dense"])


def test_under_jit_and_zero_layer_in_the_stack():
  """A zero layer in the stack still trains (its ratio is 1, not 0 or NaN)."""
  params, grads = _stacked(3)
  params["kernel"] = params["kernel"].at[1].set(0.0)
  opt = legw.lars(0.1, weight_decay=1e-2, layer_axis=0)
  u, _ = jax.jit(opt.update)(grads, opt.init(params), params)
  assert np.all(np.isfinite(u["kernel"]))
  np.testing.assert_allclose(u["kernel"][1], -0.1 * grads["kernel"][1], rtol=1e-6)


@pytest.mark.parametrize(
  "layer_axis, error",
  [(3, ValueError), ({"kernel": 0, "bias": 2}, ValueError), (0.5, TypeError), ("0", TypeError)],
)
def test_bad_layer_axis(layer_axis, error):
  params, grads = _stacked()
  opt = legw.lars(0.1, layer_axis=layer_axis)
  with pytest.raises(error, match="layer_axis"):
    opt.update(grads, opt.init(params), params)


@pytest.mark.slow
@pytest.mark.parametrize(
  "make",
  [
    lambda **kw: legw.mclr(0.1, weight_decay=1e-2, **kw),
    lambda **kw: legw.percent_delta(0.1, weight_decay=1e-2, **kw),
    lambda **kw: legw.lamb(0.1, weight_decay=1e-2, **kw),
    lambda **kw: legw.lamb(0.1, weight_decay=1e-2, trust_ratio_mask=True, **kw),
  ],
  ids=["mclr", "percent_delta", "lamb", "lamb-all-masked-in"],
)
def test_every_member_on_the_core_takes_layer_axis(make):
  """The core slices the stack for every statistic: MCLR's medians,
  PercentDelta's sums and LAMB's norms are per layer too."""
  params, grads = _stacked(4)
  grads_seq = [grads, jax.tree.map(lambda g: 0.5 * g + 0.1, grads)]
  got = _run(make(layer_axis=0), params, grads_seq)
  for i in range(3):
    want = _run(make(), _slice(params, i), [_slice(g, i) for g in grads_seq])
    for t in range(len(grads_seq)):
      for k in ("kernel", "bias"):
        np.testing.assert_allclose(
          got[t][k][i], want[t][k], rtol=1e-6, atol=1e-9, err_msg=f"layer {i}, {k}, step {t}"
        )


@pytest.mark.parametrize(
  "make",
  [
    lambda **kw: legw.lars(0.1, weight_decay=1e-2, **kw),
    lambda **kw: legw.percent_delta(0.1, weight_decay=1e-2, **kw),
    lambda **kw: legw.mclr(0.1, weight_decay=1e-2, **kw),
    lambda **kw: legw.lamb(0.1, weight_decay=1e-2, **kw),
  ],
  ids=["lars", "percent_delta", "mclr", "lamb"],
)
def test_shard_map_axis_name_with_stacked_layers(make):
  """Every layer of the stack sharded over 8 devices along a non-layer axis:
  with axis_name the per-layer statistics are of the whole layer."""
  from jax.sharding import Mesh
  from jax.sharding import PartitionSpec as P

  rs = np.random.RandomState(7)
  params = {"kernel": jnp.asarray(rs.randn(3, 16, 4), jnp.float32)}
  grads = {"kernel": jnp.asarray(rs.randn(3, 16, 4), jnp.float32)}
  ref = make(layer_axis=0)
  want, _ = ref.update(grads, ref.init(params), params)
  opt = make(layer_axis=0, axis_name="d")
  state = opt.init(params)
  mesh = Mesh(np.array(jax.devices()[:8]), ("d",))
  spec = lambda tree: jax.tree.map(lambda x: P(None, "d") if np.ndim(x) == 3 else P(), tree)

  def step(g, s, p):
    return opt.update(g, s, p)[0]

  fn = jax.jit(
    jax.shard_map(
      step, mesh=mesh, in_specs=(spec(grads), spec(state), spec(params)), out_specs=spec(params)
    )
  )
  got = fn(grads, state, params)
  np.testing.assert_allclose(got["kernel"], want["kernel"], rtol=2e-6, atol=1e-9)


def test_stacked_step_stores_no_parameter_sized_temporary():
  """The sums of a stack are one vmapped reduction (no slices, no stacked
  copies): a compiled lars step keeps no layer-sized temporary."""
  opt = legw.lars(0.1, weight_decay=1e-4, layer_axis=0)
  params = {"k": jax.ShapeDtypeStruct((8, 256, 128), jnp.float32)}
  params["b"] = jax.ShapeDtypeStruct((8, 128), jnp.float32)

  def step(params, state, grads):
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  state = jax.eval_shape(opt.init, params)
  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, params).compile()
  assert compiled.memory_analysis().temp_size_in_bytes < 256 * 128 * 4 // 8


@pytest.mark.parametrize("name", ["lars", "lamb"])
def test_scanned_model_trains_like_the_unrolled_model(name):
  """An MLP whose L layers are stacked and run with lax.scan, trained with
  layer_axis=0, follows the unrolled model (one leaf per layer) step for step."""
  make = {
    "lars": lambda **kw: legw.lars(0.5, trust_coefficient=0.01, weight_decay=1e-3, **kw),
    "lamb": lambda **kw: legw.lamb(0.01, weight_decay=1e-3, **kw),
  }[name]
  L, d = 3, 8
  rs = np.random.RandomState(8)
  x = jnp.asarray(rs.randn(32, d), jnp.float32)
  y = jnp.asarray(np.tanh(rs.randn(32, d)), jnp.float32)
  stacked = {
    "kernel": jnp.asarray(rs.randn(L, d, d) / np.sqrt(d) * np.array([0.5, 1, 2])[:, None, None]),
    "bias": jnp.asarray(0.1 * rs.randn(L, d), jnp.float32),
  }
  unrolled = [{"kernel": stacked["kernel"][i], "bias": stacked["bias"][i]} for i in range(L)]

  def scanned_loss(p):
    h, _ = jax.lax.scan(
      lambda h, layer: (jnp.tanh(h @ layer["kernel"] + layer["bias"]), None), x, p
    )
    return jnp.mean((h - y) ** 2)

  def unrolled_loss(p):
    h = x
    for layer in p:
      h = jnp.tanh(h @ layer["kernel"] + layer["bias"])
    return jnp.mean((h - y) ** 2)

  def trainer(loss, opt):
    @jax.jit
    def step(p, s):
      loss_value, g = jax.value_and_grad(loss)(p)
      u, s = opt.update(g, s, p)
      return optax.apply_updates(p, u), s, loss_value

    return step

  opt_s, opt_u = make(layer_axis=0), make()
  step_s, step_u = trainer(scanned_loss, opt_s), trainer(unrolled_loss, opt_u)
  ps, ss, pu, su = stacked, opt_s.init(stacked), unrolled, opt_u.init(unrolled)
  losses = []
  for _ in range(10):
    ps, ss, ls = step_s(ps, ss)
    pu, su, lu = step_u(pu, su)
    np.testing.assert_allclose(ls, lu, rtol=1e-5)
    for i in range(L):
      for k in ("kernel", "bias"):
        np.testing.assert_allclose(ps[k][i], pu[i][k], rtol=1e-5, atol=1e-6)
    losses.append(float(ls))
  assert losses[-1] < losses[0]


def test_nnx_scan_model_trains_like_the_unrolled_model():
  """Flax NNX: L blocks made with nnx.vmap and run with nnx.scan (kernel
  (L, d, d), bias (L, d)), trained by nnx.Optimizer with legw.lars(layer_axis=0),
  follow the same blocks unrolled (one Linear each) step for step."""
  from flax import nnx

  L, d = 3, 8

  class Block(nnx.Module):
    def __init__(self, rngs):
      self.lin = nnx.Linear(d, d, rngs=rngs)

    def __call__(self, x):
      return jnp.tanh(self.lin(x))

  @nnx.vmap(in_axes=0, out_axes=0)
  def make_blocks(key):
    return Block(nnx.Rngs(key))

  class Scanned(nnx.Module):
    def __init__(self):
      self.blocks = make_blocks(jax.random.split(jax.random.key(0), L))

    def __call__(self, x):
      @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
      def body(x, block):
        return block(x)

      return body(x, self.blocks)

  class Unrolled(nnx.Module):
    def __init__(self, scanned):
      self.blocks = nnx.List([Block(nnx.Rngs(i)) for i in range(L)])
      for i, b in enumerate(self.blocks):
        b.lin.kernel.set_value(scanned.blocks.lin.kernel.get_value()[i])
        b.lin.bias.set_value(scanned.blocks.lin.bias.get_value()[i] + 0.1 * (i + 1))
      scanned.blocks.lin.bias.set_value(
        jnp.stack([b.lin.bias.get_value() for b in self.blocks])
      )  # nonzero biases, the same in both

    def __call__(self, x):
      for b in self.blocks:
        x = b(x)
      return x

  rs = np.random.RandomState(9)
  x = jnp.asarray(rs.randn(32, d), jnp.float32)
  y = jnp.asarray(np.tanh(rs.randn(32, d)), jnp.float32)
  scanned = Scanned()
  unrolled = Unrolled(scanned)
  make = lambda **kw: legw.lars(0.5, trust_coefficient=0.01, weight_decay=1e-3, **kw)
  opt_s = nnx.Optimizer(scanned, make(layer_axis=0), wrt=nnx.Param)
  opt_u = nnx.Optimizer(unrolled, make(), wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer):
    loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
    optimizer.update(model, grads)
    return loss

  for _ in range(5):
    ls, lu = step(scanned, opt_s), step(unrolled, opt_u)
    np.testing.assert_allclose(ls, lu, rtol=1e-5)
    for i, b in enumerate(unrolled.blocks):
      np.testing.assert_allclose(
        scanned.blocks.lin.kernel.get_value()[i], b.lin.kernel.get_value(), rtol=1e-5, atol=1e-6
      )
      np.testing.assert_allclose(
        scanned.blocks.lin.bias.get_value()[i], b.lin.bias.get_value(), rtol=1e-5, atol=1e-6
      )
