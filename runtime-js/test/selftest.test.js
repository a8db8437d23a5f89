// The conformance set of every bundle given (VAE_EDGE_BUNDLES, else the default bundle), through the
// package's bin as a user runs it: exit 0 ok, 1 mismatch or refused bundle, 2 bad usage.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { BIN, bundles } from './helpers.js';

const run = (...args) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });

for (const bundle of bundles()) {
  test(`selftest passes on ${path.basename(path.dirname(bundle))}/${path.basename(bundle)}`, () => {
    const result = run('selftest', bundle);
    assert.equal(result.status, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /selftest passed: \d+ outputs match/);
    assert.doesNotMatch(result.stdout, /✗/);
  });
}

test('a tampered file is refused, naming it (exit 1)', () => {
  const copy = mkdtempSync(path.join(tmpdir(), 'vae-edge-js-'));
  try {
    cpSync(bundles()[0], copy, { recursive: true });
    const manifest = JSON.parse(readFileSync(path.join(copy, 'manifest.json'), 'utf8'));
    const decoder = manifest.variants.fp32.decoder;
    const bytes = readFileSync(path.join(copy, decoder));
    bytes[bytes.length - 10] ^= 1;
    writeFileSync(path.join(copy, decoder), bytes);
    const result = run('selftest', copy);
    assert.equal(result.status, 1);
    assert.equal(result.stderr, `Error: ${path.join(copy, decoder)}: sha256 does not match the manifest (file altered)\n`);
  } finally {
    rmSync(copy, { recursive: true, force: true });
  }
});

test('a changed expected output is a mismatch naming the output (exit 1)', async () => {
  const { createHash } = await import('node:crypto');
  const copy = mkdtempSync(path.join(tmpdir(), 'vae-edge-js-'));
  try {
    cpSync(bundles()[0], copy, { recursive: true });
    const golden = JSON.parse(readFileSync(path.join(copy, 'golden.json'), 'utf8'));
    golden.variants.fp32.outputs.anomaly_score.data[1] += 1;
    const text = JSON.stringify(golden);
    writeFileSync(path.join(copy, 'golden.json'), text);
    const manifest = JSON.parse(readFileSync(path.join(copy, 'manifest.json'), 'utf8'));
    manifest.files['golden.json'] = { sha256: createHash('sha256').update(text).digest('hex'), bytes: Buffer.byteLength(text) };
    writeFileSync(path.join(copy, 'manifest.json'), JSON.stringify(manifest));
    const result = run('selftest', copy);
    assert.equal(result.status, 1);
    assert.match(result.stdout, /✗ fp32 anomaly_score: max \|difference\| 1\.00 \(at flat index 1/);
    assert.match(result.stderr, /^Error: 1 of \d+ outputs differ from the conformance set: fp32 anomaly_score\n$/);
  } finally {
    rmSync(copy, { recursive: true, force: true });
  }
});

test('bad usage exits 2 with one line; a missing bundle exits 1', () => {
  for (const args of [[], ['selftest'], ['frobnicate'], ['selftest', 'a', 'b'], ['selftest', '--nope', 'x']]) {
    const result = run(...args);
    assert.equal(result.status, 2, `${args}: ${result.stderr}`);
    assert.match(result.stderr, /^Error: [^\n]+\n$/);
  }
  const missing = run('selftest', '/nonexistent/bundle');
  assert.equal(missing.status, 1);
  assert.equal(missing.stderr, 'Error: /nonexistent/bundle: no such bundle folder\n');
});
