"""Reproductions of the papers' experiments, and speed benchmarks.

Modules:
  data           offline data sets (``load_dataset``): mnist5k, fashion_mnist
  models         Flax models: the LEGW paper's MNIST LSTM, a small ResNet
  tasks          the task registry: model + loss + metric + tuned baselines
  train          jit-compiled training (one ``lax.scan`` per epoch) and evaluation
  batch_scaling  the main job: accuracy vs batch size per scaling method (CLI)
  large_batch_tuning  issue 27: LEGW at 64x against tuning at 64x (CLI)

Every command writes under :data:`RUNS_DIR` (``benchmarks/runs/``, ignored by
git) unless told otherwise (``--out-dir``/``--out``): running a command never
rewrites a tracked file. The committed reference results are in
``benchmarks/results/`` (and ``benchmarks/{curvature,guides}/results/``); a
maintainer adds to them by passing that directory explicitly.
"""

import os

RUNS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runs")
