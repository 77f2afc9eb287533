#!/usr/bin/env bash
# What a lent GPU machine (torch with CUDA; no TensorRT, no onnxruntime-gpu) can check, in
# about 5 minutes: the GPU-marked tests, and meta-training throughput on cuda vs cpu.
# Usage (on the device machine, from the repo root): bash scripts/device_check.sh
set -uo pipefail
OUT=${OUT:-/tmp/device_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-deps -e . 2>&1 | tail -1
python3 -m pip install -q typer rich safetensors onnx onnxruntime scikit-learn pytest 2>&1 | tail -1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -m pytest -m gpu -q -rs 2>&1 | tee "$OUT/gpu_tests.log"
for dev in cuda cpu; do
  rm -f "/tmp/ck-$dev.safetensors"
  /usr/bin/time -f "$dev meta-train wall %e s" python3 -m metaae_edge.cli meta-train \
    --family manifold --out "/tmp/ck-$dev.safetensors" --meta-steps 100 --device "$dev" \
    2>&1 | tail -2 | tee -a "$OUT/meta_train_timing.txt"
done
