"""The measured-scaling runner: AdaScale trainer, resume, LARS plumbing, report."""

import csv
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import legw
from benchmarks.batch_scaling import sweep
from benchmarks.batch_scaling.train import Trainer, make_optimizer
from benchmarks.checkpoint import EpochCheckpoint
from benchmarks.measured_scaling import main as ms_main
from benchmarks.measured_scaling import protocol as p
from benchmarks.measured_scaling import records, report
from benchmarks.measured_scaling import train as ms


class Tiny(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    x = nn.tanh(nn.Dense(8)(x.reshape(x.shape[0], -1)))
    return nn.Dense(3)(x)


def _data(n=32, d=5, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)
  return jnp.asarray(x), jnp.asarray(y)


def test_adascale_trainer_at_scale_one_is_the_momentum_trainer():
  x, y = _data()
  batch, steps = 8, 3
  schedule = optax.linear_schedule(0.0, 0.3, 2)
  lrs = np.asarray([schedule(i) for i in range(steps)], np.float32)
  perm = np.arange(steps * batch).reshape(steps, batch)
  plain = Trainer(Tiny(), make_optimizer("momentum"))
  tx = legw.adascale(schedule, base_batch_size=batch, batch_size=batch, momentum=0.9)
  ada = ms.AdaScaleTrainer(Tiny(), tx, k=2, base_steps=100)
  key = jax.random.key(0)
  s0 = plain.init(key, x[:1])
  s1 = ada.init(key, x[:1])
  init = [np.array(a, copy=True) for a in jax.tree.leaves(s0.params)]
  s0, _ = plain.run_epoch(s0, x, y, perm, lrs)
  s1, (_, (gain, progress, active)) = ada.run_epoch(s1, x, y, perm, np.zeros(steps, np.float32))
  np.testing.assert_allclose(np.asarray(gain), 1.0)
  np.testing.assert_allclose(np.asarray(progress), [1.0, 2.0, 3.0])
  assert np.asarray(active).all()
  for a, b in zip(jax.tree.leaves(s0.params), jax.tree.leaves(s1.params)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
  assert not all(np.allclose(a, b) for a, b in zip(init, jax.tree.leaves(s0.params)))


def test_adascale_trainer_stops_at_the_base_steps_inside_the_epoch():
  x, y = _data(48)
  batch, steps, base_steps = 8, 6, 2.5
  tx = legw.adascale(0.1, base_batch_size=4, batch_size=batch, momentum=0.9)
  ada = ms.AdaScaleTrainer(Tiny(), tx, k=2, base_steps=base_steps)
  state = ada.init(jax.random.key(1), x[:1])
  perm = np.arange(steps * batch).reshape(steps, batch)
  state, (_, (gain, progress, active)) = ada.run_epoch(
    state, x, y, perm, np.zeros(steps, np.float32)
  )
  progress, active = np.asarray(progress), np.asarray(active)
  ran = int(active.sum())
  assert 1 <= ran < steps and active[:ran].all() and not active[ran:].any()
  assert progress[ran - 1] >= base_steps and (ran == 1 or progress[ran - 2] < base_steps)
  # the skipped steps changed nothing
  np.testing.assert_array_equal(progress[ran - 1 :], progress[ran - 1])
  assert float(optax.tree.get(state.opt_state, "progress")) == progress[ran - 1]


@pytest.mark.slow
def test_train_adascale_records_the_crossing_step():
  rng = np.random.default_rng(0)
  data = (
    rng.random((32, 28, 28), np.float32), rng.integers(0, 10, 32).astype(np.int32),
    rng.random((16, 28, 28), np.float32), rng.integers(0, 10, 16).astype(np.int32),
  )  # fmt: skip
  config = dict(
    task=p.TASK, base_batch_size=4, batch_size=8, num_samples=2, momentum=0.9,
    learning_rate=0.1, warmup_epochs=1 / 32, num_epochs=25, decay="constant", power=2.0,
    schedule_kwargs={}, base_steps_per_epoch=64, base_steps=5.0,
  )  # fmt: skip
  out = ms.train_adascale(config, 0, data, progress=False)
  assert out["stopped"] == "progress" and out["crossing_step"] == out["steps"] == len(out["gain"])
  assert out["progress"][-1] >= 5.0 > out["progress"][-2]
  assert out["epochs"][-1]["step"] == out["steps"] and out["examples"] == 8 * out["steps"]
  assert all(1.0 <= g <= 2.0 for g in out["gain"])


def _fake_train(calls):
  def train_fn(config, seed, checkpoint=None):
    calls.append((config["lr"], seed))
    acc = 0.5 + 0.1 * seed
    return dict(
      epochs=[dict(epoch=1, step=10, examples=80, train_loss=1, test_loss=1, test_accuracy=acc)],
      steps=10, examples=80, epochs_run=1, final_accuracy=acc, accuracy_split="test",
      eval_size=100,
    )  # fmt: skip

  return train_fn


def test_resume_skips_finished_runs(tmp_path):
  out = str(tmp_path)
  calls = []
  planned = [("a", dict(lr=0.1), 0), ("a", dict(lr=0.1), 1)]
  records.execute_runs(out, "noise-base", planned, _fake_train(calls), progress=False)
  assert calls == [(0.1, 0), (0.1, 1)]
  planned.append(("b", dict(lr=0.2), 0))
  doc = records.execute_runs(out, "noise-base", planned, _fake_train(calls), progress=False)
  assert calls[2:] == [(0.2, 0)] and len(doc["runs"]) == 3
  with open(records.phase_path(out, "noise-base")) as f:
    assert [r["seed"] for r in json.load(f)["runs"]] == [0, 1, 0]
  with open(os.path.join(out, "noise-base.csv")) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 3 and rows[2]["label"] == "b"
  records.execute_runs(out, "noise-base", planned, _fake_train(calls), progress=False)
  assert len(calls) == 3
  run = doc["runs"][0]
  for field in ("config", "seed", "epochs", "steps", "examples", "epochs_run", "wall_seconds"):
    assert field in run
  assert {"platform", "cpu_count", "jax_version", "git_commit"} <= set(run["environment"])


def test_an_interrupted_phase_keeps_its_finished_runs(tmp_path):
  out, calls = str(tmp_path), []
  ok = _fake_train(calls)

  def flaky(config, seed, checkpoint):
    if seed == 1:
      raise KeyboardInterrupt
    return ok(config, seed)

  planned = [("a", dict(lr=0.1), 0), ("a", dict(lr=0.1), 1)]
  with pytest.raises(KeyboardInterrupt):
    records.execute_runs(out, "mnist5k", planned, flaky, progress=False)
  assert len(records.load_phase(out, "mnist5k")["runs"]) == 1


def _images(n, seed=0):
  """Random 28x28 images and labels, ``n`` to train on and 16 to test on."""
  rng = np.random.default_rng(seed)
  x = rng.random((n + 16, 28, 28), np.float32)
  y = rng.integers(0, 10, n + 16).astype(np.int32)
  return x[:n], y[:n], x[n:], y[n:]


class Interrupt(Exception):
  """A process killed after some epochs (an exception from the epoch's callback)."""


def _interrupted(train, checkpoint, after_epochs):
  """Runs ``train(checkpoint)`` with saves that raise once ``after_epochs`` are saved."""
  save, count = checkpoint.save, []

  def save_then_stop(state, rng):
    save(state, rng)
    count.append(1)
    if len(count) == after_epochs:
      raise Interrupt

  checkpoint.save = save_then_stop
  with pytest.raises(Interrupt):
    train(checkpoint)


def _assert_same_run(a: dict, b: dict):
  for key in ("epochs", "steps", "examples", "final_accuracy", "gain", "progress"):
    if key in a:
      assert a[key] == b[key], key


def test_an_adascale_run_resumes_bit_for_bit_from_its_checkpoint(tmp_path):
  data = _images(48)
  config = dict(
    task=p.TASK, base_batch_size=4, batch_size=8, num_samples=2, momentum=0.9,
    learning_rate=0.1, warmup_epochs=1 / 32, num_epochs=25, decay="constant", power=2.0,
    schedule_kwargs={}, base_steps_per_epoch=12, base_steps=50.0,
  )  # fmt: skip

  def train(ck):
    return ms.train_adascale(config, 3, data, progress=False, checkpoint=ck)

  whole = train(None)
  assert len(whole["epochs"]) >= 3
  rid = records.run_id(config, 3)
  path = records.checkpoint_path(str(tmp_path), "adascale-8192", rid)
  _interrupted(train, EpochCheckpoint(path, rid), after_epochs=2)
  ck = EpochCheckpoint(path, rid)
  assert ck.resumed and len(ck.logs["loop"]["epochs"]) == 2
  (line,) = records.in_progress(str(tmp_path))  # what --status prints
  progress = ck.logs["loop"]["epochs"][-1]["progress"]
  assert line.startswith(
    f"adascale-8192: seed 3, batch 8: 2 epochs, progress {progress:,.0f} of 50"
  )
  ck.logs["loop"]["epochs"][0]["test_accuracy"] = -1.0  # not trained again: kept as saved
  resumed = train(ck)
  assert resumed["epochs"][0]["test_accuracy"] == -1.0
  resumed["epochs"][0]["test_accuracy"] = whole["epochs"][0]["test_accuracy"]
  _assert_same_run(resumed, whole)
  with pytest.raises(ValueError, match="another run"):
    EpochCheckpoint(path, "other run")


def test_a_planned_run_resumes_bit_for_bit_through_execute_runs(tmp_path):
  data = _images(64)
  cfg = sweep.SweepConfig(methods=("legw",), batch_sizes=(8, 16), num_epochs=3)
  run = next(r for r in sweep.plan_runs(cfg, 64) if r["batch_size"] == 16)
  ms._TRAINERS.clear()
  whole = ms.train_planned(run, data, progress=False)
  out = str(tmp_path)
  planned = [("x", run, 0)]

  def train_fn(c, s, ck):
    return ms.train_planned(dict(c, seed=s), data, False, ck)

  rid = records.run_id(run, 0)
  ck_path = records.checkpoint_path(out, "legw-budget", rid)
  _interrupted(lambda ck: train_fn(run, 0, ck), EpochCheckpoint(ck_path, rid), after_epochs=1)
  assert os.path.exists(ck_path)
  (line,) = records.in_progress(out)
  assert line.startswith("legw-budget: seed 0, batch 16: 1 of 3 epochs, test accuracy ")
  epochs_trained = []
  trainer = next(iter(ms._TRAINERS.values()))
  run_epoch = trainer.run_epoch
  trainer.run_epoch = lambda *a: (epochs_trained.append(1), run_epoch(*a))[1]
  doc = records.execute_runs(out, "legw-budget", planned, train_fn, progress=False)
  assert len(epochs_trained) == 2
  assert not os.path.exists(ck_path) and doc["runs"][0]["resumed"] and not records.in_progress(out)
  (resume,) = doc["runs"][0]["resumes"]
  assert resume["environment"]["jax_version"] == jax.__version__ and resume["wall_seconds"] > 0
  _assert_same_run(doc["runs"][0], whole)
  assert doc["runs"][0]["wall_seconds"] > 0


def test_lars_grid_builds_legw_lars_with_the_protocols_values():
  runs = ms.plan_lars_grid(52_500)
  assert (
    len(runs) == len(p.LARS_GRID) * len(p.LARS_TUNING_SEEDS) == len({r["run_key"] for r in runs})
  )
  assert sorted({r["base_learning_rate"] for r in runs}) == list(p.LARS_GRID)
  assert {r["seed"] for r in runs} == set(p.LARS_TUNING_SEEDS)
  for r in runs:
    assert r["optimizer"] == "lars" and r["batch_size"] == p.BASE_BATCH
    assert r["optimizer_kwargs"] == dict(
      trust_coefficient=p.LARS_TRUST_COEFFICIENT, weight_decay=0.0
    )
    assert r["peak_learning_rate"] == r["base_learning_rate"] and r["split"] == "validation"
    assert r["num_epochs"] == p.BASE_EPOCHS and r["warmup_epochs"] == 1 / 32
    assert r["decay"] == "constant" and r["validation_fraction"] == 0.125
  # make_optimizer("lars", **kwargs) is legw.lars(lr, trust_coefficient=0.001), momentum 0.9
  params = {"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones(2)}}
  grads = jax.tree.map(lambda w: 0.3 * w + 0.1, params)
  tx = make_optimizer(runs[0]["optimizer"], **runs[0]["optimizer_kwargs"])
  state = tx.init(params)
  state.hyperparams["learning_rate"] = jnp.asarray(4.0)
  ref = legw.lars(4.0, trust_coefficient=0.001, weight_decay=0.0, momentum=0.9)
  rstate = ref.init(params)
  for _ in range(2):
    u, state = tx.update(grads, state, params)
    v, rstate = ref.update(grads, rstate, params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), u, v)


def _grid_record(lr, seed, acc):
  return dict(
    run_id=f"{lr}-{seed}", label="lars", seed=seed, final_accuracy=acc, eval_size=7500,
    config=dict(optimizer="lars", base_learning_rate=lr, quick=False),
    epochs=[], steps=1, examples=1, epochs_run=1,
  )  # fmt: skip


def test_lars_picks_refuse_an_incomplete_grid_and_merge_equal_picks(tmp_path):
  out = str(tmp_path)
  runs = [_grid_record(lr, s, 0.8 + 0.001 * i) for i, lr in enumerate(p.LARS_GRID) for s in (0, 1)]
  records.write_phase(out, dict(phase="lars-grid", runs=runs[:-1], summary={}))
  with pytest.raises(RuntimeError, match="lars-grid"):
    ms.lars_picks(out)
  records.write_phase(out, dict(phase="lars-grid", runs=runs, summary={}))
  assert ms.lars_picks(out) == {"argmax=one_se": p.LARS_GRID[-1]}


def test_legw_budget_refuses_an_incomplete_noise_base(tmp_path):
  out = str(tmp_path)
  rec = lambda s: dict(seed=s, config={}, noise_summary=dict(b_noise=1000.0 + s))  # noqa: E731
  records.write_phase(out, dict(phase="noise-base", runs=[rec(0), rec(1)], summary={}))
  with pytest.raises(RuntimeError, match="noise-base"):
    ms.b_noise_from(out)
  records.write_phase(out, dict(phase="noise-base", runs=[rec(0), rec(1), rec(2)], summary={}))
  b, s = ms.b_noise_from(out)
  assert b == 1001.0 and s["budget_epochs"]["8192"] == p.budget_epochs(8192, 1001.0)


def _epochs(n, steps_per_epoch, accs):
  return [
    dict(epoch=i + 1, step=(i + 1) * steps_per_epoch, examples=(i + 1) * steps_per_epoch * 8192,
         train_loss=0.5, test_loss=0.4, test_accuracy=a)
    for i, a in zip(range(n), accs)
  ]  # fmt: skip


def test_report_renders_from_fake_records(tmp_path):
  out = str(tmp_path)

  def rec(seed, config, accs, spe, **extra):
    eps = _epochs(len(accs), spe, accs)
    return dict(
      run_id=str(seed), label="x", seed=seed, config=dict(train_size=60_000, **config), epochs=eps,
      steps=eps[-1]["step"], examples=eps[-1]["examples"], epochs_run=len(eps),
      final_accuracy=accs[-1], eval_size=10000, **extra,
    )  # fmt: skip

  noise = [
    rec(s, dict(method="noise", quick=False), [0.8, 0.88, 0.9], 468,
        records=[dict(step=50 * i, epoch=50 * i / 468, noise_scale=100.0 * i, grad_sq=1.0,
                      trace_cov=100.0 * i) for i in range(1, 9)],
        noise_summary=dict(b_noise=1500.0 + s))
    for s in p.SEEDS
  ]  # fmt: skip
  docs = {
    "noise-base": dict(runs=noise, summary=ms.noise_summary(noise)),
    "adascale-8192": dict(
      runs=[
        rec(
          s,
          dict(method="adascale"),
          [0.7] * 24 + [0.85, 0.89],
          7,
          gain=[1.0, 2.0, 3.0],
          progress=[1.0, 3.0, 6.0],
        )
        for s in p.SEEDS
      ],
      summary={},
    ),
    "legw-budget": dict(
      runs=[rec(s, dict(method="legw", num_epochs=30), [0.8] * 29 + [0.88], 7) for s in p.SEEDS],
      summary={},
    ),
    "lars-8192": dict(
      runs=[rec(s, dict(lr_rule="argmax", base_learning_rate=8.0), [0.86], 7) for s in (0, 1)],
      summary={},
    ),
    "lars-grid": dict(runs=[_grid_record(lr, s, 0.85) for lr in (4.0, 8.0) for s in (0, 1)]),
    "mnist5k": dict(runs=[rec(0, dict(method="adascale"), [0.9], 8)], summary={}),
  }
  for phase, doc in docs.items():
    records.write_phase(out, dict(doc, phase=phase))
  assert ms_main.main(["--report", "--out-dir", out]) == 0
  with open(os.path.join(out, "measured_scaling.md")) as f:
    text = f.read()
  assert "| base: momentum at batch 128, rerun measuring B_simple | 90.0 ± 0.0 | 90.0 | 3 |" in text
  assert "AdaScale 8192, after 25 epochs | 85.0" in text
  assert "LEGW 8192 at the budget (30 epochs)" in text and "base LR 8, picked by argmax" in text
  assert "B_noise 1,501" in text and "picked by" in text
  assert "Adam tuned at 8192" in text and "committed" in text  # the committed rows beside
  rows = report.report_rows(report.load_all(out), report.reference_rows())
  rows = {r["key"]: r for r in rows}
  ada = rows["adascale-8192"]
  assert ada["steps_to_target"] == 26 * 7 and ada["reached"] == 3 and ada["steps"] == 26 * 7
  assert rows["adascale-8192-25"]["reached"] == 0
  # one unit for the epochs column: examples over the training set (an epoch of 8192
  # drops 2,656 images), for the measured and the committed rows alike
  assert rows["adascale-8192-25"]["epochs"] == pytest.approx(25 * 7 * 8192 / 60_000)
  assert rows["ref-legw"]["epochs"] == pytest.approx(175 * 8192 / 60_000)
  # the base rerun reaches 88.7% at epoch 3 (1,404 steps): AdaScale's speed-up 1,404 / 182
  assert rows["base"]["steps_to_target"] == 3 * 468 and "| 7.7× |" in text
  assert "- AdaScale at 8192, run to the base's progress: carries (every seed" in text
  assert "does not carry (a seed at 86.0% < 88.7%); 2 of 3 seeds" in text  # LARS, 2 seeds
  budget = p.budget_epochs(8192, 1501.0) * 7
  assert (
    "does not predict AdaScale's cost: 182 steps (the mean of 182, 182, 182) against a "
    f"budget of {budget:,}" in text
  )
  assert "at 8,192, " in text and "against 182 taken (n = 3" in text  # the exploratory line
  short = report.report_text(out, report.README_KEYS, details=False)  # README.md's
  assert "| AdaScale 8192, after 25 epochs" in short and "Nesterov" not in short
  assert "carries" not in short and "B_noise" not in short
  for png in ("measured_scaling-accuracy.png", "measured_scaling-noise.png"):
    assert os.path.getsize(os.path.join(out, png)) > 1000


def test_implied_steps_follow_adascales_gain():
  # no noise: the gain is 1 and AdaScale would take the base's steps; a base-batch
  # variance equal to |G|^2 (tr(Sigma) = 128 |G|^2): gain 2 / (1 + 1/S) at S = 64
  logs = [dict(step=50 * i, grad_sq=2.0, trace_cov=0.0) for i in range(1, 5)]
  assert report.implied_steps(dict(records=logs), 64) == pytest.approx(200)
  logs = [dict(x, trace_cov=128 * 2.0) for x in logs]
  gain = 2 / (1 + 1 / 64)
  assert report.implied_gains(dict(records=logs), 64) == pytest.approx([gain] * 4, rel=1e-6)
  assert report.implied_steps(dict(records=logs), 64) == pytest.approx(200 / gain, rel=1e-6)
