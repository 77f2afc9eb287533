#!/usr/bin/env bash
# Re-create the checkpoints shipped as builtin:manifold, builtin:sensors, builtin:digits
# and builtin:digits-res (conv, images: 300 meta-steps + 400 post-training steps, ~30 min),
# and builtin:digits-res-codec (the same with a dense code and its linear bypass, for
# budgeted compression: --latent-bytes; ~31 min).
# Deterministic (fixed seeds); each takes a few minutes on a 2-core CPU.
# Usage: bash scripts/build_builtin_checkpoints.sh [family ...]
set -euo pipefail
cd "$(dirname "$0")/.."
dest=metaae_edge/checkpoints
families=("$@")
[ ${#families[@]} -gt 0 ] || families=(manifold sensors digits digits-res digits-res-codec)
for fam in "${families[@]}"; do
  tmp=$(mktemp -d)
  args=(--family "$fam")
  [ "$fam" = digits-res-codec ] && args=(--family digits-res --dense-latents 8,16,32,64 --linear-bypass)
  metaae-edge meta-train "${args[@]}" --out "$tmp/$fam.safetensors" --seed 0
  mv "$tmp/$fam.safetensors" "$dest/$fam.safetensors"
  rmdir "$tmp"
done
ls -l "$dest"
