"""Test set-up: an emulated 8-device CPU mesh for every test (set before jax is first imported)."""

import os

# Must happen before any test module imports jax: XLA reads the flag once, at backend start.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tokenizer convs: XLA's native conv unless a test asks for the matmul form (conv_impl='matmul'): the tests'
# tiny models are compile-bound and the matmul form compiles slower (tests/test_tokenizer_model.py covers it).
os.environ.setdefault("VIDEOGEN_CONV_IMPL", "lax")
