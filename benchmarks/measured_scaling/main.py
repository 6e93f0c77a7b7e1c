"""Measured batch scaling at 64x: the protocol's phases (resumable), and the report.

    python -m benchmarks.measured_scaling                       # every phase, in order
    python -m benchmarks.measured_scaling --phases lars-grid    # one phase
    python -m benchmarks.measured_scaling --report              # table and figures only
    python -m benchmarks.measured_scaling --status              # the runs saved part-way
    python -m benchmarks.measured_scaling --quick --phases noise-base   # smoke test

The protocol (values fixed before any run): ``protocol.py``; the logic: ``train.py``
and ``report.py``. Results go to ``--out-dir`` (default: the untracked
``benchmarks/runs/measured_scaling/``; ``--quick``: ``.../measured_scaling-quick/``);
the committed ones are in ``benchmarks/measured_scaling/results/``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from benchmarks.measured_scaling import records, report, train


def build_parser() -> argparse.ArgumentParser:
  ap = argparse.ArgumentParser(
    prog="python -m benchmarks.measured_scaling", description=__doc__.split("\n")[0]
  )
  ap.add_argument("--phases", nargs="+", choices=train.PHASES, default=list(train.PHASES))
  ap.add_argument("--seeds", nargs="+", type=int, default=None, help="default: the protocol's")
  ap.add_argument("--out-dir", default=None)
  ap.add_argument("--quick", action="store_true", help="a few steps on a data slice: smoke test")
  ap.add_argument("--report", action="store_true", help="only the report of what exists")
  ap.add_argument("--status", action="store_true", help="only list the runs saved part-way")
  ap.add_argument("--no-progress", action="store_true")
  return ap


def main(argv: Sequence[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  out_dir = args.out_dir or (train.QUICK_OUT_DIR if args.quick else train.OUT_DIR)
  if args.status:
    print("\n".join(records.in_progress(out_dir)) or f"no run saved part-way in {out_dir}")
    return 0
  if not args.report:
    for phase in args.phases:
      train.run_phase(phase, out_dir, args.seeds, args.quick, not args.no_progress)
  print(report.write_report(out_dir))
  print(f"wrote {out_dir}/{report.REPORT_STEM}.md and its two PNGs")
  return 0


if __name__ == "__main__":
  sys.exit(main())
