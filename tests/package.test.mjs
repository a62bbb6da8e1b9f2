// The npm package as a web developer gets it: packed (scripts/pack.sh), installed into a
// fresh project with nothing else, and used from that project's own page in headless
// Chromium, with no request leaving that project's server.
//   node --test-reporter=spec tests/package.test.mjs      (after scripts/build-wasm.sh)
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { launchChromium } from './chromium.mjs';
import { heldOutDigits } from './images.mjs';
import { serve } from './static-server.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const [three, seven] = [heldOutDigits(1)[3], heldOutDigits(1)[7]];

// The project's page: the digit model through the package's two calls, from an <img> and a
// canvas; two calls in flight at once; bad input, then a call that works.
const PAGE = `<!doctype html>
<meta charset="utf-8">
<script type="importmap">{ "imports": { "resnet-web": "./node_modules/resnet-web/js/resnet-web.js" } }</script>
<img id="three" src="three.png"><img id="seven" src="seven.png">
<script type="module">
  import { ErrorCode, loadModel, shippedModels, train } from 'resnet-web';
  const codeOf = (promise) => promise.then(() => 'resolved', (error) => error.code);
  window.outcome = (async () => {
    const model = await loadModel(shippedModels.digits);
    const image = document.getElementById('three');
    await document.getElementById('seven').decode();
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = 28;
    canvas.getContext('2d').drawImage(document.getElementById('seven'), 0, 0);
    const fromImage = (await model.classify(image))[0].label;
    const fromCanvas = (await model.classify(canvas, { topK: 1 }))[0].label;
    const order = [];
    const first = model.classify(image).then((top) => { order.push('first'); return top[0].label; });
    const second = model.classify(canvas).then((top) => { order.push('second'); return top[0].label; });
    const together = await Promise.all([first, second]);
    const badInput = await codeOf(model.classify({ data: new Uint8Array(3), width: 2, height: 2 }));
    const notAnImage = await codeOf(model.classify('three.png'));
    const afterBadInput = (await model.classify(image))[0].label;
    const badWeights = await codeOf(loadModel(new Uint8Array([1, 2, 3])));
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
    return {
      gradients,
      fromImage, fromCanvas, together, order, badInput, notAnImage, afterBadInput, badWeights,
      expected: ErrorCode.BAD_INPUT, classNames: model.classNames.length, backend: model.backend,
    };
  })().catch((error) => ({ failed: error.code + ': ' + error.message }));
</script>`;

let project;
let server;
let browser;
before(async () => {
  const tarball = execFileSync('bash', [join(ROOT, 'scripts/pack.sh')], { encoding: 'utf8' }).trim().split('\n').at(-1);
  project = mkdtempSync(join(tmpdir(), 'resnet-web-project-'));
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'a-project', version: '1.0.0', private: true }));
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--offline', tarball], { cwd: project, stdio: 'inherit' });
  writeFileSync(join(project, 'index.html'), PAGE);
  writeFileSync(join(project, 'three.png'), three.png);
  writeFileSync(join(project, 'seven.png'), seven.png);
  copyFileSync(join(ROOT, 'examples/webcam.html'), join(project, 'webcam.html'));
  server = await serve(project);
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await server?.close();
  if (project) rmSync(project, { recursive: true, force: true });
});

// A page of the project; every request that is not to the project's server is refused and
// reported.
async function open(path) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  await page.route('**/*', (route) => {
    const requested = route.request().url();
    if (requested.startsWith(server.url) || /^(data|blob):/.test(requested)) return route.continue();
    problems.push(`request outside the project: ${requested}`);
    return route.abort();
  });
  await page.goto(new URL(path, server.url).href);
  return { page, context, problems };
}

test('the installed package loads the digit model, classifies an <img> and a canvas, in order, and names its errors', async () => {
  const { page, context, problems } = await open('index.html');
  try {
    const outcome = await page.evaluate(() => window.outcome);
    console.log(`  ${JSON.stringify(outcome)}`);
    assert.equal(outcome.failed, undefined);
    assert.equal(outcome.fromImage, three.label);
    assert.equal(outcome.fromCanvas, seven.label);
    assert.deepEqual(outcome.together, [three.label, seven.label]);
    assert.deepEqual(outcome.order, ['first', 'second']);
    assert.equal(outcome.badInput, outcome.expected);
    assert.equal(outcome.notAnImage, 'bad-input');
    assert.equal(outcome.afterBadInput, three.label);
    assert.equal(outcome.badWeights, 'bad-weights');
    assert.equal(outcome.classNames, 10);
    // Every 10 steps by default; plain-8's 8 weight layers in depth order.
    assert.deepEqual(outcome.gradients, [0, 10].map((step) => ({ step, depths: [1, 2, 3, 4, 5, 6, 7, 8], finite: true })));
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test('the webcam example classifies the (fake) webcam live', async () => {
  const { page, context, problems } = await open('webcam.html');
  try {
    await page.click('#start');
    await page.waitForFunction(() => document.querySelectorAll('#classes li').length === 3, null, { timeout: 120000 });
    const shown = await page.$$eval('#classes li', (items) => items.map((item) => item.textContent));
    console.log(`  ${shown.join(', ')}`);
    assert.match(shown[0], /^\d: \d+\.\d%$/);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test('every export of the package has a TypeScript declaration, and nothing is declared that is not exported', async () => {
  const exported = Object.keys(await import('../js/resnet-web.js')).sort();
  const declarations = readFileSync(new URL('../js/resnet-web.d.ts', import.meta.url), 'utf8');
  const declared = [...declarations.matchAll(/^export declare (?:const|class|function) (\w+)/gm)].map((m) => m[1]).sort();
  assert.deepEqual(exported, declared);
});
