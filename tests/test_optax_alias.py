"""legw.lars on the optimization problems of optax's own optimizer tests.

optax 0.2.8 checks every alias (``optax/_src/alias_test.py``,
``test_optimization``) on two problems, in float32 and complex64: a parabola
and the Rosenbrock function, 10,000 jitted steps from a fixed start, then the
parameters within 3e-2 of the minimum; complex gradients are conjugated
before the update (the steepest-descent direction of a real loss of complex
parameters).  ``optax.lars(learning_rate=1.0)`` is one of those aliases.
This is an independent rewrite of those checks: wherever ``optax.lars``
passes, legw's all-leaves ``lars`` (the trust ratio and decay on every leaf;
``weight_decay`` is 0, so the paper and combined denominators agree, both
run) must pass too, and compile once.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_conformance import max_traces, xla_compilations

import legw

STEPS = 10_000
TOL = 3e-2


def _abs_sq(x):
  return jnp.real(x * jnp.conj(x))


def parabola(dtype):
  """sum |x - x*|^2 from (-1, 10, 1) to x* = (1, -1, 1) (times 1 + i if complex)."""
  target = jnp.array([1.0, -1.0, 1.0], dtype)
  if jnp.issubdtype(dtype, jnp.complexfloating):
    target = target * (1 + 1j)
  start = jnp.array([-1.0, 10.0, 1.0], dtype)
  return start, target, lambda x: jnp.sum(_abs_sq(x - target))


def rosenbrock(dtype):
  """|a - x0|^2 + 100 |x1 - x0^2|^2 from (0, 0) to (a, a^2); a = 1 (1 + i if complex)."""
  a = (1 + 1j) if jnp.issubdtype(dtype, jnp.complexfloating) else 1.0
  target = jnp.array([a, a * a], dtype)
  start = jnp.zeros(2, dtype)
  return start, target, lambda x: _abs_sq(a - x[0]) + 100.0 * _abs_sq(x[1] - x[0] ** 2)


PROBLEMS = {"parabola": parabola, "rosenbrock": rosenbrock}
DTYPES = {"float32": jnp.float32, "complex64": jnp.complex64}
OPTIMIZERS = {
  "optax.lars": lambda: optax.lars(learning_rate=1.0),
  "legw.lars(all leaves)": lambda: legw.lars(1.0, trust_ratio_mask=True, weight_decay_mask=True),
  "legw.lars(all leaves, combined)": lambda: legw.lars(
    1.0, trust_ratio_mask=True, weight_decay_mask=True, denominator="combined"
  ),
}


def _step_fn(opt, loss, key):
  """The jitted step; ``chex.assert_max_traces``: one trace in the session."""

  def step(params, state):
    grads = jax.tree.map(jnp.conj, jax.grad(loss)(params))
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  return jax.jit(max_traces(step, 1, *key))


EARLY = 20  # steps compared with optax.lars step by step


def _run(name, problem, dtype):
  """(final params, target, step name, XLA compilations, params after EARLY steps).

  The step may be traced once (``chex.assert_max_traces``): in its first call,
  not again in the later ones nor inside the ``lax.scan`` of the rest.
  """
  start, target, loss = PROBLEMS[problem](DTYPES[dtype])
  opt = OPTIMIZERS[name]()
  state = opt.init(start)
  state = optax.tree.map_params(opt, lambda v: v, state)  # a no-op map works
  step = _step_fn(opt, loss, (name, problem, dtype))
  params = start
  with xla_compilations() as compiled:
    for _ in range(EARLY):
      params, state = step(params, state)
  early = params

  @jax.jit
  def rest(params, state):
    def body(carry, _):
      return step(*carry), None

    return jax.lax.scan(body, (params, state), None, length=STEPS - EARLY)[0]

  params, state = rest(params, state)
  return params, target, step.__name__, compiled, early


_RESULTS = {}


def result(name, problem, dtype):
  key = (name, problem, dtype)
  if key not in _RESULTS:
    _RESULTS[key] = _run(name, problem, dtype)
  return _RESULTS[key]


def _passes(params, target):
  return bool(np.allclose(np.asarray(params), np.asarray(target), rtol=TOL, atol=TOL))


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_optax_lars_passes_its_own_problems(problem, dtype):
  """The reference: optax 0.2.8's lars passes all four (as in its test)."""
  params, target, *_ = result("optax.lars", problem, dtype)
  assert _passes(params, target), (params, target)


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("name", [n for n in OPTIMIZERS if n.startswith("legw")])
def test_legw_lars_passes_where_optax_lars_does(name, problem, dtype):
  params, target, step_name, compiled, early = result(name, problem, dtype)
  reference, *_, reference_early = result("optax.lars", problem, dtype)
  if _passes(reference, target):
    assert _passes(params, target), (params, target)
  assert params.dtype == DTYPES[dtype]
  chex.assert_tree_all_finite(params)
  assert compiled == [f"jit({step_name})"]  # compiled once, in the first call
  # Same denominators without weight decay: the same steps as optax.lars (to
  # rounding; over 10,000 Rosenbrock steps rounding differences grow to 4e-3).
  chex.assert_trees_all_close(early, reference_early, rtol=1e-5, atol=1e-5)
