"""The measured-scaling report, from whatever phase JSONs exist.

A table (per row: accuracy mean ± std, worst seed, n; mean steps, epochs, examples;
steps and epochs to first reach ``TARGET_ACCURACY``, from the per-epoch test
accuracies), the LARS grid with both rules' picks, and two figures: test accuracy
against steps at 8192 (the base at 128 for reference), and B_simple over the base run
beside AdaScale's gain and the gain the base run's statistics imply.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from benchmarks import RESULTS_DIR
from benchmarks.batch_scaling import sweep, tuning
from benchmarks.large_batch_tuning import experiment as lbt
from benchmarks.measured_scaling import protocol as p
from benchmarks.measured_scaling import records

REPORT_STEM = "measured_scaling"
REFERENCE_DIR = RESULTS_DIR  # the committed sweeps
REFERENCES = {  # key: the label's start in large_batch_tuning's table
  "ref-legw-2048": "LEGW at 2048",
  "ref-base": "base: momentum at batch 128",
  "ref-legw": "LEGW at 8192",
  "ref-none": "no scaling at 8192",
  "ref-nesterov-tuned": "Nesterov tuned at 8192",
  "ref-adam-tuned": "Adam tuned at 8192",
}
VERDICT_ROWS = {  # the zero-tuning rows the criteria judge
  f"adascale-{p.LARGE_BATCH}": "AdaScale at 8192, run to the base's progress",
  f"adascale-{p.LARGE_BATCH}-25": "AdaScale at 8192 after 25 epochs",
  "legw-budget": "LEGW at 8192 for the noise scale's budget",
  "legw-lars": "LEGW + LARS at 8192",
  "adascale-2048": "AdaScale at 2048 (16x), run to the base's progress",
}
AT_64X = {k for k in VERDICT_ROWS if "2048" not in k}  # tuned Adam's bar applies to these
VERDICT_BESIDE = {"adascale-2048": "ref-legw-2048"}  # the committed row a verdict names
PREDICT = p.PREDICTS_IF_STEPS_WITHIN_FACTOR
#: The README's rows at 64x (and 16x), in order.
README_KEYS = (
  "base", "ref-legw", "ref-adam-tuned", f"adascale-{p.LARGE_BATCH}-25",
  f"adascale-{p.LARGE_BATCH}", "legw-budget", "legw-lars", "adascale-2048",
)  # fmt: skip


def load_all(out_dir: str) -> dict[str, dict]:
  """Every phase's JSON that exists in ``out_dir``."""
  return {
    ph: records.load_phase(out_dir, ph)
    for ph in p.ORDER
    if os.path.exists(records.phase_path(out_dir, ph))
  }


def first_reach(epochs: list[dict], target: float = p.TARGET_ACCURACY) -> dict | None:
  """The first per-epoch record whose test accuracy is at least ``target``."""
  return next((e for e in epochs if e["test_accuracy"] >= target), None)


def _at(record: dict, epoch: int | None) -> dict[str, Any] | None:
  """A run's accuracy, steps, examples and epochs of data (examples over the training
  set's size) at the end or after ``epoch`` epochs."""
  if epoch is None:
    point = dict(
      accuracy=record["final_accuracy"], steps=record["steps"], examples=record["examples"]
    )
  elif len(record["epochs"]) < epoch:
    return None
  else:
    e = record["epochs"][epoch - 1]
    point = dict(accuracy=e["test_accuracy"], steps=e["step"], examples=e["examples"])
  return dict(point, epochs=point["examples"] / record["config"]["train_size"])


def make_row(
  label: str, records: list[dict], epoch: int | None = None, key: str = ""
) -> dict | None:
  """One table row from the runs (one per seed) of a method (``key`` names it for
  :func:`verdicts`)."""
  pts = [(r, _at(r, epoch)) for r in records]
  pts = [(r, a) for r, a in pts if a is not None]
  if not pts:
    return None
  acc = np.array([a["accuracy"] for _, a in pts], float)
  reach = []
  for r, _ in pts:
    eps = r["epochs"] if epoch is None else r["epochs"][:epoch]
    e = first_reach(eps)
    if e is not None:
      reach.append((e["step"], e["examples"] / r["config"]["train_size"]))
  return dict(
    key=key,
    label=label,
    seeds=[r["seed"] for r, _ in pts],
    accuracies=acc.tolist(),
    mean=float(acc.mean()),
    std=float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
    worst=float(acc.min()),
    n=len(acc),
    steps=float(np.mean([a["steps"] for _, a in pts])),
    seed_steps=[a["steps"] for _, a in pts],
    epochs=float(np.mean([a["epochs"] for _, a in pts])),
    examples=float(np.mean([a["examples"] for _, a in pts])),
    reached=len(reach),
    steps_to_target=float(np.mean([s for s, _ in reach])) if reach else None,
    epochs_to_target=float(np.mean([e for _, e in reach])) if reach else None,
  )


def reference_rows(results_dir: str = REFERENCE_DIR) -> list[dict]:
  """The committed rows beside the measured ones: LEGW at 2048 (the sweep), and from
  ``large_batch_tuning``'s table the base at 128 and, at 8192, LEGW, no scaling, and
  Nesterov and Adam tuned at 8192.

  Only their final accuracy was recorded: a row whose every seed ended at or above
  ``TARGET_ACCURACY`` reached it within its steps (``final_only``), no sooner known.
  """
  sweep_rows = sweep.load_rows(lbt.paths(results_dir)["scaling"])
  legw_2048 = [r for r in sweep_rows if r["batch_size"] == 2048 and r["method"] == "legw"]
  found = lbt.report_rows(results_dir) + [lbt.summary_row("LEGW at 2048", legw_2048)]
  rows = []
  for r in filter(None, found):
    key = next((k for k, prefix in REFERENCES.items() if r["label"].startswith(prefix)), None)
    if key is None:
      continue
    reached = sum(a >= p.TARGET_ACCURACY for a in r["accuracies"])
    rows.append(
      dict(
        r, key=key, label=f"{r['label']}, committed", reached=reached, final_only=True,
        steps_to_target=r["steps"] if reached else None,
        epochs=r["examples"] / p.TRAIN_SIZE,
        epochs_to_target=r["examples"] / p.TRAIN_SIZE if reached else None,
      )
    )  # fmt: skip
  return rows


def report_rows(phases: dict[str, dict], references: list[dict] | None = None) -> list[dict]:
  """The rows of the table: ``references`` (:func:`reference_rows`) and then the
  phases present, in the protocol's order."""
  rows = list(references or [])

  def add(key, label, records, epoch=None):
    row = make_row(label, records, epoch, key)
    if row:
      rows.append(row)

  runs = lambda ph: phases.get(ph, {}).get("runs", [])  # noqa: E731
  add("base", "base: momentum at batch 128, rerun measuring B_simple", runs("noise-base"))
  for b in sorted(p.ADASCALE_BATCHES, reverse=True):
    rs = runs(f"adascale-{b}")
    add(f"adascale-{b}-25", f"AdaScale {b}, after {p.BASE_EPOCHS} epochs", rs, p.BASE_EPOCHS)
    add(f"adascale-{b}", f"AdaScale {b}, at the end (progress = the base's steps)", rs)
  legw = runs("legw-budget")
  add("legw-budget-25", f"LEGW 8192, epoch {p.BASE_EPOCHS} of the budget runs", legw, p.BASE_EPOCHS)
  if legw:
    add("legw-budget", f"LEGW 8192 at the budget ({legw[0]['config']['num_epochs']} epochs)", legw)
  by_rule: dict[str, list] = {}
  for r in runs("lars-8192"):
    by_rule.setdefault(r["config"].get("lr_rule", "?"), []).append(r)
  for rule, rs in by_rule.items():
    lr = rs[0]["config"]["base_learning_rate"]
    add("legw-lars", f"LEGW + LARS 8192 (base LR {lr:g}, picked by {rule})", rs)
  return rows


def mnist5k_rows(phases: dict[str, dict], results_dir: str = REFERENCE_DIR) -> list[dict]:
  """``mnist5k``, batch 8 to 512: the committed sweep's rows (base, and LEGW, no scaling
  and Adam at 512) and the measured ones (the base rerun, AdaScale at 512)."""
  sweep_rows = sweep.load_rows(os.path.join(results_dir, "mnist_lstm-mnist5k.json"))
  b0, b1 = p.MNIST5K_BASE_BATCH, p.MNIST5K_BATCH
  rows = []
  for batch, method, label in (
    (b0, "legw", f"momentum, batch {b0}"), (b1, "legw", f"LEGW {b1}"),
    (b1, "none", f"no scaling {b1}"), (b1, "adam", f"Adam {b1}, tuned at {b0}"),
  ):  # fmt: skip
    picked = [r for r in sweep_rows if r["batch_size"] == batch and r["method"] == method]
    row = lbt.summary_row(label, picked)
    if row:
      rows.append(dict(row, label=f"{row['label']}, committed"))
  runs = phases.get("mnist5k", {}).get("runs", [])
  for label, pick in (
    (f"momentum, batch {b0}, rerun measuring B_simple", lambda r: r != "adascale"),
    (f"AdaScale {b1}, run to the base's progress", lambda r: r == "adascale"),
  ):
    row = make_row(label, [r for r in runs if pick(r["config"].get("method"))])
    if row:
      rows.append(row)
  return rows


def _cells(r: dict) -> str:
  """A row's label, accuracy (mean ± std, † when every seed blew up), worst seed, n, and
  mean steps, epochs and examples, as Markdown cells."""
  spread = f" ± {100 * r['std']:.1f}" if r["n"] > 1 else ""
  flag = "†" if r.get("blew_up") == r["n"] else ""
  return (
    f"| {r['label']} | {100 * r['mean']:.1f}{spread}{flag} | {100 * r['worst']:.1f} | {r['n']} "
    f"| {_num(r['steps'])} | {r['epochs']:.1f} | {_num(r['examples'])} |"
  )


def format_mnist5k(rows: list[dict], phases: dict[str, dict]) -> str:
  """The ``mnist5k`` rows as a Markdown table, with a caption."""
  if not rows:
    return ""
  runs = phases.get("mnist5k", {}).get("runs", [])
  size = f"{runs[0]['eval_size']:,} " if runs else ""
  out = [
    "| mnist5k row | test acc % (mean ± std) | worst seed | n | steps | epochs | examples |",
    "|---|---|---|---|---|---|---|",
  ]
  out += [_cells(r) for r in rows]
  out.append(
    f"\nTest accuracy % on the {size}mnist5k test images (no target: the 88.7% bar is "
    "Fashion-MNIST's); committed rows: `benchmarks/results/mnist_lstm-mnist5k.json`."
  )
  return "\n".join(out)


def _num(x, fmt="{:,.0f}"):
  return "–" if x is None else fmt.format(x)


def _speedup(base: dict | None, row: dict) -> str:
  if not base or base["steps_to_target"] is None or row["steps_to_target"] is None:
    return "–"
  x = base["steps_to_target"] / row["steps_to_target"]
  if row.get("final_only"):  # a lower bound: rounded down
    return f"≥ {math.floor(x)}×" if x >= 10 else f"≥ {math.floor(100 * x) / 100:g}×"
  return f"{x:.0f}×" if x >= 10 else f"{x:.2g}×"


def format_table(rows: list[dict], keys: tuple[str, ...] | None = None) -> str:
  """The rows (only ``keys``, in their order, when given) as a Markdown table.

  Steps to the target: the mean over the seeds that reached it, "(k/n)" when not
  all did; "≤" for a committed row (final accuracy only); the speed-up in steps is
  the base rerun's steps to the target over the row's.
  """
  base = next((r for r in rows if r["key"] == "base"), None)
  if keys is not None:
    rows = [r for k in keys for r in rows if r["key"] == k]
  head = (
    "| row | test acc % (mean ± std) | worst seed | n | steps | epochs | examples | "
    f"steps to {100 * p.TARGET_ACCURACY:.1f}% | epochs to it | speed-up in steps |"
  )
  out = [head, "|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    part = f" ({r['reached']}/{r['n']})" if 0 < r["reached"] < r["n"] else ""
    le = "≤ " if r.get("final_only") else ""
    to_steps = f"{le}{_num(r['steps_to_target'])}{part}" if r["reached"] else "not reached"
    to_epochs = f"{le}{_num(r['epochs_to_target'], '{:.1f}')}{part}" if r["reached"] else "–"
    out.append(f"{_cells(r)} {to_steps} | {to_epochs} | {_speedup(base, r)} |")
  return "\n".join(out)


def budget_steps(phases: dict[str, dict], batch: int = p.LARGE_BATCH) -> int | None:
  """The noise scale's budget at ``batch``, in steps (its epochs x steps per epoch)."""
  s = phases.get("noise-base", {}).get("summary", {})
  if "b_noise" not in s or not s.get("complete"):
    return None
  return p.budget_epochs(batch, s["b_noise"]) * (p.TRAIN_SIZE // batch)


def verdicts(rows: list[dict], phases: dict[str, dict]) -> str:
  """The protocol's criteria, row by row, in plain words; "pending" until every seed ran
  (a seed below the bar already decides "does not carry")."""
  by = {r["key"]: r for r in rows}
  need = len(p.SEEDS)
  bar, tuned = 100 * p.CARRIES_IF_EVERY_SEED_AT_LEAST, 100 * p.BEATS_TUNING_IF_MEAN_AT_LEAST
  out = []
  for key, what in VERDICT_ROWS.items():
    r, ref = by.get(key), by.get(VERDICT_BESIDE.get(key, ""))
    if ref:
      what += f" (beside {ref['label']}: {100 * ref['mean']:.1f}%, n = {ref['n']})"
    if r is None:
      out.append(f"- {what}: no run yet.")
      continue
    accs = ", ".join(f"{100 * a:.1f}" for a in r["accuracies"])
    seeds = f"{r['n']} of {need} seeds ({accs}%)"
    if r["worst"] < p.CARRIES_IF_EVERY_SEED_AT_LEAST:
      carries = f"does not carry (a seed at {100 * r['worst']:.1f}% < {bar:.1f}%)"
    elif r["n"] < need:
      carries = "carries so far"
    else:
      carries = f"carries (every seed ≥ {bar:.1f}%)"
    if r["n"] < need:
      out.append(f"- {what}: {carries}; {seeds}, the rest pending.")
      continue
    if key not in AT_64X:  # the tuning bar was set at 8192
      out.append(f"- {what}: {carries}; {seeds}.")
      continue
    beats = "beats" if r["mean"] >= p.BEATS_TUNING_IF_MEAN_AT_LEAST else "does not beat"
    out.append(
      f"- {what}: {carries}, and {beats} tuning (mean {100 * r['mean']:.1f}% against tuned "
      f"Adam's {tuned:.1f}%); {seeds}."
    )
  ada, budget = by.get(f"adascale-{p.LARGE_BATCH}"), budget_steps(phases)
  if ada is None or budget is None or ada["n"] < need:
    done = 0 if ada is None else ada["n"]
    out.append(f"- The noise scale's budget as a prediction: pending ({done} of {need} seeds).")
  else:
    ratio = ada["steps"] / budget
    word = "predicts" if 1 / PREDICT <= ratio <= PREDICT else "does not predict"
    out.append(
      f"- The noise scale {word} AdaScale's cost: {ada['steps']:,.0f} steps (the mean of "
      f"{', '.join(f'{s:,}' for s in ada['seed_steps'])}) against a budget of {budget:,} "
      f"({ratio:.2f}×; the bar: within {PREDICT:g}×)."
    )
  return "\n".join(out)


def format_grid(phases: dict[str, dict]) -> str:
  """The LARS grid (validation accuracy) and both rules' picks."""
  grid = phases.get("lars-grid", {}).get("runs", [])
  if not grid:
    return ""
  rows = [
    dict(
      optimizer=r["config"]["optimizer"], base_learning_rate=r["config"]["base_learning_rate"],
      test_accuracy=r["final_accuracy"], test_size=r["eval_size"],
    )
    for r in grid
  ]  # fmt: skip
  return tuning.format_tuning(rows)


def format_noise(phases: dict[str, dict]) -> str:
  s = phases.get("noise-base", {}).get("summary", {})
  if "b_noise" not in s:
    return ""
  per = ", ".join(f"seed {k}: {v:,.0f}" for k, v in sorted(s["per_seed"].items()))
  budget = ", ".join(f"{b}: {e} epochs" for b, e in s["budget_epochs"].items())
  return f"B_noise {s['b_noise']:,.0f} ({per}; complete: {s['complete']}); budget {budget}"


def implied_gains(record: dict, scale: float, base_batch: int = p.BASE_BATCH) -> np.ndarray:
  """The gain AdaScale would take at ``scale`` times the base batch, from a base run's
  logged |G|^2 and tr(Sigma) (``legw``'s own gain formula), one per record."""
  from legw._adascale import adascale_gain

  rec = record["records"]
  sq, tr = (np.array([x[k] for x in rec], np.float32) for k in ("grad_sq", "trace_cov"))
  return np.asarray(adascale_gain(sq, tr, base_batch, scale))


def implied_steps(record: dict, scale: float) -> float:
  """The steps AdaScale would take to the base run's end if its gain at each progress
  were :func:`implied_gains`: the sum of (base steps between logs) / gain."""
  steps = np.array([x["step"] for x in record["records"]], float)
  return float(np.sum(np.diff(steps, prepend=0.0) / implied_gains(record, scale)))


def format_implied(phases: dict[str, dict]) -> str:
  """Exploratory, chosen after the AdaScale runs were seen: their steps beside the steps
  the base run's own statistics imply, per batch."""
  base = phases.get("noise-base", {}).get("runs", [])
  parts = []
  for b in sorted(p.ADASCALE_BATCHES):
    runs = phases.get(f"adascale-{b}", {}).get("runs", [])
    if not (base and runs):
      continue
    implied = [implied_steps(r, b // p.BASE_BATCH) for r in base]
    mean, took = np.mean(implied), np.mean([r["steps"] for r in runs])
    parts.append(
      f"at {b:,}, {mean:,.0f} implied (seeds {min(implied):,.0f}–{max(implied):,.0f}) "
      f"against {took:,.0f} taken (n = {len(runs)}, {took / mean:.2f}×)"
    )
  if not parts:
    return ""
  return (
    "Exploratory, chosen after the AdaScale runs were seen (not a criterion): the steps "
    "AdaScale would take if its gain at each progress were the one the base run's logged "
    f"|G|² and tr(Σ) give (over the logs, every {p.LOG_EVERY} base steps, the sum of "
    f"{p.LOG_EVERY} / that gain): " + "; ".join(parts) + "."
  )


def plot_accuracy(phases: dict[str, dict], path: str) -> None:
  """Test accuracy against steps: the base (128) and, at 8192, LEGW 25 epochs, AdaScale
  and LEGW at the budget (LEGW's first 25 epochs are its 25-epoch run)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(7.5, 4.5), constrained_layout=True)
  series = [
    ("base, batch 128", phases.get("noise-base", {}).get("runs", []), "0.4", None),
    ("AdaScale 8192", phases.get("adascale-8192", {}).get("runs", []), "C0", None),
    ("LEGW 8192, 25 epochs", phases.get("legw-budget", {}).get("runs", []), "C3", p.BASE_EPOCHS),
    ("LEGW 8192, budget", phases.get("legw-budget", {}).get("runs", []), "C1", None),
    ("LEGW + LARS 8192, 25 epochs", phases.get("lars-8192", {}).get("runs", []), "C2", None),
  ]
  for label, runs, color, upto in series:
    for i, r in enumerate(sorted(runs, key=lambda r: r["seed"])):
      eps = r["epochs"][:upto] if upto else r["epochs"]
      ax.plot(
        [e["step"] for e in eps], [100 * e["test_accuracy"] for e in eps], color=color,
        lw=2.2 if upto else 1.0, alpha=0.9, label=label if i == 0 else None,
      )  # fmt: skip
  ax.axhline(
    100 * p.TARGET_ACCURACY, color="k", lw=0.8, ls=":", label=f"{100 * p.TARGET_ACCURACY:.1f}%"
  )
  ax.set(xscale="log", xlabel="optimizer steps", ylabel="test accuracy (%)")
  ax.set_title("Fashion-MNIST LSTM: test accuracy against steps (one line per seed)", fontsize=9)
  ax.legend(fontsize=8, loc="lower right")
  ax.grid(True, alpha=0.3)
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_noise(phases: dict[str, dict], path: str) -> None:
  """Left: B_simple over the base run, one line per seed, B_noise and the target
  batches. Right: AdaScale's gain against its progress, beside the gain the base run's
  statistics imply at the same batch."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, (ax, gx) = plt.subplots(1, 2, figsize=(11, 4.5), constrained_layout=True)
  doc = phases.get("noise-base", {})
  base = sorted(doc.get("runs", []), key=lambda r: r["seed"])
  for r in base:
    rec = r["records"]
    ax.plot(
      [x["epoch"] for x in rec], [x["noise_scale"] for x in rec], lw=1, label=f"seed {r['seed']}"
    )
  s = doc.get("summary", {})
  if "b_noise" in s:
    ax.axhline(s["b_noise"], color="C3", lw=1.2, label=f"$B_{{noise}}$ = {s['b_noise']:,.0f}")
  for b, style in ((2048, "--"), (8192, ":")):
    ax.axhline(b, color="0.3", lw=1, ls=style, label=f"batch {b:,}")
  ax.set(yscale="log", xlabel="epoch", ylabel="$B_{simple}$ (examples)")
  ax.set_title("Gradient noise scale of the base run (batch 128)", fontsize=9)
  ax.legend(fontsize=8, loc="lower right")
  for b, color in zip(sorted(p.ADASCALE_BATCHES, reverse=True), ("C0", "C1")):
    scale = b // p.BASE_BATCH
    runs = phases.get(f"adascale-{b}", {}).get("runs", [])
    for i, r in enumerate(sorted(runs, key=lambda r: r["seed"])):
      label = f"AdaScale {b:,}, measured" if i == 0 else None
      gx.plot(r["progress"], r["gain"], color=color, lw=0.6, alpha=0.6, label=label)
    for i, r in enumerate(base):
      label = f"implied at {b:,} by the base run" if i == 0 else None
      steps = [x["step"] for x in r["records"]]
      gx.plot(steps, implied_gains(r, scale), color=color, lw=1.4, ls="--", label=label)
  gx.set(xlabel="base steps (AdaScale: its progress)", ylabel="gain $r$ (1 to $B/128$)")
  gx.set_title("AdaScale's gain: measured, and implied by the base run's $B_{simple}$", fontsize=9)
  gx.legend(fontsize=8, loc="lower right")
  gx.grid(True, alpha=0.3)
  fig.savefig(path, dpi=110)
  plt.close(fig)


def caption(phases: dict[str, dict]) -> str:
  """What the table's cells are and where they were measured."""
  runs = [r for doc in phases.values() for r in doc.get("runs", [])]
  env = [r["environment"] for r in runs if "environment" in r]
  machines = sorted(
    {f"{e['platform'].upper()} ({e['cpu_count']} cores), jax {e['jax_version']}" for e in env}
  )
  pinned = sum(e.get("cpus_usable") == 1 for e in env)
  cores = (
    "one core per run" if pinned == len(env)
    else f"{pinned} of {len(env)} runs on one core, the rest did not record it (`cpus_usable`)"
  )  # fmt: skip
  files = ", ".join(f"`{ph}.json`" for ph in phases)
  return (
    f"Test accuracy % on the 10,000 test images; the base's steps to "
    f"{100 * p.TARGET_ACCURACY:.1f}% over a row's is its speed-up in steps; epochs: examples "
    f"over the {p.TRAIN_SIZE:,} training images (an epoch of 8192 drops the last "
    f"{p.TRAIN_SIZE % p.LARGE_BATCH:,}); ≤: a committed row "
    f"records only its final accuracy. Measured by `python -m benchmarks.measured_scaling` on "
    f"{'; '.join(machines) or '–'}, {cores}; results: {files} in "
    f"`benchmarks/measured_scaling/results/`, the committed rows' in `benchmarks/results/`."
  )


def report_text(out_dir: str, keys: tuple[str, ...] | None = None, details: bool = True) -> str:
  """The table (only ``keys`` when given) and its caption; with ``details``, the
  verdicts, B_noise, the implied steps, the LARS grid and the mnist5k table too."""
  phases = load_all(out_dir)
  rows = report_rows(phases, reference_rows())
  parts = [format_table(rows, keys), caption(phases)]
  if details:
    parts += [
      verdicts(rows, phases),
      format_noise(phases),
      format_implied(phases),
      format_grid(phases),
      format_mnist5k(mnist5k_rows(phases), phases),
    ]
  return "\n\n".join(x for x in parts if x)


def write_report(out_dir: str) -> str:
  """Writes ``measured_scaling.md`` and the two PNGs into ``out_dir``; returns the text."""
  phases = load_all(out_dir)
  text = report_text(out_dir) + "\n"
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, f"{REPORT_STEM}.md"), "w") as f:
    f.write(text)
  plot_accuracy(phases, os.path.join(out_dir, f"{REPORT_STEM}-accuracy.png"))
  plot_noise(phases, os.path.join(out_dir, f"{REPORT_STEM}-noise.png"))
  return text
