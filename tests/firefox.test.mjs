// The page and the package in headless Firefox (Debian's firefox-esr, driven by puppeteer-core
// over WebDriver BiDi), each test on a browser context of its own:
//   node --test-reporter=spec [--test-name-pattern REGEX] tests/firefox.test.mjs
// Firefox on Linux has no WebGPU: the page runs on the CPU and its backend line says why, on the threaded
// module where it is served with COOP/COEP. pkg*/ must be built (scripts/build-wasm.sh).
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { launchFirefox } from './firefox.mjs';
import { heldOutDigits, syntheticClasses } from './images.mjs';
import { CYCLES, PER_CYCLE, longRun } from './long-run.mjs';
import { checkOutcome, packageProject, projectOutcome } from './package-project.mjs';
import { serve } from './static-server.mjs';
import { libraryWorkersStarted, waitUntil, withPageState, workerLog } from './waits.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
// As tests/page.test.mjs: `resnet eval --data mnist --weights models/mnist-resnet20.bpk`,
// less 2 points.
const HELD_OUT_ACCURACY = 0.991;
const DRAWN_DIGITS = JSON.parse(readFileSync(new URL('./fixtures/drawn-digits.json', import.meta.url))).digits;
const digits = heldOutDigits(10);

let browser;
let server;
let serverWithoutIsolation;
let files; // a folder for the files the tests upload (puppeteer uploads from paths)
before(async () => {
  browser = await launchFirefox();
  console.log(`  ${await browser.version()}`);
  server = await serve(ROOT);
  serverWithoutIsolation = await serve(ROOT, { crossOriginIsolated: false });
  files = mkdtempSync(join(tmpdir(), 'resnet-web-firefox-'));
});
after(async () => {
  await browser?.close();
  await server?.close();
  await serverWithoutIsolation?.close();
  if (files) rmSync(files, { recursive: true, force: true });
});

// A file on disk for an upload (in `folder` of the test's files): {name, buffer} -> its path.
function onDisk({ name, buffer }, folder = '') {
  const dir = join(files, folder);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, name), buffer);
  return join(dir, name);
}

const isReady = () => /^Ready|running on the CPU/.test(document.getElementById('notice').textContent);

// A page of its own in a browser context of its own, with the workers' messages logged
// (tests/waits.mjs); a failure prints the page's state.
async function withPage(work) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.evaluateOnNewDocument(workerLog);
  try {
    await work(page);
    // A worker start that stalled and was replaced (docs/design.md, "Threads") is said.
    const workers = await libraryWorkersStarted(page);
    if (workers > 1) console.log(`  ${workers} workers started on the last page: ${workers - 1} replaced`);
  } catch (error) {
    throw await withPageState(error, page);
  } finally {
    await context.close();
  }
}

// A test on the page, opened and ready (on the CPU); no page error may happen in it.
function firefoxTest(name, body, { isolated = true } = {}) {
  test(name, () => withPage(async (page) => {
    const problems = [];
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    const started = Date.now();
    await page.goto((isolated ? server : serverWithoutIsolation).url);
    await waitUntil(page, isReady, undefined, { timeout: 120000, what: 'the page to be ready' });
    await body({ page, started });
    assert(problems.length === 0, problems.join('\n'));
  }));
}

const predictions = (page) => page.$$eval('#predictions li', (items) => items.map((i) => ({ label: i.dataset.label, prob: Number(i.dataset.prob) })));
const notice = (page) => page.$eval('#notice', (n) => n.textContent);
const backendLine = (page) => page.$eval('#backend', (b) => b.textContent);

// Uploads a picture through the page's file input and waits for the bars under its name.
async function upload(page, picture) {
  await page.evaluate(() => document.getElementById('predictions').replaceChildren());
  const input = await page.$('#image-input');
  await input.uploadFile(onDisk(picture));
  await waitUntil(page, (wanted) => {
    const list = document.getElementById('predictions');
    return list.dataset.source === wanted && list.children.length > 0;
  }, picture.name, { timeout: 60000, what: `the bars of ${picture.name}` });
  return (await predictions(page))[0];
}

// Strokes (unit-box points) drawn with the mouse in a `size`-pixel box at (left, top) of the
// drawing canvas.
async function drawStrokes(page, strokes, size, left, top) {
  // Firefox lays the page out a little taller: the canvas may start below the viewport.
  await page.$eval('#drawing', (canvas) => canvas.scrollIntoView({ block: 'center' }));
  const box = await (await page.$('#drawing')).boundingBox();
  const at = ([x, y]) => [box.x + left + x * size, box.y + top + y * size];
  for (const stroke of strokes) {
    await page.mouse.move(...at(stroke[0]));
    await page.mouse.down();
    for (const point of stroke.slice(1)) await page.mouse.move(...at(point), { steps: 3 });
    await page.mouse.up();
  }
}

// The bars once no prediction runs or waits, for `source`.
async function settledPrediction(page, source) {
  await new Promise((resolve) => { setTimeout(resolve, 100); });
  await waitUntil(page, (wanted) => {
    const list = document.getElementById('predictions');
    return list.getAttribute('aria-busy') === 'false' && list.children.length > 0 && list.dataset.source === wanted;
  }, source, { timeout: 60000, what: `settled bars of ${source}` });
  return (await predictions(page))[0];
}

firefoxTest('Firefox: the page says it has no WebGPU, runs on the CPU (the threaded module with FMA), and drawn digits read right', async ({ page, started }) => {
  await drawStrokes(page, [[[0.5, 0.1], [0.5, 0.9]]], 200, 40, 40);
  await waitUntil(page, () => document.querySelector('#predictions li') !== null, undefined, { timeout: 60000, what: 'the first prediction' });
  console.log(`  time to first prediction: ${Date.now() - started} ms`);
  assert.equal((await settledPrediction(page, 'Drawing')).label, '1');
  // No WebGPU is tried, and the backend line says why it is not used; nothing is an error.
  await waitUntil(page, () => /WebGPU not used/.test(document.getElementById('backend').textContent), undefined, { timeout: 60000, what: 'the line that WebGPU is not used' });
  const state = `${await backendLine(page)} | ${await notice(page)}`;
  console.log(`  ${state}`);
  assert.match(state, /^CPU \(wasm FMA, (?:[12] threads?|1 thread: starting the thread pool stopped the worker twice \(no answer for 10 s\))\), CPU .* a prediction; WebGPU not used: this browser has none \| Ready/);
  // The threaded module with FMA; 'auto' keeps one thread or two, whichever it measured
  // faster. After two stalled starts in a row (docs/design.md, "Threads"; a loaded machine
  // sometimes gives them), the module without threads, and the line says why (above).
  const threads = await page.evaluate(async () => (await import('/js/resnet-web.js')).cpuThreads());
  const stalledTwice = (await libraryWorkersStarted(page)) >= 3;
  assert.equal(stalledTwice, /stopped the worker twice/.test(state), state);
  assert.deepEqual(
    { module: threads.module, fma: threads.fma, available: threads.available },
    stalledTwice ? { module: 'pkg-fma', fma: true, available: 1 } : { module: 'pkg-threads-fma', fma: true, available: 2 },
  );
  for (const label of ['2', '4', '7']) {
    await page.click('#clear-drawing');
    await drawStrokes(page, DRAWN_DIGITS[label], 200, 40, 40);
    const top = await settledPrediction(page, 'Drawing');
    assert.equal(top.label, label, `${label} drawn, the bars say ${top.label}`);
  }
});

firefoxTest('Firefox: uploaded held-out digits are classified, and a file that is not an image is answered', async ({ page }) => {
  let correct = 0;
  for (const digit of digits) {
    if ((await upload(page, { name: digit.name, buffer: digit.png })).label === digit.label) correct += 1;
  }
  console.log(`  ${correct}/${digits.length} held-out digits correct`);
  assert(correct / digits.length >= HELD_OUT_ACCURACY - 0.02, `${correct}/${digits.length}`);
  const input = await page.$('#image-input');
  await input.uploadFile(onDisk({ name: 'notes.png', buffer: Buffer.from('not a png') }));
  await waitUntil(page, () => /not an image/.test(document.getElementById('notice').textContent), undefined, { timeout: 30000, what: 'the notice "not an image"' });
  assert.equal((await upload(page, { name: digits[5].name, buffer: digits[5].png })).label, digits[5].label);
});

firefoxTest('Firefox: served without COOP/COEP, the CPU runs on one thread, says why, and a digit reads', async ({ page }) => {
  await waitUntil(page, () => /WebGPU not used/.test(document.getElementById('backend').textContent), undefined, { timeout: 60000, what: 'the line that WebGPU is not used' });
  const backend = await backendLine(page);
  console.log(`  ${backend}`);
  assert.match(backend, /^CPU \(wasm FMA, 1 thread: the page is not cross-origin isolated/);
  assert.equal((await upload(page, { name: digits[3].name, buffer: digits[3].png })).label, digits[3].label);
}, { isolated: false });

firefoxTest('Firefox: the fake webcam stream updates the bars', async ({ page }) => {
  await page.evaluate(() => {
    window.updates = 0;
    new MutationObserver(() => { window.updates += 1; }).observe(document.getElementById('predictions'), { childList: true });
  });
  await page.click('#webcam-toggle');
  await waitUntil(page, () => window.updates >= 5, undefined, { timeout: 60000, what: '5 updates of the bars' });
  await page.click('#webcam-toggle');
  console.log(`  ${await page.evaluate(() => window.updates)} updates`);
});

firefoxTest('Firefox: your own three classes train on the CPU to 90%, and the model comes back after a reload (IndexedDB)', async ({ page }) => {
  const classes = syntheticClasses(24);
  await page.select('#train-data', 'own');
  await page.click('#add-class');
  for (const [k, pictures] of classes.entries()) {
    const folder = `class-${k}`;
    const input = await page.$(`.class-row[data-class-index="${k}"] input.add-files`);
    await input.uploadFile(...pictures.map((picture) => onDisk(picture, folder)));
  }
  await waitUntil(page, () => document.querySelectorAll('.thumbnails button').length === 72, undefined, { timeout: 60000, what: '72 thumbnails' });
  const settings = { 'train-model': 'resnet8', 'train-input': 'gray-32', 'train-epochs': '10', 'train-batch': '16', 'train-lr': '0.01', 'train-optimizer': 'adam', 'train-validation': '0.25' };
  for (const [id, value] of Object.entries(settings)) {
    const isSelect = await page.$eval(`#${id}`, (e) => e.tagName === 'SELECT');
    if (isSelect) await page.select(`#${id}`, value);
    else await page.$eval(`#${id}`, (e, v) => { e.value = v; e.dispatchEvent(new Event('input', { bubbles: true })); e.dispatchEvent(new Event('change', { bubbles: true })); }, value);
  }
  await page.evaluate(() => { document.getElementById('train-result').dataset.done = ''; });
  await page.click('#train-start');
  await waitUntil(page, () => !document.getElementById('train-start').disabled
    && document.getElementById('train-result').dataset.stopped !== undefined
    && document.getElementById('train-notice').textContent.length > 0
    && !/Preparing|Training on/.test(document.getElementById('train-notice').textContent), undefined, { timeout: 300000, what: 'the end of the training run' });
  const result = await page.$eval('#train-result', (box) => ({ ...box.dataset, notice: document.getElementById('train-notice').textContent }));
  console.log(`  ${result.notice}`);
  assert(!result.failure, result.failure);
  assert.match(result.notice, /CPU/);
  assert(Number(result.validationAccuracy) >= 0.9, `validation accuracy ${result.validationAccuracy}`);
  const blob = classes[2][1];
  assert.equal((await upload(page, blob)).label, 'class 3');
  await page.reload();
  await waitUntil(page, isReady, undefined, { timeout: 120000, what: 'the page to be ready after the reload' });
  await waitUntil(page, () => document.querySelector('#model-choice option[value="trained"]') !== null, undefined, { timeout: 30000, what: 'the trained model in the choice' });
  // The notice says Ready again once the trained model has loaded (from IndexedDB first).
  await page.evaluate(() => { document.getElementById('notice').textContent = ''; });
  await page.select('#model-choice', 'trained');
  await waitUntil(page, () => /^Ready|running on the CPU/.test(document.getElementById('notice').textContent)
    && document.getElementById('model-choice').value === 'trained', undefined, { timeout: 120000, what: 'the trained model to be ready' });
  assert.equal((await upload(page, classes[1][2])).label, 'class 2');
});

// Long use of one worker on the CPU (tests/long-run.mjs): after the warm-up no wasm module's
// memory grows past what its allocator's fragmentation takes.
firefoxTest(`Firefox: ${CYCLES * PER_CYCLE} classifications, ${CYCLES} trainings and ${CYCLES} loads and disposals in one worker leak no memory`, async ({ page }) => {
  await longRun(page);
});

// The package's project page (tests/package-project.mjs), as in tests/package.test.mjs.
test('Firefox: the installed package classifies, trains and names its errors from a project\'s page', async () => {
  const project = await packageProject();
  try {
    await withPage(async (page) => {
      await page.goto(`${project.url}index.html`);
      const outcome = await projectOutcome(page);
      console.log(`  ${JSON.stringify(outcome)}`);
      checkOutcome(outcome);
      // As above: the module without threads only after two stalled starts, which it names.
      if ((await libraryWorkersStarted(page)) >= 3) assert.match(outcome.cpu.reason, /stopped the worker twice/);
      else assert.equal(outcome.cpu.module, 'pkg-threads-fma');
    });
  } finally {
    await project.close();
  }
});
