// The package in Deno, as a Deno user runs it: npm's `deno` (tests/deno-checks.mjs has the
// checks, one Deno process each), on the CPU (the threaded FMA module: Deno shares memory
// with its workers without a page's headers) and on Deno's own WebGPU (wgpu, Firefox's
// implementation) over Mesa's lavapipe, a Vulkan on the CPU.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { heldOutDigits } from './images.mjs';

const ROOT = new URL('..', import.meta.url).pathname;
const DENO = join(ROOT, 'node_modules/.bin/deno');
const DIGITS = heldOutDigits(2); // 20 PNG files, two of each digit, never trained on

let dir;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'resnet-deno-'));
  for (const { name, png } of DIGITS) writeFileSync(join(dir, name), png);
  writeFileSync(join(dir, 'not-an-image.png'), 'these bytes are text, not a PNG file');
});
after(() => rmSync(dir, { recursive: true, force: true }));

// One check in a Deno process of its own; its JSON line.
async function deno(check, backend) {
  const { stdout } = await promisify(execFile)(DENO, ['run', '--allow-all', 'tests/deno-checks.mjs', check, backend, dir], {
    cwd: ROOT, timeout: 300_000, maxBuffer: 1 << 24,
    // Deno warns without it; harmless, but noise in the log.
    env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? tmpdir() },
  });
  const outcome = JSON.parse(stdout.trim().split('\n').at(-1));
  console.log(`  ${check} on ${backend}: ${JSON.stringify(outcome).slice(0, 600)}`);
  return outcome;
}

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

for (const backend of ['cpu', 'webgpu']) {
  test(`Deno, ${backend}: a run trains, and its model exported to safetensors and loaded again answers the same`, async () => {
    const { backend: ran, losses, before: trained, after: loaded } = await deno('trains', backend);
    assert.match(ran, backend === 'cpu' ? /^CPU/ : /^WebGPU/);
    assert.equal(losses.length, 8);
    assert(losses.every(Number.isFinite));
    assert(losses.at(-1) < losses[0], `the loss fell: ${losses.join(', ')}`);
    assert.equal(loaded.label, trained.label);
    assert(Math.abs(loaded.probability - trained.probability) < 1e-5, JSON.stringify({ trained, loaded }));
  });
}

test('Deno, CPU: a bad weight file, a file that is no image and a missing file get clear errors, and the model goes on', async () => {
  const { badWeights, badImage, missing, after: next } = await deno('refuses', 'cpu');
  assert.equal(badWeights.code, 'bad-weights');
  assert.equal(badImage.code, 'bad-input');
  assert.match(badImage.message, /not a PNG or JPEG image/);
  assert.equal(missing.code, 'network');
  assert.match(missing.message, /no-such-file\.png/);
  assert.equal(next.label, next.name.split('-')[1]);
});
