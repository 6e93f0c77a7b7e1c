"""legw on a mesh spread over 2 JAX processes (localhost, gloo) equals one device.

Runs ``python -m benchmarks.multihost --local-processes 2``: two processes of
4 CPU devices each join one JAX runtime through ``jax.distributed.initialize``
on 127.0.0.1; parameters are sharded across both processes (FSDP, tensor
parallel, both) and the MNIST LSTM is trained data-parallel over all 8
devices. See ``benchmarks/multihost/main.py``.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_processes_equal_one_device(tmp_path):
  out = tmp_path / "multihost.json"
  t0 = time.perf_counter()
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "benchmarks.multihost",
      "--local-processes",
      "2",
      "--devices-per-process",
      "4",
      "--timeout",
      "540",
      "--json",
      str(out),
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
  )
  wall = time.perf_counter() - t0
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  result = json.loads(out.read_text())
  assert result["process_count"] == 2 and result["device_count"] == 8
  assert result["local_device_count"] == 4
  opt_rows = [r for r in result["checks"] if r["check"] == "optimizers"]
  assert {(r["optimizer"], r["layout"]) for r in opt_rows} == {
    (o, l)
    for o in ("lars", "mclr", "percent_delta", "lamb")
    for l in ("fsdp", "tensor_parallel", "fsdp+tp")
  }
  for r in opt_rows:
    assert r["ok"], r
    assert r["processes_holding_shards"] == 2  # the layer really is split across processes
  lstm = next(r for r in result["checks"] if r["check"] == "lstm")
  assert lstm["ok"], lstm
  np.testing.assert_allclose(lstm["losses_multiprocess"], lstm["losses_one_device"], rtol=2e-5)
  assert len(set(np.round(lstm["losses_one_device"], 6))) == lstm["steps"]  # it trains
  print(f"2-process check: {wall:.1f} s wall")
