"""The sweep's outputs: the results table, the runs table, the plot, the CSV/JSON files.

Also :func:`compare_with_reference`: a run's rows against the committed
reference results, cell by cell.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

import numpy as np

from benchmarks.batch_scaling.sweep import DEFAULT_OUT_DIR, _row_id, _write_json, load_rows

CSV_FIELDS = (
  "task",
  "dataset",
  "method",
  "lr_rule",
  "optimizer",
  "batch_size",
  "k",
  "seed",
  "base_learning_rate",
  "peak_learning_rate",
  "warmup_epochs",
  "warmup_steps",
  "num_epochs",
  "total_steps",
  "decay",
  "test_accuracy",
  "test_loss",
  "train_loss",
  "diverged",
  "epochs_run",
  "wall_seconds",
  "compile_seconds",
  "samples_per_second",
  "same_run_as",
  "platform",
  "device_kind",
)


def _metric(row: dict) -> float:
  return row["test_perplexity"] if row.get("metric") == "perplexity" else row["test_accuracy"]


def series(row: dict, rows: list[dict]) -> str:
  """The line a row belongs to: its method, plus its base-LR rule when ``rows`` mix rules."""
  rules = {r.get("lr_rule", "baseline") for r in rows}
  if len(rules) <= 1:
    return row["method"]
  return f"{row['method']} [{row.get('lr_rule', 'baseline')}]"


def blew_up(row: dict) -> bool:
  """A finite run whose last epoch's mean training loss is above its first epoch's.

  Such a run learned nothing (linear scaling at 64x: first epoch 11-17, last
  87-169, chance accuracy); ``diverged`` flags only a non-finite loss.
  """
  losses = row.get("train_loss_per_epoch") or []
  return not row["diverged"] and len(losses) > 1 and losses[-1] > losses[0]


def summarize(rows: list[dict]) -> dict[tuple[str, int], dict]:
  """Mean, std (ddof 1; 0 for one seed), min, max of the headline metric.

  Keyed by (:func:`series`, batch size), over seeds; ``diverged`` and
  ``blew_up`` count the seeds that did (see :func:`blew_up`).
  """
  out: dict[tuple[str, int], dict] = {}
  for r in rows:
    cell = out.setdefault(
      (series(r, rows), r["batch_size"]), {"values": [], "diverged": 0, "blew_up": 0}
    )
    cell["values"].append(_metric(r))
    cell["diverged"] += bool(r["diverged"])
    cell["blew_up"] += blew_up(r)
  for cell in out.values():
    v = np.asarray(cell["values"], float)
    cell.update(
      mean=float(np.mean(v)),
      std=float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
      min=float(np.min(v)),
      max=float(np.max(v)),
      n=len(v),
    )
  return out


def _number(x: float) -> str:
  """One decimal; 3 significant digits in e-notation from 1e5 on (a blown-up perplexity)."""
  return f"{x:.1f}" if abs(x) < 1e5 else f"{x:.3g}"


def format_table(rows: list[dict]) -> str:
  """A Markdown table: one row per batch size, one column per method (and rule).

  Cells are test accuracy in % (perplexity for a perplexity task): the mean
  over seeds, ``± std (n=seeds)`` when there are several; ``*`` marks a cell
  with a run that diverged (non-finite training loss), ``†`` one with a run
  that blew up (:func:`blew_up`). :func:`format_caption` says so under it.
  """
  if not rows:
    return "(no runs)"
  perplexity = rows[0].get("metric") == "perplexity"
  columns = list(dict.fromkeys(series(r, rows) for r in rows))
  batches = sorted({r["batch_size"] for r in rows})
  stats = summarize(rows)
  base = rows[0]["base_batch_size"]
  head = ["batch", "k"] + columns
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for b in batches:
    cells = [str(b), f"{b / base:g}"]
    for m in columns:
      c = stats.get((m, b))
      if c is None:
        cells.append("-")
        continue
      unit = 1 if perplexity else 100
      val = _number(unit * c["mean"])
      if c["n"] > 1:
        val += f" ± {_number(unit * c['std'])} (n={c['n']})"
      cells.append(val + ("*" if c["diverged"] else "") + ("†" if c["blew_up"] else ""))
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def _loss(x: float) -> str:
  """A training loss: 0.0171, 0.174, 20.3."""
  return f"{x:.1f}" if x >= 1 else f"{x:.3f}" if x >= 0.1 else f"{x:.3g}"


def _same_runs(a: list[dict], b: list[dict]) -> bool:
  """Whether two cells' runs are the same runs at every seed they share."""
  ka, kb = ({r["seed"]: r.get("run_key") for r in runs} for runs in (a, b))
  common = ka.keys() & kb.keys()
  return bool(common) and all(ka[s] is not None and ka[s] == kb[s] for s in common)


def format_settings(rows: list[dict], batches: Sequence[int] | None = None) -> str:
  """Per (method, batch) cell: peak LR, warmup, steps, and each seed's final loss and metric.

  Methods whose runs at a batch are the same runs (the base batch) share one
  line, e.g. ``legw = linear = none``. ``batches``: the batch sizes to show
  (default: all).
  """
  if not rows:
    return "(no runs)"
  perplexity = rows[0].get("metric") == "perplexity"
  metric = "test ppl" if perplexity else "test acc %"
  lines = [
    "| method | batch | peak LR | warmup (epochs / steps) | steps | final train loss, "
    f"by seed | {metric}, by seed |",
    "|---|---|---|---|---|---|---|",
  ]
  for b in sorted({r["batch_size"] for r in rows}):
    if batches is not None and b not in batches:
      continue
    cells: dict[str, list[dict]] = {}
    for r in rows:
      if r["batch_size"] == b:
        cells.setdefault(series(r, rows), []).append(r)
    groups: list[list[str]] = []  # methods that share their runs (the base batch): one line
    for name in cells:
      same = next((g for g in groups if _same_runs(cells[g[0]], cells[name])), None)
      if same is None:
        groups.append([name])
      else:
        same.append(name)
    for names in groups:
      union = {r["seed"]: r for name in names for r in cells[name]}
      runs = [union[s] for s in sorted(union)]
      r0 = runs[0]
      unit = 1 if perplexity else 100
      losses = ", ".join(_loss(r["train_loss"]) for r in runs)
      values = ", ".join(
        _number(unit * _metric(r)) + ("*" if r["diverged"] else "") + ("†" if blew_up(r) else "")
        for r in runs
      )
      lines.append(
        f"| {' = '.join(names)} | {b} | {r0['peak_learning_rate']:.3g} | "
        f"{r0['warmup_epochs']:g} / {r0['warmup_steps']} | {r0['total_steps']:,} | {losses} | "
        f"{values} |"
      )
  return "\n".join(lines)


def _machine(rows: list[dict]) -> str:
  """The machines a results file's rows record: platform, CPU count, jax version."""
  keys = sorted({(r["platform"], r.get("cpu_count"), r.get("jax_version")) for r in rows})
  return " / ".join(
    f"{p.upper()}" + (f", {n} cores" if n else "") + (f", jax {jax}" if jax else "")
    for p, n, jax in keys
  )


def display_path(path: str) -> str:
  """``path`` relative to the repository root when it is inside it."""
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  rel = os.path.relpath(os.path.abspath(path), root)
  return path if rel.startswith("..") else rel


def format_caption(rows: list[dict], source: str) -> str:
  """One line under a results file's tables: what the cells are, and where they were measured.

  For a sweep: the metric, the legend of :func:`format_table`, epochs and
  schedule; for every file: the machine (platform, cores, jax), the number of
  distinct runs and their training time in all (``wall_seconds``) where
  recorded, and the file.
  """
  parts = []
  r0 = rows[0]
  if "num_epochs" in r0:
    setup = f"{r0['num_epochs']:g} epochs, {r0['decay']} LR after warmup"
    if r0.get("split") == "validation":
      parts.append(
        f"Validation accuracy % (a seeded {100 * r0['validation_fraction']:g}% of the "
        f"training set held out), {setup}, at batch {r0['base_batch_size']}."
      )
    else:
      metric = "Test perplexity" if r0.get("metric") == "perplexity" else "Test accuracy %"
      parts.append(
        f"{metric}, mean ± std over n seeds where n > 1 (* a run diverged, † a run blew up); "
        f"{setup}, tuned at batch {r0['base_batch_size']}."
      )
  runs = {r.get("run_key", str(i)): r for i, r in enumerate(rows)}
  measured = f"Measured on {_machine(rows)}"
  if all("wall_seconds" in r for r in runs.values()):
    minutes = sum(r["wall_seconds"] for r in runs.values()) / 60
    measured += f": {len(runs)} runs, {minutes:,.0f} min of training in all"
  parts.append(f"{measured} (`{display_path(source)}`).")
  return " ".join(parts)


def format_pipeline(rows: list[dict]) -> str:
  """The ``--pipeline-check`` table: samples/s of the real epoch loop vs a resident batch."""
  lines = [
    "| batch | epoch loop samples/s | resident batch samples/s | ratio |",
    "|---|---|---|---|",
  ]
  for r in rows:
    lines.append(
      f"| {r['batch_size']} | {r['epoch_samples_per_second']:.0f} | "
      f"{r['resident_samples_per_second']:.0f} | {r['ratio']:.2f} |"
    )
  return "\n".join(lines)


def render(path: str, batches: Sequence[int] | None = None) -> str:
  """The tables of a results file with their caption, as ``--from-json`` prints them.

  A sweep's file: :func:`format_table`, :func:`format_caption` and
  :func:`format_settings` (of ``batches``, default all); a tuning grid's
  (``split="validation"``): :func:`benchmarks.batch_scaling.tuning.format_tuning`;
  a ``--pipeline-check`` file: :func:`format_pipeline`.
  """
  from benchmarks.batch_scaling.tuning import format_tuning

  rows = load_rows(path)
  if not rows:
    return f"(no runs in {path})"
  caption = format_caption(rows, path)
  if "resident_samples_per_second" in rows[0]:
    return format_pipeline(rows) + "\n\n" + caption
  if rows[0].get("split") == "validation":
    return format_tuning(rows) + "\n\n" + caption
  return "\n\n".join([format_table(rows), caption, format_settings(rows, batches)])


def plot(rows: list[dict], path: str, title: str | None = None) -> None:
  """Test accuracy (or perplexity) vs batch size, one line per method."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  stats = summarize(rows)
  perplexity = rows[0].get("metric") == "perplexity"
  scale = 1.0 if perplexity else 100.0
  fig, ax = plt.subplots(figsize=(6.4, 4.4))
  markers = dict(legw="o", linear="s", none="^", adam="D")
  # Perplexity: log axis; a blown-up run (> 100x the best) is drawn at that cap.
  cap = 100 * min(c["mean"] for c in stats.values()) if perplexity else np.inf
  for i, m in enumerate(dict.fromkeys(series(r, rows) for r in rows)):
    bs = sorted(b for (mm, b) in stats if mm == m)
    mean = np.minimum(np.array([stats[(m, b)]["mean"] for b in bs]) * scale, cap)
    std = np.array([stats[(m, b)]["std"] for b in bs]) * scale  # error bars: 1 std over seeds
    first = next(r for r in rows if series(r, rows) == m)
    label = f"{m} ({first['optimizer']}, base LR {first['base_learning_rate']:g})"
    ax.errorbar(
      bs, mean, yerr=std, marker=markers.get(first["method"], "o"), capsize=3, label=label
    )
    for b in bs:
      if stats[(m, b)]["mean"] * scale > cap:
        ax.annotate(
          f"{m} blew up (ppl {stats[(m, b)]['mean']:.1e})",
          (b, cap),
          fontsize=7,
          textcoords="offset points",
          xytext=(-80, -12 - 10 * i),
        )
      elif stats[(m, b)]["diverged"] or stats[(m, b)]["blew_up"]:
        ax.annotate(
          "diverged" if stats[(m, b)]["diverged"] else "blew up",
          (b, stats[(m, b)]["mean"] * scale),
          fontsize=7,
          textcoords="offset points",
          xytext=(-6, 6),
          ha="right",
        )
  ax.set_xscale("log", base=2)
  if perplexity:
    ax.set_yscale("log")
  batches = sorted({r["batch_size"] for r in rows})
  ax.set_xticks(batches)
  ax.set_xticklabels([str(b) for b in batches])
  ax.set_xlabel("batch size")
  ax.set_ylabel("test perplexity" if perplexity else "test accuracy (%)")
  r0 = rows[0]
  n_seeds = max(c["n"] for c in stats.values())
  ax.set_title(
    title
    or f"{r0['task']} on {r0['dataset']}: {r0['num_epochs']:g} epochs, "
    f"{r0.get('decay', '')} LR, tuned at batch {r0['base_batch_size']}"
    + (f"\nmean ± std of up to {n_seeds} seeds" if n_seeds > 1 else ""),
    fontsize=9,
  )
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_results(
  rows: list[dict], out_dir: str = DEFAULT_OUT_DIR, stem: str | None = None, make_plot: bool = True
) -> dict[str, str]:
  """Writes ``<stem>.json`` (the list of runs), ``<stem>.csv`` and ``<stem>.png``.

  ``stem`` defaults to ``<task>-<dataset>``. Returns the paths written.
  """
  os.makedirs(out_dir, exist_ok=True)
  stem = stem or f"{rows[0]['task']}-{rows[0]['dataset']}"
  paths = {
    "json": os.path.join(out_dir, stem + ".json"),
    "csv": os.path.join(out_dir, stem + ".csv"),
  }
  _write_json(paths["json"], rows)
  with open(paths["csv"], "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
  if make_plot:
    paths["png"] = os.path.join(out_dir, stem + ".png")
    plot(rows, paths["png"])
  return paths


def compare_with_reference(rows: list[dict], reference: list[dict]) -> dict:
  """Cell by cell: this run's rows against the committed reference rows.

  Rows are matched by their full configuration (``run_key``, method and
  base-LR rule). Returns dict(compared, identical, max_abs_diff (in metric
  units: accuracy as a fraction, or perplexity), not_in_reference (count of
  rows with no reference twin), diffs (one dict per compared row that
  differs: method, batch_size, seed, ours, reference)).
  """
  ref = {_row_id(r): r for r in reference}
  diffs, compared, identical, worst = [], 0, 0, 0.0
  for r in rows:
    twin = ref.get(_row_id(r))
    if twin is None:
      continue
    compared += 1
    ours, theirs = _metric(r), _metric(twin)
    if ours == theirs:
      identical += 1
      continue
    worst = max(worst, abs(ours - theirs))
    diffs.append(
      dict(
        method=r["method"], batch_size=r["batch_size"], seed=r["seed"], ours=ours, reference=theirs
      )
    )
  return dict(
    compared=compared,
    identical=identical,
    max_abs_diff=worst,
    not_in_reference=len(rows) - compared,
    diffs=diffs,
  )


def format_comparison(cmp: dict, reference_path: str) -> str:
  """One line of agreement, then one line per differing cell."""
  if not cmp["compared"]:
    return f"reference {reference_path}: no run of this sweep is in it."
  pct = lambda x: f"{100 * x:.2f}"
  head = (
    f"reference {reference_path}: {cmp['compared']} runs compared, {cmp['identical']} "
    f"identical to the committed results"
  )
  if cmp["diffs"]:
    head += f"; {len(cmp['diffs'])} differ (max |difference| {pct(cmp['max_abs_diff'])} points)"
  else:
    head += " (all agree exactly)"
  if cmp["not_in_reference"]:
    head += f"; {cmp['not_in_reference']} rows have no reference"
  lines = [head]
  for d in cmp["diffs"]:
    lines.append(
      f"  {d['method']} batch {d['batch_size']} seed {d['seed']}: {pct(d['ours'])} here, "
      f"{pct(d['reference'])} in the reference"
    )
  return "\n".join(lines)
