"""The LARS paper's Table 2 for a real network at its first iteration, on real data.

For every layer (leaf) of a freshly initialised model, the gradient of the first
training batch gives ||w||, ||g|| and the LARS ratio ||w|| / ||g|| (LARS paper,
Table 2; :func:`legw.layerwise_stats`), next to the other members of the
per-layer-rate family (curvature paper §4.3): the MCLR rate med|w| / med|g|
and the PercentDelta rate size(w) / ||g / w||_1, each read back from the legw
transform itself (rate = <u, g> / <g, g>, so the guards show: rate 1 where
the weights are all zero, e.g. biases at initialisation).

Usage (from the repository root)::

    python -m benchmarks.curvature.table2                # both models
    python -m benchmarks.curvature.table2 --models resnet --batch-size 256
    python -m benchmarks.curvature.table2 --report path/to/table2.json   # print its tables
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

import legw
from benchmarks.curvature import common

CONFIG = {
  "dataset": "mnist5k",
  "models": ["resnet", "lstm"],
  "batch_size": 512,
  "seed": 0,
}


def _rate(tx, grads, params):
  """Per-leaf scalar rate R with update = R * g (all leaves, no weight decay)."""
  updates, _ = tx.update(grads, tx.init(params), params)
  return jax.tree.map(
    lambda u, g: jnp.vdot(u, g) / jnp.maximum(jnp.vdot(g, g), 1e-30), updates, grads
  )


def layer_table(model_name: str, batch_size: int, seed: int, dataset: str) -> list[dict]:
  """Rows of per-layer statistics at the first iteration of ``model_name``."""
  x, y, _, _ = common.load(dataset, seed)
  order = np.random.default_rng(seed).permutation(len(x))[:batch_size]
  xb, yb = jnp.asarray(x[order]), jnp.asarray(y[order])
  model = common.make_model(model_name)
  params, batch_stats = common.init_variables(model, seed, x)
  loss = common.make_loss(model)
  grads = jax.jit(jax.grad(lambda p: loss(p, batch_stats, xb, yb, True)[0]))(params)

  stats = legw.layerwise_stats(params, grads)
  all_leaves = {"trust_ratio_mask": True}
  mclr = _rate(legw.scale_by_median_curvature(**all_leaves), grads, params)
  pdelta = _rate(legw.scale_by_percent_delta(**all_leaves), grads, params)
  paths = [legw._masks.leaf_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  shapes = [tuple(np.shape(w)) for w in jax.tree.leaves(params)]
  rows = []
  for path, shape, m, pd in zip(paths, shapes, jax.tree.leaves(mclr), jax.tree.leaves(pdelta)):
    s = stats[path]
    rows.append(
      {
        "layer": path,
        "shape": "x".join(map(str, shape)),
        "kernel": len(shape) > 1,
        "param_norm": float(s["param_norm"]),
        "grad_norm": float(s["grad_norm"]),
        "lars_ratio": float(s["norm_ratio"]),
        "mclr_rate": float(m),
        "percent_delta_rate": float(pd),
      }
    )
  return rows


def _spread(rows: list[dict], key: str = "lars_ratio") -> dict:
  """min, max and max / min of ``key`` over the ``rows`` with a finite positive LARS ratio."""
  rs = [r for r in rows if np.isfinite(r["lars_ratio"]) and r["lars_ratio"] > 0]
  vals = [r[key] for r in rs]
  if not vals:
    return {}
  return {
    "min": min(vals),
    "max": max(vals),
    "max_over_min": max(vals) / min(vals),
    "layers": len(vals),
  }


def summary(rows: list[dict]) -> dict:
  """Spread of the LARS ratio across layers (max / min), kernels and all leaves."""
  kernels = [r for r in rows if r["kernel"]]
  out = {"kernels": _spread(kernels), "all_nonzero": _spread(rows)}
  for key in ("mclr_rate", "percent_delta_rate"):
    vals = [r[key] for r in kernels]
    out[f"kernels_{key}_max_over_min"] = max(vals) / min(vals)
  return out


MODEL_NAMES = {"resnet": "small ResNet", "lstm": "MNIST LSTM", "mlp": "MLP"}
RATES = {  # key: (column of the kernel table, name)
  "lars_ratio": ("‖w‖/‖g‖ (LARS)", "LARS"),
  "mclr_rate": (r"med\|w\|/med\|g\| (MCLR)", "MCLR"),
  "percent_delta_rate": ("n/‖g/w‖₁ (PercentDelta)", "PercentDelta"),
}


def command(config: dict) -> str:
  """The command line that measured a ``table2.json`` with this ``config``."""
  flags = ("models", "batch_size", "seed", "dataset")
  return common.cli_command("benchmarks.curvature.table2", config, CONFIG, flags)


def caption(results: dict) -> str:
  """The one-line caption of the tables of a ``table2.json``."""
  c = results["config"]
  details = f"one batch of {c['batch_size']} training images of {c['dataset']}, seed {c['seed']}"
  return common.caption(results, command(c), details)


def kernel_table(results: dict) -> str:
  """Markdown: ‖w‖, ‖g‖ and the three rates of every kernel, by model, smallest LARS ratio first."""
  lines = [
    "| model | kernel | shape | ‖w‖ | ‖g‖ | " + " | ".join(c for c, _ in RATES.values()) + " |",
    "|---|---|---|---:|---:|---:|---:|---:|",
  ]
  for model, rows in results["tables"].items():
    for r in sorted((r for r in rows if r["kernel"]), key=lambda r: r["lars_ratio"]):
      cells = [r[k] for k in ("param_norm", "grad_norm", *RATES)]
      lines.append(
        f"| {MODEL_NAMES.get(model, model)} | {r['layer']} | {r['shape']} | "
        + " | ".join(f"{x:.3g}" for x in cells)
        + " |"
      )
  return "\n".join(lines)


def _leaves(rows: list[dict], leaves: str) -> list[dict]:
  return [r for r in rows if r["kernel"]] if leaves == "kernels" else rows


def ratio_spread(
  results: dict, model: str = "resnet", key: str = "lars_ratio", leaves: str = "kernels"
) -> str:
  """max / min of a rate over a model's kernels (or ``leaves="all_nonzero"``), e.g. "28×"."""
  x = _spread(_leaves(results["tables"][model], leaves), key)["max_over_min"]
  return f"{x:.0f}×" if x >= 10 else f"{x:.1f}×"


def spread_table(results: dict) -> str:
  """Markdown: per model, the spread (max / min) of each rate over the kernels, and over
  every leaf with non-zero weights where those are more (batch-norm scales)."""
  spreads = " | ".join(f"{name} max/min" for _, name in RATES.values())
  lines = [
    f"| model | leaves | LARS min | LARS max | {spreads} |",
    "|---|---|---:|---:|---:|---:|---:|",
  ]
  for model, rows in results["tables"].items():
    n_kernels = len(_leaves(rows, "kernels"))
    for leaves, what in (("kernels", "kernels"), ("all_nonzero", "non-zero leaves")):
      s = _spread(_leaves(rows, leaves))
      if leaves == "all_nonzero" and s["layers"] == n_kernels:
        continue
      cells = [f"{s['layers']} {what}", f"{s['min']:.3g}", f"{s['max']:.3g}"]
      cells += [ratio_spread(results, model, key, leaves) for key in RATES]
      lines.append(f"| {MODEL_NAMES.get(model, model)} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def report(results: dict) -> str:
  """The caption and both tables of a ``table2.json``, as the README shows them."""
  return "\n\n".join([caption(results), kernel_table(results), spread_table(results)])


def write_csv(rows: list[dict], path: str) -> None:
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    for r in rows:
      w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def plot(tables: dict[str, list[dict]], path: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(len(tables), 1, figsize=(11, 3.6 * len(tables)), squeeze=False)
  for ax, (name, rows) in zip(axes[:, 0], tables.items()):
    idx = np.arange(len(rows))
    lars = [
      r["lars_ratio"] if r["lars_ratio"] > 0 and np.isfinite(r["lars_ratio"]) else np.nan
      for r in rows
    ]
    ax.bar(
      idx,
      lars,
      color=["C0" if r["kernel"] else "C7" for r in rows],
      label="LARS ||w||/||g|| (grey: ndim<=1)",
    )
    ax.plot(idx, [r["mclr_rate"] for r in rows], "v", color="C3", label="MCLR med|w|/med|g|")
    ax.plot(
      idx,
      [r["percent_delta_rate"] for r in rows],
      "o",
      mfc="none",
      color="C2",
      label="PercentDelta n/||g/w||_1",
    )
    ax.set_yscale("log")
    ax.set_xticks(idx, [r["layer"] for r in rows], rotation=70, ha="right", fontsize=7)
    ax.set_title(f"{name}: per-layer rates at the first iteration (mnist5k)")
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--models", nargs="+", default=CONFIG["models"], choices=common.MODELS)
  p.add_argument("--batch-size", type=int, default=CONFIG["batch_size"])
  p.add_argument("--seed", type=int, default=CONFIG["seed"])
  p.add_argument("--dataset", default=CONFIG["dataset"])
  p.add_argument("--out", default=common.OUT_DIR, help="default: benchmarks/runs/curvature/")
  p.add_argument("--report", metavar="JSON", help="print the tables of a results file and exit")
  argv = sys.argv[1:] if argv is None else list(argv)
  args = p.parse_args(argv)
  if args.report:
    results = common.load_results(args.report)
    print(report(results))
    return results["summary"]
  os.makedirs(args.out, exist_ok=True)
  tables, summaries = {}, {}
  for name in args.models:
    rows = layer_table(name, args.batch_size, args.seed, args.dataset)
    tables[name], summaries[name] = rows, summary(rows)
    write_csv(rows, os.path.join(args.out, f"table2-{name}.csv"))
  config = dict(
    CONFIG, models=args.models, batch_size=args.batch_size, seed=args.seed, dataset=args.dataset
  )
  results = {
    **common.environment("benchmarks.curvature.table2", argv),
    "config": config,
    "summary": summaries,
    "tables": tables,
  }
  common.save_json(results, os.path.join(args.out, "table2.json"))
  plot(tables, os.path.join(args.out, "table2.png"))
  print(report(results))
  return summaries


if __name__ == "__main__":
  main()
