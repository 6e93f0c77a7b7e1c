"""legw._median.medians_of_magnitudes: exact medians without sorting.

Exactness is checked bit for bit against ``numpy.median`` (float32 results
of float32, float16 and bfloat16 arrays; float64 of float64 arrays), over
random sizes (odd and even), ties, zeros, all-equal arrays, subnormals and
infinities, on both paths of the selection: arrays counted in place
(``_SMALL`` patched to 0) and arrays copied into the shared row buffer (the
default for arrays under 65,536 entries).  Sharded: under ``shard_map`` with
``axis_name`` the medians are of the whole arrays.  ``nonzero=True``: the
median of the nonzero entries (0 if none), also sharded.  Gradients: those
of ``jnp.median`` (ties: the mean over the tied entries).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

from legw import _median
from legw._median import medians_of_magnitudes

SETTINGS = settings(
  max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

PATHS = {"in_place": 0, "buffered": 1 << 30}


@pytest.fixture(params=list(PATHS))
def path(request, monkeypatch):
  """Every array counted in place, or every array copied into the row buffer."""
  monkeypatch.setattr(_median, "_SMALL", PATHS[request.param])
  return request.param


def medians(arrays, axis_name=None, nonzero=False):
  return jax.jit(lambda a: medians_of_magnitudes(a, axis_name, nonzero=nonzero))(list(arrays))


def np_nonzero_median_f32(a):
  """numpy's median of the nonzero entries of ``|a|`` (0 if there are none)."""
  a = np.abs(np.asarray(a, np.float32)).reshape(-1)
  a = a[a != 0]
  return np.float32(np.median(a)) if a.size else np.float32(0.0)


def np_median_f32(a):
  return np.float32(np.median(np.asarray(a, np.float32)))


def assert_bits_equal(got, want):
  got, want = np.float32(got), np.float32(want)
  assert got.view(np.uint32) == want.view(np.uint32), (got, want)


# Values with many ties, zeros, subnormals, huge values and infinity.
SPECIAL = np.array(
  [0.0, 1e-45, 3e-42, 1e-40, 1.17e-38, 1e-30, 0.5, 1.0, 1.0, 2.0, 3.0, 1e20, 3.4e38, np.inf],
  np.float32,
)


@st.composite
def arrays_f32(draw):
  n = draw(st.integers(1, 300))
  kind = draw(st.sampled_from(["normal", "ties", "special", "all_equal", "mostly_zero"]))
  rng = np.random.default_rng(draw(st.integers(0, 2**31)))
  if kind == "normal":
    a = np.abs(rng.normal(size=n)) * 10.0 ** rng.integers(-30, 30)
  elif kind == "ties":
    a = rng.integers(0, 4, size=n) * 0.25
  elif kind == "special":
    a = rng.choice(SPECIAL, size=n)
  elif kind == "all_equal":
    a = np.full(n, rng.choice(SPECIAL))
  else:
    a = np.where(rng.random(n) < 0.7, 0.0, np.abs(rng.normal(size=n)))
  shape = draw(st.sampled_from([(n,), (1, n)] + ([(2, n // 2)] if n % 2 == 0 else [])))
  return a.astype(np.float32).reshape(shape)


@pytest.mark.slow
@SETTINGS
@given(st.lists(arrays_f32(), min_size=1, max_size=4), st.sampled_from(list(PATHS)))
def test_medians_equal_numpy_bit_for_bit(arrays, path):
  _median._SMALL, saved = PATHS[path], _median._SMALL
  try:
    got = medians(arrays)
  finally:
    _median._SMALL = saved
  for a, m in zip(arrays, got):
    assert m.dtype == jnp.float32 and m.shape == ()
    assert_bits_equal(m, np_median_f32(a))


@pytest.mark.slow
@SETTINGS
@given(st.lists(arrays_f32(), min_size=1, max_size=4), st.sampled_from(list(PATHS)))
def test_nonzero_medians_equal_numpy_on_the_nonzero_entries(arrays, path):
  arrays = arrays + [np.zeros((5, 3), np.float32)]  # no nonzero entry: 0
  _median._SMALL, saved = PATHS[path], _median._SMALL
  try:
    got = medians(arrays, nonzero=True)
  finally:
    _median._SMALL = saved
  for a, m in zip(arrays, got):
    assert m.dtype == jnp.float32 and m.shape == ()
    assert_bits_equal(m, np_nonzero_median_f32(a))


def test_unstack_returns_every_entry_bit_for_bit():
  v = np.concatenate([SPECIAL, -SPECIAL, [np.nan]] * 7).astype(np.float32)  # 203 > 3 chunks
  got = jax.jit(_median._unstack)(jnp.asarray(v))
  assert len(got) == v.size
  np.testing.assert_array_equal(np.asarray(got).view(np.uint32), v.view(np.uint32))


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_low_precision_arrays_give_float32_medians(dtype, path):
  rng = np.random.default_rng(3)
  arrays = [jnp.asarray(np.abs(rng.normal(size=s)), dtype) for s in [(7, 5), (8, 4), (1,)]]
  arrays.append(jnp.asarray([0.0, 6e-8, 6e-8, 65504.0], dtype))  # f16 subnormal, max
  for a, m in zip(arrays, medians(arrays)):
    assert m.dtype == jnp.float32
    assert_bits_equal(m, np_median_f32(np.asarray(a.astype(jnp.float32))))


def test_float64_medians_are_exact(path):
  with jax.enable_x64(True):
    rng = np.random.default_rng(1)
    arrays = [
      np.abs(rng.normal(size=(10, 7))),
      np.abs(rng.normal(size=(9,))) * 1e-300,
      np.array([5e-324, 1e308, np.inf, 2.0]),
      rng.integers(0, 3, size=40) * 1.0,
    ]
    got = medians([jnp.asarray(a) for a in arrays])
    for a, m in zip(arrays, got):
      assert m.dtype == jnp.float64
      assert np.float64(m).view(np.uint64) == np.median(a).view(np.uint64)


def test_float32_and_float64_side_by_side():
  with jax.enable_x64(True):
    a32 = np.abs(np.random.default_rng(2).normal(size=(6, 5))).astype(np.float32)
    a64 = np.abs(np.random.default_rng(3).normal(size=(11,)))
    m32, m64 = medians([jnp.asarray(a32), jnp.asarray(a64)])
    assert m32.dtype == jnp.float32 and m64.dtype == jnp.float64
    assert_bits_equal(m32, np.median(a32))
    assert float(m64) == np.median(a64)


@pytest.mark.slow
@pytest.mark.parametrize("thresholds", [1, 2, 5, 15])
def test_every_thresholds_per_pass_gives_the_same_exact_medians(thresholds, path, monkeypatch):
  """The search is exact whatever the thresholds per pass (CPU uses 5, GPU/TPU 15)."""
  monkeypatch.setattr(_median, "_T_CPU", thresholds)
  assert _median._thresholds_by_platform()["cpu"] == thresholds  # CI runs on CPU
  rng = np.random.default_rng(11)
  arrays = [
    np.abs(rng.normal(size=(13, 11))).astype(np.float32),
    rng.choice(SPECIAL, size=64),
    np.where(rng.random(50) < 0.6, 0.0, rng.normal(size=50)).astype(np.float32),
    np.full((3, 3), 1e-45, np.float32),
  ]
  for a, m in zip(arrays, medians(arrays)):
    assert_bits_equal(m, np_median_f32(np.abs(a)))
  for a, m in zip(arrays, medians(arrays, nonzero=True)):
    assert_bits_equal(m, np_nonzero_median_f32(a))
  with jax.enable_x64(True):
    a64 = np.array([5e-324, 1e-310, 1e308, np.inf, 2.0, 2.0, 0.0, 7.5])
    assert np.float64(medians([jnp.asarray(a64)])[0]).view(np.uint64) == np.median(a64).view(
      np.uint64
    )


def test_large_arrays_and_mixed_paths():
  """Default threshold: large arrays counted in place, small ones buffered."""
  rng = np.random.default_rng(4)
  arrays = [
    np.abs(rng.normal(size=(300, 256))).astype(np.float32),  # in place
    np.abs(rng.standard_cauchy(size=(257, 256))).astype(np.float32),  # odd size
    np.abs(rng.normal(size=(33, 7))).astype(np.float32),  # buffered
    (rng.integers(0, 2, size=(512, 130)) * 1.5).astype(np.float32),
  ]  # ties
  assert arrays[0].size >= _median._SMALL > arrays[2].size
  for a, m in zip(arrays, medians(arrays)):
    assert_bits_equal(m, np.median(a))


def test_negative_zero_counts_as_zero():
  a = np.array([-0.0, -0.0, 0.0, 1.0, 2.0], np.float32)
  assert float(medians([a])[0]) == 0.0


def test_no_arrays():
  assert medians_of_magnitudes([], None) == []


# ---------------------------------------------------------------------------
# Sharded: shard_map over 8 simulated CPU devices (tests/conftest.py).
# ---------------------------------------------------------------------------

needs_8 = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 simulated devices")


@needs_8
def test_shard_map_medians_are_of_the_whole_array(path):
  mesh = Mesh(np.array(jax.devices()[:8]), ("d",))
  rng = np.random.default_rng(5)
  # Each shard (a block of rows) has its own scale: per-shard medians differ.
  scale = np.geomspace(1.0, 100.0, 8).repeat(4)[:, None]
  arrays = [
    (np.abs(rng.normal(size=(32, 9))) * scale).astype(np.float32),
    (np.abs(rng.normal(size=(32, 4))) * scale).astype(np.float32),
    (rng.integers(0, 3, size=(32, 5)) * scale).astype(np.float32),
  ]

  def run(axis_name):
    def f(*a):
      return jnp.stack(medians_of_magnitudes(a, axis_name))[None]

    spec = (P("d"),) * len(arrays)
    return np.asarray(
      jax.jit(jax.shard_map(f, mesh=mesh, in_specs=spec, out_specs=P("d")))(*arrays)
    )

  whole = run("d")
  for k, a in enumerate(arrays):
    for dev in range(8):
      assert_bits_equal(whole[dev, k], np.median(a))
  local = run(None)  # without axis_name: each device's median of its own shard
  for k, a in enumerate(arrays):
    for dev in range(8):
      assert_bits_equal(local[dev, k], np.median(a[4 * dev : 4 * dev + 4]))
  assert not np.allclose(local[:, 0], whole[:, 0])


@needs_8
def test_shard_map_nonzero_medians_count_every_shards_zeros(path):
  mesh = Mesh(np.array(jax.devices()[:8]), ("d",))
  rng = np.random.default_rng(7)
  # Zeros unevenly spread: all of shard 0, none of shard 7.
  a = np.abs(rng.normal(size=(32, 6))).astype(np.float32)
  a[np.arange(32)[:, None] < 4 * (8 - np.arange(6)[None, :] % 8)] *= 0
  a[rng.random(a.shape) < 0.3] = 0
  arrays = [a, np.zeros((32, 2), np.float32)]

  def f(*x):
    return jnp.stack(medians_of_magnitudes(x, "d", nonzero=True))[None]

  spec = (P("d"),) * len(arrays)
  got = np.asarray(jax.jit(jax.shard_map(f, mesh=mesh, in_specs=spec, out_specs=P("d")))(*arrays))
  for k, x in enumerate(arrays):
    for dev in range(8):
      assert_bits_equal(got[dev, k], np_nonzero_median_f32(x))


@needs_8
def test_shard_map_jvp_is_of_the_whole_array():
  mesh = Mesh(np.array(jax.devices()[:8]), ("d",))
  rng = np.random.default_rng(6)
  x = np.abs(rng.normal(size=(16, 3))).astype(np.float32)
  t = rng.normal(size=(16, 3)).astype(np.float32)

  def f(x, t):
    out, dout = jax.jvp(lambda v: medians_of_magnitudes([v], "d")[0], (x,), (t,))
    return out[None], dout[None]

  out, dout = jax.jit(
    jax.shard_map(f, mesh=mesh, in_specs=(P("d"), P("d")), out_specs=(P("d"), P("d")))
  )(x, t)
  want, dwant = jax.jvp(jnp.median, (jnp.asarray(x),), (jnp.asarray(t),))
  np.testing.assert_array_equal(np.asarray(out), np.full(8, want))
  np.testing.assert_allclose(np.asarray(dout), np.full(8, dwant), rtol=1e-6)


# ---------------------------------------------------------------------------
# Gradients: those of jnp.median.
# ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(7,), (8,), (5, 6), (9, 3), (1,)])
def test_gradient_equals_jnp_median_gradient(shape, path):
  rng = np.random.default_rng(sum(shape))
  x = jnp.asarray(np.abs(rng.normal(size=shape)).astype(np.float32))
  y = jnp.asarray(np.abs(rng.normal(size=(4, 5))).astype(np.float32))

  def ours(x, y):
    mx, my = medians_of_magnitudes([x, y], None)
    return 3.0 * mx - 2.0 * my

  def ref(x, y):
    return 3.0 * jnp.median(x) - 2.0 * jnp.median(y)

  got = jax.jit(jax.grad(ours, argnums=(0, 1)))(x, y)
  want = jax.grad(ref, argnums=(0, 1))(x, y)
  for g, w in zip(got, want):
    np.testing.assert_array_equal(np.asarray(g), np.asarray(w))
  # Finite differences in both modes (no ties: the median is locally linear).
  check_grads(ours, (x, y), order=1, modes=("fwd", "rev"), eps=1e-3)


@pytest.mark.parametrize("values", [[0.0, 3.0, 0.0, 1.0, 2.0], [0.0, 4.0, 1.0, 0.0], [0.0, 0.0]])
def test_nonzero_median_gradient_is_jnp_median_of_the_nonzero_entries(values, path):
  x = jnp.asarray(values, jnp.float32)
  keep = np.flatnonzero(np.asarray(values))
  got = jax.jit(jax.grad(lambda v: medians_of_magnitudes([v], nonzero=True)[0]))(x)
  want = np.zeros(x.shape, np.float32)
  if keep.size:
    want[keep] = jax.grad(jnp.median)(x[keep])
  np.testing.assert_array_equal(np.asarray(got), want)


@pytest.mark.slow
def test_gradient_with_ties_is_the_mean_over_tied_entries():
  # Odd size: the middle value 2.0 is held by three entries.
  x = jnp.asarray([2.0, 1.0, 2.0, 5.0, 2.0], jnp.float32)
  g = jax.grad(lambda v: medians_of_magnitudes([v])[0])(x)
  np.testing.assert_allclose(g, [1 / 3, 0, 1 / 3, 0, 1 / 3])
  # Even size, lower middle 1.0 (twice), upper middle 3.0 (once).
  x = jnp.asarray([1.0, 3.0, 1.0, 9.0, 0.5, 4.0], jnp.float32)
  g = jax.grad(lambda v: medians_of_magnitudes([v])[0])(x)
  np.testing.assert_allclose(g, [0.25, 0.5, 0.25, 0, 0, 0])
  # jnp.median gives the whole weight to one tied entry; the sums agree.
  assert float(jnp.sum(g)) == pytest.approx(float(jnp.sum(jax.grad(jnp.median)(x))))


@pytest.mark.slow
def test_gradient_of_low_precision_input_and_second_order():
  x = jnp.asarray([0.5, 2.0, 1.0], jnp.bfloat16)
  g = jax.grad(lambda v: medians_of_magnitudes([v])[0])(x)
  assert g.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(g, np.float32), [0, 0, 1])
  # The median is piecewise linear: its second derivative is 0.
  xf = jnp.asarray([0.5, 2.0, 1.0, 4.0], jnp.float32)
  h = jax.hessian(lambda v: medians_of_magnitudes([v])[0])(xf)
  np.testing.assert_array_equal(np.asarray(h), np.zeros((4, 4)))


@pytest.mark.parametrize("nonzero", [False, True])
def test_signed_arrays_give_medians_and_gradients_of_their_magnitudes(nonzero, path):
  """Callers pass w itself (no stored |w|): median and gradient of |w|'s."""
  rng = np.random.default_rng(8)
  x = rng.normal(size=(7, 5)).astype(np.float32)
  x[0, :3] = 0.0
  x[1, 0] = -0.0
  keep = np.abs(x) != 0 if nonzero else np.ones(x.shape, bool)
  got = medians([x], nonzero=nonzero)[0]
  assert_bits_equal(got, np.median(np.abs(x[keep])))
  grad = jax.jit(jax.grad(lambda v: medians_of_magnitudes([v], nonzero=nonzero)[0]))(x)
  want = np.zeros(x.shape, np.float32)
  want[keep] = jax.grad(lambda v: jnp.median(jnp.abs(v)))(jnp.asarray(x[keep]))
  np.testing.assert_array_equal(np.asarray(grad), want)


def test_thresholds_are_the_target_platforms_chosen_at_lowering():
  """A TPU (or GPU) lowering gets 15 thresholds a pass, a CPU lowering 5, from any host.

  The choice is made at lowering (``lax.platform_dependent``), so exporting
  for TPU from this CPU process gives the accelerator variant: each pass
  compares every counted array with T thresholds (one ``LE`` compare each).
  """
  import re

  rng = np.random.default_rng(5)
  arrays = [
    jnp.asarray(rng.normal(size=(300, 300)), jnp.float32),  # counted in place
    jnp.asarray(rng.normal(size=(5, 5)), jnp.float32),  # in the small-array buffer
  ]
  f = jax.jit(medians)

  def le_compares(platform):
    text = jax.export.export(f, platforms=[platform])(arrays).mlir_module()
    return len(re.findall(r"stablehlo.compare\s+LE", text))

  by_platform = _median._thresholds_by_platform()
  assert (by_platform["cpu"], by_platform["default"]) == (5, 15)
  assert le_compares("cpu") == 2 * 5
  assert le_compares("tpu") == le_compares("cuda") == 2 * 15
  # The CPU executable keeps only its own branch: no run-time conditional.
  assert "conditional(" not in f.lower(arrays).compile().as_text()
  for a, m in zip(arrays, f(arrays)):
    assert_bits_equal(m, np_median_f32(np.abs(np.asarray(a))))
