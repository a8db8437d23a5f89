#!/usr/bin/env node
// Decode latency of the JavaScript runtime on onnxruntime-node: node bench/decode.mjs [BUNDLE] [--precision P]
// Prints one JSON line: median milliseconds per decode call at batch 1 and 64 (7 rounds), with machine and load.
// The browser's figures come from test/browser.mjs; the Python runtime's from `vae-run bench`.
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { load } from '../src/node.js';

const args = process.argv.slice(2);
const precision = args.includes('--precision') ? args[args.indexOf('--precision') + 1] : 'fp32';
const bundle = args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--precision')
  ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'runtime', 'default_bundle');
const vae = await load(bundle, { precision, threads: 1 });
const out = { bundle, precision, runtime: 'onnxruntime-node 1.30, 1 thread', cpu: os.cpus()[0]?.model, cores: os.cpus().length, load_1min: os.loadavg()[0] };
for (const n of [1, 64]) {
  const z = { data: new Float32Array(n * vae.latentDim).fill(0.1), shape: [n, vae.latentDim] };
  for (let i = 0; i < 50; i++) await vae.decode(z);
  const rounds = [];
  const reps = n === 1 ? 500 : 100;
  for (let r = 0; r < 7; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < reps; i++) await vae.decode(z);
    rounds.push(Number(process.hrtime.bigint() - t0) / 1e6 / reps);
  }
  rounds.sort((a, b) => a - b);
  out[`decode_batch_${n}_ms`] = rounds[3];
}
await vae.release();
process.stdout.write(`${JSON.stringify(out)}\n`);
