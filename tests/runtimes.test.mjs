// The package outside a browser, as its users run it (tests/runtime-checks.mjs has the
// checks, one process each): in Deno (npm's `deno`), on the CPU (the threaded FMA module:
// Deno shares memory with its workers without a page's headers) and on Deno's own WebGPU
// (wgpu, Firefox's implementation) over Mesa's lavapipe, a Vulkan on the CPU; and in
// Node.js (this one, 20), on the CPU, in a worker of node:worker_threads.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { heldOutDigits } from './images.mjs';
import { packageProject } from './package-project.mjs';

const ROOT = new URL('..', import.meta.url).pathname;
const RUNTIMES = {
  Deno: [join(ROOT, 'node_modules/.bin/deno'), 'run', '--allow-all'],
  'Node.js': [process.execPath],
};
const DIGITS = heldOutDigits(2); // 20 PNG files, two of each digit, never trained on

let dir;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'resnet-deno-'));
  for (const { name, png } of DIGITS) writeFileSync(join(dir, name), png);
  writeFileSync(join(dir, 'not-an-image.png'), 'these bytes are text, not a PNG file');
});
after(() => rmSync(dir, { recursive: true, force: true }));

// One check in a process of its own; its JSON line.
async function run(runtime, check, backend) {
  const [program, ...flags] = RUNTIMES[runtime];
  const { stdout } = await promisify(execFile)(program, [...flags, 'tests/runtime-checks.mjs', check, backend, dir], {
    cwd: ROOT, timeout: 300_000, maxBuffer: 1 << 24,
    // Deno warns without it; harmless, but noise in the log.
    env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? tmpdir() },
  });
  const outcome = JSON.parse(stdout.trim().split('\n').at(-1));
  console.log(`  ${runtime}, ${check} on ${backend}: ${JSON.stringify(outcome).slice(0, 600)}`);
  return outcome;
}
const deno = (check, backend) => run('Deno', check, backend);

test('Deno, CPU: the shipped digits model, loaded by path and by file: URL, reads 20 of 20 held-out digits from PNG files, by path and as bytes, on two threads', async () => {
  const { backend, read, threads } = await deno('digits', 'cpu');
  assert.match(backend, /^CPU \(wasm FMA, 2 threads\)/);
  assert.equal(threads.module, 'pkg-threads-fma');
  assert.equal(threads.reason, null);
  assert.equal(read.length, 20);
  for (const { name, label, same } of read) {
    assert.equal(label, name.split('-')[1], name);
    assert(same, `${name}: its path and its bytes read alike`);
  }
});

test('Deno, WebGPU (lavapipe): the shipped digits model answers as on the CPU, and reads the held-out digits', async () => {
  const { backend, best, gap } = await deno('agrees', 'webgpu');
  assert.match(backend, /^WebGPU \(software adapter on the CPU\)/);
  assert.equal(best, '1');
  assert(gap < 1e-4, `probabilities differ from the CPU's by ${gap}`);
  const { read } = await deno('digits', 'webgpu');
  assert.deepEqual(read.filter(({ name, label }) => label !== name.split('-')[1]), []);
});

for (const [runtime, backend] of [['Deno', 'cpu'], ['Deno', 'webgpu'], ['Node.js', 'cpu']]) {
  test(`${runtime}, ${backend}: a run trains, and its model exported to safetensors and loaded again answers the same`, async () => {
    const { backend: ran, losses, before: trained, after: loaded } = await run(runtime, 'trains', backend);
    assert.match(ran, backend === 'cpu' ? /^CPU/ : /^WebGPU/);
    assert.equal(losses.length, 8);
    assert(losses.every(Number.isFinite));
    assert(losses.at(-1) < losses[0], `the loss fell: ${losses.join(', ')}`);
    assert.equal(loaded.label, trained.label);
    assert(Math.abs(loaded.probability - trained.probability) < 1e-5, JSON.stringify({ trained, loaded }));
  });
}

test('Node.js, CPU: the shipped digits model, loaded by path and by file: URL, reads 20 of 20 held-out digits from PNG files, on one thread that says why', async () => {
  const { backend, read, threads } = await run('Node.js', 'digits', 'cpu');
  assert.equal(backend, 'CPU (wasm, 1 thread: Node.js has no Web Workers for the thread pool, only worker_threads)');
  // Node 20's V8 has no relaxed SIMD: the plain module.
  assert.equal(threads.module, 'pkg');
  assert.deepEqual(read.filter(({ name, label, same }) => label !== name.split('-')[1] || !same), []);
  assert.equal(read.length, 20);
});

test('Node.js: WebGPU asked for is refused with what to use instead, and auto runs on the CPU', async () => {
  const { refused, auto } = await run('Node.js', 'withoutWebgpu', 'cpu');
  assert.deepEqual(refused, { code: 'unsupported', message: 'WebGPU is not available (Node.js has no navigator.gpu): use the CPU backend, or Deno, whose WebGPU the package uses' });
  assert.match(auto, /^CPU \(wasm, 1 thread/);
});

for (const runtime of Object.keys(RUNTIMES)) {
  test(`${runtime}, CPU: a bad weight file, a file that is no image and a missing file get clear errors, and the model goes on`, async () => {
    const { badWeights, badImage, missing, after: next } = await run(runtime, 'refuses', 'cpu');
    assert.equal(badWeights.code, 'bad-weights');
    assert.equal(badImage.code, 'bad-input');
    assert.match(badImage.message, /not a PNG or JPEG image/);
    assert.equal(missing.code, 'network');
    assert.match(missing.message, /no-such-file\.png/);
    assert.equal(next.label, next.name.split('-')[1]);
  });
}

test('Deno and Node.js: the npm package, installed into a project, is imported by its name and reads a PNG file by path', async () => {
  const project = await packageProject();
  try {
    const script = join(project.dir, 'classify.mjs');
    writeFileSync(script, `import { loadModel, shippedModels } from 'resnet-web';
const model = await loadModel(shippedModels.digits);
const [best] = await model.classify('three.png');
console.log(JSON.stringify({ label: best.label, backend: model.backend }));
process.exit(0);
`);
    for (const [runtime, [program, ...flags]] of Object.entries(RUNTIMES)) {
      const { stdout } = await promisify(execFile)(program, [...flags, script], {
        cwd: project.dir, timeout: 120_000, env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? tmpdir() },
      });
      const outcome = JSON.parse(stdout.trim().split('\n').at(-1));
      console.log(`  ${runtime}, the installed package: ${JSON.stringify(outcome)}`);
      assert.equal(outcome.label, '3');
      assert.match(outcome.backend, /^CPU/);
    }
  } finally {
    await project.close();
  }
});
