// Shared by the node:test files: where the bundles are, and comparisons.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '..');
export const DEFAULT_BUNDLE = path.resolve(ROOT, '..', 'runtime', 'default_bundle');
export const BIN = path.join(ROOT, 'bin', 'vae-edge-js.js');

/** Bundles to run the conformance set on: VAE_EDGE_BUNDLES (path-separated), else the default bundle. */
export function bundles() {
  const listed = process.env.VAE_EDGE_BUNDLES;
  return listed ? listed.split(path.delimiter).filter(Boolean) : [DEFAULT_BUNDLE];
}

/** Largest excess of |got - want| over atol + rtol |want| (<= 0: within), and where. */
export function excess(got, want, { rtol, atol }) {
  let worst = -Infinity;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(Number(got[i]) - Number(want[i]));
    const e = (Number.isFinite(d) ? d : Infinity) - (atol + rtol * Math.abs(Number(want[i])));
    if (e > worst) {
      worst = e;
      at = i;
    }
  }
  return { worst, at };
}

/** Run fn(folder) on a copy of the default bundle whose manifest edit(manifest) changed; the copy is removed after. */
export async function withEditedManifest(edit, fn) {
  const copy = mkdtempSync(path.join(tmpdir(), 'vae-edge-js-'));
  try {
    cpSync(DEFAULT_BUNDLE, copy, { recursive: true });
    const manifest = JSON.parse(readFileSync(path.join(copy, 'manifest.json'), 'utf8'));
    edit(manifest);
    writeFileSync(path.join(copy, 'manifest.json'), JSON.stringify(manifest));
    return await fn(copy);
  } finally {
    rmSync(copy, { recursive: true, force: true });
  }
}
