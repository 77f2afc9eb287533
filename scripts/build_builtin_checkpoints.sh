#!/usr/bin/env bash
# Re-create the checkpoints shipped as builtin:manifold, builtin:sensors, builtin:digits
# and builtin:digits-res (conv, images: 300 meta-steps + 400 post-training steps, ~30 min).
# Deterministic (fixed seeds); each takes a few minutes on a 2-core CPU.
# Usage: bash scripts/build_builtin_checkpoints.sh [family ...]
set -euo pipefail
cd "$(dirname "$0")/.."
dest=metaae_edge/checkpoints
families=("$@")
[ ${#families[@]} -gt 0 ] || families=(manifold sensors digits digits-res)
for fam in "${families[@]}"; do
  tmp=$(mktemp -d)
  metaae-edge meta-train --family "$fam" --out "$tmp/$fam.safetensors" --seed 0
  mv "$tmp/$fam.safetensors" "$dest/$fam.safetensors"
  rmdir "$tmp"
done
ls -l "$dest"
