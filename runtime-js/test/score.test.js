// anomalyScore takes one session call, of the bundle's score graph, where the variant names one (as the
// Python runtime does), and the encoder + decoder where it does not (bundles exported before it):
// the same scores within float32 rounding, the out-of-range penalty added either way.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { load } from '../src/node.js';
import { DEFAULT_BUNDLE, excess } from './helpers.js';

// Counts the runs of each of the VAE's real sessions (it wraps run; the session still runs).
function countRuns(vae) {
  const counts = { encoder: 0, decoder: 0, score: 0 };
  for (const graph of Object.keys(counts)) {
    const session = vae[`_${graph}`];
    if (session === null) continue;
    const run = session.run.bind(session);
    session.run = (...args) => {
      counts[graph] += 1;
      return run(...args);
    };
  }
  return counts;
}

test('a score is one call of the score graph; Monte-Carlo scores and bundles without it take the encoder and decoder', async () => {
  const copy = mkdtempSync(path.join(tmpdir(), 'vae-edge-js-score-'));
  try {
    cpSync(DEFAULT_BUNDLE, copy, { recursive: true });
    const manifest = JSON.parse(readFileSync(path.join(copy, 'manifest.json'), 'utf8'));
    for (const entry of Object.values(manifest.variants)) {
      delete manifest.files[entry.score];
      delete entry.score;
    }
    writeFileSync(path.join(copy, 'manifest.json'), JSON.stringify(manifest));
    // Digit-like inputs: the model's own samples, rounded to grey levels. On random noise the decoder
    // saturates (|logit| > 16) at pixels whose grey level is neither 0 nor 16, where the two-call path's
    // probabilities, clipped 1e-7 from 0 and 1, lose up to nats a pixel and the score graph, reading
    // logits, does not (137.43 against 137.15 nats on one noise sample of the default bundle of
    // 2026-12-01 evening): a difference of the old path, not of the score graph.
    const sampler = await load(DEFAULT_BUNDLE);
    const drawn = await sampler.sample(16, { seed: 7 });
    await sampler.release();
    const x = { data: Float32Array.from(drawn.data, (v) => Math.round(v)), shape: drawn.shape };
    const out = { data: x.data.slice(), shape: x.shape };
    out.data[3] = 20; // beyond the valid range 0..16: clipped, with the penalty
    for (const precision of ['fp32', 'int8']) {
      const fused = await load(DEFAULT_BUNDLE, { precision });
      const twoCalls = await load(copy, { precision });
      assert.notEqual(fused._score, null);
      assert.equal(twoCalls._score, null);
      const counts = countRuns(fused);
      const a = await fused.anomalyScore(x);
      assert.deepEqual(counts, { encoder: 0, decoder: 0, score: 1 });
      const single = await fused.anomalyScore({ data: x.data.slice(0, 64), shape: [1, 8, 8] });
      assert.equal(single, (await fused.anomalyScore({ data: x.data.slice(0, 64), shape: [1, 1, 8, 8] }))[0]); // int8 quantizes per batch: a batch of one
      await fused.anomalyScore(x, { samples: 2, seed: 1 });
      assert.deepEqual(counts, { encoder: 1, decoder: 2, score: 3 });
      const b = await twoCalls.anomalyScore(x);
      // The score graph reads the decoder's logits; two calls read its float32 probabilities, whose
      // Sigmoid is exact to ~1.7e-7 absolute only (docs/bundle.md), as in Python's gate for bundles
      // without a score graph.
      const { worst, at } = excess(a, b, { rtol: 1e-3, atol: 1e-4 });
      assert.ok(worst <= 0, `${precision} at ${at}: score graph ${a[at]}, two calls ${b[at]}`);
      const [pa, pb] = [await fused.anomalyScore(out), await twoCalls.anomalyScore(out)];
      assert.ok(pa[0] - a[0] > 1000 && Math.abs((pa[0] - a[0]) - (pb[0] - b[0])) < 1e-2, `penalty: ${pa[0] - a[0]} against ${pb[0] - b[0]}`);
      await fused.release();
      await twoCalls.release();
    }
  } finally {
    rmSync(copy, { recursive: true, force: true });
  }
});

test('a Monte-Carlo score draws z = float32(mu + exp(0.5 logvar) eps) with exp in float64, as the Python runtime', async () => {
  // float64 exp: a float32 one (numpy's SIMD exp is not correctly rounded) gave other z than Python's
  const { normals } = await import('../src/rng.js');
  const vae = await load(DEFAULT_BUNDLE);
  const x = await vae.sample(8, { seed: 3 });
  const { mu, logvar } = await vae.encode(x);
  const eps = normals(5n, mu.data.length);
  const want = Float32Array.from(mu.data, (m, i) => m + Math.exp(0.5 * logvar.data[i]) * eps[i]);
  const decode = vae._decodeModel.bind(vae);
  let drawn = null;
  vae._decodeModel = (z, n) => {
    drawn = z;
    return decode(z, n);
  };
  await vae.anomalyScore(x, { samples: 1, seed: 5 });
  assert.deepEqual(Array.from(drawn), Array.from(want));
  await vae.release();
});
