"""A legw schedule under ``optax.MultiSteps``: what it counts, the remainder, logging the LR.

Gradient accumulation emulates a batch of ``micro_batch * k`` examples with ``k``
micro-steps per optimizer step. The schedule inside ``MultiSteps`` sees the inner
optimizer's step count, i.e. *optimizer* steps, so ``steps_per_epoch`` must come from the
effective batch. If the data loader drops the remainder at the micro-batch instead,
``MultiSteps`` accumulates across epoch boundaries and the run takes more optimizer
steps than the schedule was built for: the tail trains at the schedule's end value.
This script measures that on a small linear model (the LR log does not depend on the
data) and shows how to read the LR of each optimizer step.

    python -m benchmarks.guides.multisteps      # a few CPU-seconds
"""

from __future__ import annotations

import argparse
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import legw
from benchmarks.guides import common

DATASET_SIZE = 1000
MICRO_BATCH = 64
K = 4  # micro-steps per optimizer step: an effective batch of 256
NUM_EPOCHS = 10


def make_schedule(steps_per_epoch: int) -> optax.Schedule:
  """A LEGW schedule for the effective batch, built for ``steps_per_epoch`` optimizer steps."""
  return legw.legw_schedule(
    base_learning_rate=0.1,
    base_batch_size=MICRO_BATCH,
    batch_size=MICRO_BATCH * K,  # the effective batch
    base_warmup_epochs=0.25,
    num_epochs=NUM_EPOCHS,
    steps_per_epoch=steps_per_epoch,
  )


def make_optimizer(schedule: optax.Schedule) -> optax.MultiSteps:
  """``legw.lars`` at ``schedule`` (LR logged by ``inject_hyperparams``), over K micro-steps."""
  inner = optax.inject_hyperparams(legw.lars)(learning_rate=schedule, trust_coefficient=0.01)
  return optax.MultiSteps(inner, every_k_schedule=K)


def micro_batches_per_epoch(drop_remainder_at: str) -> int:
  """Micro-batches a loader yields per epoch when it drops the remainder at the micro
  batch (``"micro"``) or at the effective batch (``"effective"``)."""
  if drop_remainder_at == "micro":
    return DATASET_SIZE // MICRO_BATCH
  return DATASET_SIZE // (MICRO_BATCH * K) * K


def lr_log(steps_per_epoch: int, drop_remainder_at: str) -> list[dict[str, Any]]:
  """Trains NUM_EPOCHS epochs; one row per optimizer step: epoch, gradient_step, LR."""
  opt = make_optimizer(make_schedule(steps_per_epoch))
  rng = np.random.default_rng(0)
  w_true = rng.normal(size=(8, 1)).astype(np.float32)
  params = {"kernel": jnp.zeros((8, 1)) + 0.1, "bias": jnp.zeros(1)}
  state = opt.init(params)

  def loss(p, x, y):
    return jnp.mean((x @ p["kernel"] + p["bias"] - y) ** 2)

  @jax.jit
  def micro_step(params, state, x, y):
    grads = jax.grad(loss)(params, x, y)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  rows = []
  for epoch in range(NUM_EPOCHS):
    for _ in range(micro_batches_per_epoch(drop_remainder_at)):
      x = rng.normal(size=(MICRO_BATCH, 8)).astype(np.float32)
      params, state = micro_step(params, state, x, x @ w_true)
      if int(state.mini_step) == 0:  # an optimizer step was just taken
        rows.append(
          {
            "epoch": epoch,
            "gradient_step": int(state.gradient_step),
            "learning_rate": float(state.inner_opt_state.hyperparams["learning_rate"]),
          }
        )
  return rows


def summarize(rows: list[dict[str, Any]], schedule_steps: int) -> dict[str, Any]:
  """Optimizer steps taken, how many past the schedule's end, and those at LR 0.

  "LR 0" is below 1e-9: past its end the jitted schedule gives ~1e-17 (float32
  rounding inside XLA), not an exact 0.
  """
  zero = [r for r in rows if r["learning_rate"] < 1e-9 and r["gradient_step"] > 1]
  return {
    "optimizer_steps": len(rows),
    "schedule_steps": schedule_steps,
    "steps_past_schedule_end": max(0, len(rows) - schedule_steps),
    "steps_at_lr_0_after_step_1": len(zero),
    "epochs_with_lr_0": sorted({r["epoch"] for r in zero}),
    "last_learning_rates": [float(f"{r['learning_rate']:.3g}") for r in rows[-3:]],
  }


def run() -> dict[str, Any]:
  """The mismatched and the matched loader, with their LR logs summarised."""
  spe = DATASET_SIZE // (MICRO_BATCH * K)  # 3 optimizer steps per epoch
  mismatched = lr_log(spe, "micro")
  matched = lr_log(spe, "effective")
  schedule = make_schedule(spe)
  return {
    "setup": f"{DATASET_SIZE} examples, micro-batch {MICRO_BATCH}, k={K} (effective batch "
    f"{MICRO_BATCH * K}), {NUM_EPOCHS} epochs; schedule built with steps_per_epoch = "
    f"{DATASET_SIZE} // {MICRO_BATCH * K} = {spe}",
    "remainder dropped at the micro-batch (15 micro-batches/epoch)": summarize(
      mismatched, spe * NUM_EPOCHS
    ),
    "remainder dropped at the effective batch (12 micro-batches/epoch)": summarize(
      matched, spe * NUM_EPOCHS
    ),
    "logged LR after optimizer step n == schedule(n - 1)": bool(
      np.allclose(
        [r["learning_rate"] for r in mismatched + matched],
        [float(schedule(r["gradient_step"] - 1)) for r in mismatched + matched],
        rtol=1e-5,
        atol=1e-9,
      )
    ),
  }


def markdown_table(results: dict[str, Any]) -> str:
  """Per loader: micro-batches an epoch, optimizer steps, those past the schedule's end."""
  lines = [
    "| loader | micro-batches an epoch | optimizer steps | past the schedule's end "
    "| epochs at LR 0 |",
    "|---|---:|---:|---:|---|",
  ]
  for key, r in results.items():
    found = re.fullmatch(r"remainder dropped at the (.+) \((\d+) micro-batches/epoch\)", key)
    if found:
      epochs = [str(e) for e in r["epochs_with_lr_0"]] or ["none"]
      at_0 = ", ".join(epochs[:-1]) + " and " * (len(epochs) > 1) + epochs[-1]
      lines.append(
        f"| drops the remainder at the {found[1]} | {found[2]} | {r['optimizer_steps']} "
        f"| {r['steps_past_schedule_end']} | {at_0} |"
      )
  return "\n".join(lines)


def main(argv=None) -> None:
  argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
  results, seconds = common.timed(run)
  results["wall_seconds"] = round(seconds, 1)
  for key, value in results.items():
    print(f"{key}: {value}")
  print(f"\n{markdown_table(results)}\n")
  print(
    "wrote", common.write_results("multisteps", results, "python -m benchmarks.guides.multisteps")
  )


if __name__ == "__main__":
  main()
