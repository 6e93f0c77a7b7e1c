"""Command line: ``legw recipe`` (or ``python -m legw recipe``).

Prints the LEGW batch-size ladder of a tuned baseline (the LEGW paper's
Table 1) and, with ``--plot FILE.png``, draws the schedules as its Figure 2.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Sequence

import numpy as np

from legw.recipe import Recipe
from legw.schedules import DECAYS


def _number(text: str) -> float:
  """A float, also written as a power of two: ``2^2.5`` or ``2**2.5``."""
  t = text.replace("**", "^")
  if "^" in t:
    base, exp = t.split("^", 1)
    return float(base) ** float(exp)
  return float(t)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="legw", description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest="command", required=True)
  r = sub.add_parser("recipe", help="print (and plot) the LEGW ladder of a tuned baseline")
  r.add_argument("--base-batch-size", type=int, default=1024)
  r.add_argument("--base-learning-rate", type=_number, default=2 ** 2.5,
                 help="tuned peak LR; accepts 2^2.5 (default: 2^2.5, Table 1)")
  r.add_argument("--base-warmup-epochs", type=float, default=0.3125)
  r.add_argument("--num-epochs", type=float, default=90)
  r.add_argument("--dataset-size", type=int, default=1_281_167,
                 help="training examples per epoch (default: ImageNet-1k)")
  r.add_argument("--batch-sizes", type=int, nargs="+",
                 default=[1024, 2048, 4096, 8192, 16384, 32768])
  r.add_argument("--decay", choices=DECAYS, nargs="+", default=["poly"],
                 help="one or more decays; each gets its own panel in the plot")
  r.add_argument("--power", type=float, default=2.0)
  r.add_argument("--end-value", type=float, default=0.0)
  r.add_argument("--boundary-epochs", type=float, nargs="*", default=[30, 60, 80],
                 help="multistep boundaries in epochs (default: 30 60 80, Figure 2.1)")
  r.add_argument("--decay-rate", type=float, default=0.1)
  r.add_argument("--lr-scaling", choices=("sqrt", "linear", "none"), default="sqrt")
  r.add_argument("--warmup-scaling", choices=("linear", "none"), default="linear")
  r.add_argument("--warmup", choices=("gradual", "constant"), default="gradual")
  r.add_argument("--plot", metavar="FILE.png", help="draw the schedules (matplotlib)")
  return parser


def recipe_from_args(args: argparse.Namespace, decay: str) -> Recipe:
  return Recipe(
      base_batch_size=args.base_batch_size,
      base_learning_rate=args.base_learning_rate,
      base_warmup_epochs=args.base_warmup_epochs,
      num_epochs=args.num_epochs,
      decay=decay,
      power=args.power,
      end_value=args.end_value,
      boundary_epochs=tuple(args.boundary_epochs) if decay == "multistep" else (),
      decay_rate=args.decay_rate,
      lr_scaling=args.lr_scaling,
      warmup_scaling=args.warmup_scaling,
      warmup=args.warmup,
  )


def schedule_curve(recipe: Recipe, batch_size: int, dataset_size: int,
                   points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
  """(epochs, learning rates) of the schedule at ``batch_size``, for plotting."""
  s = recipe.at(batch_size, dataset_size=dataset_size)
  steps = np.unique(np.concatenate([
      np.linspace(0, s.total_steps, points).astype(np.int64),
      np.arange(0, min(s.total_steps, 4 * max(s.warmup_steps, 1)) + 1)]))
  schedule = recipe.schedule(batch_size, dataset_size=dataset_size)
  lrs = np.asarray(schedule(steps))
  return steps / s.steps_per_epoch, lrs


def plot_ladder(recipes: Sequence[Recipe], batch_sizes: Sequence[int], dataset_size: int,
                path: str) -> None:
  """Figure-2-style plot: one row per recipe (decay), full run and warmup zoom."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(len(recipes), 2, figsize=(12, 4 * len(recipes)), squeeze=False)
  for row, recipe in zip(axes, recipes):
    max_warm = 0.0
    for b in batch_sizes:
      epochs, lrs = schedule_curve(recipe, b, dataset_size)
      label = f"B={b}"
      for ax in row:
        ax.plot(epochs, lrs, label=label)
      max_warm = max(max_warm, recipe.at(b, dataset_size=dataset_size).warmup_epochs)
    title = f"LEGW, {recipe.decay} decay (base B={recipe.base_batch_size}, " \
            f"LR={recipe.base_learning_rate:.4g}, warmup {recipe.base_warmup_epochs:g} ep)"
    row[0].set_title(title, fontsize=10)
    row[1].set_title("warmup (zoom)", fontsize=10)
    row[1].set_xlim(0, max(1.5 * max_warm, 1.0))
    for ax in row:
      ax.set_xlabel("epoch")
      ax.set_ylabel("learning rate")
      ax.grid(alpha=0.3)
    row[0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  try:
    recipes = [recipe_from_args(args, d) for d in args.decay]
    for recipe in recipes:
      print(f"# LEGW ladder: decay={recipe.decay}, base batch {recipe.base_batch_size}, "
            f"base LR {recipe.base_learning_rate:.6g} (2^{math.log2(recipe.base_learning_rate):.2f}), "
            f"base warmup {recipe.base_warmup_epochs:g} epochs, {recipe.num_epochs:g} epochs, "
            f"{args.dataset_size} examples/epoch")
      print(recipe.table(args.batch_sizes, dataset_size=args.dataset_size))
      print()
    if args.plot:
      plot_ladder(recipes, args.batch_sizes, args.dataset_size, args.plot)
      print(f"wrote {args.plot}")
  except ValueError as e:
    print(f"legw recipe: error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
