// manifest.json checks, mirroring the Python runtime's read_manifest (runtime/bundle.py): a hand-edited or
// foreign manifest fails on load with one line naming the field.
import { BundleError } from './errors.js';

export const SCHEMA = 'vae-edge/bundle/1';
export const MANIFEST = 'manifest.json';
export const GRAPHS = ['encoder', 'decoder'];
// Graphs a variant may also name (runtime/contract.py's optional specs): the fused score graph,
// x -> negative ELBO at z = mu in one session call; bundles exported before it lack it.
export const OPTIONAL_GRAPHS = ['score'];
export const LIKELIHOODS = ['bernoulli', 'gaussian'];
// The data kinds whose bundles hold an encoder and a decoder (runtime/contract.py's MODALITIES that this
// runtime implements); a manifest without data.kind predates it and holds those two graphs.
export const KINDS = ['image', 'vector', 'sequence'];
// Priors a manifest may give in model.prior (absent: N(0, I)): the VampPrior's mixture of C diagonal
// Gaussians, the encoder at its pseudo-inputs, stored as numbers (it lives outside the graphs).
export const PRIORS = ['vamp'];

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const isNumber = (v) => typeof v === 'number' && Number.isFinite(v);
const isPositiveInt = (v) => Number.isInteger(v) && v > 0;

/**
 * A manifest number, or nested list of the sample shape, flattened (Float64Array of the sample size, or
 * one number); null when it is neither or holds a non-finite value.
 * @param {unknown} value
 * @param {number[]} shape
 * @returns {number|Float64Array|null}
 */
export function perFeature(value, shape) {
  if (isNumber(value)) return value;
  if (!Array.isArray(value)) return null;
  const flat = [];
  const walk = (v, depth) => {
    if (depth === shape.length) {
      if (!isNumber(v)) throw new Error('not a number');
      flat.push(v);
      return;
    }
    if (!Array.isArray(v) || v.length !== shape[depth]) throw new Error('wrong shape');
    for (const item of v) walk(item, depth + 1);
  };
  try {
    walk(value, 0);
  } catch {
    return null;
  }
  return Float64Array.from(flat);
}

function positive(value, shape) {
  const a = perFeature(value, shape);
  if (a === null) return false;
  return typeof a === 'number' ? a > 0 : a.every((v) => v > 0);
}

export function shorten(value) {
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value); // JSON writes NaN and Infinity as null
  let text;
  try {
    text = JSON.stringify(value);
  } catch {
    text = String(value);
  }
  if (text === undefined) text = String(value);
  return text.length <= 120 ? text : `${text.slice(0, 117)}...`;
}

/**
 * A file name from the manifest must stay a plain name inside the bundle folder.
 * @param {string} where
 * @param {unknown} name
 * @returns {string}
 */
export function safeMember(where, name) {
  if (typeof name !== 'string' || !name) throw new BundleError(`${where}: manifest names a file with an invalid name ${shorten(name)}`);
  if (name.includes('/') || name.includes('\\') || name.includes('\0') || name === '.' || name === '..') {
    throw new BundleError(`${where}: manifest file name ${shorten(name)} points outside the bundle folder`);
  }
  return name;
}

/**
 * Check a parsed manifest (schema, sections, fields the runtime relies on).
 * @param {unknown} m parsed JSON
 * @param {string} where the manifest's path or URL, for messages
 * @returns {object} the manifest
 */
export function checkManifest(m, where) {
  const need = (ok, what) => {
    if (!ok) throw new BundleError(`${where}: ${what}`);
  };
  need(isObject(m), 'manifest must be a JSON object');
  need(m.schema === SCHEMA, `schema ${shorten(m.schema)} is not supported (expected "${SCHEMA}")`);
  for (const key of ['model', 'data', 'variants', 'files']) need(isObject(m[key]), `manifest lacks the "${key}" section`);
  need(Object.keys(m.variants).length > 0, 'manifest lists no variants');
  const { model, data } = m;
  const kind = data.kind ?? 'image';
  need(KINDS.includes(kind), `data kind ${shorten(kind)} is not one this runtime knows (${KINDS.join(', ')})`);
  need(isPositiveInt(model.latent_dim), `model.latent_dim must be a positive integer, got ${shorten(model.latent_dim)}`);
  need(LIKELIHOODS.includes(model.likelihood), `model.likelihood ${shorten(model.likelihood)} is not one this runtime knows (${LIKELIHOODS.join(', ')})`);
  checkPrior(model, need);
  const shape = data.shape;
  need(Array.isArray(shape) && shape.length > 0 && shape.every(isPositiveInt), `data.shape must be a list of positive integers, got ${shorten(shape)}`);
  const pre = data.preprocessing;
  need(isObject(pre) && pre.kind === 'affine' && perFeature(pre.offset, shape) !== null && positive(pre.scale, shape),
    `data.preprocessing must be {kind: affine, offset, scale > 0}, each a number or a list of shape ${shorten(shape)}, got ${shorten(pre)}`);
  const valid = data.valid_range;
  if (valid !== undefined && valid !== null) {
    need(isObject(valid) && perFeature(valid.low, shape) !== null && perFeature(valid.high, shape) !== null,
      `data.valid_range must be {low, high}, each a number or a list of shape ${shorten(shape)}, got ${shorten(valid)}`);
  }
  if (model.likelihood === 'gaussian') {
    const params = model.likelihood_params;
    need(isObject(params) && positive(params.std, shape), `model.likelihood_params.std must be a number > 0 or a list of shape ${shorten(shape)} for a gaussian model, got ${shorten(params)}`);
  }
  for (const [name, meta] of Object.entries(m.files)) {
    safeMember(where, name);
    need(isObject(meta) && typeof meta.sha256 === 'string' && /^[0-9a-f]{64}$/.test(meta.sha256) && (meta.bytes === undefined || Number.isInteger(meta.bytes)), `files["${name}"] must give sha256 and bytes`);
  }
  for (const [variant, entry] of Object.entries(m.variants)) {
    need(isObject(entry), `variants["${variant}"] must be an object`);
    for (const graph of GRAPHS) {
      need(typeof entry[graph] === 'string', `variant "${variant}" names no ${graph} graph`);
      need(entry[graph] in m.files, `variant "${variant}" uses "${entry[graph]}", which the files list lacks`);
    }
    for (const graph of OPTIONAL_GRAPHS) {
      if (entry[graph] === undefined) continue;
      need(typeof entry[graph] === 'string' && entry[graph] in m.files, `variant "${variant}" names ${shorten(entry[graph])} as its ${graph} graph, which the files list lacks`);
    }
    const q = entry.anomaly_quantiles ?? {};
    need(isObject(q) && Object.values(q).every(isNumber), `variants["${variant}"].anomaly_quantiles must map names to numbers`);
  }
  return m;
}

// model.prior: absent (or null) for N(0, I), else {kind: "vamp", components: C >= 1, mu: C rows of
// latent_dim numbers, logvar: the same}. model.config, where it names a prior, must agree (the Python
// runtime's read_prior): a VampPrior model's bundle without its components would sample and score under
// the wrong prior.
function checkPrior(model, need) {
  const { prior } = model;
  const config = isObject(model.config) ? model.config : {};
  const named = config.prior ?? 'standard';
  if (prior === undefined || prior === null) {
    need(named === 'standard', `model.config names the prior ${shorten(named)} but the manifest has no model.prior (its components)`);
    return;
  }
  const kind = isObject(prior) ? prior.kind : prior;
  need(isObject(prior) && PRIORS.includes(kind), `model.prior.kind ${shorten(kind)} is not one this runtime knows (${PRIORS.join(', ')}; absent: N(0, I))`);
  const C = prior.components;
  need(isPositiveInt(C), `model.prior.components must be a positive integer, got ${shorten(C)}`);
  need(named === kind && (config.prior_components ?? C) === C,
    `model.prior (${kind}, ${C} components) differs from model.config (prior ${shorten(named)}, prior_components ${shorten(config.prior_components ?? null)})`);
  const latent = model.latent_dim;
  for (const key of ['mu', 'logvar']) {
    const rows = prior[key];
    const ok = Array.isArray(rows) && rows.length === C && rows.every((row) => Array.isArray(row) && row.length === latent && row.every(isNumber));
    need(ok, `model.prior.${key} must be ${C} rows (components) of ${latent} finite numbers (latent_dim)`);
    // runtime/contract.py PRIOR_MU_LIMIT, PRIOR_LOGVAR_LIMIT: beyond them the samples overflow float32
    const limit = key === 'mu' ? 1e4 : 40;
    const big = Math.max(...rows.map((row) => Math.max(...row.map(Math.abs))));
    need(big <= limit, `model.prior.${key} holds ${big}, beyond the ${limit} a component's ${key} may have`);
  }
}

/** "p99.9" -> 0.999; null for a name not of that form. */
export function quantileFraction(name) {
  if (!name.startsWith('p')) return null;
  const v = Number(name.slice(1));
  return Number.isFinite(v) && name.length > 1 ? v / 100 : null;
}

/**
 * The stored quantile name for a fraction (0.99) or a stored name ("p99").
 * @param {unknown} quantile
 * @param {Record<string, number>} stored
 * @returns {string}
 */
export function findQuantile(quantile, stored, ErrorType) {
  const listing = Object.keys(stored).map((n) => (quantileFraction(n) !== null ? `${n} (${quantileFraction(n)})` : n)).join(', ');
  if (typeof quantile === 'string') {
    if (quantile in stored) return quantile;
    throw new ErrorType(`quantile "${quantile}" is not calibrated in this bundle; it stores ${listing}`);
  }
  if (typeof quantile !== 'number' || !(quantile > 0 && quantile < 1)) {
    throw new ErrorType(`quantile: expected a fraction in (0, 1) such as 0.99, or a stored name, got ${shorten(quantile)}`);
  }
  for (const name of Object.keys(stored)) {
    const q = quantileFraction(name);
    if (q !== null && Math.abs(q - quantile) < 1e-9) return name;
  }
  throw new ErrorType(`quantile ${quantile} is not calibrated in this bundle; it stores ${listing}`);
}
