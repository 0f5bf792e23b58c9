#!/usr/bin/env bash
# The GPU checks, for a machine with an NVIDIA GPU (CUDA 12): knetpy's install with CuPy, what `knetpy info`
# sees, every op on CuPy against NumPy (tests/test_gpu.py), the device and strict-backend tests, the example
# programs with --device cuda, the whole suite, and the five benchmarks on CuPy against PyTorch CUDA. Logs go
# to $GPU_CHECK_OUT (default gpu-check/); the benchmark table (benchmarks.txt there) is what BENCHMARKS.md's
# GPU section takes.
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
# The strict-backend tests stay on the strict backend, also here: they count host copies with its own
# counters (CuPy has none), and CuPy accepts some NumPy calls they are there to catch. Their op tables run
# on CuPy in tests/test_gpu.py; the example programs run on the GPU below.
run test_device python -m pytest -q tests/test_device.py tests/test_strict_ops.py tests/test_strict_layers.py \
  tests/test_strict_model.py tests/test_strict_dropout.py tests/test_examples_device.py
for name in mlp lenet softmax; do  # short runs on scikit-learn's digits (no download)
  run "train_$name" python -m knetpy train "$name" --quick --dataset digits --device cuda --no-plot --out "$out/runs/$name"
done
run train_charlm python -m knetpy train charlm --quick --device cuda --no-plot --out "$out/runs/charlm"
run suite python -m pytest -q
run benchmarks python benchmarks/gpu.py
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]} (logs in $out/)"
  exit 1
fi
echo "all GPU checks passed (logs in $out/)"
