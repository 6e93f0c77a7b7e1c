"""The measured-scaling protocol is fixed data, consistent with the committed recipe."""

import math

import legw
from benchmarks.batch_scaling.tasks import get_task
from benchmarks.measured_scaling import protocol as p


def test_base_recipe_is_the_committed_one():
  base = get_task(p.TASK).baselines[p.DATASET]
  assert base.base_batch_size == p.BASE_BATCH and base.num_epochs == p.BASE_EPOCHS
  assert base.learning_rates["momentum"] == 0.1 and base.decay == "constant"
  assert base.base_warmup_epochs == 1 / 32
  assert p.BASE_STEPS == 11_700


def test_budget_is_the_noise_scale_rule_rounded_up():
  for b_noise in (500.0, 1498.2, 2500.0):
    for batch in (2048, 8192):
      exact = legw.scale_num_epochs(p.BASE_EPOCHS, p.BASE_BATCH, batch, noise_scale=b_noise)
      assert p.budget_epochs(batch, b_noise) == math.ceil(exact)
  assert p.budget_epochs(p.BASE_BATCH, 1000.0) == p.BASE_EPOCHS


def test_lars_grid_is_six_lrs_a_factor_two_apart_spanning_the_momentum_grids_rates():
  grid = p.LARS_GRID
  assert len(grid) == 6 and all(b == 2 * a for a, b in zip(grid, grid[1:]))
  low, high = p.LARS_MEDIAN_TRUST_RATIO_AT_INIT
  mid = (low + high) / 2
  # the median per-layer rate at init, at the grid's ends, within a factor sqrt(2) of
  # the momentum grid's 0.025 and 0.8 (the nearest a factor-2 grid can come)
  assert 0.025 / math.sqrt(2) <= grid[0] * mid <= 0.025 * math.sqrt(2)
  assert 0.8 / math.sqrt(2) <= grid[-1] * mid <= 0.8 * math.sqrt(2)


def test_verdicts_are_stated_against_the_committed_rows():
  assert p.CARRIES_IF_EVERY_SEED_AT_LEAST == round(p.BASE_MEAN - 0.01, 3)
  assert p.BEATS_TUNING_IF_MEAN_AT_LEAST == p.TUNED_ADAM_MEAN
  assert p.PREDICTS_IF_STEPS_WITHIN_FACTOR == 1.5
  assert set(p.ADASCALE_BATCHES) == {2048, 8192} and p.SEEDS == (0, 1, 2)
