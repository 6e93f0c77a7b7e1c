"""benchmarks.costs.median_cost: the pass-cost probe behind legw._median's thresholds per pass."""

import json

import pytest

from benchmarks.costs import median_cost


@pytest.mark.slow
def test_median_cost_times_every_threshold_count_and_the_primitives(tmp_path):
  out = tmp_path / "m.json"
  r = median_cost.main(
    ["--quick", "--thresholds", "1,5", "--reps", "1", "--rounds", "1", "--primitives"]
    + ["--out", str(out)]
  )
  assert json.loads(out.read_text())["in_place_entries"] == 2 * (256 * 256 + 320 * 257)  # w and g
  assert {1, 5} == set(r["by_thresholds"])
  assert r["by_thresholds"][1]["passes_float32"] == 31
  assert r["by_thresholds"][5]["passes_float32"] == 12
  assert all(v > 0 for v in r["primitives_ms"].values())
  assert 0 < r["primitives_flagged_fraction"] < 1
