"""Batch scaling: does a recipe tuned at a small batch keep its accuracy at a large one?

Modules:
  main       the command line (``python -m benchmarks.batch_scaling``)
  task_spec  what a task, a scaling method and a tuned baseline are (plain data)
  tasks      the task registry and the scaling methods (the configs)
  train      jit-compiled training (one ``lax.scan`` per epoch) and evaluation
  sweep      plan the runs, train them (worker processes), resume
  report     the tables, plot, CSV/JSON, comparison with the committed reference
  tuning     the base-batch LR grid and the two selection rules
  lstm_lm, lm_data  the word-level LSTM language model task and its corpus
"""
