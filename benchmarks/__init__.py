"""Reproductions of the papers' experiments, and speed benchmarks.

Modules:
  data           offline data sets (``load_dataset``): mnist5k, fashion_mnist
  models         Flax models: the LEGW paper's MNIST LSTM, a small ResNet
  tasks          the task registry: model + loss + metric + tuned baselines
  train          jit-compiled training (one ``lax.scan`` per epoch) and evaluation
  batch_scaling  the main job: accuracy vs batch size per scaling method (CLI)
"""
