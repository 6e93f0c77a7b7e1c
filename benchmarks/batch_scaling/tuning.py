"""Tuning the baseline: the base-batch learning-rate grid and the two selection rules.

The rules (:func:`select_learning_rates`) were fixed before the runs they
decide; see benchmarks/README.md, "How the base LR is chosen".
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from benchmarks.batch_scaling.sweep import SweepConfig, execute, load_data, plan_runs, resolve

VALIDATION_FRACTION = 0.125


def tune(
  config: SweepConfig,
  grids: dict[str, Sequence[float]],
  progress: bool = True,
  validation_fraction: float = VALIDATION_FRACTION,
  results_path: str | None = None,
  jobs: int = 1,
) -> list[dict]:
  """The base-batch learning-rate grid, scored on a held-out validation split.

  A seeded ``validation_fraction`` of the training set is held out (see
  :func:`load_data`); each optimizer is trained at the base batch with every
  LR of its grid and every seed of ``config.seeds`` (the baseline's warmup,
  decay and epochs) and scored by validation accuracy. The test set is not
  used. Resumable and parallel like :func:`execute`.

  Returns one row per (optimizer, LR, seed), ``split="validation"``, with
  ``test_accuracy`` holding the *validation* accuracy.
  """
  config = dataclasses.replace(config, validation_fraction=validation_fraction)
  task, base = resolve(config)
  data = load_data(config)
  runs = []
  for opt, grid in grids.items():
    method = next(m for m in config.methods if task.optimizer_for(m) == opt)
    for lr in grid:
      cfg = dataclasses.replace(
        config,
        methods=(method,),
        batch_sizes=(base.base_batch_size,),
        learning_rates={**base.learning_rates, opt: lr},
      )
      runs += plan_runs(cfg, train_size=len(data[0]))
  return execute(
    runs,
    config,
    data=data if jobs == 1 else None,
    progress=progress,
    desc="tune",
    results_path=results_path,
    jobs=jobs,
  )


RULES = ("argmax", "one_se")


def select_learning_rates(rows: list[dict]) -> dict[str, dict]:
  """The base LR each selection rule picks from a tuning grid, per optimizer.

  Fixed before any large-batch run of the Fashion-MNIST sweep (see
  benchmarks/README.md, "How the base LR is chosen"):

  * ``argmax``: the LR with the highest mean validation accuracy over the
    tuning seeds (a tie goes to the smaller LR).
  * ``one_se``: the largest LR whose mean validation accuracy is within one
    standard error of that best mean (the one-standard-error rule). The
    standard error is of the best LR's mean: ``std(ddof=1) / sqrt(n)`` over
    its n >= 2 seeds; with one seed, the binomial ``sqrt(p (1 - p) / n_val)``
    of its validation accuracy p on n_val examples.

  A diverged run counts with the accuracy it reached.

  Returns:
    optimizer -> dict(argmax=LR, one_se=LR, best_mean, standard_error,
    se_kind ("seeds" or "binomial"), grid={LR: dict(mean, std, n)}).
  """
  by_opt: dict[str, dict[float, list[dict]]] = {}
  for r in rows:
    by_opt.setdefault(r["optimizer"], {}).setdefault(r["base_learning_rate"], []).append(r)
  out = {}
  for opt, by_lr in by_opt.items():
    grid = {}
    for lr in sorted(by_lr):
      acc = np.array([r["test_accuracy"] for r in by_lr[lr]], float)
      grid[lr] = dict(
        mean=float(acc.mean()), n=len(acc), std=float(acc.std(ddof=1)) if len(acc) > 1 else 0.0
      )
    best = max(grid, key=lambda lr: (grid[lr]["mean"], -lr))
    g = grid[best]
    if g["n"] > 1:
      se, kind = g["std"] / math.sqrt(g["n"]), "seeds"
    else:
      n_val = by_lr[best][0]["test_size"]
      se, kind = math.sqrt(g["mean"] * (1 - g["mean"]) / n_val), "binomial"
    one_se = max(lr for lr in grid if grid[lr]["mean"] >= g["mean"] - se)
    out[opt] = dict(
      argmax=best, one_se=one_se, best_mean=g["mean"], standard_error=se, se_kind=kind, grid=grid
    )
  return out


def format_tuning(rows: list[dict]) -> str:
  """A Markdown table of the grid (mean ± std over seeds) and each rule's pick.

  Under it, one bullet per optimizer: the best mean, its standard error and
  the two rules' picks.
  """
  sel = select_learning_rates(rows)
  head = ["optimizer", "base LR", "val acc %", "seeds", "picked by"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for opt, s in sel.items():
    for lr, g in s["grid"].items():
      picks = ", ".join(rule for rule in RULES if s[rule] == lr)
      lines.append(
        f"| {opt} | {lr:g} | {100 * g['mean']:.2f} ± {100 * g['std']:.2f} | {g['n']} | {picks} |"
      )
  notes = [
    f"- {opt}: best mean {100 * s['best_mean']:.2f}%, one standard error "
    f"{100 * s['standard_error']:.2f} points ({s['se_kind']}); argmax -> {s['argmax']:g}, "
    f"one_se -> {s['one_se']:g}"
    for opt, s in sel.items()
  ]
  return "\n".join(lines + [""] + notes)


DEFAULT_GRIDS = {
  "momentum": (0.0125, 0.025, 0.05, 0.1, 0.2, 0.4),
  "adam": (2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3),
  "lars": (0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
  "lamb": (0.00125, 0.0025, 0.005, 0.01, 0.02),
}
