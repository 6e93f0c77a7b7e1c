"""Per-layer statistics of the whole layer, however it is split.

Every per-layer transform must give the same result, to float32 rounding, on
one device and on 8 simulated CPU devices (tests/conftest.py sets
``--xla_force_host_platform_device_count=8``):

* ``jax.jit`` with ``NamedSharding`` (FSDP on the first axis; tensor-parallel
  split of a kernel's second axis): XLA's SPMD partitioner reduces the norms
  over the shards, and combines the per-layer all-reduces into one.
* ``shard_map`` where each device holds a shard of every parameter: the
  ``axis_name`` argument reduces the statistics over the mesh axis.  Without
  it each shard would get its own (wrong) norm: the tests check that this
  difference is large, so that they would notice a missing reduction.
* ``pmap`` with replicated parameters and ``lax.pmean``-ed gradients (a
  ``chex.variants`` pmap on the 8 devices for LARS; ``chex.fake_pmap``, a
  ``vmap`` with the same axis name, for two others).
"""

import functools
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import legw

pytestmark = pytest.mark.skipif(
  jax.device_count() < 8, reason="needs 8 (simulated) devices; see tests/conftest.py"
)

STEPS = 3

# A small network whose every axis 0 and axis 1 divides 8: kernels of several
# ranks, biases and normalisation parameters.
SHAPES = {
  "embed": {"embedding": (64, 16)},
  "conv": {"kernel": (8, 8, 4, 32), "bias": (32,)},
  "norm": {"scale": (32,), "offset": (32,)},
  "dense": {"kernel": (32, 64), "bias": (64,)},
  "head": {"kernel": (64, 8), "bias": (8,)},
}


def make_tree(seed, scale_by_layer=True):
  """Weights with layer-dependent scales (so trust ratios differ per layer)."""
  rng = np.random.default_rng(seed)
  flat, treedef = jax.tree.flatten(SHAPES, is_leaf=lambda x: isinstance(x, tuple))
  leaves = []
  for i, shape in enumerate(flat):
    s = 0.5**i if scale_by_layer else 1.0
    # Each shard along axis 0 gets a different scale too: a per-shard norm is
    # then visibly different from the whole layer's norm.
    rows = np.geomspace(1.0, 8.0, shape[0]).reshape((-1,) + (1,) * (len(shape) - 1))
    leaves.append((rng.normal(size=shape) * s * rows).astype(np.float32))
  return jax.tree.unflatten(treedef, leaves)


PARAMS = make_tree(0)
GRADS = [make_tree(10 + t, scale_by_layer=False) for t in range(STEPS)]

OPTIMIZERS = {
  "lars": lambda **kw: legw.lars(0.5, weight_decay=1e-2, trust_coefficient=0.02, **kw),
  "lars_combined": lambda **kw: legw.lars(
    0.5,
    weight_decay=1e-2,
    trust_coefficient=0.02,
    denominator="combined",
    trust_ratio_mask=True,
    weight_decay_mask=True,
    **kw,
  ),
  "lars_clip_eps": lambda **kw: legw.lars(
    0.5, weight_decay=1e-2, trust_coefficient=5.0, eps=1e-3, clip=True, **kw
  ),
  "scale_by_lars": lambda **kw: legw.scale_by_lars(trust_coefficient=0.02, weight_decay=1e-2, **kw),
  "mclr": lambda **kw: legw.mclr(0.05, weight_decay=1e-2, **kw),
  "percent_delta": lambda **kw: legw.percent_delta(0.05, weight_decay=1e-2, **kw),
}


def make_step(opt):
  def step(params, state, grads):
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  return step


def run(step, params, state, grads_list):
  for grads in grads_list:
    params, state = step(params, state, grads)
  return params


@functools.cache
def single_device(name):
  opt = OPTIMIZERS[name]()
  params = jax.tree.map(jnp.asarray, PARAMS)
  return run(jax.jit(make_step(opt)), params, opt.init(params), GRADS)


def assert_close(actual, expected, rtol=2e-5):
  """Equal up to float32 rounding of differently ordered sums."""
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    a, e = np.asarray(a, np.float64), np.asarray(e, np.float64)
    np.testing.assert_allclose(a, e, rtol=rtol, atol=rtol * np.max(np.abs(e)))


def max_rel_change_difference(actual, expected, start):
  """Largest per-leaf relative difference of the parameter changes."""
  worst = 0.0
  for a, e, s in zip(*(jax.tree.leaves(t) for t in (actual, expected, start))):
    da = np.asarray(a, np.float64) - np.asarray(s, np.float64)
    de = np.asarray(e, np.float64) - np.asarray(s, np.float64)
    if np.any(de):
      worst = max(worst, np.max(np.abs(da - de)) / np.max(np.abs(de)))
  return worst


def count_collectives(compiled_text, op):
  """Number of `op` instructions (a tuple-shaped combined one counts once)."""
  return len(re.findall(rf"^\s*%[\w.-]+ = .*?\s{op}(-start)?\(", compiled_text, re.M))


# --------------------------------------------------------------------------
# jax.jit with NamedSharding over a Mesh.
# --------------------------------------------------------------------------


def fsdp_spec(x):
  return P("fsdp")  # every leaf's axis 0 divides 8


def tp_spec(x):
  # Kernels: FSDP on axis 0 over "data" and tensor-parallel axis 1 over
  # "model"; vectors split over "model".
  if x.ndim >= 2:
    return P("data", "model")
  return P("model")


MESHES = {
  "fsdp": (lambda: Mesh(np.array(jax.devices()[:8]), ("fsdp",)), fsdp_spec),
  "fsdp+tp": (lambda: Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "model")), tp_spec),
  "tp_only": (
    lambda: Mesh(np.array(jax.devices()[:8]).reshape(1, 8), ("data", "model")),
    lambda x: P(None, "model") if x.ndim >= 2 else P(),
  ),
  # jax.make_mesh's Explicit axes: shardings are part of the array types, and
  # reshapes or slices of sharded dims are refused unless placed explicitly.
  "fsdp_explicit": (
    lambda: jax.make_mesh(
      (8,), ("fsdp",), axis_types=(AxisType.Explicit,), devices=jax.devices()[:8]
    ),
    fsdp_spec,
  ),
  "fsdp+tp_explicit": (
    lambda: jax.make_mesh(
      (2, 4), ("data", "model"), axis_types=(AxisType.Explicit,) * 2, devices=jax.devices()[:8]
    ),
    tp_spec,
  ),
}


def jit_sharded(name, mesh_name, params=PARAMS, grads=GRADS):
  make_mesh, spec = MESHES[mesh_name]
  mesh = make_mesh()
  shardings = jax.tree.map(lambda x: NamedSharding(mesh, spec(x)), params)
  params = jax.device_put(params, shardings)
  grads = [jax.device_put(g, shardings) for g in grads]
  opt = OPTIMIZERS[name]()
  state = opt.init(params)
  step = jax.jit(make_step(opt))
  return step, params, state, grads, shardings


@pytest.mark.slow
@pytest.mark.parametrize(
  "name, mesh_name",
  [
    ("lars", "fsdp"),
    ("lars", "fsdp+tp"),
    ("lars", "tp_only"),
    ("lars_combined", "fsdp+tp"),
    ("lars_clip_eps", "tp_only"),
    ("scale_by_lars", "fsdp"),
    ("mclr", "fsdp"),
    ("percent_delta", "fsdp+tp"),
    ("lars", "fsdp+tp_explicit"),
    ("lars_combined", "fsdp_explicit"),
    ("mclr", "fsdp_explicit"),
    ("mclr", "fsdp+tp_explicit"),
    ("percent_delta", "fsdp+tp_explicit"),
  ],
)
def test_jit_named_sharding_matches_single_device(name, mesh_name):
  step, params, state, grads, shardings = jit_sharded(name, mesh_name)
  out = run(step, params, state, grads)
  assert_close(out, single_device(name))
  # The parameters really were split (and stay split).
  kernel = out["dense"]["kernel"]
  assert kernel.sharding.is_equivalent_to(shardings["dense"]["kernel"], kernel.ndim)
  assert len(kernel.addressable_shards) == 8
  assert kernel.addressable_shards[0].data.size < kernel.size


@pytest.mark.slow
@pytest.mark.parametrize("mesh_name", list(MESHES))
def test_jit_sharded_lars_batches_its_all_reduces(mesh_name):
  """One combined all-reduce per mesh axis reduced over, not one per layer."""
  counts = []
  for params in (PARAMS, {"a": PARAMS, "b": make_tree(1), "c": make_tree(2)}):
    step, params, state, grads, _ = jit_sharded("lars", mesh_name, params, [params])
    text = step.lower(params, state, grads[0]).compile().as_text()
    counts.append(count_collectives(text, "all-reduce"))
  assert sum(x.ndim > 1 for x in jax.tree.leaves(PARAMS)) == 4  # kernels
  assert counts[0] == counts[1], counts  # 12 kernels: no more all-reduces
  assert 1 <= counts[0] <= 2, counts  # "fsdp+tp" reduces over 2 mesh axes


# --------------------------------------------------------------------------
# shard_map: every device holds a shard of every parameter.
# --------------------------------------------------------------------------


def shard_map_step(name, axis_name, params=None):
  """A jitted shard_map step (each device: 1/8 of every leaf's axis 0)."""
  mesh = Mesh(np.array(jax.devices()[:8]), ("d",))
  opt = OPTIMIZERS[name](axis_name=axis_name)
  params = jax.tree.map(jnp.asarray, PARAMS if params is None else params)
  state = opt.init(params)  # momentum buffers have the parameters' shapes
  spec = lambda tree: jax.tree.map(lambda x: P("d") if np.ndim(x) else P(), tree)
  specs = (spec(params), spec(state), spec(params))
  step = jax.jit(jax.shard_map(make_step(opt), mesh=mesh, in_specs=specs, out_specs=specs[:2]))
  return step, params, state


@pytest.mark.slow
@pytest.mark.parametrize(
  "name", ["lars", "lars_combined", "scale_by_lars", "mclr", "percent_delta"]
)
def test_shard_map_axis_name_matches_single_device(name):
  step, params, state = shard_map_step(name, axis_name="d")
  expected = single_device(name)
  assert_close(run(step, params, state, GRADS), expected)
  # Without axis_name, each device scales its shard by the shard's own
  # statistics: a different (wrong) update, which this test must be able to see.
  step, params, state = shard_map_step(name, axis_name=None)
  per_shard = run(step, params, state, GRADS)
  assert max_rel_change_difference(per_shard, expected, PARAMS) > 0.05


def shard_map_collectives(name, params):
  step, params, state = shard_map_step(name, "d", params)
  text = step.lower(params, state, params).compile().as_text()
  return {op: count_collectives(text, op) for op in ("all-reduce", "all-gather")}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lars", "scale_by_lars", "percent_delta", "mclr"])
def test_shard_map_collectives_do_not_grow_with_layers(name):
  """Batched statistics: as many collectives for 3x the layers."""
  small = shard_map_collectives(name, PARAMS)
  large = shard_map_collectives(name, {"a": PARAMS, "b": make_tree(1), "c": make_tree(2)})
  assert large == small
  assert 1 <= sum(small.values()) <= 4, small
  if name in ("lars", "scale_by_lars"):
    assert small == {"all-reduce": 1, "all-gather": 0}


def test_shard_map_layerwise_stats_are_whole_layer():
  mesh = Mesh(np.array(jax.devices()[:8]), ("d",))
  fn = jax.jit(
    jax.shard_map(
      lambda p, g: legw.layerwise_stats(p, g, axis_name="d"),
      mesh=mesh,
      in_specs=(P("d"), P("d")),
      out_specs=P(),
    )
  )
  got = fn(PARAMS, GRADS[0])
  want = legw.layerwise_stats(PARAMS, GRADS[0])
  assert_close(got, want, rtol=1e-6)


# --------------------------------------------------------------------------
# pmap: replicated parameters, gradients averaged with lax.pmean.
# --------------------------------------------------------------------------


N_DEVICES = 8


def same_on_every_device(out):
  """The pmap variant's ``reduce_fn``: every device's outputs equal the first
  device's (replicas stay replicas); returns those."""
  out = jax.device_get(out)  # NumPy: slicing it runs no JAX op
  first = jax.tree.map(lambda x: x[0], out)
  for d in range(1, N_DEVICES):
    chex.assert_trees_all_equal(jax.tree.map(lambda x, d=d: x[d], out), first)
  return first


def add_zero_mean_noise(grads, axis_name):
  """Device d's gradients: ``grads + (d - 3.5) * cos(i)`` at flat index i, a
  different gradient on each of the 8 devices whose mean is ``grads``."""
  c = jax.lax.axis_index(axis_name) - (N_DEVICES - 1) / 2
  pattern = lambda g: jnp.cos(jnp.arange(g.size, dtype=g.dtype)).reshape(g.shape)
  return jax.tree.map(lambda g: g + c * pattern(g), grads)


class PmapTest(chex.TestCase):
  """``jax.pmap`` data parallelism: replicated parameters, per-device gradients
  averaged with ``lax.pmean``; the result is the single-device one."""

  @chex.variants(with_pmap=True)
  @parameterized.named_parameters(
    ("lars", "lars", False),
    ("lars_combined_fake_pmap", "lars_combined", True),
    ("percent_delta_fake_pmap", "percent_delta", True),
  )
  def test_replicated_params_with_pmean_gradients(self, name, fake):
    """LARS on the 8 devices; ``fake``: under ``chex.fake_pmap`` (a ``vmap``
    with the same axis name), where the averaging, not the devices, is the point."""
    opt = OPTIMIZERS[name]()

    def step(params, state, grads):
      grads = jax.lax.pmean(add_zero_mean_noise(grads, "batch"), "batch")
      updates, state = opt.update(grads, state, params)
      return optax.apply_updates(params, updates), state

    with chex.fake_pmap(enable_patching=fake, jit_result=True):
      # chex broadcasts every argument to the devices.
      pstep = self.variant(
        step, axis_name="batch", n_devices=N_DEVICES, reduce_fn=same_on_every_device
      )
      params = jax.tree.map(jnp.asarray, PARAMS)
      state = opt.init(params)
      for grads in GRADS:
        params, state = pstep(params, state, grads)
    assert_close(params, single_device(name))
