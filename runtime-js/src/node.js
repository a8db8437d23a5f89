// The runtime on onnxruntime-node: bundles are folders, hashed with node:crypto.
import { createHash } from 'node:crypto';
import { readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { BundleError, InputError, VAE, openBundle, verifyFiles } from './core.js';
import { GOLDEN, parseGolden, runGolden } from './golden.js';
import { MANIFEST, checkManifest } from './manifest.js';

export { BundleError, InputError, VAE };
export { Generator, normals, uniforms } from './rng.js';

/**
 * The files of a bundle folder, refusing links that leave it.
 * @param {string} folder
 * @returns {Promise<import('./core.js').Source>}
 */
export async function folderSource(folder) {
  if (typeof folder !== 'string' || !folder) throw new InputError(`path: expected a bundle folder, got ${folder === '' ? 'an empty string' : typeof folder}`);
  let info;
  try {
    info = await stat(folder);
  } catch {
    throw new BundleError(`${folder}: no such bundle folder`);
  }
  if (!info.isDirectory()) throw new BundleError(`${folder}: is a file; expected the bundle folder that holds ${MANIFEST}`);
  const root = await realpath(folder);
  return {
    where: folder,
    name: (name) => path.join(folder, name),
    async read(name) {
      const member = path.join(folder, name);
      let real;
      try {
        real = await realpath(member);
      } catch {
        return null;
      }
      if (path.dirname(real) !== root) throw new BundleError(`${member}: is a link to ${real}, outside the bundle folder`);
      try {
        return new Uint8Array(await readFile(real));
      } catch (err) {
        if (err.code === 'EISDIR') throw new BundleError(`${member}: is a folder, expected a file`);
        throw new BundleError(`${member}: unreadable (${err.code ?? err.message})`);
      }
    },
    async sha256(bytes) {
      return createHash('sha256').update(bytes).digest('hex');
    },
  };
}

/**
 * Open the bundle folder at bundlePath (every file's sha256 verified first).
 * @param {string} bundlePath
 * @param {import('./core.js').LoadOptions} [options]
 * @returns {Promise<VAE>}
 */
export async function load(bundlePath, options = {}) {
  return openBundle(ort, await folderSource(bundlePath), { executionProviders: ['cpu'], ...(options ?? {}) });
}

/**
 * Check this runtime against the bundle's conformance set.
 * @param {string} bundlePath
 * @param {import('./core.js').LoadOptions} [options]
 */
export async function selftest(bundlePath, options = {}) {
  const source = await folderSource(bundlePath);
  const raw = await source.read(MANIFEST);
  if (raw === null) throw new BundleError(`${bundlePath}: not a bundle (no ${MANIFEST})`);
  let manifest;
  try {
    manifest = checkManifest(JSON.parse(new TextDecoder().decode(raw)), source.name(MANIFEST));
  } catch (err) {
    if (err instanceof BundleError) throw err;
    throw new BundleError(`${source.name(MANIFEST)}: unreadable manifest (${err.message})`);
  }
  if (!(GOLDEN in manifest.files)) throw new BundleError(`${bundlePath}: has no ${GOLDEN} (exported by a vae-export without conformance sets; re-export it)`);
  const kept = await verifyFiles(source, manifest, [GOLDEN]);
  const golden = parseGolden(kept.get(GOLDEN), source.name(GOLDEN));
  return runGolden(golden, manifest, (precision) => load(bundlePath, { ...options, precision }));
}
