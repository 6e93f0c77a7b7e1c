"""Command line: ``legw recipe`` (or ``python -m legw recipe``).

Prints the LEGW batch-size ladder of a tuned baseline (the LEGW paper's Table 1); ``--plot
FILE.png`` draws the schedules (its Figure 2). A mistake on the command line ends with one
line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import numpy as np

from legw import __version__
from legw._recipe import Recipe
from legw._scaling import scale_num_epochs, scale_warmup_epochs
from legw._schedules import DECAYS

PLOT_EXTRA = "pip install 'legw[plot]'"


class _Parser(argparse.ArgumentParser):
  """An argument parser that reports a mistake in one line (no usage block)."""

  def error(self, message: str) -> NoReturn:
    self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def _number(text: str) -> float:
  """A finite float, also written as a power of two: ``2^2.5`` or ``2**2.5``."""
  t = text.strip().replace("**", "^")
  try:
    if "^" in t:
      base, exp = t.split("^", 1)
      value = float(base) ** float(exp)
    else:
      value = float(t)
  except (ValueError, OverflowError, ZeroDivisionError):
    value = math.nan
  if isinstance(value, complex) or not math.isfinite(value):
    raise argparse.ArgumentTypeError(
      f"invalid number {text!r} (expected a finite number such as 0.1, 2^2.5 or 2**2.5)"
    )
  return value


def _positive_int(text: str) -> int:
  """A positive integer (a batch or data set size)."""
  try:
    value = int(text)
  except ValueError:
    value = 0
  if value <= 0:
    raise argparse.ArgumentTypeError(f"invalid size {text!r} (expected a positive integer)")
  return value


def build_parser() -> argparse.ArgumentParser:
  """The ``legw`` argument parser (every option documented with its default)."""
  fmt = argparse.ArgumentDefaultsHelpFormatter
  parser = _Parser(prog="legw", description=(__doc__ or "").splitlines()[0], formatter_class=fmt)
  parser.add_argument("--version", action="version", version=f"legw {__version__}")
  sub = parser.add_subparsers(dest="command", required=True, metavar="{recipe}")
  r = sub.add_parser(
    "recipe",
    formatter_class=fmt,
    help="print (and plot) the LEGW ladder of a tuned baseline",
    description="Print the LEGW ladder of a recipe tuned at one batch size: peak LR scaled "
    "by sqrt(k), warmup epochs by k (k = batch / base batch). The defaults are "
    "the LEGW paper's Table 1 (ResNet-50 on ImageNet).",
  )
  r.add_argument(
    "--base-batch-size",
    metavar="B",
    type=_positive_int,
    default=1024,
    help="batch size the recipe was tuned at",
  )
  r.add_argument(
    "--base-learning-rate",
    metavar="LR",
    type=_number,
    default="2^2.5",
    help="tuned peak LR at the base batch; accepts 2^2.5 or 2**2.5",
  )
  r.add_argument(
    "--base-warmup-epochs",
    metavar="EPOCHS",
    type=_number,
    default=0.3125,
    help="tuned warmup length at the base batch, in epochs",
  )
  r.add_argument(
    "--num-epochs",
    metavar="EPOCHS",
    type=_number,
    default=90,
    help="training length in epochs (the same at every batch size, or at the base batch with "
    "--noise-scale)",
  )
  r.add_argument(
    "--dataset-size",
    metavar="N",
    type=_positive_int,
    default=1_281_167,
    help="training examples per epoch (the default is ImageNet-1k)",
  )
  r.add_argument(
    "--batch-sizes",
    metavar="B",
    type=_positive_int,
    nargs="+",
    default=[1024, 2048, 4096, 8192, 16384, 32768],
    help="the batch sizes of the ladder",
  )
  r.add_argument(
    "--decay",
    choices=DECAYS,
    nargs="+",
    default=["poly"],
    help="one or more decays after warmup; each gets its own panel in the plot",
  )
  r.add_argument("--power", metavar="P", type=_number, default=2.0, help="power of the poly decay")
  r.add_argument(
    "--poly-origin",
    choices=("warmup_end", "step_0"),
    default="warmup_end",
    help="poly decay counted from the end of warmup (continuous; MLPerf LARS) or from step 0 "
    "(the LEGW paper's text, §3.2: drops at the end of warmup)",
  )
  r.add_argument(
    "--end-value",
    metavar="LR",
    type=_number,
    default=0.0,
    help="LR at the end of the poly and cosine decays",
  )
  r.add_argument(
    "--boundary-epochs",
    metavar="EPOCH",
    type=_number,
    nargs="*",
    default=[30, 60, 80],
    help="multistep boundaries in epochs (Figure 2.1); each must lie after the longest warmup "
    "of the ladder (LEGW scales the warmup epochs with the batch: base warmup x k) and "
    "before --num-epochs",
  )
  r.add_argument(
    "--decay-rate",
    metavar="R",
    type=_number,
    default=0.1,
    help="factor per multistep boundary (or per exponential period)",
  )
  r.add_argument(
    "--lr-scaling",
    choices=("sqrt", "linear", "none"),
    default="sqrt",
    help="how the peak LR follows the batch size",
  )
  r.add_argument(
    "--warmup-scaling",
    choices=("linear", "none"),
    default="linear",
    help="how the warmup epochs follow the batch size (linear is LEGW)",
  )
  r.add_argument(
    "--warmup",
    choices=("gradual", "constant"),
    default="gradual",
    help="gradual (linear from 0) or constant warmup",
  )
  r.add_argument(
    "--noise-scale",
    metavar="B",
    type=_number,
    help="measured gradient noise scale B_noise (examples; e.g. the median B_simple over the "
    "second half of the base run): --num-epochs becomes the base batch's and each batch B "
    "trains (1 + B/B_noise)/(1 + base/B_noise) times as long (McCandlish et al. 2018); "
    "adds an epochs column",
  )
  r.add_argument(
    "--plot",
    metavar="FILE.png",
    help=f"draw the schedules as the paper's Figure 2 (needs matplotlib: {PLOT_EXTRA})",
  )
  return parser


def recipe_from_args(args: argparse.Namespace, decay: str) -> Recipe:
  """The :class:`legw.Recipe` that the parsed options describe, with ``decay``."""
  return Recipe(
    base_batch_size=args.base_batch_size,
    base_learning_rate=args.base_learning_rate,
    base_warmup_epochs=args.base_warmup_epochs,
    num_epochs=args.num_epochs,
    decay=decay,
    power=args.power,
    poly_origin=args.poly_origin if decay == "poly" else "warmup_end",
    end_value=args.end_value,
    boundary_epochs=tuple(args.boundary_epochs) if decay == "multistep" else (),
    decay_rate=args.decay_rate,
    lr_scaling=args.lr_scaling,
    warmup_scaling=args.warmup_scaling,
    warmup=args.warmup,
    noise_scale=args.noise_scale,
  )


def schedule_curve(
  recipe: Recipe, batch_size: int, dataset_size: int, points: int = 2000
) -> tuple[np.ndarray, np.ndarray]:
  """(epochs, learning rates) of the schedule at ``batch_size``, for plotting."""
  s = recipe.at(batch_size, dataset_size=dataset_size)
  steps = np.unique(
    np.concatenate(
      [
        np.linspace(0, s.total_steps, points).astype(np.int64),
        np.arange(0, min(s.total_steps, 4 * max(s.warmup_steps, 1)) + 1),
      ]
    )
  )
  schedule = recipe.schedule(batch_size, dataset_size=dataset_size)
  lrs = np.asarray(schedule(steps))
  return steps / s.steps_per_epoch, lrs


def plot_ladder(
  recipes: Sequence[Recipe], batch_sizes: Sequence[int], dataset_size: int, path: str
) -> None:
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
    title = (
      f"LEGW, {recipe.decay} decay (base B={recipe.base_batch_size}, "
      f"LR={recipe.base_learning_rate:.4g}, warmup {recipe.base_warmup_epochs:g} ep)"
    )
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


def _check_plot_path(path: str) -> str | None:
  """Why ``--plot path`` cannot be written (one line), or None."""
  try:
    import matplotlib  # noqa: F401
  except ImportError:
    return f"--plot needs matplotlib, which is not installed: {PLOT_EXTRA}"
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    return f"--plot {path}: the folder {folder} does not exist"
  if os.path.isdir(path):
    return f"--plot {path}: is a folder, not a file name"
  return None


def _check_boundaries(recipe: Recipe, batch_sizes: Sequence[int]) -> str | None:
  """Why the multistep ``recipe`` cannot run at every batch size of the ladder, or None: LEGW
  scales the warmup by k, so a boundary can fall inside a large batch's warmup."""
  if recipe.decay != "multistep":
    return None
  bounds = " ".join(f"{b:g}" for b in recipe.boundary_epochs)
  for b in sorted(batch_sizes, reverse=True):
    warmup = scale_warmup_epochs(
      recipe.base_warmup_epochs, recipe.base_batch_size, b, recipe.warmup_scaling
    )
    stretch, stretched = 1.0, ""
    if recipe.noise_scale is not None:  # the boundaries stretch with the epoch budget
      stretch = scale_num_epochs(1.0, recipe.base_batch_size, b, noise_scale=recipe.noise_scale)
      stretched = f" (x{stretch:.4g} by --noise-scale at this batch)"
    early = [e for e in recipe.boundary_epochs if not warmup < e * stretch]
    if early and warmup < recipe.num_epochs * stretch:
      k = b / recipe.base_batch_size
      return (
        f"--decay multistep: at batch size {b} the warmup is {warmup:g} epochs "
        f"({recipe.base_warmup_epochs:g} x k={k:g}), past the boundary {early[0]:g}{stretched} of "
        f"--boundary-epochs {bounds}. Choose each boundary after the longest warmup of the "
        f"ladder ({warmup:g} epochs, at batch {b}) and before --num-epochs "
        f"{recipe.num_epochs:g}, or leave out the batch sizes whose warmup passes them"
      )
  return None


def _error(prog: str, message: str) -> int:
  """Prints ``message`` as the parser's errors are printed (one line); returns status 2."""
  print(f"{prog}: error: {message.rstrip('.')}; see '{prog} --help'", file=sys.stderr)
  return 2


def main(argv: Sequence[str] | None = None) -> int:
  """Runs ``legw`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
  args = build_parser().parse_args(argv)
  prog = "legw recipe"
  if args.plot:
    problem = _check_plot_path(args.plot)
    if problem:
      return _error(prog, problem)
  try:
    # Everything is checked, and every table made, before anything is printed.
    recipes = [recipe_from_args(args, d) for d in args.decay]
    for recipe in recipes:
      problem = _check_boundaries(recipe, args.batch_sizes)
      if problem:
        return _error(prog, problem)
    tables = [recipe.table(args.batch_sizes, dataset_size=args.dataset_size) for recipe in recipes]
  except ValueError as e:
    return _error(prog, str(e))
  for recipe, table in zip(recipes, tables):
    log2_lr = math.log2(recipe.base_learning_rate) if recipe.base_learning_rate > 0 else -math.inf
    epochs = f"{recipe.num_epochs:g} epochs"
    if recipe.noise_scale is not None:
      epochs += f" at the base batch (noise scale {recipe.noise_scale:g})"
    print(
      f"# LEGW ladder: decay={recipe.decay}, base batch {recipe.base_batch_size}, "
      f"base LR {recipe.base_learning_rate:.6g} (2^{log2_lr:.2f}), "
      f"base warmup {recipe.base_warmup_epochs:g} epochs, {epochs}, "
      f"{args.dataset_size} examples/epoch"
    )
    print(table)
    print()
  if args.plot:
    try:
      plot_ladder(recipes, args.batch_sizes, args.dataset_size, args.plot)
    except (ValueError, OSError) as e:
      return _error(prog, str(e))
    print(f"wrote {args.plot}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
