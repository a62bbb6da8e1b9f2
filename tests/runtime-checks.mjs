// What tests/runtimes.test.mjs asks of the package outside a browser, in Deno and in
// Node.js: one check a process, named by the first argument, run through the package's own
// entry (js/resnet-web.js) as a user imports it, and answered as one JSON line on stdout.
//   deno run --allow-all tests/runtime-checks.mjs CHECK BACKEND [DIR]
//   node tests/runtime-checks.mjs CHECK BACKEND [DIR]
// DIR holds the files the test wrote: digit-*.png (held-out MNIST digits) and not-an-image.png.
import { readdirSync, readFileSync } from 'node:fs';
import { cpuThreads, loadModel, shippedModels, train } from '../js/resnet-web.js';

const [check, backend, dir] = process.argv.slice(2);
const files = dir ? readdirSync(dir).sort() : [];
const failure = (promise) => promise.then(() => null, (error) => ({ code: error.code, message: error.message }));

// Two classes of 32 px colour pictures a run can tell apart: black columns (label 0)
// against black rows (label 1).
function stripes(count) {
  return Array.from({ length: count }, (_, i) => {
    const data = new Uint8Array(32 * 32 * 4).fill(255);
    for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) {
      const on = i % 2 ? (y + i) % 4 === 0 : (x + i) % 4 === 0;
      if (on) data.fill(0, (y * 32 + x) * 4, (y * 32 + x) * 4 + 3);
    }
    return { image: { data, width: 32, height: 32 }, label: i % 2 };
  });
}

const checks = {
  // The shipped digits model from its file's path and from a file: URL, reading held-out
  // digits from their PNG files (given as paths and as bytes); the threads it runs on.
  async digits() {
    const byPath = await loadModel('models/mnist-resnet20.bpk', { backend, input: 'digit', classNames: [...'0123456789'] });
    const byUrl = await loadModel(new URL('../models/mnist-resnet20.bpk', import.meta.url), { backend, input: 'digit', classNames: [...'0123456789'] });
    const read = [];
    for (const name of files.filter((file) => file.startsWith('digit-'))) {
      const [fromPath] = await byPath.classify(`${dir}/${name}`);
      const [fromBytes] = await byUrl.classify(readFileSync(`${dir}/${name}`));
      read.push({ name, label: fromPath.label, same: fromPath.label === fromBytes.label && Math.abs(fromPath.probability - fromBytes.probability) < 1e-6 });
    }
    return { backend: byPath.backend, read, threads: await cpuThreads() };
  },
  // The shipped model on this backend against the CPU, on the same drawing.
  async agrees() {
    const drawing = { data: new Uint8Array(28 * 28 * 4).fill(255), width: 28, height: 28 };
    for (let y = 4; y < 24; y++) for (let x = 13; x < 16; x++) drawing.data.fill(0, (y * 28 + x) * 4, (y * 28 + x) * 4 + 3);
    const here = await loadModel(shippedModels.digits, { backend });
    const cpu = await loadModel(shippedModels.digits, { backend: 'cpu' });
    const [onBackend, onCpu] = [await here.classify(drawing, { topK: 10 }), await cpu.classify(drawing, { topK: 10 })];
    const gap = Math.max(...onBackend.map(({ label, probability }) => Math.abs(probability - onCpu.find((c) => c.label === label).probability)));
    return { backend: here.backend, best: onBackend[0].label, gap };
  },
  // A run of a few steps, its model exported to safetensors and loaded again.
  async trains() {
    const run = train({ classNames: ['columns', 'rows'], examples: stripes(64) }, { arch: 'resnet8', input: 'rgb-32', batchSize: 16, epochs: 2, validationFraction: 0, backend, seed: 3 });
    const losses = [];
    let start;
    run.on('start', (event) => { start = event; });
    run.on('step', ({ loss }) => losses.push(loss));
    const model = await run.result;
    const picture = stripes(1)[0].image;
    const [before] = await model.classify(picture);
    const again = await loadModel(await model.export('safetensors'), { backend, input: 'rgb-32', classNames: ['columns', 'rows'] });
    const [after] = await again.classify(picture);
    return { backend: start.backend, losses, before, after };
  },
  // Where the runtime has no WebGPU: asked for, a clear error; 'auto' runs on the CPU.
  async withoutWebgpu() {
    const refused = await failure(loadModel(shippedModels.digits, { backend: 'webgpu' }));
    const auto = await loadModel(shippedModels.digits);
    return { refused, auto: auto.backend, threads: await cpuThreads() };
  },
  // A file that is no weights and a file that is no image: clear errors, and the model that
  // was loaded still reads.
  async refuses() {
    const model = await loadModel(shippedModels.digits, { backend });
    const badWeights = await failure(loadModel(new Uint8Array(1000).fill(7), { backend }));
    const badImage = await failure(model.classify(`${dir}/not-an-image.png`));
    const missing = await failure(model.classify(`${dir}/no-such-file.png`));
    const digit = files.find((file) => file.startsWith('digit-'));
    const [after] = await model.classify(`${dir}/${digit}`);
    return { badWeights, badImage, missing, after: { name: digit, label: after.label } };
  },
};

console.log(JSON.stringify(await checks[check]()));
// Deno's workers would keep the process alive.
process.exit(0);
