#!/usr/bin/env bash
# Reproduce the image evaluation reports of docs/images.md (digits-res, seen and unseen
# resolutions): compression at a bit budget vs JPEG and PCA, denoising vs classical filters,
# one-class anomaly detection. About 25 minutes on a 2-core CPU.
# Usage: bash scripts/evaluate_images.sh [TASKS] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
tasks=${1:-20}
out=${2:-runs/eval-images}
mkdir -p "$out"
common=(--family digits-res --checkpoint builtin:digits-res --tasks "$tasks" --steps 0,5,20)
metaae-edge evaluate "${common[@]}" --objective reconstruct --bpp 1 \
  --json "$out/reconstruct.json" --markdown "$out/reconstruct.md"
metaae-edge evaluate "${common[@]}" --objective denoise \
  --json "$out/denoise.json" --markdown "$out/denoise.md"
metaae-edge evaluate "${common[@]}" --objective anomaly \
  --json "$out/anomaly.json" --markdown "$out/anomaly.md"
ls -l "$out"
