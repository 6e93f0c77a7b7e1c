"""pytest setup for the guides' doctests (``pytest --doctest-glob='*.md' docs``).

Eight simulated CPU devices, as in tests/conftest.py, for the sharding guide; set
before any doctest imports jax.
"""

import os

_flag = "--xla_force_host_platform_device_count=8"
if _flag not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
