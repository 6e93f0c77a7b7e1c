"""discard_small_loss against exact small cases (curvature paper §3.1, Figures 9-10)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import legw


def reference(losses, fraction, mask=None):
  """NumPy: sort the valid losses, drop floor(p * n) (at most n - 1), average."""
  losses = np.asarray(losses, np.float64).reshape(-1)
  valid = np.ones(losses.shape, bool) if mask is None else np.asarray(mask, bool).reshape(-1)
  kept = np.sort(losses[valid])
  n = len(kept)
  if n == 0:
    return 0.0
  k = min(int(np.floor(fraction * n + 1e-3)), n - 1)
  return kept[k:].mean()


def test_paper_setting_drops_30_percent():
  losses = jnp.arange(1.0, 11.0)  # 1 .. 10
  # 30% of 10 = 3 dropped (1, 2, 3): mean of 4 .. 10 = 7.
  assert float(legw.discard_small_loss(losses, 0.3)) == pytest.approx(7.0)
  shuffled = jnp.array([7.0, 2.0, 10.0, 1.0, 5.0, 9.0, 3.0, 8.0, 4.0, 6.0])
  assert float(legw.discard_small_loss(shuffled, 0.3)) == pytest.approx(7.0)


def test_fraction_zero_is_the_mean():
  losses = jnp.array([0.5, 3.0, 1.25, 2.0])
  assert float(legw.discard_small_loss(losses, 0.0)) == pytest.approx(1.6875)
  assert float(legw.discard_small_loss(losses, 0.0)) == pytest.approx(float(losses.mean()))


@pytest.mark.parametrize("fraction", [0.76, 0.99, 0.999999, 1.0])
def test_fraction_near_one_keeps_the_largest(fraction):
  losses = jnp.array([0.5, 3.0, 1.25, 2.0])
  assert float(legw.discard_small_loss(losses, fraction)) == pytest.approx(3.0)


def test_rounds_down_and_rounding_slack():
  losses = jnp.arange(1.0, 11.0)
  # 0.25 * 10 = 2.5 -> 2 dropped; 0.29 * 100 = 28.999... in float32 -> 29.
  assert float(legw.discard_small_loss(losses, 0.25)) == pytest.approx(np.mean(np.arange(3, 11)))
  hundred = jnp.arange(100.0)
  assert float(legw.discard_small_loss(hundred, 0.29)) == pytest.approx(np.mean(np.arange(29, 100)))
  assert float(legw.discard_small_loss(hundred, 0.7)) == pytest.approx(np.mean(np.arange(70, 100)))


def test_ties_same_value_and_gradient_to_lower_index_dropped_first():
  losses = jnp.array([2.0, 1.0, 1.0, 1.0, 3.0])
  # 40% of 5 = 2 dropped: two of the three 1.0s; mean of (2, 1, 3) = 2.
  f = lambda l: legw.discard_small_loss(l, 0.4)
  assert float(f(losses)) == pytest.approx(2.0)
  g = np.asarray(jax.grad(f)(losses))
  # Among the tied 1.0s, indices 1 and 2 are dropped, index 3 kept.
  np.testing.assert_allclose(g, [1 / 3, 0.0, 0.0, 1 / 3, 1 / 3], rtol=1e-6)
  all_equal = jnp.full((8,), 0.75)
  assert float(legw.discard_small_loss(all_equal, 0.5)) == pytest.approx(0.75)
  np.testing.assert_allclose(
    np.asarray(jax.grad(lambda l: legw.discard_small_loss(l, 0.5))(all_equal)),
    [0, 0, 0, 0, 0.25, 0.25, 0.25, 0.25],
  )


def test_mask_for_padded_batches():
  losses = jnp.array([1.0, 2.0, 3.0, 100.0, -5.0])
  mask = jnp.array([True, True, True, False, False])
  # Valid: 1, 2, 3; 50% of 3 = 1 dropped; mean(2, 3) = 2.5. Padding is ignored
  # whether its loss is large (100) or small (-5).
  assert float(legw.discard_small_loss(losses, 0.5, mask=mask)) == pytest.approx(2.5)
  assert float(legw.discard_small_loss(losses, 0.0, mask=mask)) == pytest.approx(2.0)
  g = np.asarray(jax.grad(lambda l: legw.discard_small_loss(l, 0.5, mask=mask))(losses))
  np.testing.assert_allclose(g, [0, 0.5, 0.5, 0, 0])
  # No valid sample: 0, and a zero gradient.
  none = jnp.zeros(5, bool)
  assert float(legw.discard_small_loss(losses, 0.3, mask=none)) == 0.0
  # One valid sample is always kept.
  one = jnp.array([False, False, True, False, False])
  assert float(legw.discard_small_loss(losses, 0.9, mask=one)) == pytest.approx(3.0)


def test_mask_broadcasts_and_2d_losses():
  losses = jnp.array([[1.0, 4.0], [2.0, 8.0]])
  row_mask = jnp.array([[True], [False]])  # keep row 0 only
  assert float(legw.discard_small_loss(losses, 0.5, mask=row_mask)) == pytest.approx(4.0)
  assert float(legw.discard_small_loss(losses, 0.5)) == pytest.approx(6.0)


def test_nan_is_kept_and_propagates():
  losses = jnp.array([1.0, jnp.nan, 3.0, 4.0])
  assert np.isnan(float(legw.discard_small_loss(losses, 0.5)))


def test_jit_with_traced_fraction_compiles_once():
  traces = []

  @jax.jit
  def f(losses, fraction):
    traces.append(1)
    return legw.discard_small_loss(losses, fraction)

  losses = jnp.arange(1.0, 11.0)
  frac = legw.discard_small_loss_schedule(0.3, num_epochs=1, steps_per_epoch=10)
  assert float(f(losses, frac(0))) == pytest.approx(7.0)  # in the first epoch: 30%
  assert float(f(losses, frac(10))) == pytest.approx(5.5)  # after it: the plain mean
  assert float(f(losses, jnp.float32(0.5))) == pytest.approx(8.0)
  assert len(traces) == 1


def test_dtypes():
  losses = jnp.arange(1.0, 11.0, dtype=jnp.bfloat16)
  out = legw.discard_small_loss(losses, 0.3)
  assert out.dtype == jnp.float32
  assert float(out) == pytest.approx(7.0)


def test_bad_input():
  with pytest.raises(ValueError, match="fraction"):
    legw.discard_small_loss(jnp.ones(3), 1.5)
  with pytest.raises(ValueError, match="fraction"):
    legw.discard_small_loss(jnp.ones(3), -0.1)
  with pytest.raises(TypeError, match="floating"):
    legw.discard_small_loss(jnp.ones(3, jnp.int32), 0.3)


def test_discard_schedule_paper_setting():
  frac = legw.discard_small_loss_schedule(0.3, num_epochs=100, steps_per_epoch=25)
  assert float(frac(0)) == pytest.approx(0.3)
  assert float(frac(2499)) == pytest.approx(0.3)
  assert float(frac(2500)) == 0.0
  np.testing.assert_allclose(
    np.asarray(jax.jit(frac)(jnp.array([0, 2499, 2500, 9999]))), [0.3, 0.3, 0.0, 0.0], rtol=1e-6
  )
  with pytest.raises(ValueError, match="fraction"):
    legw.discard_small_loss_schedule(2.0, steps_per_epoch=10)
  with pytest.raises(ValueError, match="steps_per_epoch"):
    legw.discard_small_loss_schedule(0.3, steps_per_epoch=0)


_jitted = jax.jit(legw.discard_small_loss)
_SIZE = 40


@settings(max_examples=60, deadline=None)
@given(
  st.lists(st.floats(-100, 100, width=32), min_size=1, max_size=_SIZE),
  st.sampled_from([0.0, 0.1, 0.25, 0.3, 0.5, 0.9, 1.0]),
  st.integers(0, 2**_SIZE - 1),
)
def test_matches_numpy_reference(values, fraction, mask_bits):
  # Padded to one shape (the padding masked out), so one compilation serves all.
  n = len(values)
  losses = np.zeros(_SIZE, np.float32)
  losses[:n] = values
  in_range = np.arange(_SIZE) < n
  mask = in_range & np.array([(mask_bits >> i) & 1 for i in range(_SIZE)], bool)
  frac = jnp.float32(fraction)
  got = float(_jitted(jnp.asarray(losses), frac, mask=jnp.asarray(mask)))
  assert got == pytest.approx(reference(losses, fraction, mask), rel=1e-5, abs=1e-4)
  got_all = float(_jitted(jnp.asarray(losses), frac, mask=jnp.asarray(in_range)))
  assert got_all == pytest.approx(reference(losses[:n], fraction), rel=1e-5, abs=1e-4)
  # Never below the plain mean: the dropped losses are the smallest.
  assert got_all >= float(np.mean(losses[:n].astype(np.float64))) - 1e-4
