// The runtime on onnxruntime-web (wasm backend): bundles are URLs, hashed with WebCrypto.
// The page maps the bare name "onnxruntime-web" to the served ort.wasm.min.mjs with an import map.
import * as ort from 'onnxruntime-web';
import { BundleError, InputError, VAE, openBundle, verifyFiles } from './core.js';
import { GOLDEN, parseGolden, runGolden } from './golden.js';
import { MANIFEST, checkManifest } from './manifest.js';

export { BundleError, InputError, VAE, ort };
export { Generator, normals, uniforms } from './rng.js';

/**
 * Where onnxruntime-web finds its wasm files, and its threads (one by default: no cross-origin isolation needed).
 * @param {{wasmPaths?: string, numThreads?: number}} [settings]
 */
export function configure({ wasmPaths, numThreads = 1 } = {}) {
  if (wasmPaths !== undefined) ort.env.wasm.wasmPaths = wasmPaths;
  ort.env.wasm.numThreads = numThreads;
  ort.env.logLevel = 'error';
}

/**
 * The files of a bundle served at baseUrl.
 * @param {string} baseUrl
 * @returns {import('./core.js').Source}
 */
export function urlSource(baseUrl) {
  if (typeof baseUrl !== 'string' || !baseUrl) throw new InputError(`url: expected a bundle URL, got ${typeof baseUrl}`);
  const base = new URL(baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`, globalThis.location?.href);
  return {
    where: base.href,
    name: (name) => new URL(name, base).href,
    async read(name) {
      let response;
      try {
        response = await fetch(new URL(name, base), { cache: 'no-store' });
      } catch (err) {
        throw new BundleError(`${new URL(name, base).href}: cannot fetch (${err.message})`);
      }
      if (response.status === 404) return null;
      if (!response.ok) throw new BundleError(`${new URL(name, base).href}: HTTP ${response.status}`);
      return new Uint8Array(await response.arrayBuffer());
    },
    async sha256(bytes) {
      const digest = await crypto.subtle.digest('SHA-256', bytes);
      return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
    },
  };
}

/**
 * Open the bundle at url (every file's sha256 verified first).
 * @param {string} url
 * @param {import('./core.js').LoadOptions} [options]
 * @returns {Promise<VAE>}
 */
export async function load(url, options = {}) {
  if (ort.env.wasm.numThreads === undefined || ort.env.wasm.numThreads === 0) configure();
  return openBundle(ort, urlSource(url), { executionProviders: ['wasm'], serialize: true, ...(options ?? {}) });
}

/**
 * Check this runtime against the conformance set of the bundle at url.
 * @param {string} url
 */
export async function selftest(url, options = {}) {
  const source = urlSource(url);
  const raw = await source.read(MANIFEST);
  if (raw === null) throw new BundleError(`${source.where}: not a bundle (no ${MANIFEST})`);
  const manifest = checkManifest(JSON.parse(new TextDecoder().decode(raw)), source.name(MANIFEST));
  if (!(GOLDEN in manifest.files)) throw new BundleError(`${source.where}: has no ${GOLDEN}`);
  const kept = await verifyFiles(source, manifest, [GOLDEN]);
  return runGolden(parseGolden(kept.get(GOLDEN), source.name(GOLDEN)), manifest, (precision) => load(url, { ...options, precision }));
}
