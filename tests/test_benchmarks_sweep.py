"""benchmarks.batch_scaling / train / tasks: the plan, the training loop, the quick sweep."""

import csv
import dataclasses
import json
import math
import os
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import legw
from benchmarks.batch_scaling import main as bs_main
from benchmarks.batch_scaling import report as bs_report
from benchmarks.batch_scaling import sweep, tasks, train, tuning


def _plan(**kw):
  cfg = sweep.SweepConfig(task="mnist_lstm", dataset="mnist5k", **kw)
  return {(r["method"], r["batch_size"]): r for r in sweep.plan_runs(cfg, train_size=4096)}


def test_plan_applies_each_methods_rule_to_one_baseline():
  base = tasks.TASKS["mnist_lstm"].baselines["mnist5k"]
  b0, top = base.base_batch_size, base.batch_sizes[-1]
  k = top / b0
  eta, adam_eta = base.learning_rates["momentum"], base.learning_rates["adam"]
  e0 = base.base_warmup_epochs
  runs = _plan()
  assert len(runs) == 4 * len(base.batch_sizes)
  legw_run, lin, none, adam = (runs[(m, top)] for m in ("legw", "linear", "none", "adam"))
  assert legw_run["peak_learning_rate"] == pytest.approx(eta * math.sqrt(k))
  assert legw_run["warmup_epochs"] == pytest.approx(e0 * k)
  assert lin["peak_learning_rate"] == pytest.approx(eta * k)
  assert lin["warmup_epochs"] == pytest.approx(e0)
  assert none["peak_learning_rate"] == pytest.approx(eta)
  assert (adam["optimizer"], adam["peak_learning_rate"]) == ("adam", adam_eta)
  # LEGW keeps the warmup constant in steps.
  assert runs[("legw", b0)]["warmup_steps"] == legw_run["warmup_steps"]
  for r in runs.values():
    assert r["steps_per_epoch"] == 4096 // r["batch_size"]
    assert r["total_steps"] == r["steps_per_epoch"] * base.num_epochs
  # At the base batch, legw, linear and none are one run.
  keys = {runs[(m, b0)]["run_key"] for m in ("legw", "linear", "none")}
  assert len(keys) == 1 and runs[("adam", b0)]["run_key"] not in keys


def test_plan_rejects_a_warmup_longer_than_training():
  with pytest.raises(ValueError, match="legw.*warmup"):
    _plan(batch_sizes=(8, 4096), num_epochs=2)
  with pytest.raises(ValueError, match="unknown method"):
    _plan(methods=("lars",))


def test_registry_is_well_formed():
  for name, task in tasks.TASKS.items():
    assert task.name == name
    for method in task.optimizers:
      assert method in tasks.METHODS
      assert task.optimizers[method] in train.OPTIMIZERS
    for base in task.baselines.values():
      assert base.base_batch_size == min(base.batch_sizes)
      assert max(base.batch_sizes) / base.base_batch_size >= 32
      for method, opt in task.optimizers.items():
        if not tasks.METHODS[method].tuned_per_batch:
          assert base.learning_rates[opt] > 0
  assert tasks.TASKS["cnn_lars"].optimizer_for("legw") == "lars"
  # A method tuned per batch has no baseline LR: the sweep must be given one.
  with pytest.raises(ValueError, match="no base learning rate for optimizer 'nesterov'"):
    sweep.plan_runs(sweep.SweepConfig(methods=("nesterov",), batch_sizes=(8,)), 4096)
  with pytest.raises(ValueError, match="unknown task"):
    tasks.get_task("nope")


@pytest.mark.parametrize("name", train.OPTIMIZERS)
def test_injected_learning_rate_drives_the_update(name):
  params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
  grads = {"w": jnp.full((3, 2), 0.5), "b": jnp.ones(2)}
  tx = train.make_optimizer(name)
  deltas = []
  for lr in (0.0, 0.1, 0.2):
    state = tx.init(params)
    state.hyperparams["learning_rate"] = jnp.asarray(lr)
    updates, _ = tx.update(grads, state, params)
    deltas.append(float(jnp.abs(updates["w"]).sum()))
  assert deltas[0] == 0.0 and deltas[2] == pytest.approx(2 * deltas[1], rel=1e-5)
  with pytest.raises(ValueError, match="unknown optimizer"):
    train.make_optimizer("rmsprop")


def test_lars_optimizer_is_legw_lars():
  params = {"w": jnp.arange(6.0).reshape(3, 2) + 1, "b": jnp.ones(2)}
  grads = {"w": jnp.full((3, 2), 0.5), "b": jnp.ones(2)}
  tx = train.make_optimizer("lars", weight_decay=1e-4)
  state = tx.init(params)
  state.hyperparams["learning_rate"] = jnp.asarray(0.3)
  got, _ = tx.update(grads, state, params)
  ref = legw.lars(0.3, momentum=0.9, weight_decay=1e-4)
  want, _ = ref.update(grads, ref.init(params), params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, want)


class _Tiny(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    return nn.Dense(10)(x.reshape(x.shape[0], -1))


def _tiny_data(n=256, seed=0):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, 10, n).astype(np.int32)
  x = (rng.normal(size=(n, 28, 28)) * 0.1).astype(np.float32)
  x[np.arange(n), 0, y] += 1.0  # the label, written in the first row
  return x, y


@pytest.mark.parametrize("scan_epoch", [True, False])
def test_train_run_learns_and_flags_divergence(scan_epoch):
  x, y = _tiny_data()
  trainer = train.Trainer(_Tiny(), train.make_optimizer("momentum"), scan_epoch=scan_epoch)
  ev = train.prepare_eval(x[:100], y[:100], chunk=64)
  xd, yd = jnp.asarray(x), jnp.asarray(y)
  lrs = np.full(4 * 8, 0.1, np.float32)
  res = train.train_run(trainer, xd, yd, ev, batch_size=32, learning_rates=lrs, num_epochs=4)
  loop = train.Trainer(_Tiny(), train.make_optimizer("momentum"), scan_epoch=not scan_epoch)
  same = train.train_run(loop, xd, yd, ev, batch_size=32, learning_rates=lrs, num_epochs=4)
  np.testing.assert_allclose(same.train_loss_per_epoch, res.train_loss_per_epoch, rtol=1e-4)
  assert same.test_accuracy == pytest.approx(res.test_accuracy, abs=1e-6)
  assert not res.diverged and res.epochs_run == 4 and res.steps == 32
  assert res.train_loss_per_epoch[-1] < res.train_loss_per_epoch[0]
  assert res.test_accuracy > 0.3 and res.samples_per_second > 0
  bad = train.train_run(
    trainer, xd, yd, ev, batch_size=32, num_epochs=4, learning_rates=np.full(32, np.inf, np.float32)
  )
  assert bad.diverged and bad.epochs_run < 4
  with pytest.raises(ValueError, match="learning rates"):
    train.train_run(trainer, xd, yd, ev, batch_size=32, learning_rates=lrs[:5], num_epochs=4)


def test_prepare_eval_masks_the_padding():
  x, y = _tiny_data(n=10)
  xs, ys, mask = train.prepare_eval(x, y, chunk=4)
  assert xs.shape == (3, 4, 28, 28) and int(mask.sum()) == 10


@pytest.mark.parametrize("scan_epoch", [True, False])
def test_pipeline_check_reports_both_rates(scan_epoch):
  x, y = _tiny_data()
  trainer = train.Trainer(_Tiny(), train.make_optimizer("adam"), scan_epoch=scan_epoch)
  r = train.pipeline_check(trainer, jnp.asarray(x), jnp.asarray(y), batch_size=64, repeats=1)
  assert r["epoch_samples_per_second"] > 0 and r["resident_samples_per_second"] > 0


@pytest.mark.slow
def test_pipeline_check_command_writes_one_row_per_batch(tmp_path):
  args = ["--quick", "--pipeline-check", "--out-dir", str(tmp_path), "--no-progress"]
  assert bs_main.main(args) == 0
  with open(tmp_path / "mnist_lstm-mnist5k-pipeline.json") as f:
    rows = json.load(f)
  assert [r["batch_size"] for r in rows] == list(bs_main.QUICK["batch_sizes"])
  assert all(r["ratio"] > 0 and r["optimizer"] == "momentum" for r in rows)


def test_format_table_marks_divergence():
  rows = [
    dict(method=m, batch_size=b, base_batch_size=8, test_accuracy=a, diverged=d)
    for m, b, a, d in [
      ("legw", 8, 0.9, False),
      ("legw", 256, 0.88, False),
      ("linear", 8, 0.9, False),
      ("linear", 256, 0.1, True),
    ]
  ]
  table = bs_report.format_table(rows)
  assert "| 256 | 32 | 88.0 | 10.0* |" in table


def test_format_table_marks_a_finite_blow_up():
  def row(method, acc, losses):
    return dict(
      method=method,
      batch_size=256,
      base_batch_size=8,
      test_accuracy=acc,
      diverged=False,
      train_loss_per_epoch=losses,
    )

  rows = [row("legw", 0.88, [2.1, 1.4, 2.4, 0.4]), row("linear", 0.1, [11.4, 68.3, 98.0])]
  assert [bs_report.blew_up(r) for r in rows] == [
    False,
    True,
  ]  # a bump in the middle is not a blow-up
  assert "| 256 | 32 | 88.0 | 10.0† |" in bs_report.format_table(rows)
  nan = dict(rows[1], diverged=True, train_loss_per_epoch=[11.4, float("nan")])
  assert not bs_report.blew_up(nan) and "10.0* |" in bs_report.format_table([rows[0], nan])


def test_format_table_writes_blown_up_perplexity_compactly():
  rows = [
    dict(
      method=m,
      batch_size=b,
      base_batch_size=20,
      metric="perplexity",
      test_perplexity=p,
      diverged=False,
    )
    for m, b, p in [
      ("legw", 20, 431.14),
      ("legw", 640, 951.6),
      ("linear", 20, 431.14),
      ("linear", 640, 1.5e175),
    ]
  ]
  table = bs_report.format_table(rows)
  assert "| 640 | 32 | 951.6 | 1.5e+175 |" in table, table


@pytest.mark.slow
def test_quick_sweep_end_to_end(tmp_path, capsys):
  t0 = time.perf_counter()
  assert bs_main.main(["--quick", "--out-dir", str(tmp_path), "--no-progress"]) == 0
  elapsed = time.perf_counter() - t0
  out = capsys.readouterr().out
  assert "| batch | k | legw | linear | none | adam |" in out
  rows = json.loads((tmp_path / "mnist_lstm-mnist5k.json").read_text())
  assert isinstance(rows, list)
  quick = bs_main.QUICK
  assert {(r["method"], r["batch_size"]) for r in rows} == {
    (m, b) for m in ("legw", "linear", "none", "adam") for b in quick["batch_sizes"]
  }
  required = (
    "task",
    "dataset",
    "method",
    "batch_size",
    "peak_learning_rate",
    "warmup_epochs",
    "num_epochs",
    "test_accuracy",
    "train_loss",
    "wall_seconds",
    "samples_per_second",
  )
  for r in rows:
    assert all(k in r for k in required)
    assert r["task"] == "mnist_lstm" and r["dataset"] == "mnist5k"
    assert 0.0 <= r["test_accuracy"] <= 1.0 and r["wall_seconds"] > 0
    assert r["num_epochs"] == quick["num_epochs"] and r["train_size"] == quick["max_train_examples"]
  with open(tmp_path / "mnist_lstm-mnist5k.csv") as f:
    assert len(list(csv.DictReader(f))) == len(rows)
  png = (tmp_path / "mnist_lstm-mnist5k.png").read_bytes()
  assert png[:8] == b"\x89PNG\r\n\x1a\n"
  print(f"quick sweep: {elapsed:.1f} s")
  # Rerunning the finished sweep trains nothing and rewrites the JSON byte for byte.
  before = (tmp_path / "mnist_lstm-mnist5k.json").read_bytes()
  assert bs_main.main(["--quick", "--out-dir", str(tmp_path), "--no-progress"]) == 0
  assert "training 0" in capsys.readouterr().out
  assert (tmp_path / "mnist_lstm-mnist5k.json").read_bytes() == before


def test_commands_write_outside_the_tracked_tree_by_default():
  import os
  import subprocess

  from benchmarks import RUNS_DIR
  from benchmarks.curvature import common as curvature_common
  from benchmarks.guides import common as guides_common
  from benchmarks.large_batch_tuning import main as lbt_main
  from benchmarks.paper_methods import main as paper_methods

  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  assert bs_main.build_parser().parse_args([]).out_dir == RUNS_DIR == sweep.DEFAULT_OUT_DIR
  assert lbt_main.build_parser().parse_args([]).out_dir == RUNS_DIR
  assert paper_methods.build_parser().parse_args(["discard"]).out_dir == RUNS_DIR
  for d in (curvature_common.OUT_DIR, guides_common.OUT_DIR):
    assert d.startswith(RUNS_DIR + os.sep)
  probe = os.path.join(os.path.relpath(RUNS_DIR, root), "x.json")
  ignored = subprocess.run(["git", "check-ignore", "-q", probe], cwd=root)
  assert ignored.returncode == 0, "benchmarks/runs/ must be ignored by git"


def test_default_command_plans_every_run_of_the_committed_headline_results():
  """The README's headline table is generated from mnist_lstm-mnist5k.json: the default
  command plans exactly the (method, batch, seed) runs of that file at batch 8 and 512."""
  args = bs_main.build_parser().parse_args([])
  config = bs_main.config_from_args(args)
  planned = set()
  for cfg in sweep.headline_configs(config):
    for r in sweep.plan_runs(cfg, train_size=4096):
      planned.add((r["method"], r["batch_size"], r["seed"]))
  rows = sweep.load_rows(os.path.join(sweep.RESULTS_DIR, "mnist_lstm-mnist5k.json"))
  committed = {(r["method"], r["batch_size"], r["seed"]) for r in rows}
  assert planned == committed


def test_compare_with_reference_reports_each_differing_cell():
  rows = [
    dict(run_key="a", method="legw", lr_rule="r", batch_size=8, seed=0, test_accuracy=0.9),
    dict(run_key="b", method="legw", lr_rule="r", batch_size=512, seed=0, test_accuracy=0.8),
    dict(run_key="c", method="none", lr_rule="r", batch_size=512, seed=0, test_accuracy=0.7),
  ]
  same = bs_report.compare_with_reference(rows, [dict(r) for r in rows[:2]])
  assert (same["compared"], same["identical"], same["diffs"]) == (2, 2, [])
  assert same["not_in_reference"] == 1
  assert "all agree exactly" in bs_report.format_comparison(same, "ref.json")
  ref = [dict(rows[0]), dict(rows[1], test_accuracy=0.75)]
  cmp = bs_report.compare_with_reference(rows, ref)
  assert cmp["identical"] == 1 and cmp["max_abs_diff"] == pytest.approx(0.05)
  text = bs_report.format_comparison(cmp, "ref.json")
  assert "1 differ (max |difference| 5.00 points)" in text
  assert "legw batch 512 seed 0: 80.00 here, 75.00 in the reference" in text


def _row(opt, lr, seed, acc, test_size=512):
  return dict(
    optimizer=opt, base_learning_rate=lr, seed=seed, test_accuracy=acc, test_size=test_size
  )


def test_selection_rules_argmax_and_one_standard_error():
  # momentum: 0.1 has the best mean (0.90); its SE over 3 seeds is 0.01/sqrt(3) * ...
  accs = {
    0.05: (0.885, 0.895, 0.890),
    0.1: (0.89, 0.90, 0.91),
    0.2: (0.895, 0.885, 0.893),
    0.4: (0.80, 0.82, 0.81),
  }
  rows = [_row("momentum", lr, s, a) for lr, v in accs.items() for s, a in enumerate(v)]
  sel = tuning.select_learning_rates(rows)["momentum"]
  se = np.std(accs[0.1], ddof=1) / math.sqrt(3)
  assert sel["argmax"] == 0.1 and sel["se_kind"] == "seeds"
  assert sel["standard_error"] == pytest.approx(se)
  # 0.2's mean (0.891) is within 0.90 - se (0.8942)? No: 0.891 < 0.8942, so one_se = argmax.
  assert sel["one_se"] == 0.1
  accs[0.2] = (0.899, 0.893, 0.898)  # mean 0.8967 >= 0.8942: now the larger LR is picked
  rows = [_row("momentum", lr, s, a) for lr, v in accs.items() for s, a in enumerate(v)]
  sel = tuning.select_learning_rates(rows)["momentum"]
  assert (sel["argmax"], sel["one_se"]) == (0.1, 0.2)
  assert sel["grid"][0.2]["n"] == 3 and sel["grid"][0.2]["mean"] == pytest.approx(0.8966667)
  # One seed: the binomial standard error of the best accuracy on n_val examples.
  one = [
    _row("adam", 1e-3, 0, 0.9, test_size=400),
    _row("adam", 2e-3, 0, 0.886, test_size=400),
    _row("adam", 4e-3, 0, 0.87, test_size=400),
    _row("adam", 5e-4, 0, 0.9, test_size=400),
  ]
  sel = tuning.select_learning_rates(one)["adam"]
  assert sel["se_kind"] == "binomial" and sel["standard_error"] == pytest.approx(0.015)
  assert sel["argmax"] == 5e-4  # a tie goes to the smaller LR
  assert sel["one_se"] == 2e-3  # 0.886 >= 0.885; 0.87 is not
  table = tuning.format_tuning(one)
  assert "| adam | 0.0005 | 90.00 ± 0.00 | 1 | argmax |" in table
  assert "| adam | 0.002 | 88.60 ± 0.00 | 1 | one_se |" in table
  assert "- adam: best mean 90.00%, one standard error 1.50 points (binomial)" in table


def test_format_table_reports_mean_and_std_over_seeds():
  rows = [
    dict(method="legw", batch_size=b, base_batch_size=8, test_accuracy=a, diverged=False, seed=s)
    for b, s, a in [(8, 0, 0.9), (8, 1, 0.92), (8, 2, 0.94), (512, 0, 0.8)]
  ]
  table = bs_report.format_table(rows)
  assert "| 8 | 1 | 92.0 ± 2.0 (n=3) |" in table
  assert "| 512 | 64 | 80.0 |" in table
  # Two selection rules: one column per (method, rule).
  rows2 = [dict(r, lr_rule="argmax") for r in rows] + [
    dict(rows[-1], lr_rule="one_se", test_accuracy=0.5)
  ]
  table = bs_report.format_table(rows2)
  assert "| batch | k | legw [argmax] | legw [one_se] |" in table
  assert "| 512 | 64 | 80.0 | 50.0 |" in table


def test_plan_sweeps_every_recorded_rule_and_shares_equal_runs():
  base = tasks.TASKS["mnist_lstm"].baselines["mnist5k"]
  rules = {"argmax": {"momentum": 0.01, "adam": 0.001}, "one_se": {"momentum": 0.04, "adam": 0.001}}
  patched = dataclasses.replace(base, rule_learning_rates=rules)
  task = dataclasses.replace(
    tasks.TASKS["mnist_lstm"], baselines={**tasks.TASKS["mnist_lstm"].baselines, "mnist5k": patched}
  )
  old = tasks.TASKS["mnist_lstm"]
  tasks.TASKS["mnist_lstm"] = task
  try:
    runs = sweep.plan_runs(sweep.SweepConfig(methods=("legw", "adam"), batch_sizes=(8, 32)), 4096)
    only = sweep.plan_runs(
      sweep.SweepConfig(methods=("legw",), batch_sizes=(8,), lr_rules=("one_se",)), 4096
    )
    with pytest.raises(ValueError, match="lr_rules"):
      sweep.plan_runs(sweep.SweepConfig(lr_rules=("median",)), 4096)
  finally:
    tasks.TASKS["mnist_lstm"] = old
  assert len(runs) == 8
  by = {(r["lr_rule"], r["method"], r["batch_size"]): r for r in runs}
  assert by[("one_se", "legw", 32)]["peak_learning_rate"] == pytest.approx(0.08)
  assert by[("argmax", "legw", 32)]["peak_learning_rate"] == pytest.approx(0.02)
  # Adam's LR is the same under both rules: one run each, shared.
  assert by[("argmax", "adam", 32)]["run_key"] == by[("one_se", "adam", 32)]["run_key"]
  assert len({r["run_key"] for r in runs}) == 6
  assert [(r["lr_rule"], r["base_learning_rate"]) for r in only] == [("one_se", 0.04)]


def test_validation_split_is_seeded_disjoint_and_never_the_test_set():
  cfg = sweep.SweepConfig(validation_fraction=0.125)
  x_tr, y_tr, x_val, y_val = sweep.load_data(cfg)
  full = sweep.load_data(sweep.SweepConfig())
  assert len(x_val) == 512 and len(x_tr) == 4096 - 512
  assert len(x_tr) + len(x_val) == len(full[0])
  flat = lambda a: {a_i.tobytes() for a_i in a}
  assert not flat(x_val) & flat(x_tr)
  assert not flat(x_val) & flat(full[2])  # the test images are not in it
  again = sweep.load_data(cfg)
  np.testing.assert_array_equal(again[2], x_val)


def test_results_file_of_another_sweep_is_refused(tmp_path):
  cfg = sweep.SweepConfig(methods=("legw",), batch_sizes=(8,), num_epochs=1)
  runs = sweep.plan_runs(cfg, 4096)
  path = tmp_path / "r.json"
  path.write_text(json.dumps([dict(runs[0], num_epochs=20, test_accuracy=0.5)]))
  with pytest.raises(ValueError, match="another sweep.*num_epochs"):
    sweep.execute(runs, cfg, results_path=str(path), progress=False)


@pytest.mark.slow
def test_killed_sweep_resumes_where_it_stopped(tmp_path, capsys):
  """A sweep killed after its first finished run loses nothing already written.

  The first invocation (a subprocess, in-process training) is SIGKILLed as
  soon as the results file holds a run; the same command rerun with --jobs 2
  trains only the rest, keeps the first rows untouched, and a run trained
  in a worker process equals the same run trained in this process.
  """
  import os
  import signal
  import subprocess
  import sys

  out = tmp_path / "out"
  args = ["--quick", "--out-dir", str(out), "--no-progress"]
  path = out / "mnist_lstm-mnist5k.json"
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.Popen(
    [sys.executable, "-m", "benchmarks.batch_scaling", *args],
    cwd=root,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  try:
    deadline = time.time() + 240
    while not path.exists() and time.time() < deadline and proc.poll() is None:
      time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
  finally:
    proc.wait()
  first = json.loads(path.read_text())
  first_keys = {r["run_key"] for r in first}
  assert 1 <= len(first_keys) < 6, "the sweep was not interrupted midway"
  assert bs_main.main(args + ["--jobs", "2"]) == 0
  assert f"{len(first_keys)} of 6 runs already done" in capsys.readouterr().out
  rows = json.loads(path.read_text())
  assert len(rows) == 8 and len({r["run_key"] for r in rows}) == 6
  by_id = {(r["run_key"], r["method"]): r for r in rows}
  for r in first:  # untouched: same measurements, not retrained
    assert by_id[(r["run_key"], r["method"])]["wall_seconds"] == r["wall_seconds"]
  # Rerunning once more trains nothing.
  assert bs_main.main(args) == 0
  assert "6 of 6 runs already done; training 0" in capsys.readouterr().out
  # A run trained by a worker process equals the same run trained here.
  worker_row = next(r for r in rows if r["run_key"] not in first_keys)
  cfg = bs_main.config_from_args(bs_main.build_parser().parse_args(args))
  again = sweep.train_one(worker_row, cfg)
  assert again["test_accuracy"] == worker_row["test_accuracy"]
  np.testing.assert_allclose(
    again["train_loss_per_epoch"], worker_row["train_loss_per_epoch"], rtol=1e-6
  )


def test_baselines_are_what_the_fixed_rules_pick_from_the_committed_grids():
  import os

  results = sweep.RESULTS_DIR
  checked = 0
  for task in tasks.TASKS.values():
    for dataset, base in task.baselines.items():
      if not base.rule_learning_rates:
        continue
      path = os.path.join(results, f"{task.name}-{dataset}-tuning.json")
      sel = tuning.select_learning_rates(json.load(open(path)))
      for rule, lrs in base.rule_learning_rates.items():
        for opt, lr in lrs.items():
          assert sel[opt][rule] == lr, (task.name, dataset, rule, opt)
      checked += 1
  assert checked >= 1


def test_rules_that_agree_are_one_rule():
  base = tasks.TASKS["mnist_lstm"].baselines["mnist5k"]
  same = {"argmax": {"momentum": 0.02, "adam": 0.001}, "one_se": {"momentum": 0.02, "adam": 0.001}}
  old = tasks.TASKS["mnist_lstm"]
  tasks.TASKS["mnist_lstm"] = dataclasses.replace(
    old, baselines={**old.baselines, "mnist5k": dataclasses.replace(base, rule_learning_rates=same)}
  )
  try:
    runs = sweep.plan_runs(sweep.SweepConfig(methods=("legw",), batch_sizes=(8, 32)), 4096)
  finally:
    tasks.TASKS["mnist_lstm"] = old
  assert [r["lr_rule"] for r in runs] == ["argmax=one_se"] * 2


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = "benchmarks/results"


@pytest.fixture
def at_root(monkeypatch):
  monkeypatch.chdir(ROOT)


def test_the_readme_tables_of_the_committed_mnist5k_sweep(at_root):
  path = f"{RESULTS}/mnist_lstm-mnist5k.json"
  rows = sweep.load_rows(path)
  table = bs_report.format_table(rows)
  assert table.splitlines()[0] == "| batch | k | legw | linear | none | adam |"
  assert "| 512 | 64 | 95.2 ± 0.6 (n=3) | 9.8 ± 1.1 (n=3)† | 91.9 | 91.8 |" in table
  settings = bs_report.format_settings(rows, batches=(8, 512))
  # The base batch's one run is shared by three methods; seeds 1 and 2 are legw's and linear's.
  assert (
    "| legw = linear = none | 8 | 0.025 | 0.0625 / 32 | 12,800 | 0.0171, 0.00116, 0.000854 | "
    "89.9, 96.0, 95.9 |" in settings
  )
  assert (
    "| linear | 512 | 1.6 | 0.0625 / 0 | 200 | 20.3, 39.5, 166.7 | 9.4†, 9.1†, 11.1† |" in settings
  )
  assert "| 32 |" not in settings
  caption = bs_report.format_caption(rows, path)
  assert "CPU, 2 cores, jax 0.10.2: 20 runs, 56 min of training in all" in caption
  assert caption.endswith("(`benchmarks/results/mnist_lstm-mnist5k.json`).")
  assert bs_report.render(path, batches=(8, 512)) == "\n\n".join([table, caption, settings])


def test_render_picks_the_table_of_each_kind_of_results_file(at_root):
  tuning_text = bs_report.render(f"{RESULTS}/mnist_lstm-fashion_mnist-tuning.json")
  assert "| momentum | 0.1 | 90.83 ± 0.36 | 2 | argmax, one_se |" in tuning_text
  assert "Validation accuracy % (a seeded 12.5% of the training set held out)" in tuning_text
  pipeline = bs_report.render(f"{RESULTS}/mnist_lstm-mnist5k-pipeline.json")
  assert "| 8 | 1660 | 1578 | 1.05 |" in pipeline
  lm = bs_report.render(f"{RESULTS}/lstm_lm-fortunes.json")
  assert "| 640 | 32 | 951.6 | 1.52e+175† |" in lm and "Test perplexity, mean ± std" in lm
  assert "| legw = linear | 20 | 1 | 0.03125 / 10 | 960 | 6.2 | 431.1 |" in lm


def test_from_json_prints_a_tuning_grid_without_writing(tmp_path, capsys):
  import shutil

  shutil.copy(os.path.join(ROOT, RESULTS, "mnist_lstm-mnist5k-tuning.json"), tmp_path / "grid.json")
  assert bs_main.main(["--from-json", str(tmp_path / "grid.json")]) == 0
  assert "| momentum | 0.025 | 97.07 ± 0.34 | 3 | argmax, one_se |" in capsys.readouterr().out
  assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.json"]


def test_paper_methods_tables_of_the_committed_results(at_root):
  from benchmarks.paper_methods import experiments as pm

  discard = pm.render(f"{RESULTS}/paper_methods-discard.json")
  assert "| 0.3 | 1434 | 3.050e-03 | 0.483 | 7.738e-03 | 1.746 |" in discard
  assert "Measured by `python -m benchmarks.paper_methods discard` on CPU, 2 cores" in discard
  schedule = pm.render(f"{RESULTS}/paper_methods-batch-schedule.json")
  assert (
    "| batch 64 for epoch 1, then 512 | 64 x 1: 64 steps, LR 0.0984; 512 x 11: 88 steps, "
    "LR 0.283 | 152 | 2 | 94.2 |" in schedule
  )
  assert "`python -m benchmarks.paper_methods batch-schedule --epochs 12`" in schedule
