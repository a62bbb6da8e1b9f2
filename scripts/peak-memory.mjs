// The most memory each thing the page offers takes, against what a phone allows (iOS ends a
// tab at about 1.5 GB, and caps a WebGPU buffer at 1 GB): wasm memory (every module the worker
// loaded; it only grows, so its size at the end is its peak) and GPU buffers (the most bytes
// alive at once, counted by tests/worker-prelude.mjs). Each case in a page and a worker of its
// own, through the library's API (js/resnet-web.js), on the CPU and on WebGPU (Chromium's
// SwiftShader: the buffers a real GPU would be given are the same). One JSON line a case.
//   node scripts/peak-memory.mjs [case-name-pattern] [backends: cpu,webgpu]   (pkg*/ built)
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { launchChromium } from '../tests/chromium.mjs';
import { randomTorchvisionSafetensors } from '../tests/images.mjs';
import { serve } from '../tests/static-server.mjs';
import { modelWorker, routeWorker } from '../tests/worker-prelude.mjs';

const ROOT = new URL('..', import.meta.url).pathname;
const MB = 1024 * 1024;
const only = new RegExp(process.argv[2] ?? '.');
const backends = (process.argv[3] ?? 'cpu,webgpu').split(',');

// In the page: `weights` (a URL, or null) and `backend`, then the case's code. `pictures(n, side, classes)`
// makes labelled RGBA pictures of random pixels.
const PAGE_HELPERS = `
let estimate; // what a run on the CPU measured it needs, before it started
const watched = (run) => { run.on('start', (event) => { estimate = event.memory; }); return run; };
const pictures = (count, side, classes) => Array.from({ length: count }, (_, i) => {
  const data = new Uint8Array(side * side * 4);
  for (let j = 0; j < data.length; j++) data[j] = (i * 7919 + j * 104729) % 251;
  return { image: { data, width: side, height: side }, label: i % classes };
});`;

// The cases: what the page offers, at its own sizes (the training panel's batch of 64, the
// 224-pixel ImageNet input).
const CASES = [
  { name: 'classify, shipped digits model (ResNet-20, 28 px)', code: `const m = await loadModel(shippedModels.digits, { backend }); await m.classify(pictures(1, 28, 1)[0].image);` },
  { name: 'classify, shipped clothes model (ResNet-14, 28 px)', code: `const m = await loadModel(shippedModels.fashion, { backend }); await m.classify(pictures(1, 28, 1)[0].image);` },
  { name: 'classify, ImageNet ResNet-18 (224 px)', weights: 18, code: `const m = await loadModel(weights, { backend }); await m.classify(pictures(1, 224, 1)[0].image);` },
  { name: 'classify, ImageNet ResNet-50 (224 px)', weights: 50, code: `const m = await loadModel(weights, { backend }); await m.classify(pictures(1, 224, 1)[0].image);` },
  ...['resnet8', 'resnet20'].map((arch) => ({
    name: `train ${arch}, 32 px colour, batch 64 (the panel's defaults)`,
    code: `const run = watched(train({ classNames: ['a', 'b'], examples: pictures(128, 32, 2) }, { arch: '${arch}', input: 'rgb-32', batchSize: 64, epochs: 1, validationFraction: 0, backend }));
(await run.result).dispose();`,
  })),
  ...[64, 16].map((batchSize) => ({
    name: `fine-tune all layers, ImageNet ResNet-18 (224 px), batch ${batchSize}`,
    weights: 18,
    code: `const m = await loadModel(weights, { backend: 'cpu' });
const run = watched(m.fineTune({ classNames: ['a', 'b'], examples: pictures(${batchSize}, 224, 2) }, { fineTune: 'all', batchSize: ${batchSize}, epochs: 1, validationFraction: 0, backend }));
(await run.result).dispose();`,
  })),
  {
    // As on a phone: fits the CPU's limit, not WebGPU's share of it (refused on 'webgpu').
    name: 'fine-tune all layers, ImageNet ResNet-18 (224 px), batch 16, memoryLimit 1 GiB (a phone\'s)',
    weights: 18,
    code: `const m = await loadModel(weights, { backend: 'cpu' });
const run = watched(m.fineTune({ classNames: ['a', 'b'], examples: pictures(16, 224, 2) }, { fineTune: 'all', batchSize: 16, epochs: 1, validationFraction: 0, backend, memoryLimit: 1024 ** 3 }));
(await run.result).dispose();`,
  },
  {
    // As on a phone: refused before it starts, and how much the refusal's probes took.
    name: 'fine-tune all layers, ImageNet ResNet-18 (224 px), batch 64, memoryLimit 1 GiB (a phone\'s)',
    weights: 18,
    code: `const m = await loadModel(weights, { backend: 'cpu' });
const run = watched(m.fineTune({ classNames: ['a', 'b'], examples: pictures(64, 224, 2) }, { fineTune: 'all', batchSize: 64, epochs: 1, validationFraction: 0, backend, memoryLimit: 1024 ** 3 }));
(await run.result).dispose();`,
  },
];

const browser = await launchChromium(['--js-flags=--expose-gc']);
const server = await serve(ROOT);
const blank = `${server.url}__peak-memory.html`;
// The ImageNet weights, random, as files the server serves (target/ is not committed).
mkdirSync(join(ROOT, 'target/peak-memory'), { recursive: true });
for (const depth of [18, 50]) writeFileSync(join(ROOT, `target/peak-memory/resnet${depth}.safetensors`), randomTorchvisionSafetensors(depth));
const weightUrl = (depth) => `${server.url}target/peak-memory/resnet${depth}.safetensors`;
try {
  for (const testCase of CASES.filter(({ name }) => only.test(name))) {
    for (const backend of backends) {
      const context = await browser.newContext();
      const page = await context.newPage();
      await routeWorker(page);
      // A page with nothing of its own, so the worker's memory is the case's alone.
      await page.route(blank, (route) => route.fulfill({
        body: '<!doctype html><title>peak memory</title>', contentType: 'text/html',
        headers: { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' },
      }));
      await page.goto(blank);
      const started = Date.now();
      const outcome = await page.evaluate(async ({ helpers, code, weights, backend: chosen }) => {
        const { loadModel, memory, shippedModels, train } = await import('/js/resnet-web.js');
        const AsyncFunction = (async () => {}).constructor;
        try {
          const estimate = await new AsyncFunction('loadModel', 'shippedModels', 'train', 'weights', 'backend', `${helpers}\n${code}\nreturn estimate;`)(loadModel, shippedModels, train, weights, chosen);
          return { memory: await memory(), estimate };
        } catch (error) {
          return { error: `${error.code ?? ''}: ${error.message}`, memory: await memory() };
        }
      }, { helpers: PAGE_HELPERS, code: testCase.code, weights: testCase.weights ? weightUrl(testCase.weights) : null, backend });
      const gpu = await modelWorker(page).evaluate(() => self.testGpuBuffers).catch(() => null);
      const wasm = outcome.memory ? Object.values(outcome.memory.wasmBytes).reduce((a, b) => a + b, 0) : null;
      console.log(JSON.stringify({
        case: testCase.name, backend, seconds: Math.round((Date.now() - started) / 1000),
        wasmMiB: wasm && Math.round(wasm / MB), modules: outcome.memory && Object.fromEntries(Object.entries(outcome.memory.wasmBytes).map(([dir, bytes]) => [dir, Math.round(bytes / MB)])),
        gpuPeakMiB: gpu && Math.round(gpu.peakBytes / MB),
        // burn's GPU memory pool at the end: the most its pages held, as it never gives
        // pages back unasked.
        gpuPoolMiB: outcome.memory?.gpuPoolBytes && Math.round(outcome.memory.gpuPoolBytes / MB),
        // That pool against the run's own bytes on the CPU (its measure, less what the module
        // held before): what js/worker/training.js's GPU_POOL_PER_CPU_BYTE must stay above.
        poolPerCpuByte: outcome.memory?.gpuPoolBytes && outcome.estimate
          && Number((outcome.memory.gpuPoolBytes / (outcome.estimate.fixed + outcome.estimate.perPicture * outcome.estimate.batch)).toFixed(2)),
        // On the CPU: the run's own measure of what it needs (memoryLimit), and the most the
        // module's code then held.
        neededMiB: outcome.estimate && Math.round(outcome.estimate.needed / MB),
        // On WebGPU: what the run measured it needs of the GPU's memory pool.
        gpuNeededMiB: outcome.estimate?.webgpu && Math.round(outcome.estimate.webgpu.needed / MB),
        heapPeakMiB: outcome.estimate && Math.round(Math.max(...Object.values(outcome.memory.heapPeakBytes)) / MB),
        error: outcome.error,
      }));
      await context.close();
    }
  }
} finally {
  await browser.close();
  await server.close();
}
