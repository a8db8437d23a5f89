import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Generator, checkSeed, normals, uniforms, words } from '../src/rng.js';

test('words are SplitMix64, the same as the Python runtime', () => {
  assert.deepEqual(Array.from(words(0n, 3)), [0xe220a8397b1dcdafn, 0x6e789e6aa1b965f4n, 0x06c45d188009454fn]);
});

test('normals match the Python runtime (runtime/rng.py) to the last bit', () => {
  // Python: vae_edge.runtime.rng.normals(3, 6)
  const python = [-0.6410515695262378, -1.985404994109346, 0.8874808858564054, 0.43731106416675475, -1.1468789923756646, -1.321196663834466];
  assert.deepEqual(Array.from(normals(3n, 6)), python);
});

test('a Generator draws in order and keeps Box-Muller pairs aligned', () => {
  const g = new Generator(9);
  const first = g.standardNormal(6);
  const second = g.standardNormal(3);
  const third = g.standardNormal(1);
  const whole = normals(9n, 12);
  assert.deepEqual(Array.from(first), Array.from(whole.subarray(0, 6)));
  assert.deepEqual(Array.from(second), Array.from(whole.subarray(6, 9)));
  assert.deepEqual(Array.from(third), [whole[10]]);
});

test('uniforms, and a Generator\'s uniforms between normals, match the Python runtime to the last bit', () => {
  // Python: rng.uniforms(3, 4); g = Generator(9); g.random(3), g.standard_normal(2), g.random(1)
  assert.deepEqual(Array.from(uniforms(3n, 4)), [0.11345034205715454, 0.7002935135929024, 0.6129746825466243, 0.07286673677178535]);
  const g = new Generator(9);
  assert.deepEqual(Array.from(g.random(3)), [0.6823627349789958, 0.7506948929582787, 0.2653224405991833]);
  assert.deepEqual(Array.from(g.standardNormal(2)), [1.2294067773173225, 1.0784991366622392]); // words 4, 5: the next even pair
  assert.deepEqual(Array.from(g.random(1)), [0.6458087354791812]);
});

test('seeds are integers from 0 to 2^64 - 1', () => {
  assert.equal(checkSeed(2n ** 64n - 1n), 2n ** 64n - 1n);
  for (const bad of [-1, 1.5, 'a', 2n ** 64n, Number.MAX_SAFE_INTEGER + 2, null]) assert.throws(() => checkSeed(bad), /seed: expected an integer/);
  assert.throws(() => checkSeed(2 ** 60), /got 1152921504606847000 \(beyond 2\^53 - 1: pass it as a BigInt\)$/);
  assert.throws(() => checkSeed(2 ** 64), /got 18446744073709552000$/);
});
