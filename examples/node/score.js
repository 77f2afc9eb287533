// Run a metaae-edge bundle's autoencoder.onnx from Node.js with only the manifest:
// no Python, no metaae-edge. Usage:
//   npm install --ignore-scripts onnxruntime-node   (the CPU binary ships in the package)
//   node score.js BUNDLE_DIR [input.csv]
// Prints per-sample anomaly scores (and the first reconstruction) for the CSV rows, or
// for two copies of the training mean when no CSV is given.
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');

async function main() {
  const dir = process.argv[2];
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
  const d = manifest.input.shape[1];
  const graph = manifest.files.find((f) => f.role === 'autoencoder' && f.precision === 'fp32');
  let rows;
  if (process.argv[3]) {
    rows = fs.readFileSync(process.argv[3], 'utf8').trim().split('\n')
      .map((line) => line.split(',').map(Number))
      .filter((r) => r.every((v) => Number.isFinite(v)));  // skips a header row
  } else {
    rows = [manifest.normalization.mean, manifest.normalization.mean];
  }
  if (rows.some((r) => r.length !== d)) throw new Error(`expected ${d} features per row`);
  const x = Float32Array.from(rows.flat());
  const session = await ort.InferenceSession.create(path.join(dir, graph.path));
  const out = await session.run({ [manifest.input.names[0]]: new ort.Tensor('float32', x, [rows.length, d]) });
  console.log('score', Array.from(out.score.data));
  console.log('reconstruction[0]', Array.from(out.reconstruction.data.slice(0, d)));
  const thr = manifest.threshold;
  if (thr) console.log('anomaly', Array.from(out.score.data).map((s) => s > thr.value));
}

main().catch((e) => { console.error(`error: ${e.message}`); process.exit(2); });
