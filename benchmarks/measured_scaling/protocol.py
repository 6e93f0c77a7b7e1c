"""The protocol, as data, fixed before any of its runs.

Which zero-tuning method carries the Fashion-MNIST LSTM recipe (``mnist_lstm``,
batch 128, momentum 0.9, LR 0.1, warmup 1/32 epoch, constant LR, 25 epochs) to a
64x larger batch, at what cost in steps, and whether the gradient noise scale
measured at the small batch predicts that cost. Methods: AdaScale (Johnson, Agrawal,
Gu & Guestrin, ICML 2020, arXiv:2007.05105, Algorithm 1) over momentum SGD; LEGW
(You et al., SC 2019, arXiv:1901.08256) for the epoch budget of the noise scale
(McCandlish, Kaplan, Amodei et al. 2018, arXiv:1812.06162, eq. 2.11-2.12); and LEGW +
LARS, the LEGW paper's own pairing (§6). Accuracy is on the 10,000 test images; the
validation split (a seeded 1/8 of the training set) serves only LARS's base LR.

Seen before this protocol was written: the committed Fashion-MNIST results (LEGW at
8192: 83.0 +- 5.9% over 6 seeds; no scaling 85.0%; tuned Adam 88.9%; base 89.7%), and
the noise-scale guide's run of the base recipe, seed 0
(``benchmarks/guides/results/noise_scale.json``: 1,498 by the summary rule below,
which that script fixed before its run; a budget of 149 epochs at 8192). LARS's grid
below rests on the median trust ratio at initialisation, measured on 4 batches of 128
(seeds 0-1) with no training: 0.0264-0.0284.
"""

from __future__ import annotations

import math

TASK, DATASET = "mnist_lstm", "fashion_mnist"
BASE_BATCH = 128
BASE_EPOCHS = 25
TRAIN_SIZE = 60_000
BASE_STEPS = BASE_EPOCHS * (TRAIN_SIZE // BASE_BATCH)  # T = 11,700: an epoch drops its remainder
SEEDS = (0, 1, 2)

# 1. The noise scale of the base run: K microbatches of each base batch; B_simple
#    logged every LOG_EVERY steps; per seed, the median of the logged values over
#    the second half of the steps; B_noise = the median of the seeds' summaries.
NOISE_SAMPLES = 8  # 8 microbatches of 16
LOG_EVERY = 50
SUMMARY_RULE = "per seed: median of the logged noise_scale over the second half of the steps"
B_NOISE_RULE = "median over seeds 0-2 of the per-seed summaries"


def budget_epochs(batch_size: int, b_noise: float) -> int:
  """Epochs at ``batch_size``: 25 (1 + B/B_noise) / (1 + 128/B_noise), rounded up."""
  return math.ceil(BASE_EPOCHS * (1 + batch_size / b_noise) / (1 + BASE_BATCH / b_noise))


# 2-3. AdaScale over momentum SGD 0.9 from the base schedule (a function of base
#    steps), each gradient sample one base batch (K = B / 128), the moving
#    averages' default decay, until the progress reaches BASE_STEPS; test accuracy
#    after every epoch (so the row after 25 epochs exists too).
ADASCALE_BATCHES = (8192, 2048)
LARGE_BATCH = 8192

# 2c. LEGW + LARS: legw.lars(trust_coefficient=0.001, weight decay 0, the default
#    masks), its base LR chosen at batch 128 on the validation split (seeds 0-1) by
#    the committed rules (benchmarks/README.md, "How the base LR is chosen": argmax
#    and one_se; where they differ, both are carried), over six LRs a factor 2 apart
#    whose median per-layer rate at initialisation (LR x 0.0264-0.0284) spans the
#    momentum grid's 0.025-0.8; then LEGW's rule to 8192 (LR x 8, warmup x 64), 25 epochs.
LARS_TRUST_COEFFICIENT = 0.001
LARS_MEDIAN_TRUST_RATIO_AT_INIT = (0.0264, 0.0284)
LARS_GRID = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
LARS_TUNING_SEEDS = (0, 1)
LARS_RULES = ("argmax", "one_se")

# 4. mnist5k (the main job's task): AdaScale from batch 8 to 512 (K = 64 samples of 8),
#    seeds 0-2, beside the committed rows; and B_simple of its base run (seed 0).
MNIST5K_BASE_BATCH, MNIST5K_BATCH = 8, 512

# Verdicts, stated in advance.
BASE_MEAN = 0.897  # committed base, batch 128
TUNED_ADAM_MEAN = 0.889  # committed, tuned at 8192
CARRIES_IF_EVERY_SEED_AT_LEAST = 0.887  # within a point of the base mean
BEATS_TUNING_IF_MEAN_AT_LEAST = TUNED_ADAM_MEAN
PREDICTS_IF_STEPS_WITHIN_FACTOR = 1.5  # AdaScale's steps at 8192 vs the budget's steps
TARGET_ACCURACY = 0.887  # steps (and epochs) to first reach it, per row and for the base

ORDER = (
  "lars-grid",
  "noise-base",
  "mnist5k",
  "adascale-2048",
  "adascale-8192",
  "legw-budget",
  "lars-8192",
)
