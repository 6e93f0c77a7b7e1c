"""legw: large-batch training for JAX/Optax.

LARS trust ratios, LEGW (linear-epoch gradual warmup with square-root LR
scaling) schedules and curvature-based per-layer learning rates, as pure
functional ``optax.GradientTransformation``s.
"""

from legw.lars import ScaleByLarsState as ScaleByLarsState
from legw.lars import lars as lars
from legw.lars import scale_by_lars as scale_by_lars
from legw.masks import exclude_bias_and_norm as exclude_bias_and_norm
from legw.recipe import Recipe as Recipe
from legw.recipe import ScaledRecipe as ScaledRecipe
from legw.scaling import scale_learning_rate as scale_learning_rate
from legw.scaling import scale_warmup_epochs as scale_warmup_epochs
from legw.schedules import legw_schedule as legw_schedule

__version__ = "0.1.0"

__all__ = (
    "Recipe",
    "ScaleByLarsState",
    "ScaledRecipe",
    "exclude_bias_and_norm",
    "lars",
    "legw_schedule",
    "scale_by_lars",
    "scale_learning_rate",
    "scale_warmup_epochs",
)
