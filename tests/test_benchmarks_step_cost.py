"""benchmarks.costs.step_cost: the fused-reduction cost tool of benchmarks/costs."""

import pytest

from benchmarks.costs import step_cost


@pytest.mark.slow
def test_step_cost_reports_temporaries_and_ratio(capsys):
  out = step_cost.main(["percent_delta", "--reps", "1"])
  assert "percent_delta on ResNet-50: temporaries" in capsys.readouterr().out
  # No parameter-sized temporary (the ResNet-50 tree is 102 MB of float32).
  assert 0 <= out["temp_MB"] < 1.0
  assert out["ratio_to_sgd"] > 0
