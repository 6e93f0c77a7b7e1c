"""legw across JAX processes: the same update on one device and on a multi-process mesh.

Multi-host JAX is JAX's own runtime: every process (one per host; on a GPU
cluster often one per GPU) runs the same program, calls
``jax.distributed.initialize``, and then sees a global ``jax.devices()``; a
``Mesh`` over all of them with ``NamedSharding`` spreads arrays across
processes, and ``jax.jit`` runs one SPMD program on every device. legw's
transforms need nothing more: their per-layer norms are of the whole logical
array, wherever its shards live.

This module checks that, on any number of processes:

* ``optimizers``: ``legw.lars``, ``legw.mclr``, ``legw.percent_delta`` and
  ``legw.lamb`` (3 steps, momentum or Adam moments carried) on parameters
  sharded across processes — FSDP (kernels split on their first axis over
  every device), tensor-parallel
  (split on the last axis) and both — equal the same steps on one local
  device;
* ``lstm``: data-parallel training steps of the LEGW paper's MNIST LSTM
  (§5.1.1; ``legw.lars`` with a LEGW schedule), the batch split over every
  device of every process, give the losses of one device with the whole batch.

Run it:

    # one machine, N processes on 127.0.0.1 (CPU devices, gloo collectives)
    python -m benchmarks.multihost --local-processes 2 --json out.json
    # a TPU pod slice: the same command on every host, no arguments needed
    python -m benchmarks.multihost
    # a SLURM GPU cluster: one task per process, e.g.
    srun --ntasks-per-node=8 python -m benchmarks.multihost

With ``--local-processes N`` this process spawns N copies of itself with a
coordinator on a free loopback port (``--coordinator``, ``--num-processes``,
``--process-id``), each with ``--devices-per-process`` CPU devices, and waits
for them; process 0 writes the JSON. ``tests/test_multihost.py`` runs it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import Any

import numpy as np

TOLERANCE = dict(rtol=2e-5, atol=1e-7)


def initialize(
  coordinator: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  cpu: bool = False,
) -> None:
  """``jax.distributed.initialize``; with ``cpu``, CPU collectives over gloo.

  With no arguments JAX detects the cluster (TPU pod metadata, SLURM's
  environment, ...). ``cpu=True`` is for several processes on one machine's
  CPUs (tests): XLA:CPU needs a collectives implementation across processes.
  """
  import jax

  if cpu:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
    coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
  )


def _global(x: np.ndarray, sharding) -> Any:
  """A global array from a host array every process holds in full."""
  import jax

  return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def _host(tree: Any) -> Any:
  """A replicated global pytree as NumPy (each process holds every element)."""
  import jax

  return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), tree)


def _params(seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  f32 = np.float32
  return {
    "dense": {
      "kernel": rng.normal(size=(64, 32)).astype(f32),
      "bias": rng.normal(size=(32,)).astype(f32) * 0.1,
    },
    "conv": {
      "kernel": rng.normal(size=(16, 3, 3, 8)).astype(f32) * 0.3,
      "scale": np.ones((8,), f32),
    },
  }


def _optimizers():
  import legw

  return {
    "lars": legw.lars(0.1, momentum=0.9, weight_decay=1e-4, trust_coefficient=0.01),
    "mclr": legw.mclr(0.05, momentum=0.9, weight_decay=1e-4),
    "percent_delta": legw.percent_delta(0.05, momentum=0.9, weight_decay=1e-4),
    "lamb": legw.lamb(0.01, weight_decay=1e-4),
  }


def _steps(opt, params, grads_seq):
  import jax
  import optax

  @jax.jit
  def step(p, s, g):
    u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), s

  state = opt.init(params)
  for g in grads_seq:
    params, state = step(params, state, g)
  return params


def check_optimizers(num_steps: int = 3) -> list[dict]:
  """Sharded-across-processes updates vs one device; one row per (optimizer, layout)."""
  import jax
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  n = jax.device_count()
  if n % 2:
    raise ValueError(f"need an even number of devices, got {n}.")
  params = _params()
  rng = np.random.default_rng(1)
  grads_seq = [
    jax.tree.map(lambda a: rng.normal(size=a.shape).astype(a.dtype), params)
    for _ in range(num_steps)
  ]
  local = jax.local_devices()[0]
  layouts = {
    "fsdp": (jax.make_mesh((n,), ("data",)), P("data"), P("data")),
    "tensor_parallel": (
      jax.make_mesh((n // 2, 2), ("data", "model")),
      P(None, "model"),
      P(None, None, None, "model"),
    ),
    "fsdp+tp": (
      jax.make_mesh((n // 2, 2), ("data", "model")),
      P("data", "model"),
      P("data", None, None, "model"),
    ),
  }
  rows = []
  for name, opt in _optimizers().items():
    want = jax.tree.map(
      np.asarray, _steps(opt, jax.device_put(params, local), jax.device_put(grads_seq, local))
    )
    for layout, (mesh, dense_spec, conv_spec) in layouts.items():
      specs = {
        "dense": {"kernel": dense_spec, "bias": P()},
        "conv": {"kernel": conv_spec, "scale": P()},
      }
      shard = jax.tree.map(lambda s, mesh=mesh: NamedSharding(mesh, s), specs)
      gp = jax.tree.map(_global, params, shard)
      gg = [jax.tree.map(_global, g, shard) for g in grads_seq]
      out = _steps(opt, gp, gg)
      processes = {d.process_index for d in out["dense"]["kernel"].sharding.device_set}
      replicated = jax.jit(lambda t: t, out_shardings=NamedSharding(mesh, P()))(out)
      got = _host(replicated)
      err = max(
        float(np.max(np.abs(a - b) / (np.abs(b) + 1e-6)))
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want))
      )
      ok = all(
        np.allclose(a, b, **TOLERANCE) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want))
      )
      rows.append(
        dict(
          check="optimizers",
          optimizer=name,
          layout=layout,
          steps=num_steps,
          processes_holding_shards=len(processes),
          max_rel_error=err,
          ok=ok,
        )
      )
  return rows


def check_lstm(num_steps: int = 4, batch_size: int = 64) -> dict:
  """Data-parallel MNIST-LSTM steps over every process vs one device, whole batch."""
  import jax
  import optax
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  import legw
  from benchmarks.batch_scaling.train import softmax_xent
  from benchmarks.data import load_mnist5k
  from benchmarks.models import MnistLSTM

  x, y = load_mnist5k(0)[:2]
  x, y = x[: num_steps * batch_size], y[: num_steps * batch_size]
  model = MnistLSTM()
  schedule = legw.legw_schedule(
    base_learning_rate=0.05,
    base_batch_size=16,
    batch_size=batch_size,
    base_warmup_epochs=0.125,
    num_epochs=2,
    steps_per_epoch=num_steps // 2,
    decay="constant",
  )
  opt = legw.lars(schedule, momentum=0.9, weight_decay=1e-4, trust_coefficient=0.02)

  def loss_fn(p, xb, yb):
    return softmax_xent(model.apply({"params": p}, xb, train=True), yb).mean()

  @jax.jit
  def step(p, s, xb, yb):
    loss, g = jax.value_and_grad(loss_fn)(p, xb, yb)
    u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), s, loss

  def run(params, put_batch):
    state, losses = opt.init(params), []
    for i in range(num_steps):
      xb, yb = put_batch(
        x[i * batch_size : (i + 1) * batch_size], y[i * batch_size : (i + 1) * batch_size]
      )
      params, state, loss = step(params, state, xb, yb)
      losses.append(loss)
    return losses

  init = model.init(jax.random.key(0), x[:1])["params"]
  init = jax.tree.map(np.asarray, init)
  local = jax.local_devices()[0]
  want = [
    float(v) for v in run(jax.device_put(init, local), lambda a, b: jax.device_put((a, b), local))
  ]
  mesh = jax.make_mesh((jax.device_count(),), ("data",))
  rep, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  got = run(
    jax.tree.map(lambda a: _global(a, rep), init), lambda a, b: (_global(a, data), _global(b, data))
  )
  got = [float(np.asarray(v.addressable_data(0))) for v in got]
  return dict(
    check="lstm",
    steps=num_steps,
    batch_size=batch_size,
    devices=jax.device_count(),
    losses_multiprocess=got,
    losses_one_device=want,
    max_rel_error=float(np.max(np.abs(np.subtract(got, want)) / np.abs(want))),
    ok=bool(np.allclose(got, want, rtol=2e-5)),
  )


def run_checks() -> dict:
  """Every check on the current (initialized) runtime."""
  import jax

  t0 = time.perf_counter()
  rows = check_optimizers() + [check_lstm()]
  return dict(
    process_count=jax.process_count(),
    device_count=jax.device_count(),
    local_device_count=jax.local_device_count(),
    backend=jax.default_backend(),
    ok=all(r["ok"] for r in rows),
    checks=rows,
    seconds=time.perf_counter() - t0,
  )


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch_local(
  num_processes: int, devices_per_process: int, json_path: str | None, timeout: float = 600.0
) -> int:
  """Runs this module in ``num_processes`` processes on 127.0.0.1; returns the exit code."""
  port = _free_port()
  env = dict(
    os.environ,
    JAX_PLATFORMS="cpu",
    XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}",
  )
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
  procs = []
  for i in range(num_processes):
    cmd = [
      sys.executable,
      "-m",
      "benchmarks.multihost",
      "--coordinator",
      f"127.0.0.1:{port}",
      "--num-processes",
      str(num_processes),
      "--process-id",
      str(i),
      "--cpu",
    ]
    if json_path and i == 0:
      cmd += ["--json", json_path]
    procs.append(subprocess.Popen(cmd, env=env, cwd=root))
  deadline = time.time() + timeout
  codes = []
  for p in procs:
    try:
      codes.append(p.wait(timeout=max(1.0, deadline - time.time())))
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      print(f"multihost: timed out after {timeout:.0f} s", file=sys.stderr)
      return 124
  return max(codes, key=abs)
