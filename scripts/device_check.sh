#!/usr/bin/env bash
# What a lent GPU machine can check in about 5 minutes. It has torch with CUDA but no
# TensorRT and no onnxruntime-gpu, so: the GPU-marked tests (the TensorRT ones skip
# themselves), meta-training on cuda vs cpu, adapt-and-export with --device cuda, and the
# torch eager / CUDA-graph rows of `metaae-edge bench` beside onnxruntime CPU.
# Usage (device machine, repo root): bash scripts/device_check.sh   (results under $OUT)
set -uo pipefail
OUT=${OUT:-/tmp/device_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-deps -e . 2>&1 | tail -1
python3 -m pip install -q typer rich safetensors onnx onnxscript onnxruntime scikit-learn pytest 2>&1 | tail -1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -m pytest -m "gpu or tensorrt" -q -rs 2>&1 | tee "$OUT/gpu_tests.log"
for dev in cuda cpu; do
  rm -f "/tmp/ck-$dev.safetensors"
  /usr/bin/time -f "$dev meta-train 100 steps: wall %e s" python3 -m metaae_edge.cli meta-train \
    --family manifold --out "/tmp/ck-$dev.safetensors" --meta-steps 100 --device "$dev" \
    2>&1 | tail -2 | tee -a "$OUT/meta_train_timing.txt"
done
rm -rf /tmp/gpu-bundle
python3 -m metaae_edge.cli adapt-and-export builtin:manifold --task manifold:0 --device cuda \
  --out /tmp/gpu-bundle 2>&1 | tail -4 | tee "$OUT/adapt_cuda.txt"
python3 -m metaae_edge.cli bench /tmp/gpu-bundle -b ort-cpu -b torch-eager -b torch-cudagraph \
  --batch 1,256,4096 --duration-s 2 --json "$OUT/bench_gpu.json" --markdown "$OUT/bench_gpu.md" \
  2>&1 | tail -30
# Images (conv space): meta-training steps on cuda, a cuda-adapted digits-res bundle, and
# the conv torch eager / CUDA-graph bench rows beside onnxruntime CPU.
python3 -m pip install -q pillow scipy 2>&1 | tail -1
rm -f /tmp/ck-img.safetensors
/usr/bin/time -f "cuda meta-train digits-res 20+20 steps: wall %e s" python3 -m metaae_edge.cli \
  meta-train --family digits-res --out /tmp/ck-img.safetensors --meta-steps 20 \
  --posttrain-steps 20 --device cuda \
  2>&1 | tail -2 | tee -a "$OUT/meta_train_timing.txt"
rm -rf /tmp/gpu-img-bundle
python3 -m metaae_edge.cli adapt-and-export builtin:digits-res --task digits-res:3 \
  --objective denoise --device cuda --out /tmp/gpu-img-bundle 2>&1 | tail -4 \
  | tee "$OUT/adapt_img_cuda.txt"
python3 -m metaae_edge.cli bench /tmp/gpu-img-bundle -b ort-cpu -b torch-eager \
  -b torch-cudagraph --batch 1,64,1024 --duration-s 2 --json "$OUT/bench_img_gpu.json" \
  --markdown "$OUT/bench_img_gpu.md" 2>&1 | tail -20
# Distributed meta-training (docs/distributed.md): one rank on the GPU over NCCL through
# torchrun, then the same run on one CPU rank over gloo; the two checkpoints must agree
# to GPU float tolerance (NCCL all-reduce of a single rank is a copy).
rm -f /tmp/ck-nccl.safetensors /tmp/ck-gloo.safetensors
/usr/bin/time -f "torchrun 1 rank nccl meta-train 40 steps: wall %e s" python3 -m torch.distributed.run \
  --standalone --nproc-per-node 1 -m metaae_edge meta-train --family manifold \
  --out /tmp/ck-nccl.safetensors --meta-steps 40 --val-every 20 --device cuda \
  2>&1 | tail -3 | tee "$OUT/nccl_meta_train.txt"
python3 -m metaae_edge meta-train --family manifold --out /tmp/ck-gloo.safetensors \
  --meta-steps 40 --val-every 20 --nproc 1 2>&1 | tail -1 | tee -a "$OUT/nccl_meta_train.txt"
python3 - <<'PY' 2>&1 | tee -a "$OUT/nccl_meta_train.txt"
from metaae_edge.meta import load_checkpoint
a, b = load_checkpoint("/tmp/ck-nccl.safetensors"), load_checkpoint("/tmp/ck-gloo.safetensors")
d = max(float((a.state[k] - b.state[k]).abs().max()) for k in a.state)
print(f"nccl (cuda) vs gloo (cpu), 1 rank, step {a.step}/{b.step}: max |weight diff| {d:.2e}")
PY
