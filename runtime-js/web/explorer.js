// The latent explorer: samples with a seed, sliders along the latent's main directions (stored in the
// manifest's "explorer" section at export), an input to draw or paste with its reconstruction, anomaly
// score and threshold light, and an interpolation strip. Everything runs in this page on
// onnxruntime-web (wasm, one thread); nothing is fetched from outside this server.
// window.explorer exposes the loaded VAE and the page's timings to tests and to the console.
import { configure, load } from '../runtime/browser.js';

const $ = (id) => document.getElementById(id);
const started = performance.now();
const state = { vae: null, golden: null, firstGridMs: null, error: null, lastInput: null };
window.explorer = state;

function fail(err) {
  state.error = err?.message ?? String(err);
  document.body.dataset.state = 'error';
  $('status').textContent = `Error: ${state.error}`;
}

// ---------------------------------------------------------------- drawing tensors
function range(vae) {
  const ex = vae.manifest.explorer ?? {};
  if (vae.likelihood === 'bernoulli') return null; // per-feature offset/scale map onto [0, 1]
  return [ex.data_min ?? -3, ex.data_max ?? 3];
}

function unit(vae, data) {
  // data units -> [0, 1] for display: the model's own space for Bernoulli data, the validation range otherwise
  const r = range(vae);
  if (!r) return vae.normalize({ data, shape: [data.length] }).data;
  return Float32Array.from(data, (v) => (v - r[0]) / (r[1] - r[0] || 1));
}

function paint(canvas, vae, data) {
  const ctx = canvas.getContext('2d');
  const v = unit(vae, data);
  if (vae.manifest.data.kind === 'image' && vae.shape.length === 3) {
    const [c, h, w] = vae.shape;
    const img = ctx.createImageData(w, h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const px = (y * w + x) * 4;
        for (let k = 0; k < 3; k++) {
          const ch = c === 3 ? k : 0;
          img.data[px + k] = Math.round(255 * Math.min(1, Math.max(0, v[ch * h * w + y * w + x])));
        }
        img.data[px + 3] = 255;
      }
    }
    const tmp = new OffscreenCanvas(w, h);
    tmp.getContext('2d').putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(tmp, 0, 0, canvas.width, canvas.height);
  } else {
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.strokeStyle = '#1565c0';
    ctx.lineWidth = 2;
    ctx.beginPath();
    for (let i = 0; i < v.length; i++) {
      const px = (i / Math.max(1, v.length - 1)) * (canvas.width - 8) + 4;
      const py = canvas.height - 4 - Math.min(1, Math.max(0, v[i])) * (canvas.height - 8);
      if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
    }
    ctx.stroke();
  }
}

function tile(parent, vae, data, size = 72) {
  const canvas = document.createElement('canvas');
  canvas.width = size;
  canvas.height = size;
  paint(canvas, vae, data);
  parent.append(canvas);
}

function rows(tensor, n) {
  const size = tensor.data.length / n;
  return Array.from({ length: n }, (_, i) => tensor.data.subarray(i * size, (i + 1) * size));
}

// ---------------------------------------------------------------- panels
async function drawGrid() {
  const { vae } = state;
  const text = $('seed').value.trim();
  const seed = /^\d+$/.test(text) ? BigInt(text) : Number(text); // the whole 0 .. 2^64 - 1, not only safe integers
  const temperature = Number($('temperature').value);
  const samples = await vae.sample(16, { seed, temperature });
  const grid = $('grid');
  grid.replaceChildren();
  for (const row of rows(samples, 16)) tile(grid, vae, row);
  state.lastGrid = { seed, temperature, data: samples.data };
}

function setupSliders() {
  const { vae } = state;
  const ex = vae.manifest.explorer;
  const L = vae.latentDim;
  const mean = ex?.latent_mean ?? new Array(L).fill(0);
  const directions = ex?.directions ?? Array.from({ length: Math.min(L, 6) }, (_, k) => Array.from({ length: L }, (_, j) => (j === k ? 1 : 0)));
  const std = ex?.direction_std ?? directions.map(() => 1);
  $('directions-note').textContent = ex
    ? `${ex.method}; ${directions.length} of ${L} dimensions, explaining ${(100 * ex.explained_variance_ratio.reduce((a, b) => a + b, 0)).toFixed(1)}% of the variance`
    : 'the latent axes (this bundle stores no directions)';
  const box = $('sliders');
  box.replaceChildren();
  const inputs = directions.map((_, k) => {
    const row = document.createElement('label');
    row.className = 'slider';
    const input = Object.assign(document.createElement('input'), { type: 'range', min: -3, max: 3, step: 0.05, value: 0 });
    input.dataset.direction = String(k);
    const value = document.createElement('span');
    value.textContent = '0.00σ';
    row.append(`dir ${k + 1}`, input, value);
    box.append(row);
    input.addEventListener('input', () => {
      value.textContent = `${Number(input.value).toFixed(2)}σ`;
      schedule();
    });
    return input;
  });
  let pending = false;
  const schedule = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      const z = Float32Array.from(mean);
      inputs.forEach((input, k) => {
        for (let j = 0; j < L; j++) z[j] += Number(input.value) * std[k] * directions[k][j];
      });
      state.sliderZ = z;
      vae.decode({ data: z, shape: [L] }).then((x) => {
        paint($('slider-view'), vae, x.data);
        state.sliderDecoded = x.data;
      }).catch(fail);
    });
  };
  schedule();
}

function setupDrawing() {
  const { vae } = state;
  const canvas = $('draw');
  const ctx = canvas.getContext('2d');
  const [, h, w] = vae.shape;
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  paint(canvas, vae, exampleInput(0)); // the input whose reconstruction, score and strip the page shows first
  let drawing = false;
  const at = (e) => {
    const r = canvas.getBoundingClientRect();
    return [((e.clientX - r.left) / r.width) * canvas.width, ((e.clientY - r.top) / r.height) * canvas.height];
  };
  canvas.addEventListener('pointerdown', (e) => {
    drawing = true;
    canvas.setPointerCapture(e.pointerId);
    ctx.beginPath();
    ctx.moveTo(...at(e));
  });
  canvas.addEventListener('pointermove', (e) => {
    if (!drawing) return;
    ctx.strokeStyle = '#fff';
    ctx.lineCap = 'round';
    ctx.lineWidth = (canvas.width / w) * 1.3;
    ctx.lineTo(...at(e));
    ctx.stroke();
  });
  const finish = () => {
    if (!drawing) return;
    drawing = false;
    analyse(readCanvas()).catch(fail);
  };
  canvas.addEventListener('pointerup', finish);
  canvas.addEventListener('pointerleave', finish);
  $('clear').addEventListener('click', () => {
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    analyse(readCanvas()).catch(fail);
  });
  $('example').addEventListener('click', () => {
    const x = exampleInput(0);
    paint(canvas, vae, x);
    analyse(x).catch(fail);
  });
  // The canvas' ink, averaged onto the model's pixels, in data units.
  function readCanvas() {
    const [c] = vae.shape;
    const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    const cell = [canvas.height / h, canvas.width / w];
    const out = new Float32Array(c * h * w);
    const r = range(vae);
    const pre = vae.manifest.data.preprocessing;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let sum = 0;
        let count = 0;
        for (let yy = Math.floor(y * cell[0]); yy < Math.floor((y + 1) * cell[0]); yy++) {
          for (let xx = Math.floor(x * cell[1]); xx < Math.floor((x + 1) * cell[1]); xx++) {
            sum += pixels[(yy * canvas.width + xx) * 4] / 255;
            count++;
          }
        }
        const v = sum / count;
        for (let k = 0; k < c; k++) {
          const i = k * h * w + y * w + x;
          const off = typeof pre.offset === 'number' ? pre.offset : pre.offset.flat(Infinity)[i];
          const sc = typeof pre.scale === 'number' ? pre.scale : pre.scale.flat(Infinity)[i];
          out[i] = r ? r[0] + v * (r[1] - r[0]) : off + v * sc;
        }
      }
    }
    return out;
  }
}

function setupPaste() {
  $('draw-box').hidden = true;
  $('paste-box').hidden = false;
  $('input-title').textContent = 'Paste a reading';
  $('reading').value = Array.from(exampleInput(0), (v) => Number(v.toPrecision(5))).join(', ');
  $('score-reading').addEventListener('click', () => {
    const values = $('reading').value.split(/[\s,]+/).filter(Boolean).map(Number);
    analyse(values).catch((err) => {
      $('score').textContent = `Error: ${err.message}`;
    });
  });
}

function exampleInput(i) {
  const x = state.golden?.inputs?.x;
  const size = state.vae.shape.reduce((a, b) => a * b, 1);
  return x ? Float32Array.from(x.data.slice(i * size, (i + 1) * size)) : new Float32Array(size);
}

async function analyse(values) {
  const { vae } = state;
  const x = { data: Float32Array.from(values), shape: vae.shape };
  const [recon, score] = [await vae.reconstruct(x), await vae.anomalyScore(x)];
  paint($('recon'), vae, recon.data);
  let limit = null;
  try {
    limit = vae.threshold(0.99);
  } catch {
    // no calibration stored for this variant: no light
  }
  $('score').textContent = `score ${score.toFixed(2)} nats`;
  $('threshold').textContent = limit === null ? 'no calibrated threshold' : `threshold p99 ${limit.toFixed(2)}`;
  $('light').className = `light ${limit === null ? '' : score > limit ? 'anomaly' : 'ok'}`;
  state.lastInput = { x: x.data, recon: recon.data, score, anomaly: limit !== null && score > limit };
  await drawStrip(x.data);
}

async function drawStrip(from) {
  const { vae } = state;
  const steps = 8;
  const path = await vae.interpolate({ data: from, shape: vae.shape }, { data: exampleInput(1), shape: vae.shape }, steps);
  const strip = $('strip');
  strip.replaceChildren();
  for (const row of rows(path, steps)) tile(strip, vae, row);
}

// ---------------------------------------------------------------- start
async function main() {
  configure({ wasmPaths: new URL('ort/', document.baseURI).href, numThreads: 1 });
  const params = new URLSearchParams(location.search);
  const precision = params.get('precision') ?? 'fp32';
  const vae = await load(new URL(params.get('bundle') ?? 'bundle/', document.baseURI).href, { precision });
  state.vae = vae;
  state.loadedMs = performance.now() - started;
  try {
    const response = await fetch('bundle/golden.json', { cache: 'no-store' });
    state.golden = response.ok ? await response.json() : null;
  } catch {
    state.golden = null; // examples fall back to blank inputs
  }
  await drawGrid();
  state.firstGridMs = performance.now();
  const m = vae.manifest;
  $('status').textContent = `${m.data.dataset}: ${m.model.arch}, latent ${vae.latentDim}, ${vae.likelihood}, variant ${vae.precision} — every file verified (sha256); first grid in ${Math.round(state.firstGridMs)} ms`;
  $('about').textContent = `bundle ${vae.path} · onnxruntime-web ${m.onnxruntime?.min_version ? `(needs ≥ ${m.onnxruntime.min_version})` : ''} wasm, 1 thread`;
  // A seed or temperature the runtime refuses is said beside them until the next grid, not as the page's failure.
  const regrid = () => drawGrid().then(() => {
    $('grid-note').textContent = '';
  }, (err) => (err?.name === 'InputError' ? ($('grid-note').textContent = `Error: ${err.message}`) : fail(err)));
  $('resample').addEventListener('click', regrid);
  $('seed').addEventListener('change', regrid);
  setupSliders();
  if (m.data.kind === 'image' && vae.shape.length === 3) setupDrawing(); else setupPaste();
  await analyse(exampleInput(0));
  document.body.dataset.state = 'ready';
}

state.ready = main().then(() => true, (err) => {
  fail(err);
  return false;
});
