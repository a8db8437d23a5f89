// The sampling generator every vae-edge runtime implements bit for bit (Python: runtime/rng.py).
//
// SplitMix64 used as a counter-based generator: word k of seed s is mix(s + (k + 1) * GAMMA mod 2^64).
// Uniforms take the top 53 bits, one word each; normals come from Box-Muller in float64 on word pairs (2i, 2i + 1):
// u1 = (w >> 11 + 1) * 2^-53 in (0, 1], u2 = (w >> 11) * 2^-53 in [0, 1), r = sqrt(-2 ln u1),
// normal 2i = r cos(2 pi u2), normal 2i + 1 = r sin(2 pi u2). Runtimes cast normals to float32 before use.

const MASK = (1n << 64n) - 1n;
const GAMMA = 0x9e3779b97f4a7c15n;
const M1 = 0xbf58476d1ce4e5b9n;
const M2 = 0x94d049bb133111ebn;
const TWO_M53 = 2 ** -53;
export const MAX_SEED = MASK;

/**
 * A seed as a BigInt in [0, 2^64 - 1].
 * @param {number|bigint} seed
 * @returns {bigint}
 */
export function checkSeed(seed) {
  if (typeof seed === 'bigint' && seed >= 0n && seed <= MASK) return seed;
  if (typeof seed === 'number' && Number.isSafeInteger(seed) && seed >= 0) return BigInt(seed);
  // a Number beyond 2^53 may not be the integer its user wrote (2^53 + 1 reads as 2^53): say to pass a BigInt
  const unsafe = typeof seed === 'number' && Number.isInteger(seed) && seed > Number.MAX_SAFE_INTEGER && seed < 2 ** 64;
  throw new RangeError(`seed: expected an integer from 0 to 2^64 - 1, got ${describe(seed)}${unsafe ? ' (beyond 2^53 - 1: pass it as a BigInt)' : ''}`);
}

function describe(value) {
  try {
    return typeof value === 'string' ? JSON.stringify(value) : String(value);
  } catch {
    return typeof value;
  }
}

/**
 * Words start .. start + count - 1 of the stream for seed.
 * @param {bigint} seed
 * @param {number} count
 * @param {number} [start]
 * @returns {BigUint64Array}
 */
export function words(seed, count, start = 0) {
  const out = new BigUint64Array(count);
  for (let i = 0; i < count; i++) {
    let z = (seed + BigInt(start + i + 1) * GAMMA) & MASK;
    z = ((z ^ (z >> 30n)) * M1) & MASK;
    z = ((z ^ (z >> 27n)) * M2) & MASK;
    out[i] = z ^ (z >> 31n);
  }
  return out;
}

/**
 * Standard normals start .. start + count - 1 of seed's stream (start even), float64.
 * @param {bigint} seed
 * @param {number} count
 * @param {number} [start]
 * @returns {Float64Array}
 */
export function normals(seed, count, start = 0) {
  const pairs = Math.ceil(count / 2);
  const w = words(seed, 2 * pairs, start);
  const out = new Float64Array(2 * pairs);
  for (let i = 0; i < pairs; i++) {
    const u1 = (Number(w[2 * i] >> 11n) + 1) * TWO_M53;
    const u2 = Number(w[2 * i + 1] >> 11n) * TWO_M53;
    const r = Math.sqrt(-2.0 * Math.log(u1));
    const theta = 2.0 * Math.PI * u2;
    out[2 * i] = r * Math.cos(theta);
    out[2 * i + 1] = r * Math.sin(theta);
  }
  return out.subarray(0, count);
}

/**
 * Uniforms start .. start + count - 1 of seed's stream, float64 in [0, 1): the top 53 bits of each word.
 * @param {bigint} seed
 * @param {number} count
 * @param {number} [start]
 * @returns {Float64Array}
 */
export function uniforms(seed, count, start = 0) {
  const w = words(seed, count, start);
  const out = new Float64Array(count);
  for (let i = 0; i < count; i++) out[i] = Number(w[i] >> 11n) * TWO_M53;
  return out;
}

/** Standard normals and uniforms from one seed, drawn in order (as Python's Generator.standard_normal and random). */
export class Generator {
  /** @param {number|bigint|undefined|null} [seed] omitted: 64 random bits */
  constructor(seed) {
    if (seed === undefined || seed === null) {
      const bits = new BigUint64Array(1);
      globalThis.crypto.getRandomValues(bits);
      this.seed = bits[0];
    } else {
      this.seed = checkSeed(seed);
    }
    this.drawn = 0;
  }

  /**
   * The next count normals (float64); an odd count leaves the pair's second normal unused.
   * @param {number} count
   * @returns {Float64Array}
   */
  standardNormal(count) {
    const start = this.drawn + (this.drawn & 1);
    const out = normals(this.seed, count, start);
    this.drawn = start + count;
    return out;
  }

  /**
   * The next count uniforms (float64 in [0, 1)), one word each.
   * @param {number} count
   * @returns {Float64Array}
   */
  random(count) {
    const out = uniforms(this.seed, count, this.drawn);
    this.drawn += count;
    return out;
  }
}
