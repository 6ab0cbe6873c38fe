#!/usr/bin/env bash
# One-command GPU check (experiments/gpu_check.py says what it measures), for a GPU host that has Python 3.12
# with a CUDA JAX (e.g. an NVIDIA/JAX container) but maybe no network.
#
#   make gpu-offline                        # on a machine with network: wheels + I3D weights into .offline/
#   bash experiments/gpu_check.sh [ARGS]    # on the GPU host, from the repo root (ARGS go to gpu_check.py)
#
# The host's own jax/jaxlib (with its CUDA plugin) are used as they are: a CUDA jaxlib is too large to carry.
# The packages below are installed from .offline/wheels into a temporary folder that goes first on PYTHONPATH,
# so the trainers run with the flax/optax/orbax versions pyproject.toml pins; the I3D weights the default
# tokenizer's perceptual loss needs come from .offline/cache (nothing is downloaded).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SITE=${GPU_CHECK_SITE:-/tmp/videogen-offline-site}
if compgen -G ".offline/wheels/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
      .offline/wheels/*.whl || { echo "gpu_check: installing .offline/wheels failed" >&2; exit 2; }
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
[ -f .offline/cache/i3d_k400.npz ] && export VIDEOGEN_CACHE="$PWD/.offline/cache"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PY" experiments/gpu_check.py "$@"
