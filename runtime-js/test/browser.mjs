#!/usr/bin/env node
// Drives Debian's headless Chromium (playwright-core) against a running `vae-run serve`:
//   node test/browser.mjs URL EXPECTED.json OUT_DIR [TAMPERED_URL TAMPERED_FILE]
// EXPECTED.json (written by the Python test) holds the Python runtime's outputs for the page's own
// calls. Checks: the page loads with no console errors, shows a decoded grid, its numbers match
// Python's, a drawn input gets a score; writes OUT_DIR/explorer.png for a person to look at; with a
// tampered server, the page refuses the bundle naming the file. Prints one JSON line of figures; exit 1
// naming the first failed check.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [url, expectedPath, outDir, tamperedUrl, tamperedFile] = process.argv.slice(2);
const expected = JSON.parse(readFileSync(expectedPath, 'utf8'));
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

function check(ok, what) {
  if (!ok) throw new Error(what);
}

function maxRel(got, want) {
  let worst = 0;
  const scale = Math.max(...want.map(Math.abs), 1e-3);
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / Math.max(Math.abs(want[i]), scale));
  return worst;
}

async function open(context, target) {
  const page = await context.newPage();
  const problems = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  const requests = [];
  page.on('response', async (response) => {
    const length = Number((await response.allHeaders())['content-length'] ?? 0);
    requests.push({ url: response.url(), status: response.status(), bytes: length });
  });
  await page.goto(target, { waitUntil: 'load' });
  await page.waitForFunction(() => document.body.dataset.state !== 'loading', null, { timeout: 60000 });
  return { page, problems, requests };
}

async function main() {
  const profile = mkdtempSync(path.join(tmpdir(), 'vae-edge-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: ARGS, headless: true, viewport: { width: 1280, height: 900 } });
  const figures = {};
  try {
    const { page, problems, requests } = await open(browser, url);
    const error = await page.evaluate(() => window.explorer.error);
    check(error === null, `the page failed: ${error}`);
    check(problems.length === 0, problems.join('; '));
    check(requests.every((r) => r.url.startsWith(new URL(url).origin)), `the page fetched from elsewhere: ${requests.filter((r) => !r.url.startsWith(new URL(url).origin)).map((r) => r.url).join(', ')}`);
    const grid = await page.locator('#grid canvas').count();
    check(grid === 16, `the grid shows ${grid} decoded samples, expected 16`);
    figures.first_grid_ms = await page.evaluate(() => window.explorer.firstGridMs);
    figures.bytes_served = requests.reduce((a, r) => a + r.bytes, 0);
    figures.requests = requests.length;
    // The page's numbers against the Python runtime's, for the same calls.
    const got = await page.evaluate(async (z) => {
      const { vae } = window.explorer;
      const grid = window.explorer.lastGrid;
      const decoded = await vae.decode({ data: Float32Array.from(z.data), shape: z.shape });
      const x = window.explorer.lastInput;
      return { grid: Array.from(grid.data), decode: Array.from(decoded.data), score: x.score, recon: Array.from(x.recon), anomaly: x.anomaly };
    }, expected.z);
    figures.grid_max_rel = maxRel(got.grid, expected.sample);
    figures.decode_max_rel = maxRel(got.decode, expected.decode);
    figures.recon_max_rel = maxRel(got.recon, expected.reconstruct);
    figures.score_rel = Math.abs(got.score - expected.score) / Math.abs(expected.score);
    for (const key of ['grid_max_rel', 'decode_max_rel', 'recon_max_rel', 'score_rel']) check(figures[key] <= 1e-5, `${key} ${figures[key]} exceeds 1e-5 against the Python runtime`);
    check(got.anomaly === expected.is_anomaly, `the threshold light says anomaly=${got.anomaly}, Python says ${expected.is_anomaly}`);
    if (await page.locator('#draw').isVisible()) {
      const ink = await page.evaluate(() => {
        const canvas = document.getElementById('draw');
        return canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data.some((v, i) => i % 4 === 0 && v > 0);
      });
      check(ink, 'the input canvas is blank while the page shows the example\'s reconstruction and score');
    }
    // A person's actions: move a slider, draw a stroke; the page answers with a new decode and score.
    const before = await page.evaluate(() => Array.from(window.explorer.sliderDecoded));
    await page.locator('#sliders input').first().fill('2');
    await page.waitForFunction((b) => JSON.stringify(Array.from(window.explorer.sliderDecoded)) !== JSON.stringify(b), before, { timeout: 10000 });
    const box = await page.locator('#draw').boundingBox();
    if (box && (await page.locator('#draw').isVisible())) {
      await page.locator('#clear').click();
      await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.15);
      await page.mouse.down();
      for (let i = 1; i <= 10; i++) await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * (0.15 + 0.07 * i));
      await page.mouse.up();
      await page.waitForFunction(() => window.explorer.lastInput && window.explorer.lastInput.x.some((v) => v > 0), null, { timeout: 10000 });
      figures.drawn_score = await page.evaluate(() => window.explorer.lastInput.score);
      check(Number.isFinite(figures.drawn_score), 'the drawn input got no score');
    } else {
      // A vector bundle: paste a reading (the example, doubled) and score it.
      const reading = await page.locator('#reading').inputValue();
      const doubled = reading.split(',').map((v) => String(2 * Number(v))).join(', ');
      const previous = await page.evaluate(() => window.explorer.lastInput.score);
      await page.locator('#reading').fill(doubled);
      await page.locator('#score-reading').click();
      await page.waitForFunction((p) => window.explorer.lastInput.score !== p, previous, { timeout: 10000 }).catch(() => {});
      figures.pasted_score = await page.evaluate(() => window.explorer.lastInput.score);
      figures.pasted_text = await page.locator('#score').textContent();
      check(figures.pasted_text.startsWith('score') || figures.pasted_text.startsWith('Error: x: values must lie'), `the pasted reading got neither a score nor a one-line refusal: ${figures.pasted_text}`);
    }
    // A refused seed is said beside the grid and forgotten at the next one; seeds go up to 2^64 - 1.
    await page.locator('#seed').fill('-1');
    await page.locator('#resample').click();
    await page.waitForFunction(() => document.getElementById('grid-note').textContent !== '', null, { timeout: 10000 });
    check(await page.evaluate(() => document.body.dataset.state === 'ready' && window.explorer.error === null), 'a refused seed failed the page');
    await page.locator('#seed').fill('18446744073709551615');
    await page.locator('#resample').click();
    await page.waitForFunction(() => document.getElementById('grid-note').textContent === '', null, { timeout: 10000 });
    // The bundle's conformance set, run by the browser's runtime (onnxruntime-web) as Node and Python run it.
    const conformance = await page.evaluate(async () => {
      const { selftest } = await import(new URL('runtime/browser.js', document.baseURI).href);
      const { lines, mismatches } = await selftest(new URL('bundle/', document.baseURI).href);
      return { outputs: lines.length, mismatches: mismatches.map((m) => `${m.variant} ${m.output}: ${m.detail}`) };
    });
    check(conformance.mismatches.length === 0, `conformance set in the browser: ${conformance.mismatches.join('; ')}`);
    figures.browser_selftest_outputs = conformance.outputs;
    // Decode timing in the browser (for docs/javascript.md; the tests never judge it).
    figures.decode_ms = await page.evaluate(async () => {
      const { vae } = window.explorer;
      const out = {};
      for (const n of [1, 64]) {
        const z = { data: new Float32Array(n * vae.latentDim).fill(0.1), shape: [n, vae.latentDim] };
        for (let i = 0; i < 20; i++) await vae.decode(z);
        const times = [];
        for (let r = 0; r < 7; r++) {
          const t0 = performance.now();
          const reps = n === 1 ? 200 : 50;
          for (let i = 0; i < reps; i++) await vae.decode(z);
          times.push((performance.now() - t0) / reps);
        }
        times.sort((a, b) => a - b);
        out[`batch_${n}`] = times[3];
      }
      return out;
    });
    check(problems.length === 0, problems.join('; '));
    await page.screenshot({ path: path.join(outDir, 'explorer.png'), fullPage: true });
    await page.close();
    if (tamperedUrl) {
      const t = await open(browser, tamperedUrl);
      const message = await t.page.evaluate(() => window.explorer.error);
      check(typeof message === 'string' && message.includes(tamperedFile) && message.includes('sha256'), `the tampered bundle was not refused naming ${tamperedFile}: ${message}`);
      figures.tampered_message = message;
      await t.page.screenshot({ path: path.join(outDir, 'tampered.png') });
    }
  } finally {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  }
  writeFileSync(path.join(outDir, 'browser.json'), `${JSON.stringify(figures, null, 1)}\n`);
  process.stdout.write(`${JSON.stringify(figures)}\n`);
}

main().catch((err) => {
  process.stderr.write(`Error: ${err.message.split('\n')[0]}\n`);
  process.exit(1);
});
