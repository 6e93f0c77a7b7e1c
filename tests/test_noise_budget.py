"""The epochs a batch needs from a measured gradient noise scale (McCandlish et al. 2018, §2)."""

import dataclasses
import math

import jax.numpy as jnp
import numpy as np
import pytest

import legw
from legw import cli
from legw._recipe import Recipe

scale_num_epochs = legw.scale_num_epochs

BASE = dict(base_batch_size=128, base_learning_rate=0.1, base_warmup_epochs=0.125, num_epochs=25)


def test_hand_values():
  # 25 * (1 + 8192/2500) / (1 + 128/2500) = 25 * 4.2768 / 1.0512
  assert scale_num_epochs(25, 128, 8192, noise_scale=2500) == pytest.approx(101.712328767, 1e-10)
  assert scale_num_epochs(10, 100, 300, noise_scale=100) == pytest.approx(20.0)  # 10 * 4 / 2
  assert scale_num_epochs(10, 300, 100, noise_scale=100) == pytest.approx(5.0)  # both directions


def test_identity_at_the_base_batch():
  for epochs in (25, 0.3, 90.0, 1e-3):
    assert scale_num_epochs(epochs, 128, 128, noise_scale=2500) == epochs
    assert isinstance(scale_num_epochs(epochs, 128, 128, noise_scale=2500), float)


def test_monotone_in_the_batch_size():
  batches = [1, 16, 64, 128, 512, 4096, 65536]
  epochs = [scale_num_epochs(25, 128, b, noise_scale=2500) for b in batches]
  assert all(a < b for a, b in zip(epochs, epochs[1:]))
  assert epochs[batches.index(64)] < 25 < epochs[batches.index(512)]


def test_limits_of_the_noise_scale():
  # B_noise -> inf: every batch is "small", the same epochs (the LEGW default).
  assert scale_num_epochs(25, 128, 8192, noise_scale=1e300) == pytest.approx(25.0)
  # B_noise -> 0: every batch is "large", the same steps: epochs grow by k.
  assert scale_num_epochs(25, 128, 8192, noise_scale=1e-9) == pytest.approx(25.0 * 64, 1e-6)


def test_accepts_numpy_and_jax_scalars():
  expected = scale_num_epochs(25, 128, 8192, noise_scale=2500)
  got = scale_num_epochs(
    np.float32(25), np.int64(128), jnp.asarray(8192), noise_scale=jnp.asarray(2500.0)
  )
  assert got == pytest.approx(expected, 1e-6)


@pytest.mark.parametrize(
  "kwargs, error, match",
  [
    (dict(base_num_epochs=0), ValueError, r"base_num_epochs must be in \(0, inf\)"),
    (dict(base_num_epochs=-1.0), ValueError, "base_num_epochs"),
    (dict(base_num_epochs=math.inf), ValueError, "base_num_epochs"),
    (dict(base_num_epochs=math.nan), ValueError, "base_num_epochs"),
    (dict(base_num_epochs="25"), TypeError, "base_num_epochs"),
    (dict(base_num_epochs=True), TypeError, "base_num_epochs"),
    (dict(base_batch_size=0), ValueError, r"base_batch_size must be in \(0, inf\)"),
    (dict(base_batch_size=128.5), TypeError, "base_batch_size"),
    (dict(base_batch_size=None), TypeError, "base_batch_size"),
    (dict(batch_size=-8), ValueError, r"batch_size must be in \(0, inf\)"),
    (dict(batch_size=True), TypeError, "batch_size"),
    (dict(batch_size="8192"), TypeError, "batch_size"),
    (dict(noise_scale=0), ValueError, r"noise_scale must be in \(0, inf\)"),
    (dict(noise_scale=-2500.0), ValueError, "noise_scale"),
    (dict(noise_scale=math.inf), ValueError, "noise_scale"),
    (dict(noise_scale=math.nan), ValueError, "noise_scale"),
    (dict(noise_scale=True), TypeError, "noise_scale must be a real number"),
    (dict(noise_scale="2500"), TypeError, "noise_scale"),
    (dict(noise_scale=None), TypeError, "noise_scale"),
    (dict(noise_scale=jnp.ones(2)), TypeError, "noise_scale"),
  ],
)
def test_bad_input_names_the_argument(kwargs, error, match):
  args = dict(base_num_epochs=25, base_batch_size=128, batch_size=8192, noise_scale=2500)
  args.update(kwargs)
  noise = args.pop("noise_scale")
  with pytest.raises(error, match=match):
    scale_num_epochs(**args, noise_scale=noise)


def test_noise_scale_is_keyword_only():
  with pytest.raises(TypeError):
    scale_num_epochs(25, 128, 8192, 2500)  # pylint: disable=too-many-function-args


def test_recipe_without_noise_scale_is_unchanged():
  r = Recipe(**BASE)
  assert r.noise_scale is None
  s = r.at(8192, dataset_size=60_000)
  assert (s.num_epochs, s.steps_per_epoch, s.total_steps) == (25, 7, 175)
  assert "epochs  total steps" not in r.table([128, 8192], dataset_size=60_000)


def test_noise_scale_is_the_last_field():
  names = [f.name for f in dataclasses.fields(Recipe)]
  assert names[-1] == "noise_scale" and names[:4] == list(BASE)
  assert Recipe(*BASE.values()) == Recipe(**BASE)


def test_recipe_with_noise_scale_stretches_the_run():
  r = Recipe(**BASE, noise_scale=2500)
  assert r.noise_scale == 2500.0 and isinstance(r.noise_scale, float)
  for b in (64, 128, 1024, 8192):
    s = r.at(b, dataset_size=60_000)
    epochs = scale_num_epochs(25, 128, b, noise_scale=2500)
    assert s.num_epochs == epochs
    assert s.total_steps == round(epochs * (60_000 // b))
    # The warmup is LEGW's, untouched by the budget.
    assert s.warmup_epochs == Recipe(**BASE).at(b, dataset_size=60_000).warmup_epochs
  s = r.at(8192, dataset_size=60_000)
  assert (s.steps_per_epoch, s.total_steps) == (7, 712)  # 101.71 epochs, not 25 (175 steps)
  assert r.at(128, dataset_size=60_000) == dataclasses.replace(
    Recipe(**BASE).at(128, dataset_size=60_000), recipe=r
  )
  assert [x.total_steps for x in r.ladder([128, 8192], dataset_size=60_000)] == [11700, 712]


def test_schedule_decays_over_the_budget():
  r = Recipe(**BASE, noise_scale=2500)
  s = r.at(8192, steps_per_epoch=7)
  for lr in (r.schedule(8192, steps_per_epoch=7), s.schedule()):
    assert float(lr(s.warmup_steps)) == pytest.approx(s.peak_learning_rate)
    assert float(lr(s.total_steps - 1)) > 0.0 and float(lr(s.total_steps)) == 0.0
    assert float(lr(175)) > 0.5 * s.peak_learning_rate  # 25 epochs: far from the end now


def test_multistep_boundaries_stretch_with_the_budget():
  r = Recipe(**BASE, decay="multistep", boundary_epochs=(10, 20), noise_scale=2500)
  stretch = scale_num_epochs(1.0, 128, 8192, noise_scale=2500)
  lr = r.schedule(8192, steps_per_epoch=7)
  first = round(10 * stretch * 7)  # the first boundary, in steps, at batch 8192
  assert float(lr(first - 1)) == pytest.approx(0.8)
  assert float(lr(first)) == pytest.approx(0.08)


def test_rebase_keeps_the_epochs_at_every_batch():
  r = Recipe(**BASE, noise_scale=2500, decay="multistep", boundary_epochs=(10, 20))
  big = r.rebase(1024)
  assert big.noise_scale == 2500.0
  assert big.num_epochs == pytest.approx(scale_num_epochs(25, 128, 1024, noise_scale=2500))
  for b in (128, 1024, 8192):
    assert big.at(b, dataset_size=60_000).num_epochs == pytest.approx(
      r.at(b, dataset_size=60_000).num_epochs
    )
  assert big.rebase(128).num_epochs == pytest.approx(25.0)
  assert big.rebase(128).boundary_epochs == pytest.approx((10, 20))


@pytest.mark.parametrize(
  "noise, error",
  [(0, ValueError), (-1.0, ValueError), (math.nan, ValueError), ("2500", TypeError)],
)
def test_recipe_checks_noise_scale_at_construction(noise, error):
  with pytest.raises(error, match="noise_scale"):
    Recipe(**BASE, noise_scale=noise)


def _run(capsys, *argv):
  status = cli.main(list(argv))
  out, err = capsys.readouterr()
  return status, out, err


ARGV = (
  "recipe",
  "--base-batch-size=128",
  "--base-learning-rate=0.1",
  "--base-warmup-epochs=0.125",
  "--num-epochs=25",
  "--dataset-size=60000",
  "--batch-sizes",
  "128",
  "8192",
)


def test_cli_with_noise_scale_shows_the_budget(capsys):
  status, out, err = _run(capsys, *ARGV, "--noise-scale", "2500")
  assert status == 0 and not err
  lines = out.splitlines()
  assert "25 epochs at the base batch (noise scale 2500)" in lines[0]
  assert lines[1].split()[-3:] == ["epochs", "total", "steps"]
  assert lines[3].split()[-2:] == ["25.00", "11700"]
  assert lines[4].split()[-2:] == ["101.71", "712"]


def test_cli_without_noise_scale_has_no_epochs_column(capsys):
  status, out, _ = _run(capsys, *ARGV)
  assert status == 0
  assert "epochs  total steps" not in out and "noise scale" not in out
  assert out.splitlines()[4].split()[-1] == "175"


def test_cli_bad_noise_scale_is_one_clean_line(capsys):
  status, out, err = _run(capsys, *ARGV, "--noise-scale", "0")
  assert status == 2 and not out
  assert err.strip() == (
    "legw recipe: error: noise_scale must be in (0, inf); got 0.0; see 'legw recipe --help'"
  )


def test_table_takes_steps_per_epoch_for_one_batch_size():
  r = Recipe(base_batch_size=128, base_learning_rate=0.1, base_warmup_epochs=1, num_epochs=10)
  with pytest.warns(UserWarning, match="more than half of training"):
    table = r.table([1024], steps_per_epoch=50)
  assert table.splitlines()[-1].split() == [
    "1024",
    "8",
    "0.282843",
    "-1.82",
    "8",
    "400",
    "50",
    "500",
  ]
  with pytest.raises(ValueError, match="one batch size"):
    r.table([128, 1024], steps_per_epoch=50)


def test_warmup_longer_than_training_error_says_epochs_not_steps():
  r = Recipe(base_batch_size=128, base_learning_rate=0.1, base_warmup_epochs=1, num_epochs=10)
  with pytest.raises(ValueError, match="epochs, not steps"):
    r.at(2048, steps_per_epoch=50)
