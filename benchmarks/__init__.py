"""Reproductions of the papers' experiments, and speed benchmarks.

Modules, by role (the batch-size sweep):
  data           offline data sets (``load_dataset``): mnist5k, fashion_mnist
  models         Flax models: the LEGW paper's MNIST LSTM, a small ResNet
  task_spec      what a task, a scaling method and a tuned baseline are (plain data)
  tasks          the task registry (``lstm_lm`` adds its own entry from its module)
  train          jit-compiled training (one ``lax.scan`` per epoch) and evaluation
  sweep          the sweep: plan the runs, train them (worker processes), resume
  report         the sweep's tables, plot, CSV/JSON, comparison with the reference
  tuning         the base-batch LR grid and the two selection rules
  batch_scaling  the main job's command line (and the names above, re-exported)
  large_batch_tuning  issue 27: LEGW at 64x against tuning at 64x (command line)
  readme_figures the READMEs' figures, recomputed from the committed results
Speed benchmarks: optimizer_step, step_cost, median_cost; the papers' other
methods: paper_methods; multi-process: multihost; curvature/ and guides/: the
experiments of those write-ups.

Every command writes under :data:`RUNS_DIR` (``benchmarks/runs/``, ignored by
git) unless told otherwise (``--out-dir``/``--out``): running a command never
rewrites a tracked file. The committed reference results are in
``benchmarks/results/`` (and ``benchmarks/{curvature,guides}/results/``); a
maintainer adds to them by passing that directory explicitly.
"""

import os

RUNS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runs")
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
