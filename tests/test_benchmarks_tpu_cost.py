"""benchmarks/costs/tpu_cost.py without compiling: its plan and resume; tpu_report: its tables."""

import os

import pytest

from benchmarks import RESULTS_DIR
from benchmarks.costs import tpu_cost, tpu_report


def test_plan_covers_every_optimizer_tree_and_mesh_once():
  keys = [k for k, _ in tpu_cost.planned(["step"])]
  assert len(keys) == len(set(keys)) == 2 * 3 * len(tpu_cost.OPTIMIZERS)
  assert "step|resnet50|FSDP 8|legw.lars" in keys
  some = [k for k, _ in tpu_cost.planned(["step", "pod"], ["legw.lamb"], ["FSDP 4"])]
  assert some == [
    "step|resnet50|FSDP 4|legw.lamb",
    "step|transformer|FSDP 4|legw.lamb",
    "pod|resnet50|v5e-256|legw.lars",
    "pod|bert-large|v5e-256|legw.lamb",
  ]


def test_table_is_ratios_to_sgd_within_each_group(tmp_path):
  entry = lambda cycles, temp: {"estimated_cycles": cycles, "temp_bytes": temp}
  results = {
    "entries": {
      "step|resnet50|1 chip|optax.sgd(momentum)": entry(1000, 0),
      "step|resnet50|1 chip|legw.lars": entry(1500, 2**20),
      "step|resnet50|FSDP 4|optax.sgd(momentum)": entry(400, 0),
      "step|resnet50|FSDP 4|legw.lars": entry(500, 0),
      "train|resnet50|1 chip|legw.lars": entry(1, 0),
    }
  }
  lines = tpu_report.table(results, "step").splitlines()
  assert lines[0] == "| optimizer | ResNet-50, 1 chip | ResNet-50, FSDP 4 |"
  assert "| legw.lars | 1.500× (1.0 MiB) | 1.250× (0.0 MiB) |" in lines
  path = str(tmp_path / "r.json")
  tpu_cost.save(path, results)
  assert tpu_cost.load(path) == results


def test_tables_of_the_committed_step_results():
  d = tpu_cost.load(os.path.join(RESULTS_DIR, "tpu_cost.json"))
  lines = tpu_report.table(d, "step").splitlines()
  assert lines[0].startswith("| optimizer | ResNet-50, 1 chip | ResNet-50, FSDP 4 |")
  assert lines[2 + list(tpu_cost.OPTIMIZERS).index("legw.lars")].startswith(
    "| legw.lars | 2.237× (12.5 MiB) | 1.891× (17.4 MiB) |"
  )
  one = tpu_report.table(d, "step", ["1 chip"], ["legw.lars", "optax.lars"]).splitlines()
  assert one == [
    "| optimizer | ResNet-50, 1 chip | transformer-like, 1 chip |",
    "|---|---:|---:|",
    "| optax.lars | 3.146× (27.6 MiB) | 2.813× (128.8 MiB) |",
    "| legw.lars | 2.237× (12.5 MiB) | 1.756× (56.1 MiB) |",
  ]
  reduces = tpu_report.allreduce_table(d).splitlines()
  assert "| legw.mclr | 7/9 | 21 |" in reduces and "| optax.lamb | 4 | 20 |" in reduces
  assert "jax 0.10.2, libtpu 0.0.42.1" in tpu_report.caption(d)
  assert "`python -m benchmarks.costs.tpu_cost --parts step ablations" in tpu_report.caption(d)


def test_key_figures_of_the_committed_training_steps():
  train = tpu_cost.load(os.path.join(RESULTS_DIR, "tpu_cost-train.json"))
  step = tpu_cost.load(os.path.join(RESULTS_DIR, "tpu_cost.json"))
  line = tpu_report.train_overheads(train)
  assert "`legw.lars` +1.5%, `optax.lars` +2.6%" in line
  assert "over AdamW's: `legw.lamb` +1.6%, `optax.lamb` +2.9%" in line
  figures = tpu_report.train_key_figures(train, step).splitlines()
  assert figures[0] == f"- {line}"
  assert figures[2].endswith("1.03 M cycles, 0.96% of its ResNet-50 training step")
  assert len(train["commands"]) == 3


def test_run_records_the_command_when_it_compiles(tmp_path, monkeypatch):
  path = str(tmp_path / "r.json")
  monkeypatch.setattr(tpu_cost, "libtpu_version", lambda: "0.0.1")
  monkeypatch.setattr(tpu_cost, "planned", lambda *a: [("step|t|1 chip|o", lambda: {})])
  tpu_cost.run(["step"], path, command="python -m benchmarks.costs.tpu_cost --parts step")
  tpu_cost.run(["step"], path, command="another")  # nothing left to compile
  assert tpu_cost.load(path)["commands"] == ["python -m benchmarks.costs.tpu_cost --parts step"]


def test_train_table_ratios_where_the_baselines_exist():
  entry = lambda cycles, batch: {
    "estimated_cycles": cycles * 1e6,
    "cycles_by_origin": {"forward": 0, "backward": 0, "optimizer": 3e6, "unattributed": 0},
    "per_chip_batch": batch,
    "argument_bytes": 2**30,
    "temp_bytes": 2**31,
  }
  results = {
    "entries": {
      "train|resnet50|1 chip|optax.sgd(momentum)": entry(100, 128),
      "train|resnet50|1 chip|legw.lars": entry(101, 128),
      "train|bert-base|1 chip|optax.adamw": entry(200, 32),
      "train|bert-base|1 chip|legw.lamb": entry(202, 32),
      "step|resnet50|1 chip|legw.lars": entry(1, 0),
    }
  }
  lines = tpu_report.train_table(results).splitlines()
  assert len(lines) == 6
  # 101 M cycles at 197 TFLOP/s / (4 * 128 * 128 * 2 flops per cycle) = 1.503 GHz:
  # 67.2 ms, 128 images in it 1,905 per second.
  row = "| train: resnet50, 1 chip | legw.lars | 101.00 | 1.0100 |  | 0.00 | 3.00 | 67.2 | 1,905 |"
  assert row + " 1.00 + 2.00 |" in lines
  row = "| train: bert-base, 1 chip | legw.lamb | 202.00 |  | 1.0100 | 0.00 | 3.00 | 134.4 | 238 |"
  assert row + " 1.00 + 2.00 |" in lines
  assert len(tpu_report.train_table(results, models=["bert-base"]).splitlines()) == 4


def test_resume_refuses_a_file_of_another_jax_or_libtpu(tmp_path):
  path = str(tmp_path / "r.json")
  tpu_cost.save(path, {"jax": "0.0.1", "libtpu": "0.0.1", "entries": {"k": {}}})
  with pytest.raises(SystemExit, match="pass a new --out"):
    tpu_cost.run([], path)
  assert tpu_cost.load(path)["entries"] == {"k": {}}  # left as it was


def test_adascale_part_pairs_each_optimizer_with_its_baseline():
  keys = [k for k, _ in tpu_cost.planned(["adascale"])]
  assert keys == [f"adascale|resnet50|DP 4, K 4|{name}" for name in tpu_cost.ADASCALE_OPTIMIZERS]
  entry = lambda cycles: {
    "estimated_cycles": cycles,
    "cycles_by_origin": {"optimizer": 0},
    "all_reduces": 1,
  }
  names = list(tpu_cost.ADASCALE_OPTIMIZERS)
  results = {
    "jax": "0.0.1",
    "libtpu": "0.0.1",
    "entries": {
      f"adascale|resnet50|DP 4, K 4|{n}": entry(c) for n, c in zip(names, [100, 101, 200, 201])
    },
  }
  over = tpu_cost.adascale_overhead(results)
  assert over == pytest.approx(
    {"legw.adascale": 0.01, "legw.adascale(trust_coefficient=0.001)": 0.005}
  )
  assert "| legw.adascale | 0.00 | 0.00 | 1 | +1.00% (vs mean + optax.sgd(momentum)) |" in (
    tpu_cost.adascale_table(results).splitlines()
  )
  assert tpu_report.report(results).endswith(tpu_cost.adascale_table(results))


@pytest.mark.parametrize(
  "name",
  [n for n, (_, base) in tpu_cost.ADASCALE_OPTIMIZERS.items() if base],
)
def test_committed_adascale_statistic_costs_at_most_one_percent_of_the_step(name):
  """benchmarks/results/tpu_cost-adascale.json (XLA's TPU cost model, ResNet-50, 4 v5e
  chips, K = 4): the optimizer with the noise-scale statistic is within 1% of the same
  step without it (the mean of the samples, then the same optimizer), with no more
  all-reduces (the statistic's scalar rides in the gradients' all-reduce)."""
  path = os.path.join(RESULTS_DIR, "tpu_cost-adascale.json")
  results = tpu_cost.load(path)
  base = tpu_cost.ADASCALE_OPTIMIZERS[name][1]
  e, b = (results["entries"][f"adascale|resnet50|DP 4, K 4|{n}"] for n in (name, base))
  assert e["all_reduces"] <= b["all_reduces"]
  assert tpu_cost.adascale_overhead(results)[name] <= 0.01


def test_report_option_prints_the_tables_of_a_results_file(capsys):
  path = os.path.join(RESULTS_DIR, "tpu_cost.json")
  tpu_cost.main(["--report", path])
  assert capsys.readouterr().out == tpu_report.report(tpu_cost.load(path)) + "\n"
