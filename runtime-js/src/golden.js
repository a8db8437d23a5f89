// The conformance ("golden") set: recompute every recorded output of every variant and compare within
// the tolerance stored beside it (the Python side: runtime/golden.py; the file format is documented there).
import { BundleError } from './errors.js';

export const GOLDEN = 'golden.json';
export const FORMAT = 'vae-edge/golden/1';
export const OUTPUTS = ['encode.mu', 'encode.logvar', 'decode', 'reconstruct', 'sample', 'interpolate', 'anomaly_score', 'threshold', 'is_anomaly'];

/**
 * Parse and check golden.json's bytes (already verified against the manifest's sha256).
 * @param {Uint8Array} bytes
 * @param {string} where
 */
export function parseGolden(bytes, where) {
  let golden;
  try {
    golden = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    throw new BundleError(`${where}: unreadable (${err.message})`);
  }
  if (golden === null || typeof golden !== 'object' || golden.format !== FORMAT) throw new BundleError(`${where}: format ${JSON.stringify(golden?.format)} is not "${FORMAT}"`);
  return golden;
}

function array(entry, where) {
  if (!entry || !Array.isArray(entry.shape) || !Array.isArray(entry.data)) throw new BundleError(`${where}: not an array entry`);
  return { data: entry.dtype === 'float32' ? Float32Array.from(entry.data) : entry.data, shape: entry.shape };
}

/**
 * Every golden output computed by vae from the golden inputs.
 * @param {import('./core.js').VAE} vae
 * @param {object} golden
 * @returns {Promise<Record<string, {data: ArrayLike<number|boolean>, shape: number[]}>>}
 */
export async function outputsOf(vae, golden) {
  const x = array(golden.inputs.x, 'inputs.x');
  const z = array(golden.inputs.z, 'inputs.z');
  const { calls } = golden;
  const size = x.shape.slice(1).reduce((a, b) => a * b, 1);
  const sampleOf = (i) => ({ data: x.data.slice(i * size, (i + 1) * size), shape: x.shape.slice(1) });
  const { mu, logvar } = await vae.encode(x);
  const scores = await vae.anomalyScore(x);
  const n = x.shape[0];
  return {
    'encode.mu': mu,
    'encode.logvar': logvar,
    decode: await vae.decode(z),
    reconstruct: await vae.reconstruct(x),
    sample: await vae.sample(calls.sample.n, { seed: calls.sample.seed }),
    interpolate: await vae.interpolate(sampleOf(0), sampleOf(1), calls.interpolate.steps),
    anomaly_score: { data: scores, shape: [n] },
    threshold: { data: [vae.threshold(calls.threshold.quantile)], shape: [] },
    is_anomaly: { data: await vae.isAnomaly(x, calls.threshold.quantile), shape: [n] },
  };
}

/**
 * null if got reproduces want (|got - want| <= atol + rtol |want|; decisions exactly, except where the
 * score lies within the score tolerance of the threshold), else a one-line description.
 */
export function compare(got, want, tolerance, context = {}) {
  const same = got.shape.length === want.shape.length && got.shape.every((d, i) => d === want.shape[i]);
  if (!same) return `shape [${got.shape}], expected [${want.shape}]`;
  if (typeof want.data[0] === 'boolean') {
    for (let i = 0; i < want.data.length; i++) {
      if (Boolean(got.data[i]) === want.data[i]) continue;
      const { scores, threshold, scoreTolerance: t } = context;
      if (scores && Math.abs(scores[i] - threshold) <= t.atol + t.rtol * Math.abs(threshold)) continue;
      return `decision ${i} is ${Boolean(got.data[i])}, expected ${want.data[i]}`;
    }
    return null;
  }
  let worst = -Infinity;
  let at = -1;
  let maxDiff = 0;
  for (let i = 0; i < want.data.length; i++) {
    const g = Number(got.data[i]);
    const w = Number(want.data[i]);
    const diff = Number.isFinite(g) ? Math.abs(g - w) : Infinity;
    const excess = diff - (tolerance.atol + tolerance.rtol * Math.abs(w));
    if (diff > maxDiff) maxDiff = diff;
    if (excess > worst) {
      worst = excess;
      at = i;
    }
  }
  if (worst <= 0) return null;
  const allowed = tolerance.atol + tolerance.rtol * Math.abs(Number(want.data[at]));
  return `max |difference| ${maxDiff.toPrecision(3)} (at flat index ${at}: got ${Number(got.data[at]).toPrecision(8)}, expected ${Number(want.data[at]).toPrecision(8)}; allowed ${allowed.toPrecision(3)})`;
}

/**
 * Run the conformance set with load(precision) for each recorded variant.
 * @param {object} golden parsed golden.json
 * @param {object} manifest
 * @param {(precision: string) => Promise<import('./core.js').VAE>} load
 * @returns {Promise<{lines: string[], mismatches: {variant: string, output: string, detail: string}[]}>}
 */
export async function runGolden(golden, manifest, load) {
  const lines = [];
  const mismatches = [];
  for (const [variant, expected] of Object.entries(golden.variants ?? {})) {
    if (!Object.hasOwn(manifest.variants, variant)) throw new BundleError(`${GOLDEN}: records variant "${variant}", which the manifest lacks`);
    const vae = await load(variant);
    const got = await outputsOf(vae, golden);
    const tol = expected.tolerance;
    for (const output of OUTPUTS) {
      const want = array(expected.outputs[output], `${GOLDEN}: ${variant} ${output}`);
      let tolerance = tol[output] ?? tol.default;
      let context = {};
      if (output === 'is_anomaly') {
        tolerance = tol.anomaly_score ?? tol.default;
        context = { scores: got.anomaly_score.data, threshold: got.threshold.data[0], scoreTolerance: tolerance };
      }
      const detail = compare(got[output], want, tolerance, context);
      if (detail === null) {
        lines.push(`✓ ${variant} ${output}`);
      } else {
        mismatches.push({ variant, output, detail });
        lines.push(`✗ ${variant} ${output}: ${detail}`);
      }
    }
    await vae.release();
  }
  return { lines, mismatches };
}
