// The npm package as a web developer gets it: packed (scripts/pack.sh) and installed into a
// fresh project with nothing else, whose page uses it. tests/package.test.mjs opens that page
// in Chromium, tests/firefox.test.mjs in Firefox.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { heldOutDigits } from './images.mjs';
import { serve } from './static-server.mjs';
import { waitUntil } from './waits.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const [three, seven] = [heldOutDigits(1)[3], heldOutDigits(1)[7]];

// The project's page: the digit model through the package's two calls, from an <img> and a
// canvas; two calls in flight at once; bad input, then a call that works. `window.progress`
// says which step it is on, `window.finished` holds the outcome once there is one.
const PROGRESS_STEPS = 'loading, classifying, classifying two at once, bad input, bad weights, training, threads';
const PAGE = `<!doctype html>
<meta charset="utf-8">
<script type="importmap">{ "imports": { "resnet-web": "./node_modules/resnet-web/js/resnet-web.js" } }</script>
<img id="three" src="three.png"><img id="seven" src="seven.png">
<script type="module">
  import { ErrorCode, cpuThreads, loadModel, shippedModels, train } from 'resnet-web';
  const codeOf = (promise) => promise.then(() => 'resolved', (error) => error.code);
  const step = (name) => { window.progress = name; };
  window.outcome = (async () => {
    step('loading');
    const model = await loadModel(shippedModels.digits);
    step('classifying');
    const image = document.getElementById('three');
    await document.getElementById('seven').decode();
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = 28;
    canvas.getContext('2d').drawImage(document.getElementById('seven'), 0, 0);
    const fromImage = (await model.classify(image))[0].label;
    const fromCanvas = (await model.classify(canvas, { topK: 1 }))[0].label;
    step('classifying two at once');
    const order = [];
    const first = model.classify(image).then((top) => { order.push('first'); return top[0].label; });
    const second = model.classify(canvas).then((top) => { order.push('second'); return top[0].label; });
    const together = await Promise.all([first, second]);
    step('bad input');
    const badInput = await codeOf(model.classify({ data: new Uint8Array(3), width: 2, height: 2 }));
    // A file by its URL, relative to the page, is read; a number is no picture.
    const fromFileUrl = (await model.classify('three.png'))[0].label;
    const notAnImage = await codeOf(model.classify(42));
    const afterBadInput = (await model.classify(image))[0].label;
    step('bad weights');
    const badWeights = await codeOf(loadModel(new Uint8Array([1, 2, 3])));
    step('training');
    // A plain twin trained for 12 steps, listened to: gradient norms at steps 0 and 10.
    const examples = Array.from({ length: 48 }, (_, i) => {
      const picture = document.createElement('canvas');
      picture.width = picture.height = 28;
      const pen = picture.getContext('2d');
      pen.fillStyle = i % 2 ? '#000' : '#fff';
      pen.fillRect(0, 0, 28, 28);
      return { image: picture, label: i % 2 };
    });
    const run = train({ classNames: ['white', 'black'], examples }, { arch: 'plain8', input: 'gray-28', epochs: 1, batchSize: 4, backend: 'cpu' });
    const gradients = [];
    run.on('gradients', ({ step, layers }) => gradients.push({ step, depths: layers.map((l) => l.depth), finite: layers.every((l) => l.gradNorm >= 0 && l.weightNorm > 0) }));
    (await run.result).dispose();
    step('threads');
    const cpu = await cpuThreads();
    step('done');
    return {
      gradients,
      fromImage, fromCanvas, together, order, badInput, fromFileUrl, notAnImage, afterBadInput, badWeights,
      expected: ErrorCode.BAD_INPUT, classNames: model.classNames.length, backend: model.backend, cpu,
    };
  })().catch((error) => ({ failed: error.code + ': ' + error.message }));
  window.outcome.then((outcome) => { window.finished = outcome; });
</script>`;

/** The project, served on 127.0.0.1 with COOP/COEP: {url, dir (its folder), close()}. */
export async function packageProject() {
  const tarball = execFileSync('bash', [join(ROOT, 'scripts/pack.sh')], { encoding: 'utf8' }).trim().split('\n').at(-1);
  const project = mkdtempSync(join(tmpdir(), 'resnet-web-project-'));
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'a-project', version: '1.0.0', private: true }));
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--offline', tarball], { cwd: project, stdio: 'inherit' });
  writeFileSync(join(project, 'index.html'), PAGE);
  writeFileSync(join(project, 'three.png'), three.png);
  writeFileSync(join(project, 'seven.png'), seven.png);
  copyFileSync(join(ROOT, 'examples/webcam.html'), join(project, 'webcam.html'));
  const server = await serve(project);
  return {
    url: server.url,
    dir: project,
    async close() {
      await server.close();
      rmSync(project, { recursive: true, force: true });
    },
  };
}

/** What the project's index.html found, once it has: polled, each step bounded. */
export async function projectOutcome(page) {
  await waitUntil(page, () => window.progress, undefined, { timeout: 30000, what: 'the project\'s page to start' });
  return waitUntil(page, () => window.finished, undefined, { timeout: 180000, what: `the project's page to finish (steps: ${PROGRESS_STEPS})` });
}

/** Asserts what the project's index.html found (its `window.outcome`). */
export function checkOutcome(outcome) {
  assert.equal(outcome.failed, undefined);
  assert.equal(outcome.fromImage, three.label);
  assert.equal(outcome.fromCanvas, seven.label);
  assert.deepEqual(outcome.together, [three.label, seven.label]);
  assert.deepEqual(outcome.order, ['first', 'second']);
  assert.equal(outcome.badInput, outcome.expected);
  assert.equal(outcome.fromFileUrl, three.label);
  assert.equal(outcome.notAnImage, 'bad-input');
  assert.equal(outcome.afterBadInput, three.label);
  assert.equal(outcome.badWeights, 'bad-weights');
  assert.equal(outcome.classNames, 10);
  // Every 10 steps by default; plain-8's 8 weight layers in depth order.
  assert.deepEqual(outcome.gradients, [0, 10].map((step) => ({ step, depths: [1, 2, 3, 4, 5, 6, 7, 8], finite: true })));
}
