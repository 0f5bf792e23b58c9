#!/usr/bin/env bash
# The GPU checks, for a machine with an NVIDIA GPU (CUDA 12): knetpy's install with CuPy, what `knetpy info`
# sees, every op on CuPy against NumPy (tests/test_gpu.py), the device and strict-backend tests, the whole
# suite, and the five benchmarks on CuPy against PyTorch CUDA. Logs go to $GPU_CHECK_OUT (default
# gpu-check/); the benchmark table (benchmarks.txt there) is what BENCHMARKS.md's GPU section takes.
# Runs from the repository root; inside an active virtual environment it installs there, else in .venv-gpu.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${GPU_CHECK_OUT:-gpu-check}
mkdir -p "$out"
if [ -z "${VIRTUAL_ENV:-}" ]; then
  "${PYTHON:-python3}" -m venv .venv-gpu && source .venv-gpu/bin/activate || exit 1
fi
python -m pip install --quiet -e '.[test,gpu]' || { echo "could not install knetpy[test,gpu]"; exit 1; }
python -m knetpy info | tee "$out/info.txt"
python -c 'import knetpy as kp, sys; g = kp.gpu(); print("GPU:", g); sys.exit(g is None)' \
  || { echo "no usable GPU: CuPy cannot reach a device, so the GPU checks cannot run"; exit 1; }
failed=()
run() {  # name, command...: run it, keep its log, remember a failure and go on
  local name=$1; shift
  echo "== $name: $*"
  "$@" 2>&1 | tee "$out/$name.txt" || failed+=("$name")
}
run test_gpu python -m pytest -q -rs tests/test_gpu.py
run test_device python -m pytest -q tests/test_device.py tests/test_strict_ops.py tests/test_strict_layers.py \
  tests/test_strict_model.py
run suite python -m pytest -q
run benchmarks python benchmarks/gpu.py
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]} (logs in $out/)"
  exit 1
fi
echo "all GPU checks passed (logs in $out/)"
