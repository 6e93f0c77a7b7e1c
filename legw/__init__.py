"""legw: large-batch training for JAX/Optax.

LARS and LAMB trust ratios, LEGW (linear-epoch gradual warmup with square-root LR
scaling) schedules and curvature-based per-layer learning rates, as pure
functional ``optax.GradientTransformation``s.
"""

from legw._adascale import ScaleByAdaScaleState as ScaleByAdaScaleState
from legw._adascale import adascale as adascale
from legw._adascale import scale_by_adascale as scale_by_adascale
from legw._batch_schedule import BatchPhase as BatchPhase
from legw._batch_schedule import BatchSizeSchedule as BatchSizeSchedule
from legw._batch_schedule import batch_size_schedule as batch_size_schedule
from legw._cblr import ScaleByCurvatureRadiusState as ScaleByCurvatureRadiusState
from legw._cblr import cblr as cblr
from legw._cblr import hutchinson_diagonal as hutchinson_diagonal
from legw._cblr import scale_by_curvature_radius as scale_by_curvature_radius
from legw._curvature import ScaleByMedianCurvatureState as ScaleByMedianCurvatureState
from legw._curvature import ScaleByPercentDeltaState as ScaleByPercentDeltaState
from legw._curvature import mclr as mclr
from legw._curvature import percent_delta as percent_delta
from legw._curvature import scale_by_median_curvature as scale_by_median_curvature
from legw._curvature import scale_by_percent_delta as scale_by_percent_delta
from legw._diagnostics import LayerwiseStatsState as LayerwiseStatsState
from legw._diagnostics import applied_layerwise_stats as applied_layerwise_stats
from legw._diagnostics import layerwise_stats as layerwise_stats
from legw._diagnostics import local_lipschitz as local_lipschitz
from legw._diagnostics import trust_coefficient_from_sgd as trust_coefficient_from_sgd
from legw._lamb import lamb as lamb
from legw._lamb import scale_by_lamb as scale_by_lamb
from legw._lars import ScaleByLarsState as ScaleByLarsState
from legw._lars import lars as lars
from legw._lars import scale_by_lars as scale_by_lars
from legw._losses import discard_small_loss as discard_small_loss
from legw._losses import discard_small_loss_schedule as discard_small_loss_schedule
from legw._masks import exclude_bias_and_norm as exclude_bias_and_norm
from legw._masks import path_mask as path_mask
from legw._noise_scale import GradientNoiseScaleState as GradientNoiseScaleState
from legw._noise_scale import gradient_noise_scale as gradient_noise_scale
from legw._recipe import Recipe as Recipe
from legw._recipe import ScaledRecipe as ScaledRecipe
from legw._scaling import scale_learning_rate as scale_learning_rate
from legw._scaling import scale_num_epochs as scale_num_epochs
from legw._scaling import scale_warmup_epochs as scale_warmup_epochs
from legw._schedules import legw_schedule as legw_schedule

__version__ = "0.1.0"

__all__ = (
  "BatchPhase",
  "BatchSizeSchedule",
  "GradientNoiseScaleState",
  "LayerwiseStatsState",
  "Recipe",
  "ScaleByAdaScaleState",
  "ScaleByCurvatureRadiusState",
  "ScaleByLarsState",
  "ScaleByMedianCurvatureState",
  "ScaleByPercentDeltaState",
  "ScaledRecipe",
  "adascale",
  "applied_layerwise_stats",
  "batch_size_schedule",
  "cblr",
  "discard_small_loss",
  "discard_small_loss_schedule",
  "exclude_bias_and_norm",
  "gradient_noise_scale",
  "hutchinson_diagonal",
  "lamb",
  "lars",
  "layerwise_stats",
  "legw_schedule",
  "local_lipschitz",
  "mclr",
  "path_mask",
  "percent_delta",
  "scale_by_adascale",
  "scale_by_curvature_radius",
  "scale_by_lamb",
  "scale_by_lars",
  "scale_by_median_curvature",
  "scale_by_percent_delta",
  "scale_learning_rate",
  "scale_num_epochs",
  "scale_warmup_epochs",
  "trust_coefficient_from_sgd",
)
