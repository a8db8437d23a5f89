// The API's refusals: one-line InputError/BundleError messages as rejected promises (never an
// unhandled rejection, never a crash), and the Python runtime's meanings on the default bundle.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { BundleError, InputError, load } from '../src/node.js';
import { DEFAULT_BUNDLE, withEditedManifest } from './helpers.js';

let vae;
const unhandled = [];
const onUnhandled = (reason) => unhandled.push(reason);

before(async () => {
  process.on('unhandledRejection', onUnhandled);
  vae = await load(DEFAULT_BUNDLE);
});

after(async () => {
  await vae.release();
  process.off('unhandledRejection', onUnhandled);
  assert.deepEqual(unhandled, []);
});

async function refuses(promise, pattern) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof InputError, `${err.name}: ${err.message}`);
    assert.match(err.message, pattern);
    assert.doesNotMatch(err.message, /\n/);
    return true;
  });
}

test('shapes: one sample or a batch, in any array form', async () => {
  const size = vae.size;
  const one = new Float32Array(size).fill(3);
  const a = await vae.encode({ data: one, shape: vae.shape });
  assert.deepEqual(a.mu.shape, [vae.latentDim]);
  const nested = [[Array.from({ length: 8 }, () => Array(8).fill(3))]];
  const b = await vae.encode(nested);
  assert.deepEqual(Array.from(b.mu.data), Array.from(a.mu.data));
  const batch = await vae.reconstruct({ data: new Float32Array(3 * size).fill(3), shape: [3, ...vae.shape] });
  assert.deepEqual(batch.shape, [3, ...vae.shape]);
  const empty = await vae.decode({ data: new Float32Array(0), shape: [0, vae.latentDim] });
  assert.deepEqual(empty.shape, [0, ...vae.shape]);
  assert.equal(typeof (await vae.anomalyScore(one.length === size ? { data: one, shape: vae.shape } : one)), 'number');
});

test('bad inputs are refused with one line naming what was expected', async () => {
  await refuses(vae.encode({ data: new Float32Array(10), shape: [10] }), /^x: expected shape \[n, 1, 8, 8\] or \[1, 8, 8\], got \[10\]$/);
  await refuses(vae.encode({ data: new Float32Array(64).fill(Number.NaN), shape: [1, 8, 8] }), /^x: contains NaN or Inf$/);
  await refuses(vae.encode([[['a']]]), /^x: expected numbers, got string at index 0$/);
  await refuses(vae.encode([[1, 2], [3]]), /irregular/);
  await refuses(vae.encode(null), /^x: expected an array/);
  await refuses(vae.encode({ data: [1, 2], shape: [3] }), /holds 2 values, shape \[3\] needs 3/);
  await refuses(vae.decode({ data: new Float32Array(vae.latentDim).fill(1e7), shape: [vae.latentDim] }), /^z: values must lie within ±1000000/);
  await refuses(vae.sample(-1), /^n: expected an integer/);
  await refuses(vae.sample(2, { seed: -3 }), /^seed: expected an integer from 0 to 2\^64 - 1, got -3$/);
  await refuses(vae.sample(2, { temperature: 0 }), /^temperature/);
  await refuses(vae.sample(2, { temperature: Number.NaN }), /^temperature: expected a number in \(0, 1e6\], got NaN$/);
  await refuses(vae.interpolate(new Float32Array(64), new Float32Array(64), 1), /^x_a: expected shape|^steps/);
  await refuses(vae.anomalyScore({ data: new Float32Array(64), shape: [1, 8, 8] }, { samples: 0 }), /^samples: expected an integer from 1/);
  await refuses(vae.isAnomaly({ data: new Float32Array(64), shape: [1, 8, 8] }, 0.42), /^quantile 0.42 is not calibrated in this bundle; it stores p50 \(0.5\)/);
  assert.throws(() => vae.threshold('p12'), InputError);
});

test('out-of-range inputs are clipped and scored, as runtime/likelihoods.py out_of_range_penalty', async () => {
  // The default bundle: Bernoulli, data [0, 16] (scale 16), no data.valid_range: bounds [0, 1] in model space.
  const x = (v) => ({ data: new Float32Array(64).fill(v), shape: [1, 8, 8] });
  const [top, above, below] = [x(16), x(40), x(-8)];
  assert.deepEqual(Array.from((await vae.encode(above)).mu.data), Array.from((await vae.encode(top)).mu.data));
  assert.deepEqual(Array.from((await vae.reconstruct(below)).data), Array.from((await vae.reconstruct(x(0))).data));
  // 64 values each 1.5 model-space units beyond 1 (40 / 16 = 2.5): 64 * (1000 + 1000 * 1.5) nats
  assert.ok(Math.abs((await vae.anomalyScore(above)) - (await vae.anomalyScore(top)) - 160000) < 1e-6);
  assert.ok(Math.abs((await vae.anomalyScore(below)) - (await vae.anomalyScore(x(0))) - 96000) < 1e-6);
  assert.equal(await vae.isAnomaly(above), true);
  // finite beyond float32 (a plain array of numbers): scored and flagged, not refused as Inf (as the Python runtime)
  const far = { data: Array.from({ length: 64 }, (_, i) => (i === 5 ? 1e300 : 8)), shape: [1, 8, 8] };
  assert.ok(Number.isFinite(await vae.anomalyScore(far)) && (await vae.isAnomaly(far)) === true);
  // within the rounding tolerance (1e-4 in model space): clipped, no penalty
  assert.equal(await vae.anomalyScore(x(16.001)), await vae.anomalyScore(top));
  const { checkManifest } = await import('../src/manifest.js');
  const { readFileSync } = await import('node:fs');
  const good = JSON.parse(readFileSync(`${DEFAULT_BUNDLE}/manifest.json`, 'utf8'));
  assert.throws(() => checkManifest({ ...good, data: { ...good.data, valid_range: { low: 0 } } }, 'm.json'), /^BundleError: m.json: data.valid_range must be \{low, high\}/);
});

test('loading refuses unknown precisions and missing folders with one line', async () => {
  await refuses(load(DEFAULT_BUNDLE, { precision: 'int4' }), /^precision "int4" is not in this bundle; it has fp32, int8(, [a-z0-9-]+)*$/);
  await refuses(load(DEFAULT_BUNDLE, { threads: 0 }), /^threads/);
  await refuses(load(DEFAULT_BUNDLE, { executionProviders: ['bogus'] }), /^executionProviders: "bogus" is not a backend of this onnxruntime \(it has cpu/);
  await refuses(load(DEFAULT_BUNDLE, { executionProviders: 'cpu' }), /^executionProviders: expected a non-empty list of backend names, got "cpu"$/);
  await assert.rejects(load('/nonexistent'), (err) => err instanceof BundleError && err.message === '/nonexistent: no such bundle folder');
  await assert.rejects(load(`${DEFAULT_BUNDLE}/manifest.json`), (err) => err instanceof BundleError && /is a file; expected the bundle folder/.test(err.message));
});

test('precision "auto" on a bundle without a recommended variant runs fp32, as the Python runtime', async () => {
  await withEditedManifest((manifest) => { delete manifest.variants.auto; }, async (copy) => {
    const fallback = await load(copy, { precision: 'auto' });
    assert.equal(fallback.precision, 'fp32');
    await fallback.release();
  });
});

test('a manifest that disagrees with its graphs is refused at load, naming the graph and the entry', async () => {
  // manifest.json has no sha256 of its own: what each graph was exported with (its metadata) is the check
  const edits = [
    [(m) => { m.data.shape = [1, 4, 16]; }, 'encoder.onnx: carries vae_edge.input_shape="[1, 8, 8]", the manifest says [1, 4, 16]'], // the same 64 values
    [(m) => { m.data.preprocessing.scale = 8; }, 'encoder.onnx: was exported with preprocessing {"kind":"affine","offset":0,"scale":16'],
    [(m) => { m.data.preprocessing.offset = 1; }, 'encoder.onnx: was exported with preprocessing {"kind":"affine","offset":0,'],
    // the variant each graph was made as: an int8 graph named as fp32, the reverse, another method
    [(m) => { m.variants.fp32.decoder = 'decoder.int8.onnx'; }, 'decoder.int8.onnx: is a derived variant ('],
    [(m) => { m.variants.int8.decoder = 'decoder.onnx'; }, 'decoder.onnx: carries no variant method; it is not an int8 graph', 'int8'],
    [(m) => { m.variants.int8.method = 'fp16 (half precision)'; }, 'encoder.int8.onnx: was made by "dynamic quantization', 'int8'],
  ];
  for (const [edit, message, precision = 'fp32'] of edits) {
    await withEditedManifest(edit, async (copy) => {
      await assert.rejects(load(copy, { precision }), (err) => err instanceof BundleError && err.message.startsWith(`${copy}/${message}`) && !err.message.includes('\n'));
    });
  }
});

test('a released VAE refuses further calls with one line, and a second release is harmless', async () => {
  const own = await load(DEFAULT_BUNDLE);
  await own.release();
  await own.release();
  await assert.rejects(own.decode(new Float32Array(own.latentDim)), (err) => err instanceof InputError && err.message === 'this VAE was released (release()); load the bundle again to use it');
});

test('a manifest of another modality or schema is refused with one line naming the field', async () => {
  const { checkManifest } = await import('../src/manifest.js');
  const { readFileSync } = await import('node:fs');
  const good = JSON.parse(readFileSync(`${DEFAULT_BUNDLE}/manifest.json`, 'utf8'));
  const bad = (patch) => () => checkManifest({ ...good, ...patch(structuredClone(good)) }, 'm.json');
  assert.throws(bad(() => ({ schema: 'vae-edge/bundle/2' })), /^BundleError: m.json: schema "vae-edge\/bundle\/2" is not supported/);
  assert.throws(bad((m) => ({ data: { ...m.data, kind: 'text' } })), /data kind "text" is not one this runtime knows \(image, vector, sequence\)/);
  assert.throws(bad((m) => ({ model: { ...m.model, latent_dim: 0 } })), /model.latent_dim must be a positive integer, got 0/);
  assert.throws(bad((m) => ({ files: { ...m.files, '../x': { sha256: 'a'.repeat(64), bytes: 1 } } })), /points outside the bundle folder/);
  assert.throws(bad((m) => ({ variants: { fp32: { ...m.variants.fp32, decoder: 'nope.onnx' } } })), /uses "nope.onnx", which the files list lacks/);
});

test('meanings: same seed same samples, thresholds by fraction or name, interpolation ends', async () => {
  const a = await vae.sample(4, { seed: 11 });
  const b = await vae.sample(4, { seed: 11n });
  const c = await vae.sample(4, { seed: 12 });
  assert.deepEqual(Array.from(a.data), Array.from(b.data));
  assert.notDeepEqual(Array.from(a.data), Array.from(c.data));
  assert.equal(vae.threshold(0.99), vae.threshold('p99'));
  const x0 = { data: new Float32Array(64).fill(2), shape: [1, 8, 8] };
  const x1 = { data: new Float32Array(64).fill(9), shape: [1, 8, 8] };
  const path = await vae.interpolate(x0, x1, 5);
  const r0 = await vae.reconstruct(x0);
  assert.deepEqual(Array.from(path.data.subarray(0, 64)), Array.from(r0.data));
  const mc1 = await vae.anomalyScore(x0, { samples: 4, seed: 3 });
  const mc2 = await vae.anomalyScore(x0, { samples: 4, seed: 3 });
  assert.equal(mc1, mc2);
});
