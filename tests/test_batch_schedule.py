"""Batch-size schedules (curvature paper §3.2, Method 2) with LEGW learning rates."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import legw


def test_phases_steps_and_epochs():
  bs = legw.batch_size_schedule([(1, 512), (2.5, 8192), (0.5, 512)], dataset_size=50_000)
  p0, p1, p2 = bs.phases
  assert (p0.batch_size, p0.steps_per_epoch, p0.num_steps, p0.first_step) == (512, 97, 97, 0)
  assert (p1.batch_size, p1.steps_per_epoch, p1.num_steps, p1.first_step) == (8192, 6, 15, 97)
  assert (p2.first_step, p2.num_steps, p2.first_epoch) == (112, 48, 3.5)
  assert bs.total_steps == 160 and bs.num_epochs == 4.0
  assert bs.batch_sizes == (512, 8192)
  assert bs.batch_size_at(0) == bs.batch_size_at(96) == 512
  assert bs.batch_size_at(97) == bs.batch_size_at(111) == 8192
  assert bs.batch_size_at(112) == bs.batch_size_at(159) == 512
  assert bs.learning_rate is None
  with pytest.raises(ValueError, match="step"):
    bs.batch_size_at(160)
  with pytest.raises(ValueError, match="recipe"):
    bs.learning_rates()


def test_legw_learning_rate_per_phase():
  # Base recipe at batch 20: LR 1, warmup 0.1 epoch, constant after.
  recipe = legw.Recipe(
    base_batch_size=20,
    base_learning_rate=1.0,
    base_warmup_epochs=0.1,
    num_epochs=4,
    decay="constant",
  )
  bs = legw.batch_size_schedule([(1, 20), (3, 80)], dataset_size=800, recipe=recipe)
  lr = bs.learning_rates()
  assert lr.shape == (bs.total_steps,) == (70,)
  # Phase 0: batch 20, 40 steps/epoch, warmup 4 steps from 0 to 1.
  np.testing.assert_allclose(lr[:6], [0, 0.25, 0.5, 0.75, 1, 1])
  np.testing.assert_allclose(lr[6:40], 1.0)
  # Phase 1: batch 80 (k = 4): peak sqrt(4) = 2; its warmup (0.4 epochs) is over by epoch 1.
  np.testing.assert_allclose(lr[40:], 2.0)
  # The optax.Schedule works under jit on the global step.
  f = jax.jit(bs.learning_rate)
  assert float(f(3)) == pytest.approx(0.75) and float(f(40)) == pytest.approx(2.0)


def test_learning_rate_follows_the_epoch_position():
  # Poly decay over 4 epochs: at a phase boundary the LR is that batch's schedule at
  # the same epoch, so it matches a run at that batch size from the start.
  recipe = legw.Recipe(
    base_batch_size=20, base_learning_rate=1.0, base_warmup_epochs=0.1, num_epochs=4
  )
  bs = legw.batch_size_schedule([(1, 20), (3, 80)], dataset_size=800, recipe=recipe)
  full_80 = recipe.schedule(80, dataset_size=800)
  for t in (40, 41, 55, 69):
    assert float(bs.learning_rate(t)) == pytest.approx(float(full_80(t - 40 + 10)), rel=1e-6)
  full_20 = recipe.schedule(20, dataset_size=800)
  for t in (0, 2, 39):
    assert float(bs.learning_rate(t)) == pytest.approx(float(full_20(t)), rel=1e-6, abs=1e-7)


def test_papers_hand_picked_rates_with_a_callable():
  # Curvature paper §3.2: batch 512 and LR 0.005 in the first epoch, then 8192 and 0.05.
  bs = legw.batch_size_schedule(
    [(1, 512), (9, 8192)],
    dataset_size=50_000,
    recipe=lambda b, spe: optax.constant_schedule(0.005 if b == 512 else 0.05),
  )
  lr = bs.learning_rates()
  np.testing.assert_allclose(lr[:97], 0.005)
  np.testing.assert_allclose(lr[97:], 0.05)
  assert bs.total_steps == 97 + 9 * 6


def test_one_compilation_per_distinct_batch_size():
  recipe = legw.Recipe(
    base_batch_size=4, base_learning_rate=0.1, base_warmup_epochs=0.5, num_epochs=5, decay="poly"
  )
  bs = legw.batch_size_schedule([(1, 4), (2, 16), (1, 4), (1, 16)], dataset_size=64, recipe=recipe)
  traces = []
  tx = optax.sgd(1.0)

  @jax.jit
  def step(w, x, y, lr):
    traces.append(x.shape)
    g = jax.grad(lambda w: jnp.mean((x @ w - y) ** 2))(w)
    updates, _ = tx.update(g, tx.init(w), w)
    return w + lr * updates

  rng = np.random.default_rng(0)
  x_all = rng.normal(size=(64, 3)).astype(np.float32)
  y_all = x_all @ np.array([1.0, -2.0, 0.5], np.float32)
  w = jnp.zeros(3)
  lrs = bs.learning_rates()
  seen_batches = []
  for phase in bs.phases:
    for t in range(phase.first_step, phase.end_step):
      i = (t * phase.batch_size) % 64
      idx = np.arange(i, i + phase.batch_size) % 64
      w = step(w, x_all[idx], y_all[idx], lrs[t])
      seen_batches.append(phase.batch_size)
  assert len(seen_batches) == bs.total_steps == 16 + 8 + 16 + 4
  assert sorted(set(traces)) == [(4, 3), (16, 3)]
  assert len(traces) == len(bs.batch_sizes) == 2
  assert np.all(np.isfinite(np.asarray(w)))


@pytest.mark.parametrize(
  "phases, kwargs, error, match",
  [
    ([], {}, ValueError, "at least one"),
    ([(0, 16)], {}, ValueError, "num_epochs"),
    ([(1, 0)], {}, ValueError, "batch_size"),
    ([(1, 2.5)], {}, TypeError, "batch_size"),
    ([(1, 128)], {}, ValueError, "larger than"),
    ([(0.001, 16)], {}, ValueError, "0 steps"),
    ([(1, 16, 3)], {}, ValueError, "pair"),
    ([(1, 16)], {"dataset_size": 0}, ValueError, "dataset_size"),
    ([(1, 16), (1, 32)], {"recipe": "x"}, TypeError, "recipe"),
  ],
)
def test_bad_input(phases, kwargs, error, match):
  args = {"dataset_size": 100}
  args.update(kwargs)
  with pytest.raises(error, match=match):
    legw.batch_size_schedule(phases, **args)


def test_recipe_epochs_must_match():
  recipe = legw.Recipe(
    base_batch_size=4, base_learning_rate=0.1, base_warmup_epochs=0.5, num_epochs=10
  )
  with pytest.raises(ValueError, match="num_epochs=10"):
    legw.batch_size_schedule([(1, 4), (2, 16)], dataset_size=64, recipe=recipe)
