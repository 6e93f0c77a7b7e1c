"""Curvature benchmarks: LARS Table 2, LEGW Figure 3, MCLR vs LARS (curvature paper Fig. 16).

Modules:
  common        models, losses, data and a jitted training step shared by the scripts
  table2        per-layer ||w||, ||g|| and rates at the first iteration (LARS paper, Table 2)
  lipschitz     L(x, g) along training for several batch sizes (LEGW paper, Figure 3)
  mclr_vs_lars  training curves of MCLR, LARS (and the family) at one batch size

See benchmarks/curvature/README.md for the commands and the measured numbers.
"""
