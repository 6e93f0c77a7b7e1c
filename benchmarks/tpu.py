"""Compiling for a TPU slice on a CPU machine: XLA's TPU compiler and cost model, no TPU.

With libtpu installed (``pip install -e ".[tpu]"``: ``jax[tpu]`` at the installed jax),
``jax.experimental.topologies.get_topology_desc("v5e:2x2", platform="tpu")`` gives
compile-only TPU devices. ``jax.jit(f).lower(<ShapeDtypeStruct inputs sharded over a
Mesh of them>).compile()`` is then the real TPU executable, whose

* optimized HLO (``as_text()``) holds XLA's TPU cost model: an ``"estimated_cycles"``
  in the backend config of each op it schedules. :func:`estimated_cycles` sums them:
  *XLA's estimate of the step's cycles on that chip, not a measurement on a TPU*;
  deterministic for one libtpu version (the same on every machine);
* ``memory_analysis()`` gives the HBM per chip: arguments, outputs, temporaries.

This module holds what the TPU tests (``tests/test_tpu_compile.py``) and the cost
benchmark (``benchmarks/costs/tpu_cost.py``) share. ``v5e:1x1`` is refused by libtpu (not a
multiple of its default 2x2x1 host bounds): one chip is one device of ``v5e:2x2``.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

# No metadata server to ask (this is not a TPU VM); libtpu then warns about
# worker hostnames, harmlessly.
os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
# Compile-only: several processes (pytest -n 2 workers, a benchmark) may load libtpu at
# once; without this the second fails on libtpu's lockfile.
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

# The slices the tests and the benchmark compile for: chips per slice.
TOPOLOGIES = {"v5e": "v5e:2x2", "v4": "v4:2x2x1", "v6e": "v6e:2x2"}


@functools.cache
def topology(name: str):
  """The compile-only devices of a TPU slice (``"v5e:2x2"``), cached per process.

  Raises:
    RuntimeError: with libtpu's reason, when it cannot be loaded or does not
      know the slice (e.g. libtpu not installed).
  """
  from jax.experimental import topologies

  try:
    return topologies.get_topology_desc(topology_name=name, platform="tpu")
  except Exception as e:  # libtpu missing, or an unknown slice
    raise RuntimeError(f"cannot compile for TPU {name}: {type(e).__name__}: {e}") from e


def libtpu_error() -> str | None:
  """None where TPU compiles work here, else why not (for a test's skip reason)."""
  try:
    topology(TOPOLOGIES["v5e"])
  except RuntimeError as e:
    return str(e)
  return None


def mesh(name: str, shape: tuple[int, ...], axes: tuple[str, ...]) -> Mesh:
  """A mesh of ``prod(shape)`` devices of slice ``name`` (one chip: ``shape=(1,)``)."""
  devices = topology(name).devices
  n = int(np.prod(shape))
  if n > len(devices):
    raise ValueError(f"{name} has {len(devices)} devices; the mesh {shape} needs {n}")
  return Mesh(np.array(devices[:n]).reshape(shape), axes)


def abstract(tree: Any, mesh_: Mesh, spec_of: Callable[[Any], PartitionSpec]) -> Any:
  """``tree``'s leaves as ``ShapeDtypeStruct``s placed by ``spec_of(leaf)`` on ``mesh_``."""
  return jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(
      jnp.shape(x), jnp.result_type(x), sharding=NamedSharding(mesh_, spec_of(x))
    ),
    tree,
  )


def fsdp_spec(axis: str, size: int) -> Callable[[Any], PartitionSpec]:
  """FSDP: a leaf is sharded along its first axis divisible by ``size``; else replicated."""

  def spec(x):
    for i, d in enumerate(jnp.shape(x)):
      if d % size == 0 and d >= size:
        return PartitionSpec(*([None] * i + [axis]))
    return PartitionSpec()

  return spec


def optimizer_step(opt: optax.GradientTransformation, **extra_args: Any) -> Callable:
  """``(params, state, grads) -> (params, state)``: update (given ``extra_args``, e.g.
  ``obj_fn``) and ``apply_updates``."""

  def step(params, state, grads):
    updates, state = opt.update(grads, state, params, **extra_args)
    return optax.apply_updates(params, updates), state

  return step


def compile_optimizer_step(
  opt: optax.GradientTransformation,
  params: Any,
  spec_of: Callable,
  mesh_: Mesh,
  **extra_args: Any,
) -> jax.stages.Compiled:
  """The TPU executable of one optimizer step on ``params`` (arrays or shapes), placed
  by ``spec_of``, parameters and state donated (updated in place, as in training)."""
  p = abstract(params, mesh_, spec_of)
  state = abstract(jax.eval_shape(opt.init, p), mesh_, spec_of)
  step = optimizer_step(opt, **extra_args)
  return jax.jit(step, donate_argnums=(0, 1)).lower(p, state, p).compile()


_CYCLES = re.compile(r'"estimated_cycles":"(\d+)"')


# What the cost model writes for an op it cannot estimate (seen on v6e for a loop).
_UNKNOWN = 1 << 62


def estimated_cycles(compiled: jax.stages.Compiled) -> int:
  """XLA's TPU cost model: the sum of the ``estimated_cycles`` of the compiled ops.

  An estimate, not a TPU measurement. It is a sum over the scheduled ops (fusions,
  collectives, copies), so ops that would overlap on the chip are counted in full.

  Raises:
    ValueError: when the cost model gave some op no estimate (a value near 2^63).
  """
  cycles = [int(c) for c in _CYCLES.findall(compiled.as_text())]
  if any(c >= _UNKNOWN for c in cycles):
    raise ValueError("XLA's TPU cost model has no estimate for some op of this module")
  return sum(cycles)


_OP_NAME = re.compile(r'op_name="([^"]*)"')
ORIGINS = ("forward", "backward", "optimizer", "unattributed")


def origin(op_name: str) -> str:
  """Which part of a training step a compiled op came from, by the ``op_name`` JAX wrote
  in its metadata: ``backward`` under ``transpose(jvp(...))``, ``forward`` (and the
  loss) under ``jvp(...)``, ``optimizer`` for the rest of the step (the update and
  ``apply_updates``), ``unattributed`` without an ``op_name`` (ops XLA created, e.g.
  the packed masks of a max-pool's backward)."""
  if not op_name:
    return "unattributed"
  if "transpose(jvp(" in op_name:
    return "backward"
  return "forward" if "jvp(" in op_name else "optimizer"


def cycles_by_origin(compiled: jax.stages.Compiled) -> dict[str, int]:
  """:func:`estimated_cycles` split by :func:`origin` of each op; the parts sum to it.

  A fusion takes the ``op_name`` of its root, so an update XLA fuses into the backward
  convolution that computes the gradient (momentum SGD's, on TPU) counts as backward:
  what is left under ``optimizer`` is the passes over the parameters the step adds.
  """
  parts = dict.fromkeys(ORIGINS, 0)
  for line in compiled.as_text().splitlines():
    cycles = _CYCLES.findall(line)
    if cycles:
      name = _OP_NAME.search(line)
      parts[origin(name[1] if name else "")] += sum(int(c) for c in cycles)
  if any(c >= _UNKNOWN for c in parts.values()):
    raise ValueError("XLA's TPU cost model has no estimate for some op of this module")
  return parts


# Cycles to seconds on a v5e chip. A v5e TensorCore has 4 MXUs of 128x128 (Google Cloud's
# TPU v5e documentation) and a peak of 197 TFLOP/s in bfloat16, the figure XLA's own
# roofline (``cost_analysis()["optimal_seconds"]``) uses for a large bfloat16 matmul:
# 197e12 / (4 * 128 * 128 * 2 flops per cycle) = 1.50 GHz.
# tests/test_tpu_compile.py checks that the cost model does at most that many flops per
# cycle (and nearly that many) on a large matmul, the assumption this conversion rests on.
V5E_MXU_FLOPS_PER_CYCLE = 4 * 128 * 128 * 2
V5E_PEAK_FLOPS = 197e12
V5E_CLOCK_HZ = V5E_PEAK_FLOPS / V5E_MXU_FLOPS_PER_CYCLE


def count_ops(compiled: jax.stages.Compiled, op: str) -> int:
  """How many ``op`` instructions (e.g. ``"all-reduce"``) the compiled HLO has;
  an async pair (``all-reduce-start``/``-done``) counts once."""
  return len(re.findall(rf"\s{re.escape(op)}(?:-start)?\(", compiled.as_text()))


_DEF = re.compile(r"%([\w.-]+) = \(?[a-z0-9]+\[([\d,]*)\]")
_REDUCE = re.compile(r"\sreduce\(%([\w.-]+)")


def reduced_shapes(compiled: jax.stages.Compiled) -> list[tuple[int, ...]]:
  """The shape of the (first) array each ``reduce`` of the compiled HLO reads, fused
  or not: ``[(3, 3, 64, 128), ...]``, one entry per reduction (a variadic reduce of
  several arrays counts once)."""
  text = compiled.as_text()
  shapes = {m[1]: tuple(int(d) for d in m[2].split(",") if d) for m in _DEF.finditer(text)}
  return [shapes[name] for name in _REDUCE.findall(text) if name in shapes]


def memory(compiled: jax.stages.Compiled) -> dict[str, int]:
  """HBM bytes per chip from ``memory_analysis()``: arguments, outputs, aliased, temps."""
  m = compiled.memory_analysis()
  return {
    "argument_bytes": int(m.argument_size_in_bytes),
    "output_bytes": int(m.output_size_in_bytes),
    "alias_bytes": int(m.alias_size_in_bytes),
    "temp_bytes": int(m.temp_size_in_bytes),
  }
