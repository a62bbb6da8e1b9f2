// The page and the package in WebKit, Safari's engine (Debian's WebKitGTK MiniBrowser under
// Xvfb, driven over W3C WebDriver by tests/webkit.mjs), each test in a browser of its own:
//   node --test-reporter=spec [--test-name-pattern REGEX] tests/webkit.test.mjs
// This WebKit has wasm SIMD but no relaxed SIMD, no SharedArrayBuffer although the page is
// cross-origin isolated, and no WebGPU: the page runs pkg/ on one thread, says why, and is
// never served a module it could not load. pkg*/ must be built (scripts/build-wasm.sh).
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { heldOutDigits } from './images.mjs';
import { checkOutcome, packageProject, projectOutcome } from './package-project.mjs';
import { isReady, settledPrediction, trainOwnClassesAndReload, upload as uploadFile, uploadFolder } from './page-steps.mjs';
import { serve } from './static-server.mjs';
import { waitUntil, withPageState, workerLog } from './waits.mjs';
import { launchWebKit } from './webkit.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const artifacts = process.env.ARTIFACTS ?? `${ROOT}artifacts`;
const DRAWN_DIGITS = JSON.parse(readFileSync(new URL('./fixtures/drawn-digits.json', import.meta.url))).digits;
const digits = heldOutDigits(2); // 20: every one must read right

// What WebDriver cannot listen for: the page's uncaught errors, kept in the page; and the
// workers' last messages (tests/waits.mjs), for a failure's report.
const PRELUDE = `${workerLog}
window.testPageErrors = [];
addEventListener('error', (event) => testPageErrors.push('page error: ' + event.message));
addEventListener('unhandledrejection', (event) => testPageErrors.push('unhandled rejection: ' + (event.reason?.message ?? event.reason)));`;

let browser;
let server;
let serverWithoutIsolation;
let files; // the files the tests upload (WebDriver uploads from paths)
before(async () => {
  browser = await launchWebKit();
  server = await serve(ROOT, { htmlPrelude: PRELUDE });
  serverWithoutIsolation = await serve(ROOT, { crossOriginIsolated: false, htmlPrelude: PRELUDE });
  files = uploadFolder('resnet-web-webkit-');
  mkdirSync(artifacts, { recursive: true });
});
after(async () => {
  await browser?.close();
  await server?.close();
  await serverWithoutIsolation?.close();
  files?.remove();
});
const upload = (page, picture) => uploadFile(page, picture, files.onDisk);

const pageErrors = (page) => page.evaluate(() => window.testPageErrors);

// Directories of wasm modules `requested` (a server's log) asked for.
const modulesServed = (requested) => [...new Set(requested.filter((path) => /\.wasm$/.test(path)).map((path) => path.split('/')[1]))].sort();

// A test on the page, opened and ready; no page error may happen in it, and no wasm module
// but pkg/ may be asked for (the FMA twins do not validate in WebKit, and the threaded
// modules need a SharedArrayBuffer it lacks).
function webkitTest(name, body, { isolated = true } = {}) {
  test(name, async () => {
    const from = isolated ? server : serverWithoutIsolation;
    const page = await browser.newPage();
    try {
      from.requested.length = 0;
      const started = Date.now();
      await page.goto(from.url);
      await waitUntil(page, isReady, undefined, { timeout: 120000, what: 'the page to be ready' });
      await body({ page, started, requested: from.requested });
      assert.deepEqual(await pageErrors(page), []);
      assert.deepEqual(modulesServed(from.requested), ['pkg']);
    } catch (error) {
      throw await withPageState(error, page);
    } finally {
      await page.close();
    }
  });
}

// Unit-box strokes drawn with the mouse in a 200-pixel box 40 pixels into the canvas.
const drawDigit = (page, strokes) => page.drawOn('#drawing', strokes.map((stroke) => stroke.map(([x, y]) => [40 + x * 200, 40 + y * 200])));

webkitTest('WebKit: the page runs pkg/ on one thread and says why, WebGPU is not tried, and drawn digits read right', async ({ page, started }) => {
  await drawDigit(page, [[[0.5, 0.1], [0.5, 0.9]]]);
  await waitUntil(page, () => document.querySelector('#predictions li') !== null, undefined, { timeout: 60000, what: 'the first prediction' });
  console.log(`  ${browser.version}; time to first prediction: ${Date.now() - started} ms`);
  assert.equal((await settledPrediction(page, 'Drawing')).label, '1');
  await waitUntil(page, () => /WebGPU not used/.test(document.getElementById('backend').textContent), undefined, { timeout: 60000, what: 'the line that WebGPU is not used' });
  const shown = await page.evaluate(() => ({
    line: `${document.getElementById('backend').textContent} | ${document.getElementById('notice').textContent}`,
    error: document.getElementById('notice').className === 'error',
  }));
  console.log(`  ${shown.line}`);
  assert.match(shown.line, /^CPU \(wasm, 1 thread: this browser has no SharedArrayBuffer, which the threads share their memory through\), CPU [\d.]+ ms a prediction; WebGPU not used: this browser has none \| Ready/);
  assert.equal(shown.error, false);
  const threads = await page.evaluate(async () => (await import('/js/resnet-web.js')).cpuThreads());
  assert.deepEqual(threads, { threads: 1, available: 1, reason: 'this browser has no SharedArrayBuffer, which the threads share their memory through', module: 'pkg', fma: false });
  for (const label of ['2', '4', '7']) {
    await page.click('#clear-drawing');
    await drawDigit(page, DRAWN_DIGITS[label]);
    const top = await settledPrediction(page, 'Drawing');
    assert.equal(top.label, label, `${label} drawn, the bars say ${top.label}`);
  }
  // What WebKit shows, kept with CI's artefacts.
  writeFileSync(join(artifacts, 'webkit-page.png'), await page.screenshot());
  // Asked for by name, WebGPU fails with a message that says what to do; the page goes on.
  const webgpu = await page.evaluate(async () => {
    const { loadModel, shippedModels } = await import('/js/resnet-web.js');
    return loadModel(shippedModels.digits, { backend: 'webgpu' }).then(() => 'loaded', (error) => ({ code: error.code, message: error.message }));
  });
  assert.equal(webgpu.code, 'unsupported');
  assert.match(webgpu.message, /this browser has no WebGPU/);
});

webkitTest('WebKit: 20 uploaded held-out digits all read right, and a file that is not an image is answered', async ({ page }) => {
  const wrong = [];
  for (const digit of digits) {
    const top = await upload(page, { name: digit.name, buffer: digit.png });
    if (top.label !== digit.label) wrong.push(`${digit.name} read as ${top.label}`);
  }
  console.log(`  ${digits.length - wrong.length}/${digits.length} held-out digits correct`);
  assert.deepEqual(wrong, []);
  await (await page.$('#image-input')).uploadFile(files.onDisk({ name: 'notes.png', buffer: Buffer.from('not a png') }));
  await waitUntil(page, () => /notes\.png is not an image/.test(document.getElementById('notice').textContent), undefined, { timeout: 30000, what: 'the notice "not an image"' });
  assert.equal((await upload(page, { name: digits[5].name, buffer: digits[5].png })).label, digits[5].label);
  // The page errors a bad file gives are answers, not uncaught errors (checked after each test).
});

webkitTest('WebKit: served without COOP/COEP, the CPU runs on one thread and says why', async ({ page }) => {
  await waitUntil(page, () => /WebGPU not used/.test(document.getElementById('backend').textContent), undefined, { timeout: 60000, what: 'the line that WebGPU is not used' });
  const line = await page.$eval('#backend', (b) => b.textContent);
  console.log(`  ${line}`);
  assert.match(line, /^CPU \(wasm, 1 thread: the page is not cross-origin isolated/);
  assert.equal((await upload(page, { name: digits[3].name, buffer: digits[3].png })).label, digits[3].label);
}, { isolated: false });

webkitTest('WebKit: three classes of your own train on one thread, and the model comes back after a reload (IndexedDB)', async ({ page }) => {
  console.log(`  ${await trainOwnClassesAndReload(page, files.onDisk)}`);
});

// The package's project page (tests/package-project.mjs), as in tests/package.test.mjs.
test('WebKit: the installed package classifies, trains and names its errors from a project\'s page', async () => {
  const project = await packageProject();
  const page = await browser.newPage();
  try {
    await page.goto(`${project.url}index.html`);
    const outcome = await projectOutcome(page);
    console.log(`  ${JSON.stringify(outcome.cpu)}`);
    checkOutcome(outcome);
    assert.equal(outcome.cpu.module, 'pkg');
    assert.match(outcome.cpu.reason, /no SharedArrayBuffer/);
  } catch (error) {
    throw await withPageState(error, page);
  } finally {
    await page.close();
    await project.close();
  }
});
