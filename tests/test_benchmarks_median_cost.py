"""benchmarks.costs.median_cost: the pass-cost probe behind legw._median's thresholds per pass."""

import json
import os

import pytest

from benchmarks import RESULTS_DIR
from benchmarks.costs import median_cost
from benchmarks.costs import optimizer_step as ob

RUNS = os.path.join(RESULTS_DIR, "median_cost-runs.json")


def test_tables_of_the_committed_runs():
  d = ob.load(RUNS)
  assert [r["commit"] for r in d["runs"]] == ["1f14e62", "068be69"]
  rows = median_cost.thresholds_table(d).splitlines()
  assert "| 5 | 12 | 12.7 (1.11) | 125 | 14.0 (0.99) | 138 |" in rows
  assert rows[-1] == "| a sum of the same arrays (ms) | | 11.5 |  | 14.1 |  |"
  fit = median_cost.pass_fit(d).splitlines()
  assert fit[0] == (
    "- run 1: a pass costs about 7.8 ms + 1.20 ms per threshold; the medians are fastest at T = 5"
  )
  prims = median_cost.primitives_table(d).splitlines()
  assert "| histogram (scatter-add, 2048 bins) |  | 3.16 (6.4) |" in prims
  assert "| top_k(k=n/16) | 16.63 (64.3) | 16.30 (33.2) |" in prims
  assert "run 2: load average 0.9 at the end, commit 068be69" in median_cost.caption(d)


@pytest.mark.slow
def test_median_cost_times_every_threshold_count_and_the_primitives(tmp_path, capsys):
  out = tmp_path / "m.json"
  args = ["--quick", "--thresholds", "1,5", "--reps", "1", "--rounds", "1", "--primitives"]
  r = median_cost.main([*args, "--out", str(out), "--append"])
  saved = json.loads(out.read_text())["runs"][0]
  assert saved["in_place_entries"] == 2 * (256 * 256 + 320 * 257)  # w and g
  assert {"1", "5"} == set(r["by_thresholds"])
  assert r["by_thresholds"]["1"]["passes_float32"] == 31
  assert r["by_thresholds"]["5"]["passes_float32"] == 12
  assert all(v > 0 for v in r["primitives_ms"].values())
  assert 0 < r["primitives_flagged_fraction"] < 1
  assert median_cost.thresholds_table(saved) in capsys.readouterr().out
