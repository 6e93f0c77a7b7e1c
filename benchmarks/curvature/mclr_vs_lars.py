"""MCLR against LARS at one batch size (the curvature paper's Figure 16).

The paper trains ResNet18 on CIFAR-10 at batch 1024 and finds the training
accuracy of the median-curvature rate (MCLR, eq. 20–22) close to LARS's.  Here,
to fit a shared 2-core CPU: a 784-256-256-10 ReLU MLP on the 4,096 real MNIST
training digits of ``mnist5k`` at batch 256 (16 steps an epoch; 1/16 of the
data per step), momentum 0.9, weight decay 5e-4 on kernels, the per-layer rate
on every leaf (``trust_ratio_mask=True``, the papers' per-layer form), a
one-epoch gradual warmup then a power-2 polynomial decay to 0
(:func:`legw.legw_schedule`).  ``--model resnet`` runs the small ResNet with
batch norm of :mod:`benchmarks.models` instead (about 50x slower on CPU).
Each optimizer gets the same small learning-rate grid, in its own units:

* LARS: gamma * 0.001 * ||w|| / (||g|| + beta ||w||)  (trust coefficient 0.001),
* MCLR: gamma * med|w| / (med|g| + beta med|w|)       (no coefficient: gamma is
  about 1e-3 of LARS's),
* PercentDelta (the L1 member) and momentum SGD as references.

The metric is the paper's: training accuracy per epoch (the running accuracy of
the epoch's minibatches, train mode), plus test accuracy at the end (904
held-out digits).

Usage (from the repository root)::

    python -m benchmarks.curvature.mclr_vs_lars
    python -m benchmarks.curvature.mclr_vs_lars --epochs 4 --optimizers lars mclr
    python -m benchmarks.curvature.mclr_vs_lars --report path/to/mclr_vs_lars.json  # its table
"""

from __future__ import annotations

import argparse
import functools
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
  "model_kwargs": {},
  "batch_size": 256,
  "epochs": 20,
  "warmup_epochs": 1.0,
  "momentum": 0.9,
  "weight_decay": 5e-4,
  "seed": 0,
  # Learning-rate grid per optimizer (each in its own units, see the docstring).
  "grids": {
    "lars": [0.5, 2.0, 8.0, 32.0],
    "mclr": [0.0005, 0.002, 0.008, 0.032],
    "percent_delta": [0.002, 0.008, 0.032, 0.128],
    "sgd": [0.025, 0.1, 0.4],
  },
  "optimizer_kwargs": {
    "lars": {"trust_coefficient": 0.001, "trust_ratio_mask": True},
    "mclr": {"trust_ratio_mask": True},
    "percent_delta": {"trust_ratio_mask": True},
    "sgd": {},
  },
}


def train(config: dict, opt_name: str, data) -> list[dict]:
  """Trains one model per learning rate of ``config["grids"][opt_name]``."""
  x, y, xt, yt = data
  model = common.make_model(
    config["model"],
    **{k: tuple(v) if isinstance(v, list) else v for k, v in config["model_kwargs"].items()},
  )
  bs = config["batch_size"]
  steps = len(x) // bs
  schedule = legw.legw_schedule(
    base_learning_rate=1.0,
    base_batch_size=bs,
    batch_size=bs,
    base_warmup_epochs=config["warmup_epochs"],
    num_epochs=config["epochs"],
    steps_per_epoch=steps,
    decay="poly",
    power=2.0,
  )
  unit_lrs = np.asarray(jax.vmap(schedule)(jnp.arange(steps * config["epochs"])), np.float32)
  kwargs = dict(config["optimizer_kwargs"].get(opt_name, {}))
  tx = optax.inject_hyperparams(
    lambda learning_rate: common.make_optimizer(
      opt_name,
      learning_rate,
      momentum=config["momentum"],
      weight_decay=config["weight_decay"],
      **kwargs,
    )
  )(learning_rate=0.0)
  xs, ys = jnp.asarray(x), jnp.asarray(y)

  @functools.partial(jax.jit, donate_argnums=(0,))
  def epoch(carry, perm, lrs):
    def step(carry, inp):
      params, batch_stats, opt_state = carry
      idx, lr = inp
      xb, yb = xs[idx], ys[idx]

      def objective(p):
        if batch_stats:
          logits, upd = model.apply(
            {"params": p, "batch_stats": batch_stats}, xb, train=True, mutable=["batch_stats"]
          )
          new_stats = upd["batch_stats"]
        else:
          logits, new_stats = model.apply({"params": p}, xb, train=True), batch_stats
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
        return loss, (new_stats, jnp.mean(jnp.argmax(logits, -1) == yb))

      (loss, (batch_stats, acc)), g = jax.value_and_grad(objective, has_aux=True)(params)
      opt_state = opt_state._replace(
        hyperparams=dict(opt_state.hyperparams, learning_rate=jnp.asarray(lr, jnp.float32))
      )
      updates, opt_state = tx.update(g, opt_state, params)
      return (optax.apply_updates(params, updates), batch_stats, opt_state), (loss, acc)

    return jax.lax.scan(step, carry, (perm, lrs))

  results = []
  for lr in config["grids"][opt_name]:
    params, batch_stats = common.init_variables(model, config["seed"], x)
    carry = (params, batch_stats, tx.init(params))
    rng = np.random.default_rng(config["seed"])
    hist = {"train_loss": [], "train_accuracy": []}
    t0 = time.perf_counter()
    for e in tqdm(range(config["epochs"]), desc=f"{opt_name} lr={lr:g}", leave=False):
      perm = rng.permutation(len(x))[: steps * bs].reshape(steps, bs)
      lrs = lr * unit_lrs[e * steps : (e + 1) * steps]
      carry, (l, a) = epoch(carry, jnp.asarray(perm), jnp.asarray(lrs))
      hist["train_loss"].append(float(jnp.mean(l)))
      hist["train_accuracy"].append(float(jnp.mean(a)))
    params, batch_stats, _ = carry
    finite = all(np.isfinite(hist["train_loss"]))
    test_acc = common.accuracy(model, params, batch_stats, xt, yt) if finite else float("nan")
    results.append(
      {
        "optimizer": opt_name,
        "learning_rate": lr,
        **hist,
        "final_train_accuracy": hist["train_accuracy"][-1],
        "test_accuracy": test_acc,
        "diverged": not finite,
        "wall_seconds": time.perf_counter() - t0,
      }
    )
  return results


def best(runs: list[dict]) -> dict:
  """The run with the highest final training accuracy (ties: lowest final loss)."""
  ok = [r for r in runs if not r["diverged"]]
  key = lambda r: (r["final_train_accuracy"], -r["train_loss"][-1])
  return max(ok, key=key) if ok else runs[0]


NAMES = {"lars": "LARS", "mclr": "MCLR", "percent_delta": "PercentDelta", "sgd": "momentum SGD"}


def command(config: dict) -> str:
  """The command line that measured a ``mclr_vs_lars.json`` with this ``config``."""
  flags = ("epochs", "batch_size", "seed", "model")
  line = common.cli_command("benchmarks.curvature.mclr_vs_lars", config, CONFIG, flags)
  if list(config["grids"]) != list(CONFIG["grids"]):
    line += " --optimizers " + " ".join(config["grids"])
  return line


def caption(results: dict) -> str:
  """The one-line caption of the table of a ``mclr_vs_lars.json``."""
  c = results["config"]
  details = (
    f"{c['model']} on {c['dataset']}, batch {c['batch_size']}, {c['epochs']} epochs, seed "
    f"{c['seed']}; training {common.training_minutes(results['runs']):.1f} min"
  )
  return common.caption(results, command(c), details)


def first_epoch(run: dict, level: float = 0.99) -> int | None:
  """The first epoch (1-based) whose training accuracy reaches ``level``; None if none does."""
  return next((i + 1 for i, a in enumerate(run["train_accuracy"]) if a >= level), None)


def grid_table(results: dict) -> str:
  """Markdown: per optimizer, every LR of its grid with the final training and test accuracy
  (the best LR, :func:`best`, in bold) and the first epoch at 99% training accuracy of the best."""
  c = results["config"]
  width = max(len(g) for g in c["grids"].values())
  lines = [
    "| optimizer | LR: final train acc. / test acc." + " |" * width + " best LR: epoch ≥ 0.99 |",
    "|---|" + "---|" * width + "---:|",
  ]
  for opt in c["grids"]:
    name = NAMES.get(opt, opt)
    eta = c["optimizer_kwargs"].get(opt, {}).get("trust_coefficient")
    name += f" (η = {eta:g})" if eta else ""
    top = results["best"][opt]
    cells = []
    for r in (r for r in results["runs"] if r["optimizer"] == opt):
      cell = f"{r['learning_rate']:g}: " + (
        "diverged"
        if r["diverged"]
        else f"{r['final_train_accuracy']:.3f} / {r['test_accuracy']:.3f}"
      )
      cells.append(f"**{cell}**" if r["learning_rate"] == top["learning_rate"] else cell)
    cells += [""] * (width - len(cells)) + [str(first_epoch(top) or "–")]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def report(results: dict) -> str:
  """The caption and the table of a ``mclr_vs_lars.json``, as the README shows them."""
  return caption(results) + "\n\n" + grid_table(results)


def plot(runs: list[dict], config: dict, path: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  names = list(dict.fromkeys(r["optimizer"] for r in runs))
  fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
  epochs = np.arange(1, config["epochs"] + 1)
  for i, name in enumerate(names):
    mine = [r for r in runs if r["optimizer"] == name]
    b = best(mine)
    for r in mine:
      style = dict(lw=2.2, alpha=1.0) if r is b else dict(lw=0.9, alpha=0.35, ls="--")
      acc = r["train_accuracy"]
      axes[0].plot(
        epochs[: len(acc)],
        acc,
        color=f"C{i}",
        **style,
        label=f"{name} lr={r['learning_rate']:g}" + (" (best)" if r is b else ""),
      )
    axes[1].plot(
      epochs[: len(b["train_loss"])],
      b["train_loss"],
      color=f"C{i}",
      lw=2,
      label=f"{name} lr={b['learning_rate']:g}: test acc {b['test_accuracy']:.3f}",
    )
  axes[0].set_ylabel("training accuracy (running, per epoch)")
  axes[0].set_ylim(0.0, 1.0)
  axes[1].set_ylabel("training loss")
  axes[1].set_yscale("log")
  for ax in axes:
    ax.set_xlabel("epoch")
    ax.legend(fontsize=7)
  kw = f" {config['model_kwargs']}" if config["model_kwargs"] else ""
  fig.suptitle(
    f"Curvature paper Fig. 16 analogue: {config['model']}{kw} on {config['dataset']}, "
    f"batch {config['batch_size']}, {config['epochs']} epochs, momentum "
    f"{config['momentum']}, weight decay {config['weight_decay']}, per-layer rate on "
    f"every leaf (thick: best LR of each grid)",
    fontsize=9,
  )
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv=None) -> list[dict]:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument(
    "--optimizers", nargs="+", default=list(CONFIG["grids"]), choices=list(CONFIG["grids"])
  )
  p.add_argument("--epochs", type=int, default=CONFIG["epochs"])
  p.add_argument("--batch-size", type=int, default=CONFIG["batch_size"])
  p.add_argument("--seed", type=int, default=CONFIG["seed"])
  p.add_argument("--model", default=CONFIG["model"], choices=("mlp", "resnet"))
  p.add_argument("--out", default=common.OUT_DIR, help="default: benchmarks/runs/curvature/")
  p.add_argument("--report", metavar="JSON", help="print the table of a results file and exit")
  argv = sys.argv[1:] if argv is None else list(argv)
  args = p.parse_args(argv)
  if args.report:
    results = common.load_results(args.report)
    print(report(results))
    return results["runs"]
  config = dict(
    CONFIG,
    epochs=args.epochs,
    batch_size=args.batch_size,
    seed=args.seed,
    model=args.model,
    grids={k: CONFIG["grids"][k] for k in args.optimizers},
  )
  if args.model == "resnet":
    config["model_kwargs"] = {"widths": [8, 16, 32]}
  data = common.load(config["dataset"], 0)
  runs = []
  for name in tqdm(args.optimizers, desc="optimizers"):
    runs.extend(train(config, name, data))
  for r in runs:
    print(f"{r['optimizer']} lr={r['learning_rate']:g}: {r['wall_seconds']:.0f}s")
  os.makedirs(args.out, exist_ok=True)
  results = {
    **common.environment("benchmarks.curvature.mclr_vs_lars", argv),
    "config": config,
    "runs": runs,
    "best": {n: best([r for r in runs if r["optimizer"] == n]) for n in args.optimizers},
  }
  common.save_json(results, os.path.join(args.out, "mclr_vs_lars.json"))
  with open(os.path.join(args.out, "mclr_vs_lars.csv"), "w") as f:
    f.write("optimizer,learning_rate,epoch,train_loss,train_accuracy\n")
    for r in runs:
      for e, (l, a) in enumerate(zip(r["train_loss"], r["train_accuracy"]), 1):
        f.write(f"{r['optimizer']},{r['learning_rate']:g},{e},{l:.6g},{a:.6g}\n")
  plot(runs, config, os.path.join(args.out, "mclr_vs_lars.png"))
  print(report(results))
  return runs


if __name__ == "__main__":
  main()
