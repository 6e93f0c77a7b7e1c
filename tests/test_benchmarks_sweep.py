"""benchmarks.batch_scaling / train / tasks: the plan, the training loop, the quick sweep."""

import csv
import json
import math
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import legw
from benchmarks import batch_scaling as bs
from benchmarks import tasks, train


def _plan(**kw):
  cfg = bs.SweepConfig(task="mnist_lstm", dataset="mnist5k", **kw)
  return {(r["method"], r["batch_size"]): r for r in bs.plan_runs(cfg, train_size=4096)}


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
    for dataset, base in task.baselines.items():
      assert base.base_batch_size == min(base.batch_sizes)
      assert max(base.batch_sizes) / base.base_batch_size >= 32
      for opt in set(task.optimizers.values()):
        assert base.learning_rates[opt] > 0
  assert tasks.TASKS["cnn_lars"].optimizer_for("legw") == "lars"
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
  bad = train.train_run(trainer, xd, yd, ev, batch_size=32, num_epochs=4,
                        learning_rates=np.full(32, np.inf, np.float32))
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


def test_format_table_marks_divergence():
  rows = [dict(method=m, batch_size=b, base_batch_size=8, test_accuracy=a, diverged=d)
          for m, b, a, d in [("legw", 8, 0.9, False), ("legw", 256, 0.88, False),
                             ("linear", 8, 0.9, False), ("linear", 256, 0.1, True)]]
  table = bs.format_table(rows)
  assert "| 256 | 32 | 88.0 | 10.0* |" in table


def test_format_table_writes_blown_up_perplexity_compactly():
  rows = [dict(method=m, batch_size=b, base_batch_size=20, metric="perplexity",
               test_perplexity=p, diverged=False)
          for m, b, p in [("legw", 20, 431.14), ("legw", 640, 951.6),
                          ("linear", 20, 431.14), ("linear", 640, 1.5e175)]]
  table = bs.format_table(rows)
  assert "| 640 | 32 | 951.6 | 1.5e+175 |" in table, table


def test_quick_sweep_end_to_end(tmp_path, capsys):
  t0 = time.perf_counter()
  assert bs.main(["--quick", "--out-dir", str(tmp_path), "--no-progress"]) == 0
  elapsed = time.perf_counter() - t0
  out = capsys.readouterr().out
  assert "| batch | k | legw (acc %) | linear (acc %) | none (acc %) | adam (acc %) |" in out
  rows = json.loads((tmp_path / "mnist_lstm-mnist5k.json").read_text())
  assert isinstance(rows, list)
  quick = bs.QUICK
  assert {(r["method"], r["batch_size"]) for r in rows} == {
      (m, b) for m in ("legw", "linear", "none", "adam") for b in quick["batch_sizes"]}
  required = ("task", "dataset", "method", "batch_size", "peak_learning_rate", "warmup_epochs",
              "num_epochs", "test_accuracy", "train_loss", "wall_seconds", "samples_per_second")
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
