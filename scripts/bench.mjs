// The benchmark, in headless Chromium: bench/index.html's figures (inference latency,
// training throughput, WebGPU and CPU), the time from page load to first prediction on the
// page itself, and the wasm's size. Prints one JSON line per figure, then a table.
//   node scripts/bench.mjs http://127.0.0.1:PORT/ [--quick]
// (scripts/bench.sh builds, serves and runs it.)
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { chromium } from 'playwright-core';

const [url, ...flags] = process.argv.slice(2);
const quick = flags.includes('--quick');
const figures = [];
function report(figure) {
  figures.push(figure);
  console.log(JSON.stringify(figure));
}

const browser = await chromium.launch({
  executablePath: process.env.CHROME_BIN ?? '/usr/bin/chromium',
  args: ['--enable-unsafe-webgpu', '--no-sandbox', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run'],
});

// The wasm, as a server sends it and as it is gzipped on the wire.
const wasm = readFileSync('pkg/resnet_web_bg.wasm');
report({ figure: 'wasm size', raw_mb: wasm.length / 2 ** 20, gzip_mb: gzipSync(wasm, { level: 9 }).length / 2 ** 20 });

// Page load to the first prediction of a stroke on the drawing canvas, in a new browser
// context each time (the first with an empty cache).
const firstPredictions = [];
const context = await browser.newContext();
for (let run = 0; run < (quick ? 1 : 3); run++) {
  const page = await context.newPage();
  const started = Date.now();
  await page.goto(url);
  await page.waitForFunction(() => /^Ready/.test(document.getElementById('notice').textContent), null, { timeout: 300000 });
  const box = await page.locator('#drawing').boundingBox();
  await page.mouse.move(box.x + 140, box.y + 40);
  await page.mouse.down();
  await page.mouse.move(box.x + 140, box.y + 240, { steps: 10 });
  await page.mouse.up();
  await page.waitForSelector('#predictions li', { timeout: 120000 });
  firstPredictions.push(Date.now() - started);
  await page.close();
}
const sorted = [...firstPredictions].sort((a, b) => a - b);
report({
  figure: 'first prediction', unit: 'ms', median: sorted[sorted.length >> 1], min: sorted[0],
  max: sorted.at(-1), runs: sorted.length, note: 'page load, WebGPU start, one stroke; the first run with an empty cache',
});
await context.close();

const page = await browser.newPage();
page.on('console', (message) => {
  const text = message.text();
  if (text.startsWith('BENCH ')) report(JSON.parse(text.slice(6)));
});
await page.goto(`${url}bench/${quick ? '?quick=1' : ''}`);
await page.waitForFunction(() => window.benchDone, null, { timeout: 3600000, polling: 1000 });
await browser.close();

const number = (value) => (value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2));
console.log('\n| figure | model | batch | backend | median | min | max | runs |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
for (const f of figures) {
  if (f.figure === 'wasm size') {
    console.log(`| wasm size | | | | ${f.raw_mb.toFixed(1)} MB raw, ${f.gzip_mb.toFixed(2)} MB gzipped | | | |`);
  } else if (f.figure === 'error') {
    console.log(`| error | | | ${f.backend} | ${f.message} | | | |`);
  } else {
    const unit = f.unit === 'ms' ? ' ms' : ` ${f.unit}`;
    console.log(`| ${f.figure} | ${f.model ?? ''} | ${f.batch ?? ''} | ${f.backend ?? ''} | ${number(f.median)}${unit} | ${number(f.min)} | ${number(f.max)} | ${f.runs} |`);
  }
}
if (figures.some((f) => f.figure === 'error')) process.exitCode = 1;
