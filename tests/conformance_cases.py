"""The conformance case registry: every public legw optimizer and transform.

``CASES`` holds one ``Case`` (name, constructor, arguments) per public
optimizer or transform. A new one joins every registry-wide test (those of
``test_conformance.py``, ``test_reliability.py`` and ``test_properties.py``)
by one line in ``CASES``; ``test_conformance.py`` checks that every public
``GradientTransformation`` constructor is here or in ``AGGREGATORS``.

Not a test module (pytest collects ``test_*.py`` only): the test modules
import it as ``from conformance_cases import CASES``, as they import
each other (``tests/`` is on ``sys.path``: no ``__init__.py``, pytest's
default ``prepend`` import mode).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax
import optax

import legw


@dataclasses.dataclass(frozen=True)
class Case:
  """One public legw optimizer or transform, with arguments for the conformance tests.

  Attributes:
    name: test id.
    public: the public constructor (``legw.lars``, ``legw.scale_by_lars``...).
    kwargs: its arguments, without ``learning_rate``.
    transform: ``public`` is a transform (no learning rate, no momentum).
    needs_obj_fn: ``update`` needs the objective as ``obj_fn=`` (CBLR).
    static_args: arguments ``optax.inject_hyperparams`` must keep static.
    lr: peak learning rate on the convergence problems.
    problems: per-problem overrides for the convergence test: ``lr``,
      ``steps`` and constructor arguments.
    inject_rtol: how close ``optax.inject_hyperparams`` comes to the plain
      constructor.  Adam's ``1 - b2`` is 1e-3 exactly from a Python float
      but 1 - float32(0.999) = 1.00005e-3 from an injected (float32) one:
      ``optax.adam`` itself differs by 7e-6 between the two.
    excluded: the optimizer that leaves outside the default masks (biases,
      norms) get, as a function of the learning rate; None: momentum SGD
      (0.9; Nesterov where the case sets it).
  """

  name: str
  public: Callable[..., optax.GradientTransformation]
  kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  transform: bool = False
  needs_obj_fn: bool = False
  static_args: tuple[str, ...] = ()
  lr: float = 0.1
  problems: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
  excluded: Callable[[float], optax.GradientTransformation] | None = None
  inject_rtol: float = 1e-6

  def __str__(self) -> str:
    return self.name

  def public_kwargs(self, learning_rate: Any = 0.1, **overrides) -> dict:
    """Arguments of ``public`` (with ``learning_rate`` for an optimizer).

    A ``momentum`` override is dropped where ``public`` has none (LAMB: its
    momentum is Adam's ``b1``), so registry-wide tests may vary it.
    """
    if "momentum" not in inspect.signature(self.public).parameters:
      overrides.pop("momentum", None)
    kwargs = {**self.kwargs, **overrides}
    if not self.transform:
      kwargs["learning_rate"] = learning_rate
    return kwargs

  def make(self, learning_rate: Any = 0.1, **overrides) -> optax.GradientTransformation:
    """A complete optimizer: ``public`` itself, or a transform + momentum SGD."""
    if self.transform:
      return optax.chain(
        self.public(**{**self.kwargs, **overrides}),
        optax.sgd(learning_rate, momentum=0.9),
      )
    return self.public(**self.public_kwargs(learning_rate, **overrides))

  def extra(self, obj_fn: Callable[[Any], jax.Array]) -> dict:
    """Extra keyword arguments ``update`` needs (``obj_fn`` for CBLR)."""
    return {"obj_fn": obj_fn} if self.needs_obj_fn else {}


_WD = dict(weight_decay=1e-4)


def _adam(lr):
  """What biases and norms get from LAMB's default masks: Adam (LAMB's eps)."""
  return optax.adam(lr, eps=1e-6)


# LAMB's step of a layer has norm lr * ||w|| (a relative rate): Rosenbrock's
# curved valley wants more, smaller steps (0.05 leaves a gap of 1.0 after 500
# steps, 5e-8 after 2000).
LAMB_LR = 0.05
LAMB_PROBLEMS: dict[str, dict[str, Any]] = {"rosenbrock": dict(steps=2000)}
_LAMB: dict[str, Any] = dict(excluded=_adam, inject_rtol=2e-5)

CASES = [
  Case("lars", legw.lars, dict(trust_coefficient=0.1, **_WD)),
  # clip (apex LARC): the per-layer rate is min(lambda, lr), so the trust
  # coefficient itself is a step size; Rosenbrock's curved valley wants a
  # smaller one (0.1 leaves a gap of 0.06 after 500 steps, 0.01 of 6e-4).
  Case(
    "lars-combined-clip-nesterov",
    legw.lars,
    dict(trust_coefficient=0.1, denominator="combined", clip=True, nesterov=True, **_WD),
    problems={"rosenbrock": dict(trust_coefficient=0.01)},
  ),
  Case("scale_by_lars", legw.scale_by_lars, dict(trust_coefficient=0.1, **_WD), transform=True),
  Case("mclr", legw.mclr, dict(_WD), lr=0.03),
  Case(
    "scale_by_median_curvature", legw.scale_by_median_curvature, dict(_WD), transform=True, lr=0.03
  ),
  Case("percent_delta", legw.percent_delta, dict(_WD), lr=0.01),
  Case("scale_by_percent_delta", legw.scale_by_percent_delta, dict(_WD), transform=True, lr=0.01),
  Case(
    "cblr",
    legw.cblr,
    dict(max_radius=1.0, **_WD),
    needs_obj_fn=True,
    static_args=("num_probes", "update_every", "key"),
    lr=0.03,
    problems={"rosenbrock": dict(max_radius=0.1, steps=2000)},
  ),
  Case(
    "scale_by_curvature_radius",
    legw.scale_by_curvature_radius,
    dict(max_radius=1.0, **_WD),
    transform=True,
    needs_obj_fn=True,
    static_args=("num_probes", "update_every", "key"),
    lr=0.03,
    problems={"rosenbrock": dict(max_radius=0.1, steps=2000)},
  ),
  Case("lamb", legw.lamb, dict(_WD), lr=LAMB_LR, problems=LAMB_PROBLEMS, **_LAMB),
  Case(
    "scale_by_lamb",
    legw.scale_by_lamb,
    dict(_WD),
    transform=True,
    lr=LAMB_LR,
    problems=LAMB_PROBLEMS,
    **_LAMB,
  ),
]

OPTIMIZERS = [c for c in CASES if not c.transform]

# Aggregators: their updates are K gradient samples stacked on a leading axis
# (optax.experimental's convention), not one gradient of the parameters' shape, so
# the cases here do not apply; tests/test_noise_scale.py covers them.
AGGREGATORS = {legw.gradient_noise_scale, legw.scale_by_adascale, legw.adascale}
