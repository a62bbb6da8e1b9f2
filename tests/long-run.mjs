// Long use of one worker, for the page tests (Chromium) and the Firefox tests alike: CYCLES
// cycles of a model loaded, PER_CYCLE pictures classified (1,000 in all), a small run
// trained, and both disposed; after each cycle the library's memory() is read. After the
// WARM_UP cycles (the WebGPU module's first few cycles fill its caches of kernels), what
// each wasm module's code holds (its live heap bytes) may not grow by more than 1%: a model,
// a session or a data set left alive per cycle would. The module's memory itself may grow
// by a little more, as its allocator's free space fragments: measured (Chromium, five runs
// of 20 to 80 cycles), the CPU module's memory grows by one copy of the model's weights (the
// shipped digits model, 1.1 MB) twice, at cycles from 6 to 39, while its live bytes stay the
// same to the byte; so it may grow by at most FRAGMENTATION copies of the weights.
import assert from 'node:assert/strict';
import { bounded } from './waits.mjs';

export const CYCLES = 50;
export const PER_CYCLE = 20;
export const WARM_UP = 15;
const WEIGHTS_BYTES = 1_100_584; // models/mnist-resnet20.bpk
const FRAGMENTATION = 3.5;
const HEAP_GROWTH = 0.01;

// One cycle, in the page (evaluate's function: it imports what it needs). Resolves to
// memory() after it.
export async function useOnce({ backend, classifications }) {
  const { loadModel, memory, shippedModels, train } = await import(new URL('js/resnet-web.js', document.baseURI).href);
  const model = await loadModel(shippedModels.digits, { backend });
  const side = 28;
  const picture = { data: new Uint8ClampedArray(side * side * 4), width: side, height: side };
  for (let i = 0; i < classifications; i++) {
    // A stroke that moves, so that no two pictures in a row are the same.
    picture.data.fill(0);
    for (let y = 4; y < 24; y++) {
      const at = (y * side + 6 + (i % 14)) * 4;
      picture.data.fill(255, at, at + 12);
    }
    await model.classify(picture);
  }
  // Rows against columns, 16 pictures in batches of 4.
  const { rowsAndColumns } = await import(new URL('tests/pictures-in-page.mjs', document.baseURI).href);
  const examples = rowsAndColumns(16);
  const run = train({ classNames: ['rows', 'columns'], examples }, { arch: 'resnet8', input: 'gray-28', epochs: 1, batchSize: 4, backend });
  const trained = await run.result;
  trained.dispose();
  model.dispose();
  return memory();
}

// Runs the cycles on `page` (a playwright or puppeteer page, ready), each on backendOf(cycle),
// with `extra(cycle)` sampled after each (more figures, such as GPU buffers); prints a line
// per cycle and asserts the bounds above. `lateCaches` allows a module more live bytes, once:
// the WebGPU module's caches of kernels and fused streams grow by 213 KB at a WebGPU cycle
// from the 2nd to the 6th (three runs), to the same 3,036,296 bytes each time, then stay.
// Returns the samples.
export async function longRun(page, { backendOf = () => 'cpu', extra = async () => ({}), lateCaches = {} } = {}) {
  const samples = [];
  for (let cycle = 0; cycle < CYCLES; cycle++) {
    const backend = backendOf(cycle);
    const started = Date.now();
    const held = await bounded(page.evaluate(useOnce, { backend, classifications: PER_CYCLE }), 120000, `cycle ${cycle}`);
    const sample = { cycle, backend, ms: Date.now() - started, ...held, ...(await extra(cycle)) };
    console.log(`  ${JSON.stringify(sample)}`);
    samples.push(sample);
  }
  const last = samples.at(-1);
  // A module loaded after the warm-up (the WebGPU one, where the page's 'auto' loads it late)
  // is measured from its first sample.
  const first = (key, module) => samples.find((sample) => sample.cycle >= WARM_UP && sample[key][module] !== undefined)[key][module];
  for (const [module, bytes] of Object.entries(last.heapBytes)) {
    const before = first('heapBytes', module);
    console.log(`  ${module} after the warm-up: live ${before} -> ${bytes} bytes, memory ${first('wasmBytes', module)} -> ${last.wasmBytes[module]}`);
    assert(bytes <= before * (1 + HEAP_GROWTH) + (lateCaches[module] ?? 0), `${module}'s live bytes grew from ${before} to ${bytes} after the warm-up`);
    const size = first('wasmBytes', module);
    assert(last.wasmBytes[module] - size <= FRAGMENTATION * WEIGHTS_BYTES, `${module}'s memory grew from ${size} to ${last.wasmBytes[module]} bytes after the warm-up: more than ${FRAGMENTATION} copies of the weights`);
  }
  // Nothing made in the cycles is still alive: the page's own model is all that is left.
  assert.deepEqual({ models: last.models, learners: last.learners, runs: last.runs }, { models: samples[WARM_UP].models, learners: 0, runs: 0 });
  return samples;
}
