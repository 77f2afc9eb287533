#!/usr/bin/env bash
# The main job end to end on built-in data, from a fresh clone:
# set-up -> meta-train -> adapt-and-export (held-out task, user CSV) -> run -> inspect -> bench.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -c constraints.txt -e '.[cpu,train,dev]'
out=${DEMO_OUT:-runs/demo}
rm -rf "$out"; mkdir -p "$out"
steps=${DEMO_META_STEPS:-100}

echo "== 1. meta-train a small checkpoint ($steps meta-steps; the shipped builtin:manifold used 400)"
metaae-edge meta-train --family manifold --meta-steps "$steps" --out "$out/manifold.safetensors"

echo "== 2. adapt-and-export a held-out manifold task from it"
metaae-edge adapt-and-export "$out/manifold.safetensors" --task manifold:7 --out "$out/bundle-manifold"

echo "== 3. adapt-and-export a user CSV (30 features) from the shipped checkpoint"
python - "$out/user.csv" <<'PY'
import sys, numpy as np
rng = np.random.default_rng(0)
z = rng.normal(size=(400, 3))
x = np.tanh(z @ rng.normal(size=(3, 30))) + 0.05 * rng.normal(size=(400, 30))
np.savetxt(sys.argv[1], x, delimiter=",", header=",".join(f"f{i}" for i in range(30)), comments="")
PY
metaae-edge adapt-and-export builtin:manifold --data "$out/user.csv" --out "$out/bundle-user"

echo "== 4. anomaly bundle for a held-out sensors task (threshold at 1% FPR)"
metaae-edge adapt-and-export builtin:sensors --task sensors:2 --objective anomaly --out "$out/bundle-sensors"

echo "== 5. run the bundles through the torch-free runtime"
metaae-edge run "$out/bundle-user" --input "$out/user.csv" --output "$out/recon.npy" --mode reconstruct
metaae-edge run "$out/bundle-user" --input "$out/user.csv" --output "$out/latent.npy" --mode encode
metaae-edge inspect "$out/bundle-user" --verify

echo "== 6. benchmark"
metaae-edge bench "$out/bundle-manifold" --batch 1,256 --duration-s 1 --json "$out/bench.json" --markdown "$out/bench.md"
echo "done: outputs in $out"
