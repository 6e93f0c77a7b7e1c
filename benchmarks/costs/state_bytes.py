"""Optimizer-state bytes per parameter, default state vs bfloat16 state.

For each optimizer (optax.sgd with momentum, optax.adamw, legw.lars, legw.lamb,
legw.mclr, legw.percent_delta), with its default state and with the state in
bfloat16 (``accumulator_dtype`` for momentum, ``mu_dtype`` for Adam/LAMB's
first moment), on float32 parameter trees shaped like ResNet-50 v1.5 (25.6 M
parameters) and BERT-base (110 M): ``sum(leaf.nbytes for leaf in state) /
n_params``.  Nothing is allocated: the state is ``jax.eval_shape(opt.init,
params)`` of ``jax.ShapeDtypeStruct`` parameters, and its bytes are counted from
the shapes and dtypes.  Usage::

    python -m benchmarks.costs.state_bytes      # a few seconds; no device memory
    python -m benchmarks.costs.state_bytes --report benchmarks/results/state_bytes.json

Writes ``benchmarks/runs/state_bytes.json`` (``--out``; the reference is in
results/).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import legw
from benchmarks import RUNS_DIR
from benchmarks.costs.optimizer_step import resnet50_shapes

# name -> make(bf16: bool): the optimizer with its default state, or with its
# narrowable state in bfloat16 (what optax and legw call the argument).
OPTIMIZERS: dict[str, Callable[[bool], optax.GradientTransformation]] = {
  "optax.sgd(momentum=0.9)": lambda bf16: optax.sgd(
    0.1, momentum=0.9, accumulator_dtype=jnp.bfloat16 if bf16 else None
  ),
  "optax.adamw": lambda bf16: optax.adamw(1e-3, mu_dtype=jnp.bfloat16 if bf16 else None),
  "legw.lars": lambda bf16: legw.lars(0.1, accumulator_dtype=jnp.bfloat16 if bf16 else None),
  "legw.lamb": lambda bf16: legw.lamb(1e-3, mu_dtype=jnp.bfloat16 if bf16 else None),
  "legw.mclr": lambda bf16: legw.mclr(1e-3, accumulator_dtype=jnp.bfloat16 if bf16 else None),
  "legw.percent_delta": lambda bf16: legw.percent_delta(
    1e-3, accumulator_dtype=jnp.bfloat16 if bf16 else None
  ),
}
ARGUMENT = {"optax.adamw": "mu_dtype", "legw.lamb": "mu_dtype"}  # others: accumulator_dtype


def bert_base_shapes(
  layers: int = 12, width: int = 768, mlp: int = 3072, vocab: int = 30522, positions: int = 512
) -> dict[str, tuple[int, ...]]:
  """BERT-base (Devlin et al. 2019): embeddings, 12 encoder layers, pooler; 110 M."""
  shapes: dict[str, tuple[int, ...]] = {
    "embeddings/word": (vocab, width),
    "embeddings/position": (positions, width),
    "embeddings/token_type": (2, width),
    "embeddings/ln/scale": (width,),
    "embeddings/ln/bias": (width,),
  }
  for l in range(layers):
    p = f"layers/{l}/"
    for n in ("query", "key", "value", "out"):
      shapes[p + f"attn/{n}/kernel"] = (width, width)
      shapes[p + f"attn/{n}/bias"] = (width,)
    shapes[p + "mlp/in/kernel"] = (width, mlp)
    shapes[p + "mlp/in/bias"] = (mlp,)
    shapes[p + "mlp/out/kernel"] = (mlp, width)
    shapes[p + "mlp/out/bias"] = (width,)
    for n in ("ln1", "ln2"):
      shapes[p + n + "/scale"] = (width,)
      shapes[p + n + "/bias"] = (width,)
  shapes["pooler/kernel"] = (width, width)
  shapes["pooler/bias"] = (width,)
  return shapes


TREES: dict[str, Callable[[], dict[str, tuple[int, ...]]]] = {
  "resnet50": resnet50_shapes,
  "bert_base": bert_base_shapes,
}


def abstract_params(shapes: dict[str, tuple[int, ...]], dtype=jnp.float32) -> dict:
  return {k: jax.ShapeDtypeStruct(s, dtype) for k, s in shapes.items()}


def state_bytes(opt: optax.GradientTransformation, params) -> int:
  """Bytes of ``opt.init(params)``'s leaves, from ``jax.eval_shape`` (no memory)."""
  state = jax.eval_shape(opt.init, params)
  return int(
    sum(np.prod(x.shape, dtype=np.int64) * x.dtype.itemsize for x in jax.tree.leaves(state))
  )


def measure(trees: dict[str, dict[str, tuple[int, ...]]] | None = None) -> dict:
  """One row per (tree, optimizer, state): the state's bytes and bytes per parameter."""
  if trees is None:
    trees = {name: make() for name, make in TREES.items()}
  rows, n_params = [], {}
  for tree, shapes in trees.items():
    params = abstract_params(shapes)
    n = int(sum(np.prod(s, dtype=np.int64) for s in shapes.values()))
    n_params[tree] = n
    for name, make in OPTIMIZERS.items():
      for bf16 in (False, True):
        nbytes = state_bytes(make(bf16), params)
        rows.append(
          {
            "tree": tree,
            "optimizer": name,
            "state": f"{ARGUMENT.get(name, 'accumulator_dtype')}=bfloat16" if bf16 else "default",
            "state_bytes": nbytes,
            "bytes_per_param": nbytes / n,
          }
        )
  return {"parameter_dtype": "float32", "n_params": n_params, "rows": rows}


TREE_LABELS = {"resnet50": "ResNet-50", "bert_base": "BERT-base"}


def caption(result: dict, path: str | None = None) -> str:
  """One line: the command, versions and trees of a results file (and its ``path``)."""
  trees = ", ".join(
    f"{TREE_LABELS.get(t, t)} {n:,} parameters" for t, n in result["n_params"].items()
  )
  return (
    f"Counted by `{result['command']}` (jax {result['jax']}, optax {result['optax']}): the "
    f"bytes of `jax.eval_shape(opt.init, params)` per {result['parameter_dtype']} parameter; "
    f"{trees}" + (f"; results in `{path}`." if path else ".")
  )


def markdown_table(result: dict) -> str:
  """Bytes per parameter: one row per optimizer, default and bfloat16 per tree."""
  trees = list(result["n_params"])
  by = {(r["tree"], r["optimizer"], r["state"] == "default"): r for r in result["rows"]}
  names = list(dict.fromkeys(r["optimizer"] for r in result["rows"]))
  head = "| optimizer | bfloat16 argument |"
  rule = "|---|---|"
  for t in (TREE_LABELS.get(t, t) for t in trees):
    head += f" {t}: default | {t}: bfloat16 |"
    rule += "---:|---:|"
  lines = [head, rule]
  for name in names:
    line = f"| `{name}` | `{ARGUMENT.get(name, 'accumulator_dtype')}` |"
    for t in trees:
      line += (
        f" {by[(t, name, True)]['bytes_per_param']:.2f}"
        f" | {by[(t, name, False)]['bytes_per_param']:.2f} |"
      )
    lines.append(line)
  return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default=os.path.join(RUNS_DIR, "state_bytes.json"))
  parser.add_argument("--report", metavar="PATH", help="print the table of a results file")
  return parser


def main(argv=None) -> dict:
  args = build_parser().parse_args(argv)
  if args.report:
    with open(args.report, encoding="utf-8") as f:
      result = json.load(f)
    print(f"{caption(result, args.report)}\n\n{markdown_table(result)}")
    return result
  result = {"command": "python -m benchmarks.costs.state_bytes", "jax": jax.__version__}
  result.update(measure())
  result["optax"] = optax.__version__
  print(f"{caption(result)}\n\n{markdown_table(result)}")
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(result, f, indent=1)
    f.write("\n")
  print(f"wrote {args.out}")
  return result


if __name__ == "__main__":
  main()
