"""legw.path_mask: masks by regular expressions over parameter paths."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import legw
from legw._masks import leaf_path

flax = pytest.importorskip("flax")
from flax import linen as nn  # noqa: E402
from flax import nnx  # noqa: E402

NO_DECAY = ("bias", "scale", "embed")  # biases, LayerNorm scales, the embedding


def _paths(tree):
  return [leaf_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _step(opt, params, grads, steps=2):
  state, out = opt.init(params), []
  for _ in range(steps):
    updates, state = opt.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    out.append(updates)
  return out, state


# ---------------------------------------------------------------------------
# Semantics.
# ---------------------------------------------------------------------------


def _plain_params():
  return {
    "embed": {"embedding": jnp.ones((10, 4))},
    "layers": [
      {"attn": {"query": {"kernel": jnp.ones((4, 4)), "bias": jnp.zeros(4)}}},
      {"attn": {"query": {"kernel": jnp.ones((4, 4)), "bias": jnp.zeros(4)}}},
    ],
    "ln": {"scale": jnp.ones(4), "bias": jnp.zeros(4)},
  }


def test_paths_are_slash_joined_keys():
  assert _paths(_plain_params()) == [
    "embed/embedding",
    "layers/0/attn/query/bias",
    "layers/0/attn/query/kernel",
    "layers/1/attn/query/bias",
    "layers/1/attn/query/kernel",
    "ln/bias",
    "ln/scale",
  ]


def test_exclude_include_and_both():
  params = _plain_params()
  flat = lambda m: dict(zip(_paths(params), jax.tree.leaves(m)))
  ex = flat(legw.path_mask(exclude=NO_DECAY)(params))
  assert [p for p, m in ex.items() if m] == [
    "layers/0/attn/query/kernel",
    "layers/1/attn/query/kernel",
  ]
  inc = flat(legw.path_mask(include=r"^layers/1/")(params))
  assert [p for p, m in inc.items() if m] == [
    "layers/1/attn/query/bias",
    "layers/1/attn/query/kernel",
  ]
  both = flat(legw.path_mask(include="layers", exclude="bias")(params))
  assert [p for p, m in both.items() if m] == [
    "layers/0/attn/query/kernel",
    "layers/1/attn/query/kernel",
  ]
  # Python bools, the structure of params: what optax and legw masks take.
  mask = legw.path_mask(exclude="bias")(params)
  assert jax.tree.structure(mask) == jax.tree.structure(params)
  assert all(type(m) is bool for m in jax.tree.leaves(mask))


def test_differs_from_the_shape_rule_on_embeddings():
  params = _plain_params()
  by_shape = legw.exclude_bias_and_norm(params)
  by_name = legw.path_mask(exclude=NO_DECAY)(params)
  assert by_shape["embed"]["embedding"] is True  # ndim 2: the shape rule keeps it
  assert by_name["embed"]["embedding"] is False
  # Everything else agrees on this tree.
  del by_shape["embed"], by_name["embed"]
  assert by_shape == by_name


def test_as_an_optax_mask():
  params = _plain_params()
  decay = optax.add_decayed_weights(0.1, mask=legw.path_mask(exclude=NO_DECAY))
  updates, _ = decay.update(jax.tree.map(jnp.zeros_like, params), decay.init(params), params)
  assert float(jnp.abs(updates["embed"]["embedding"]).max()) == 0.0
  np.testing.assert_allclose(updates["layers"][0]["attn"]["query"]["kernel"], 0.1)


def test_repr_names_the_patterns():
  assert repr(legw.path_mask(exclude=("bias", "scale"))) == (
    "legw.path_mask(exclude=('bias', 'scale'))"
  )


# ---------------------------------------------------------------------------
# Bad input.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("argument", ["include", "exclude"])
def test_invalid_regular_expression_raises_at_construction(argument):
  with pytest.raises(ValueError, match=rf"{argument} pattern '\(bias' is not a valid regular"):
    legw.path_mask(**{argument: ["kernel", "(bias"]})


@pytest.mark.parametrize("bad", [3, [b"bias"], ["bias", None]])
def test_non_string_pattern_raises(bad):
  with pytest.raises(TypeError, match="exclude"):
    legw.path_mask(exclude=bad)


def test_no_pattern_raises():
  with pytest.raises(ValueError, match="include= or exclude="):
    legw.path_mask()
  with pytest.raises(ValueError, match="include= or exclude="):
    legw.path_mask(include=(), exclude=[])
  with pytest.raises(TypeError, match="strict"):
    legw.path_mask(exclude="bias", strict="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
  "make",
  [
    lambda m: legw.lars(0.1, trust_ratio_mask=m),
    lambda m: legw.lamb(0.1, weight_decay=1e-2, weight_decay_mask=m),
    lambda m: legw.mclr(0.1, trust_ratio_mask=m),
    lambda m: legw.scale_by_lars(weight_decay_mask=m),
    lambda m: legw.cblr(0.1, trust_ratio_mask=m),
    lambda m: legw.scale_by_curvature_radius(weight_decay=1e-2, weight_decay_mask=m),
  ],
  ids=["lars", "lamb", "mclr", "scale_by_lars", "cblr", "scale_by_curvature_radius"],
)
def test_unmatched_pattern_raises_at_init_naming_it_and_the_paths(make):
  params = _plain_params()
  opt = make(legw.path_mask(exclude=("bias", "LayerNorm")))
  with pytest.raises(
    ValueError, match=r"exclude pattern 'LayerNorm' matches no parameter path"
  ) as e:
    opt.init(params)
  assert "'embed/embedding'" in str(e.value) and "(7 leaves)" in str(e.value)
  # strict=False: a pattern may match nothing (a config shared by models).
  opt = make(legw.path_mask(exclude=("bias", "LayerNorm"), strict=False))
  obj_fn = lambda p: sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(p))  # for cblr
  opt.update(params, opt.init(params), params, obj_fn=obj_fn)


# ---------------------------------------------------------------------------
# Flax Linen params dicts and NNX models, with lars and lamb.
# ---------------------------------------------------------------------------


class _LinenNet(nn.Module):
  @nn.compact
  def __call__(self, tokens):
    x = nn.Embed(16, 8)(tokens)
    x = nn.LayerNorm()(x)
    x = nn.Dense(8)(x)
    return nn.Dense(4)(jnp.tanh(x)).mean()


OPTIMIZERS = {
  "lars": lambda **kw: legw.lars(0.5, weight_decay=1e-2, trust_coefficient=0.01, **kw),
  "lamb": lambda **kw: legw.lamb(1e-2, weight_decay=1e-2, **kw),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_linen_params_dict(name):
  tokens = jnp.arange(6) % 16
  model = _LinenNet()
  params = model.init(jax.random.key(0), tokens)["params"]
  assert set(_paths(params)) == {
    "Dense_0/bias",
    "Dense_0/kernel",
    "Dense_1/bias",
    "Dense_1/kernel",
    "Embed_0/embedding",
    "LayerNorm_0/bias",
    "LayerNorm_0/scale",
  }
  mask = legw.path_mask(exclude=("bias", "LayerNorm", "Embed"))
  want = {
    "Dense_0": {"bias": False, "kernel": True},
    "Dense_1": {"bias": False, "kernel": True},
    "Embed_0": {"embedding": False},
    "LayerNorm_0": {"bias": False, "scale": False},
  }
  assert mask(params) == want
  grads = jax.grad(lambda p: model.apply({"params": p}, tokens))(params)
  make = OPTIMIZERS[name]
  # The same run as with the equivalent pytree mask, bit for bit.
  by_name = _step(make(trust_ratio_mask=mask, weight_decay_mask=mask), params, grads)
  by_tree = _step(make(trust_ratio_mask=want, weight_decay_mask=want), params, grads)
  chex.assert_trees_all_equal(by_name, by_tree)
  # And not the default shape rule's run (it gives the embedding the ratio).
  default = _step(make(), params, grads)
  assert not np.array_equal(
    default[0][0]["Embed_0"]["embedding"], by_name[0][0]["Embed_0"]["embedding"]
  )
  chex.assert_trees_all_equal(default[0][0]["Dense_0"], by_name[0][0]["Dense_0"])


class _Block(nnx.Module):
  def __init__(self, d, rngs):
    self.query = nnx.Linear(d, d, rngs=rngs)
    self.norm = nnx.LayerNorm(d, rngs=rngs)

  def __call__(self, x):
    return self.norm(jnp.tanh(self.query(x)))


class _NnxNet(nnx.Module):
  def __init__(self, rngs, d=8, n_layers=2):
    self.embed = nnx.Embed(16, d, rngs=rngs)
    self.layers = nnx.List([_Block(d, rngs) for _ in range(n_layers)])
    self.head = nnx.Linear(d, 1, rngs=rngs)

  def __call__(self, tokens):
    x = self.embed(tokens)
    for layer in self.layers:
      x = layer(x)
    return self.head(x).mean()


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_nnx_model_with_nnx_optimizer(name):
  """nnx.Optimizer hands ``init`` an nnx.State of Variables (paths ending in
  ``.value``) and ``update`` plain arrays: both get the same paths and mask,
  and the run equals the one with the equivalent pytree mask."""
  tokens = jnp.arange(6) % 16
  state = nnx.state(_NnxNet(nnx.Rngs(0)), nnx.Param)
  paths = _paths(state)
  assert "layers/0/query/kernel" in paths and "layers/1/norm/scale" in paths
  mask = legw.path_mask(exclude=("bias", "norm", "embed"))
  arrays = nnx.to_pure_dict(state)
  assert jax.tree.leaves(mask(state)) == jax.tree.leaves(mask(arrays))
  assert [p for p, m in zip(paths, jax.tree.leaves(mask(state))) if m] == [
    "head/kernel",
    "layers/0/query/kernel",
    "layers/1/query/kernel",
  ]
  # The equivalent pytree mask: the shape rule, then the embedding out.  (As an
  # nnx.State of plain bools: a mask holding nnx.Variables, e.g.
  # exclude_bias_and_norm(state), does not fit the arrays ``update`` sees.)
  want = legw.exclude_bias_and_norm(nnx.to_pure_dict(state))
  want["embed"]["embedding"] = False
  want = nnx.State(want)

  def train(trust_ratio_mask):
    model = _NnxNet(nnx.Rngs(0))
    make = OPTIMIZERS[name]
    kw = dict(trust_ratio_mask=trust_ratio_mask, weight_decay_mask=trust_ratio_mask)
    optimizer = nnx.Optimizer(model, make(**kw), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
      loss, grads = nnx.value_and_grad(lambda m: (m(tokens) - 1.0) ** 2)(model)
      optimizer.update(model, grads)
      return loss

    losses = [float(step(model, optimizer)) for _ in range(5)]
    return losses, nnx.to_pure_dict(nnx.state(model, nnx.Param))

  losses, by_name = train(mask)
  _, by_tree = train(want)
  assert losses[-1] < losses[0]
  chex.assert_trees_all_equal(by_name, by_tree)


def test_nnx_unmatched_pattern_raises_at_nnx_optimizer_construction():
  model = _NnxNet(nnx.Rngs(0))
  with pytest.raises(ValueError, match="'LayerNorm' matches no parameter path.*layers/0/"):
    nnx.Optimizer(
      model, legw.lars(0.1, trust_ratio_mask=legw.path_mask(exclude="LayerNorm")), wrt=nnx.Param
    )


# ---------------------------------------------------------------------------
# Stacked (scanned) layers.
# ---------------------------------------------------------------------------


def _stacked(L=3, d=4, seed=0):
  rs = np.random.RandomState(seed)
  f = lambda *s: jnp.asarray(rs.randn(*s), jnp.float32)
  params = {
    "layers": {"query": {"kernel": f(L, d, d), "bias": f(L, d)}, "ln": {"scale": 1 + f(L, d)}},
    "head": {"kernel": f(d, 2)},
  }
  grads = jax.tree.map(lambda x: 0.1 * jnp.asarray(rs.randn(*x.shape), jnp.float32), params)
  return params, grads


def test_stacked_leaf_with_layer_axis():
  """A stack's path has no layer index: the pattern takes or leaves the whole
  stack; with layer_axis each layer of a kept stack gets its own ratio."""
  params, grads = _stacked()
  assert _paths(params) == [
    "head/kernel",
    "layers/ln/scale",
    "layers/query/bias",
    "layers/query/kernel",
  ]
  mask = legw.path_mask(exclude=("bias", "ln/"))
  # The shape rule without layer_axis keeps the (L, d) LayerNorm scale and bias (ndim 2) ...
  assert legw.exclude_bias_and_norm(params)["layers"]["ln"]["scale"] is True
  # ... the name rule leaves them out either way.
  assert mask(params)["layers"] == {
    "ln": {"scale": False},
    "query": {"bias": False, "kernel": True},
  }

  L = params["layers"]["query"]["kernel"].shape[0]
  axes = {"layers": 0, "head": None}
  for name, make in OPTIMIZERS.items():
    by_name, _ = _step(
      make(trust_ratio_mask=mask, weight_decay_mask=mask, layer_axis=axes), params, grads
    )
    # With layer_axis the default (shape) masks judge one layer: the same leaves out.
    by_shape, _ = _step(make(layer_axis=axes), params, grads)
    chex.assert_trees_all_equal(by_name, by_shape)
    if name != "lars":
      continue
    # Each layer of the stack: the update of the optimizer run on that slice alone.
    for i in range(L):
      sl = lambda t, i=i: jax.tree.map(lambda x: x[i], t["layers"])
      one, _ = _step(
        make(trust_ratio_mask=mask, weight_decay_mask=mask),
        {"layers": sl(params)},
        {"layers": sl(grads)},
        steps=1,
      )
      chex.assert_trees_all_close(sl(by_name[0]), one[0]["layers"], rtol=1e-6, atol=1e-7)

  # Without layer_axis the shape rule gives the stacked scale the trust ratio; by name it is out.
  without, _ = _step(OPTIMIZERS["lars"](), params, grads, steps=1)
  named, _ = _step(
    OPTIMIZERS["lars"](trust_ratio_mask=mask, weight_decay_mask=mask), params, grads, steps=1
  )
  assert not np.allclose(without[0]["layers"]["ln"]["scale"], named[0]["layers"]["ln"]["scale"])


def test_nnx_scanned_stack_paths():
  """nnx.vmap-made stacks: one leaf per parameter, no layer index in its path."""
  L, d = 3, 4

  @nnx.vmap(in_axes=0, out_axes=0)
  def make_blocks(key):
    return _Block(d, nnx.Rngs(key))

  class Scanned(nnx.Module):
    def __init__(self):
      self.blocks = make_blocks(jax.random.split(jax.random.key(0), L))

  state = nnx.state(Scanned(), nnx.Param)
  assert _paths(state) == [
    "blocks/norm/bias",
    "blocks/norm/scale",
    "blocks/query/bias",
    "blocks/query/kernel",
  ]
  mask = legw.path_mask(exclude=("bias", "norm"))
  assert jax.tree.leaves(mask(state)) == [False, False, False, True]
  opt = legw.lars(0.1, trust_ratio_mask=mask, weight_decay_mask=mask, layer_axis=0)
  arrays = nnx.to_pure_dict(state)
  _step(opt, arrays, jax.tree.map(jnp.ones_like, arrays), steps=1)
