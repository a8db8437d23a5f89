// The vae-edge runtime, independent of where a bundle comes from (a folder in Node, a URL in a browser)
// and of which onnxruntime runs it (onnxruntime-node or onnxruntime-web): src/node.js and src/browser.js
// supply both. Method names and meanings are the Python runtime's (vae_edge.runtime.VAE), in camelCase;
// arithmetic matches it operation for operation (float32 where numpy works in float32, float64 for
// likelihoods), so outputs agree within float rounding. One file: the VAE class and the array checks
// it needs are read together.
import { BundleError, InputError } from './errors.js';
import { checkGraphMetadata } from './graphmeta.js';
import { GRAPHS, MANIFEST, OPTIONAL_GRAPHS, checkManifest, findQuantile, perFeature, safeMember, shorten } from './manifest.js';
import { LOG_2PI, logPriorOf, mixtureKl, mixturePrior, sampleMixture } from './prior.js';
import { Generator, checkSeed } from './rng.js';

export { BundleError, InputError };

// The out-of-range rule of runtime/likelihoods.py (OUT_OF_RANGE_*; docs/anomaly.md): values beyond the
// valid range are clipped for the ELBO and each adds 1000 nats plus 1000 per model-space unit beyond.
const OUT_OF_RANGE_TOLERANCE = 1e-4; // rounding in the user's scaling is not out of range
const OUT_OF_RANGE_NATS = 1000.0;
const OUT_OF_RANGE_NATS_PER_UNIT = 1000.0;
const PROB_EPS = 1e-7; // probabilities clipped this far from 0 and 1 before log()
export const MAX_LATENT = 1e6;
export const MAX_MC_SAMPLES = 100000;
const fround = Math.fround;

/**
 * An array with its shape: what every method takes and returns (row-major data).
 * @typedef {{data: Float32Array, shape: number[]}} Tensor
 */

/**
 * Where a bundle's files come from.
 * @typedef {object} Source
 * @property {string} where the folder or URL, for messages
 * @property {(name: string) => string} name a member's path or URL, for messages
 * @property {(name: string) => Promise<Uint8Array|null>} read a member's bytes; null when it does not exist
 * @property {(bytes: Uint8Array) => Promise<string>} sha256 hex digest
 */

/**
 * Load options, as the Python runtime's VAE.load takes them.
 * @typedef {object} LoadOptions
 * @property {string} [precision] a variant named in the manifest ("fp32", "int8", ...), or "auto" (fp32 where the bundle records no recommended variant); default "fp32"
 * @property {number} [threads] onnxruntime intra-op threads; default 1
 * @property {string[]} [executionProviders] default ["cpu"] in Node, ["wasm"] in a browser
 */

/**
 * Open a bundle from source: parse and check the manifest, verify every file's sha256 and size, build
 * the variant's sessions from exactly the bytes that were hashed.
 * @param {any} ort the onnxruntime module (onnxruntime-node or onnxruntime-web)
 * @param {Source} source
 * @param {LoadOptions} [options]
 * @returns {Promise<VAE>}
 */
export async function openBundle(ort, source, options = {}) {
  let { precision = 'fp32' } = options ?? {};
  const { threads = 1, executionProviders = ['cpu'], serialize = false } = options ?? {};
  if (!Number.isInteger(threads) || threads < 1 || threads > 1024) throw new InputError(`threads: expected an integer from 1 to 1024, got ${shorten(threads)}`);
  checkProviders(ort, executionProviders);
  const raw = await source.read(MANIFEST);
  if (raw === null) throw new BundleError(`${source.where}: not a bundle (no ${MANIFEST})`);
  let parsed;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(raw));
  } catch (err) {
    throw new BundleError(`${source.name(MANIFEST)}: unreadable manifest (${err.message})`);
  }
  const manifest = checkManifest(parsed, source.name(MANIFEST));
  // "auto" on a bundle that records no recommendation runs fp32, as the Python runtime's VAE.load
  if (precision === 'auto' && !Object.hasOwn(manifest.variants, 'auto')) precision = 'fp32';
  if (typeof precision !== 'string' || !Object.hasOwn(manifest.variants, precision)) {
    throw new InputError(`precision ${shorten(precision)} is not in this bundle; it has ${Object.keys(manifest.variants).join(', ')}`);
  }
  checkVersion(ort, manifest, source.where);
  // The encoder and decoder, and the score graph where the variant names one (one session call per score).
  const graphs = [...GRAPHS, ...OPTIONAL_GRAPHS.filter((g) => typeof manifest.variants[precision][g] === 'string')];
  const wanted = graphs.map((g) => manifest.variants[precision][g]);
  const kept = await verifyFiles(source, manifest, wanted);
  for (const [i, name] of wanted.entries()) checkGraphMetadata(kept.get(name), manifest, source.name(name), precision, graphs[i]);
  const sessions = [];
  for (const [i, graph] of graphs.entries()) {
    const name = wanted[i];
    try {
      sessions.push(await ort.InferenceSession.create(kept.get(name), {
        executionProviders, intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all', logSeverityLevel: 4,
      }));
    } catch (err) {
      throw new BundleError(`${source.name(name)}: onnxruntime cannot load it as the ${graph} (${firstLine(err)})`);
    }
  }
  const [encoder, decoder, score = null] = sessions;
  const want = { encoder: [1, 2], decoder: [1, 1], score: [1, 1] };
  for (const [graph, session] of [['encoder', encoder], ['decoder', decoder], ['score', score]]) {
    if (session === null) continue;
    const [ins, outs] = want[graph];
    if (session.inputNames.length !== ins || session.outputNames.length !== outs) {
      throw new BundleError(`${source.name(manifest.variants[precision][graph])}: takes ${session.inputNames.length} input(s) and gives ${session.outputNames.length}, a ${graph} takes ${ins} and gives ${outs}`);
    }
    checkGraphShapes(session, graph, manifest, source.name(manifest.variants[precision][graph]));
  }
  return new VAE({ ort, manifest, path: source.where, precision, encoder, decoder, score, serialize });
}

/**
 * Check every file the manifest lists: present, of its size, with its sha256. Returns the bytes of keep.
 * @param {Source} source
 * @param {object} manifest
 * @param {string[]} keep
 * @returns {Promise<Map<string, Uint8Array>>}
 */
export async function verifyFiles(source, manifest, keep = []) {
  const kept = new Map();
  for (const [name, meta] of Object.entries(manifest.files)) {
    safeMember(source.where, name);
    const bytes = await source.read(name);
    if (bytes === null) throw new BundleError(`${source.name(name)}: missing from the bundle`);
    if (meta.bytes !== undefined && bytes.length !== meta.bytes) {
      throw new BundleError(`${source.name(name)}: ${bytes.length} bytes, the manifest says ${meta.bytes} (truncated or replaced)`);
    }
    if ((await source.sha256(bytes)) !== meta.sha256) throw new BundleError(`${source.name(name)}: sha256 does not match the manifest (file altered)`);
    if (keep.includes(name)) kept.set(name, bytes);
  }
  return kept;
}

// A provider the option names wrongly is the caller's mistake, not the graph's: refused before any session
// (onnxruntime would fail each graph's load with "no available backend found").
function checkProviders(ort, providers) {
  const names = Array.isArray(providers) ? providers.map((p) => (typeof p === 'string' ? p : p?.name)) : null;
  if (names === null || !names.length || !names.every((n) => typeof n === 'string')) {
    throw new InputError(`executionProviders: expected a non-empty list of backend names, got ${shorten(providers)}`);
  }
  const known = typeof ort.listSupportedBackends === 'function' ? ort.listSupportedBackends().map((b) => b.name) : null;
  const unknown = known === null ? undefined : names.find((n) => !known.includes(n));
  if (unknown !== undefined) throw new InputError(`executionProviders: ${shorten(unknown)} is not a backend of this onnxruntime (it has ${known.join(', ')})`);
}

// The per-sample shapes a graph declares must be the manifest's (as the Python runtime's check_graphs):
// a manifest that disagrees with its graphs is refused at load, not by onnxruntime at the first call, nor
// read back with the manifest's latent size over the graph's outputs. Skipped where onnxruntime gives no
// metadata (older than 1.22).
function checkGraphShapes(session, graph, manifest, where) {
  if (!Array.isArray(session.inputMetadata) || !Array.isArray(session.outputMetadata)) return;
  const shape = manifest.data.shape;
  const latent = [manifest.model.latent_dim];
  const want = { encoder: [[shape], [latent, latent]], decoder: [[latent], [shape]], score: [[shape], [[]]] }[graph];
  const perSample = (meta) => meta.map((m) => (Array.isArray(m.shape) ? m.shape.slice(1) : m.shape));
  const got = [perSample(session.inputMetadata), perSample(session.outputMetadata)];
  const text = (list) => JSON.stringify(list).replaceAll(',', ', ');
  if (text(got[0]) !== text(want[0]) || text(got[1]) !== text(want[1])) {
    throw new BundleError(`${where}: takes ${text(got[0])} and gives ${text(got[1])} (per sample), the manifest's ${graph} should take ${text(want[0])} and give ${text(want[1])}`);
  }
}

function checkVersion(ort, manifest, where) {
  const needed = manifest.onnxruntime?.min_version;
  const have = ort.env?.versions?.common;
  if (typeof needed !== 'string' || typeof have !== 'string') return;
  const parts = (v) => v.split(/[.-]/).slice(0, 3).map((p) => Number.parseInt(p, 10) || 0);
  const [a, b] = [parts(have), parts(needed)];
  for (let i = 0; i < 3; i++) {
    if ((a[i] ?? 0) > (b[i] ?? 0)) return;
    if ((a[i] ?? 0) < (b[i] ?? 0)) throw new BundleError(`${where}: needs onnxruntime ${needed} or newer (manifest onnxruntime.min_version), this is ${have}`);
  }
}

export function firstLine(err) {
  const text = String(err?.message ?? err).trim();
  return text.split('\n')[0] || String(err?.name ?? 'error');
}

/** Encode, decode, sample, reconstruct and score with an exported bundle (data units in and out). */
export class VAE {
  constructor({ ort, manifest, path, precision, encoder, decoder, score = null, serialize = false }) {
    this.ort = ort;
    this.manifest = manifest;
    this.path = path;
    this.precision = precision;
    this.shape = manifest.data.shape.slice();
    this.latentDim = manifest.model.latent_dim;
    this.likelihood = manifest.model.likelihood;
    this.size = this.shape.reduce((a, b) => a * b, 1);
    this._encoder = encoder;
    this._decoder = decoder;
    this._score = score; // null: the bundle has no score graph; scores take the encoder, the decoder and float64 here
    this._released = false;
    // serialize: one run at a time (onnxruntime-web's wasm sessions); onnxruntime-node's are safe to share
    this._queue = serialize ? Promise.resolve() : null;
    const pre = manifest.data.preprocessing;
    this._offset = toFloat32(perFeature(pre.offset, this.shape), this.size);
    this._scale = toFloat32(perFeature(pre.scale, this.shape), this.size);
    this._obsLogvar = null;
    if (this.likelihood === 'gaussian') {
      const std = perFeature(manifest.model.likelihood_params.std, this.shape);
      this._obsLogvar = typeof std === 'number' ? new Float64Array(this.size).fill(2 * Math.log(std)) : std.map((s) => 2 * Math.log(s));
    }
    [this._low, this._high] = this._validRange(manifest);
    this._bounded = this._low.some(Number.isFinite) || this._high.some(Number.isFinite);
    this._prior = mixturePrior(manifest.model.prior, this.latentDim); // null: N(0, I)
  }

  // The bounds of the out-of-range rule in model space (float32 per feature), as VAE._valid_range and
  // likelihoods.model_bounds: data.valid_range through (x - offset) / scale in float64, a Bernoulli
  // model's kept inside [0, 1]; bundles without it: [0, 1] for Bernoulli, unbounded for Gaussian.
  _validRange(manifest) {
    const { size } = this;
    const valid = manifest.data.valid_range;
    const bernoulli = this.likelihood === 'bernoulli';
    if (valid === undefined || valid === null) {
      return bernoulli ? [new Float32Array(size).fill(0), new Float32Array(size).fill(1)] : [new Float32Array(size).fill(-Infinity), new Float32Array(size).fill(Infinity)];
    }
    const [low, high] = ['low', 'high'].map((k) => {
      const v = perFeature(valid[k], this.shape);
      return typeof v === 'number' ? new Float64Array(size).fill(v) : v;
    });
    const lo = new Float32Array(size);
    const hi = new Float32Array(size);
    for (let i = 0; i < size; i++) {
      const a = (low[i] - this._offset[i]) / this._scale[i];
      const b = (high[i] - this._offset[i]) / this._scale[i];
      lo[i] = bernoulli ? Math.max(a, 0) : a;
      hi[i] = bernoulli ? Math.min(b, 1) : b;
    }
    return [lo, hi];
  }

  /** @returns {string} */
  toString() {
    return `VAE(path=${JSON.stringify(this.path)}, precision="${this.precision}", shape=[${this.shape}], latentDim=${this.latentDim})`;
  }

  // ---------------------------------------------------------------- data units <-> model space
  // Data units -> model space, clipped to the valid range (never refused: asBatch has refused NaN/Inf);
  // with penalty (an array) the out-of-range term per sample is stored in penalty[0] (Float64Array [n],
  // in float64 from the data units, as likelihoods.out_of_range_penalty), only when a value is out of range.
  _toModel(x, n, penalty = null) {
    const xm = new Float32Array(x.length);
    const { _offset: off, _scale: sc, _low: low, _high: high, size } = this;
    for (let i = 0; i < x.length; i++) xm[i] = fround(fround(x[i] - off[i % size]) / sc[i % size]);
    if (!this._bounded) return xm;
    let outside = false;
    for (let i = 0; i < xm.length && !outside; i++) outside = xm[i] < low[i % size] || xm[i] > high[i % size];
    if (!outside) return xm;
    if (penalty !== null) {
      const p = new Float64Array(n);
      let any = false;
      for (let s = 0; s < n; s++) {
        let total = 0;
        for (let i = 0; i < size; i++) {
          const v = (x[s * size + i] - off[i]) / sc[i];
          const d = Math.max(low[i] - v, v - high[i], 0);
          if (d > OUT_OF_RANGE_TOLERANCE) total += OUT_OF_RANGE_NATS + OUT_OF_RANGE_NATS_PER_UNIT * d;
        }
        p[s] = total;
        any ||= total !== 0;
      }
      if (any) penalty[0] = p;
    }
    for (let i = 0; i < xm.length; i++) xm[i] = Math.min(high[i % size], Math.max(low[i % size], xm[i]));
    return xm;
  }

  _fromModel(xm) {
    const { _offset: off, _scale: sc, size } = this;
    const out = new Float32Array(xm.length);
    for (let i = 0; i < xm.length; i++) out[i] = fround(fround(xm[i] * sc[i % size]) + off[i % size]);
    return out;
  }

  /**
   * Data units -> the space the graphs see ((x - offset) / scale), without range checks.
   * @param {unknown} x
   * @returns {Tensor}
   */
  normalize(x) {
    const { data, shape } = asArray(x, 'x');
    if (data.length % this.size !== 0) throw new InputError(`x: expected ${this.size} values per sample, got ${data.length}`);
    const xm = new Float32Array(data.length);
    for (let i = 0; i < data.length; i++) xm[i] = fround(fround(data[i] - this._offset[i % this.size]) / this._scale[i % this.size]);
    return { data: xm, shape };
  }

  // ---------------------------------------------------------------- graphs
  async _run(graph, session, data, n, dims) {
    if (this._released) throw new InputError('this VAE was released (release()); load the bundle again to use it');
    const feed = { [session.inputNames[0]]: new this.ort.Tensor('float32', data, [n, ...dims]) };
    let turn;
    if (this._queue === null) {
      turn = session.run(feed);
    } else {
      turn = this._queue.then(() => session.run(feed));
      this._queue = turn.then(() => undefined, () => undefined);
    }
    let results;
    try {
      results = await turn;
    } catch (err) {
      throw new Error(`onnxruntime failed running the ${graph}: ${firstLine(err)}`);
    }
    // Each run's outputs are fresh arrays of our own: no copy.
    return session.outputNames.map((name) => results[name].data);
  }

  async _encodeModel(xm, n) {
    if (n === 0) return [new Float32Array(0), new Float32Array(0)];
    return this._run('encoder', this._encoder, xm, n, this.shape);
  }

  async _decodeModel(z, n) {
    if (n === 0) return new Float32Array(0);
    return (await this._run('decoder', this._decoder, z, n, [this.latentDim]))[0];
  }

  _batchX(x, name = 'x') {
    return asBatch(x, this.shape, name);
  }

  // ---------------------------------------------------------------- public API
  /**
   * q(z|x) parameters for x [n, *shape] (or one sample [*shape]) in data units.
   * @param {unknown} x
   * @returns {Promise<{mu: Tensor, logvar: Tensor}>} each [n, latent] (or [latent] for one sample)
   */
  async encode(x) {
    const { data, n, single } = this._batchX(x);
    const [mu, logvar] = await this._encodeModel(this._toModel(data, n), n);
    const shape = single ? [this.latentDim] : [n, this.latentDim];
    return { mu: { data: mu, shape }, logvar: { data: logvar, shape: shape.slice() } };
  }

  /**
   * Mean of p(x|z) in data units: [n, *shape] for z [n, latent] (or [*shape] for z [latent]).
   * @param {unknown} z
   * @returns {Promise<Tensor>}
   */
  async decode(z) {
    const { data, n, single } = asBatch(z, [this.latentDim], 'z', MAX_LATENT);
    return this._shaped(this._fromModel(await this._decodeModel(data, n)), n, single);
  }

  /**
   * Decode the posterior mean: deterministic reconstruction, same shape as x.
   * @param {unknown} x
   * @returns {Promise<Tensor>}
   */
  async reconstruct(x) {
    const { data, n, single } = this._batchX(x);
    const [mu] = await this._encodeModel(this._toModel(data, n), n);
    return this._shaped(this._fromModel(await this._decodeModel(mu, n)), n, single);
  }

  /**
   * n samples from the prior, decoded; the same seed gives the same samples (in Python too: the generator
   * is runtime/rng.py's). N(0, I): z = temperature * normal. A VampPrior (manifest model.prior): n
   * uniforms pick the components c = min(floor(u C), C - 1), then n x latent normals give
   * z = mu_c + temperature * exp(0.5 logvar_c) * normal, in float64, cast to float32.
   * @param {number} n
   * @param {{seed?: number|bigint, temperature?: number}} [options]
   * @returns {Promise<Tensor>} [n, *shape]
   */
  async sample(n, options = {}) {
    checkInt('n', n, 0, 1 << 24);
    const { seed, temperature = 1.0 } = options ?? {};
    if (typeof temperature !== 'number' || !(temperature > 0 && temperature <= 1e6)) throw new InputError(`temperature: expected a number in (0, 1e6], got ${shorten(temperature)}`);
    const rng = generator(seed);
    const prior = this._prior;
    let z;
    if (prior === null) {
      const eps = rng.standardNormal(n * this.latentDim);
      z = new Float32Array(eps.length);
      for (let i = 0; i < eps.length; i++) z[i] = fround(eps[i] * temperature);
    } else {
      z = sampleMixture(rng, prior, n, temperature);
    }
    return this._shaped(this._fromModel(await this._decodeModel(z, n)), n, false);
  }

  /**
   * Decode steps points on the straight line between the posterior means of two samples.
   * @param {unknown} xA
   * @param {unknown} xB
   * @param {number|{steps?: number}} [steps] default 8
   * @returns {Promise<Tensor>} [steps, *shape]; the ends are the reconstructions of xA and xB
   */
  async interpolate(xA, xB, steps = 8) {
    const count = typeof steps === 'object' && steps !== null ? (steps.steps ?? 8) : steps;
    checkInt('steps', count, 2, 10000);
    const ends = [];
    for (const [name, x] of [['x_a', xA], ['x_b', xB]]) {
      const { data, n } = this._batchX(x, name);
      if (n !== 1) throw new InputError(`${name}: expected one sample of shape [${this.shape}], got a batch of ${n}`);
      ends.push((await this._encodeModel(this._toModel(data, 1), 1))[0]);
    }
    const L = this.latentDim;
    const z = new Float32Array(count * L);
    const step = 1 / (count - 1);
    for (let s = 0; s < count; s++) {
      const t = s === count - 1 ? 1 : fround(s * step); // numpy.linspace(0, 1, steps, dtype=float32)
      const u = fround(1 - t);
      for (let j = 0; j < L; j++) z[s * L + j] = fround(fround(u * ends[0][j]) + fround(t * ends[1][j]));
    }
    return this._shaped(this._fromModel(await this._decodeModel(z, count)), count, false);
  }

  /**
   * Negative ELBO per sample in nats: reconstruction NLL + KL(q(z|x) || p(z)); higher is less like the
   * training data. p(z) is N(0, I), or the bundle's VampPrior, whose KL is the variational bound of
   * Hershey & Olsen (2007) in float64 (the score graph computes the same in float32). Deterministic (z at the posterior mean) unless samples: K Monte-Carlo draws, seeded.
   * The deterministic score is one call of the bundle's score graph where it has one (float32, as the
   * Python runtime's; a non-finite result, float32 overflow, is taken again the two-call way), else the
   * encoder, the decoder and float64 arithmetic here.
   * @param {unknown} x
   * @param {{samples?: number, seed?: number|bigint}} [options]
   * @returns {Promise<Float64Array|number>} [n] (a number for one sample)
   */
  async anomalyScore(x, options = {}) {
    const { samples, seed = 0 } = options ?? {};
    if (samples !== undefined && samples !== null) checkInt('samples', samples, 1, MAX_MC_SAMPLES);
    if (seed !== null && seed !== undefined) generator(seed); // checked even when unused
    const { data, n, single } = this._batchX(x);
    const penalty = [];
    const xm = this._toModel(data, n, penalty);
    const add = (nats) => {
      const score = nats.map((v, i) => v + (penalty.length ? penalty[0][i] : 0));
      return single ? score[0] : score;
    };
    if ((samples === undefined || samples === null) && this._score !== null && n > 0) {
      const [fused] = await this._run('score graph', this._score, xm, n, this.shape);
      if (fused.every(Number.isFinite)) return add(Float64Array.from(fused));
    }
    const [mu, logvar] = await this._encodeModel(xm, n);
    let nll;
    if (samples === undefined || samples === null) {
      nll = this._nll(xm, await this._decodeModel(mu, n), n);
    } else {
      const rng = generator(seed);
      const sigma = Float64Array.from(logvar, (v) => Math.exp(0.5 * v)); // float64, as the Python runtime
      nll = new Float64Array(n);
      for (let k = 0; k < samples; k++) {
        const eps = rng.standardNormal(mu.length);
        const z = new Float32Array(mu.length);
        for (let i = 0; i < mu.length; i++) z[i] = fround(mu[i] + sigma[i] * eps[i]);
        const part = this._nll(xm, await this._decodeModel(z, n), n);
        for (let i = 0; i < n; i++) nll[i] += part[i];
      }
      for (let i = 0; i < n; i++) nll[i] /= samples;
    }
    const kl = this._prior === null ? gaussianKl(mu, logvar, n, this.latentDim) : mixtureKl(mu, logvar, n, this._prior);
    return add(nll.map((v, i) => v + kl[i]));
  }

  /**
   * The anomaly-score threshold calibrated at export: that quantile of held-out data's scores.
   * @param {number|string} [quantile] a fraction such as 0.99 or a stored name such as "p99"
   * @returns {number}
   */
  threshold(quantile = 0.99) {
    const stored = this.manifest.variants[this.precision].anomaly_quantiles ?? {};
    if (!Object.keys(stored).length) throw new InputError(`${this.path}: variant "${this.precision}" has no anomaly calibration (manifest "anomaly_quantiles")`);
    return stored[findQuantile(quantile, stored, InputError)];
  }

  /**
   * Whether each sample scores above the calibrated quantile of held-out data.
   * @param {unknown} x
   * @param {number|string} [quantile]
   * @returns {Promise<boolean[]|boolean>}
   */
  async isAnomaly(x, quantile = 0.99) {
    const limit = this.threshold(quantile);
    const scores = await this.anomalyScore(x);
    return typeof scores === 'number' ? scores > limit : Array.from(scores, (s) => s > limit);
  }

  /**
   * log p(z) in float64 for latents z [n, latent] (or [latent]; read as float32, as every latent code):
   * N(0, I), or the VampPrior's mixture logsumexp_c log N(z; mu_c, exp(logvar_c)) - log C. For
   * importance-weighted evaluation. Refuses z as decode does (shape, NaN/Inf, beyond ±1e6).
   * @param {unknown} z
   * @returns {Float64Array|number} [n] (a number for z [latent])
   */
  logPrior(z) {
    const { data, n, single } = asBatch(z, [this.latentDim], 'z', MAX_LATENT);
    const out = logPriorOf(data, n, this.latentDim, this._prior);
    return single ? out[0] : out;
  }

  _nll(xm, mean, n) {
    const { size } = this;
    const out = new Float64Array(n);
    for (let s = 0; s < n; s++) {
      let total = 0;
      for (let i = 0; i < size; i++) {
        const x = xm[s * size + i];
        if (this.likelihood === 'bernoulli') {
          const p = Math.min(Math.max(mean[s * size + i], PROB_EPS), 1 - PROB_EPS);
          total += -(x * Math.log(p) + (1 - x) * Math.log1p(-p));
        } else {
          const lv = this._obsLogvar[i];
          const d = x - mean[s * size + i];
          total += 0.5 * (LOG_2PI + lv + d * d * Math.exp(-lv));
        }
      }
      out[s] = total;
    }
    return out;
  }

  _shaped(data, n, single) {
    return { data, shape: single ? this.shape.slice() : [n, ...this.shape] };
  }

  /** Release the onnxruntime sessions. */
  async release() {
    if (this._released) return;
    this._released = true;
    await Promise.all([this._encoder.release?.(), this._decoder.release?.(), this._score?.release?.()]);
  }
}

function gaussianKl(mu, logvar, n, L) {
  const out = new Float64Array(n);
  for (let s = 0; s < n; s++) {
    let total = 0;
    for (let j = 0; j < L; j++) {
      const m = mu[s * L + j];
      const lv = logvar[s * L + j];
      total += m * m + Math.exp(lv) - 1 - lv;
    }
    out[s] = 0.5 * total;
  }
  return out;
}

function generator(seed) {
  try {
    return new Generator(seed === undefined || seed === null ? undefined : checkSeed(seed));
  } catch (err) {
    throw new InputError(err.message);
  }
}

function checkInt(name, value, min, max) {
  if (!Number.isInteger(value) || value < min || value > max) throw new InputError(`${name}: expected an integer from ${min} to ${max}, got ${shorten(value)}`);
}

function toFloat32(value, size) {
  return typeof value === 'number' ? new Float32Array(size).fill(value) : Float32Array.from(value);
}

function fmt(v) {
  return Number(v.toPrecision(6)).toString();
}

/**
 * Any array-like input as flat float64 values and a shape: {data, shape} (or an onnxruntime Tensor's
 * {data, dims}), a typed array or flat array (shape [length]), or nested arrays.
 * @param {unknown} x
 * @param {string} name
 * @returns {{data: ArrayLike<number>, shape: number[]}}
 */
export function asArray(x, name) {
  if (x !== null && typeof x === 'object' && !Array.isArray(x) && !ArrayBuffer.isView(x)) {
    const shape = x.shape ?? x.dims;
    const { data } = x;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) throw new InputError(`${name}: expected {data, shape} with shape a list of sizes, got shape ${shorten(shape)}`);
    if (!(Array.isArray(data) || (ArrayBuffer.isView(data) && !(data instanceof DataView)))) throw new InputError(`${name}: expected {data, shape} with data an array of numbers, got ${shorten(typeof data)}`);
    const size = shape.reduce((a, b) => a * b, 1);
    if (data.length !== size) throw new InputError(`${name}: data holds ${data.length} values, shape [${shape}] needs ${size}`);
    return { data: checkNumbers(data, name), shape: shape.slice() };
  }
  if (ArrayBuffer.isView(x) && !(x instanceof DataView)) {
    if (x instanceof BigInt64Array || x instanceof BigUint64Array) throw new InputError(`${name}: expected a numeric array, got a BigInt array`);
    return { data: x, shape: [x.length] };
  }
  if (Array.isArray(x)) {
    const shape = [];
    for (let level = x; Array.isArray(level); level = level[0]) shape.push(level.length);
    const flat = [];
    const walk = (v, depth) => {
      if (depth === shape.length) {
        flat.push(v);
        return;
      }
      if (!Array.isArray(v) || v.length !== shape[depth]) throw new InputError(`${name}: expected a regular nested array, got an irregular one at depth ${depth}`);
      for (const item of v) walk(item, depth + 1);
    };
    walk(x, 0);
    return { data: checkNumbers(flat, name), shape };
  }
  throw new InputError(`${name}: expected an array of numbers, {data, shape}, or a typed array, got ${x === null ? 'null' : typeof x}`);
}

function checkNumbers(data, name) {
  if (ArrayBuffer.isView(data)) return data;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (typeof v !== 'number' && typeof v !== 'boolean') throw new InputError(`${name}: expected numbers, got ${v === null ? 'null' : typeof v} at index ${i}`);
  }
  return data;
}

const FLOAT32_MAX = 3.4028234663852886e38;

function saturateFloat32(v) {
  const n = Number(v);
  return Number.isFinite(n) ? Math.min(FLOAT32_MAX, Math.max(-FLOAT32_MAX, n)) : n;
}

/**
 * A batch [n, *shape] (or one sample [*shape]) as float32, checked: shape, NaN/Inf, bound.
 * @returns {{data: Float32Array, n: number, single: boolean}}
 */
export function asBatch(x, shape, name, bound = null) {
  const a = asArray(x, name);
  const expected = `[n, ${shape.join(', ')}] or [${shape.join(', ')}]`;
  const single = a.shape.length === shape.length && a.shape.every((d, i) => d === shape[i]);
  const batched = a.shape.length === shape.length + 1 && a.shape.slice(1).every((d, i) => d === shape[i]);
  if (!single && !batched) throw new InputError(`${name}: expected shape ${expected}, got [${a.shape.join(', ')}]`);
  // A copy (the caller keeps its array); a plain memcpy from float32, a conversion from anything else.
  // A finite value beyond float32's range (1e300) is saturated, as runtime/validation.py to_float32 does:
  // a reading far out of range is scored and flagged, not refused as if it were Inf.
  const data = a.data instanceof Float32Array ? new Float32Array(a.data) : Float32Array.from(a.data, saturateFloat32);
  let largest = 0;
  for (const v of data) {
    if (!Number.isFinite(v)) throw new InputError(`${name}: contains NaN or Inf`);
    if (Math.abs(v) > largest) largest = Math.abs(v);
  }
  if (bound !== null && largest > bound) throw new InputError(`${name}: values must lie within ±${bound}, got max |${name}| ${fmt(largest)}`);
  return { data, n: single ? 1 : a.shape[0], single };
}
