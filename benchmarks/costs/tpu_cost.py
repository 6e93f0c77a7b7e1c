"""XLA's TPU cost model for legw's optimizers beside optax's: estimated cycles and HBM.

Every figure here is XLA's *estimate* for a TPU, from compiling on this CPU for
compile-only TPU devices (``benchmarks/tpu.py``; the ``tpu`` extra), not a measurement on
a TPU. "Estimated cycles" is the sum of the ``estimated_cycles`` the TPU compiler writes
on each op of the optimized module (:func:`benchmarks.tpu.estimated_cycles`); it is
deterministic for one libtpu version, so ratios to ``optax.sgd(momentum=0.9)`` in the same
run are the yardstick. HBM per chip is ``memory_analysis()``.

Parts (``--parts``):

* ``step``: the optimizer step alone (``update`` + ``apply_updates``, parameters and state
  donated) on the ResNet-50 and the transformer-like trees of
  ``benchmarks/costs/optimizer_step.py``, on one v5e chip and FSDP over 4 and 8 chips;
* ``ablations``: a design legw rejected, beside momentum SGD (ResNet-50 tree, one chip
  and FSDP 4): ``legw.lars`` and ``legw.lamb`` with one variadic reduce of both sums;
* ``train``: a full training step on one v5e chip: a Flax ResNet-50 on 128 ImageNet-shaped
  bfloat16 images, and a BERT-base-shaped masked LM on 32 sequences of 512 tokens;
* ``pod``: pod scale: the ResNet-50 ``legw.lars`` + LEGW step at global batch 32,768 on a
  v5e-256 (16x16) slice, data parallel, and ``legw.lamb`` on a BERT-Large-shaped model
  at global batch 65,536 sequences of 128 tokens on the same slice;
* ``adascale``: the price of the gradient noise scale in a training step: the ResNet-50
  on 4 v5e chips, data parallel (128 images per chip), its gradients stacked on a leading
  axis of K = 4 samples sharded over the chips (``jax.vmap`` of ``jax.grad`` over the
  batch reshaped to (K, 128, ...)); ``legw.adascale`` (momentum SGD, and LARS with
  ``trust_coefficient``) and ``legw.gradient_noise_scale`` before ``optax.sgd``, each
  beside its baseline on the same stacked gradients, without the statistic (their mean,
  then ``optax.sgd(momentum)`` or ``legw.lars``).

::

    python -m benchmarks.costs.tpu_cost --parts step ablations
    python -m benchmarks.costs.tpu_cost --parts train --models resnet50 --optimizers legw.lars
    python -m benchmarks.costs.tpu_cost --parts pod
    python -m benchmarks.costs.tpu_cost --parts adascale \
        --out benchmarks/results/tpu_cost-adascale.json

Each entry records its compile time (``compile_s``): seconds for an optimizer step,
minutes for a full training step; and its cycles split by where the ops came from
(``cycles_by_origin``: forward, backward, optimizer; :func:`benchmarks.tpu.cycles_by_origin`).
The training-step table converts cycles to milliseconds and examples/s per chip at
:data:`benchmarks.tpu.V5E_CLOCK_HZ`: estimates too.

Results go to ``benchmarks/runs/tpu_cost.json`` (``--out`` to change), one entry per
compile, written as it finishes; a rerun skips the entries already there. The command
prints the tables of benchmarks/costs/README.md (:mod:`benchmarks.costs.tpu_report`);
``--report PATH`` prints them from a results file without compiling (no libtpu needed).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

import legw
from benchmarks import RUNS_DIR, models, tpu
from benchmarks.costs import optimizer_step as ob

LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 1e-4
BASELINE = "optax.sgd(momentum)"

# The optimizers, at the hyperparameters of benchmarks/costs/optimizer_step.py.
OPTIMIZERS: dict[str, Callable[[Any], optax.GradientTransformation]] = {
  BASELINE: lambda lr: optax.sgd(lr, momentum=MOMENTUM),
  "optax.adamw": lambda lr: optax.adamw(lr, weight_decay=WEIGHT_DECAY),
  "optax.lars": lambda lr: optax.lars(lr, weight_decay=WEIGHT_DECAY, momentum=MOMENTUM),
  "optax.lamb": lambda lr: optax.lamb(lr, weight_decay=WEIGHT_DECAY),
  "legw.lars": lambda lr: legw.lars(lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY),
  "legw.lamb": lambda lr: legw.lamb(lr, weight_decay=WEIGHT_DECAY),
  "legw.mclr": lambda lr: legw.mclr(lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY),
  "legw.percent_delta": lambda lr: legw.percent_delta(
    lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY
  ),
}


def _layerwise_variant(statistic, adam: bool) -> optax.GradientTransformation:
  """legw.lars (``adam=False``) or legw.lamb (``adam=True``) with another statistic: the
  designs the ``--ablations`` part compares with the ones legw ships."""
  from legw import _layerwise
  from legw._lars import ScaleByLarsState

  scaler = _layerwise.scale_by_layerwise_rate(
    statistic,
    name="ablation",
    state_cls=ScaleByLarsState,
    trust_coefficient=1.0 if adam else 0.001,
    weight_decay=WEIGHT_DECAY,
    denominator="combined" if adam else "paper",
  )
  if adam:
    return optax.chain(optax.scale_by_adam(eps=1e-6), scaler, optax.scale_by_learning_rate(LR))
  return optax.chain(scaler, optax.scale_by_learning_rate(LR), optax.trace(MOMENTUM))


def _fused_lars_statistic():
  """LARS's statistic with ||w||^2 and ||g + beta*w||^2 as one variadic reduce
  (``legw._reduce.fused_sums``) instead of legw's two reductions."""
  from legw import _layerwise
  from legw._lars import _lars_sizes
  from legw._reduce import abs_sq, fused_sums, real_dtype, stat_dtype

  def partials(w, g, beta, stacked=False):
    w, g = w.astype(stat_dtype(w.dtype)), g.astype(stat_dtype(g.dtype))
    x = g if beta is None else g + jnp.asarray(beta, real_dtype(g.dtype)) * w
    return tuple(fused_sums([abs_sq(w), abs_sq(x)]))

  return _layerwise.sums_statistic(partials, _lars_sizes)


# A rejected design, in the same runs (``--parts ablations``; ResNet-50, one chip and
# FSDP 4): ||w||^2 and ||g||^2 as one variadic reduce instead of two reductions.
ABLATIONS: dict[str, Callable[[], optax.GradientTransformation]] = {
  "ablation: legw.lars, one variadic reduce": lambda: _layerwise_variant(
    _fused_lars_statistic(), False
  ),
  "ablation: legw.lamb, one variadic reduce": lambda: _layerwise_variant(
    _fused_lars_statistic(), True
  ),
}

# (label, slice, chips): one chip is one device of a 2x2 slice.
STEP_MESHES = [("1 chip", "v5e:2x2", 1), ("FSDP 4", "v5e:2x2", 4), ("FSDP 8", "v5e:2x4", 8)]
STEP_TREES = {"resnet50": ob.resnet50_shapes, "transformer": ob.transformer_shapes}


def _record(compiled, seconds: float) -> dict[str, Any]:
  # cost_analysis()'s "optimal_seconds" is not recorded: it came out negative for a
  # ResNet-50 training step (libtpu 0.0.42.1), so it is no time estimate to quote.
  return {
    "estimated_cycles": tpu.estimated_cycles(compiled),
    "cycles_by_origin": tpu.cycles_by_origin(compiled),
    "all_reduces": tpu.count_ops(compiled, "all-reduce"),
    **tpu.memory(compiled),
    "compile_s": round(seconds, 1),
  }


def optimizer_step_entry(tree: str, mesh_label: str, optimizer: str) -> dict[str, Any]:
  """One compile of part ``step``."""
  _, topology, chips = next(m for m in STEP_MESHES if m[0] == mesh_label)
  shapes = STEP_TREES[tree]()
  params = {k: jax.ShapeDtypeStruct(s, jnp.float32) for k, s in shapes.items()}
  mesh = tpu.mesh(topology, (chips,), ("fsdp",))
  spec = tpu.fsdp_spec("fsdp", chips) if chips > 1 else (lambda x: P())
  opt = ABLATIONS[optimizer]() if optimizer in ABLATIONS else OPTIMIZERS[optimizer](LR)
  t0 = time.perf_counter()
  compiled = tpu.compile_optimizer_step(opt, params, spec, mesh)
  return _record(compiled, time.perf_counter() - t0)


# -- full training steps ------------------------------------------------------------------


def resnet50_train_step(opt: optax.GradientTransformation, num_classes: int = 1000):
  """``(params, batch_stats, opt_state, images, labels) -> (...)``: forward in bfloat16,
  softmax cross-entropy, gradients, the optimizer, ``apply_updates``."""
  model = models.ResNet50(num_classes=num_classes)

  def step(params, batch_stats, opt_state, images, labels):
    def loss_fn(p):
      logits, new = model.apply(
        {"params": p, "batch_stats": batch_stats}, images, train=True, mutable=["batch_stats"]
      )
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      return loss, new["batch_stats"]

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss

  return model, step


def encoder_lm_train_step(opt: optax.GradientTransformation, **shape):
  """``(params, opt_state, tokens) -> (...)``: the masked-LM loss of predicting every
  token (a cost stand-in for BERT's 15% masking: the same matmuls), the optimizer."""
  model = models.EncoderLM(**shape)

  def step(params, opt_state, tokens):
    def loss_fn(p):
      logits = model.apply({"params": p}, tokens)
      return optax.softmax_cross_entropy_with_integer_labels(logits, tokens).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return model, step


def _compile_resnet(opt, mesh, per_chip_batch: int) -> tuple[Any, float]:
  chips = mesh.devices.size
  model, step = resnet50_train_step(opt)
  images = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.bfloat16)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), images)
  rep = lambda x: P()
  params = tpu.abstract(variables["params"], mesh, rep)
  stats = tpu.abstract(variables["batch_stats"], mesh, rep)
  state = tpu.abstract(jax.eval_shape(opt.init, params), mesh, rep)
  batch = chips * per_chip_batch
  data = P(mesh.axis_names)
  x = tpu.abstract(jax.ShapeDtypeStruct((batch, 224, 224, 3), jnp.bfloat16), mesh, lambda _: data)
  y = tpu.abstract(jax.ShapeDtypeStruct((batch,), jnp.int32), mesh, lambda _: data)
  t0 = time.perf_counter()
  compiled = jax.jit(step, donate_argnums=(0, 1, 2)).lower(params, stats, state, x, y).compile()
  return compiled, time.perf_counter() - t0


def _compile_lm(opt, mesh, per_chip_batch: int, seq: int, **shape) -> tuple[Any, float]:
  chips = mesh.devices.size
  model, step = encoder_lm_train_step(opt, **shape)
  tokens = jax.ShapeDtypeStruct((1, seq), jnp.int32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), tokens)
  rep = lambda x: P()
  params = tpu.abstract(variables["params"], mesh, rep)
  state = tpu.abstract(jax.eval_shape(opt.init, params), mesh, rep)
  batch = chips * per_chip_batch
  data = P(mesh.axis_names)
  x = tpu.abstract(jax.ShapeDtypeStruct((batch, seq), jnp.int32), mesh, lambda _: data)
  t0 = time.perf_counter()
  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, x).compile()
  return compiled, time.perf_counter() - t0


BERT_BASE = {"layers": 12, "hidden": 768, "heads": 12, "mlp": 3072}
BERT_LARGE = {"layers": 24, "hidden": 1024, "heads": 16, "mlp": 4096}


def train_step_entry(model: str, optimizer: str) -> dict[str, Any]:
  """One compile of part ``train`` (one v5e chip)."""
  mesh = tpu.mesh("v5e:2x2", (1,), ("data",))
  opt = ABLATIONS[optimizer]() if optimizer in ABLATIONS else OPTIMIZERS[optimizer](LR)
  per_chip = 128 if model == "resnet50" else 32
  if model == "resnet50":
    compiled, secs = _compile_resnet(opt, mesh, per_chip_batch=per_chip)
  else:
    compiled, secs = _compile_lm(opt, mesh, per_chip_batch=per_chip, seq=512, **BERT_BASE)
  return {**_record(compiled, secs), "per_chip_batch": per_chip}


# -- pod scale ------------------------------------------------------------------------------

POD = "v5e:16x16"  # 256 chips
STEPS_PER_EPOCH_32K = 1_281_167 // 32_768


def pod_entry(model: str) -> dict[str, Any]:
  """ResNet-50 + legw.lars + LEGW at global batch 32,768, or BERT-Large + legw.lamb at
  65,536, on a v5e-256 slice, data parallel (parameters replicated, the batch split)."""
  mesh = tpu.mesh(POD, (256,), ("data",))
  if model == "resnet50":
    # LEGW carried from MLPerf v0.7's smallest bracket (batch 4,096: peak LR 10, 5
    # warmup epochs, momentum 0.9, decay 2e-4; docs/guides/mlperf_resnet50.md) to
    # 32,768 (k = 8): peak 10 x sqrt(8), 40 warmup epochs of 64.  The values do not
    # change the compiled step; they make it the step a user would run.
    schedule = legw.legw_schedule(
      base_learning_rate=10.0,
      base_batch_size=4096,
      batch_size=32_768,
      base_warmup_epochs=5,
      num_epochs=64,
      steps_per_epoch=STEPS_PER_EPOCH_32K,
    )
    opt = legw.lars(schedule, momentum=0.9, weight_decay=2e-4)
    compiled, secs = _compile_resnet(opt, mesh, per_chip_batch=128)
    per_chip = 128
  else:
    opt = legw.lamb(1e-3, weight_decay=0.01)
    compiled, secs = _compile_lm(opt, mesh, per_chip_batch=256, seq=128, **BERT_LARGE)
    per_chip = 256
  return {**_record(compiled, secs), "per_chip_batch": per_chip}


# -- the gradient noise scale (AdaScale) in a data-parallel step ------------------------------

ADASCALE_K, ADASCALE_PER_CHIP = 4, 128
ADASCALE_MESH = "DP 4, K 4"
ADASCALE_BASE = ADASCALE_PER_CHIP  # B0: one sample's batch; S = K
_mean = lambda grads: jax.tree.map(lambda g: g.mean(0), grads)

# name -> (optimizer on the stacked gradients, the baseline it is compared with). The
# baselines take the mean of the K samples first: the same data-parallel step without
# the statistic.
ADASCALE_OPTIMIZERS: dict[str, tuple[Callable[[], optax.GradientTransformation], str | None]] = {
  f"mean + {BASELINE}": (lambda: optax.chain(_stacked_mean(), OPTIMIZERS[BASELINE](LR)), None),
  "legw.adascale": (
    lambda: legw.adascale(
      LR,
      base_batch_size=ADASCALE_BASE,
      batch_size=ADASCALE_K * ADASCALE_PER_CHIP,
      momentum=MOMENTUM,
    ),
    f"mean + {BASELINE}",
  ),
  "mean + legw.lars": (lambda: optax.chain(_stacked_mean(), OPTIMIZERS["legw.lars"](LR)), None),
  "legw.adascale(trust_coefficient=0.001)": (
    lambda: legw.adascale(
      LR,
      base_batch_size=ADASCALE_BASE,
      batch_size=ADASCALE_K * ADASCALE_PER_CHIP,
      momentum=MOMENTUM,
      weight_decay=WEIGHT_DECAY,
      trust_coefficient=0.001,
    ),
    "mean + legw.lars",
  ),
  f"legw.gradient_noise_scale + {BASELINE}": (
    lambda: optax.chain(
      legw.gradient_noise_scale(ADASCALE_K * ADASCALE_PER_CHIP), OPTIMIZERS[BASELINE](LR)
    ),
    f"mean + {BASELINE}",
  ),
}


def _stacked_mean() -> optax.GradientTransformation:
  """The mean of the K stacked gradient samples (the baselines' first transform)."""
  return optax.stateless(lambda updates, params: _mean(updates))


def resnet50_stacked_train_step(opt: optax.GradientTransformation, mesh, k: int):
  """As :func:`resnet50_train_step`, the gradients stacked on a leading axis of ``k``
  samples: the batch reshaped to ``(k, batch // k, ...)`` with ``k`` over the data axis,
  ``jax.vmap`` of the gradient over it (each sample's BatchNorm statistics its own, as
  per-replica BatchNorm; their mean is kept); ``opt`` gets the ``(k, *param.shape)``
  gradients, sharded over the data axis."""
  from jax.sharding import NamedSharding

  model = models.ResNet50(num_classes=1000)
  stacked = NamedSharding(mesh, P(mesh.axis_names))

  def step(params, batch_stats, opt_state, images, labels):
    x = jax.lax.with_sharding_constraint(images.reshape(k, -1, *images.shape[1:]), stacked)
    y = jax.lax.with_sharding_constraint(labels.reshape(k, -1), stacked)

    def loss_fn(p, x, y):
      logits, new = model.apply(
        {"params": p, "batch_stats": batch_stats}, x, train=True, mutable=["batch_stats"]
      )
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      return loss, new["batch_stats"]

    grad_fn = jax.vmap(jax.value_and_grad(loss_fn, has_aux=True), in_axes=(None, 0, 0))
    (loss, new_stats), grads = grad_fn(params, x, y)
    grads = jax.lax.with_sharding_constraint(grads, stacked)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), _mean(new_stats), opt_state, loss.mean()

  return model, step


def adascale_entry(optimizer: str) -> dict[str, Any]:
  """One compile of part ``adascale``: 4 v5e chips, parameters replicated."""
  chips, k = 4, ADASCALE_K
  mesh = tpu.mesh("v5e:2x2", (chips,), ("data",))
  opt = ADASCALE_OPTIMIZERS[optimizer][0]()
  model, step = resnet50_stacked_train_step(opt, mesh, k)
  images = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.bfloat16)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), images)
  rep = lambda x: P()
  params = tpu.abstract(variables["params"], mesh, rep)
  stats = tpu.abstract(variables["batch_stats"], mesh, rep)
  state = tpu.abstract(jax.eval_shape(opt.init, params), mesh, rep)
  batch = chips * ADASCALE_PER_CHIP
  data = P("data")
  x = tpu.abstract(jax.ShapeDtypeStruct((batch, 224, 224, 3), jnp.bfloat16), mesh, lambda _: data)
  y = tpu.abstract(jax.ShapeDtypeStruct((batch,), jnp.int32), mesh, lambda _: data)
  t0 = time.perf_counter()
  compiled = jax.jit(step, donate_argnums=(0, 1, 2)).lower(params, stats, state, x, y).compile()
  secs = time.perf_counter() - t0
  return {**_record(compiled, secs), "per_chip_batch": ADASCALE_PER_CHIP, "samples": k}


def adascale_overhead(results: dict[str, Any]) -> dict[str, float]:
  """Per optimizer of part ``adascale`` with a baseline: its estimated cycles over the
  baseline's, minus 1 (the statistic's share of the step: 0.004 is +0.4%)."""
  entries = results["entries"]
  out = {}
  for name, (_, base) in ADASCALE_OPTIMIZERS.items():
    key, bkey = (f"adascale|resnet50|{ADASCALE_MESH}|{n}" for n in (name, base))
    if base is not None and key in entries and bkey in entries:
      out[name] = entries[key]["estimated_cycles"] / entries[bkey]["estimated_cycles"] - 1
  return out


def adascale_table(results: dict[str, Any]) -> str:
  """Markdown for part ``adascale``: estimated cycles (millions), the cycles of ops whose
  origin is the optimizer, the all-reduces, and the overhead over the baseline."""
  over = adascale_overhead(results)
  lines = [
    "| optimizer (ResNet-50, 4 v5e chips, K = 4) | estimated cycles (M) | optimizer ops (M) "
    "| all-reduces | over its baseline |",
    "|---|---:|---:|---:|---:|",
  ]
  for name, (_, base) in ADASCALE_OPTIMIZERS.items():
    e = results["entries"].get(f"adascale|resnet50|{ADASCALE_MESH}|{name}")
    if e is None:
      continue
    cell = f"{over[name]:+.2%} (vs {base})" if name in over else "baseline"
    lines.append(
      f"| {name} | {e['estimated_cycles'] / 1e6:.2f} | "
      f"{e['cycles_by_origin']['optimizer'] / 1e6:.2f} | {e['all_reduces']} | {cell} |"
    )
  return "\n".join(lines)


# -- driver ---------------------------------------------------------------------------------


def planned(
  parts: list[str],
  optimizers: list[str] | None = None,
  meshes: list[str] | None = None,
  models: list[str] | None = None,
) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
  """``(key, compile)`` for every entry of ``parts``, in order; ``optimizers``,
  ``meshes`` (labels of :data:`STEP_MESHES`) and ``models`` (of parts ``train`` and
  ``pod``) keep only those (default: all)."""
  keep = lambda n: not optimizers or n in optimizers
  names = [n for n in OPTIMIZERS if keep(n)]
  # Part train also compiles an ablation, when asked for by name.
  train_names = names + [n for n in ABLATIONS if optimizers and n in optimizers]
  plan = []
  if "step" in parts:
    for tree in STEP_TREES:
      for label, _, _ in STEP_MESHES:
        if meshes and label not in meshes:
          continue
        for name in names:
          plan.append(
            (
              f"step|{tree}|{label}|{name}",
              lambda t=tree, m=label, o=name: optimizer_step_entry(t, m, o),
            )
          )
  if "ablations" in parts:
    for label in ("1 chip", "FSDP 4"):
      for name in [n for n in [BASELINE, *ABLATIONS] if keep(n)]:
        plan.append(
          (
            f"ablations|resnet50|{label}|{name}",
            lambda m=label, o=name: optimizer_step_entry("resnet50", m, o),
          )
        )
  if "train" in parts:
    for model in [m for m in ("resnet50", "bert-base") if not models or m in models]:
      for name in train_names:
        plan.append(
          (f"train|{model}|1 chip|{name}", lambda m=model, o=name: train_step_entry(m, o))
        )
  if "pod" in parts:
    if not models or "resnet50" in models:
      plan.append(("pod|resnet50|v5e-256|legw.lars", lambda: pod_entry("resnet50")))
    if not models or "bert-large" in models:
      plan.append(("pod|bert-large|v5e-256|legw.lamb", lambda: pod_entry("bert-large")))
  if "adascale" in parts:
    for name in [n for n in ADASCALE_OPTIMIZERS if not optimizers or n in optimizers]:
      plan.append((f"adascale|resnet50|{ADASCALE_MESH}|{name}", lambda o=name: adascale_entry(o)))
  return plan


def load(path: str) -> dict[str, Any]:
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  return {}


def save(path: str, results: dict[str, Any]) -> None:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(results, f, indent=1, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)


def libtpu_version() -> str:
  from importlib import metadata

  try:
    return metadata.version("libtpu")
  except metadata.PackageNotFoundError:
    return "unknown"


def run(
  parts: list[str],
  out: str,
  optimizers: list[str] | None = None,
  meshes: list[str] | None = None,
  models: list[str] | None = None,
  command: str | None = None,
) -> dict[str, Any]:
  """Compile the entries of ``parts`` not yet in ``out``, saving after each; ``command``
  (the command line) is added to the file's ``commands`` when it compiles any."""
  results = load(out)
  versions = {"jax": jax.__version__, "libtpu": libtpu_version()}
  old = {k: results[k] for k in versions if k in results}
  if old and old != versions:  # one file, one cost model: never mix versions' estimates
    raise SystemExit(f"{out} was measured with {old}, this is {versions}: pass a new --out")
  results.update(
    {
      "what": "XLA's TPU cost model (estimated cycles) and memory_analysis(), compiled on "
      "a CPU for compile-only TPU devices: estimates, not measurements on a TPU",
      **versions,
    }
  )
  entries = results.setdefault("entries", {})
  todo = [(k, f) for k, f in planned(parts, optimizers, meshes, models) if k not in entries]
  if todo and command and command not in results.get("commands", []):
    results["commands"] = [*results.get("commands", []), command]
  for key, compile_entry in tqdm(todo, desc="TPU compiles", unit="compile"):
    entries[key] = compile_entry()
    save(out, results)
  return results


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument(
    "--parts",
    nargs="+",
    default=["step"],
    choices=["step", "ablations", "train", "pod", "adascale"],
  )
  p.add_argument("--out", default=os.path.join(RUNS_DIR, "tpu_cost.json"))
  p.add_argument(
    "--optimizers",
    nargs="+",
    choices=[*OPTIMIZERS, *ABLATIONS, *ADASCALE_OPTIMIZERS],
    help="default: all but the ablations",
  )
  p.add_argument("--meshes", nargs="+", choices=[m[0] for m in STEP_MESHES], help="default: all")
  p.add_argument(
    "--models", nargs="+", choices=["resnet50", "bert-base", "bert-large"], help="default: all"
  )
  p.add_argument(
    "--report", metavar="PATH", help="print the tables of a results file; compile nothing"
  )
  args = p.parse_args(argv)
  # Here, not above: tpu_report imports this module.
  from benchmarks.costs.tpu_report import report

  if args.report:
    print(report(load(args.report)))
    return
  why = tpu.libtpu_error()
  if why:
    raise SystemExit(f"{why}\nInstall XLA's TPU compiler: pip install -e '.[tpu]'")
  argv = sys.argv[1:] if argv is None else argv
  command = " ".join(["python -m benchmarks.costs.tpu_cost", *map(shlex.quote, argv)])
  results = run(args.parts, args.out, args.optimizers, args.meshes, args.models, command)
  print(report(results))
  print(f"\nwrote {args.out}")


if __name__ == "__main__":
  main()
