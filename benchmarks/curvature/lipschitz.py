"""The LEGW paper's Figure 3: the local Lipschitz estimate L(x, g) along training.

For several batch sizes, train from the same initialisation with momentum SGD
at the square-root-scaled learning rate (LEGW's LR rule, and no warmup: the
point is to see the early stretch warmup is meant to cover), and at regular
points of training measure (:func:`legw.local_lipschitz`)

    L(x_t, d) = |d^T H(x_t) d| / ||d||^2

with H the Hessian of the loss on a fixed probe batch of training images
("approximate it using a small batch", LEGW §4; an exact Hessian-vector
product here, not a finite difference) and two directions d:

* ``step``: the minibatch gradient the optimizer steps along (the paper's g);
* ``probe``: the gradient on the probe batch itself (the same batch at every
  batch size: a less noisy direction).

The question (LEGW §4): L has a peak early in training; does the peak move
right, almost linearly, as the batch grows?  Peaks are reported in epochs and
in iterations, on the curve smoothed by a running median.

Usage (from the repository root)::

    python -m benchmarks.curvature.lipschitz                    # the default CONFIG
    python -m benchmarks.curvature.lipschitz --model mlp --epochs 10
    python -m benchmarks.curvature.lipschitz --report path/to/lipschitz-mlp.json  # print its table
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

import legw
from benchmarks.curvature import common

CONFIG = {
  "dataset": "mnist5k",
  "model": "mlp",
  "batch_sizes": [16, 64, 256, 1024],
  "base_batch_size": 16,
  "base_learning_rate": 0.05,  # benchmarks/batch_scaling/tasks.py: mnist_lstm, mnist5k, momentum
  "lr_scaling": "sqrt",
  "momentum": 0.9,
  "epochs": 10,
  "min_iterations": 0,  # and at least this many steps (more epochs for large batches)
  "dense_iterations": 48,  # measure at every one of the first iterations ...
  "points_per_epoch": 16,  # ... then this many times per epoch
  "probe_batch": 256,
  "seeds": [0, 1, 2],
  "smooth": 5,  # running-median window (measurements) for locating the peak
}


def _measure_steps(
  steps_per_epoch: int, epochs: int, points_per_epoch: int, dense_iterations: int
) -> np.ndarray:
  """Boolean (epochs, steps) mask of the steps at which L is measured."""
  every = max(1, steps_per_epoch // points_per_epoch)
  flags = np.zeros((epochs, steps_per_epoch), bool)
  flags[:, ::every] = True
  flat = flags.reshape(-1)
  flat[:dense_iterations] = True
  return flat.reshape(epochs, steps_per_epoch)


def run_batch_size(config: dict, batch_size: int, seed: int, data) -> dict:
  """Trains at one batch size from seed ``seed``; returns the L curves and losses."""
  x, y, _, _ = data
  model = common.make_model(config["model"])
  loss = common.make_loss(model)
  params, batch_stats = common.init_variables(model, seed, x)
  lr = legw.scale_learning_rate(
    config["base_learning_rate"], config["base_batch_size"], batch_size, rule=config["lr_scaling"]
  )
  tx = common.make_optimizer("sgd", lr, momentum=config["momentum"])
  opt_state = tx.init(params)

  rng = np.random.default_rng(seed)
  probe = rng.permutation(len(x))[: config["probe_batch"]]
  xp, yp = jnp.asarray(x[probe]), jnp.asarray(y[probe])
  xs, ys = jnp.asarray(x), jnp.asarray(y)
  probe_loss = lambda p: loss(p, batch_stats, xp, yp, False)[0]

  def measure(params, g):
    g_probe = jax.grad(probe_loss)(params)
    return jnp.stack(
      [
        legw.local_lipschitz(probe_loss, params, g),
        legw.local_lipschitz(probe_loss, params, g_probe),
      ]
    )

  @functools.partial(jax.jit, donate_argnums=(0,))
  def epoch(carry, perm, flags):
    def step(carry, inp):
      params, opt_state = carry
      idx, flag = inp
      (l, _), g = jax.value_and_grad(
        lambda p: loss(p, batch_stats, xs[idx], ys[idx], True), has_aux=True
      )(params)
      lip = jax.lax.cond(flag, measure, lambda *_: jnp.full((2,), jnp.nan), params, g)
      updates, opt_state = tx.update(g, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), (l, lip)

    return jax.lax.scan(step, carry, (perm, flags))

  steps = len(x) // batch_size
  epochs = max(config["epochs"], math.ceil(config["min_iterations"] / steps))
  flags = _measure_steps(steps, epochs, config["points_per_epoch"], config["dense_iterations"])
  carry = (params, opt_state)
  losses, lips = [], []
  t0 = time.perf_counter()
  for e in tqdm(range(epochs), desc=f"batch {batch_size} seed {seed}", leave=False):
    perm = rng.permutation(len(x))[: steps * batch_size].reshape(steps, batch_size)
    carry, (l, lip) = epoch(carry, jnp.asarray(perm), jnp.asarray(flags[e]))
    losses.append(np.asarray(l))
    lips.append(np.asarray(lip))
  losses, lips = np.concatenate(losses), np.concatenate(lips)
  measured = flags.reshape(-1)
  it = np.nonzero(measured)[0]  # iteration index (0-based) of each measurement
  return {
    "batch_size": batch_size,
    "seed": seed,
    "learning_rate": lr,
    "steps_per_epoch": steps,
    "epochs": epochs,
    "iteration": (it + 1).tolist(),  # 1-based iteration whose x_t and g_t are measured
    "epoch": (it / steps).tolist(),
    "L_step": lips[measured, 0].tolist(),
    "L_probe": lips[measured, 1].tolist(),
    "train_loss": losses.tolist(),
    "wall_seconds": time.perf_counter() - t0,
  }


def running_median(v: np.ndarray, window: int) -> np.ndarray:
  v = np.asarray(v, float)
  if window <= 1:
    return v
  h = window // 2
  return np.array([np.nanmedian(v[max(0, i - h) : i + h + 1]) for i in range(len(v))])


def peak(run: dict, key: str, window: int) -> dict:
  """Location and height of the maximum of the smoothed curve ``run[key]``."""
  s = running_median(run[key], window)
  if not np.any(np.isfinite(s)):
    return {"epoch": math.nan, "iteration": math.nan, "value": math.nan, "at_end": False}
  i = int(np.nanargmax(s))
  return {
    "epoch": run["epoch"][i],
    "iteration": run["iteration"][i],
    "value": float(s[i]),
    "at_end": i >= len(s) - max(1, window // 2) - 1,
  }


def summarize(runs: list[dict], config: dict) -> dict:
  """Peaks per (batch size, seed, direction), their medians over seeds, and the
  log-log slope of the median peak epoch against the batch size (1 = linear)."""
  out = {"per_run": [], "median": {}, "slope_epoch_vs_batch": {}, "slope_iteration_vs_batch": {}}
  for r in runs:
    for key in ("L_step", "L_probe"):
      out["per_run"].append(
        dict(
          peak(r, key, config["smooth"]), batch_size=r["batch_size"], seed=r["seed"], direction=key
        )
      )
  for key in ("L_step", "L_probe"):
    med = {}
    for b in config["batch_sizes"]:
      pk = [q for q in out["per_run"] if q["batch_size"] == b and q["direction"] == key]
      med[b] = {f: float(np.median([q[f] for q in pk])) for f in ("epoch", "iteration", "value")}
    out["median"][key] = med
    bs = np.array(config["batch_sizes"], float)
    for f in ("epoch", "iteration"):
      ys = np.array([med[b][f] for b in config["batch_sizes"]])
      slope = np.polyfit(np.log(bs), np.log(ys), 1)[0] if np.all(ys > 0) else math.nan
      out[f"slope_{f}_vs_batch"][key] = float(slope)
  return out


def _by_batch(d: dict, b: int):
  return d[b] if b in d else d[str(b)]  # int keys, or str keys after a JSON round trip


def command(config: dict) -> str:
  """The command line that measured a ``lipschitz-<model>.json`` with this ``config``."""
  flags = (
    "model",
    "batch_sizes",
    "epochs",
    "min_iterations",
    "dense_iterations",
    "points_per_epoch",
    "probe_batch",
    "base_learning_rate",
    "lr_scaling",
    "seeds",
  )
  return common.cli_command("benchmarks.curvature.lipschitz", config, CONFIG, flags)


def caption(results: dict) -> str:
  """The one-line caption of the table of a ``lipschitz-<model>.json``."""
  c = results["config"]
  seeds = len(c["seeds"])
  details = (
    f"{c['model']} on {c['dataset']}, {seeds} seed{'s' if seeds > 1 else ''}, probe batch "
    f"{c['probe_batch']}, {c['lr_scaling']} LR scaling from {c['base_learning_rate']:g} at batch "
    f"{c['base_batch_size']}; training {common.training_minutes(results['runs']):.1f} min"
  )
  return common.caption(results, command(c), details)


def peaks_table(results: dict) -> str:
  """Markdown: per batch size, the peak of L for both directions (median over seeds, the
  seeds' range of the peak epoch in parentheses), the last epoch's mean training loss, and
  a last row with the log-log slope of the peak position against the batch size."""
  c, s = results["config"], results["summary"]
  lines = [
    "| batch | LR | epochs | peak epoch (minibatch g) | iteration | peak L | "
    "peak epoch (probe g) | iteration | final loss |",
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for b in c["batch_sizes"]:
    runs = [r for r in results["runs"] if r["batch_size"] == b]
    loss = np.median([np.mean(r["train_loss"][-r["steps_per_epoch"] :]) for r in runs])
    cells = [f"{b}", f"{runs[0]['learning_rate']:g}", f"{max(r['epochs'] for r in runs)}"]
    for key in ("L_step", "L_probe"):
      med = _by_batch(s["median"][key], b)
      epochs = [q["epoch"] for q in s["per_run"] if q["batch_size"] == b and q["direction"] == key]
      spread = f" ({min(epochs):.3g}–{max(epochs):.3g})" if len(epochs) > 1 else ""
      cells += [f"{med['epoch']:.3g}{spread}", f"{med['iteration']:.0f}"]
      cells += [f"{med['value']:.1f}"] if key == "L_step" else []
    lines.append("| " + " | ".join(cells + [f"{loss:.3f}"]) + " |")
  slope = [
    f"{s[f'slope_{f}_vs_batch'][key]:.2f}".replace("-", "−")
    for key in ("L_step", "L_probe")
    for f in ("epoch", "iteration")
  ]
  lines.append(f"| slope vs batch | | | {slope[0]} | {slope[1]} | | {slope[2]} | {slope[3]} | |")
  return "\n".join(lines)


def report(results: dict) -> str:
  """The caption and the table of a ``lipschitz-<model>.json``, as the README shows them."""
  return caption(results) + "\n\n" + peaks_table(results)


def plot(runs: list[dict], summary: dict, config: dict, path: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(2, 3, figsize=(17, 8.5))
  first = [r for r in runs if r["seed"] == config["seeds"][0]]
  labels = {"L_step": "minibatch g", "L_probe": "probe-batch g"}
  for col, key in enumerate(("L_step", "L_probe")):
    for i, r in enumerate(first):
      s = running_median(r[key], config["smooth"])
      pk = peak(r, key, config["smooth"])
      for row, xkey in enumerate(("epoch", "iteration")):
        ax = axes[row, col]
        ax.plot(r[xkey], r[key], color=f"C{i}", alpha=0.25, lw=0.8)
        ax.plot(
          r[xkey],
          s,
          color=f"C{i}",
          lw=1.8,
          label=f"B={r['batch_size']} (lr {r['learning_rate']:.3g})",
        )
        ax.plot(pk[xkey], pk["value"], "v", color=f"C{i}", ms=9, mec="k")
    for row, xkey in enumerate(("epoch", "iteration")):
      ax = axes[row, col]
      ax.set_yscale("log")
      if xkey == "epoch":
        ax.set_xscale("symlog", linthresh=0.1)
        ax.set_xlim(left=0.0)
      else:
        ax.set_xscale("log")
      ax.set_xlabel("epochs" if xkey == "epoch" else "iteration (1-based)")
      ax.set_ylabel(f"L(x, g), {labels[key]}")
      ax.set_title(f"seed {config['seeds'][0]}; triangles: peak of the running median", fontsize=8)
      ax.legend(fontsize=7)
  bs = np.array(config["batch_sizes"], float)
  for row, f in enumerate(("epoch", "iteration")):
    ax = axes[row, 2]
    for j, key in enumerate(("L_step", "L_probe")):
      pts = [q for q in summary["per_run"] if q["direction"] == key]
      ax.plot(
        [q["batch_size"] * (1.04 if j else 0.96) for q in pts],
        [q[f] for q in pts],
        "o" if j else "s",
        color=f"C{j}",
        alpha=0.4,
        mfc="none",
      )
      med = [_by_batch(summary["median"][key], b)[f] for b in config["batch_sizes"]]
      ax.plot(
        bs,
        med,
        "-",
        color=f"C{j}",
        marker="o" if j else "s",
        label=f"{labels[key]}: median over seeds, slope {summary[f'slope_{f}_vs_batch'][key]:.2f}",
      )
    if f == "epoch":
      ref = _by_batch(summary["median"]["L_step"], config["batch_sizes"][0])["epoch"] * bs / bs[0]
      ax.plot(bs, ref, "k:", label="linear in batch size (slope 1)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel(f"peak position ({f}s)")
    ax.legend(fontsize=7)
  fig.suptitle(
    f"LEGW Fig. 3 reproduction: {config['model']} on {config['dataset']}, momentum "
    f"{config['momentum']}, {config['lr_scaling']} LR scaling from "
    f"{config['base_learning_rate']} at B={config['base_batch_size']}, no warmup; "
    f"H on a fixed {config['probe_batch']}-image batch",
    fontsize=10,
  )
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--model", default=CONFIG["model"], choices=common.MODELS)
  p.add_argument("--batch-sizes", type=int, nargs="+", default=CONFIG["batch_sizes"])
  p.add_argument("--epochs", type=int, default=CONFIG["epochs"])
  p.add_argument("--min-iterations", type=int, default=CONFIG["min_iterations"])
  p.add_argument("--dense-iterations", type=int, default=CONFIG["dense_iterations"])
  p.add_argument("--points-per-epoch", type=int, default=CONFIG["points_per_epoch"])
  p.add_argument("--probe-batch", type=int, default=CONFIG["probe_batch"])
  p.add_argument("--base-learning-rate", type=float, default=CONFIG["base_learning_rate"])
  p.add_argument("--lr-scaling", default=CONFIG["lr_scaling"], choices=("sqrt", "linear", "none"))
  p.add_argument("--seeds", type=int, nargs="+", default=CONFIG["seeds"])
  p.add_argument("--tag", default=None, help="results file suffix (default: the model name)")
  p.add_argument("--out", default=common.OUT_DIR, help="default: benchmarks/runs/curvature/")
  p.add_argument("--replot", metavar="JSON", help="redraw the figure from a results file")
  p.add_argument("--report", metavar="JSON", help="print the table of a results file and exit")
  argv = sys.argv[1:] if argv is None else list(argv)
  args = p.parse_args(argv)
  if args.report:
    results = common.load_results(args.report)
    print(report(results))
    return results["summary"]
  if args.replot:
    with open(args.replot) as f:
      saved = json.load(f)
    plot(saved["runs"], saved["summary"], saved["config"], args.replot[: -len(".json")] + ".png")
    return saved["summary"]
  config = dict(
    CONFIG,
    model=args.model,
    batch_sizes=args.batch_sizes,
    epochs=args.epochs,
    min_iterations=args.min_iterations,
    dense_iterations=args.dense_iterations,
    points_per_epoch=args.points_per_epoch,
    probe_batch=args.probe_batch,
    base_learning_rate=args.base_learning_rate,
    lr_scaling=args.lr_scaling,
    seeds=args.seeds,
  )
  tag = args.tag or args.model
  data = common.load(config["dataset"], 0)
  runs = []
  for b in tqdm(config["batch_sizes"], desc="batch sizes"):
    for seed in config["seeds"]:
      runs.append(run_batch_size(config, b, seed, data))
  summary = summarize(runs, config)
  for q in summary["per_run"]:
    print(
      f"B={q['batch_size']:5d} seed {q['seed']} {q['direction']:7s} peak L {q['value']:8.4g} "
      f"at epoch {q['epoch']:7.3f} (iteration {q['iteration']:4d})"
      f"{'  [at the end of the run]' if q['at_end'] else ''}"
    )
  for r in runs:
    print(
      f"B={r['batch_size']:5d} seed {r['seed']} lr {r['learning_rate']:.4g}: final-epoch loss "
      f"{np.mean(r['train_loss'][-r['steps_per_epoch'] :]):.4f} [{r['wall_seconds']:.0f}s]"
    )
  os.makedirs(args.out, exist_ok=True)
  results = {
    **common.environment("benchmarks.curvature.lipschitz", argv),
    "config": config,
    "summary": summary,
    "runs": runs,
  }
  common.save_json(results, os.path.join(args.out, f"lipschitz-{tag}.json"))
  with open(os.path.join(args.out, f"lipschitz-{tag}-peaks.csv"), "w") as f:
    f.write("batch_size,seed,direction,peak_epoch,peak_iteration,peak_L,peak_at_end\n")
    for q in summary["per_run"]:
      f.write(
        f"{q['batch_size']},{q['seed']},{q['direction']},{q['epoch']:.4f},"
        f"{q['iteration']},{q['value']:.6g},{q['at_end']}\n"
      )
  plot(runs, summary, config, os.path.join(args.out, f"lipschitz-{tag}.png"))
  print(report(results))
  return summary


if __name__ == "__main__":
  main()
