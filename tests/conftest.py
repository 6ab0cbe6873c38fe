"""Test set-up: an emulated 8-device CPU mesh for every test (set before jax is first imported), and one
persistent XLA compilation cache shared by the whole session."""

import atexit
import os
import shutil
import tempfile

# Must happen before any test module imports jax: XLA reads the flag once, at backend start.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tokenizer convs: XLA's native conv unless a test asks for the matmul form (conv_impl='matmul'): the tests'
# tiny models are compile-bound and the matmul form compiles slower (tests/test_tokenizer_model.py covers it).
os.environ.setdefault("VIDEOGEN_CONV_IMPL", "lax")

# Many tests build the same tiny programs again (each train() call jits a fresh step; the CLI, SIGTERM and
# multihost tests start subprocesses that compile what this process already did). A persistent cache keyed
# on the program (XLA flags and device count included) lets those hit instead of recompiling. The process
# that creates the directory (pytest's controller, or the only process with TEST_WORKERS=0) removes it at
# exit; xdist workers and test subprocesses inherit the variable and share it. Set
# JAX_COMPILATION_CACHE_DIR yourself to keep a cache between runs.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache_dir = tempfile.mkdtemp(prefix="videogen-tests-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache_dir
    atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
