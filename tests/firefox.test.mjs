// The page and the package in headless Firefox (Debian's firefox-esr, driven by puppeteer-core
// over WebDriver BiDi), each test on a browser context of its own:
//   node --test-reporter=spec [--test-name-pattern REGEX] tests/firefox.test.mjs
// Firefox on Linux has no WebGPU: the page runs on the CPU and its backend line says why, on the threaded
// module where it is served with COOP/COEP. pkg*/ must be built (scripts/build-wasm.sh).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { launchFirefox } from './firefox.mjs';
import { heldOutDigits } from './images.mjs';
import { CYCLES, PER_CYCLE, longRun } from './long-run.mjs';
import { checkOutcome, packageProject, projectOutcome } from './package-project.mjs';
import { isReady, settledPrediction, trainOwnClassesAndReload, upload as uploadFile, uploadFolder } from './page-steps.mjs';
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
  files = uploadFolder('resnet-web-firefox-');
});
after(async () => {
  await browser?.close();
  await server?.close();
  await serverWithoutIsolation?.close();
  files?.remove();
});
const upload = (page, picture) => uploadFile(page, picture, files.onDisk);

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

const notice = (page) => page.$eval('#notice', (n) => n.textContent);
const backendLine = (page) => page.$eval('#backend', (b) => b.textContent);

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
  await (await page.$('#image-input')).uploadFile(files.onDisk({ name: 'notes.png', buffer: Buffer.from('not a png') }));
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
  console.log(`  ${await trainOwnClassesAndReload(page, files.onDisk)}`);
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
