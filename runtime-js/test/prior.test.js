// The VampPrior a manifest may carry (model.prior): refused with one line when malformed; sample() draws
// the components from n uniforms, then the normals, from the one generator; the two-call score's KL
// and logPrior are the mixture's. On a copy of the default bundle whose manifest is given a prior (its
// graphs stay N(0, I)'s: the score graph is removed, so scores take the two-call path). Parity of a real
// VampPrior bundle with the Python runtime is parity.test.js's (tests/runtime_js).
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { checkManifest } from '../src/manifest.js';
import { load } from '../src/node.js';
import { normals, uniforms } from '../src/rng.js';
import { DEFAULT_BUNDLE } from './helpers.js';

// The default bundle's manifest as a standard-prior bundle's: the checks and the copies below set the prior.
const good = JSON.parse(readFileSync(path.join(DEFAULT_BUNDLE, 'manifest.json'), 'utf8'));
delete good.model.prior;
good.model.config = { ...good.model.config, prior: 'standard', prior_components: 0 };
const L = good.model.latent_dim;
const rows = (C, f) => Array.from({ length: C }, (_, c) => Array.from({ length: L }, (_, j) => f(c, j)));
let copy;

// A copy of the default bundle with model.prior set (null: N(0, I)) and no score graphs, loaded.
async function withPrior(prior) {
  const manifest = structuredClone(good);
  if (prior !== null) {
    manifest.model.prior = prior;
    manifest.model.config = { ...manifest.model.config, prior: 'vamp', prior_components: prior.components };
  }
  for (const entry of Object.values(manifest.variants)) {
    delete manifest.files[entry.score];
    delete entry.score;
  }
  writeFileSync(path.join(copy, 'manifest.json'), JSON.stringify(manifest));
  return load(copy);
}

before(() => {
  copy = mkdtempSync(path.join(tmpdir(), 'vae-edge-js-prior-'));
  cpSync(DEFAULT_BUNDLE, copy, { recursive: true });
});

after(() => rmSync(copy, { recursive: true, force: true }));

test('a malformed model.prior, or one model.config contradicts, is refused on load with one line naming the field', () => {
  const vamp = (C) => ({ ...good.model.config, prior: 'vamp', prior_components: C });
  const check = (prior, config = vamp(prior?.components ?? 2)) => () => checkManifest({ ...good, model: { ...good.model, config, prior } }, 'm.json');
  const ok = { kind: 'vamp', components: 2, mu: rows(2, () => 0), logvar: rows(2, () => 0) };
  assert.equal(check(ok)().model.prior, ok);
  assert.equal(check(null, good.model.config)().model.prior, null); // as absent: N(0, I)
  assert.throws(check([1]), /^BundleError: m.json: model.prior.kind \[1\] is not one this runtime knows \(vamp; absent: N\(0, I\)\)$/);
  assert.throws(check({ ...ok, kind: 'flow' }), /^BundleError: m.json: model.prior.kind "flow" is not one this runtime knows/);
  assert.throws(check({ ...ok, components: 0 }), /model.prior.components must be a positive integer, got 0$/);
  assert.throws(check({ ...ok, components: 3 }), new RegExp(`model.prior.mu must be 3 rows \\(components\\) of ${L} finite numbers \\(latent_dim\\)$`));
  assert.throws(check({ ...ok, logvar: [ok.logvar[0], ok.logvar[1].slice(1)] }), /model.prior.logvar must be 2 rows/);
  assert.throws(check({ ...ok, mu: [ok.mu[0], [...ok.mu[1].slice(1), 'x']] }), /model.prior.mu must be 2 rows/);
  assert.throws(check({ ...ok, logvar: [ok.logvar[0].map(() => 1e30), ok.logvar[1]] }), /model.prior.logvar holds 1e\+30, beyond the 40 a component's logvar may have$/);
  assert.throws(check(undefined, vamp(2)), /^BundleError: m.json: model.config names the prior "vamp" but the manifest has no model.prior \(its components\)$/);
  assert.throws(check(ok, vamp(3)), /model.prior \(vamp, 2 components\) differs from model.config \(prior "vamp", prior_components 3\)$/);
  assert.throws(check(ok, good.model.config), /differs from model.config \(prior "standard"/);
});

test('sample: n uniforms choose the components, then the normals; z = mu_c + T exp(0.5 logvar_c) eps', async () => {
  // Spread-out means, one component much wider than the others: a wrong component or draw order shows.
  const mu = rows(3, (c, j) => (c - 1) * 1.5 + 0.25 * j);
  const logvar = rows(3, (c, j) => (c === 2 ? 0.5 : -1 - 0.1 * j));
  const vae = await withPrior({ kind: 'vamp', components: 3, mu, logvar });
  const n = 9;
  const [seed, T] = [5, 0.7];
  const u = uniforms(5n, n); // words 0 .. n - 1; the normals start at the next even word
  const eps = normals(5n, n * L, n + (n & 1));
  const z = new Float32Array(n * L);
  const picked = new Set();
  for (let i = 0; i < n; i++) {
    const c = Math.min(Math.floor(u[i] * 3), 2);
    picked.add(c);
    for (let j = 0; j < L; j++) z[i * L + j] = mu[c][j] + T * Math.exp(0.5 * logvar[c][j]) * eps[i * L + j];
  }
  assert.equal(picked.size, 3, 'seed 5 should pick every component of three');
  const want = await vae.decode({ data: z, shape: [n, L] });
  assert.deepEqual(Array.from((await vae.sample(n, { seed, temperature: T })).data), Array.from(want.data));
  await vae.release();
});

test('KL and logPrior are the mixture\'s; one component at N(0, I) gives back the standard prior', async () => {
  const x = { data: Float32Array.from({ length: 3 * 64 }, (_, i) => (i * 7) % 17), shape: [3, 1, 8, 8] };
  const z = { data: Float32Array.from({ length: 2 * L }, (_, i) => Math.sin(i) * 2), shape: [2, L] };
  const plain = await withPrior(null);
  const base = await plain.anomalyScore(x, { samples: 2, seed: 4 });
  const one = await withPrior({ kind: 'vamp', components: 1, mu: rows(1, () => 0), logvar: rows(1, () => 0) });
  const same = await one.anomalyScore(x, { samples: 2, seed: 4 });
  base.forEach((v, i) => assert.ok(Math.abs(same[i] - v) <= 1e-9 * Math.abs(v), `score ${i}: ${same[i]} against N(0, I)'s ${v}`));
  const lpPlain = plain.logPrior(z);
  const lpOne = one.logPrior(z);
  lpPlain.forEach((v, i) => assert.ok(Math.abs(lpOne[i] - v) <= 1e-12 * Math.abs(v)));
  assert.ok(Math.abs(plain.logPrior({ data: new Float32Array(L), shape: [L] }) + 0.5 * L * Math.log(2 * Math.PI)) < 1e-12);
  await one.release();
  // Two copies of one component: the same mixture, the same KL and density (the log C terms cancel).
  const comp = { mu: rows(1, (c, j) => 0.3 * j - 0.5), logvar: rows(1, (c, j) => -0.2 * j) };
  const single = await withPrior({ kind: 'vamp', components: 1, ...comp });
  const [kl1, lp1] = [await single.anomalyScore(x), single.logPrior(z)];
  await single.release();
  const twice = await withPrior({ kind: 'vamp', components: 2, mu: [...comp.mu, ...comp.mu], logvar: [...comp.logvar, ...comp.logvar] });
  const [kl2, lp2] = [await twice.anomalyScore(x), twice.logPrior(z)];
  kl1.forEach((v, i) => assert.ok(Math.abs(kl2[i] - v) <= 1e-9 * Math.abs(v)));
  lp1.forEach((v, i) => assert.ok(Math.abs(lp2[i] - v) <= 1e-12 * Math.abs(v)));
  // Against a direct float64 computation of the mixture density: C = 2 distinct components.
  const mixed = { mu: [comp.mu[0], rows(1, (c, j) => 1 - j)[0]], logvar: [comp.logvar[0], rows(1, () => 0.4)[0]] };
  const two = await withPrior({ kind: 'vamp', components: 2, ...mixed });
  const got = two.logPrior(z);
  for (let s = 0; s < 2; s++) {
    let p = 0;
    for (let c = 0; c < 2; c++) {
      let dens = 1;
      for (let j = 0; j < L; j++) {
        const v = Math.exp(mixed.logvar[c][j]);
        dens *= Math.exp(-((z.data[s * L + j] - mixed.mu[c][j]) ** 2) / (2 * v)) / Math.sqrt(2 * Math.PI * v);
      }
      p += dens / 2;
    }
    assert.ok(Math.abs(got[s] - Math.log(p)) < 1e-9, `logPrior ${s}: ${got[s]} against ${Math.log(p)}`);
  }
  assert.equal(typeof two.logPrior({ data: z.data.slice(0, L), shape: [L] }), 'number');
  assert.throws(() => two.logPrior({ data: new Float32Array(L + 1), shape: [L + 1] }), /^InputError: z: expected shape/);
  await two.release();
  await plain.release();
});
