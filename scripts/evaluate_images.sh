#!/usr/bin/env bash
# Reproduce the image evaluation reports of docs/images.md (digits-res, seen and unseen
# resolutions): denoising vs tuned classical filters and PCA, reconstruction vs JPEG and a
# PCA codec at ours' bytes, one-class anomaly detection, and compression at 1 and 0.5
# bit/pixel budgets. About 15 minutes on one CPU core with the default 12 tasks.
# Usage: bash scripts/evaluate_images.sh [TASKS] [OUT_DIR] [CHECKPOINT]
set -euo pipefail
cd "$(dirname "$0")/.."
tasks=${1:-12}
out=${2:-runs/eval-images}
ckpt=${3:-builtin:digits-res}
mkdir -p "$out"
common=(--family digits-res --checkpoint "$ckpt" --tasks "$tasks" --steps 0,5,20)
metaae-edge evaluate "${common[@]}" --objective denoise \
  --json "$out/denoise.json" --markdown "$out/denoise.md"
metaae-edge evaluate "${common[@]}" --objective reconstruct \
  --json "$out/reconstruct.json" --markdown "$out/reconstruct.md"
metaae-edge evaluate "${common[@]}" --objective anomaly \
  --json "$out/anomaly.json" --markdown "$out/anomaly.md"
for bpp in 1 0.5; do
  metaae-edge evaluate "${common[@]}" --objective reconstruct --bpp "$bpp" --baselines pca,jpeg \
    --json "$out/reconstruct-bpp$bpp.json" --markdown "$out/reconstruct-bpp$bpp.md"
done
ls -l "$out"
