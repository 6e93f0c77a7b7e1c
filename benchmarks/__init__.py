"""Reproductions of the papers' experiments, and cost benchmarks.

One folder per experiment, each with a short ``main.py`` (run as
``python -m benchmarks.<folder>``) and its logic in importable modules:

  batch_scaling       the main job: accuracy vs batch size for every scaling method
  large_batch_tuning  LEGW at 64x against optimizers tuned at 64x
  measured_scaling    AdaScale and the noise scale's budget at 16x and 64x
  paper_methods       the papers' other methods (discarding samples, growing the batch)
  multihost           legw under multi-process JAX
  curvature           LARS Table 2, LEGW Figure 3, MCLR vs LARS
  guides              the runs behind the documentation's guides
  costs               optimizer-step time and memory against optax peers (CPU, TPU model)

Shared by them: ``data`` (offline data sets), ``models`` (Flax models) and
``tpu`` (compiling for a TPU slice without one).

Every command writes under :data:`RUNS_DIR` (``benchmarks/runs/``, ignored by
git) unless told otherwise (``--out-dir``/``--out``): running a command never
rewrites a tracked file. The committed reference results are in
:data:`RESULTS_DIR` (``benchmarks/results/``) and in the ``results/`` folders of
``curvature``, ``guides`` and ``measured_scaling``; a maintainer adds to them by
passing that directory explicitly.
"""

import os
import subprocess

RUNS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runs")
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def git_commit(short: bool = True) -> str | None:
  """The checkout's commit (abbreviated when ``short``), with ``+changes`` when tracked
  files differ from it; None outside a git checkout."""

  def git(*args: str) -> str:
    return subprocess.run(
      ["git", *args], capture_output=True, text=True, check=True, timeout=10,
      cwd=os.path.dirname(os.path.abspath(__file__)),
    ).stdout.strip()  # fmt: skip

  try:
    head = git("rev-parse", *(["--short"] if short else []), "HEAD")
    return head + ("+changes" if git("status", "--untracked-files=no", "--short") else "")
  except (OSError, subprocess.SubprocessError):
    return None
