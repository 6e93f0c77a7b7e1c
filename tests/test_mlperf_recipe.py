"""The MLPerf v0.7 JAX ResNet-50 LARS recipe as a reference for legw's schedules.

Google's MLPerf Training v0.7 submission (repository mlcommons/training_results_v0.7,
file Google/benchmarks/resnet/implementations/resnet-research-JAX-tpu-v3-8192/train.py)
hand-tunes its LARS schedule per batch-size bracket. The formula below is written
here, independently of legw, from a reading of that file:

- ``polynomial_learning_rate_fn`` (lines 267-295): peak LR and warmup epochs by
  bracket, linear warmup from 0, then poly power 2 from the peak to 1e-4 over
  ``train_steps - warmup_steps + 1`` steps;
- ``main`` (lines 466-494): training epochs, momentum and weight decay by bracket,
  and steps per epoch ``ceil(4 * 1281167 / batch) / 4`` (rounded up to whole 4-epoch
  loops; ``epochs_per_loop`` defaults to 4, line 113): a fractional number of steps.

legw reproduces it exactly (to float32 rounding) by counting quarter steps; the
plain mapping (whole steps per epoch, MLPerf's epochs) does not, and the tests show
by how much. docs/guides/mlperf_resnet50.md explains both and carries the table
that :func:`test_guide_table_is_what_legw_computes` checks.
"""

import dataclasses
import math
import pathlib

import numpy as np
import pytest

import legw

ROOT = pathlib.Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "guides" / "mlperf_resnet50.md"

TRAIN_IMAGES = 1_281_167  # mlperf_input_pipeline.py, TRAIN_IMAGES
EPOCHS_PER_LOOP = 4  # train.py, flag epochs_per_loop
END_LR = 1e-4  # train.py, polynomial_learning_rate_fn: end_lr
F32_EPS = float(np.finfo(np.float32).eps)


@dataclasses.dataclass(frozen=True)
class Bracket:
  """One batch-size bracket of train.py (the first whose ``below`` exceeds the batch)."""

  below: float  # the bracket holds batch sizes < below
  peak_lr: float  # polynomial_learning_rate_fn: base_lr
  warmup_epochs: int  # polynomial_learning_rate_fn: warmup_epochs
  num_epochs: int  # main: num_epochs
  momentum: float  # main: beta
  weight_decay: float  # main: weight_decay


# As read from train.py, lines 267-280 (LR, warmup) and 466-494 (epochs, momentum, decay).
BRACKETS = (
  Bracket(16384, 10.0, 5, 56, 0.9, 2e-4),
  Bracket(32768, 25.0, 5, 56, 0.9, 2e-4),
  Bracket(65536, 29.0, 18, 64, 0.929, 1e-4),
  Bracket(math.inf, 23.080977304670448, 33, 92, 0.9537213777059405, 1e-4),
)


def bracket(batch_size: int) -> Bracket:
  return next(b for b in BRACKETS if batch_size < b.below)


def mlperf_steps_per_epoch(batch_size: int) -> float:
  """train.py, main, lines 475-479: steps per epoch, rounded up to whole loops."""
  steps_per_epoch = TRAIN_IMAGES / batch_size
  steps_per_loop = int(math.ceil(steps_per_epoch * EPOCHS_PER_LOOP))
  return steps_per_epoch * (steps_per_loop / (steps_per_epoch * EPOCHS_PER_LOOP))


def mlperf_learning_rate(step, batch_size: int) -> np.ndarray:
  """MLPerf's LR at optimizer step ``step`` (from 0), in float64.

  Follows train.py, polynomial_learning_rate_fn (lines 267-295); own code.
  """
  b = bracket(batch_size)
  spe = mlperf_steps_per_epoch(batch_size)
  warmup_steps = b.warmup_epochs * spe  # a float: not rounded
  train_steps = b.num_epochs * spe
  decay_steps = train_steps - warmup_steps + 1  # note the + 1
  t = np.asarray(step, np.float64)
  warmup = b.peak_lr * t / warmup_steps
  s = np.minimum(t - warmup_steps, decay_steps)  # poly counted from the end of warmup
  poly = END_LR + (b.peak_lr - END_LR) * (1.0 - s / decay_steps) ** 2
  return np.where(t <= warmup_steps, warmup, poly)


def run_steps(batch_size: int) -> np.ndarray:
  """Every step the training loop of train.py can take (lines 477, 677: whole loops)."""
  b = bracket(batch_size)
  steps_per_loop = math.ceil(TRAIN_IMAGES / batch_size * EPOCHS_PER_LOOP)
  loops = math.ceil(b.num_epochs / EPOCHS_PER_LOOP) + 2
  return np.arange(loops * steps_per_loop, dtype=np.int32)


# --- legw's expression of it -------------------------------------------------------------


def legw_mlperf_schedule(batch_size: int, *, via: str = "recipe"):
  """MLPerf's schedule from legw, exact: legw counts quarter steps.

  MLPerf's epoch is ``q / 4`` steps (q = steps per 4-epoch loop), so its warmup and
  training lengths are multiples of a quarter step. A legw schedule with ``q``
  "steps" per epoch, evaluated at ``4 * step``, has them exactly; ``num_epochs``
  gets ``4 / q`` more (one MLPerf step) for the ``+ 1`` of MLPerf's decay length.
  """
  b = bracket(batch_size)
  q = math.ceil(EPOCHS_PER_LOOP * TRAIN_IMAGES / batch_size)
  common = dict(
    base_batch_size=batch_size,
    base_learning_rate=b.peak_lr,
    base_warmup_epochs=b.warmup_epochs,
    num_epochs=b.num_epochs + 4 / q,
    end_value=END_LR,
  )
  if via == "recipe":
    quarter = legw.Recipe(**common).schedule(batch_size, steps_per_epoch=q)
  else:
    quarter = legw.legw_schedule(
      **common, batch_size=batch_size, steps_per_epoch=q, decay="poly", power=2.0
    )
  return lambda step: quarter(4 * np.asarray(step, np.int32))


def legw_whole_step_schedule(batch_size: int, steps_per_epoch: int):
  """The plain mapping: whole steps per epoch and MLPerf's epochs (no ``+ 1``)."""
  b = bracket(batch_size)
  recipe = legw.Recipe(
    base_batch_size=batch_size,
    base_learning_rate=b.peak_lr,
    base_warmup_epochs=b.warmup_epochs,
    num_epochs=b.num_epochs,
    end_value=END_LR,
  )
  return recipe.schedule(batch_size, steps_per_epoch=steps_per_epoch)


def _float32_tolerance(batch_size: int) -> float:
  # optax's linear and polynomial schedules round at the scale of the peak: 2 ulps of it.
  return 2 * F32_EPS * bracket(batch_size).peak_lr


# --- the reading itself --------------------------------------------------------------------


def test_brackets_as_read():
  assert [bracket(b).peak_lr for b in (4096, 16384, 32768, 65536)] == [
    10.0,
    25.0,
    29.0,
    23.080977304670448,
  ]
  assert bracket(16383) is BRACKETS[0] and bracket(16384) is BRACKETS[1]
  assert [bracket(b).warmup_epochs for b in (8192, 16384, 32768, 65536)] == [5, 5, 18, 33]


def test_reading_matches_the_submission_log():
  """result_0.txt of tpu-v3-8192-JAX logs, at batch 65536, lars_opt_learning_rate_decay_steps
  1166.25 (and warmup 33 epochs, end LR 1e-4, poly power 2): the + 1 and the
  fractional steps per epoch are in the submitted run."""
  spe = mlperf_steps_per_epoch(65536)
  assert spe == pytest.approx(19.75, abs=1e-12)
  assert 92 * spe - 33 * spe + 1 == pytest.approx(1166.25, abs=1e-9)


def test_steps_per_epoch_is_whole_only_at_some_batch_sizes():
  spe = {b: mlperf_steps_per_epoch(b) for b in (4096, 8192, 16384, 32768, 65536)}
  assert spe == pytest.approx({4096: 313, 8192: 156.5, 16384: 78.25, 32768: 39.25, 65536: 19.75})
  # The warmup is a fractional number of steps at the submission's own batch size:
  assert 33 * spe[65536] == pytest.approx(651.75)
  assert 18 * spe[32768] == pytest.approx(706.5)


# --- legw reproduces it --------------------------------------------------------------------


@pytest.mark.parametrize(
  "batch_size, via",
  [(4096, "recipe"), (65536, "recipe"), (32768, "legw_schedule"), (16384, "legw_schedule")],
)
def test_legw_reproduces_mlperf_at_every_step(batch_size, via):
  steps = run_steps(batch_size)
  want = mlperf_learning_rate(steps, batch_size)
  got = np.asarray(legw_mlperf_schedule(batch_size, via=via)(steps))
  assert got.dtype == np.float32
  np.testing.assert_allclose(got, want, rtol=0, atol=_float32_tolerance(batch_size))
  # The landmarks are in the range compared: warmup end, peak, last step, end LR.
  spe = mlperf_steps_per_epoch(batch_size)
  b = bracket(batch_size)
  last = int(round(b.num_epochs * spe)) - 1
  assert steps[-1] > last + 1
  assert float(want.max()) == pytest.approx(b.peak_lr, rel=1e-3)
  assert got[last + 2 :] == pytest.approx(END_LR, rel=1e-6)


def test_whole_steps_reproduce_mlperf_where_an_epoch_is_whole_steps():
  """At 4096 an MLPerf epoch is 313 steps: no quarter steps needed, only the + 1."""
  spe = 313
  b = bracket(4096)
  quarterless = legw.Recipe(
    base_batch_size=4096,
    base_learning_rate=b.peak_lr,
    base_warmup_epochs=b.warmup_epochs,
    num_epochs=b.num_epochs + 1 / spe,
    end_value=END_LR,
  ).schedule(4096, steps_per_epoch=spe)
  steps = run_steps(4096)
  np.testing.assert_allclose(
    np.asarray(quarterless(steps)),
    mlperf_learning_rate(steps, 4096),
    rtol=0,
    atol=_float32_tolerance(4096),
  )


def test_guide_function_is_the_tested_one():
  """The guide's mlperf_schedule gives the same values as this file's."""
  text = GUIDE.read_text()
  assert "def mlperf_schedule(" in text
  assert "num_epochs=num_epochs + 4 / q" in text
  assert "quarter(4 * step)" in text


# --- ... and the plain mapping does not ----------------------------------------------------


def test_without_the_plus_one_the_decay_ends_one_step_early():
  """4096, whole steps per epoch (313), num_epochs=56: same warmup, a decay one step
  shorter; the difference is far above float32 rounding near the end of training."""
  steps = run_steps(4096)
  want = mlperf_learning_rate(steps, 4096)
  got = np.asarray(legw_whole_step_schedule(4096, 313)(steps), np.float64)
  warmup_end = 5 * 313
  np.testing.assert_allclose(got[: warmup_end + 1], want[: warmup_end + 1], atol=2e-5)
  last = 56 * 313 - 1
  # At the last step legw's decay has 1 step of 15963 left, MLPerf's 2 of 15964:
  assert got[last] == pytest.approx(END_LR + (10.0 - END_LR) * (1 / 15963) ** 2, rel=1e-6)
  assert want[last] == pytest.approx(END_LR + (10.0 - END_LR) * (2 / 15964) ** 2, rel=1e-9)
  decay = slice(warmup_end + 1, last + 1)
  rel = np.abs(got[decay] - want[decay]) / want[decay]
  assert rel.max() > 0.01  # >> float32's 1.2e-7


def test_rounded_steps_per_epoch_move_the_warmup_and_the_end():
  """65536 with legw's own steps per epoch (dataset // batch = 19, not 19.75): the warmup
  ends at step 627, not 651.75; training at 1748, not 1817."""
  scaled = legw.Recipe(
    base_batch_size=65536,
    base_learning_rate=bracket(65536).peak_lr,
    base_warmup_epochs=33,
    num_epochs=92,
    end_value=END_LR,
  ).at(65536, dataset_size=TRAIN_IMAGES)
  assert (scaled.steps_per_epoch, scaled.warmup_steps, scaled.total_steps) == (19, 627, 1748)
  steps = run_steps(65536)
  want = mlperf_learning_rate(steps, 65536)
  got = np.asarray(scaled.schedule()(steps), np.float64)
  gap = np.abs(got - want)
  assert gap.max() > 1.0  # LR units; the peak is 23.08
  # Rounding 19.75 up to 20 misses too (warmup 660 steps, training 1840).
  up = np.asarray(legw_whole_step_schedule(65536, 20)(steps), np.float64)
  assert np.abs(up - want).max() > 0.3


# --- the table of the guide ----------------------------------------------------------------

BASE_BATCH = 8192  # the smallest bracket's batch size in the table (see the guide)
TABLE_BATCHES = (8192, 16384, 32768, 65536)


def _fmt(x: float) -> str:
  return f"{x:.4g}"


def legw_table_rows() -> list[list[str]]:
  """What legw.Recipe carries from the smallest bracket, beside MLPerf's values."""
  b0 = bracket(BASE_BATCH)
  legw_rules = legw.Recipe(
    base_batch_size=BASE_BATCH,
    base_learning_rate=b0.peak_lr,
    base_warmup_epochs=b0.warmup_epochs,
    num_epochs=b0.num_epochs,
    end_value=END_LR,
  )
  linear_rules = dataclasses.replace(legw_rules, lr_scaling="linear", warmup_scaling="none")
  rows = []
  for batch in TABLE_BATCHES:
    b = bracket(batch)
    # Recipe keeps one num_epochs; each row uses its bracket's (peak and warmup epochs
    # do not depend on it).
    at = [
      dataclasses.replace(r, num_epochs=b.num_epochs).at(batch, dataset_size=TRAIN_IMAGES)
      for r in (legw_rules, linear_rules)
    ]
    rows.append(
      [
        str(batch),
        f"{batch // BASE_BATCH}",
        str(b.num_epochs),
        _fmt(b.peak_lr),
        _fmt(b.warmup_epochs),
        _fmt(at[0].peak_learning_rate),
        _fmt(at[0].warmup_epochs),
        _fmt(at[1].peak_learning_rate),
        _fmt(at[1].warmup_epochs),
      ]
    )
  return rows


def _guide_table() -> list[list[str]]:
  text = GUIDE.read_text()
  block = text.split("<!-- table: test_mlperf_recipe.py -->", 2)[1]
  lines = [ln for ln in block.strip().splitlines() if ln.startswith("|")]
  rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
  return [r for r in rows[2:] if r]  # past the header and its rule


def test_guide_table_is_what_legw_computes():
  assert _guide_table() == legw_table_rows()


def test_table_values():
  rows = {int(r[0]): r for r in legw_table_rows()}
  assert rows[65536][5:] == ["28.28", "40", "80", "5"]
  assert rows[32768][3:7] == ["29", "18", "20", "20"]
