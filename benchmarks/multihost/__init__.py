"""legw under multi-process JAX (jax.distributed on CPU processes)."""
