"""Reliability: bad hyperparameters, bad gradients, degenerate and overflowing layers.

* Every public constructor rejects a bad concrete hyperparameter with a
  ``ValueError`` naming the argument, the value and the valid range (a test
  per rule).
* The recommended guard against NaN/Inf gradients, ``optax.apply_if_finite``,
  leaves parameters and optimizer state untouched on a bad step.
* Zero and tiny layers give finite updates (and a zero layer still trains).
* float16 / bfloat16 layers whose sum of squares overflows float16 give the
  same (finite) update as the float32 computation.

Registry-wide tests run over ``CASES`` of ``conformance_cases.py``.
"""

from __future__ import annotations

import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conformance_cases import CASES, OPTIMIZERS
from test_conformance import jit_update, problem

import legw

# ---------------------------------------------------------------------------
# Hyperparameter validation: a test per rule.
# ---------------------------------------------------------------------------

# Rules shared by every optimizer/transform that has the argument:
# argument -> [(bad value, text of the valid range)].
_ARG_RULES = {
  "learning_rate": [(-0.1, "[0, inf)"), (float("nan"), "[0, inf)")],
  "momentum": [(-0.1, "[0, 1)"), (1.0, "[0, 1)")],
  "weight_decay": [(-1e-4, "[0, inf)")],
  "eps": [(-1e-8, "[0, inf)")],
  "trust_coefficient": [(0.0, "(0, inf)"), (-0.001, "(0, inf)")],
  "denominator": [("optax", "one of 'paper', 'combined'")],
  "max_radius": [(0.0, "(0, inf)")],
  "num_probes": [(0, "integer >= 1"), (2.5, "integer >= 1")],
  "update_every": [(0, "integer >= 1")],
}


def _optimizer_rules():
  for case in CASES:
    names = inspect.signature(case.public).parameters
    for arg, rules in _ARG_RULES.items():
      if arg not in names:
        continue
      for value, valid in rules:
        kwargs = {**case.public_kwargs(0.1), arg: value}
        yield pytest.param(
          case.public, kwargs, arg, value, valid, id=f"{case.public.__name__}-{arg}={value!r}"
        )


_SCHED = dict(
  base_learning_rate=0.1,
  base_batch_size=256,
  batch_size=1024,
  base_warmup_epochs=1.0,
  num_epochs=10,
  steps_per_epoch=10,
)
_RECIPE = dict(base_batch_size=256, base_learning_rate=0.1, base_warmup_epochs=1.0, num_epochs=10)
_SCALE = dict(base_batch_size=256, batch_size=1024)


def _rule(fn, kwargs, arg, value, valid, name):
  return pytest.param(fn, kwargs, arg, value, valid, id=f"{name}-{arg}={value!r}")


def _schedule_rules():
  lr, wu = legw.scale_learning_rate, legw.scale_warmup_epochs
  yield _rule(
    lr,
    dict(base_learning_rate=-1.0, **_SCALE),
    "base_learning_rate",
    -1.0,
    "[0, inf)",
    "scale_learning_rate",
  )
  yield _rule(
    lr,
    dict(base_learning_rate=0.1, base_batch_size=0, batch_size=1024),
    "base_batch_size",
    0,
    "(0, inf)",
    "scale_learning_rate",
  )
  yield _rule(
    lr,
    dict(base_learning_rate=0.1, base_batch_size=256, batch_size=-8),
    "batch_size",
    -8,
    "(0, inf)",
    "scale_learning_rate",
  )
  yield _rule(
    lr,
    dict(base_learning_rate=0.1, rule="cube", **_SCALE),
    "rule",
    "cube",
    "one of 'sqrt', 'linear', 'none'",
    "scale_learning_rate",
  )
  yield _rule(
    wu,
    dict(base_warmup_epochs=-1.0, **_SCALE),
    "base_warmup_epochs",
    -1.0,
    "[0, inf)",
    "scale_warmup_epochs",
  )
  yield _rule(
    wu,
    dict(base_warmup_epochs=1.0, base_batch_size=256, batch_size=0),
    "batch_size",
    0,
    "(0, inf)",
    "scale_warmup_epochs",
  )
  yield _rule(
    wu,
    dict(base_warmup_epochs=1.0, rule="sqrt", **_SCALE),
    "rule",
    "sqrt",
    "one of 'linear', 'none'",
    "scale_warmup_epochs",
  )

  s = legw.legw_schedule
  for arg, value, valid in [
    ("base_learning_rate", -0.1, "[0, inf)"),
    ("base_batch_size", 0, "(0, inf)"),
    ("batch_size", 0, "(0, inf)"),
    ("base_warmup_epochs", -1.0, "[0, inf)"),
    ("num_epochs", 0, "(0, inf)"),
    ("steps_per_epoch", 0, "(0, inf)"),
    ("decay", "step", "one of 'poly', 'multistep', 'exponential', 'cosine', 'constant'"),
    ("warmup", "linear", "one of 'gradual', 'constant'"),
    ("lr_scaling", "cube", "one of 'sqrt', 'linear', 'none'"),
    ("warmup_scaling", "sqrt", "one of 'linear', 'none'"),
    ("power", 0.0, "(0, inf)"),
    ("end_value", -0.01, "[0, inf)"),
    ("decay_rate", 0.0, "(0, 1]"),
    ("decay_rate", 1.5, "(0, 1]"),
    ("decay_epochs", 0.0, "(0, inf)"),
    ("warmup_value", -0.1, "[0, inf)"),
    ("decay_begin_epochs", 10, "[0, 10)"),
    # The scaled warmup (1 epoch * k=4) must be shorter than training.
    ("base_warmup_epochs", 3.0, "base_warmup_epochs < 2.5"),
    # end_value above the peak (0.1 * sqrt(4) = 0.2) of a poly decay.
    ("end_value", 0.5, "<= the peak learning rate 0.2"),
  ]:
    yield _rule(s, {**_SCHED, arg: value}, arg, value, valid, "legw_schedule")
  # An exponential decay's end_value is a floor: above the peak, the LR would jump up to it.
  yield _rule(
    s,
    {**_SCHED, "decay": "exponential", "end_value": 0.5},
    "end_value",
    0.5,
    "<= the peak learning rate 0.2",
    "legw_schedule",
  )
  # Multistep boundaries lie strictly between the end of warmup (4 epochs) and
  # num_epochs.
  for b in (2.0, 10.0):
    yield _rule(
      s,
      {**_SCHED, "decay": "multistep", "boundary_epochs": (b,)},
      "boundary_epochs",
      b,
      "between the end of warmup (4 epochs) and num_epochs=10",
      "legw_schedule",
    )

  r = legw.Recipe
  yield _rule(
    r, {**_RECIPE, "base_learning_rate": -1.0}, "base_learning_rate", -1.0, "[0, inf)", "Recipe"
  )
  yield _rule(r, {**_RECIPE, "num_epochs": 0}, "num_epochs", 0, "(0, inf)", "Recipe")
  yield _rule(
    r,
    {**_RECIPE, "decay": "linear"},
    "decay",
    "linear",
    "one of 'poly', 'multistep', 'exponential', 'cosine', 'constant'",
    "Recipe",
  )
  at = lambda **kw: legw.Recipe(**_RECIPE).at(1024, **kw)
  yield _rule(
    at, dict(dataset_size=1000), "dataset_size", 1000, "smaller than batch_size=1024", "Recipe.at"
  )
  yield _rule(at, dict(steps_per_epoch=0), "steps_per_epoch", 0, "(0, inf)", "Recipe.at")


def _message_names(message, arg, value, valid):
  assert arg in message, message
  assert f"got {value!r}" in message or f"{arg}={value!r}" in message, message
  assert valid in message, message


@pytest.mark.parametrize("fn, kwargs, arg, value, valid", [*_optimizer_rules(), *_schedule_rules()])
def test_constructor_rejects_bad_hyperparameter(fn, kwargs, arg, value, valid):
  with pytest.raises(ValueError) as info:
    fn(**kwargs)
  _message_names(str(info.value), arg, value, valid)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_traced_hyperparameters_are_not_checked(case):
  """inject_hyperparams passes arrays: they must not be validated at trace time."""
  kwargs = case.public_kwargs(jnp.asarray(0.1), weight_decay=jnp.asarray(1e-4))
  case.public(**kwargs)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_update_without_params_says_so(case):
  params, loss = problem()
  tx = case.public(**case.public_kwargs(0.1))
  with pytest.raises(ValueError, match="params"):
    tx.update(jax.grad(loss)(params), tx.init(params), None, **case.extra(loss))


# ---------------------------------------------------------------------------
# NaN/Inf gradients: the recommended guard is optax.apply_if_finite.
# ---------------------------------------------------------------------------


def _poison(grads, value, where):
  leaves, treedef = jax.tree.flatten(grads)
  if where == "one element":
    leaves[0] = leaves[0].at[(0,) * leaves[0].ndim].set(value)
  else:
    leaves = [jnp.full_like(g, value) for g in leaves]
  return jax.tree.unflatten(treedef, leaves)


@pytest.mark.parametrize("case", OPTIMIZERS, ids=str)
def test_apply_if_finite_leaves_params_and_state_untouched(case):
  params, loss = problem()
  opt = optax.apply_if_finite(case.make(0.1), max_consecutive_errors=10)
  update = jit_update(case, opt, loss)
  state = opt.init(params)
  u, state = update(jax.grad(loss)(params), state, params)  # one good step first
  params = optax.apply_updates(params, u)
  good_grads = jax.grad(loss)(params)

  bad_state = state
  bad = [(v, w) for v in (jnp.nan, jnp.inf, -jnp.inf) for w in ("one element", "every leaf")]
  for n, (value, where) in enumerate(bad, start=1):
    u, bad_state = update(_poison(good_grads, value, where), bad_state, params)
    bad_step = f"{value} in {where}"
    chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, u), custom_message=bad_step)
    chex.assert_trees_all_equal(optax.apply_updates(params, u), params, custom_message=bad_step)
    assert int(bad_state.notfinite_count) == n
    chex.assert_trees_all_equal(bad_state.inner_state, state.inner_state)

  # The run goes on as if the bad steps had never happened.
  u_after, after = update(good_grads, bad_state, params)
  u_ref, ref = update(good_grads, state, params)
  assert int(after.notfinite_count) == 0 and int(after.total_notfinite) == len(bad)
  chex.assert_trees_all_equal((u_after, after.inner_state), (u_ref, ref.inner_state))


# ---------------------------------------------------------------------------
# Zero and tiny layers.
# ---------------------------------------------------------------------------


def _degenerate_layers(dtype):
  """Kernels (per-layer rates apply) with zero or tiny weights or gradients."""
  tiny = float(jnp.finfo(dtype).tiny)  # smallest normal number
  normal = jnp.asarray(np.random.RandomState(0).randn(4, 3), dtype)
  zero = jnp.zeros((4, 3), dtype)
  t = jnp.full((4, 3), tiny, dtype)
  sub = jnp.full((4, 3), tiny / 4, dtype)  # subnormal (or 0 where flushed)
  layers = {  # name: (weights, gradients)
    "zero_w": (zero, normal),
    "zero_g": (normal, zero),
    "zero_both": (zero, zero),
    "tiny_w": (t, normal),
    "tiny_g": (normal, t),
    "tiny_both": (t, t),
    "subnormal_w": (sub, normal),
    "subnormal_g": (normal, sub),
    "zero_bias": (jnp.zeros((3,), dtype), jnp.ones((3,), dtype)),
  }
  params = {k: w for k, (w, _) in layers.items()}
  grads = {k: g for k, (_, g) in layers.items()}
  return params, grads


@pytest.mark.slow
@pytest.mark.parametrize(
  "dtype", [jnp.float16, jnp.bfloat16, jnp.float32], ids=lambda d: d.__name__
)
@pytest.mark.parametrize("case", OPTIMIZERS, ids=str)
def test_zero_and_tiny_layers_give_finite_updates(case, dtype):
  params, grads = _degenerate_layers(dtype)
  obj_fn = lambda p: sum(0.5 * jnp.sum(x.astype(jnp.float32) ** 2) for x in jax.tree.leaves(p))
  opt = case.make(0.1)
  state = opt.init(params)
  for _ in range(2):
    updates, state = opt.update(grads, state, params, **case.extra(obj_fn))
    chex.assert_trees_all_equal_shapes_and_dtypes(updates, params)
    chex.assert_tree_all_finite(updates)
    params = optax.apply_updates(params, updates)
  # A zero layer still trains (its per-layer rate is not 0).
  assert np.any(np.asarray(updates["zero_w"], np.float32) != 0)
  assert np.any(np.asarray(updates["zero_bias"], np.float32) != 0)


# ---------------------------------------------------------------------------
# Low-precision layers whose sum of squares overflows float16.
# ---------------------------------------------------------------------------


def _large_layer(dtype, seed=0):
  rs = np.random.RandomState(seed)
  sign = lambda shape: np.where(rs.rand(*shape) < 0.5, -1.0, 1.0)
  w = jnp.asarray(sign((64, 64)) * rs.uniform(100, 300, (64, 64)), dtype)
  g = jnp.asarray(sign((64, 64)) * rs.uniform(10, 100, (64, 64)), dtype)
  b = jnp.asarray(rs.uniform(-300, 300, (64,)), dtype)
  gb = jnp.asarray(rs.uniform(-100, 100, (64,)), dtype)
  return {"kernel": w, "bias": b}, {"kernel": g, "bias": gb}


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16], ids=lambda d: d.__name__)
@pytest.mark.parametrize("case", OPTIMIZERS, ids=str)
def test_low_precision_large_layer_matches_float32(case, dtype):
  params, grads = _large_layer(dtype)
  with np.errstate(over="ignore"):  # the layer's sum of squares overflows float16
    assert np.isinf(np.sum(np.square(np.asarray(params["kernel"], np.float16)), dtype=np.float16))
  obj_fn = lambda p: sum(0.5 * jnp.sum(x.astype(jnp.float32) ** 2) for x in jax.tree.leaves(p))
  opt = case.make(0.1)
  low, _ = opt.update(grads, opt.init(params), params, **case.extra(obj_fn))
  up = lambda t: jax.tree.map(lambda x: x.astype(jnp.float32), t)
  ref, _ = opt.update(up(grads), opt.init(up(params)), up(params), **case.extra(obj_fn))
  chex.assert_trees_all_equal_shapes_and_dtypes(low, params)
  chex.assert_tree_all_finite(low)
  rtol = 4 * float(jnp.finfo(dtype).eps)  # a few roundings to the low precision
  for name in params:  # atol: rtol of the leaf's largest entry
    np.testing.assert_allclose(
      np.asarray(low[name], np.float64),
      np.asarray(ref[name], np.float64),
      rtol=rtol,
      atol=rtol * np.max(np.abs(np.asarray(ref[name]))),
      err_msg=name,
    )
