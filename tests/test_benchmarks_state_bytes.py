"""benchmarks.costs.state_bytes: optimizer-state bytes per parameter, default vs bfloat16."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import legw
from benchmarks import RESULTS_DIR, RUNS_DIR
from benchmarks.costs import state_bytes


def test_state_bytes_counts_the_leaves_of_init():
  params = state_bytes.abstract_params({"k": (8, 4), "b": (4,)})
  assert state_bytes.state_bytes(optax.sgd(0.1, momentum=0.9), params) == 36 * 4
  # The same as from a real state's nbytes.
  real = {"k": jnp.ones((8, 4)), "b": jnp.ones(4)}
  for opt in (legw.lamb(1e-3, mu_dtype=jnp.bfloat16), legw.lars(0.1, accumulator_dtype="bfloat16")):
    want = sum(x.nbytes for x in jax.tree.leaves(opt.init(real)))
    assert state_bytes.state_bytes(opt, params) == want


def test_measure_bytes_per_parameter():
  result = state_bytes.measure({"tiny": {"k": (64, 32), "b": (32,)}})
  n = 64 * 32 + 32
  assert result["n_params"] == {"tiny": n}
  got = {(r["optimizer"], r["state"]): r["bytes_per_param"] for r in result["rows"]}
  assert len(got) == 2 * len(state_bytes.OPTIMIZERS)
  count = 4 / n  # Adam's int32 step count
  expect = {
    "optax.sgd(momentum=0.9)": (4, 2),
    "optax.adamw": (8 + count, 6 + count),
    "legw.lars": (4, 2),
    "legw.lamb": (8 + count, 6 + count),
    "legw.mclr": (4, 2),
    "legw.percent_delta": (4, 2),
  }
  for name, (default, bf16) in expect.items():
    arg = state_bytes.ARGUMENT.get(name, "accumulator_dtype")
    assert got[(name, "default")] == pytest.approx(default), name
    assert got[(name, f"{arg}=bfloat16")] == pytest.approx(bf16), name
  table = state_bytes.markdown_table(result)
  assert "| `legw.lars` | `accumulator_dtype` | 4.00 | 2.00 |" in table


def test_trees_have_their_sizes():
  sizes = {
    k: sum(int(np.prod(s)) for s in make().values()) for k, make in state_bytes.TREES.items()
  }
  assert sizes["resnet50"] == 25_557_032
  assert 109e6 < sizes["bert_base"] < 110e6  # BERT-base, "110M"


def test_table_of_the_committed_results(capsys):
  path = os.path.join(RESULTS_DIR, "state_bytes.json")
  result = state_bytes.main(["--report", path])
  lines = state_bytes.markdown_table(result).splitlines()
  assert lines[0] == (
    "| optimizer | bfloat16 argument | ResNet-50: default | ResNet-50: bfloat16 "
    "| BERT-base: default | BERT-base: bfloat16 |"
  )
  assert "| `legw.lamb` | `mu_dtype` | 8.00 | 6.00 | 8.00 | 6.00 |" in lines
  assert "ResNet-50 25,557,032 parameters" in state_bytes.caption(result)
  assert state_bytes.caption(result, path).endswith(f"; results in `{path}`.")
  assert lines[0] in capsys.readouterr().out


def test_main_writes_json(tmp_path, capsys):
  assert state_bytes.build_parser().parse_args([]).out.startswith(RUNS_DIR)
  out = tmp_path / "state_bytes.json"
  result = state_bytes.main(["--out", str(out)])
  assert json.loads(out.read_text()) == json.loads(json.dumps(result))
  assert "| `legw.lamb` | `mu_dtype` |" in capsys.readouterr().out
