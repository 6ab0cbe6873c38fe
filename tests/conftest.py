"""Test set-up: an emulated 8-device CPU mesh for every test (set before jax is first imported)."""

import os

# Must happen before any test module imports jax: XLA reads the flag once, at backend start.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
