// The benchmark: each figure is the median of timed runs after warm-up runs, with min and
// max. The model runs here, on the page's thread: there is nothing else to keep responsive.
// Results: one `BENCH {json}` console line per figure, and `window.benchDone` at the end
// (scripts/bench.mjs reads both). ?quick=1 takes fewer runs (a check that it works).
import init, { Classifier, TrainingData, TrainingSession } from '../pkg/resnet_web.js';

const quick = new URLSearchParams(location.search).has('quick');
const log = document.getElementById('log');

// [name, arch, classes, channels, size, batch]
const INFERENCE = [
  ['resnet18-224', 'resnet18', 1000, 3, 224, 1],
  ['resnet18-224', 'resnet18', 1000, 3, 224, 8],
  ['resnet20-32', 'resnet20', 10, 3, 32, 1],
  ['resnet20-32', 'resnet20', 10, 3, 32, 64],
];
const TRAINING = { model: 'resnet20-28x28x1', arch: 'resnet20', input: 'gray-28', batch: 64 };

function report(figure) {
  console.log(`BENCH ${JSON.stringify(figure)}`);
  log.textContent += `${JSON.stringify(figure)}\n`;
}

function summary(times) {
  const sorted = [...times].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median, min: sorted[0], max: sorted.at(-1), runs: sorted.length };
}

// Warm-up runs, then timed runs until `runs` are done or `budgetMs` is spent (at least 3).
async function timed(run, { warmUp, runs, budgetMs }) {
  for (let i = 0; i < warmUp; i++) await run();
  const times = [];
  const started = performance.now();
  while (times.length < runs && (times.length < 3 || performance.now() - started < budgetMs)) {
    const t = performance.now();
    await run();
    times.push(performance.now() - t);
  }
  return summary(times);
}

function randomInput(count) {
  const values = new Float32Array(count);
  let seed = 1;
  for (let i = 0; i < count; i++) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    values[i] = seed / 2147483648 - 0.5;
  }
  return values;
}

async function inference(backend) {
  for (const [model, arch, classes, channels, size, batch] of INFERENCE) {
    const classifier = await Classifier.create(arch, classes, channels, backend);
    const input = randomInput(batch * channels * size * size);
    // logits() reads the result back: the time includes the upload and the read back.
    const times = await timed(() => classifier.logits(input, batch, channels, size, size),
      quick ? { warmUp: 1, runs: 3, budgetMs: 0 } : { warmUp: 2, runs: 10, budgetMs: 60000 });
    report({ figure: 'inference', model, batch, backend: classifier.backend, threads: 1, unit: 'ms', ...times });
    classifier.free();
  }
}

async function training(backend) {
  const { model, arch, input, batch } = TRAINING;
  const data = TrainingData.forInput(input, ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j']);
  const pixels = new Uint8Array(28 * 28 * 4);
  for (let i = 0; i < batch * 4; i++) {
    for (let p = 0; p < pixels.length; p++) pixels[p] = (i * 31 + p * 7) % 256;
    data.addPixels(input, pixels, 28, 28, i % 10);
  }
  const session = await TrainingSession.create(
    { backend, arch, input, batchSize: batch, epochs: 50, validationFraction: 0, augment: false },
    data,
  );
  // One step: forward, backward, Adam update, and the read back of loss and accuracy.
  const times = await timed(() => session.step(),
    quick ? { warmUp: 1, runs: 3, budgetMs: 0 } : { warmUp: 1, runs: 8, budgetMs: 90000 });
  const imagesPerSecond = (ms) => (batch * 1000) / ms;
  report({
    figure: 'training', model, batch, backend: session.backend, threads: 1, unit: 'images/s',
    median: imagesPerSecond(times.median), min: imagesPerSecond(times.max),
    max: imagesPerSecond(times.min), runs: times.runs,
  });
  session.free();
}

async function main() {
  await init();
  for (const backend of ['webgpu', 'cpu']) {
    try {
      await inference(backend);
      await training(backend);
    } catch (error) {
      report({ figure: 'error', backend, message: error.message });
    }
  }
}

main().finally(() => { window.benchDone = true; });
