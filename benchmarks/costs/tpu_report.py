"""The tables of benchmarks/costs/README.md from a results file of
``benchmarks/costs/tpu_cost.py`` (XLA's TPU cost model: estimates, not measurements)."""

from __future__ import annotations

from typing import Any

from benchmarks import tpu
from benchmarks.costs.step_report import TREE_LABELS
from benchmarks.costs.tpu_cost import ABLATIONS, BASELINE, OPTIMIZERS, adascale_table


def caption(results: dict[str, Any]) -> str:
  """One line: what the figures are, the versions, and the commands that compiled them."""
  cmds = ", ".join(f"`{c}`" for c in results.get("commands", []))
  return (
    f"XLA's TPU cost model, jax {results['jax']}, libtpu {results['libtpu']}: compiled on a "
    "CPU for compile-only TPU devices; estimates, not measurements on a TPU"
    + (f"; from {cmds}" if cmds else "")
    + "."
  )


def _groups(results: dict[str, Any], part: str) -> dict[tuple[str, str], dict[str, Any]]:
  groups: dict[tuple[str, str], dict[str, Any]] = {}
  for key, e in results["entries"].items():
    p, tree, mesh, name = key.split("|")
    if p == part:
      groups.setdefault((tree, mesh), {})[name] = e
  return groups


def table(
  results: dict[str, Any],
  part: str = "step",
  meshes: list[str] | None = None,
  optimizers: list[str] | None = None,
) -> str:
  """Markdown: estimated cycles as multiples of momentum SGD's in the same group, and the
  temporaries; a group is (tree or model, mesh). ``meshes`` and ``optimizers`` keep only
  those (default: all)."""
  groups = _groups(results, part)
  cols = [c for c in groups if not meshes or c[1] in meshes]
  head = " | ".join(f"{TREE_LABELS.get(t, t)}, {m}" for t, m in cols)
  lines = [f"| optimizer | {head} |", "|---|" + "---:|" * len(cols)]
  names = [n for n in [*OPTIMIZERS, *ABLATIONS] if any(n in g for g in groups.values())]
  for name in [n for n in names if not optimizers or n in optimizers]:
    cells = []
    for c in cols:
      e, base = groups[c].get(name), groups[c].get(BASELINE)
      if e is None or base is None:
        cells.append("")
        continue
      ratio = e["estimated_cycles"] / base["estimated_cycles"]
      cells.append(f"{ratio:.3f}× ({e['temp_bytes'] / 2**20:.1f} MiB)")
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def allreduce_table(results: dict[str, Any]) -> str:
  """Markdown: all-reduces per optimizer step under FSDP, per tree; ``a/b`` where 4 and 8
  chips differ."""
  groups = {k: g for k, g in _groups(results, "step").items() if k[1].startswith("FSDP")}
  trees = list(dict.fromkeys(t for t, _ in groups))
  names = [n for n in OPTIMIZERS if any(n in g for g in groups.values())]
  labels = " | ".join(TREE_LABELS.get(t, t) for t in trees)
  lines = [f"| all-reduces per step, FSDP 4/8 chips | {labels} |", "|---|" + "---:|" * len(trees)]
  for name in names:
    cells = []
    for tree in trees:
      counts = [g[name]["all_reduces"] for (t, _), g in groups.items() if t == tree and name in g]
      cells.append("/".join(str(n) for n in dict.fromkeys(counts)))
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def _step_time(e: dict[str, Any]) -> tuple[float, float]:
  """Seconds per step and examples/s per chip at the v5e clock (estimates)."""
  seconds = e["estimated_cycles"] / tpu.V5E_CLOCK_HZ
  return seconds, e["per_chip_batch"] / seconds


def train_table(results: dict[str, Any], models: list[str] | None = None) -> str:
  """Markdown for parts ``train`` and ``pod``: per compiled step, the estimated cycles
  (millions), as multiples of momentum SGD's and AdamW's for the same model and mesh
  where those were compiled, the cycles of the backward ops and of the ops whose origin
  is the optimizer (:func:`benchmarks.tpu.cycles_by_origin`), the step time and examples/s
  per chip those cycles make at :data:`benchmarks.tpu.V5E_CLOCK_HZ`, and HBM per chip.
  ``models`` keeps only those."""
  lines = [
    "| step | optimizer | estimated cycles (M) | × SGD | × AdamW | backward ops (M) | "
    "optimizer ops (M) | ms per step | examples/s per chip | HBM per chip (GiB): "
    "arguments + temporaries |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
  ]
  entries = results["entries"]
  for key, e in entries.items():
    part, model, mesh, name = key.split("|")
    if part not in ("train", "pod") or (models and model not in models):
      continue
    ratio = lambda base, k=key, p=part, m=model, h=mesh: (
      f"{entries[k]['estimated_cycles'] / entries[f'{p}|{m}|{h}|{base}']['estimated_cycles']:.4f}"
      if f"{p}|{m}|{h}|{base}" in entries
      else ""
    )
    seconds, rate = _step_time(e)
    origin = e["cycles_by_origin"]
    lines.append(
      f"| {part}: {model}, {mesh} | {name} | {e['estimated_cycles'] / 1e6:.2f} | "
      f"{ratio(BASELINE)} | {ratio('optax.adamw')} | {origin['backward'] / 1e6:.2f} | "
      f"{origin['optimizer'] / 1e6:.2f} | {seconds * 1e3:.1f} | {rate:,.0f} | "
      f"{e['argument_bytes'] / 2**30:.2f} + {e['temp_bytes'] / 2**30:.2f} |"
    )
  return "\n".join(lines)


def train_overheads(results: dict[str, Any], model: str = "resnet50") -> str:
  """One line: the full training step's estimated cycles over momentum SGD's (over AdamW's
  for the LAMBs), in percent, on one chip."""
  e = results["entries"]
  cycles = lambda name: e[f"train|{model}|1 chip|{name}"]["estimated_cycles"]
  over = lambda name, base: f"`{name}` {100 * (cycles(name) / cycles(base) - 1):+.1f}%"
  sgd = ["legw.lars", "optax.lars", "legw.percent_delta", "legw.mclr"]
  adam = ["legw.lamb", "optax.lamb"]
  label = {"resnet50": "ResNet-50", "bert-base": "BERT-base-shaped LM"}.get(model, model)
  return (
    f"{label} training step on one v5e chip, estimated cycles over momentum SGD's: "
    + ", ".join(over(n, BASELINE) for n in sgd)
    + "; over AdamW's: "
    + ", ".join(over(n, "optax.adamw") for n in adam)
  )


def train_key_figures(train: dict[str, Any], step: dict[str, Any]) -> str:
  """Key figures of the training steps (``train``: ``tpu_cost-train.json``) against the
  optimizer step alone (``step``: ``tpu_cost.json``), as bullets."""
  e = train["entries"]
  one = lambda name: e[f"train|resnet50|1 chip|{name}"]
  opt = lambda name: one(name)["cycles_by_origin"]["optimizer"]
  sgd = one(BASELINE)["estimated_cycles"]
  more_ops = (opt("legw.lars") - opt(BASELINE)) / 1e6
  more_step = (one("legw.lars")["estimated_cycles"] - sgd) / 1e6
  alone = step["entries"][f"step|resnet50|1 chip|{BASELINE}"]["estimated_cycles"]
  return "\n".join(
    [
      f"- {train_overheads(train)}",
      f"- `legw.lars`'s optimizer ops on ResNet-50: {more_ops:.2f} M cycles more than "
      f"momentum SGD's, of {more_step:.2f} M more in the whole step",
      "- momentum SGD's optimizer step compiled alone (nothing to fuse it into): "
      f"{alone / 1e6:.2f} M cycles, {100 * alone / sgd:.2f}% of its ResNet-50 training step",
    ]
  )


def report(results: dict[str, Any]) -> str:
  """Every table of a results file, for the parts it holds, with its caption."""
  parts = {key.split("|")[0] for key in results["entries"]}
  out = [caption(results)]
  if "step" in parts:
    out += [table(results, "step"), allreduce_table(results)]
  if "ablations" in parts:
    out.append(table(results, "ablations"))
  if parts & {"train", "pod"}:
    out += [train_table(results), train_overheads(results)]
  if "adascale" in parts:
    out.append(adascale_table(results))
  return "\n\n".join(out)
