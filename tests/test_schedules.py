"""LEGW scaling rules, schedules and Recipe.

* Against the LEGW paper's Table 1 and Figure 2: the scaling rules, the
  schedules (poly, multistep and the other decays, the warmup schemes), the
  Recipe and the ``legw recipe`` CLI.
* As an optax user meets them (issues 13 and 15): the paper's literal poly
  decay next to the continuous one, optax's float dtype under
  ``jax_enable_x64``, integer counts of any integer type, the schedule's
  domain and the warnings for detectable mistakes, ``ScaledRecipe.schedule``,
  and the public docstrings of the schedule modules.
"""

import contextlib
import doctest
import inspect
import math
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import legw
from legw import _batch_schedule, _diagnostics, _losses, _recipe, _scaling, _schedules, cli

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
TABLE_1_RECIPE = dict(**BASE, num_epochs=90)  # the Recipe of Table 1's batch 1K row


def _at_32k(**kw):
  return legw.legw_schedule(
    **TABLE_1_RECIPE, batch_size=32768, steps_per_epoch=IMAGENET // 32768, **kw
  )


# ---------------------------------------------------------------------------
# The LEGW paper: Table 1 and Figure 2.
# ---------------------------------------------------------------------------


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


def test_ptb_staircase_example():
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


# ---------------------------------------------------------------------------
# Bad input, and the CLI.
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Poly decay: continuous (MLPerf) by default, the LEGW paper's text as an option.
# ---------------------------------------------------------------------------


def test_poly_origin_step_0_is_the_papers_formula_and_drops_1_27x_at_32k():
  # Batch 32K of Table 1: 39 steps/epoch, W = 10 * 39 = 390, T = 90 * 39 = 3510,
  # peak 2^5 = 32. Hand-computed values of eta * (1 - i/I)^2 counted from step 0.
  cont, lit = _at_32k(), _at_32k(poly_origin="step_0")
  assert float(cont(390)) == pytest.approx(32.0, rel=1e-6)
  assert float(lit(390)) == pytest.approx(32.0 * (8 / 9) ** 2, rel=1e-6)  # 25.2839...
  assert float(cont(390)) / float(lit(390)) == pytest.approx(81 / 64, rel=1e-6)  # 1.2656
  assert round(float(cont(390)) / float(lit(390)), 2) == 1.27
  # The drop happens at the end of warmup: the step before is the warmup's.
  assert float(lit(389)) == float(cont(389)) == pytest.approx(32.0 * 389 / 390, rel=1e-6)
  # Mid-run: the continuous decay counts i from W over T - W, the literal one from 0 over T.
  assert float(cont(1950)) == pytest.approx(32.0 * 0.5**2, rel=1e-6)
  assert float(lit(1950)) == pytest.approx(32.0 * (1 - 1950 / 3510) ** 2, rel=1e-6)
  assert float(lit(3000)) == pytest.approx(32.0 * (510 / 3510) ** 2, rel=1e-5)
  # Both end at end_value at T and stay there.
  for s in (cont, lit):
    assert float(s(3510)) == 0.0 and float(s(10**6)) == 0.0


def test_poly_origin_step_0_with_end_value_power_and_hold():
  kw = dict(
    base_learning_rate=1.0,
    base_batch_size=100,
    batch_size=400,
    base_warmup_epochs=0.5,
    num_epochs=10,
    steps_per_epoch=10,
    power=1.0,
    end_value=0.4,
  )
  # peak 2, W = 20, T = 100: 0.4 + 1.6 * (1 - t/100) from t = 20 on.
  lit = legw.legw_schedule(**kw, poly_origin="step_0")
  for t, want in [
    (19, 2.0 * 19 / 20),
    (20, 0.4 + 1.6 * 0.8),
    (60, 0.4 + 1.6 * 0.4),
    (99, 0.4 + 1.6 * 0.01),
    (100, 0.4),
    (150, 0.4),
  ]:
    assert float(lit(t)) == pytest.approx(want, rel=1e-6), t
  # decay_begin_epochs holds the peak; the literal decay still counts from step 0.
  held = legw.legw_schedule(**kw, poly_origin="step_0", decay_begin_epochs=5)
  assert float(held(49)) == pytest.approx(2.0)
  assert float(held(50)) == pytest.approx(0.4 + 1.6 * 0.5, rel=1e-6)


def test_poly_origin_through_the_recipe_and_bad_values():
  r = legw.Recipe(**TABLE_1_RECIPE, poly_origin="step_0")
  s = r.at(32768, dataset_size=IMAGENET).schedule()
  steps = np.arange(0, 3600, 13)
  np.testing.assert_allclose(
    np.asarray(s(steps)), np.asarray(_at_32k(poly_origin="step_0")(steps)), rtol=1e-6
  )
  with pytest.raises(ValueError, match="poly_origin"):
    _at_32k(poly_origin="warmup")
  with pytest.raises(ValueError, match="poly_origin.*decay='cosine'"):
    _at_32k(decay="cosine", poly_origin="step_0")
  with pytest.raises(ValueError, match="poly_origin"):
    legw.Recipe(**TABLE_1_RECIPE, decay="multistep", boundary_epochs=(30,), poly_origin="step_0")


# ---------------------------------------------------------------------------
# The float dtype optax's schedules give, with and without jax_enable_x64.
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def _x64(on):
  if hasattr(jax, "enable_x64"):
    with jax.enable_x64(on):
      yield
  else:  # older JAX
    from jax.experimental import disable_x64, enable_x64

    with enable_x64() if on else disable_x64():
      yield


def _all_schedules():
  kw = dict(
    base_learning_rate=1.0, base_batch_size=100, batch_size=400, num_epochs=10, steps_per_epoch=10
  )
  out = {}
  for decay in _schedules.DECAYS:
    extra = {"boundary_epochs": (5,)} if decay == "multistep" else {}
    for warm in (0.0, 0.5):
      out[f"{decay}-warmup{warm}"] = legw.legw_schedule(
        **kw, decay=decay, base_warmup_epochs=warm, **extra
      )
  out["constant-warmup"] = legw.legw_schedule(**kw, base_warmup_epochs=0.5, warmup="constant")
  out["poly-step_0"] = legw.legw_schedule(**kw, base_warmup_epochs=0.5, poly_origin="step_0")
  r = legw.Recipe(
    base_batch_size=100, base_learning_rate=1.0, base_warmup_epochs=0.5, num_epochs=10
  )
  out["recipe"] = r.schedule(400, steps_per_epoch=10)
  out["scaled"] = r.at(400, steps_per_epoch=10).schedule()
  out["batch_size_schedule"] = legw.batch_size_schedule(
    [(5, 100), (5, 400)], dataset_size=4000, recipe=r
  ).learning_rate
  out["discard"] = legw.discard_small_loss_schedule(0.3, num_epochs=2, steps_per_epoch=10)
  return out


_COUNTS = {
  "python int": lambda: 3,
  "np.int32": lambda: np.int32(3),
  "np.int64": lambda: np.int64(3),
  "jnp int32 (optax's count)": lambda: jnp.asarray(3, jnp.int32),
  "jnp default int": lambda: jnp.asarray(3),
  "int32 vector": lambda: jnp.arange(4, dtype=jnp.int32),
  "int64 vector": lambda: np.arange(4, dtype=np.int64),
}


@pytest.mark.slow
@pytest.mark.parametrize("x64", [False, True])
def test_schedules_return_optax_float_dtype(x64):
  scheds = _all_schedules()
  reference = optax.linear_schedule(0.0, 1.0, 10)
  seen = set()
  with _x64(x64):
    for count_name, make in _COUNTS.items():
      count = make()
      want = jnp.asarray(reference(count)).dtype
      seen.add(str(want))
      for name, s in scheds.items():
        got = s(count)
        assert got.dtype == want, (name, count_name, got.dtype, want)
        assert got.shape == np.shape(count), (name, count_name)
      # Under jit with optax's own int32 count too.
      for s in scheds.values():
        assert jax.jit(s)(jnp.asarray(3, jnp.int32)).dtype == reference(jnp.int32(3)).dtype
  # x64 on: float64 for Python/int64 counts, float32 for int32; off: float32 only.
  assert seen == ({"float32", "float64"} if x64 else {"float32"})


def test_x64_values_are_computed_in_float64():
  s = _at_32k(decay="multistep", boundary_epochs=(30, 60, 80))
  with _x64(True):
    v = s(3200)  # after the third boundary: 32 * 0.1^3
    assert v.dtype == jnp.float64
    assert float(v) == pytest.approx(32.0 * 0.1**3, rel=1e-12)


# ---------------------------------------------------------------------------
# Integer counts: NumPy/JAX integers accepted, non-integral floats refused.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
  "spe",
  [
    np.int64(312),
    np.int32(312),
    jnp.asarray(312),
    jnp.asarray(312, jnp.int32),
    np.asarray(312),
    312.0,
  ],
)
def test_steps_per_epoch_accepts_numpy_and_jax_integers(spe):
  kw = dict(**TABLE_1_RECIPE, batch_size=4096)
  want = legw.legw_schedule(**kw, steps_per_epoch=312)
  got = legw.legw_schedule(**kw, steps_per_epoch=spe)
  steps = np.arange(0, 28080, 97)
  np.testing.assert_array_equal(np.asarray(got(steps)), np.asarray(want(steps)))
  r = legw.Recipe(**TABLE_1_RECIPE)
  s = r.at(np.int64(4096), steps_per_epoch=spe)
  assert (s.steps_per_epoch, s.batch_size) == (312, 4096)
  assert type(s.steps_per_epoch) is int and type(s.batch_size) is int
  np.testing.assert_array_equal(np.asarray(s.schedule()(steps)), np.asarray(want(steps)))
  frac = legw.discard_small_loss_schedule(0.3, num_epochs=2, steps_per_epoch=spe)
  assert float(frac(623)) == pytest.approx(0.3) and float(frac(624)) == 0.0


def test_sizes_accept_numpy_and_jax_integers():
  assert legw.scale_learning_rate(1.0, jnp.asarray(256), np.int64(1024)) == 2.0
  # The scaling rules take any positive size (only k enters); a string is refused.
  assert legw.scale_learning_rate(1.0, 0.5, 2.0, rule="linear") == 4.0
  with pytest.raises(TypeError, match="batch_size"):
    legw.scale_warmup_epochs(1.0, 256, "1024")
  assert legw.scale_warmup_epochs(1.0, np.int32(256), jnp.asarray(1024, jnp.int32)) == 4.0
  r = legw.Recipe(
    base_batch_size=np.int64(256), base_learning_rate=0.1, base_warmup_epochs=1.0, num_epochs=10
  )
  assert r.steps_per_epoch(jnp.asarray(1024), np.int64(50_000)) == 48
  assert r.at(1024, dataset_size=jnp.asarray(50_000, jnp.int32)).steps_per_epoch == 48
  bs = legw.batch_size_schedule(
    [(1, jnp.asarray(512)), (1, np.int64(8192))], dataset_size=np.int64(50_000)
  )
  assert [p.batch_size for p in bs.phases] == [512, 8192]
  assert bs.batch_size_at(jnp.asarray(97)) == 8192


@pytest.mark.parametrize(
  "make, name",
  [
    (
      lambda v: legw.legw_schedule(**TABLE_1_RECIPE, batch_size=4096, steps_per_epoch=v),
      "steps_per_epoch",
    ),
    (
      lambda v: legw.legw_schedule(**TABLE_1_RECIPE, batch_size=v, steps_per_epoch=312),
      "batch_size",
    ),
    (lambda v: legw.Recipe(**{**TABLE_1_RECIPE, "base_batch_size": v}), "base_batch_size"),
    (lambda v: legw.Recipe(**TABLE_1_RECIPE).at(4096, steps_per_epoch=v), "steps_per_epoch"),
    (lambda v: legw.Recipe(**TABLE_1_RECIPE).at(4096, dataset_size=v), "dataset_size"),
    (lambda v: legw.discard_small_loss_schedule(0.3, steps_per_epoch=v), "steps_per_epoch"),
    (lambda v: legw.batch_size_schedule([(1, 16)], dataset_size=v), "dataset_size"),
  ],
)
@pytest.mark.parametrize(
  "bad", [312.5, np.float32(0.5), jnp.asarray(312.5), "312", True, np.array([312])]
)
def test_non_integral_counts_are_refused_naming_the_argument(make, name, bad):
  with pytest.raises(TypeError, match=name):
    make(bad)


def test_counts_out_of_range_and_traced():
  with pytest.raises(ValueError, match=r"steps_per_epoch must be in \(0, inf\)"):
    legw.legw_schedule(**TABLE_1_RECIPE, batch_size=4096, steps_per_epoch=np.int64(0))
  with pytest.raises(ValueError, match="steps_per_epoch"):
    legw.legw_schedule(**TABLE_1_RECIPE, batch_size=4096, steps_per_epoch=float("inf"))

  @jax.jit
  def build(spe):
    return legw.legw_schedule(**TABLE_1_RECIPE, batch_size=4096, steps_per_epoch=spe)(0)

  with pytest.raises(TypeError, match="steps_per_epoch must be a concrete integer"):
    build(312)


# ---------------------------------------------------------------------------
# ScaledRecipe.schedule: no repeated arguments.
# ---------------------------------------------------------------------------


def test_scaled_recipe_schedule_is_the_recipes():
  r = legw.Recipe(**TABLE_1_RECIPE, decay="multistep", boundary_epochs=(30, 60, 80))
  for kw in (dict(dataset_size=IMAGENET), dict(steps_per_epoch=100)):
    scaled = r.at(8192, **kw)
    steps = np.arange(0, scaled.total_steps + 50, 37)
    np.testing.assert_array_equal(
      np.asarray(scaled.schedule()(steps)), np.asarray(r.schedule(8192, **kw)(steps))
    )
  assert scaled.recipe is r
  assert "recipe" not in repr(scaled)  # the printed numbers stay as they were
  by_hand = legw.ScaledRecipe(
    batch_size=8192,
    peak_learning_rate=16.0,
    warmup_epochs=2.5,
    warmup_steps=250,
    steps_per_epoch=100,
    total_steps=9000,
    num_epochs=90,
  )
  with pytest.raises(ValueError, match=r"Recipe\(\.\.\.\)\.at"):
    by_hand.schedule()


# ---------------------------------------------------------------------------
# The domain, and warnings for mistakes detectable at construction.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("decay", _schedules.DECAYS)
@pytest.mark.parametrize("warmup", [0.0, 0.5])
def test_domain_outside_the_run(decay, warmup):
  kw = dict(
    base_learning_rate=1.0,
    base_batch_size=100,
    batch_size=400,
    base_warmup_epochs=warmup,
    num_epochs=10,
    steps_per_epoch=10,
    decay=decay,
    end_value=0.1,
    decay_rate=0.9,
  )
  if decay == "multistep":
    kw["boundary_epochs"] = (5,)
  s = legw.legw_schedule(**kw)
  # A negative count reads as step 0.
  for t in (-1, -1000):
    assert float(s(t)) == float(s(0)), t
  # From T = 100 on: the documented value, never raised.
  want = {"poly": 0.1, "cosine": 0.1, "multistep": 1.8, "constant": 2.0}
  if decay in want:
    for t in (100, 101, 10**6):
      assert float(s(t)) == pytest.approx(want[decay], rel=1e-6), t
  else:  # exponential keeps decaying, floored at end_value
    assert float(s(10**6)) == pytest.approx(0.1, rel=1e-6)
    assert float(s(101)) < float(s(100))
  # Array counts give arrays of their shape (also the constant decay without warmup).
  assert s(jnp.arange(-3, 120).reshape(3, 41)).shape == (3, 41)


def test_warmup_over_half_of_training_warns():
  # k = 4: a 3-epoch base warmup becomes 12 of 20 epochs (epochs taken for steps, or a
  # batch scaled too far). Recipe.at and the other entry points warn once each:
  # test_a_warning_is_issued_once_at_the_callers_line.
  kw = dict(
    base_learning_rate=0.1, base_batch_size=256, batch_size=1024, num_epochs=20, steps_per_epoch=10
  )
  with pytest.warns(UserWarning, match=r"warmup is 120 of the 200 training steps.*more than half"):
    legw.legw_schedule(**kw, base_warmup_epochs=3.0)
  # Exactly half, and every row of Table 1, stay quiet.
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    legw.legw_schedule(**kw, base_warmup_epochs=2.5)
    legw.Recipe(**TABLE_1_RECIPE).table(
      [1024, 2048, 4096, 8192, 16384, 32768], dataset_size=IMAGENET
    )


def test_warmup_rounding_to_zero_steps_warns():
  with pytest.warns(UserWarning, match="rounds to 0 steps"):
    legw.legw_schedule(
      base_learning_rate=0.1,
      base_batch_size=256,
      batch_size=256,
      base_warmup_epochs=0.01,
      num_epochs=10,
      steps_per_epoch=10,
    )
  with pytest.warns(UserWarning, match="rounds to 0 steps"):
    legw.discard_small_loss_schedule(0.3, num_epochs=0.01, steps_per_epoch=10)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    legw.discard_small_loss_schedule(0.0, num_epochs=0.0, steps_per_epoch=10)


_LONG = dict(base_batch_size=256, base_learning_rate=0.1, base_warmup_epochs=3.0, num_epochs=20)


@pytest.mark.parametrize(
  "entry", ["Recipe.schedule", "Recipe.at", "ScaledRecipe.schedule", "Recipe.table", "Recipe", "fn"]
)
def test_a_warning_is_issued_once_at_the_callers_line(entry):
  """One call, one warning, and it names the user's file (this one), not legw's."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    scaled = legw.Recipe(**_LONG).at(1024, steps_per_epoch=10)
  calls = {
    "Recipe.schedule": lambda: legw.Recipe(**_LONG).schedule(1024, steps_per_epoch=10),
    "Recipe.at": lambda: legw.Recipe(**_LONG).at(1024, steps_per_epoch=10),
    "ScaledRecipe.schedule": scaled.schedule,
    "Recipe.table": lambda: legw.Recipe(**_LONG).table([1024], dataset_size=10240),
    "Recipe": lambda: legw.Recipe(**{**_LONG, "base_warmup_epochs": 12.0}),  # at construction
    "fn": lambda: legw.legw_schedule(**_LONG, batch_size=1024, steps_per_epoch=10),
  }
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    calls[entry]()
  assert [str(w.message).count("more than half") for w in caught] == [1], caught
  assert caught[0].category is UserWarning
  assert caught[0].filename == __file__, caught[0].filename


def test_discard_schedule_warns_at_the_callers_line():
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    legw.discard_small_loss_schedule(0.5, num_epochs=0.01, steps_per_epoch=10)
  assert len(caught) == 1 and "rounds to 0 steps" in str(caught[0].message)
  assert caught[0].filename == __file__, caught[0].filename


# ---------------------------------------------------------------------------
# Public docstrings: formula, units, raises, source, and a running example.
# ---------------------------------------------------------------------------

_MODULES = (_schedules, _scaling, _recipe, _batch_schedule, _losses, _diagnostics)


def _public(module):
  for name, obj in vars(module).items():
    if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
      continue
    if inspect.isfunction(obj) or inspect.isclass(obj):
      yield f"{module.__name__}.{name}", obj
    if inspect.isclass(obj):  # and its public methods
      for method_name, method in vars(obj).items():
        if not method_name.startswith("_") and inspect.isfunction(method):
          yield f"{module.__name__}.{name}.{method_name}", method


@pytest.mark.parametrize("module", _MODULES, ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
  result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
  assert result.attempted > 0
  assert result.failed == 0


@pytest.mark.parametrize(
  "name, obj",
  [p for m in _MODULES for p in _public(m)],
  ids=lambda v: v if isinstance(v, str) else "",
)
def test_public_docstrings_have_an_example(name, obj):
  if name in ("legw._schedules.float_dtype", "legw._scaling.as_count"):
    pytest.skip("helpers for the other schedule modules, documented without an example")
  doc = inspect.getdoc(obj) or ""
  assert ">>>" in doc, name


@pytest.mark.parametrize(
  "obj",
  [
    legw.legw_schedule,
    legw.Recipe.schedule,
    legw.ScaledRecipe,
    legw.ScaledRecipe.schedule,
    legw.batch_size_schedule,
    legw.BatchSizeSchedule,
    legw.discard_small_loss_schedule,
  ],
)
def test_every_schedule_documents_its_domain(obj):
  doc = inspect.getdoc(obj)
  assert "step" in doc and "epoch" in doc
  assert re.search(r"[Dd]omain|total_steps", doc), obj
