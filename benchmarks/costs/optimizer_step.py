"""Speed of one optimizer step: legw.lars vs optax.lars vs momentum SGD.

One step is ``update`` + ``optax.apply_updates`` in one ``jax.jit``, with the
parameters and optimizer state donated (updated in place, as in a training
loop).  The optimizers are timed *interleaved*: each repetition runs one step
of every optimizer, in a rotating order, so that a change of machine load
hits all of them alike.  Reported: the median step time, and the median over
repetitions of the per-repetition ratio to momentum SGD.

Parameter trees (float32; only shapes matter, values are random):

* ``resnet50``: the ResNet-50 v1.5 parameter tree, 161 leaves, 25.6 M params
  (53 conv kernels, 53 BatchNorm scale/offset pairs, the 2048x1000 head).
* ``transformer``: 72 pre-LN blocks of width 128 (q, k, v, o, MLP 512, two
  LayerNorms, all with biases) and a 32k x 128 embedding: 1,155 leaves of
  mixed sizes, 18.4 M params.
* ``scale-*``: 64 equal kernels (+ 64 biases) of 1 M ... 100 M params in
  all (cost against bytes), and ``split-*``: 16 M params split into 16, 128
  and 1,024 kernels (+ as many biases: cost per leaf).

The bandwidth floor of a step is the bytes it must move divided by the copy
bandwidth measured here (an in-place ``x * c`` over a 256 MB array, i.e. one
read and one write).  Momentum SGD must read g, v, w and write v, w: 5 passes
of 4 bytes per parameter; LARS must also know ||w|| and ||g|| before it
scales: at least 6 passes.  The table gives
each optimizer's time as a multiple of the 5-pass floor, and the fraction of
its own floor (5 passes for SGD, 6 for LARS) that it achieves.

Usage (from the repository root)::

    python -m benchmarks.costs.optimizer_step              # ~5 minutes on 2 idle CPU cores
    python -m benchmarks.costs.optimizer_step --quick      # smoke run, ~1 minute
    python -m benchmarks.costs.optimizer_step --ablations  # + rejected designs, cost probes
    python -m benchmarks.costs.optimizer_step --family --reps 11  # + percent_delta, mclr
    python -m benchmarks.costs.optimizer_step --family --no-scaling --reps 11  # family only
    python -m benchmarks.costs.optimizer_step --family --no-scaling --trees resnet50,kernels-400 \\
        --reps 7 --append --out benchmarks/results/optimizer_step-family-runs.json
    python -m benchmarks.costs.optimizer_step --report benchmarks/results/optimizer_step.json

``--family`` adds ``legw.percent_delta`` and ``legw.mclr`` to trees (a) and (b)
and times the family (with SGD and legw.lars) on ``kernels-400``
(:func:`mixed_kernel_shapes`: 200 kernels of 8 shapes and their biases), where
the compile time is what matters; it prints each one's step and compile time
(jit trace + lower + XLA compile) as multiples of SGD's, measured in the same
run.

Writes ``benchmarks/runs/optimizer_step[-quick].json`` (``--out``; with
``--append``, one more run in the ``runs`` list of that file) and prints the
tables of benchmarks/costs/README.md (:mod:`benchmarks.costs.step_report`),
which ``--report`` prints from a results file.  Timed numbers never go into tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

if __package__ in (None, ""):  # `python benchmarks/costs/optimizer_step.py`
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import legw  # noqa: E402
from benchmarks import RUNS_DIR, git_commit  # noqa: E402

LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 1e-4


# ---------------------------------------------------------------------------
# Parameter trees (shapes only).
# ---------------------------------------------------------------------------


def resnet50_shapes() -> dict[str, tuple[int, ...]]:
  """ResNet-50 v1.5 (Flax layout: HWIO kernels, BatchNorm scale/bias)."""
  shapes = {}

  def conv(name, k, cin, cout):
    shapes[f"{name}/kernel"] = (k, k, cin, cout)
    shapes[f"{name}_bn/scale"] = (cout,)
    shapes[f"{name}_bn/bias"] = (cout,)

  conv("stem", 7, 3, 64)
  cin = 64
  for stage, (blocks, width) in enumerate(zip([3, 4, 6, 3], [64, 128, 256, 512])):
    for b in range(blocks):
      p = f"stage{stage}/block{b}/"
      conv(p + "conv1", 1, cin, width)
      conv(p + "conv2", 3, width, width)
      conv(p + "conv3", 1, width, 4 * width)
      if b == 0:
        conv(p + "proj", 1, cin, 4 * width)
      cin = 4 * width
  shapes["head/kernel"] = (2048, 1000)
  shapes["head/bias"] = (1000,)
  return shapes


def transformer_shapes(layers=72, width=128, mlp=512, vocab=32000):
  shapes = {"embed/embedding": (vocab, width)}
  for l in range(layers):
    p = f"block{l:03d}/"
    for n in ("query", "key", "value", "out"):
      shapes[p + n + "/kernel"] = (width, width)
      shapes[p + n + "/bias"] = (width,)
    for n in ("ln1", "ln2"):
      shapes[p + n + "/scale"] = (width,)
      shapes[p + n + "/bias"] = (width,)
    shapes[p + "mlp_in/kernel"] = (width, mlp)
    shapes[p + "mlp_in/bias"] = (mlp,)
    shapes[p + "mlp_out/kernel"] = (mlp, width)
    shapes[p + "mlp_out/bias"] = (width,)
  shapes["final_ln/scale"] = (width,)
  shapes["final_ln/bias"] = (width,)
  return shapes


def uniform_shapes(total: int, kernels: int) -> dict[str, tuple[int, ...]]:
  """`kernels` equal (rows, 256) kernels and their biases, ~`total` params."""
  rows = max(1, round(total / kernels / 256))
  shapes = {}
  for i in range(kernels):
    shapes[f"layer{i:04d}/kernel"] = (rows, 256)
    shapes[f"layer{i:04d}/bias"] = (256,)
  return shapes


def mixed_kernel_shapes(kernels: int = 200) -> dict[str, tuple[int, ...]]:
  """`kernels` kernels of 8 different shapes and their biases (2 x `kernels` leaves).

  The compile-time tree of ``--family``: many leaves, few parameters
  (200 kernels: 400 leaves, 1.4 M params), so that the compile time, which
  grows with the traced ops per leaf, dominates.
  """
  shapes = {}
  for i in range(kernels):
    rows, cols = 16 * (1 + i % 8), 64 * (1 + (i // 8) % 2)
    shapes[f"layer{i:04d}/kernel"] = (rows, cols)
    shapes[f"layer{i:04d}/bias"] = (cols,)
  return shapes


def make_trees(shapes, seed=0):
  rng = np.random.default_rng(seed)
  params = {
    k: jnp.asarray(rng.standard_normal(s, dtype=np.float32) * 0.05) for k, s in shapes.items()
  }
  grads = {
    k: jnp.asarray(rng.standard_normal(s, dtype=np.float32) * 0.01) for k, s in shapes.items()
  }
  return params, grads


# ---------------------------------------------------------------------------
# Optimizers and timing.
# ---------------------------------------------------------------------------


def optimizers(
  extra: bool, ablations: bool = False, family: bool = False, family_only: bool = False
):
  if family_only:  # the compile-time tree: SGD and legw's per-layer family
    return {
      "sgd": optax.sgd(LR, momentum=MOMENTUM),
      "legw.lars": legw.lars(LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY),
      "legw.percent_delta": legw.percent_delta(LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY),
      "legw.mclr": legw.mclr(LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY),
    }
  opts = {
    "sgd": optax.sgd(LR, momentum=MOMENTUM),
    "legw.lars": legw.lars(LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY),
    "optax.lars": optax.lars(LR, weight_decay=WEIGHT_DECAY, momentum=MOMENTUM),
  }
  if extra:
    # The same work as optax.lars: its denominator, every leaf masked in.
    opts["legw.lars(combined,all)"] = legw.lars(
      LR,
      momentum=MOMENTUM,
      weight_decay=WEIGHT_DECAY,
      denominator="combined",
      trust_ratio_mask=True,
      weight_decay_mask=True,
    )
  if family:
    # legw's other per-layer optimizers (curvature paper), same hyperparameters.
    opts["legw.percent_delta"] = legw.percent_delta(
      LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY
    )
    opts["legw.mclr"] = legw.mclr(LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
  if ablations:
    opts["ablation: carried ||w||"] = carried_norm_lars(LR, MOMENTUM, WEIGHT_DECAY)
    # Where legw.lars's time goes: each part added to momentum SGD in turn.
    for part in PROBE_PARTS:
      opts[f"probe: {part}"] = lars_probe(part, LR, MOMENTUM, WEIGHT_DECAY)
  return opts


# The parts of a LARS step, for `lars_probe`.  "sgd+wd read" is momentum SGD
# whose kernels also read w (weight decay, lambda = 1); "+||w||" and "+||g||"
# add one reduction each (not LARS: lambda uses one norm only); "lars" is
# Algorithm 1 written as one transform; "lars, stacked norms" computes every
# ratio from one stacked vector of norms (one synchronisation point: no leaf
# can start its update before every leaf's norms are done); "lars, rescue
# cond" adds a per-leaf lax.cond that recomputes a norm with power-of-two
# rescaling when its float32 sum of squares over/underflows (exact at any
# magnitude; a design legw rejected for its cost).
PROBE_PARTS = (
  "sgd+wd read",
  "+||w||",
  "+||g||",
  "lars",
  "lars, stacked norms",
  "lars, rescue cond",
)


def _rescued_norm(x):
  """||x|| exact for any finite float32 x: a lax.cond rescales bad sums."""
  s = jnp.sum(x * x)
  n = x.size
  bad = jnp.isinf(s) | ((s > 0) & (s < n * 2.0**-100))
  scale = jnp.where(jnp.isinf(s), 2.0**-80, 2.0**63).astype(x.dtype)
  return jax.lax.cond(
    bad, lambda: jnp.sqrt(jnp.sum(jnp.square(x * scale))) / scale, lambda: jnp.sqrt(s)
  )


def lars_probe(part, learning_rate, momentum, weight_decay, trust_coefficient=0.001):
  """A cost probe (not legw): one of `PROBE_PARTS`, default masks (ndim > 1).

  Kernels: v <- m v + gamma * lambda * (g + beta w); other leaves: momentum
  SGD.  Returns -v, like ``legw.lars``.
  """
  if part not in PROBE_PARTS:
    raise ValueError(f"part must be one of {PROBE_PARTS}, got {part!r}")

  def init(params):
    return optax.TraceState(trace=jax.tree.map(jnp.zeros_like, params))

  def ratio(w_norm, g_norm):
    r = trust_coefficient * w_norm / (g_norm + weight_decay * w_norm)
    return jnp.where((w_norm == 0) | (g_norm == 0), 1.0, r)

  def update(grads, state, params):
    g_leaves, treedef = jax.tree.flatten(grads)
    w_leaves = treedef.flatten_up_to(params)
    v_leaves = treedef.flatten_up_to(state.trace)
    kernels = [i for i, w in enumerate(w_leaves) if w.ndim > 1]
    lam = {}
    if part == "+||w||":
      lam = {i: trust_coefficient * jnp.sqrt(jnp.sum(w_leaves[i] ** 2)) for i in kernels}
    elif part == "+||g||":
      lam = {i: trust_coefficient / jnp.sqrt(jnp.sum(g_leaves[i] ** 2)) for i in kernels}
    elif part == "lars":
      lam = {
        i: ratio(jnp.sqrt(jnp.sum(w_leaves[i] ** 2)), jnp.sqrt(jnp.sum(g_leaves[i] ** 2)))
        for i in kernels
      }
    elif part == "lars, stacked norms":
      norms = jnp.sqrt(
        jnp.stack([jnp.sum(x[i] ** 2) for i in kernels for x in (w_leaves, g_leaves)])
      )
      stacked = ratio(norms[0::2], norms[1::2])
      lam = {i: stacked[k] for k, i in enumerate(kernels)}
    elif part == "lars, rescue cond":
      lam = {i: ratio(_rescued_norm(w_leaves[i]), _rescued_norm(g_leaves[i])) for i in kernels}
    new_v = []
    for i, (g, w, v) in enumerate(zip(g_leaves, w_leaves, v_leaves)):
      if w.ndim > 1:
        new_v.append(momentum * v + learning_rate * lam.get(i, 1.0) * (g + weight_decay * w))
      else:
        new_v.append(momentum * v + learning_rate * g)
    out = [-v for v in new_v]
    return jax.tree.unflatten(treedef, out), optax.TraceState(jax.tree.unflatten(treedef, new_v))

  return optax.GradientTransformation(init, update)


def sibling_fusions() -> int:
  """Fusions XLA emits on this backend for ``x -> (2x, 3x)``.

  1 where the backend has multi-output (sibling) fusion, which writing
  ||w_{t+1}|| in the pass that writes w_{t+1} needs; 2 where each output is
  its own pass over x (XLA:CPU).
  """
  x = jnp.ones((1024, 1024), jnp.float32)
  text = jax.jit(lambda x: (2 * x, 3 * x)).lower(x).compile().as_text()
  entry = text[text.index("ENTRY") :]
  return sum(1 for line in entry.splitlines() if " fusion(" in line)


class _CarriedNormState(NamedTuple):
  trace: Any
  w_sq: jax.Array  # ||w_t||^2 of every kernel, computed at the previous step


def carried_norm_lars(learning_rate, momentum, weight_decay, trust_coefficient=0.001):
  """Ablation (not legw): LARS with ||w_{t+1}||^2 carried in the state.

  Algorithm 1 with the default masks, where ``update`` computes
  ||w_t - v_{t+1}||^2 (the next step's ||w||^2, exact while the parameters
  are only changed by ``apply_updates``) instead of reducing w_t at the start
  of the next step.  The updates are made to depend on that norm so that
  XLA does not copy w_t to keep it alive for the reduction.
  """

  def init(params):
    leaves = jax.tree.leaves(params)
    return _CarriedNormState(
      trace=jax.tree.map(jnp.zeros_like, params),
      w_sq=jnp.stack([jnp.sum(w * w) for w in leaves if w.ndim > 1]),
    )

  def update(grads, state, params):
    g_leaves, treedef = jax.tree.flatten(grads)
    w_leaves = treedef.flatten_up_to(params)
    v_leaves = treedef.flatten_up_to(state.trace)
    out, new_v, w_sq, k = [], [], [], 0
    for g, w, v in zip(g_leaves, w_leaves, v_leaves):
      if w.ndim > 1:
        w_norm, g_norm = jnp.sqrt(state.w_sq[k]), jnp.sqrt(jnp.sum(g * g))
        ratio = trust_coefficient * w_norm / (g_norm + weight_decay * w_norm)
        ratio = jnp.where((w_norm == 0) | (g_norm == 0), 1.0, ratio)
        v = momentum * v + learning_rate * ratio * (g + weight_decay * w)
        nxt = jnp.sum(jnp.square(w - v))
        one = jnp.where(jnp.isfinite(nxt), nxt * 0.0 + 1.0, 1.0)
        w_sq.append(nxt)
        out.append(-(v * one))
        k += 1
      else:
        v = momentum * v + learning_rate * g
        out.append(-v)
      new_v.append(v)
    return (
      jax.tree.unflatten(treedef, out),
      _CarriedNormState(jax.tree.unflatten(treedef, new_v), jnp.stack(w_sq)),
    )

  return optax.GradientTransformation(init, update)


def make_step(opt):
  def step(params, state, grads):
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  return jax.jit(step, donate_argnums=(0, 1))


def cpu_seconds():
  """CPU time of this process, all threads (not counting time preempted)."""
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


def time_interleaved(shapes, opts, reps, warmup=3):
  """Median step time per optimizer, and median per-repetition ratio to SGD.

  Also the time to trace, lower and compile each step (``compile_s``, and
  its ratio to SGD's), the process CPU time of each step (both XLA worker
  threads): on a machine shared with other jobs, wall time includes the time
  this process is preempted, CPU time does not; and the bytes of temporary
  buffers in the compiled step (``memory_analysis``: a stored g + beta*w
  shows up there).
  """
  params0, grads = make_trees(shapes)
  runs = {}
  t_compile, t_build, temp_bytes = {}, {}, {}
  for name, opt in opts.items():
    params = jax.tree.map(jnp.copy, params0)
    state = opt.init(params)
    t0 = time.perf_counter()
    step = make_step(opt).lower(params, state, grads).compile()
    t_build[name] = time.perf_counter() - t0  # trace, lower and compile
    temp_bytes[name] = step.memory_analysis().temp_size_in_bytes
    params, state = step(params, state, grads)
    jax.block_until_ready((params, state))
    t_compile[name] = time.perf_counter() - t0
    for _ in range(warmup - 1):
      params, state = step(params, state, grads)
    jax.block_until_ready((params, state))
    runs[name] = {"step": step, "params": params, "state": state, "times": [], "cpu": []}
  del params0
  names = list(opts)
  for r in range(reps):
    order = names[r % len(names) :] + names[: r % len(names)]
    for name in order:
      run = runs[name]
      c0, t0 = cpu_seconds(), time.perf_counter()
      params, state = run["step"](run["params"], run["state"], grads)
      jax.block_until_ready((params, state))
      run["times"].append(time.perf_counter() - t0)
      run["cpu"].append(cpu_seconds() - c0)
      run["params"], run["state"] = params, state
  base = np.asarray(runs["sgd"]["times"])
  base_cpu = np.asarray(runs["sgd"]["cpu"])
  out = {}
  for name in names:
    t = np.asarray(runs[name]["times"])
    c = np.asarray(runs[name]["cpu"])
    out[name] = {
      "median_ms": float(np.median(t) * 1e3),
      "q25_ms": float(np.percentile(t, 25) * 1e3),
      "q75_ms": float(np.percentile(t, 75) * 1e3),
      "ratio_to_sgd": float(np.median(t / base)),
      "cpu_median_ms": float(np.median(c) * 1e3),
      "cpu_ratio_to_sgd": float(np.median(c) / np.median(base_cpu)),
      "first_call_s": t_compile[name],
      "compile_s": t_build[name],  # jit trace + lower + XLA compile
      "compile_ratio_to_sgd": t_build[name] / t_build["sgd"],
      "temp_MB": temp_bytes[name] / 1e6,  # XLA's temporary buffers (compiled)
    }
  for run in runs.values():
    jax.block_until_ready(run["params"])
  return out


def copy_bandwidth(n_bytes=256 << 20, reps=20):
  """Bytes/s of an in-place ``x * c`` (one read + one write per element)."""
  x = jnp.ones((n_bytes // 4,), jnp.float32)
  f = jax.jit(lambda x: x * np.float32(1.0000001), donate_argnums=0)
  for _ in range(3):
    x = f(x)
  x.block_until_ready()
  ts = []
  for _ in range(reps):
    t0 = time.perf_counter()
    x = f(x)
    x.block_until_ready()
    ts.append(time.perf_counter() - t0)
  return 2 * n_bytes / float(np.median(ts))


# ---------------------------------------------------------------------------
# Main.
# ---------------------------------------------------------------------------


def cpu_model():
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def tree_info(shapes):
  n = sum(int(np.prod(s)) for s in shapes.values())
  return {"leaves": len(shapes), "params": n, "kernels": sum(len(s) > 1 for s in shapes.values())}


def run_all(args):
  quick = args.quick
  reps = args.reps or (5 if quick else 31)
  cases = []
  if quick:
    cases += [
      ("resnet50", resnet50_shapes(), False),
      ("transformer", transformer_shapes(layers=18), False),
    ]
    sizes, splits = [1_000_000, 4_000_000], [16, 256]
    split_total = 4_000_000
  else:
    cases += [("resnet50", resnet50_shapes(), True), ("transformer", transformer_shapes(), True)]
    sizes = [1_000_000, 3_000_000, 10_000_000, 30_000_000, 100_000_000]
    splits = [16, 128, 1024]
    split_total = 16_000_000
  if args.family:
    cases.append(("kernels-400", mixed_kernel_shapes(200), "family-only"))
  if not args.no_scaling:
    for total in sizes:
      cases.append((f"scale-{total // 1_000_000}M-64", uniform_shapes(total, 64), False))
    for k in splits:
      cases.append(
        (f"split-{split_total // 1_000_000}M-{k}", uniform_shapes(split_total, k), False)
      )

  if args.trees:
    keep = args.trees.split(",")
    cases = [c for c in cases if c[0] in keep]
  bw = copy_bandwidth()
  results = {}
  for name, shapes, extra in cases:
    info = tree_info(shapes)
    n_reps = reps if info["params"] <= 30_000_000 else max(5, reps // 3)
    t0 = time.perf_counter()
    if extra == "family-only":
      opts = optimizers(False, family_only=True)
    else:
      opts = optimizers(extra, extra and args.ablations, extra and args.family)
    timing = time_interleaved(shapes, opts, n_reps)
    floor_ms = 5 * 4 * info["params"] / bw * 1e3  # g, v, w read; v, w written
    for opt, r in timing.items():
      r["x_floor5"] = r["median_ms"] / floor_ms
      passes = 5 if opt == "sgd" else 6  # LARS: + ||g|| (||w|| carried, at best)
      r["floor_passes"] = passes
      r["floor_fraction"] = passes / 5 * floor_ms / r["median_ms"]
    results[name] = {
      **info,
      "reps": n_reps,
      "floor5_ms": floor_ms,
      "optimizers": timing,
      "wall_s": time.perf_counter() - t0,
    }
    print(
      f"  {name}: "
      + ", ".join(
        f"{k} {v['median_ms']:.2f} ms (x{v['ratio_to_sgd']:.2f}, cpu x{v['cpu_ratio_to_sgd']:.2f}, "
        f"compile {v['compile_s']:.2f} s x{v['compile_ratio_to_sgd']:.1f})"
        for k, v in timing.items()
      ),
      flush=True,
    )
  return bw, results


def scaling_summary(results):
  """Per optimizer: ms per MB moved (5 passes) and per-leaf overhead in us."""
  out = {}
  scale = [r for n, r in results.items() if n.startswith("scale-")]
  split = [r for n, r in results.items() if n.startswith("split-")]
  if not scale:
    return out
  for opt in scale[0]["optimizers"]:
    x = np.array([20 * r["params"] / 1e6 for r in scale])  # MB moved at 5 passes
    y = np.array([r["optimizers"][opt]["median_ms"] for r in scale])
    slope, intercept = np.polyfit(x, y, 1)
    pred = intercept + slope * x
    r2 = 1.0 - np.sum((y - pred) ** 2) / np.sum((y - np.mean(y)) ** 2)
    entry = {
      "ms_per_MB": float(slope),
      "intercept_ms": float(intercept),
      "r2": float(r2),
      "ms_per_MB_each_size": [float(v) for v in y / x],
    }
    if len(split) >= 2:
      leaves = np.array([r["leaves"] for r in split])
      ys = np.array([r["optimizers"][opt]["median_ms"] for r in split])
      per_leaf, base = np.polyfit(leaves, ys, 1)
      entry["us_per_leaf"] = float(per_leaf * 1e3)
    out[opt] = entry
  return out


# ---------------------------------------------------------------------------
# Results files (the tables: benchmarks/costs/step_report.py).
# ---------------------------------------------------------------------------


def load(path: str) -> dict:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def runs_of(d: dict) -> list[dict]:
  """The run records of a results file: its ``runs``, or the file itself (one run)."""
  return d["runs"] if "runs" in d else [d]


def write_run(path: str, record: dict, append: bool) -> None:
  """Write ``record`` to ``path``; with ``append``, as one more run of its ``runs``."""
  if append:
    old = load(path) if os.path.exists(path) else {"runs": []}
    record = {**old, "runs": [*runs_of(old), record]}
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(record, f, indent=1)
    f.write("\n")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="small trees, few repetitions")
  parser.add_argument("--reps", type=int, default=0, help="repetitions per tree")
  parser.add_argument("--out", default=None, help="JSON output path")
  parser.add_argument(
    "--append", action="store_true", help="add this run to the runs of --out instead"
  )
  parser.add_argument(
    "--report", metavar="PATH", help="print the tables of a results file; run nothing"
  )
  parser.add_argument(
    "--ablations",
    action="store_true",
    help="also time rejected designs (||w|| carried in the state) and "
    "cost probes (each part of a LARS step, stacked norms, rescue cond)",
  )
  parser.add_argument(
    "--family",
    action="store_true",
    help="also time legw.percent_delta and legw.mclr on trees (a) and (b), "
    "and the family's compile time on a 400-leaf tree",
  )
  parser.add_argument(
    "--no-scaling", action="store_true", help="skip the scale-* and split-* trees"
  )
  parser.add_argument(
    "--trees", default="", help="comma-separated tree names to run (e.g. resnet50,kernels-400)"
  )
  args = parser.parse_args(argv)
  # Here, not above: step_report imports this module.
  from benchmarks.costs.step_report import report

  if args.report:
    print(report(load(args.report)))
    return
  suffix = (
    ("-quick" if args.quick else "")
    + ("-ablations" if args.ablations else "")
    + ("-family" if args.family else "")
  )
  out = args.out or os.path.join(RUNS_DIR, f"optimizer_step{suffix}.json")

  load_before = os.getloadavg()
  t0 = time.perf_counter()
  print(
    f"jax {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind}), "
    f"{os.cpu_count()} CPUs, load average {load_before[0]:.2f}",
    flush=True,
  )
  fusions = sibling_fusions()
  print(
    f"x -> (2x, 3x) compiles to {fusions} fusion(s): multi-output fusion "
    f"{'available' if fusions == 1 else 'NOT available'} on this backend",
    flush=True,
  )
  bw, results = run_all(args)
  record = {
    "command": "python -m benchmarks.costs.optimizer_step"
    + (" --quick" if args.quick else "")
    + (" --ablations" if args.ablations else "")
    + (" --family" if args.family else "")
    + (" --no-scaling" if args.no_scaling else "")
    + (f" --trees {args.trees}" if args.trees else "")
    + (f" --reps {args.reps}" if args.reps else ""),
    "commit": git_commit(),
    "jax": jax.__version__,
    "optax": optax.__version__,
    "backend": jax.default_backend(),
    "device": jax.devices()[0].device_kind,
    "cpu": cpu_model(),
    "cpu_count": os.cpu_count(),
    "load_average_before": load_before,
    "load_average_after": os.getloadavg(),
    "wall_s": time.perf_counter() - t0,
    "config": {"learning_rate": LR, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY},
    "copy_bandwidth_GBps": bw / 1e9,
    "sibling_output_fusions": fusions,
    "results": results,
    "scaling": scaling_summary(results),
  }
  print()
  print(report(record))
  write_run(out, record, args.append)
  print(f"\nwrote {out} ({record['wall_s']:.0f} s)")


if __name__ == "__main__":
  main()
