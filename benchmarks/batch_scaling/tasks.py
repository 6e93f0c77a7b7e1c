"""The task registry of the batch-scaling benchmark, and its scaling methods.

A *task* is a model, the optimizer each method uses, a metric and, per data
set, the *baseline*: the recipe tuned once at a small batch size, from which
every larger batch is derived by a method's rule alone (no per-batch tuning).

A *method* is a pair of scaling rules applied to that baseline
(:func:`legw.scale_learning_rate`, :func:`legw.scale_warmup_epochs`):

=========  =======================  ==============================================
method     peak learning rate       warmup (epochs)
=========  =======================  ==============================================
``legw``   base LR * sqrt(k)        base warmup * k  (LEGW, paper §3)
``linear`` base LR * k              base warmup      (constant-epoch, Goyal et al.)
``none``   base LR                  base warmup
``adam``   Adam's base LR           base warmup      (adaptive baseline, §5.2)
``lamb``   LAMB's base LR * sqrt(k) base warmup * k  (LAMB with LEGW's rules)
=========  =======================  ==============================================

with k = batch_size / base_batch_size; and ``nesterov`` (Nesterov momentum),
which has no rule: it is tuned at the batch it runs at
(:mod:`benchmarks.large_batch_tuning`). To add a task, add an entry to
:data:`TASKS` (see ``docs`` of :class:`Task`); the sweep CLI picks it up.
"""

from __future__ import annotations

import functools

from benchmarks.batch_scaling import lstm_lm
from benchmarks.batch_scaling.task_spec import Baseline, Method, Task  # noqa: F401  (re-exported)
from benchmarks.models import MnistLSTM, SmallResNet

METHODS: dict[str, Method] = {
  "legw": Method("sqrt", "linear", "sqrt LR scaling, linear-epoch gradual warmup (LEGW)"),
  "linear": Method("linear", "none", "linear LR scaling, constant-epoch warmup"),
  "none": Method("none", "none", "the baseline LR and warmup at every batch size"),
  "adam": Method("none", "none", "Adam at its tuned base LR at every batch size"),
  "lamb": Method("sqrt", "linear", "LAMB with LEGW's rules (You et al. 2020 scale LAMB so)"),
  # Tuned at the large batch itself (benchmarks/large_batch_tuning/experiment.py),
  # so the "base" batch is the large one and no rule is applied.
  "nesterov": Method(
    "none", "none", "Nesterov momentum tuned at the batch it runs at", tuned_per_batch=True
  ),
}


_MNIST_LSTM_NOTES = (
  "Momentum 0.9 (paper §5.1.1), no weight decay. Base LRs chosen by the "
  "grid in benchmarks/results/mnist_lstm-<dataset>-tuning.json at the base "
  "batch (validation split held out of the training set); see "
  "benchmarks/README.md."
)

TASKS: dict[str, Task] = {
  "mnist_lstm": Task(
    name="mnist_lstm",
    description="LEGW §5.1.1: 28 steps x 28 inputs, 128-unit transform, "
    "LSTM(128), softmax; momentum 0.9",
    make_model=MnistLSTM,
    optimizers={
      "legw": "momentum",
      "linear": "momentum",
      "none": "momentum",
      "adam": "adam",
      "lamb": "lamb",
      "nesterov": "nesterov",
    },
    baselines={
      # The paper's schedule (§5.1.1): constant LR after the gradual
      # warmup, 25 epochs.
      # Base LRs: both rules of batch_scaling.select_learning_rates on
      # results/mnist_lstm-mnist5k-tuning.json (3 seeds; tests check it).
      "mnist5k": Baseline(
        base_batch_size=8,
        learning_rates={"momentum": 0.025, "adam": 0.0005, "lamb": 0.000625},
        rule_learning_rates={
          "argmax": {"momentum": 0.025, "adam": 0.0005, "lamb": 0.000625},
          "one_se": {"momentum": 0.025, "adam": 0.0005, "lamb": 0.00125},
        },
        base_warmup_epochs=1 / 16,
        num_epochs=25,
        decay="constant",
        batch_sizes=(8, 32, 128, 512),
        notes=_MNIST_LSTM_NOTES,
        # The README's headline table has 3 seeds at the base and 64x.
        headline_extras=(dict(seeds=(1, 2), batch_sizes=(8, 512), methods=("legw", "linear")),),
      ),
      # Base LR: both rules on results/mnist_lstm-fashion_mnist-tuning.json
      # (2 seeds) pick momentum 0.1 and adam 0.002 (its grid 2.5e-4..4e-3 ran
      # after the legw/linear/none sweep, before any adam large-batch run);
      # lamb is an untuned placeholder (the sweep refuses it under the rules).
      "fashion_mnist": Baseline(
        base_batch_size=128,
        learning_rates={"momentum": 0.1, "adam": 0.002, "lamb": 0.005},
        rule_learning_rates={
          "argmax": {"momentum": 0.1, "adam": 0.002},
          "one_se": {"momentum": 0.1, "adam": 0.002},
        },
        base_warmup_epochs=1 / 32,
        num_epochs=25,
        decay="constant",
        batch_sizes=(128, 512, 2048, 8192),
        notes=_MNIST_LSTM_NOTES,
      ),
    },
  ),
  "cnn_lars": Task(
    name="cnn_lars",
    description="small ResNet with batch norm; legw = LARS + LEGW schedule, "
    "linear/none = momentum SGD",
    make_model=functools.partial(SmallResNet, widths=(8, 16, 32)),
    scan_epoch=False,  # XLA:CPU runs convolutions inside a while loop ~8x slower
    optimizers={"legw": "lars", "linear": "momentum", "none": "momentum", "adam": "adam"},
    optimizer_kwargs={
      "lars": {"weight_decay": 5e-4, "trust_coefficient": 0.001},
      "momentum": {"weight_decay": 5e-4},
    },
    baselines={
      "mnist5k": Baseline(
        base_batch_size=8,
        learning_rates={"momentum": 0.2, "lars": 2.0, "adam": 0.004},
        base_warmup_epochs=1 / 32,
        num_epochs=10,
        batch_sizes=(8, 32, 128, 512),
        notes="LARS trust coefficient 0.001 and weight decay 5e-4 "
        "(biases and batch-norm parameters excluded), momentum 0.9. "
        "Base LRs: the best validation accuracy of the grids in "
        "benchmarks/results/cnn_lars-mnist5k-tuning.json (Adam: "
        "0.004 ties 0.008; the smaller was taken).",
      ),
    },
  ),
}


# The LEGW paper's PTB language model (§5.1.2), in its own module.
TASKS["lstm_lm"] = lstm_lm.make_task()


def get_task(name: str) -> Task:
  if name not in TASKS:
    raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}.")
  return TASKS[name]
