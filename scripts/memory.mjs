// Shows whether memory stays flat over long use: wasm memory and live GPU buffers while the
// fake webcam is classified frame after frame (1,000 classifications), then during a
// training run (20 minutes). Prints one JSON line per sample, then a summary per phase.
//   node scripts/memory.mjs http://127.0.0.1:PORT/ [classifications] [training minutes]
//     [training images] [validation share]
// (scripts/memory.sh builds, serves and runs it.) The numbers come from hooks in front of
// the worker (tests/worker-prelude.mjs): the wasm memory's size, and the GPU buffers alive
// (created, and neither destroyed nor collected), as the browser sees them.
import { launchChromium } from '../tests/chromium.mjs';
import { modelWorker, routeWorker } from '../tests/worker-prelude.mjs';

const [url, classifications = '1000', trainingMinutes = '20', images = '2000', validation = '0.1'] = process.argv.slice(2);
const MB = 1024 * 1024;

// gc() in the worker before each sample: buffers dropped but not yet collected would
// otherwise count as alive.
const browser = await launchChromium(['--js-flags=--expose-gc']);
const page = await browser.newPage();
await routeWorker(page);
await page.goto(url);
await page.waitForFunction(() => /^Ready/.test(document.getElementById('notice').textContent), null, { timeout: 300000 });
// The page answers on the CPU first; the classifications are measured on WebGPU.
await page.waitForFunction(() => /^WebGPU/.test(document.getElementById('backend').textContent), null, { timeout: 300000 });
const worker = modelWorker(page);
const backend = await page.$eval('#backend', (b) => b.textContent);
const startedAt = Date.now();

async function sample(phase, extra = {}) {
  const state = await worker.evaluate(async () => {
    self.gc();
    await new Promise((resolve) => setTimeout(resolve, 100)); // finalisers run as tasks
    return {
      results: self.testResults,
      wasmBytes: self.testWasmMemory?.buffer.byteLength ?? 0,
      gpuBytes: self.testGpuBuffers.bytes,
      gpuBuffers: self.testGpuBuffers.count,
    };
  });
  const line = { phase, seconds: Math.round((Date.now() - startedAt) / 1000), ...extra, ...state };
  console.log(JSON.stringify(line));
  return line;
}

// 1. Classification of the fake webcam's frames, with the heat map (the page's default).
const classifying = [];
await page.click('#webcam-toggle');
for (let next = 0; ; ) {
  const results = await worker.evaluate(() => self.testResults);
  if (results >= next) {
    classifying.push(await sample('classify'));
    if (results >= Number(classifications)) break;
    next = Math.min(Number(classifications), next + 100);
  }
  await page.waitForTimeout(250);
}
await page.click('#webcam-toggle');

// 2. Training: a ResNet-8 on Fashion-MNIST on WebGPU, more steps than the time allows, with
// a validation pass per epoch; stopped when the time is up.
const training = [];
const EPOCHS = 20;
await page.selectOption('#train-data', 'fashion');
for (const [id, value] of Object.entries({ 'train-subset': images, 'train-epochs': EPOCHS, 'train-batch': 16, 'train-validation': validation })) {
  await page.fill(`#${id}`, String(value));
}
await page.selectOption('#train-model', 'resnet8');
await page.click('#train-start');
const trainingStarted = Date.now();
while (Date.now() - trainingStarted < Number(trainingMinutes) * 60000) {
  const step = await page.$eval('#train-progress', (p) => p.value);
  training.push(await sample('train', { step }));
  if (await page.$eval('#train-start', (b) => !b.disabled)) break; // finished or failed
  await page.waitForTimeout(30000);
}
await page.click('#train-stop').catch(() => {});
const notice = await page.$eval('#train-notice', (n) => n.textContent);
const stepsPerEpoch = (await page.$eval('#train-progress', (p) => p.max)) / EPOCHS;
await browser.close();

// After a warm-up (the first 100 classifications; the first epoch of training, whose
// validation pass is the first to allocate for its larger batches), memory should not grow. Growth is the last sample against the first one after warm-up.
function summary(name, samples, warmedUp) {
  const base = samples.find(warmedUp) ?? samples[0];
  const last = samples.at(-1);
  const max = (key) => Math.max(...samples.map((s) => s[key]));
  const row = (label, key, unit = MB) => `  ${label.padEnd(22)} ${(base[key] / unit).toFixed(1).padStart(9)} ${(last[key] / unit).toFixed(1).padStart(9)} ${(max(key) / unit).toFixed(1).padStart(9)} ${((last[key] - base[key]) / unit).toFixed(1).padStart(9)}`;
  console.log(`${name} (${samples.length} samples, ${last.seconds - base.seconds} s after warm-up)`);
  console.log(`  ${''.padEnd(22)} ${'warm'.padStart(9)} ${'last'.padStart(9)} ${'max'.padStart(9)} ${'growth'.padStart(9)}`);
  console.log(row('wasm memory (MiB)', 'wasmBytes'));
  console.log(row('GPU buffers (MiB)', 'gpuBytes'));
  console.log(row('GPU buffers (count)', 'gpuBuffers', 1));
}
console.log(`\nmemory over long use, on ${backend}`);
summary(`${classifying.at(-1).results} classifications (webcam frames, heat map on)`, classifying, (s) => s.results >= 100);
summary(`training for ${((Date.now() - trainingStarted) / 60000).toFixed(1)} min, to step ${training.at(-1).step} (${stepsPerEpoch} steps an epoch)`, training, (s) => s.step > stepsPerEpoch);
console.log(`training notice at the end: ${notice}`);
