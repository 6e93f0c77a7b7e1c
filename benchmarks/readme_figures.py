"""Every figure the READMEs quote is recomputed from a committed results file.

A *claim* is a piece of text a README must contain, rendered from the
committed results (``benchmarks/results/...``) by a small function: a results
table, or a sentence's numbers. :func:`check` renders every claim and reports
each one its README does not contain (whitespace, Markdown bold and
letter case are ignored, so line wrapping does not matter). CI runs it
(``tests/test_readme_figures.py``); a figure changed in a README without its
results file, or a results file changed without the README, fails.

    python -m benchmarks.readme_figures          # check; exit status 1 on a mismatch
    python -m benchmarks.readme_figures --show   # print every claim and its source

To add a figure to a README, add its claim here.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import re
import sys
from collections.abc import Callable, Sequence

from benchmarks import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join("benchmarks", "results")


@dataclasses.dataclass(frozen=True)
class Claim:
  """Text that ``doc`` must contain, rendered from the results file ``source``."""

  doc: str  # path from the repository root
  source: str  # path from the repository root
  render: Callable[[object], str]  # the loaded JSON -> the expected text
  what: str = ""


@functools.cache
def _load(source: str):
  with open(os.path.join(ROOT, source), encoding="utf-8") as f:
    return json.load(f)


def _normalize(text: str) -> str:
  return re.sub(r"\s+", " ", text.replace("**", "")).strip().lower()


# -- renderers ------------------------------------------------------------------------


def _cell(rows, method: str, batch: int, n: bool = False, pct: bool = True) -> str:
  """A table cell's text: mean (± std over seeds), as :func:`report.format_table` writes it."""
  c = report.summarize([r for r in rows if r["method"] == method])[(method, batch)]
  unit = 100 if pct else 1
  text = report._number(unit * c["mean"])
  if c["n"] > 1:
    text += f" ± {report._number(unit * c['std'])}"
    if n:
      text += f" (n={c['n']})"
  return text


def _mean(rows, method: str, batch: int) -> float:
  return report.summarize([r for r in rows if r["method"] == method])[(method, batch)]["mean"]


def _table(header: str) -> Callable[[list], str]:
  """The sweep's Markdown table (:func:`report.format_table`) under a README's own header."""

  def render(rows):
    lines = report.format_table(rows).splitlines()
    return "\n".join([header] + lines[1:])

  return render


def _ratio(data, tree: str, optimizer: str) -> float:
  return data["results"][tree]["optimizers"][optimizer]["ratio_to_sgd"]


def _span(values: Sequence[float], digits: int = 1) -> str:
  lo, hi = min(values), max(values)
  return f"{lo:.{digits}f}–{hi:.{digits}f}"


IDLE_FAMILY = [
  os.path.join(RESULTS, f"optimizer_step-family-mclr-4-idle{s}.json") for s in ("", "-2", "-3")
]


def _family_span(optimizer: str, tree: str, compile_time: bool = False) -> Callable[[object], str]:
  """The range over the three idle ``--family`` reruns (step or compile time x SGD)."""

  def render(_):
    vals = []
    for path in IDLE_FAMILY:
      o = _load(path)["results"][tree]["optimizers"]
      if compile_time:
        vals.append(o[optimizer]["first_call_s"] / o["sgd"]["first_call_s"])
      else:
        vals.append(o[optimizer]["ratio_to_sgd"])
    return _span(vals)

  return render


# -- the claims -------------------------------------------------------------------------

MNIST5K = os.path.join(RESULTS, "mnist_lstm-mnist5k.json")
FASHION = os.path.join(RESULTS, "mnist_lstm-fashion_mnist.json")
POLY20 = os.path.join(RESULTS, "mnist_lstm-mnist5k-poly20.json")
CNN = os.path.join(RESULTS, "cnn_lars-mnist5k.json")
LSTM_LM = os.path.join(RESULTS, "lstm_lm-fortunes.json")
STEP = os.path.join(RESULTS, "optimizer_step.json")
TABLE2 = os.path.join("benchmarks", "curvature", "results", "table2.json")
README, BENCH = "README.md", os.path.join("benchmarks", "README.md")
PLAIN_HEADER = "| batch | k | legw | linear | none | adam |"


def _fashion_legw_line(rows) -> str:
  return (
    f"LEGW {_cell(rows, 'legw', 128)}% → {_cell(rows, 'legw', 512)} (4×) → "
    f"{_cell(rows, 'legw', 2048)} (16×) → {_cell(rows, 'legw', 8192)}% at 64×"
  )


def _fashion_linear_line(rows) -> str:
  return (
    f"linear scaling {_cell(rows, 'linear', 128)}% → {_cell(rows, 'linear', 512)} → "
    f"{_cell(rows, 'linear', 2048)} → {_cell(rows, 'linear', 8192)}%"
  )


def _fashion_worst(rows) -> str:
  worst = min(r["test_accuracy"] for r in rows if r["method"] == "legw" and r["batch_size"] == 8192)
  return f"{_cell(rows, 'legw', 8192)}% at 64× (worst seed {100 * worst:.1f}%)"


def _issue27_row(method: str, label: str) -> Callable[[list], str]:
  """A row of the issue-27 table in benchmarks/README.md: mean ± std, worst seed, n."""

  def render(rows):
    acc = [r["test_accuracy"] for r in rows if r["method"] == method and r["batch_size"] == 8192]
    return f"| {label} | 0 | {_cell(rows, method, 8192)} | {100 * min(acc):.1f} | {len(acc)} |"

  return render


def _fashion_loss(rows) -> str:
  return f"LEGW loses {100 * (_mean(rows, 'legw', 128) - _mean(rows, 'legw', 8192)):.1f} points"


def _fashion_none(rows) -> str:
  n = len([r for r in rows if r["method"] == "none" and r["batch_size"] == 8192])
  return f"not scaling the LR at all reached {_cell(rows, 'none', 8192)}% ({n} seeds)"


def _fashion_adam(rows) -> str:
  gap = 100 * (_mean(rows, "adam", 8192) - _mean(rows, "legw", 8192))
  return (
    f"went {_cell(rows, 'adam', 128)}% → {_cell(rows, 'adam', 8192)}% at 64× "
    f"(3 seeds each): {gap:.1f} points above LEGW's mean"
  )


def _poly20(rows) -> str:
  return f"at 64× (LEGW {_cell(rows, 'legw', 512)}%, linear {_cell(rows, 'linear', 512)}%)"


def _cnn(rows) -> str:
  top = ", ".join(f"{m} {_cell(rows, m, 512)}%" for m in ("legw", "linear", "none", "adam"))
  base = " / ".join(_cell(rows, m, 8) for m in ("legw", "linear", "none", "adam"))
  return f"512) {top} (base batch 8: {base})"


def _lstm_lm(rows) -> str:
  big, base = _mean(rows, "legw", 640), _mean(rows, "legw", 20)  # test perplexities
  return f"(perplexity {big:.0f} vs {base:.0f} at the base batch)"


def _step_table(data) -> str:
  r = data["results"]
  lines = []
  for tree, label in (("resnet50", "ResNet-50"), ("transformer", "transformer-like")):
    lines.append(
      f"| {label} ({r[tree]['leaves']:,} leaves, {r[tree]['params'] / 1e6:.1f} M params) | "
      f"{_ratio(data, tree, 'legw.lars'):.2f}× | {_ratio(data, tree, 'optax.lars'):.2f}× |"
    )
  return "\n".join(lines)


def _step_temp(data) -> str:
  r = data["results"]["resnet50"]
  temp = r["optimizers"]["optax.lars"]["temp_MB"]
  return f"(optax.lars: {temp:.0f} MB for ResNet-50's {4 * r['params'] / 1e6:.0f} MB)"


CLAIMS: list[Claim] = [
  Claim(README, MNIST5K, _table(PLAIN_HEADER), "headline table, mnist5k"),
  Claim(README, FASHION, _fashion_legw_line, "Fashion-MNIST ladder, LEGW"),
  Claim(README, FASHION, _fashion_linear_line, "Fashion-MNIST ladder, linear scaling"),
  Claim(README, FASHION, _fashion_loss, "Fashion-MNIST: LEGW's loss at 64x"),
  Claim(README, FASHION, _fashion_worst, "Fashion-MNIST: LEGW's mean and worst seed at 64x"),
  Claim(README, FASHION, _fashion_none, "Fashion-MNIST: no scaling at 64x"),
  Claim(README, FASHION, _fashion_adam, "Fashion-MNIST: Adam"),
  Claim(README, POLY20, _poly20, "the earlier poly-decay default at 64x"),
  Claim(README, CNN, _cnn, "cnn_lars at 64x and at the base"),
  Claim(README, LSTM_LM, _lstm_lm, "lstm_lm perplexities"),
  Claim(README, STEP, _step_table, "optimizer step table"),
  Claim(README, STEP, _step_temp, "optax.lars's temporary"),
  Claim(
    README,
    IDLE_FAMILY[0],
    lambda d: f"`legw.percent_delta` costs {_family_span('legw.percent_delta', 'resnet50')(d)}×",
    "percent_delta step, three idle reruns",
  ),
  Claim(
    README,
    IDLE_FAMILY[0],
    lambda d: f"`legw.mclr` {_family_span('legw.mclr', 'resnet50')(d)}× a momentum-SGD step",
    "mclr step, three idle reruns",
  ),
  Claim(
    README,
    IDLE_FAMILY[0],
    lambda d: f"compiles in {_family_span('legw.mclr', 'kernels-400', True)(d)}× SGD's time",
    "mclr compile time at 400 leaves, three idle reruns",
  ),
  Claim(
    README,
    TABLE2,
    lambda d: f"spreads {d['summary']['resnet']['kernels']['max_over_min']:.0f}× across kernels",
    "LARS Table 2 on a small ResNet: spread of ||w||/||g|| over kernels",
  ),
  Claim(BENCH, MNIST5K, _table(PLAIN_HEADER), "mnist5k table"),
  Claim(BENCH, FASHION, _issue27_row("legw", "LEGW at 8192 (by rule)"), "issue 27: LEGW row"),
  Claim(BENCH, FASHION, _issue27_row("none", "no scaling at 8192"), "issue 27: no-scaling row"),
  Claim(
    BENCH,
    FASHION,
    _table("| batch | k | legw (acc %) | linear (acc %) | none (acc %) | adam (acc %) |"),
    "Fashion-MNIST table",
  ),
  Claim(
    BENCH,
    CNN,
    _table("| batch | k | legw (LARS) | linear (SGD) | none (SGD) | adam |"),
    "cnn_lars table",
  ),
]


def check(claims: Sequence[Claim] = CLAIMS) -> list[str]:
  """The claims their README does not contain: one message each (empty: all hold)."""
  problems = []
  docs: dict[str, str] = {}
  for c in claims:
    if c.doc not in docs:
      with open(os.path.join(ROOT, c.doc), encoding="utf-8") as f:
        docs[c.doc] = _normalize(f.read())
    expected = c.render(_load(c.source))
    if _normalize(expected) not in docs[c.doc]:
      problems.append(f"{c.doc}: {c.what or 'a claim'} — from {c.source} expected:\n{expected}")
  return problems


def main(argv: Sequence[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m benchmarks.readme_figures", description=__doc__)
  p.add_argument("--show", action="store_true", help="print every claim and its source")
  args = p.parse_args(argv)
  if args.show:
    for c in CLAIMS:
      print(f"## {c.doc}: {c.what} (from {c.source})\n{c.render(_load(c.source))}\n")
  problems = check()
  for msg in problems:
    print(msg, end="\n\n")
  print(f"{len(CLAIMS) - len(problems)} of {len(CLAIMS)} README figures match their results files")
  return 1 if problems else 0


if __name__ == "__main__":
  sys.exit(main())
