// The JavaScript runtime against the Python runtime on random inputs, every method, every variant.
// VAE_EDGE_PARITY names a JSON file written by tests/runtime_js (the Python side): per bundle and
// variant, inputs and the Python runtime's outputs. fp32 agrees within 1e-5 relative (to each value, or
// to the output's largest magnitude for values near zero); quantized variants within the tolerance of
// their conformance set (their accuracy gate). Each case also holds inputs beyond the valid range (x_out):
// clipped and scored with the out-of-range penalty on both sides. sample() must decode exactly the latents
// the Python side drew by the contract (inputs.z_sample: N(0, I) or the bundle's VampPrior), bit for bit,
// and logPrior agrees with Python's log_prior. Without VAE_EDGE_PARITY this file is skipped, saying so.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { load } from '../src/node.js';
import { excess } from './helpers.js';

const fixture = process.env.VAE_EDGE_PARITY;
const cases = fixture ? JSON.parse(readFileSync(fixture, 'utf8')) : [];
const arr = (e) => ({ data: e.dtype === 'float32' ? Float32Array.from(e.data) : e.data, shape: e.shape });

test('parity against the Python runtime', { skip: fixture ? false : 'VAE_EDGE_PARITY not set (tests/runtime_js/test_js.py sets it)' }, async (t) => {
  for (const c of cases) {
    await t.test(`${path.basename(c.bundle)} ${c.variant}`, async () => {
      const vae = await load(c.bundle, { precision: c.variant });
      const golden = JSON.parse(readFileSync(path.join(c.bundle, 'golden.json'), 'utf8'));
      const tolerance = golden.variants[c.variant].tolerance;
      const x = arr(c.inputs.x);
      const z = arr(c.inputs.z);
      const size = vae.size;
      const one = (i) => ({ data: x.data.slice(i * size, (i + 1) * size), shape: vae.shape });
      const { mu, logvar } = await vae.encode(x);
      // The latents sample() hands the decoder (the wrapped method still runs).
      const decodeModel = vae._decodeModel.bind(vae);
      let drawn = null;
      vae._decodeModel = (latents, n) => {
        drawn = latents;
        return decodeModel(latents, n);
      };
      const sampled = (await vae.sample(c.calls.sample.n, { seed: c.calls.sample.seed, temperature: c.calls.sample.temperature })).data;
      vae._decodeModel = decodeModel;
      assert.deepEqual(Array.from(drawn), Array.from(arr(c.inputs.z_sample).data), 'sample(): latents differ from the Python runtime\'s');
      const got = {
        'encode.mu': mu.data,
        'encode.logvar': logvar.data,
        decode: (await vae.decode(z)).data,
        reconstruct: (await vae.reconstruct(x)).data,
        sample: sampled,
        log_prior: vae.logPrior(z),
        interpolate: (await vae.interpolate(one(0), one(1), c.calls.interpolate.steps)).data,
        anomaly_score: await vae.anomalyScore(x),
        anomaly_score_mc: await vae.anomalyScore(x, { samples: c.calls.anomaly_score_mc.samples, seed: c.calls.anomaly_score_mc.seed }),
      };
      // Out of the valid range: clipped and scored with the penalty, as the Python runtime does.
      const xOut = arr(c.inputs.x_out);
      Object.assign(got, {
        'out.encode.mu': (await vae.encode(xOut)).mu.data,
        'out.reconstruct': (await vae.reconstruct(xOut)).data,
        'out.anomaly_score': await vae.anomalyScore(xOut),
        'out.anomaly_score_mc': await vae.anomalyScore(xOut, { samples: c.calls.anomaly_score_mc.samples, seed: c.calls.anomaly_score_mc.seed }),
      });
      for (const [name, want] of Object.entries(c.expected)) {
        if (name.endsWith('is_anomaly')) continue;
        const w = want.data;
        const scale = Math.max(...w.map(Math.abs), 1e-3);
        const bare = name.replace(/^out\./, '');
        const key = bare === 'anomaly_score_mc' ? 'anomaly_score' : bare;
        // log p(z) is float64 arithmetic on the same numbers in both runtimes, whatever the variant
        let tol = c.variant === 'fp32' ? { rtol: 1e-5, atol: 1e-5 * scale } : tolerance[key];
        if (name === 'log_prior') tol = { rtol: 1e-9, atol: 1e-9 * scale };
        assert.equal(got[name].length, w.length, `${name}: ${got[name].length} values, Python gave ${w.length}`);
        const { worst, at } = excess(got[name], w, tol);
        assert.ok(worst <= 0, `${name}: at ${at} JavaScript ${got[name][at]}, Python ${w[at]} (rtol ${tol.rtol}, atol ${tol.atol})`);
      }
      const limit = vae.threshold(0.99);
      for (const [prefix, input] of [['', x], ['out.', xOut]]) {
        const decisions = await vae.isAnomaly(input);
        c.expected[`${prefix}is_anomaly`].data.forEach((want, i) => {
          const nearLimit = Math.abs(got[`${prefix}anomaly_score`][i] - limit) <= tolerance.anomaly_score.atol + tolerance.anomaly_score.rtol * limit;
          assert.ok(decisions[i] === want || nearLimit, `${prefix}is_anomaly ${i}: JavaScript ${decisions[i]}, Python ${want}`);
        });
      }
      await vae.release();
    });
  }
});
