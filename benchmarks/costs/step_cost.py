"""One legw optimizer against momentum SGD on the ResNet-50 tree.

Prints the bytes of temporary buffers in the compiled step (XLA's
``memory_analysis``) and the interleaved step-time ratio to
``optax.sgd(momentum=0.9)`` (``benchmarks.costs.optimizer_step.time_interleaved``).
A quick check after changing an optimizer. It only uses what
``benchmarks/costs/optimizer_step.py`` has had since it was written, so it also runs in
a checkout of an older commit, to compare two commits::

    git worktree add /tmp/old <commit> && cp benchmarks/costs/step_cost.py /tmp/old/benchmarks/
    cd /tmp/old && PYTHONPATH=. python -m benchmarks.costs.step_cost percent_delta
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax

import legw
from benchmarks.costs import optimizer_step as ob

OPTIMIZERS = {
  "lars": lambda: legw.lars(ob.LR, momentum=ob.MOMENTUM, weight_decay=ob.WEIGHT_DECAY),
  "lars-combined-all": lambda: legw.lars(
    ob.LR,
    momentum=ob.MOMENTUM,
    weight_decay=ob.WEIGHT_DECAY,
    denominator="combined",
    trust_ratio_mask=True,
    weight_decay_mask=True,
  ),
  "percent_delta": lambda: legw.percent_delta(
    ob.LR, momentum=ob.MOMENTUM, weight_decay=ob.WEIGHT_DECAY
  ),
  "mclr": lambda: legw.mclr(ob.LR, momentum=ob.MOMENTUM, weight_decay=ob.WEIGHT_DECAY),
}


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("optimizer", choices=sorted(OPTIMIZERS))
  parser.add_argument("--reps", type=int, default=11)
  args = parser.parse_args(argv)
  shapes = ob.resnet50_shapes()
  opt = OPTIMIZERS[args.optimizer]()
  params = {k: jax.ShapeDtypeStruct(s, jnp.float32) for k, s in shapes.items()}
  state = jax.eval_shape(opt.init, params)
  temp = ob.make_step(opt).lower(params, state, params).compile().memory_analysis()
  timing = ob.time_interleaved(
    shapes, {"sgd": optax.sgd(ob.LR, momentum=ob.MOMENTUM), args.optimizer: opt}, args.reps
  )
  out = {
    "temp_MB": temp.temp_size_in_bytes / 1e6,
    "ratio_to_sgd": timing[args.optimizer]["ratio_to_sgd"],
  }
  print(
    f"{args.optimizer} on ResNet-50: temporaries {out['temp_MB']:.2f} MB, "
    f"{out['ratio_to_sgd']:.2f}x momentum SGD ({args.reps} interleaved reps)"
  )
  return out


if __name__ == "__main__":
  main()
