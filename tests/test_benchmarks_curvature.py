"""The curvature benchmarks' renderers (the README's tables) on the committed results."""

import os

import pytest

from benchmarks.curvature import common, lipschitz, mclr_vs_lars, table2

RESULTS = common.RESULTS_DIR


def _load(name: str) -> dict:
  return common.load_results(os.path.join(RESULTS, name))


@pytest.fixture(scope="module")
def t2():
  return _load("table2.json")


def test_table2_kernel_table_lists_every_kernel_smallest_ratio_first(t2):
  lines = table2.kernel_table(t2).splitlines()
  assert len(lines) == 2 + 10 + 3  # header, 10 ResNet kernels, 3 LSTM kernels
  assert lines[2].startswith("| small ResNet | classifier/kernel | 64x10 | 3.15 | 0.846 | 3.73 |")
  assert (
    "| small ResNet | block1/proj/kernel | 1x1x16x32 | 5.65 | 0.0546 | 103 | 165 | 6.89 |" in lines
  )
  assert (
    lines[-1] == "| MNIST LSTM | transform/kernel | 28x128 | 11.1 | 0.0489 | 228 | 476 | 38.5 |"
  )


def test_table2_spread_is_the_figure_the_root_readme_quotes(t2):
  assert table2.ratio_spread(t2) == "28×"  # the summary's kernels max_over_min, 27.75
  assert table2.ratio_spread(t2, "resnet", leaves="all_nonzero") == "138×"
  assert table2.ratio_spread(t2, "lstm") == "7.7×"
  rows = table2.spread_table(t2).splitlines()[2:]
  assert rows == [
    "| small ResNet | 10 kernels | 3.73 | 103 | 28× | 35× | 19× |",
    "| small ResNet | 19 non-zero leaves | 3.73 | 515 | 138× | 225× | 861× |",
    "| MNIST LSTM | 3 kernels | 29.7 | 228 | 7.7× | 17× | 5.0× |",  # no extra leaves: one row
  ]


def test_table2_summary_of_the_committed_tables_is_the_committed_summary(t2):
  for model, rows in t2["tables"].items():
    assert table2.summary(rows) == t2["summary"][model]


def test_captions_name_the_command_rebuilt_from_the_config():
  lstm = _load("lipschitz-lstm.json")
  assert lipschitz.command(lstm["config"]) == (
    "python -m benchmarks.curvature.lipschitz --model lstm --epochs 6 --min-iterations 64 "
    "--dense-iterations 32 --points-per-epoch 8 --probe-batch 128 --seeds 0"
  )
  caption = lipschitz.caption(lstm)
  assert caption.startswith("*Measured by `python -m benchmarks.curvature.lipschitz --model lstm")
  assert "records no machine" in caption and "training 10.0 min" in caption
  assert mclr_vs_lars.command(_load("mclr_vs_lars.json")["config"]) == (
    "python -m benchmarks.curvature.mclr_vs_lars"
  )


def test_caption_uses_the_recorded_command_and_machine(t2):
  env = common.environment("benchmarks.curvature.table2", ["--seed", "1"])
  assert env["command"] == "python -m benchmarks.curvature.table2 --seed 1"
  caption = table2.caption({**t2, **env})
  assert caption.startswith("*Measured by `python -m benchmarks.curvature.table2 --seed 1` on ")
  assert f"jax {env['jax_version']}, {env['date']}" in caption


def test_lipschitz_peaks_table_of_the_mlp():
  mlp = _load("lipschitz-mlp.json")
  lines = lipschitz.peaks_table(mlp).splitlines()
  assert lines[2] == (
    "| 16 | 0.05 | 10 | 0.0781 (0.0664–0.105) | 21 | 6.5 | 0.102 (0.0742–0.109) | 27 | 0.068 |"
  )
  assert lines[5].startswith("| 1024 | 0.4 | 10 | 2.75 (1.5–3) | 12 | 14.5 |")
  assert lines[6] == "| slope vs batch | | | 0.84 | −0.15 | | 0.78 | −0.20 | |"


def test_lipschitz_peaks_table_of_a_fresh_summary_equals_the_saved_one():
  # A run's summary has int batch keys, the saved one str keys: the same table.
  lstm = _load("lipschitz-lstm.json")
  fresh = dict(lstm, summary=lipschitz.summarize(lstm["runs"], lstm["config"]))
  assert lipschitz.peaks_table(fresh) == lipschitz.peaks_table(lstm)
  assert "| 16 | 0.05 | 6 | 0.109 | 29 | 5.0 | 3.88 | 993 |" in lipschitz.peaks_table(lstm)


def test_mclr_vs_lars_grid_table_bolds_the_best_lr():
  d = _load("mclr_vs_lars.json")
  lines = mclr_vs_lars.grid_table(d).splitlines()
  assert lines[2] == (
    "| LARS (η = 0.001) | 0.5: 0.922 / 0.893 | 2: 0.969 / 0.909 | 8: 1.000 / 0.935 "
    "| **32: 1.000 / 0.950** | 13 |"
  )
  assert "| MCLR | 0.0005: 0.982 / 0.913 | **0.002: 1.000 / 0.939** |" in lines[3]
  assert lines[5].endswith("| **0.4: 1.000 / 0.928** |  | 9 |")  # a 3-point grid
  sgd = [r for r in d["runs"] if r["optimizer"] == "sgd"]
  assert mclr_vs_lars.best(sgd)["learning_rate"] == d["best"]["sgd"]["learning_rate"] == 0.4


@pytest.mark.parametrize(
  "module, name",
  [
    (table2, "table2.json"),
    (lipschitz, "lipschitz-mlp.json"),
    (mclr_vs_lars, "mclr_vs_lars.json"),
  ],
)
def test_report_option_prints_what_the_readme_shows(module, name, capsys):
  module.main(["--report", os.path.join(RESULTS, name)])
  assert capsys.readouterr().out == module.report(_load(name)) + "\n"
