"""The tables of benchmarks/costs/README.md from a results file of
``benchmarks/costs/optimizer_step.py`` (a run, or a runs file of ``--append``)."""

from __future__ import annotations

import fnmatch

from benchmarks.costs.optimizer_step import runs_of

TREE_LABELS = {"resnet50": "ResNet-50", "transformer": "transformer-like"}
OPT_LABELS = {"sgd": "optax.sgd(momentum=0.9)"}
PROBES = [  # (name in the results, row label)
  ("sgd", "optax.sgd(momentum=0.9)"),
  ("probe: sgd+wd read", "probe: SGD + read w for weight decay (lambda = 1)"),
  ("probe: +||w||", r"probe: + one reduction per kernel (`\|\|w\|\|` only)"),
  ("probe: +||g||", r"probe: + one reduction per kernel (`\|\|g\|\|` only)"),
  ("probe: lars", "probe: LARS (both reductions), one transform"),
  ("legw.lars", "legw.lars"),
  ("probe: lars, stacked norms", "probe: LARS, all norms stacked into one vector"),
  ("probe: lars, rescue cond", "probe: LARS, per-leaf `lax.cond` rescaling"),
  ("ablation: carried ||w||", r"ablation: `\|\|w\|\|` carried in the optimizer state"),
]
FAMILY = ("legw.lars", "legw.percent_delta", "legw.mclr")


def _span(values, fmt: str = ".1f") -> str:
  lo, hi = min(values), max(values)
  return f"{lo:{fmt}}" if f"{lo:{fmt}}" == f"{hi:{fmt}}" else f"{lo:{fmt}}–{hi:{fmt}}"


def _x(v: float) -> str:
  return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def _mb(v: float) -> str:
  return f"{v:.2f}" if v < 1 else f"{v:.1f}"


def _machine(r: dict) -> str:
  return f"{r['cpu_count']}-core {r['cpu']}, jax {r['jax']} on {r['backend'].upper()}"


def caption(d: dict) -> str:
  """One line: the command, machine, repetitions, load and copy bandwidth of a run (spans
  over the runs of a runs file), and the commit where recorded."""
  runs = runs_of(d)
  r = runs[0]
  reps = [t["reps"] for t in r["results"].values()]
  reps_text = f"{max(reps)} repetitions per tree" + (
    f" ({min(reps)} above 30 M params)" if min(reps) < max(reps) else ""
  )
  load = [x[0] for q in runs for x in (q["load_average_before"], q["load_average_after"])]
  commits = list(dict.fromkeys(q["commit"] for q in runs if q.get("commit")))
  many = len(runs) > 1
  return (
    f"Measured by `{r['command']}`: {_machine(r)}; "
    + (f"{len(runs)} runs, " if many else "")
    + f"{reps_text}, load average {_span(load)}, "
    f"copy bandwidth {_span([q['copy_bandwidth_GBps'] for q in runs])} GB/s, "
    f"{_span([q['wall_s'] / 60 for q in runs], '.0f')} min{' a run' if many else ''}"
    + (f"; commit {', '.join(commits)}" if commits else "")
    + "."
  )


def tree_label(name: str, r: dict) -> str:
  mb = 4 * r["params"] / 1e6
  return (
    f"{TREE_LABELS.get(name, name)}: {r['leaves']:,} leaves, {r['params'] / 1e6:.1f} M params "
    f"({mb:.0f} MB)"
  )


def step_table(d: dict, trees=None, optimizers=None, compile_time: bool = False) -> str:
  """Per tree and optimizer: median step time, the median per-repetition ratio to momentum
  SGD (wall and CPU time), the fraction of the optimizer's own bandwidth floor, the
  compiled step's temporaries, and (``compile_time``) the compile time over SGD's.
  ``trees`` (names or ``fnmatch`` patterns) and ``optimizers`` keep only those (default:
  all of the run); SGD's row is always kept."""
  res = d["results"]
  head = "| tree | optimizer | step (ms) | × SGD | × SGD (CPU time) | % of own floor | temp (MB) |"
  rule = "|---|---|---:|---:|---:|---:|---:|"
  if compile_time:
    head, rule = head + " compile × SGD |", rule + "---:|"
  lines = [head, rule]
  names = [t for t in res if not trees or any(fnmatch.fnmatch(t, p) for p in trees)]
  for tree in names:
    r = res[tree]
    lead = tree_label(tree, r)
    for name, t in r["optimizers"].items():
      if optimizers and name not in optimizers and name != "sgd":
        continue
      row = (
        f"| {lead} | {OPT_LABELS.get(name, name)} | {t['median_ms']:.1f} | "
        f"{_x(t['ratio_to_sgd'])} | {_x(t['cpu_ratio_to_sgd'])} | "
        f"{100 * t['floor_fraction']:.0f}% | {_mb(t['temp_MB'])} |"
      )
      if compile_time:
        row += f" {t['compile_ratio_to_sgd']:.1f} |"
      lines.append(row)
      lead = ""
  return "\n".join(lines)


def scaling_table(d: dict) -> str:
  """The ``scale-*`` and ``split-*`` fits: ms per MB moved (5 passes over float32), its
  ratio to SGD's, R^2 of the line, and the per-leaf overhead."""
  s = d["scaling"]
  lines = [
    "| optimizer | ms per MB (5-pass bytes) | × SGD | R² | per-leaf overhead (µs) |",
    "|---|---:|---:|---:|---:|",
  ]
  for name, fit in s.items():
    lines.append(
      f"| {OPT_LABELS.get(name, name)} | {fit['ms_per_MB']:.3f} | "
      f"{_x(fit['ms_per_MB'] / s['sgd']['ms_per_MB'])} | {fit['r2']:.3f} | "
      f"{fit.get('us_per_leaf', float('nan')):.0f} |"
    )
  return "\n".join(lines)


def probe_table(d: dict) -> str:
  """The ``--ablations`` run: each probe and ablation as a multiple of momentum SGD."""
  trees = [t for t in ("resnet50", "transformer") if t in d["results"]]
  lines = [
    "| variant | " + " | ".join(f"{TREE_LABELS[t]}: × SGD" for t in trees) + " |",
    "|---|" + "---:|" * len(trees),
  ]
  for name, label in PROBES:
    cells = [f"{d['results'][t]['optimizers'][name]['ratio_to_sgd']:.2f}" for t in trees]
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def runs_table(d: dict) -> str:
  """legw's per-layer family in each run of a ``--family`` runs file: step time (and CPU
  time) over SGD's and the temporaries on ResNet-50, step and compile time over SGD's
  on ``kernels-400``."""
  head = ["run", "SGD step (ms)"]
  head += [f"{n}: × SGD (CPU time)" for n in FAMILY]
  head += ["legw.mclr: temp (MB)", "kernels-400: legw.mclr × SGD", "its compile × SGD (s)"]
  lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
  for i, r in enumerate(runs_of(d), 1):
    res = r["results"]["resnet50"]["optimizers"]
    k400 = r["results"]["kernels-400"]["optimizers"]["legw.mclr"]
    cells = [str(i), f"{res['sgd']['median_ms']:.1f}"]
    cells += [f"{res[n]['ratio_to_sgd']:.2f} ({res[n]['cpu_ratio_to_sgd']:.2f})" for n in FAMILY]
    cells += [
      _mb(res["legw.mclr"]["temp_MB"]),
      f"{k400['ratio_to_sgd']:.2f}",
      f"{k400['compile_ratio_to_sgd']:.1f} ({k400['compile_s']:.1f} s)",
    ]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def runs_summary(d: dict) -> str:
  """Key figures of a ``--family`` runs file: the span over its runs, as multiples of
  momentum SGD in the same run."""
  runs = runs_of(d)
  res = lambda n: [r["results"]["resnet50"]["optimizers"][n]["ratio_to_sgd"] for r in runs]
  k400 = [r["results"]["kernels-400"]["optimizers"]["legw.mclr"] for r in runs]
  over = f"over the {len(runs)} runs" if len(runs) > 1 else "in the run"
  return "\n".join(
    [
      f"- `legw.percent_delta` step on ResNet-50: {_span(res('legw.percent_delta'))}× "
      f"momentum SGD's ({over})",
      f"- `legw.mclr` step on ResNet-50: {_span(res('legw.mclr'))}× momentum SGD's",
      f"- `legw.mclr` compile time on kernels-400 (400 leaves): "
      f"{_span([t['compile_ratio_to_sgd'] for t in k400])}× momentum SGD's",
    ]
  )


def report(d: dict) -> str:
  """Every table of a results file (a run, or a runs file), with its caption."""
  if "runs" in d:
    return "\n\n".join([caption(d), runs_table(d), runs_summary(d)])
  r = d["results"]
  family = any("legw.mclr" in t["optimizers"] for t in r.values())
  parts = [caption(d), step_table(d, compile_time=family)]
  if d.get("scaling"):
    parts.append(scaling_table(d))
  if "probe: lars" in r.get("resnet50", {}).get("optimizers", {}):
    parts.append(probe_table(d))
  return "\n\n".join(parts)
