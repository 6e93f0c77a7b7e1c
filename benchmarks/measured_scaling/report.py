"""The measured-scaling report, from whatever phase JSONs exist.

A table (per row: accuracy mean ± std, worst seed, n; mean steps, epochs, examples;
steps and epochs to first reach ``TARGET_ACCURACY``, from the per-epoch test
accuracies), the LARS grid with both rules' picks, and two figures: test accuracy
against steps at 8192 (the base at 128 for reference) and B_simple over the base run.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from benchmarks.batch_scaling import tuning
from benchmarks.measured_scaling import protocol as p
from benchmarks.measured_scaling import records

REPORT_STEM = "measured_scaling"


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
  """A run's accuracy, steps, examples and epochs at the end or after ``epoch`` epochs."""
  eps = record["epochs"]
  if epoch is None:
    return dict(
      accuracy=record["final_accuracy"], steps=record["steps"], examples=record["examples"],
      epochs=record["epochs_run"],
    )  # fmt: skip
  if len(eps) < epoch:
    return None
  e = eps[epoch - 1]
  return dict(
    accuracy=e["test_accuracy"], steps=e["step"], examples=e["examples"],
    epochs=e.get("epochs_of_data", e["epoch"]),
  )  # fmt: skip


def make_row(label: str, records: list[dict], epoch: int | None = None) -> dict | None:
  """One table row from the runs (one per seed) of a method."""
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
      reach.append((e["step"], e.get("epochs_of_data", e["epoch"])))
  return dict(
    label=label,
    seeds=[r["seed"] for r, _ in pts],
    accuracies=acc.tolist(),
    mean=float(acc.mean()),
    std=float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
    worst=float(acc.min()),
    n=len(acc),
    steps=float(np.mean([a["steps"] for _, a in pts])),
    epochs=float(np.mean([a["epochs"] for _, a in pts])),
    examples=float(np.mean([a["examples"] for _, a in pts])),
    reached=len(reach),
    steps_to_target=float(np.mean([s for s, _ in reach])) if reach else None,
    epochs_to_target=float(np.mean([e for _, e in reach])) if reach else None,
  )


def report_rows(phases: dict[str, dict]) -> list[dict]:
  """The rows of the table, in the protocol's order, from the phases present."""
  rows = []

  def add(label, records, epoch=None):
    row = make_row(label, records, epoch)
    if row:
      rows.append(row)

  runs = lambda ph: phases.get(ph, {}).get("runs", [])  # noqa: E731
  add("momentum, batch 128 (the base; noise-base runs)", runs("noise-base"))
  for b in sorted(p.ADASCALE_BATCHES):
    rs = runs(f"adascale-{b}")
    add(f"AdaScale {b}, after {p.BASE_EPOCHS} epochs", rs, p.BASE_EPOCHS)
    add(f"AdaScale {b}, at the end (progress = the base run's steps)", rs)
  legw = runs("legw-budget")
  add(f"LEGW 8192, after {p.BASE_EPOCHS} epochs (the budget runs' epoch 25)", legw, p.BASE_EPOCHS)
  if legw:
    add(f"LEGW 8192 at the budget ({legw[0]['config']['num_epochs']} epochs)", legw)
  by_rule: dict[str, list] = {}
  for r in runs("lars-8192"):
    by_rule.setdefault(r["config"].get("lr_rule", "?"), []).append(r)
  for rule, rs in by_rule.items():
    add(f"LEGW + LARS 8192 ({rule}, base LR {rs[0]['config']['base_learning_rate']:g})", rs)
  m5 = runs("mnist5k")
  base5k = [r for r in m5 if r["config"].get("method") != "adascale"]
  add("mnist5k momentum, batch 8 (noise base run)", base5k)
  add(
    f"mnist5k AdaScale {p.MNIST5K_BATCH}",
    [r for r in m5 if r["config"].get("method") == "adascale"],
  )
  return rows


def _num(x, fmt="{:,.0f}"):
  return "–" if x is None else fmt.format(x)


def format_table(rows: list[dict]) -> str:
  head = (
    "| row | test acc % (mean ± std) | worst seed | n | steps | epochs | examples | "
    f"steps to {100 * p.TARGET_ACCURACY:.1f}% | epochs to it |"
  )
  out = [head, "|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    reach = f" ({r['reached']}/{r['n']})" if r["reached"] < r["n"] else ""
    out.append(
      f"| {r['label']} | {100 * r['mean']:.1f} ± {100 * r['std']:.1f} | {100 * r['worst']:.1f} "
      f"| {r['n']} | {_num(r['steps'])} | {r['epochs']:.1f} | {_num(r['examples'])} | "
      f"{_num(r['steps_to_target'])}{reach} | {_num(r['epochs_to_target'], '{:.1f}')}{reach} |"
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
  ]
  for label, runs, color, upto in series:
    for i, r in enumerate(sorted(runs, key=lambda r: r["seed"])):
      eps = r["epochs"][:upto] if upto else r["epochs"]
      ax.plot(
        [e["step"] for e in eps], [100 * e["test_accuracy"] for e in eps], color=color,
        lw=2.2 if upto else 1.0, alpha=0.9, label=label if i == 0 else None,
      )  # fmt: skip
  ax.axhline(100 * p.TARGET_ACCURACY, color="k", lw=0.8, ls=":", label="target")
  ax.set(xscale="log", xlabel="optimizer steps", ylabel="test accuracy (%)")
  ax.set_title("Fashion-MNIST LSTM: test accuracy against steps (one line per seed)", fontsize=9)
  ax.legend(fontsize=8, loc="lower right")
  ax.grid(True, alpha=0.3)
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_noise(phases: dict[str, dict], path: str) -> None:
  """B_simple over the base run, one line per seed, B_noise and the target batches."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(7.5, 4.5), constrained_layout=True)
  doc = phases.get("noise-base", {})
  for r in sorted(doc.get("runs", []), key=lambda r: r["seed"]):
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
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write_report(out_dir: str) -> str:
  """Writes ``measured_scaling.md`` and the two PNGs into ``out_dir``; returns the text."""
  phases = load_all(out_dir)
  parts = [format_table(report_rows(phases)), format_noise(phases), format_grid(phases)]
  text = "\n\n".join(x for x in parts if x) + "\n"
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, f"{REPORT_STEM}.md"), "w") as f:
    f.write(text)
  plot_accuracy(phases, os.path.join(out_dir, f"{REPORT_STEM}-accuracy.png"))
  plot_noise(phases, os.path.join(out_dir, f"{REPORT_STEM}-noise.png"))
  return text
