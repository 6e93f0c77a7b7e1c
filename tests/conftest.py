"""Test setup: 8 simulated CPU devices for the sharding tests and chex's pmap variants.

XLA reads this flag once, when the backend starts, so it is set here before
any test module imports jax (what ``chex.set_n_cpu_devices(8)`` does, without
importing jax here).
"""

import os

_flag = "--xla_force_host_platform_device_count=8"
if _flag not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
