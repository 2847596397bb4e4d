#!/usr/bin/env bash
# The GPU check (see benchmarks/gpu_check.py): parity, determinism, RoI division and the
# benchmark suite with jaxops on an NVIDIA GPU against torch on CUDA. Needs jax with CUDA,
# torch with CUDA and torchvision already installed; jaxops runs from this checkout.
#   benchmarks/gpu_check.sh             on the GPU machine
#   benchmarks/gpu_check.sh --dry-run   on CPU at tiny sizes (the test suite runs this)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
if [[ "${1:-}" == "--dry-run" ]]; then
  export JAX_PLATFORMS=cpu
fi
exec python3 benchmarks/gpu_check.py "$@"
