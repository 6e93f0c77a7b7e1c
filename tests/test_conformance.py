"""Optax / Flax / Orbax conformance of every public legw optimizer and transform.

One parameterized suite over ``CASES``, the registry of (name, constructor,
arguments) in ``conformance_cases.py``. A new public optimizer or transform
joins every test here (and the registry-wide tests of ``test_reliability.py``
and ``test_properties.py``) by one line in ``CASES``.

A transform (``scale_by_*``: no learning rate, no momentum) is tested as the
complete optimizer ``optax.chain(transform, optax.sgd(lr, momentum=0.9))``
wherever a test needs a training step, and on its own wherever the test is
about the transform's own ``init``/``update``.

Composition with ``optax.apply_if_finite`` (the guard against NaN/Inf
gradients) is tested in ``test_reliability.py``.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import re
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized
from conformance_cases import AGGREGATORS, CASES, OPTIMIZERS, Case

import legw

# ---------------------------------------------------------------------------
# The registry: ``CASES`` and ``OPTIMIZERS`` (the cases that are optimizers, not
# transforms) are in ``conformance_cases.py``.
# ---------------------------------------------------------------------------

case_param = pytest.mark.parametrize("case", CASES, ids=str)
# Every legw optimizer is its transform + optax.scale_by_learning_rate +
# optax.trace: training-loop tests (compiled, the costly ones) run over the
# optimizers, which covers each transform inside them; the tests of the
# optax API itself run over the transforms too.
optimizer_param = pytest.mark.parametrize("case", OPTIMIZERS, ids=str)


def test_registry_covers_the_public_api():
  """Every public GradientTransformation constructor is in CASES (or an aggregator)."""
  public = {getattr(legw, n) for n in legw.__all__}
  constructors = {
    f
    for f in public
    if inspect.isfunction(f)
    and "GradientTransformation" in str(inspect.signature(f).return_annotation)
  }
  assert constructors and constructors - AGGREGATORS <= {c.public for c in CASES}
  assert AGGREGATORS <= constructors


# ---------------------------------------------------------------------------
# Shared problems and steps.
# ---------------------------------------------------------------------------


def _tree(seed: int = 0, dtype=jnp.float32):
  """A small network-shaped tree: kernels (ndim > 1), a bias and a norm scale."""
  rs = np.random.RandomState(seed)
  shapes = {
    "conv": {"kernel": (3, 3, 2, 4), "bias": (4,)},
    "dense": {"kernel": (4, 3), "bias": (3,)},
    "norm": {"scale": (4,)},
  }
  return jax.tree.map(
    lambda s: jnp.asarray(rs.randn(*s) * 0.5 + 0.2, dtype),
    shapes,
    is_leaf=lambda s: isinstance(s, tuple),
  )


def quadratic_loss(targets):
  """sum_l c_l ||w_l - t_l||^2 / 2 in float32, a different c_l per leaf."""

  def loss(params):
    leaves = jax.tree.leaves(params)
    tleaves = jax.tree.leaves(targets)
    return sum(
      0.5 * (i + 1) * jnp.sum((p.astype(jnp.float32) - t.astype(jnp.float32)) ** 2)
      for i, (p, t) in enumerate(zip(leaves, tleaves))
    )

  return loss


def problem(seed: int = 0, dtype=jnp.float32):
  """(params, loss) with non-trivial gradients on every leaf."""
  return _tree(seed, dtype), quadratic_loss(_tree(seed + 100, dtype))


def step(case, opt, params, state, loss):
  grads = jax.grad(loss)(params)
  updates, state = opt.update(grads, state, params, **case.extra(loss))
  return optax.apply_updates(params, updates), state, updates


SCHEDULE = dict(peak=0.1, steps=40, warmup=8)  # the shared training runs' schedule
_TRAIN_STEPS = {}


def train_step(case):
  """The case's jitted training step on ``problem()`` (one per case, shared).

  Returns (step_fn, opt, params, loss); ``step_fn(params, state)`` returns the
  next (params, state). ``step_fn`` may be traced once in the whole session
  (``chex.assert_max_traces``).
  """
  if case.name not in _TRAIN_STEPS:
    params, loss = problem()
    opt = case.make(schedule(**SCHEDULE))

    def step_fn(params, state):
      params, state, _ = step(case, opt, params, state, loss)
      return params, state

    step_fn = jax.jit(max_traces(step_fn, 1, case.name))
    _TRAIN_STEPS[case.name] = (step_fn, opt, params, loss)
  return _TRAIN_STEPS[case.name]


def max_traces(fn, n, *key):
  """``chex.assert_max_traces(fn, n)``, the traces counted apart for each ``key``.

  chex counts a function's traces by its source, name and definition site, for
  the whole session: a step defined once per case (or per variant) would share
  one count with the others. The key goes into the name.
  """
  fn.__name__ = re.sub(r"\W+", "_", "_".join(map(str, [fn.__name__, *key]))).strip("_")
  return chex.assert_max_traces(fn, n)


_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def xla_compilations():
  """The functions XLA compiles inside the block: a list of names, as ``"jit(step_fn)"``.

  The compile half of "no recompilation" (``chex.assert_max_traces`` is the
  trace half): a call whose arguments keep their shapes and dtypes but change
  their sharding compiles again without a new trace.
  """
  names = []

  def listener(event, duration, *, fun_name="", **kwargs):
    if event == _COMPILE_EVENT:
      names.append(fun_name)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield names
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


def jit_update(case, opt, obj_fn):
  """``opt.update`` under ``jax.jit`` (with the case's extra arguments)."""
  return jax.jit(lambda g, s, p: opt.update(g, s, p, **case.extra(obj_fn)))


def schedule(peak: float, steps: int, warmup: int):
  """A LEGW schedule (gradual warmup, poly decay) of ``steps`` steps."""
  return legw.legw_schedule(
    base_learning_rate=peak,
    base_batch_size=256,
    batch_size=256,
    base_warmup_epochs=warmup,
    num_epochs=steps,
    steps_per_epoch=1,
  )


# ---------------------------------------------------------------------------
# Convergence: a parabola, Rosenbrock and a matrix quadratic.
# ---------------------------------------------------------------------------

_C = jnp.array([[1.0, -2.0], [3.0, 0.5]])
_RS = np.random.RandomState(0)
_A = jnp.asarray(_RS.randn(6, 4) / 2 + np.eye(6, 4) * 2, jnp.float32)
_B = jnp.asarray(_RS.randn(6, 3), jnp.float32)
_X = np.linalg.lstsq(np.asarray(_A, np.float64), np.asarray(_B, np.float64), rcond=None)[0]


def _rosenbrock(p):
  x, y = p["w"][0, 0], p["w"][0, 1]
  return (1 - x) ** 2 + 100 * (y - x * x) ** 2


# name: (loss, start, minimum loss, tolerance on the final gap). Parameters are
# 2-D leaves so that the per-layer rate applies.
PROBLEMS = {
  "parabola": (lambda p: jnp.sum((p["w"] - _C) ** 2), {"w": jnp.full((2, 2), 0.1)}, 0.0, 1e-4),
  "rosenbrock": (_rosenbrock, {"w": jnp.array([[-1.0, 1.5]])}, 0.0, 1e-3),
  "matrix_quadratic": (
    lambda p: 0.5 * jnp.sum((_A @ p["w"] - _B) ** 2),
    {"w": jnp.full((4, 3), 0.1)},
    float(0.5 * np.sum((np.asarray(_A, np.float64) @ _X - np.asarray(_B, np.float64)) ** 2)),
    1e-3,
  ),
}


def _final_gap(case, opt, name, steps):
  loss, start, minimum, _ = PROBLEMS[name]

  @jax.jit
  def run():
    def body(carry, _):
      params, state = carry
      params, state, _ = step(case, opt, params, state, loss)
      return (params, state), None

    (params, _), _ = jax.lax.scan(body, (start, opt.init(start)), None, length=steps)
    return loss(params)

  return float(run()) - minimum


_REFERENCE = Case("optax.lars", optax.lars, dict(trust_coefficient=1.0))


@pytest.mark.parametrize("name", PROBLEMS)
def test_optax_lars_converges(name):
  """The reference: optax.lars (trust coefficient 1) under the same schedule."""
  gap = _final_gap(
    _REFERENCE, optax.lars(schedule(0.01, 500, 25), trust_coefficient=1.0), name, 500
  )
  assert 0 <= gap + 1e-6 and gap < PROBLEMS[name][3]


@pytest.mark.slow
@pytest.mark.parametrize("name", PROBLEMS)
@optimizer_param
def test_converges(case, name):
  """Every optimizer converges where optax.lars does, with a LEGW schedule."""
  overrides = dict(case.problems.get(name, {}))
  lr = overrides.pop("lr", case.lr)
  steps = overrides.pop("steps", 500)
  overrides.setdefault("weight_decay", 0.0)  # decay would move the minimum
  opt = case.make(schedule(lr, steps, steps // 20), **overrides)
  gap = _final_gap(case, opt, name, steps)
  assert math.isfinite(gap) and gap < PROBLEMS[name][3], gap


# ---------------------------------------------------------------------------
# jit, inject_hyperparams, map_params.
# ---------------------------------------------------------------------------


@pytest.mark.slow
@optimizer_param
def test_no_recompilation_on_second_step(case):
  """One trace in the session (``chex.assert_max_traces`` in ``train_step``), and
  no XLA compilation after the first step."""
  step_fn, opt, params, _ = train_step(case)
  state = opt.init(params)
  params, state = step_fn(params, state)
  with xla_compilations() as compiled:
    for _ in range(2):
      params, state = step_fn(params, state)
  assert compiled == []


# ---------------------------------------------------------------------------
# chex variants: one test body, jitted, un-jitted and pmapped (8 devices).
# ---------------------------------------------------------------------------

VARIANT_STEPS = 4  # inside SCHEDULE's warmup: the learning rate changes every step
_EAGER_UPDATES = {}


def _eager_updates(case):
  """The updates of ``VARIANT_STEPS`` un-jitted steps on ``problem()`` (per case, shared)."""
  if case.name not in _EAGER_UPDATES:
    params, loss = problem()
    opt = case.make(schedule(**SCHEDULE))
    state, out = opt.init(params), []
    for _ in range(VARIANT_STEPS):
      params, state, updates = step(case, opt, params, state, loss)
      out.append(updates)
    _EAGER_UPDATES[case.name] = out
  return _EAGER_UPDATES[case.name]


@pytest.mark.slow
class VariantsTest(chex.TestCase):
  """Every optimizer's training step under ``jax.jit``, un-jitted, and under
  ``jax.pmap`` on the 8 simulated CPU devices (``tests/conftest.py``): the pmap
  variant gives every device the whole arguments and returns the first
  device's outputs."""

  @chex.variants(with_jit=True, without_jit=True, with_pmap=True)
  @parameterized.named_parameters((c.name, c) for c in OPTIMIZERS)
  def test_training_step(self, case):
    """Steps through a LEGW warmup: one trace, finite updates of the
    parameters' shapes and dtypes, a state whose shapes and dtypes do not
    change, and the un-jitted steps' numbers."""
    params, loss = problem()
    opt = case.make(schedule(**SCHEDULE))

    def train_step(params, state):
      return step(case, opt, params, state, loss)

    train_step = self.variant(max_traces(train_step, 1, case.name, self.variant.type))
    state = first = opt.init(params)
    for expected in _eager_updates(case):
      new_params, state, updates = train_step(params, state)
      chex.assert_tree_all_finite(updates)
      chex.assert_trees_all_equal_shapes_and_dtypes(params, updates, new_params)
      chex.assert_trees_all_equal_shapes_and_dtypes(state, first)
      chex.assert_trees_all_close(updates, expected, rtol=1e-5, atol=1e-7)
      params = new_params


def _run_steps(case, opt, n=2, seed=0):
  params, loss = problem(seed)
  state = opt.init(params)
  out = []
  for _ in range(n):
    params, state, updates = step(case, opt, params, state, loss)
    out.append(updates)
  return out, state


@pytest.mark.slow
@case_param
def test_inject_hyperparams_gives_the_same_updates(case):
  kwargs = case.public_kwargs(0.1)
  plain, _ = _run_steps(case, case.public(**kwargs))
  injected_opt = optax.inject_hyperparams(case.public, static_args=case.static_args)(**kwargs)
  injected, state = _run_steps(case, injected_opt)
  chex.assert_trees_all_close(plain, injected, rtol=case.inject_rtol)
  numeric = {
    k for k, v in kwargs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
  } - set(case.static_args)
  assert numeric <= set(state.hyperparams)


@pytest.mark.slow
@optimizer_param
def test_inject_hyperparams_learning_rate_is_readable_and_settable(case):
  params, loss = problem()
  inject = optax.inject_hyperparams(case.public, static_args=case.static_args)

  # Read: a schedule's value is in the state at every step.
  sched = schedule(0.1, 20, 5)
  opt = inject(**case.public_kwargs(sched))
  state = opt.init(params)
  p = params
  for t in range(4):
    p, state, _ = step(case, opt, p, state, loss)
    np.testing.assert_allclose(state.hyperparams["learning_rate"], sched(t), rtol=1e-6)

  # Write: a training loop changes the learning rate in the state; the step is
  # that of the optimizer built with the new rate (half the step, except under
  # LARC clip, where the rate is min(lambda, lr)).
  opt = inject(**case.public_kwargs(0.1))
  state = opt.init(params)
  _, _, u_full = step(case, opt, params, state, loss)
  state.hyperparams["learning_rate"] = jnp.asarray(0.05, jnp.float32)
  _, _, u_half = step(case, opt, params, state, loss)
  plain = case.public(**case.public_kwargs(0.05))
  _, _, u_plain = step(case, plain, params, plain.init(params), loss)
  chex.assert_trees_all_close(u_plain, u_half, rtol=case.inject_rtol)
  if not case.kwargs.get("clip"):
    chex.assert_trees_all_close(jax.tree.map(lambda u: 0.5 * u, u_full), u_half, rtol=1e-6)
  state.hyperparams["learning_rate"] = jnp.asarray(0.0, jnp.float32)
  _, _, u_zero = step(case, opt, params, state, loss)
  chex.assert_trees_all_equal(u_zero, jax.tree.map(jnp.zeros_like, u_zero))


@case_param
def test_update_accepts_extra_keyword_arguments(case):
  params, loss = problem()
  grads = jax.grad(loss)(params)
  tx = case.public(**case.public_kwargs(0.1))
  state = tx.init(params)
  expected, _ = tx.update(grads, state, params, **case.extra(loss))
  got, _ = tx.update(grads, state, params, unused_batch_stats=None, step_key=3, **case.extra(loss))
  chex.assert_trees_all_equal(expected, got)


@case_param
def test_map_params_on_state(case):
  params, loss = problem()
  for opt, has_momentum in (
    (case.public(**case.public_kwargs(0.1)), not case.transform),
    (case.make(0.1), True),
  ):
    state = opt.init(params)
    _, state, _ = step(case, opt, params, state, loss)
    labels = optax.tree.map_params(
      opt, lambda _: "param", state, transform_non_params=lambda _: "other"
    )
    assert jax.tree.structure(labels) == jax.tree.structure(state)
    param_shapes = {jnp.shape(p) for p in jax.tree.leaves(params)}
    labelled = [
      x for x, lab in zip(jax.tree.leaves(state), jax.tree.leaves(labels)) if lab == "param"
    ]
    assert all(jnp.shape(x) in param_shapes for x in labelled)
    if has_momentum:  # the momentum buffer is a params-shaped tree
      assert len(labelled) >= len(jax.tree.leaves(params))
    # The usual use: cast (or shard) the params-shaped part of the state.
    cast = optax.tree.map_params(opt, lambda x: x.astype(jnp.bfloat16), state)
    n_bf16 = sum(jnp.result_type(x) == jnp.bfloat16 for x in jax.tree.leaves(cast))
    assert n_bf16 == len(labelled)


# ---------------------------------------------------------------------------
# dtypes.
# ---------------------------------------------------------------------------


def _check_dtypes(case, params, loss):
  """Three steps under jit: each gradient, update and new parameter has its
  leaf's shape and dtype, the updates are finite, and the state's shapes and
  dtypes do not change."""
  opt = case.make(schedule(**SCHEDULE))

  @jax.jit
  def train_step(params, state):
    grads = jax.grad(loss)(params)
    updates, state = opt.update(grads, state, params, **case.extra(loss))
    return optax.apply_updates(params, updates), state, grads, updates

  state = first = opt.init(params)
  for _ in range(3):
    new_params, state, grads, updates = train_step(params, state)
    chex.assert_trees_all_equal_shapes_and_dtypes(params, grads, updates, new_params)
    chex.assert_tree_all_finite(updates)
    chex.assert_trees_all_equal_shapes_and_dtypes(state, first)
    params = new_params


@pytest.mark.slow
@optimizer_param
def test_keeps_dtypes(case):
  """float16, bfloat16 and float32 layers, side by side in one tree."""
  dtypes = {"f16": jnp.float16, "bf16": jnp.bfloat16, "f32": jnp.float32}
  trees = {k: problem(seed=i, dtype=d) for i, (k, d) in enumerate(dtypes.items())}
  params = {k: p for k, (p, _) in trees.items()}
  loss = lambda p: sum(trees[k][1](p[k]) for k in dtypes)
  _check_dtypes(case, params, loss)
  assert {jnp.result_type(x) for x in jax.tree.leaves(params)} == set(
    map(jnp.dtype, dtypes.values())
  )


@pytest.mark.slow
@optimizer_param
def test_keeps_float64_under_x64(case):
  with jax.enable_x64(True):
    _check_dtypes(case, *problem(dtype=jnp.float64))
  assert jnp.asarray(1.0).dtype == jnp.float32  # x64 did not leak


# ---------------------------------------------------------------------------
# Composition with optax wrappers.
# ---------------------------------------------------------------------------


def _merge(full, sub):
  """``full`` with the leaves of ``sub`` (a sub-tree of dicts, or a masked tree
  whose ``optax.MaskedNode`` leaves keep ``full``'s value)."""
  out = dict(full)
  for k, v in sub.items():
    if isinstance(v, dict):
      out[k] = _merge(full[k], v)
    elif not isinstance(v, optax.MaskedNode):
      out[k] = v
  return out


def _sub(tree):
  """The kernels of conv and all of dense: the leaves the wrappers give legw."""
  return {"conv": {"kernel": tree["conv"]["kernel"]}, "dense": tree["dense"]}


def _expected_on_sub_tree(case, params, grads, loss):
  inner = case.make(0.1)
  updates, _ = inner.update(
    _sub(grads),
    inner.init(_sub(params)),
    _sub(params),
    **case.extra(lambda s: loss(_merge(params, s))),
  )
  return updates


@case_param
def test_chain(case):
  params, loss = problem()
  grads = jax.grad(loss)(params)
  clipped = optax.clip_by_global_norm(1.0).update(grads, optax.EmptyState())[0]
  opt = case.make(0.1)
  expected, _ = opt.update(clipped, opt.init(params), params, **case.extra(loss))
  chained = optax.chain(optax.clip_by_global_norm(1.0), case.make(0.1))
  got, _ = chained.update(grads, chained.init(params), params, **case.extra(loss))
  chex.assert_trees_all_close(expected, got, rtol=1e-6)


@case_param
def test_masked(case):
  params, loss = problem()
  grads = jax.grad(loss)(params)
  mask = {
    "conv": {"kernel": True, "bias": False},
    "dense": {"kernel": True, "bias": True},
    "norm": {"scale": False},
  }
  opt = optax.masked(case.make(0.1), mask)
  got, _ = opt.update(
    grads, opt.init(params), params, **case.extra(lambda s: loss(_merge(params, s)))
  )
  # Masked-in leaves get the optimizer on the sub-tree (every legw rule is per
  # leaf); masked-out leaves pass through.
  chex.assert_trees_all_close(
    _sub(got), _expected_on_sub_tree(case, params, grads, loss), rtol=1e-6
  )
  chex.assert_trees_all_equal(got["conv"]["bias"], grads["conv"]["bias"])
  chex.assert_trees_all_equal(got["norm"], grads["norm"])


@case_param
def test_multi_transform(case):
  params, loss = problem()
  grads = jax.grad(loss)(params)
  labels = {
    "conv": {"kernel": "legw", "bias": "sgd"},
    "dense": {"kernel": "legw", "bias": "legw"},
    "norm": {"scale": "sgd"},
  }
  opt = optax.multi_transform({"legw": case.make(0.1), "sgd": optax.sgd(0.5)}, labels)
  got, _ = opt.update(
    grads, opt.init(params), params, **case.extra(lambda s: loss(_merge(params, s)))
  )
  chex.assert_trees_all_close(
    _sub(got), _expected_on_sub_tree(case, params, grads, loss), rtol=1e-6
  )
  np.testing.assert_allclose(got["conv"]["bias"], -0.5 * grads["conv"]["bias"], rtol=1e-6)
  np.testing.assert_allclose(got["norm"]["scale"], -0.5 * grads["norm"]["scale"], rtol=1e-6)


def _regression(seed=0, n=16):
  rs = np.random.RandomState(seed)
  x = jnp.asarray(rs.randn(n, 5), jnp.float32)
  y = jnp.asarray(rs.randn(n, 3), jnp.float32)
  params = {"w": jnp.asarray(rs.randn(5, 3) * 0.3, jnp.float32), "b": jnp.zeros(3)}

  def loss(p, x=x, y=y):
    return jnp.mean((x @ p["w"] + p["b"] - y) ** 2)

  return params, loss, x, y


@pytest.mark.slow
@optimizer_param
def test_multisteps_accumulates_to_the_large_batch_step(case):
  k = 4
  params, loss, x, y = _regression()
  acc = optax.MultiSteps(case.make(0.1), every_k_schedule=k)
  acc_update = jit_update(case, acc, loss)
  inner = case.make(0.1)
  inner_state = inner.init(params)
  micro_state, big_state = acc.init(params), acc.init(params)
  p_acc = params
  for _ in range(2):  # two large-batch steps of k micro-batches each
    g_big = jax.grad(loss)(p_acc)
    for i in range(k):
      g = jax.grad(loss)(p_acc, x[i * 4 : (i + 1) * 4], y[i * 4 : (i + 1) * 4])
      u, micro_state = acc_update(g, micro_state, p_acc)
      u_big, big_state = acc_update(g_big, big_state, p_acc)
      if i < k - 1:  # zero updates between accumulations
        chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, u))
    # The accumulated step is the inner optimizer's step on the large batch.
    expected, inner_state = inner.update(g_big, inner_state, p_acc, **case.extra(loss))
    chex.assert_trees_all_close(u, expected, rtol=2e-5, atol=1e-7)
    chex.assert_trees_all_close(u_big, expected, rtol=2e-5, atol=1e-7)
    p_acc = optax.apply_updates(p_acc, u)


# ---------------------------------------------------------------------------
# Flax.
# ---------------------------------------------------------------------------


def _check_first_step_of_vectors(case, lr, grads, before, after, mask):
  """Default masks: ndim <= 1 leaves get the plain optimizer (momentum SGD,
  Adam for LAMB), kernels do not."""
  if case.excluded is None:
    plain = optax.sgd(lr, momentum=0.9, nesterov=bool(case.kwargs.get("nesterov")))
  else:
    plain = case.excluded(lr)
  expected, _ = plain.update(grads, plain.init(before))
  for e, p0, p1, m in zip(
    jax.tree.leaves(expected),
    jax.tree.leaves(before),
    jax.tree.leaves(after),
    jax.tree.leaves(mask),
  ):
    assert m == (p0.ndim > 1)
    if not m:
      np.testing.assert_allclose(p1 - p0, e, rtol=1e-4, atol=1e-6 * np.max(np.abs(p0)))
    else:
      assert not np.allclose(p1 - p0, e, rtol=1e-2)


@pytest.mark.slow
@optimizer_param
def test_flax_nnx_optimizer(case):
  from flax import nnx

  class Net(nnx.Module):
    def __init__(self, rngs):
      self.l1 = nnx.Linear(4, 8, rngs=rngs)
      self.bn = nnx.BatchNorm(8, rngs=rngs)
      self.l2 = nnx.Linear(8, 1, rngs=rngs)

    def __call__(self, x):
      return self.l2(nnx.relu(self.bn(self.l1(x))))

  rs = np.random.RandomState(0)
  x = jnp.asarray(rs.randn(32, 4), jnp.float32)
  y = jnp.asarray(x[:, :1] * 2 - x[:, 1:2] + 0.5, jnp.float32)
  model = Net(nnx.Rngs(0))
  lr = 0.1
  optimizer = nnx.Optimizer(model, case.make(lr), wrt=nnx.Param)

  mask = legw.exclude_bias_and_norm(nnx.state(model, nnx.Param))
  flat = {"/".join(map(str, k)): v for k, v in nnx.to_flat_state(mask)}
  assert {k: v.get_value() for k, v in flat.items()} == {
    "l1/kernel": True,
    "l1/bias": False,
    "bn/scale": False,
    "bn/bias": False,
    "l2/kernel": True,
    "l2/bias": False,
  }

  @nnx.jit
  def train_step(model, optimizer):
    def loss_fn(model):
      return jnp.mean((model(x) - y) ** 2)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    # CBLR's objective of the parameters alone. copy=True: BatchNorm mutates
    # its statistics, which must be fresh Variables inside the HVP's trace.
    obj_fn = lambda p: loss_fn(nnx.merge(graphdef, p, rest, copy=True))
    optimizer.update(model, grads, **case.extra(obj_fn))
    return loss, grads

  before = jax.tree.map(jnp.copy, nnx.state(model, nnx.Param))
  first_loss, grads = train_step(model, optimizer)
  after = nnx.state(model, nnx.Param)
  _check_first_step_of_vectors(case, lr, grads, before, after, mask)
  for _ in range(10):
    loss, _ = train_step(model, optimizer)
  assert float(loss) < 0.5 * float(first_loss)


@pytest.mark.slow
@optimizer_param
def test_flax_linen_train_state(case):
  import flax.linen as nn
  from flax.training import train_state

  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, train=True):
      x = nn.Dense(8)(x)
      x = nn.BatchNorm(use_running_average=not train)(x)
      return nn.Dense(1)(nn.relu(x))

  class TrainState(train_state.TrainState):
    batch_stats: Any

  rs = np.random.RandomState(0)
  x = jnp.asarray(rs.randn(32, 4), jnp.float32)
  y = jnp.asarray(x[:, :1] * 2 - x[:, 1:2] + 0.5, jnp.float32)
  net = Net()
  variables = net.init(jax.random.key(0), x)
  lr = 0.1
  state = TrainState.create(
    apply_fn=net.apply,
    params=variables["params"],
    tx=case.make(lr),
    batch_stats=variables["batch_stats"],
  )
  mask = legw.exclude_bias_and_norm(state.params)
  assert mask == {
    "Dense_0": {"kernel": True, "bias": False},
    "BatchNorm_0": {"scale": False, "bias": False},
    "Dense_1": {"kernel": True, "bias": False},
  }

  @jax.jit
  def train_step(state):
    def loss_fn(params, batch_stats):
      out, mutated = state.apply_fn(
        {"params": params, "batch_stats": batch_stats}, x, mutable=["batch_stats"]
      )
      return jnp.mean((out - y) ** 2), mutated["batch_stats"]

    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params, state.batch_stats
    )
    if case.needs_obj_fn:  # TrainState.apply_gradients passes no extra arguments
      obj_fn = lambda p: loss_fn(p, state.batch_stats)[0]
      updates, opt_state = state.tx.update(
        grads, state.opt_state, state.params, **case.extra(obj_fn)
      )
      state = state.replace(
        step=state.step + 1,
        opt_state=opt_state,
        batch_stats=stats,
        params=optax.apply_updates(state.params, updates),
      )
    else:
      state = state.apply_gradients(grads=grads, batch_stats=stats)
    return state, loss, grads

  before = state.params
  state, first_loss, grads = train_step(state)
  _check_first_step_of_vectors(case, lr, grads, before, state.params, mask)
  for _ in range(10):
    state, loss, _ = train_step(state)
  assert float(loss) < 0.5 * float(first_loss)


# ---------------------------------------------------------------------------
# Orbax.
# ---------------------------------------------------------------------------


@pytest.mark.slow
@optimizer_param
def test_orbax_restore_mid_warmup_resumes_bit_identically(case, tmp_path):
  import orbax.checkpoint as ocp

  step_fn, opt, params, _ = train_step(case)
  total, save_at = 12, 3
  sched = schedule(**SCHEDULE)
  assert 0 < float(sched(save_at)) < float(sched(SCHEDULE["warmup"]))  # mid-warmup

  carry, trajectory = (params, opt.init(params)), []
  for t in range(total):
    if t == save_at:
      checkpointer = ocp.StandardCheckpointer()
      checkpointer.save(tmp_path / "ckpt", {"params": carry[0], "opt_state": carry[1]})
      checkpointer.wait_until_finished()
    carry = step_fn(*carry)
    trajectory.append(carry)

  abstract = jax.tree.map(
    ocp.utils.to_shape_dtype_struct, {"params": params, "opt_state": opt.init(params)}
  )
  restored = ocp.StandardCheckpointer().restore(tmp_path / "ckpt", abstract)
  resumed = (restored["params"], restored["opt_state"])
  assert jax.tree.structure(resumed[1]) == jax.tree.structure(carry[1])
  for t in range(save_at, total):
    resumed = step_fn(*resumed)
    chex.assert_trees_all_equal(resumed, trajectory[t])


# ---------------------------------------------------------------------------
# No parameter-sized temporaries in a compiled step (issue 6, memory traffic).
# ---------------------------------------------------------------------------


def _step_temp_bytes(opt, kernel_shape):
  """Temporary bytes of a compiled, donated step on 4 kernels and 4 biases."""
  params = {f"k{i}": jax.ShapeDtypeStruct(kernel_shape, jnp.float32) for i in range(4)}
  params.update({f"b{i}": jax.ShapeDtypeStruct(kernel_shape[-1:], jnp.float32) for i in range(4)})

  def step(params, state, grads):
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  state = jax.eval_shape(opt.init, params)
  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, params).compile()
  return compiled.memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize(
  "make",
  [
    lambda: legw.lars(0.1, weight_decay=1e-4),
    lambda: legw.lars(0.1, weight_decay=1e-4, denominator="combined"),
    lambda: legw.lars(
      0.1, weight_decay=1e-4, denominator="combined", trust_ratio_mask=True, weight_decay_mask=True
    ),
    lambda: legw.percent_delta(0.1, weight_decay=1e-4),
  ],
  ids=["lars", "lars-combined", "lars-combined-all", "percent_delta"],
)
def test_step_stores_no_parameter_sized_temporary(make):
  """XLA's compiled step keeps no temporary buffer the size of a layer.

  Four kernels of one shape: a constant broadcast shared between them, a
  stored g + beta*w, or a reduction input XLA:CPU could not fuse would each
  show up as a parameter-sized temporary.  Before the fixes, XLA:CPU stored
  one 131,072-byte broadcast here for the combined denominator, and two
  such arrays per kernel for percent_delta.  (MCLR: the next test; CBLR
  stores its Hessian-vector products: not tested.)
  """
  opt = make()
  assert _step_temp_bytes(opt, (256, 128)) < 256 * 128 * 4 // 8


@pytest.mark.slow
@pytest.mark.parametrize("weight_decay", [0.0, 1e-4])
def test_mclr_step_stores_no_parameter_sized_temporary(weight_decay):
  """MCLR's medians read large kernels in place in every counting pass.

  Before: XLA hoisted the loop-invariant bit patterns of |w| and |g| (and
  the zero test of the nonzero-median rule) out of the search loop and
  stored them every step: two arrays per median (4.2 MB here; 410 MB on
  ResNet-50).  Kernels of 65,536 entries are counted in place; the biases
  go to the small-array buffer (a few KB, by design).
  """
  opt = legw.mclr(0.1, momentum=0.9, weight_decay=weight_decay)
  assert _step_temp_bytes(opt, (512, 128)) < 512 * 128 * 4 // 8


# ---------------------------------------------------------------------------
# optax drop-in conventions (issue 13).
# ---------------------------------------------------------------------------


@case_param
def test_hyperparameters_after_the_first_are_keyword_only(case):
  """``legw.lars(0.1, 1e-4)`` raised nothing and set momentum, where
  ``optax.lars(0.1, 1e-4)`` sets weight decay: now a TypeError."""
  params = list(inspect.signature(case.public).parameters.values())
  assert params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
  if not case.transform:
    assert params[0].name == "learning_rate"
  assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:]), params
  with pytest.raises(TypeError, match="positional"):
    case.public(0.1, 1e-4)


@case_param
def test_returns_what_the_annotation_says(case):
  tx = case.public(**case.public_kwargs(0.1))
  annotation = inspect.signature(case.public).return_annotation
  assert "GradientTransformationExtraArgs" in str(annotation)
  assert isinstance(tx, optax.GradientTransformationExtraArgs)


@optimizer_param
@pytest.mark.parametrize("what", ["recipe", "scaled_recipe", "string"])
def test_a_recipe_as_learning_rate_says_what_to_pass(case, what):
  recipe = legw.Recipe(
    base_batch_size=256, base_learning_rate=0.1, base_warmup_epochs=1, num_epochs=10
  )
  value = {"recipe": recipe, "scaled_recipe": recipe.at(1024, steps_per_epoch=10), "string": "0.1"}[
    what
  ]
  with pytest.raises(TypeError, match="(?i)schedule") as info:
    case.public(**case.public_kwargs(value))
  if what != "string":
    assert "recipe.schedule(batch_size" in str(info.value)


def _with_untrainable_leaves():
  """A tree with an integer leaf (float0 gradient) and a Python-float leaf."""
  params, loss = problem()
  params = {**params, "step": jnp.arange(3, dtype=jnp.int32), "temperature": 0.7}

  def full_loss(p):
    return (
      loss({k: v for k, v in p.items() if k not in ("step", "temperature")})
      + (p["temperature"] - 0.2) ** 2
      + 0.0 * jnp.sum(p["step"])
    )

  return params, full_loss


@pytest.mark.slow
class Float0Test(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters((c.name, c) for c in CASES)
  def test_float0_gradients_and_python_float_leaves(self, case):
    """Integer leaves (float0 gradients from jax.grad(allow_int=True)) pass
    through unchanged; Python-float leaves train like arrays.

    No pmap variant: pmap would turn the Python float into a broadcast array.
    """
    params, loss = _with_untrainable_leaves()
    tx = case.public(**case.public_kwargs(0.1))
    grads = jax.grad(loss, allow_int=True)(params)
    assert grads["step"].dtype == jax.dtypes.float0
    update = self.variant(lambda g, s, p: tx.update(g, s, p, **case.extra(loss)))
    state = tx.init(params)
    for _ in range(2):
      updates, state = update(grads, state, params)
    assert updates["step"].dtype == jax.dtypes.float0
    assert updates["step"].shape == (3,)
    assert np.isfinite(float(updates["temperature"])) and float(updates["temperature"]) != 0
    for k in ("conv", "dense", "norm"):
      chex.assert_tree_all_finite(updates[k])
      for u in jax.tree.leaves(updates[k]):
        assert np.any(np.asarray(u) != 0)
    # Without the integer leaf, the floating leaves get the same updates.
    float_params = {k: v for k, v in params.items() if k != "step"}
    float_grads = {k: v for k, v in grads.items() if k != "step"}
    tx2 = case.public(**case.public_kwargs(0.1))
    sub_loss = lambda p: loss({**p, "step": params["step"]})
    s2 = tx2.init(float_params)
    for _ in range(2):
      expected, s2 = tx2.update(float_grads, s2, float_params, **case.extra(sub_loss))
    chex.assert_trees_all_close({k: updates[k] for k in float_params}, expected, rtol=1e-6)
