"""How much does tuning at the large batch recover?

LEGW's promise is *no retuning*: a recipe tuned at batch 128 is carried to
batch 8192 (64x) by rule. Nado et al. 2021 ("A Large Batch Optimizer Reality
Check") argue that a baseline tuned at the large batch itself closes such gaps.
This module measures both on ``mnist_lstm`` / ``fashion_mnist`` (25 epochs,
constant LR after a gradual warmup, the LEGW paper's §5.1.1 schedule):

1. ``scaling``: LEGW (``legw``) and no scaling (``none``) at 8192 from the
   batch-128 baseline, seeds 0-5, on the test set (zero tuning runs at 8192).
2. ``trials``: a fixed budget of :data:`NUM_TRIALS` trials per optimizer at
   8192 — Nesterov momentum and Adam — over (peak LR, warmup epochs), the
   points of a scrambled 2-D Halton sequence (as in Nado et al. and AlgoPerf's
   baselines), one seed each, scored on a validation split held out of the
   training set (the test set is never seen).
3. ``finals``: each optimizer's picked trial (:func:`select_trial`) with seeds
   0-4 on the test set.

The protocol (search spaces, budget, selection rule) is plain data below and
was committed, with its description in benchmarks/README.md ("Tuned at the large batch"),
before the first run it decides. Every phase is resumable (one JSON per
phase, rewritten after every finished run)::

    python -m benchmarks.large_batch_tuning --jobs 2              # all phases
    python -m benchmarks.large_batch_tuning --phases scaling      # just one
    python -m benchmarks.large_batch_tuning --report              # tables, plot

Results go to ``--out-dir`` (default: the untracked ``benchmarks/runs/``);
the committed reference is in ``benchmarks/results/``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np

from benchmarks.batch_scaling import report, sweep, tuning

TASK, DATASET = "mnist_lstm", "fashion_mnist"
BATCH_SIZE = 8192
NUM_EPOCHS = 25
NUM_TRIALS = 12
HALTON_SEED = 0
TRIAL_SEED = 0
FINAL_SEEDS = (0, 1, 2, 3, 4)
SCALING_SEEDS = (0, 1, 2, 3, 4, 5)
SCALING_METHODS = ("legw", "none")
STEM = f"{TASK}-{DATASET}-tuned{BATCH_SIZE}"


@dataclasses.dataclass(frozen=True)
class SearchSpace:
  """Where the trials of one optimizer are drawn.

  Attributes:
    method: the sweep method (:data:`benchmarks.batch_scaling.tasks.METHODS`) whose
      optimizer is tuned; it runs with no scaling rule at ``BATCH_SIZE``.
    learning_rate: (low, high) of the peak LR, sampled log-uniformly.
    warmup_epochs: (low, high) of the gradual warmup, in epochs, uniformly.
  """

  method: str
  learning_rate: tuple[float, float]
  warmup_epochs: tuple[float, float]


# Fixed before the first trial. Nesterov: from the batch-128 LR (0.1, what
# `none` uses) to 64x it (6.4, what linear scaling uses); LEGW's 0.8 is inside.
# Adam: a quarter of its batch-128 LR (0.002) to 16x it. Warmup: none to half
# the run (LEGW's 2 epochs is inside).
SPACES = {
  "nesterov": SearchSpace("nesterov", (0.1, 6.4), (0.0, 12.5)),
  "adam": SearchSpace("adam", (5e-4, 3.2e-2), (0.0, 12.5)),
}


def halton_points(space: SearchSpace, n: int = NUM_TRIALS, seed: int = HALTON_SEED) -> list[dict]:
  """The first ``n`` points of a scrambled 2-D Halton sequence, in ``space``.

  Coordinate 0 is the peak LR (log scale), coordinate 1 the warmup epochs.
  LRs are rounded to 3 significant digits and warmups to 0.01 epoch (readable
  configurations; the rounding is part of the protocol).
  """
  from scipy.stats import qmc

  u = qmc.Halton(d=2, scramble=True, seed=seed).random(n)
  lo, hi = np.log(space.learning_rate[0]), np.log(space.learning_rate[1])
  w_lo, w_hi = space.warmup_epochs
  return [
    dict(
      trial=i,
      learning_rate=float(f"{math.exp(lo + a * (hi - lo)):.3g}"),
      warmup_epochs=round(float(w_lo + b * (w_hi - w_lo)), 2),
    )
    for i, (a, b) in enumerate(u)
  ]


def _config(method: str, learning_rate: float, warmup_epochs: float, seeds, split: str, data_dir):
  from benchmarks.batch_scaling.tasks import get_task

  optimizer = get_task(TASK).optimizer_for(method)
  return sweep.SweepConfig(
    task=TASK,
    dataset=DATASET,
    methods=(method,),
    batch_sizes=(BATCH_SIZE,),
    base_batch_size=BATCH_SIZE,
    num_epochs=NUM_EPOCHS,
    base_warmup_epochs=warmup_epochs,
    learning_rates={optimizer: learning_rate},
    seeds=tuple(seeds),
    data_dir=data_dir,
    validation_fraction=tuning.VALIDATION_FRACTION if split == "validation" else None,
  )


def plan_trials(train_size: int, data_dir: str | None = None) -> list[dict]:
  """Every trial of every search space, interleaved (trial 0 of each, then 1, ...)."""
  per_space = []
  for space in SPACES.values():
    runs = []
    for point in halton_points(space):
      cfg = _config(
        space.method,
        point["learning_rate"],
        point["warmup_epochs"],
        (TRIAL_SEED,),
        "validation",
        data_dir,
      )
      for run in sweep.plan_runs(cfg, train_size):
        runs.append(dict(run, trial=point["trial"]))
    per_space.append(runs)
  return [run for group in zip(*per_space) for run in group]


def select_trial(rows: list[dict]) -> dict[str, dict]:
  """The trial each optimizer carries to the test set (fixed before the trials ran).

  The best trial is the one with the highest validation accuracy. Trials
  within one binomial standard error of it, ``sqrt(p (1 - p) / n_val)`` of
  the best accuracy p on n_val validation images, are taken as tied with it
  (one seed each: no seed spread to use, as in the one-standard-error rule of
  :func:`benchmarks.batch_scaling.tuning.select_learning_rates`), and of those the one
  with the **smallest peak LR** is picked: the most conservative step, the
  least likely to blow up on a seed it was not tried with (a ``†`` run,
  :func:`benchmarks.batch_scaling.report.blew_up`, is never picked). A diverged or
  blown-up trial counts with the accuracy it reached.

  Returns:
    optimizer -> dict(pick=trial row, best=trial row, standard_error,
    tied=[trial indices], trials=number of trials).
  """
  out: dict[str, dict] = {}
  by_opt: dict[str, list[dict]] = {}
  for r in rows:
    by_opt.setdefault(r["optimizer"], []).append(r)
  for opt, trials in by_opt.items():
    best = max(trials, key=lambda r: (r["test_accuracy"], -r["peak_learning_rate"]))
    p, n_val = best["test_accuracy"], best["test_size"]
    se = math.sqrt(p * (1 - p) / n_val)
    tied = [r for r in trials if r["test_accuracy"] >= p - se and not report.blew_up(r)]
    pick = min(tied or [best], key=lambda r: (r["peak_learning_rate"], -r["test_accuracy"]))
    out[opt] = dict(
      pick=_trial_summary(pick),
      best=_trial_summary(best),
      standard_error=se,
      tied=sorted(r["trial"] for r in tied),
      trials=len(trials),
    )
  return out


def _trial_summary(r: dict) -> dict:
  return dict(
    trial=r["trial"],
    method=r["method"],
    learning_rate=r["peak_learning_rate"],
    warmup_epochs=r["warmup_epochs"],
    validation_accuracy=r["test_accuracy"],
  )


def plan_finals(selection: dict[str, dict], train_size: int, data_dir=None) -> list[dict]:
  """Each optimizer's pick with every seed of :data:`FINAL_SEEDS`, on the test set."""
  runs = []
  for s in selection.values():
    p = s["pick"]
    cfg = _config(
      p["method"], p["learning_rate"], p["warmup_epochs"], FINAL_SEEDS, "test", data_dir
    )
    runs += [dict(run, trial=p["trial"]) for run in sweep.plan_runs(cfg, train_size)]
  return runs


def scaling_config(data_dir: str | None = None) -> sweep.SweepConfig:
  """LEGW and no scaling at 8192 from the batch-128 baseline (the main sweep's file)."""
  return sweep.SweepConfig(
    task=TASK,
    dataset=DATASET,
    methods=SCALING_METHODS,
    batch_sizes=(BATCH_SIZE,),
    seeds=SCALING_SEEDS,
    data_dir=data_dir,
  )


def paths(out_dir: str) -> dict[str, str]:
  return dict(
    scaling=os.path.join(out_dir, f"{TASK}-{DATASET}.json"),
    trials=os.path.join(out_dir, f"{STEM}-trials.json"),
    selection=os.path.join(out_dir, f"{STEM}-selection.json"),
    finals=os.path.join(out_dir, f"{STEM}.json"),
    report=os.path.join(out_dir, f"{STEM}.md"),
    plot=os.path.join(out_dir, f"{STEM}.png"),
  )


def run_phase(
  phase: str, out_dir: str, jobs: int = 1, data_dir=None, progress: bool = True
) -> list[dict]:
  """Trains what is left of one phase (``scaling``, ``trials`` or ``finals``)."""
  p = paths(out_dir)
  if phase == "scaling":
    cfg = scaling_config(data_dir)
    return sweep.run_sweep(cfg, progress=progress, results_path=p["scaling"], jobs=jobs)
  if phase == "trials":
    cfg = _config("nesterov", 1.0, 0.0, (TRIAL_SEED,), "validation", data_dir)
    data = sweep.load_data(cfg)
    runs = plan_trials(len(data[0]), data_dir)
    rows = sweep.execute(
      runs,
      cfg,
      data=data if jobs == 1 else None,
      progress=progress,
      desc="trials",
      results_path=p["trials"],
      jobs=jobs,
    )
    if len(rows) == len(runs):
      sweep._write_json(p["selection"], select_trial(rows))
    return rows
  if phase == "finals":
    trials = sweep.load_rows(p["trials"])
    if len(trials) < NUM_TRIALS * len(SPACES):
      raise RuntimeError(
        f"{p['trials']}: {len(trials)} of {NUM_TRIALS * len(SPACES)} trials done; "
        "run the trials phase first."
      )
    selection = select_trial(trials)
    cfg = _config("nesterov", 1.0, 0.0, FINAL_SEEDS, "test", data_dir)
    data = sweep.load_data(cfg)
    runs = plan_finals(selection, len(data[0]), data_dir)
    return sweep.execute(
      runs,
      cfg,
      data=data if jobs == 1 else None,
      progress=progress,
      desc="finals",
      results_path=p["finals"],
      jobs=jobs,
    )
  raise ValueError(f"unknown phase {phase!r}; choose from {PHASES}.")


PHASES = ("scaling", "trials", "finals")


# -- report -----------------------------------------------------------------------


def _hours(rows: list[dict]) -> float:
  """CPU-hours of the distinct runs in ``rows`` (``cpu_seconds``; wall time where absent)."""
  seen = {}
  for r in rows:
    seen[r["run_key"]] = r.get("cpu_seconds", r["wall_seconds"])
  return sum(seen.values()) / 3600


def summary_row(label: str, rows: list[dict], tuning_runs: int = 0, tuning_hours: float = 0.0):
  """One row of a comparison from a method's sweep rows (one per seed), or None if none.

  Its label (with the peak LR, warmup and any tuning cost), tuning runs and
  CPU-hours, seeds, per-seed test accuracies, mean, std (ddof 1), worst seed, n,
  how many blew up, and the mean steps, epochs and examples (steps x batch).
  """
  by_seed = {r["seed"]: r for r in rows}
  if not by_seed:
    return None
  runs = [by_seed[s] for s in sorted(by_seed)]
  acc = np.array([r["test_accuracy"] for r in runs], float)
  r0 = runs[0]
  setting = f"LR {r0['peak_learning_rate']:g}, warmup {r0['warmup_epochs']:g} epochs"
  if tuning_runs:
    setting += f"; {tuning_runs} trials, {tuning_hours:.1f} CPU-h"
  return dict(
    label=f"{label} ({setting})",
    tuning_runs=tuning_runs,
    tuning_cpu_hours=tuning_hours,
    seeds=sorted(by_seed),
    accuracies=acc.tolist(),
    mean=float(acc.mean()),
    std=float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
    worst=float(acc.min()),
    n=len(acc),
    blew_up=sum(report.blew_up(r) for r in runs),
    steps=float(np.mean([r["total_steps"] for r in runs])),
    epochs=float(np.mean([r.get("epochs_run", r["num_epochs"]) for r in runs])),
    examples=float(np.mean([r["total_steps"] * r["batch_size"] for r in runs])),
  )


def report_rows(out_dir: str) -> list[dict]:
  """The rows of the comparison at 64x (:func:`summary_row`), from the results so far.

  The base (batch 128), then at 8192: LEGW, linear scaling and no scaling
  from the base, Adam at its batch-128 LR, and Nesterov momentum and Adam each
  tuned at 8192.
  """
  p = paths(out_dir)
  main_rows = sweep.load_rows(p["scaling"])
  trials = sweep.load_rows(p["trials"])
  finals = sweep.load_rows(p["finals"])
  lines = []

  def add(label, rows, tuning_runs=0, tuning_hours=0.0):
    row = summary_row(label, rows, tuning_runs, tuning_hours)
    if row:
      lines.append(row)

  def at(batch, method):
    return [r for r in main_rows if r["batch_size"] == batch and r["method"] == method]

  add("base: momentum at batch 128", at(128, "legw"))
  add("LEGW at 8192", at(BATCH_SIZE, "legw"))
  add("linear scaling at 8192", at(BATCH_SIZE, "linear"))
  add("no scaling at 8192", at(BATCH_SIZE, "none"))
  add("Adam at 8192, tuned at 128", at(BATCH_SIZE, "adam"))
  for opt, label in (("nesterov", "Nesterov"), ("adam", "Adam")):
    t = [r for r in trials if r["optimizer"] == opt]
    f = [r for r in finals if r["optimizer"] == opt]
    add(f"{label} tuned at 8192", f, len(t), _hours(t))
  return lines


def format_report(lines: list[dict]) -> str:
  """The comparison at 64x (:func:`report_rows`) as a Markdown table; † = every seed blew up."""
  out = [
    "| row | test acc % (mean ± std) | worst seed | n | steps | epochs | examples |",
    "|---|---|---|---|---|---|---|",
  ]
  for ln in lines:
    flag = f" ({ln['blew_up']} blew up)" if ln["blew_up"] else ""
    flag = "†" if ln["blew_up"] == ln["n"] else flag
    out.append(
      f"| {ln['label']} | {100 * ln['mean']:.1f} ± {100 * ln['std']:.1f}{flag} | "
      f"{100 * ln['worst']:.1f} | {ln['n']} | {ln['steps']:,.0f} | {ln['epochs']:g} | "
      f"{ln['examples']:,.0f} |"
    )
  return "\n".join(out)


def format_caption(out_dir: str) -> str:
  """One line under :func:`format_report`: what the cells are, the machine, the files."""
  p = paths(out_dir)
  rows = [r for k in ("scaling", "trials", "finals") for r in sweep.load_rows(p[k])]
  if not rows:
    return ""
  files = ", ".join(f"`{report.display_path(p[k])}`" for k in ("scaling", "trials", "finals"))
  return (
    f"Test accuracy % on the {rows[0]['test_size']:,} test images; tuning cost: the trials' "
    f"CPU time (`cpu_seconds`, all threads); † every seed blew up. Measured on "
    f"{report._machine(rows)} ({files})."
  )


def format_selection(selection: dict[str, dict]) -> str:
  """What the selection rule saw and chose, one bullet per optimizer (the selection JSON)."""

  def trial(t: dict) -> str:
    return (
      f"trial {t['trial']} (peak LR {t['learning_rate']:g}, warmup {t['warmup_epochs']:g} "
      f"epochs, {100 * t['validation_accuracy']:.2f}% on validation)"
    )

  return "\n".join(
    f"- {opt}: the best was {trial(s['best'])}; within one standard error "
    f"({100 * s['standard_error']:.2f} points) of it: trial(s) "
    f"{', '.join(str(t) for t in s['tied'])}; picked: {trial(s['pick'])}."
    for opt, s in selection.items()
  )


def format_trials(rows: list[dict]) -> str:
  """Every trial: optimizer, LR, warmup, validation accuracy, and the picks."""
  sel = select_trial(rows) if rows else {}
  out = [
    "| optimizer | trial | peak LR | warmup epochs | val acc % | final train loss | |",
    "|---|---|---|---|---|---|---|",
  ]
  for r in sorted(rows, key=lambda r: (r["optimizer"], r["trial"])):
    s = sel.get(r["optimizer"], {})
    mark = []
    if s.get("best", {}).get("trial") == r["trial"]:
      mark.append("best")
    if s.get("pick", {}).get("trial") == r["trial"]:
      mark.append("**picked**")
    out.append(
      f"| {r['optimizer']} | {r['trial']} | {r['peak_learning_rate']:g} | "
      f"{r['warmup_epochs']:g} | {100 * r['test_accuracy']:.2f}"
      f"{'†' if report.blew_up(r) else ''}{'*' if r['diverged'] else ''} | "
      f"{r['train_loss']:.3g} | {', '.join(mark)} |"
    )
  return "\n".join(out)


def plot_report(lines: list[dict], trials: list[dict], path: str) -> None:
  """Left: every seed of every row; right: the trials' validation accuracy by LR."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw=dict(width_ratios=[1.2, 1]))
  for i, ln in enumerate(lines):
    acc = 100 * np.asarray(ln["accuracies"])
    ax.scatter(acc, np.full(len(acc), i) + np.linspace(-0.15, 0.15, len(acc)), s=18)
    ax.errorbar(100 * ln["mean"], i, xerr=100 * ln["std"], fmt="k|", capsize=4, ms=14)
  ax.set_yticks(range(len(lines)))
  ax.set_yticklabels([ln["label"].replace(" (", "\n(", 1) for ln in lines], fontsize=7)
  ax.invert_yaxis()
  ax.set_xlabel("test accuracy (%)")
  ax.set_title("mnist_lstm on fashion_mnist, 25 epochs: seeds (dots), mean ± std (bar)", fontsize=9)
  ax.grid(True, axis="x", alpha=0.3)
  for opt in SPACES:
    t = sorted((r for r in trials if r["optimizer"] == opt), key=lambda r: r["peak_learning_rate"])
    if t:
      ax2.scatter(
        [r["peak_learning_rate"] for r in t],
        [100 * r["test_accuracy"] for r in t],
        c=[r["warmup_epochs"] for r in t],
        cmap="viridis",
        vmin=0,
        vmax=12.5,
        marker="o" if opt == "nesterov" else "D",
        label=opt,
      )
  if trials:
    ax2.set_xscale("log")
    ax2.legend(fontsize=8, title="marker", title_fontsize=8)
    sm = plt.cm.ScalarMappable(cmap="viridis", norm=plt.Normalize(0, 12.5))
    fig.colorbar(sm, ax=ax2, label="warmup epochs")
  ax2.set_xlabel("peak learning rate")
  ax2.set_ylabel("validation accuracy (%)")
  ax2.set_title(f"trials at batch {BATCH_SIZE} (1 seed each)", fontsize=9)
  ax2.grid(True, alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def load_selection(out_dir: str) -> dict[str, dict]:
  """The picks of :func:`select_trial` as the trials phase saved them (``{}`` before)."""
  path = paths(out_dir)["selection"]
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def format_details(out_dir: str) -> str:
  """The picks (:func:`format_selection`, once every trial has run) and every trial."""
  parts = [
    format_selection(load_selection(out_dir)),
    format_trials(sweep.load_rows(paths(out_dir)["trials"])),
  ]
  return "\n\n".join(part for part in parts if part)


def report_text(out_dir: str, details: bool = True) -> str:
  """The report of ``out_dir``'s results: the comparison at 64x and its caption.

  With ``details``, also :func:`format_details` (the picks and every trial).
  """
  parts = [format_report(report_rows(out_dir)), format_caption(out_dir)]
  if details:
    parts.append(format_details(out_dir))
  return "\n\n".join(part for part in parts if part)


def write_report(out_dir: str) -> str:
  """Writes :func:`report_text` to ``<stem>.md`` and the plot to ``<stem>.png``; returns it."""
  p = paths(out_dir)
  text = report_text(out_dir)
  with open(p["report"], "w") as f:
    f.write(text + "\n")
  plot_report(report_rows(out_dir), sweep.load_rows(p["trials"]), p["plot"])
  return text
