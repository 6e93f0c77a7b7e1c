"""legw: large-batch training for JAX/Optax.

LARS trust ratios, LEGW (linear-epoch gradual warmup with square-root LR
scaling) schedules and curvature-based per-layer learning rates, as pure
functional ``optax.GradientTransformation``s.
"""

from legw.lars import ScaleByLarsState as ScaleByLarsState
from legw.lars import lars as lars
from legw.lars import scale_by_lars as scale_by_lars
from legw.masks import exclude_bias_and_norm as exclude_bias_and_norm

__version__ = "0.1.0"

__all__ = (
    "ScaleByLarsState",
    "exclude_bias_and_norm",
    "lars",
    "scale_by_lars",
)
