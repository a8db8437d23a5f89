// The prior p(z) of a bundle, as the Python runtime computes it (float64; the formulas are the
// exporter's and the trainer's): N(0, I) when the manifest has no model.prior, else the VampPrior
// (Tomczak & Welling, 2018), a mixture of C diagonal Gaussians (the encoder at its pseudo-inputs) that
// the manifest stores as numbers, outside the graphs.

export const LOG_2PI = Math.log(2 * Math.PI);

/**
 * A mixture prior, row-major float64 arrays [C * latent].
 * @typedef {{components: number, latent: number, mu: Float64Array, logvar: Float64Array, std: Float64Array, precision: Float64Array, logC: number}} Mixture
 */

/**
 * The manifest's model.prior (already checked by checkManifest) as a Mixture; null for N(0, I).
 * @param {object|undefined|null} prior
 * @param {number} latent
 * @returns {Mixture|null}
 */
export function mixturePrior(prior, latent) {
  if (prior === undefined || prior === null) return null;
  const mu = Float64Array.from(prior.mu.flat());
  const logvar = Float64Array.from(prior.logvar.flat());
  return {
    components: prior.components, latent, mu, logvar, logC: Math.log(prior.components),
    std: logvar.map((v) => Math.exp(0.5 * v)), precision: logvar.map((v) => Math.exp(-v)),
  };
}

/**
 * n latents from the mixture, in the draw order every runtime keeps: n uniforms pick the components
 * (c = min(floor(u C), C - 1)), then n x latent normals; z = mu_c + temperature * exp(0.5 logvar_c) * eps
 * in float64, cast to float32.
 * @param {import('./rng.js').Generator} rng
 * @param {Mixture} prior
 * @param {number} n
 * @param {number} temperature
 * @returns {Float32Array} [n * latent]
 */
export function sampleMixture(rng, prior, n, temperature) {
  const { components: C, latent: L, mu, std } = prior;
  const u = rng.random(n);
  const eps = rng.standardNormal(n * L);
  const z = new Float32Array(n * L);
  for (let i = 0; i < n; i++) {
    const c = Math.min(Math.floor(u[i] * C), C - 1);
    for (let j = 0; j < L; j++) z[i * L + j] = Math.fround(mu[c * L + j] + temperature * std[c * L + j] * eps[i * L + j]);
  }
  return z;
}

/** log sum_i exp(a_i), shifted by the largest term; -Infinity when every term is, NaN if one is. */
export function logSumExp(a) {
  let top = -Infinity;
  for (const v of a) {
    if (Number.isNaN(v)) return NaN;
    if (v > top) top = v;
  }
  if (!Number.isFinite(top)) return top;
  let total = 0;
  for (const v of a) total += Math.exp(v - top);
  return top + Math.log(total);
}

/**
 * KL(N(mu, exp(logvar)) || mixture) per sample, bounded as Hershey & Olsen (2007):
 * -(logsumexp_c(-kl_c) - log C), kl_c the KL to component c; >= the true KL, and that component's KL
 * when C = 1. Float64 [n].
 * @param {Float32Array} mu [n * latent]
 * @param {Float32Array} logvar [n * latent]
 * @param {number} n
 * @param {Mixture} prior
 * @returns {Float64Array}
 */
export function mixtureKl(mu, logvar, n, prior) {
  const { components: C, latent: L } = prior;
  const out = new Float64Array(n);
  const neg = new Float64Array(C);
  for (let s = 0; s < n; s++) {
    for (let c = 0; c < C; c++) {
      let total = 0;
      for (let j = 0; j < L; j++) {
        const lv = logvar[s * L + j];
        const d = mu[s * L + j] - prior.mu[c * L + j];
        total += prior.logvar[c * L + j] - lv + (Math.exp(lv) + d * d) * prior.precision[c * L + j] - 1;
      }
      neg[c] = -0.5 * total;
    }
    out[s] = -(logSumExp(neg) - prior.logC);
  }
  return out;
}

/**
 * log p(z) per latent, float64 [n]: N(0, I) when prior is null, else
 * logsumexp_c[-0.5 sum_l ((z_l - mu_cl)^2 exp(-logvar_cl) + logvar_cl + log 2 pi)] - log C.
 * @param {ArrayLike<number>} z [n * latent]
 * @param {number} n
 * @param {number} L latent
 * @param {Mixture|null} prior
 * @returns {Float64Array}
 */
export function logPriorOf(z, n, L, prior) {
  const out = new Float64Array(n);
  if (prior === null) {
    for (let s = 0; s < n; s++) {
      let total = 0;
      for (let j = 0; j < L; j++) total += z[s * L + j] * z[s * L + j] + LOG_2PI;
      out[s] = -0.5 * total;
    }
    return out;
  }
  const C = prior.components;
  const terms = new Float64Array(C);
  for (let s = 0; s < n; s++) {
    for (let c = 0; c < C; c++) {
      let total = 0;
      for (let j = 0; j < L; j++) {
        const d = z[s * L + j] - prior.mu[c * L + j];
        total += d * d * prior.precision[c * L + j] + prior.logvar[c * L + j] + LOG_2PI;
      }
      terms[c] = -0.5 * total;
    }
    out[s] = logSumExp(terms) - prior.logC;
  }
  return out;
}
