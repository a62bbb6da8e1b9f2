// The npm package as a web developer gets it (tests/package-project.mjs), used from the
// project's own page in headless Chromium, with no request leaving that project's server.
//   node --test-reporter=spec tests/package.test.mjs      (after scripts/build-wasm.sh)
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { launchChromium } from './chromium.mjs';
import { checkOutcome, packageProject, projectOutcome } from './package-project.mjs';
import { waitUntil, withPageState, workerLog } from './waits.mjs';

let project;
let browser;
before(async () => {
  project = await packageProject();
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await project?.close();
});

// A page of the project; every request that is not to the project's server is refused and
// reported.
async function open(path) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.addInitScript(workerLog);
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  await page.route('**/*', (route) => {
    const requested = route.request().url();
    if (requested.startsWith(project.url) || /^(data|blob):/.test(requested)) return route.continue();
    problems.push(`request outside the project: ${requested}`);
    return route.abort();
  });
  await page.goto(new URL(path, project.url).href);
  return { page, context, problems };
}

test('the installed package loads the digit model, classifies an <img> and a canvas, in order, and names its errors', async () => {
  const { page, context, problems } = await open('index.html');
  try {
    const outcome = await projectOutcome(page);
    console.log(`  ${JSON.stringify(outcome)}`);
    checkOutcome(outcome);
    assert.deepEqual(problems, []);
  } catch (error) {
    throw await withPageState(error, page);
  } finally {
    await context.close();
  }
});

test('the webcam example classifies the (fake) webcam live', async () => {
  const { page, context, problems } = await open('webcam.html');
  try {
    await page.click('#start');
    await waitUntil(page, () => document.querySelectorAll('#classes li').length === 3, undefined, { timeout: 60000, what: 'three classes on the webcam page' });
    const shown = await page.$$eval('#classes li', (items) => items.map((item) => item.textContent));
    console.log(`  ${shown.join(', ')}`);
    assert.match(shown[0], /^\d: \d+\.\d%$/);
    assert.deepEqual(problems, []);
  } catch (error) {
    throw await withPageState(error, page);
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
