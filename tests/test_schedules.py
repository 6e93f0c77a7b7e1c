"""LEGW scaling rules, schedules and Recipe against the LEGW paper's Table 1 and Figure 2."""

import math

import jax
import numpy as np
import pytest

import legw
from legw import cli

IMAGENET = 1_281_167
# LEGW paper Table 1: (batch, log2 of the initial LR, warmup epochs); poly power 2, 90 epochs.
TABLE_1 = [
  (32768, 5.0, 10.0),
  (16384, 4.5, 5.0),
  (8192, 4.0, 2.5),
  (4096, 3.5, 1.25),
  (2048, 3.0, 0.625),
  (1024, 2.5, 0.3125),
]
BASE = dict(base_learning_rate=2**2.5, base_batch_size=1024, base_warmup_epochs=0.3125)


@pytest.mark.parametrize("batch, log2_lr, warmup", TABLE_1)
def test_scaling_rules_reproduce_table_1(batch, log2_lr, warmup):
  assert legw.scale_learning_rate(2**2.5, 1024, batch) == pytest.approx(2**log2_lr, rel=1e-12)
  assert legw.scale_warmup_epochs(0.3125, 1024, batch) == pytest.approx(warmup, rel=1e-12)


@pytest.mark.parametrize("batch, log2_lr, warmup", TABLE_1)
def test_schedule_reproduces_table_1(batch, log2_lr, warmup):
  spe = IMAGENET // batch
  s = legw.legw_schedule(**BASE, batch_size=batch, num_epochs=90, steps_per_epoch=spe)
  peak = 2**log2_lr
  w = round(warmup * spe)
  total = 90 * spe
  # End of warmup: the peak.
  assert float(s(w)) == pytest.approx(peak, rel=1e-6)
  # Mid-warmup: linear from 0.
  assert float(s(w // 2)) == pytest.approx(peak * (w // 2) / w, rel=1e-6)
  assert float(s(0)) == 0.0
  # Mid-decay: poly power 2 over the remaining steps.
  mid = w + (total - w) // 2
  want = peak * (1 - (mid - w) / (total - w)) ** 2
  assert float(s(mid)) == pytest.approx(want, rel=1e-5)
  assert float(s(total)) == pytest.approx(0.0, abs=1e-6)


def test_table_1_through_the_recipe():
  r = legw.Recipe(**BASE, num_epochs=90)
  for batch, log2_lr, warmup in TABLE_1:
    s = r.at(batch, dataset_size=IMAGENET)
    assert s.peak_learning_rate == pytest.approx(2**log2_lr)
    assert s.warmup_epochs == pytest.approx(warmup)
    assert s.steps_per_epoch == IMAGENET // batch
    assert s.warmup_steps == round(warmup * (IMAGENET // batch))
    assert s.total_steps == 90 * (IMAGENET // batch)
  text = r.table([b for b, _, _ in TABLE_1], dataset_size=IMAGENET)
  assert "32768" in text and "5.00" in text and "10" in text


def test_scaling_down_from_32k_gives_the_1k_recipe():
  big = legw.Recipe(
    base_batch_size=32768, base_learning_rate=2**5.0, base_warmup_epochs=10.0, num_epochs=90
  )
  small = big.rebase(1024)
  assert small.base_learning_rate == pytest.approx(2**2.5)
  assert small.base_warmup_epochs == pytest.approx(0.3125)
  s1 = small.schedule(1024, dataset_size=IMAGENET)
  s2 = big.schedule(1024, dataset_size=IMAGENET)
  steps = np.arange(0, 90 * (IMAGENET // 1024), 997)
  np.testing.assert_allclose(np.asarray(s1(steps)), np.asarray(s2(steps)), rtol=1e-6)
  assert legw.scale_learning_rate(2**5.0, 32768, 1024) == pytest.approx(2**2.5)
  assert legw.scale_warmup_epochs(10.0, 32768, 1024) == pytest.approx(0.3125)


@pytest.mark.parametrize("batch", [1024, 2048, 32768])
def test_multistep_reproduces_figure_2_1(batch):
  spe = IMAGENET // batch
  s = legw.legw_schedule(
    **BASE,
    batch_size=batch,
    num_epochs=90,
    steps_per_epoch=spe,
    decay="multistep",
    boundary_epochs=(30, 60, 80),
    decay_rate=0.1,
  )
  peak = legw.scale_learning_rate(2**2.5, 1024, batch)
  w = round(legw.scale_warmup_epochs(0.3125, 1024, batch) * spe)
  for epoch, factor in [
    (w / spe, 1.0),
    (29.9, 1.0),
    (30, 0.1),
    (45, 0.1),
    (59.9, 0.1),
    (60, 0.01),
    (79.9, 0.01),
    (80, 0.001),
    (89.9, 0.001),
  ]:
    step = int(round(epoch * spe))
    assert float(s(step)) == pytest.approx(peak * factor, rel=1e-5), (epoch, factor)


def test_other_decays():
  kw = dict(
    base_learning_rate=1.0,
    base_batch_size=100,
    batch_size=400,
    base_warmup_epochs=0.5,
    num_epochs=10,
    steps_per_epoch=10,
  )
  # peak 2, warmup 2 epochs = 20 steps, 80 decay steps.
  cos = legw.legw_schedule(**kw, decay="cosine", end_value=0.2)
  assert float(cos(20)) == pytest.approx(2.0)
  assert float(cos(60)) == pytest.approx(0.2 + 1.8 * 0.5, rel=1e-5)
  assert float(cos(100)) == pytest.approx(0.2, rel=1e-5)
  const = legw.legw_schedule(**kw, decay="constant")
  assert float(const(20)) == float(const(99)) == pytest.approx(2.0)
  exp = legw.legw_schedule(**kw, decay="exponential", decay_rate=0.5, decay_epochs=1.0)
  assert float(exp(30)) == pytest.approx(1.0, rel=1e-5)
  assert float(exp(35)) == pytest.approx(2.0 * 0.5**1.5, rel=1e-5)
  stair = legw.legw_schedule(
    **kw, decay="exponential", decay_rate=0.5, staircase=True, decay_begin_epochs=5
  )
  assert float(stair(49)) == pytest.approx(2.0)
  assert float(stair(59)) == pytest.approx(2.0)
  assert float(stair(60)) == pytest.approx(1.0)
  assert float(stair(75)) == pytest.approx(0.5)
  poly = legw.legw_schedule(**kw, decay="poly", power=1.0, end_value=0.4)
  assert float(poly(60)) == pytest.approx(0.4 + 1.6 * 0.5, rel=1e-5)


def test_constant_warmup_scheme():
  s = legw.legw_schedule(
    **BASE, batch_size=8192, num_epochs=90, steps_per_epoch=156, warmup="constant"
  )
  w = round(2.5 * 156)
  assert float(s(0)) == float(s(w - 1)) == pytest.approx(2**2.5)
  assert float(s(w)) == pytest.approx(2**4.0)
  s2 = legw.legw_schedule(
    **BASE, batch_size=8192, num_epochs=90, steps_per_epoch=156, warmup="constant", warmup_value=0.1
  )
  assert float(s2(10)) == pytest.approx(0.1)


def test_baselines_linear_and_constant_epoch():
  s = legw.legw_schedule(
    **BASE,
    batch_size=8192,
    num_epochs=90,
    steps_per_epoch=156,
    lr_scaling="linear",
    warmup_scaling="none",
  )
  w = round(0.3125 * 156)
  assert float(s(w)) == pytest.approx(2**2.5 * 8)


def test_jit_with_traced_step():
  s = legw.legw_schedule(**BASE, batch_size=4096, num_epochs=90, steps_per_epoch=312)
  f = jax.jit(s)
  for step in (0, 100, 390, 5000, 28079):
    assert float(f(step)) == pytest.approx(float(s(step)), rel=1e-6, abs=1e-6)
  assert f(5).dtype == np.float32
  steps = np.arange(0, 28080, 7)
  np.testing.assert_allclose(
    np.asarray(jax.jit(jax.vmap(s))(steps)), np.asarray(s(steps)), rtol=1e-6, atol=1e-6
  )


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(batch_size=0), "batch_size"),
    (dict(base_batch_size=-1), "base_batch_size"),
    (dict(num_epochs=0), "num_epochs"),
    (dict(steps_per_epoch=0), "steps_per_epoch"),
    (dict(lr_scaling="cubic"), "lr_scaling"),
    (dict(warmup_scaling="sqrt"), "warmup_scaling"),
    (dict(decay="step"), "decay"),
    (dict(warmup="linear"), "warmup"),
    (dict(base_warmup_epochs=-1.0), "base_warmup_epochs"),
    (dict(base_learning_rate=-1.0), "base_learning_rate"),
    (dict(decay="multistep", boundary_epochs=(30, 95)), "boundary_epochs"),
    (dict(decay="multistep", boundary_epochs=(0.1,)), "boundary_epochs"),
    (dict(decay_rate=0.0), "decay_rate"),
    (dict(power=0.0), "power"),
  ],
)
def test_bad_input(kwargs, match):
  args = dict(**BASE, batch_size=2048, num_epochs=90, steps_per_epoch=625)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    legw.legw_schedule(**args)


def test_warmup_longer_than_training_says_how_long():
  with pytest.raises(ValueError, match=r"40 epochs.*num_epochs=30"):
    legw.legw_schedule(**BASE, batch_size=131072, num_epochs=30, steps_per_epoch=9)


def test_unknown_rules_raise():
  with pytest.raises(ValueError, match="rule"):
    legw.scale_learning_rate(1.0, 1, 2, rule="log")
  with pytest.raises(ValueError, match="rule"):
    legw.scale_warmup_epochs(1.0, 1, 2, rule="sqrt")
  with pytest.raises(ValueError, match="batch_size"):
    legw.scale_learning_rate(1.0, 1, 0)


def test_recipe_bad_input():
  with pytest.raises(ValueError, match="base_batch_size"):
    legw.Recipe(base_batch_size=0, base_learning_rate=1.0, base_warmup_epochs=1, num_epochs=10)
  r = legw.Recipe(
    base_batch_size=128, base_learning_rate=0.1, base_warmup_epochs=0.5, num_epochs=10
  )
  with pytest.raises(ValueError, match="dataset_size"):
    r.at(8192, dataset_size=5000)
  with pytest.raises(ValueError, match="exactly one"):
    r.at(256)


def test_cli_prints_table_and_plots(tmp_path, capsys):
  out = tmp_path / "fig.png"
  assert cli.main(["recipe", "--decay", "poly", "multistep", "--plot", str(out)]) == 0
  text = capsys.readouterr().out
  assert "32768" in text and "5.00" in text
  assert out.stat().st_size > 10_000
  assert (
    cli.main(
      [
        "recipe",
        "--base-learning-rate",
        "2^2.5",
        "--batch-sizes",
        "1024",
        "524288",
        "--num-epochs",
        "90",
      ]
    )
    == 2
  )
  assert "num_epochs" in capsys.readouterr().err
  assert math.isclose(cli._number("2**3"), 8.0)


def test_ptb_staircase_example_from_the_docstring():
  s = legw.legw_schedule(
    base_learning_rate=1.0,
    base_batch_size=20,
    batch_size=20,
    base_warmup_epochs=0.0,
    num_epochs=13,
    steps_per_epoch=10,
    decay="exponential",
    decay_rate=0.5,
    staircase=True,
    decay_begin_epochs=6,
  )
  lrs = [float(s(e * 10)) for e in range(13)]  # LR at the start of each epoch
  assert lrs[:7] == [1.0] * 7
  assert lrs[7:10] == pytest.approx([0.5, 0.25, 0.125])
