// What the Firefox and WebKit tests do on the page, through either driver: puppeteer's page
// (tests/firefox.mjs) or tests/webkit.mjs's, which has the same calls. Both upload files from
// paths, so the pictures go to a folder of the test run's first.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { syntheticClasses } from './images.mjs';
import { waitUntil } from './waits.mjs';

/** A folder for the files a test run uploads: {onDisk({name, buffer}, subfolder) -> path, remove()}. */
export function uploadFolder(prefix) {
  const root = mkdtempSync(join(tmpdir(), prefix));
  return {
    onDisk({ name, buffer }, folder = '') {
      const dir = join(root, folder);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, name), buffer);
      return join(dir, name);
    },
    remove: () => rmSync(root, { recursive: true, force: true }),
  };
}

/** In the page: whether it is ready (or ready on the CPU with a notice that says why). */
export const isReady = () => /^Ready|running on the CPU/.test(document.getElementById('notice').textContent);

/** The bars shown: [{label, prob}], best first. */
export const predictions = (page) => page.$$eval('#predictions li', (items) => items.map((i) => ({ label: i.dataset.label, prob: Number(i.dataset.prob) })));

/** Uploads a picture through the page's file input; the top bar shown under its name. */
export async function upload(page, picture, onDisk) {
  await page.evaluate(() => document.getElementById('predictions').replaceChildren());
  await (await page.$('#image-input')).uploadFile(onDisk(picture));
  await waitUntil(page, (wanted) => {
    const list = document.getElementById('predictions');
    return list.dataset.source === wanted && list.children.length > 0;
  }, picture.name, { timeout: 60000, what: `the bars of ${picture.name}` });
  return (await predictions(page))[0];
}

/** The top bar once no prediction runs or waits, for `source`. */
export async function settledPrediction(page, source) {
  await new Promise((resolve) => { setTimeout(resolve, 100); });
  await waitUntil(page, (wanted) => {
    const list = document.getElementById('predictions');
    return list.getAttribute('aria-busy') === 'false' && list.children.length > 0 && list.dataset.source === wanted;
  }, source, { timeout: 60000, what: `settled bars of ${source}` });
  return (await predictions(page))[0];
}

// A setting of the training panel, as a user's choice: input and change fire.
const setField = (page, id, value) => page.$eval(`#${id}`, (field, chosen) => {
  field.value = chosen;
  field.dispatchEvent(new Event('input', { bubbles: true }));
  field.dispatchEvent(new Event('change', { bubbles: true }));
}, value);

/**
 * Three classes of your own (24 pictures each) train on the CPU (ResNet-8, 10 epochs) to 90%
 * validation accuracy, and the trained model is there again after a reload (IndexedDB) and
 * reads right. Returns the panel's closing notice.
 */
export async function trainOwnClassesAndReload(page, onDisk) {
  const classes = syntheticClasses(24);
  await setField(page, 'train-data', 'own');
  await page.click('#add-class');
  for (const [k, pictures] of classes.entries()) {
    const input = await page.$(`.class-row[data-class-index="${k}"] input.add-files`);
    await input.uploadFile(...pictures.map((picture) => onDisk(picture, `class-${k}`)));
  }
  await waitUntil(page, () => document.querySelectorAll('.thumbnails button').length === 72, undefined, { timeout: 60000, what: '72 thumbnails' });
  const settings = { 'train-model': 'resnet8', 'train-input': 'gray-32', 'train-epochs': '10', 'train-batch': '16', 'train-lr': '0.01', 'train-optimizer': 'adam', 'train-validation': '0.25' };
  for (const [id, value] of Object.entries(settings)) await setField(page, id, value);
  await page.evaluate(() => { document.getElementById('train-result').dataset.done = ''; });
  await page.click('#train-start');
  await waitUntil(page, () => !document.getElementById('train-start').disabled
    && document.getElementById('train-result').dataset.stopped !== undefined
    && document.getElementById('train-notice').textContent.length > 0
    && !/Preparing|Training on/.test(document.getElementById('train-notice').textContent), undefined, { timeout: 300000, what: 'the end of the training run' });
  const result = await page.$eval('#train-result', (box) => ({ ...box.dataset, notice: document.getElementById('train-notice').textContent }));
  assert(!result.failure, result.failure);
  assert.match(result.notice, /CPU/);
  assert(Number(result.validationAccuracy) >= 0.9, `validation accuracy ${result.validationAccuracy}`);
  assert.equal((await upload(page, classes[2][1], onDisk)).label, 'class 3');
  await page.reload();
  await waitUntil(page, isReady, undefined, { timeout: 120000, what: 'the page to be ready after the reload' });
  await waitUntil(page, () => document.querySelector('#model-choice option[value="trained"]') !== null, undefined, { timeout: 30000, what: 'the trained model in the choice' });
  // The notice says Ready again once the trained model has loaded (from IndexedDB first).
  await page.evaluate(() => { document.getElementById('notice').textContent = ''; });
  await setField(page, 'model-choice', 'trained');
  await waitUntil(page, () => /^Ready|running on the CPU/.test(document.getElementById('notice').textContent)
    && document.getElementById('model-choice').value === 'trained', undefined, { timeout: 120000, what: 'the trained model to be ready' });
  assert.equal((await upload(page, classes[1][2], onDisk)).label, 'class 2');
  return result.notice;
}
