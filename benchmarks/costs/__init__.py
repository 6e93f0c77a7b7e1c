"""Cost benchmarks: optimizer-step time and memory, as ratios against optax peers.

Modules:
  optimizer_step  one optimizer step on the ResNet-50 tree, against optax.sgd
  step_report     its tables, from a results file
  step_cost       the fused norm reductions, on the ResNet-50 tree
  median_cost     the exact per-layer medians of MCLR
  state_bytes     optimizer-state bytes per parameter
  tpu_cost        XLA's TPU cost model on a v5e slice (compiled here, no TPU needed)
  tpu_report      its tables, from a results file

See benchmarks/costs/README.md for the commands and the measured numbers.
"""
