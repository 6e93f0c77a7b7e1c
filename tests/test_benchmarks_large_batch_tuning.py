"""benchmarks.large_batch_tuning: the protocol as committed, the plan, the selection."""

import json
import math

import numpy as np
import pytest

from benchmarks.batch_scaling import tuning
from benchmarks.large_batch_tuning import experiment as lbt


def test_protocol_is_the_one_written_in_the_benchmarks_readme():
  assert (lbt.TASK, lbt.DATASET, lbt.BATCH_SIZE, lbt.NUM_EPOCHS) == (
    "mnist_lstm",
    "fashion_mnist",
    8192,
    25,
  )
  assert lbt.NUM_TRIALS == 12 and lbt.FINAL_SEEDS == (0, 1, 2, 3, 4)
  assert lbt.SCALING_SEEDS == (0, 1, 2, 3, 4, 5) and lbt.SCALING_METHODS == ("legw", "none")
  assert lbt.SPACES["nesterov"] == lbt.SearchSpace("nesterov", (0.1, 6.4), (0.0, 12.5))
  assert lbt.SPACES["adam"] == lbt.SearchSpace("adam", (5e-4, 3.2e-2), (0.0, 12.5))


@pytest.mark.parametrize("name", ["nesterov", "adam"])
def test_halton_points_fill_the_space_reproducibly(name):
  space = lbt.SPACES[name]
  pts = lbt.halton_points(space)
  assert pts == lbt.halton_points(space)  # the same points on every call
  assert [p["trial"] for p in pts] == list(range(12))
  lr = np.array([p["learning_rate"] for p in pts])
  w = np.array([p["warmup_epochs"] for p in pts])
  assert np.all((lr >= space.learning_rate[0] * 0.99) & (lr <= space.learning_rate[1] * 1.01))
  assert np.all((w >= 0.0) & (w <= 12.5))
  assert len(set(lr)) == 12 and len(set(w)) == 12
  # Low discrepancy: every third of each axis (LR on the log scale) holds 4 points.
  u = (np.log(lr) - np.log(space.learning_rate[0])) / math.log(64.0)
  assert np.bincount(np.minimum((u * 3).astype(int), 2), minlength=3).tolist() == [4, 4, 4]
  assert np.bincount(np.minimum((w / 12.5 * 3).astype(int), 2), minlength=3).tolist() == [4, 4, 4]
  # Both optimizers get the same quasi-random points (same u, other ranges).
  other = lbt.halton_points(lbt.SPACES["adam" if name == "nesterov" else "nesterov"])
  assert [p["warmup_epochs"] for p in other] == w.tolist()


def test_trials_are_validation_runs_at_8192_with_no_scaling_interleaved():
  runs = lbt.plan_trials(train_size=52_500)
  assert len(runs) == 24
  assert [r["optimizer"] for r in runs[:4]] == ["nesterov", "adam", "nesterov", "adam"]
  points = {name: lbt.halton_points(s) for name, s in lbt.SPACES.items()}
  for r in runs:
    p = points[r["optimizer"]][r["trial"]]
    assert r["split"] == "validation" and r["validation_fraction"] == tuning.VALIDATION_FRACTION
    assert (r["batch_size"], r["base_batch_size"], r["k"]) == (8192, 8192, 1.0)
    assert r["peak_learning_rate"] == p["learning_rate"]
    assert r["warmup_epochs"] == pytest.approx(p["warmup_epochs"])
    assert r["warmup_steps"] == round(p["warmup_epochs"] * 6)
    assert (r["steps_per_epoch"], r["total_steps"], r["decay"]) == (6, 150, "constant")
  assert len({r["run_key"] for r in runs}) == 24


def _trial(opt, trial, lr, acc, losses=(2.0, 0.5), n_val=7500):
  return dict(
    optimizer=opt,
    method=opt,
    trial=trial,
    peak_learning_rate=lr,
    warmup_epochs=1.0,
    test_accuracy=acc,
    test_size=n_val,
    diverged=False,
    train_loss_per_epoch=list(losses),
  )


def test_selection_takes_the_smallest_lr_within_one_standard_error_of_the_best():
  se = math.sqrt(0.9 * 0.1 / 7500)
  rows = [
    _trial("nesterov", 0, 2.0, 0.900),  # best
    _trial("nesterov", 1, 0.5, 0.900 - 0.9 * se),  # tied, smaller LR: picked
    _trial("nesterov", 2, 0.2, 0.900 - 1.1 * se),  # outside one SE
    _trial("nesterov", 3, 0.3, 0.8999, losses=(2.0, 3.0)),  # tied but blew up: never picked
    _trial("adam", 0, 0.01, 0.85),
  ]
  sel = lbt.select_trial(rows)
  n = sel["nesterov"]
  assert n["best"]["trial"] == 0 and n["pick"]["trial"] == 1
  assert n["standard_error"] == pytest.approx(se)
  assert n["tied"] == [0, 1] and n["trials"] == 4
  assert sel["adam"]["pick"]["trial"] == 0
  # A single best trial is its own pick.
  assert lbt.select_trial(rows[:1])["nesterov"]["pick"]["learning_rate"] == 2.0


def test_finals_rerun_each_pick_with_five_seeds_on_the_test_set():
  sel = {
    "nesterov": dict(pick=dict(trial=3, method="nesterov", learning_rate=1.21, warmup_epochs=9.01)),
    "adam": dict(pick=dict(trial=5, method="adam", learning_rate=0.0102, warmup_epochs=6.23)),
  }
  runs = lbt.plan_finals(sel, train_size=60_000)
  assert len(runs) == 10
  for r in runs:
    assert r["split"] == "test" and r["validation_fraction"] is None
    assert (r["steps_per_epoch"], r["total_steps"]) == (7, 175)
  assert sorted(r["seed"] for r in runs if r["optimizer"] == "adam") == [0, 1, 2, 3, 4]
  assert {r["peak_learning_rate"] for r in runs if r["optimizer"] == "nesterov"} == {1.21}


def test_report_from_partial_results(tmp_path):
  p = lbt.paths(str(tmp_path))

  def row(method, batch, seed, acc, key):
    return dict(
      run_key=key,
      method=method,
      batch_size=batch,
      seed=seed,
      test_accuracy=acc,
      diverged=False,
      train_loss_per_epoch=[1.0, 0.5],
      wall_seconds=100.0,
      peak_learning_rate=0.8 if batch > 128 else 0.1,
      warmup_epochs=2.0,
      num_epochs=25,
      total_steps=175 if batch > 128 else 11_700,
      platform="cpu",
      cpu_count=2,
      test_size=10_000,
    )

  main = [row("legw", 128, s, 0.9, f"b{s}") for s in range(3)]
  main += [row("legw", 8192, s, a, f"l{s}") for s, a in enumerate([0.83, 0.88, 0.87, 0.86])]
  main += [row("none", 8192, s, 0.85, f"n{s}") for s in range(3)]
  with open(p["scaling"], "w") as f:
    json.dump(main, f)
  text = lbt.write_report(str(tmp_path))
  lines = {ln["label"]: ln for ln in lbt.report_rows(str(tmp_path))}
  legw_row = lines["LEGW at 8192 (LR 0.8, warmup 2 epochs)"]
  assert legw_row["n"] == 4 and legw_row["worst"] == pytest.approx(0.83)
  assert legw_row["mean"] == pytest.approx(0.86)
  row_text = (
    "| LEGW at 8192 (LR 0.8, warmup 2 epochs) | 86.0 ± 2.2 | 83.0 | 4 | 175 | 25 | 1,433,600 |"
  )
  assert row_text in text
  assert len(lines) == 3  # no trials or finals yet: no tuned rows
  assert (tmp_path / f"{lbt.STEM}.png").read_bytes()[:4] == b"\x89PNG"


def test_the_comparison_at_64x_of_the_committed_results():
  import os

  out = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks/results"
  )
  table = lbt.format_report(lbt.report_rows(out))
  assert table.splitlines()[0] == (
    "| row | test acc % (mean ± std) | worst seed | n | steps | epochs | examples |"
  )
  labels = [line.split(" | ")[0].lstrip("| ") for line in table.splitlines()[2:]]
  assert [label.split(" (")[0] for label in labels] == [
    "base: momentum at batch 128",
    "LEGW at 8192",
    "linear scaling at 8192",
    "no scaling at 8192",
    "Adam at 8192, tuned at 128",
    "Nesterov tuned at 8192",
    "Adam tuned at 8192",
  ]
  assert (
    "| base: momentum at batch 128 (LR 0.1, warmup 0.03125 epochs) | 89.7 ± 0.4 | 89.5 | 3 | "
    "11,700 | 25 | 1,497,600 |" in table
  )
  assert (
    "| LEGW at 8192 (LR 0.8, warmup 2 epochs) | 83.0 ± 5.9 | 72.1 | 6 | 175 | 25 | 1,433,600 |"
    in table
  )
  assert "| 10.0 ± 0.0† | 10.0 | 3 |" in table  # linear scaling blew up in every seed
  assert (
    "| Adam tuned at 8192 (LR 0.0132, warmup 4.38 epochs; 12 trials, 3.0 CPU-h) | 88.9 ± 0.1 | "
    "88.8 | 5 | 175 | 25 | 1,433,600 |" in table
  )
  caption = lbt.format_caption(out)
  assert "10,000 test images" in caption and "CPU, 2 cores, jax 0.10.2" in caption
  picks = lbt.format_selection(lbt.load_selection(out))
  assert "- nesterov: the best was trial 2 " in picks
  assert "picked: trial 10 (peak LR 0.329, warmup 8.54 epochs, 86.31% on validation)." in picks
  full = lbt.report_text(out)
  assert full.startswith(lbt.report_text(out, details=False)) and lbt.format_details(out) in full
  assert "| nesterov | 10 | 0.329 | 8.54 | 86.31 | 0.376 | **picked** |" in full
