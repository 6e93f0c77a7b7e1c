"""Infinite hyperparameters are rejected like any other out-of-range value."""

import pytest

import legw


# Bug 1: ranges printed as "[0, inf)" / "(0, inf)" accept +inf.
@pytest.mark.parametrize(
  "fn, kwargs, arg",
  [
    (legw.lars, dict(learning_rate=float("inf")), "learning_rate"),
    (legw.lars, dict(learning_rate=0.1, weight_decay=float("inf")), "weight_decay"),
    (legw.lars, dict(learning_rate=0.1, trust_coefficient=float("inf")), "trust_coefficient"),
    (legw.scale_by_lars, dict(eps=float("inf")), "eps"),
    (legw.mclr, dict(learning_rate=float("inf")), "learning_rate"),
    (legw.cblr, dict(learning_rate=0.1, max_radius=float("inf")), "max_radius"),
    (
      legw.scale_learning_rate,
      dict(base_learning_rate=float("inf"), base_batch_size=1, batch_size=2),
      "base_learning_rate",
    ),
    (
      legw.scale_learning_rate,
      dict(base_learning_rate=0.1, base_batch_size=1, batch_size=float("inf")),
      "batch_size",
    ),
    (
      legw.legw_schedule,
      dict(
        base_learning_rate=0.1,
        base_batch_size=256,
        batch_size=1024,
        base_warmup_epochs=1.0,
        num_epochs=float("inf"),
        steps_per_epoch=10,
      ),
      "num_epochs",
    ),
  ],
)
def test_infinite_hyperparameter_is_rejected(fn, kwargs, arg):
  with pytest.raises(ValueError, match=arg):
    fn(**kwargs)


# Bug 2: un-jitted transforms' update takes no extra keyword arguments.
