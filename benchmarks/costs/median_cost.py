"""What an exact median costs on this backend: counting passes and compaction.

``legw.mclr``'s medians (``legw/_median.py``) are a (T+1)-ary search on bit
patterns: each pass is one variadic reduce per array with T counting outputs.
This measures, on the arrays of the ResNet-50 tree counted in place (w and g
of every leaf with at least 65,536 entries, 50.5 M entries):

* ``pass_ms``: one counting pass (T thresholds, the zero count and the min
  above the bracket, as the search does), for each T;
* ``medians_ms``: ``medians_of_magnitudes(w + g, nonzero=True)`` over the
  whole tree (as ``legw.mclr`` calls it) with ``_median._T_CPU`` set to T;
* with ``--primitives``, the XLA primitives a candidate-extraction step would
  need on the largest kernel (3x3x512x512) cut into rows of 16: a reduce of
  per-row flags, ``jnp.cumsum``, ``lax.associative_scan``, ``jnp.nonzero``
  and ``lax.top_k`` over the flags, and the alternative to counting passes:
  one radix-select histogram pass (a scatter-add into 2,048 bins).

CPU time of this process (all threads), median over ``--reps`` interleaved
rounds; a sum over the same arrays is timed alongside as the unit.  Usage::

    python -m benchmarks.costs.median_cost                 # ~3 minutes on 2 CPU cores
    python -m benchmarks.costs.median_cost --primitives
    python -m benchmarks.costs.median_cost --report benchmarks/results/median_cost-runs.json

Writes ``benchmarks/runs/median_cost.json`` (``--out``; ``--append`` adds the run to
the ``runs`` of that file, as in ``results/median_cost-runs.json``) and prints the tables
of benchmarks/costs/README.md (:func:`report`).
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import RUNS_DIR, git_commit
from benchmarks.costs import optimizer_step as ob
from legw import _median


def in_place_arrays(shapes):
  params, grads = ob.make_trees(shapes)
  arrays = list(params.values()) + list(grads.values())
  return arrays, [a for a in arrays if a.size >= _median._SMALL]


def counting_pass(thresholds: int):
  """One pass of the search over each array: T counts, the zeros, a min."""
  t = jnp.arange(1, thresholds + 2, dtype=jnp.int32) * (2**31 // (thresholds + 2))

  def run(arrays):
    outs = []
    for x in arrays:
      b = _median._magnitude_bits(x)
      outs.append(
        _median._reduce(
          [(b <= t[j]).astype(jnp.int32) for j in range(thresholds)]
          + [(b == 0).astype(jnp.int32), jnp.where(b > t[-1], b, 2**31 - 1)],
          [jnp.int32(0)] * (thresholds + 1) + [jnp.int32(2**31 - 1)],
          [jax.lax.add] * (thresholds + 1) + [jax.lax.min],
          tuple(range(b.ndim)),
        )
      )
    return outs

  return jax.jit(run)


def medians_with(thresholds: int, arrays):
  """``medians_of_magnitudes(arrays, nonzero=True)`` compiled with T thresholds per pass."""
  saved, _median._T_CPU = _median._T_CPU, thresholds
  try:
    fn = jax.jit(lambda a: _median.medians_of_magnitudes(a, None, nonzero=True))
    return fn.lower(arrays).compile()
  finally:
    _median._T_CPU = saved


ON_ARRAY = ("row flags (reduce)", "histogram (scatter-add, 2048 bins)")  # the rest take flags


def primitive_fns(rows: int = 16):
  def flags(x):
    b = _median._magnitude_bits(x).reshape(-1, rows)
    lo = jnp.median(b[:64])  # any narrow bracket: ~0.1-1% of the rows flagged
    return jnp.any((b > lo) & (b <= lo + 4000), axis=1)

  def histogram(x, bits=11):  # one radix-select pass: 2,048 bins on the top 11 bits
    top = (_median._magnitude_bits(x).reshape(-1) >> (31 - bits)).astype(jnp.int32)
    return jnp.zeros(2**bits, jnp.int32).at[top].add(1)

  return {
    "row flags (reduce)": jax.jit(flags),
    "histogram (scatter-add, 2048 bins)": jax.jit(histogram),
    "cumsum": jax.jit(lambda f: jnp.cumsum(f.astype(jnp.int32))),
    "associative_scan": jax.jit(lambda f: jax.lax.associative_scan(jnp.add, f.astype(jnp.int32))),
    "nonzero(size=n/16)": jax.jit(lambda f: jnp.nonzero(f, size=f.size // 16)[0]),
    "top_k(k=n/16)": jax.jit(
      lambda f: jax.lax.top_k(jnp.where(f, f.size - jnp.arange(f.size), 0), f.size // 16)[1]
    ),
  }


def cpu_ms(fn, arg, reps):
  jax.block_until_ready(fn(arg))
  times = []
  for _ in range(reps):
    t0 = time.process_time()
    jax.block_until_ready(fn(arg))
    times.append(time.process_time() - t0)
  return times


# -- report: the tables of benchmarks/costs/README.md --------------------------------------


def caption(d: dict) -> str:
  """One line: the command, machine and load of each run of a results file."""
  runs = ob.runs_of(d)
  parts = [
    f"run {i}: load average {r['load_average'][0]:.1f} at the end"
    + (f", commit {r['commit']}" if r.get("commit") else "")
    for i, r in enumerate(runs, 1)
  ]
  r = runs[0]
  return (
    f"Measured by `{r['command']}`: {r['cpu_count']} CPU cores, jax {r['jax']} on "
    f"{r['backend'].upper()}; CPU time, median of interleaved repetitions; "
    + "; ".join(parts)
    + "."
  )


def thresholds_table(d: dict) -> str:
  """Per T (thresholds per pass): the passes of a float32 search, one counting pass over
  the in-place arrays (ms, and in sums of the same arrays), and all the medians of the
  tree, in each run."""
  runs = ob.runs_of(d)
  head = "| T | passes |"
  for i in range(1, len(runs) + 1):
    head += f" run {i}: one pass, ms (sums) | run {i}: all medians (ms) |"
  lines = [head, "|---:|---:|" + "---:|---:|" * len(runs)]
  for t, first in runs[0]["by_thresholds"].items():
    row = f"| {t} | {first['passes_float32']} |"
    for r in runs:
      b = r["by_thresholds"][t]
      row += f" {b['pass_ms']:.1f} ({b['pass_ms'] / r['sum_ms']:.2f}) | {b['medians_ms']:.0f} |"
    lines.append(row)
  sums = [cell for r in runs for cell in (f"{r['sum_ms']:.1f}", "")]
  lines.append("| a sum of the same arrays (ms) | | " + " | ".join(sums) + " |")
  return "\n".join(lines)


def pass_fit(d: dict) -> str:
  """Key figures: a counting pass's cost against T, a least-squares line per run."""
  lines = []
  for i, r in enumerate(ob.runs_of(d), 1):
    t = [int(k) for k in r["by_thresholds"]]
    per, base = np.polyfit(t, [b["pass_ms"] for b in r["by_thresholds"].values()], 1)
    best = min(r["by_thresholds"], key=lambda k: r["by_thresholds"][k]["medians_ms"])
    lines.append(
      f"- run {i}: a pass costs about {base:.1f} ms + {per:.2f} ms per threshold; "
      f"the medians are fastest at T = {best}"
    )
  return "\n".join(lines)


def primitives_table(d: dict) -> str:
  """``--primitives``: each primitive on the largest kernel, ms and in sums of that kernel,
  in each run that has it."""
  runs = [r for r in ob.runs_of(d) if "primitives_ms" in r]
  names = list(dict.fromkeys(n for r in runs for n in r["primitives_ms"]))
  r0 = runs[0]
  n = r0["primitives_entries"]
  lines = [
    f"| on {n / 1e6:.2f} M entries ({n // 16:,} rows of 16) | "
    + " | ".join(f"run {i}: ms (sums)" for i in range(1, len(runs) + 1))
    + " |",
    "|---|" + "---:|" * len(runs),
  ]
  for name in names:
    cells = [
      f"{r['primitives_ms'][name]:.2f} ({r['primitives_ms'][name] / r['primitives_sum_ms']:.1f})"
      if name in r["primitives_ms"]
      else ""
      for r in runs
    ]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  sums = " | ".join(f"{r['primitives_sum_ms']:.2f}" for r in runs)
  lines.append(f"| a sum of the same array | {sums} |")
  return "\n".join(lines)


def report(d: dict) -> str:
  parts = [caption(d), thresholds_table(d), pass_fit(d)]
  if any("primitives_ms" in r for r in ob.runs_of(d)):
    parts.append(primitives_table(d))
  return "\n\n".join(parts)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--thresholds", default="1,3,5,7,11,15", help="comma-separated T values")
  parser.add_argument("--reps", type=int, default=7)
  parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds over the T values")
  parser.add_argument("--primitives", action="store_true")
  parser.add_argument("--quick", action="store_true", help="a small tree (tests)")
  parser.add_argument("--out", default=None)
  parser.add_argument(
    "--append", action="store_true", help="add this run to the runs of --out instead"
  )
  parser.add_argument(
    "--report", metavar="PATH", help="print the tables of a results file; run nothing"
  )
  args = parser.parse_args(argv)
  if args.report:
    print(report(ob.load(args.report)))
    return None
  ts = [int(v) for v in args.thresholds.split(",")]
  shapes = {"a": (256, 256), "b": (320, 257), "c": (17,)} if args.quick else ob.resnet50_shapes()
  arrays, big = in_place_arrays(shapes)
  fns = {("sum", 0): jax.jit(lambda a: [jnp.sum(x) for x in a])}
  for t in ts:
    fns[("pass_ms", t)] = counting_pass(t)
    fns[("medians_ms", t)] = medians_with(t, arrays)
  times: dict = {k: [] for k in fns}
  for _ in range(args.rounds):
    for key, fn in fns.items():
      times[key] += cpu_ms(fn, arrays if key[0] == "medians_ms" else big, args.reps)
  ms = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
  result = {
    "command": "python -m benchmarks.costs.median_cost"
    + (" --primitives" if args.primitives else ""),
    "commit": git_commit(),
    "jax": jax.__version__,
    "backend": jax.default_backend(),
    "cpu_count": os.cpu_count(),
    "load_average": os.getloadavg(),
    "in_place_entries": int(sum(a.size for a in big)),
    "all_entries": int(sum(a.size for a in arrays)),
    "sum_ms": ms[("sum", 0)],
    "by_thresholds": {
      str(t): {
        "passes_float32": _median._passes(31, t + 1),
        "pass_ms": ms[("pass_ms", t)],
        "search_ms_est": ms[("pass_ms", t)] * _median._passes(31, t + 1),
        "medians_ms": ms[("medians_ms", t)],
      }
      for t in ts
    },
  }
  if args.primitives:
    largest = max(big, key=lambda a: a.size)
    prims = primitive_fns()
    flags = prims["row flags (reduce)"](largest)
    result["primitives_ms"] = {
      name: 1e3 * float(np.median(cpu_ms(fn, largest if name in ON_ARRAY else flags, args.reps)))
      for name, fn in prims.items()
    }
    result["primitives_entries"] = int(largest.size)
    result["primitives_flagged_fraction"] = float(jnp.mean(flags))
    result["primitives_sum_ms"] = 1e3 * float(
      np.median(cpu_ms(jax.jit(jnp.sum), largest, args.reps))
    )
  print(report(result))
  out = args.out or os.path.join(RUNS_DIR, "median_cost.json")
  ob.write_run(out, result, args.append)
  print(f"wrote {out}")
  return result


if __name__ == "__main__":
  main()
