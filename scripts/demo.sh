#!/usr/bin/env bash
# The main job end to end on built-in data, from a fresh clone:
# set-up -> meta-train -> adapt-and-export (held-out task, user CSV, PNG folder) -> run ->
# inspect -> bench.
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
metaae-edge adapt-and-export builtin:tabular --data "$out/user.csv" --out "$out/bundle-user"

echo "== 4. anomaly bundle for a held-out sensors task (threshold at 1% FPR)"
metaae-edge adapt-and-export builtin:sensors --task sensors:2 --objective anomaly --out "$out/bundle-sensors"

echo "== 5. run the bundles through the torch-free runtime"
metaae-edge run "$out/bundle-user" --input "$out/user.csv" --output "$out/recon.npy" --mode reconstruct
metaae-edge run "$out/bundle-user" --input "$out/user.csv" --output "$out/latent.npy" --mode encode
metaae-edge inspect "$out/bundle-user" --verify
metaae-edge run "$out/bundle-user" --mode generate --n 16 --seed 0 --output "$out/samples.npy"

echo "== 6. images: a folder of noisy 24x24 PNGs -> denoising bundle from builtin:digits-res -> PNGs back"
python - "$out/digits" <<'PY'
import sys, numpy as np
from metaae_edge.runtime.images import write_images
from metaae_edge.tasks import create_family
task = create_family("digits-res", resolution=24).sample("test", 3, n_support=48, n_query=8)
write_images(task.support.reshape(-1, 1, 24, 24), sys.argv[1] + "/train", [f"img{i:02d}" for i in range(48)])
rng = np.random.default_rng(0)
noisy = np.clip(task.query.reshape(-1, 1, 24, 24) + rng.normal(0, 0.1, (8, 1, 24, 24)), 0, 1)
write_images(noisy.astype(np.float32), sys.argv[1] + "/noisy", [f"noisy{i}" for i in range(8)])
PY
metaae-edge adapt-and-export builtin:digits-res --data "$out/digits/train" --objective denoise --noise gaussian:0.1 --out "$out/bundle-digits"
metaae-edge run "$out/bundle-digits" --input "$out/digits/noisy" --mode denoise --out "$out/digits/denoised"
metaae-edge inspect "$out/bundle-digits"

echo "== 7. a real photo: builtin:natural adapted to camera patches, a noisy 512x512 astronaut PNG denoised whole"
python - "$out/photo" <<'PY'
import sys, numpy as np
from PIL import Image
from pathlib import Path
from skimage import color, data
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
cam = data.camera().astype(np.float32) / 255
rng = np.random.default_rng(0)
ij = rng.integers(0, 512 - 32, size=(64, 2))
np.save(out / "patches.npy", np.stack([cam[i:i + 32, j:j + 32] for i, j in ij]))
astro = color.rgb2gray(data.astronaut()).astype(np.float32)
noisy = np.clip(astro + rng.normal(0, 0.1, astro.shape), 0, 1)
Image.fromarray((noisy * 255 + 0.5).astype(np.uint8)).save(out / "noisy.png")
Image.fromarray((astro * 255 + 0.5).astype(np.uint8)).save(out / "astronaut.png")
Image.fromarray((cam * 255 + 0.5).astype(np.uint8)).save(out / "camera.png")
PY
metaae-edge adapt-and-export builtin:natural --data "$out/photo/patches.npy" --objective denoise --noise gaussian:0.1 --out "$out/bundle-photo"
metaae-edge run "$out/bundle-photo" --input "$out/photo/noisy.png" --mode denoise --out "$out/photo/denoised"

echo "== 7b. compression: a transform codec fitted on camera, the astronaut coded in 0.5 bit/pixel and decoded"
metaae-edge export-codec --data "$out/photo/camera.png" --out "$out/bundle-codec"
metaae-edge codec encode "$out/bundle-codec" --input "$out/photo/astronaut.png" --bpp 0.5 --out "$out/photo/astronaut.mq"
metaae-edge codec decode "$out/bundle-codec" --input "$out/photo/astronaut.mq" --out "$out/photo/astronaut-decoded.png"
python - "$out/photo" <<'PY'
import sys, numpy as np
from pathlib import Path
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio as psnr
d = Path(sys.argv[1])
a, b = (np.asarray(Image.open(d / n), np.float64) / 255 for n in ("astronaut.png", "astronaut-decoded.png"))
print(f"astronaut: {(d / 'astronaut.mq').stat().st_size} bytes ({8 * (d / 'astronaut.mq').stat().st_size / a.size:.3f} bit/pixel), PSNR {psnr(a, b, data_range=1):.2f} dB")
PY

echo "== 8. benchmark"
metaae-edge bench "$out/bundle-manifold" --batch 1,256 --duration-s 1 --json "$out/bench.json" --markdown "$out/bench.md"
metaae-edge bench "$out/bundle-digits" --batch 1,64 --duration-s 1 --json "$out/bench-digits.json"
echo "done: outputs in $out"
