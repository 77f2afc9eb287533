#!/usr/bin/env bash
# Re-create the checkpoints shipped as builtin:manifold, builtin:sensors, builtin:digits
# and builtin:digits-res (conv, images: 300 meta-steps + 400 post-training steps, ~30 min),
# and builtin:digits-res-codec (the same with a dense code and its linear bypass, for
# budgeted compression: --latent-bytes; ~31 min). Not shipped, only on request
# (`... build_builtin_checkpoints.sh tabular-detect`): builtin:tabular-detect, the tabular
# recipe meta-trained with the ranking outer loss on anomaly tasks (measured worse than
# builtin:tabular and builtin:manifold on the real rows, docs/real_data.md; ~30 min).
# `... build_builtin_checkpoints.sh nlm-refiner` re-creates round 25's pre-trained joint
# NLM refiner of the ours-nlm-joint denoiser candidate at NLM distance 6 (--nlm-preset
# wide; scripts/train_nlm_refiner.py; its NLM training pairs are cached in
# /tmp/nlm_refiner_data.npz); `... nlm-refiner-d1` the small distance-1 refiner of session
# 28 (--nlm-preset fast), `... nlm-refiner-d1-l32x3` session 30's distance-1 refiner with a
# half-resolution stage (the default, --nlm-preset quality; docs/images.md, its NLM pairs
# cached in /tmp/nlm_refiner_data_d1.npz).
# The shipped files are the training checkpoints without their optimiser state.
# Deterministic (fixed seeds); each takes a few minutes on a 2-core CPU.
# Usage: bash scripts/build_builtin_checkpoints.sh [family ...]
set -euo pipefail
cd "$(dirname "$0")/.."
dest=metaae_edge/checkpoints
families=("$@")
[ ${#families[@]} -gt 0 ] || families=(manifold sensors digits digits-res digits-res-codec tabular)
for fam in "${families[@]}"; do
  [ "$fam" = nlm-refiner ] && { OMP_NUM_THREADS=1 python scripts/train_nlm_refiner.py --distance 6 --out "$dest/refiners/nlm-refiner.safetensors"; continue; }
  [ "$fam" = nlm-refiner-d1 ] && { OMP_NUM_THREADS=1 python scripts/train_nlm_refiner.py --data /tmp/nlm_refiner_data_d1.npz --distance 1 --width 8 --depth 3 --steps 6000 --out "$dest/refiners/nlm-refiner-d1-w8x3.safetensors"; continue; }
  [ "$fam" = nlm-refiner-d1-l32x3 ] && { OMP_NUM_THREADS=1 python scripts/train_nlm_refiner.py --data /tmp/nlm_refiner_data_d1.npz --distance 1 --width 8 --depth 1 --low-width 32 --low-depth 3 --steps 6000 --out "$dest/refiners/nlm-refiner-d1-w8-l32x3.safetensors"; continue; }
  [ "$fam" = natural ] && { python scripts/train_natural.py "$(mktemp -d)/n.safetensors" --meta-steps 800 --stop-after 500 --val-every 25 --ship "$dest/natural.safetensors"; continue; }
  tmp=$(mktemp -d)
  args=(--family "$fam")
  [ "$fam" = digits-res-codec ] && args=(--family digits-res --dense-latents 8,16,32,64 --linear-bypass)
  # tabular-detect: the detection outer loss (ranking), examples/recipes/tabular-detect.toml
  [ "$fam" = tabular-detect ] && args=(--recipe examples/recipes/tabular-detect.toml)
  metaae-edge meta-train "${args[@]}" --out "$tmp/$fam.safetensors" --seed 0
  # Shipped checkpoints carry the model and metadata only: the optimiser state (opt.*) is
  # for --resume of a training checkpoint, not for adaptation, and was 2/3 of the bytes.
  python - "$tmp/$fam.safetensors" "$dest/$fam.safetensors" <<'PY'
import sys
from safetensors import safe_open
from safetensors.torch import save_file
with safe_open(sys.argv[1], "pt") as f:
    meta, keys = f.metadata(), [k for k in f.keys() if not k.startswith("opt.")]
    save_file({k: f.get_tensor(k) for k in keys}, sys.argv[2], metadata=meta)
PY
  rm "$tmp/$fam.safetensors"
  rmdir "$tmp"
done
ls -l "$dest"
