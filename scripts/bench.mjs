// The benchmark, in headless Chromium: every subject of bench/index.html (ours and the
// peers) in its own page load, the time from page load to first prediction on the page
// itself, and the wasm's size. Prints one JSON line per figure, then the tables: medians
// (min-max) per subject, and the ratio ours/peer for every figure.
//   node scripts/bench.mjs [--quick] [--only=SUBJECT,...] [--pkg=DIR]
//   node scripts/bench.mjs --tables-from=LOG   (the tables again, from a run's JSON lines)
// Run from the repository root, after scripts/bench.sh has built the wasm and the peer
// models (it runs this). Serves the repository itself on 127.0.0.1 with COOP/COEP, which
// the peers' threads need (SharedArrayBuffer).
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { launchChromium } from '../tests/chromium.mjs';
import { serve } from '../tests/static-server.mjs';

// ours-cpu: the one-thread module (pkg/); ours-cpu-N: the threaded one (pkg-threads/) on N
// threads, for every N up to this machine's cores, at most 8; ours-fma-*: their FMA twins
// (pkg-fma/, pkg-threads-fma/), which the page runs where the browser has relaxed SIMD.
const THREAD_COUNTS = Array.from({ length: Math.min(8, availableParallelism()) }, (_, i) => i + 1);
const SUBJECTS = ['ours-webgpu', 'ours-cpu', ...THREAD_COUNTS.map((n) => `ours-cpu-${n}`),
  'ours-fma-cpu', ...THREAD_COUNTS.map((n) => `ours-fma-cpu-${n}`), 'ort-wasm-1', 'ort-wasm-2', 'ort-webgpu',
  'tfjs-wasm-1', 'tfjs-wasm-2', 'tfjs-webgpu', 'tfjs-webgl', 'tfjs-cpu', 'jax-wasm-1', 'jax-wasm-2', 'jax-webgpu'];
const flags = process.argv.slice(2);
const quick = flags.includes('--quick');
const only = flags.find((f) => f.startsWith('--only='))?.slice(7).split(',');
// --pkg=DIR: our wasm from another wasm-pack output under the repository (to compare builds).
const pkg = flags.find((f) => f.startsWith('--pkg='))?.slice(6) ?? 'pkg';
const subjects = only ?? SUBJECTS;
const unknown = subjects.filter((s) => !SUBJECTS.includes(s) && s !== 'first-prediction');
if (unknown.length) throw new Error(`unknown subject ${unknown}: one of ${SUBJECTS}, first-prediction`);

const figures = [];
function report(figure) {
  figures.push(figure);
  console.log(JSON.stringify(figure));
}
const tablesFrom = flags.find((f) => f.startsWith('--tables-from='))?.slice(14);
if (tablesFrom) {
  for (const line of readFileSync(tablesFrom, 'utf8').split('\n')) {
    if (line.startsWith('{')) figures.push(JSON.parse(line));
  }
} else {
  await measure();
}
printTables();

async function measure() {
  // The repository, cross-origin isolated.
  const server = await serve(resolve('.'), { crossOriginIsolated: true });
  const { url } = server;

  const browser = await launchChromium();
  console.log(`# ${await browser.version()}; ${quick ? 'quick check' : 'full run'}`);

  // Each wasm, as a server sends it and as it is gzipped on the wire.
  for (const dir of [pkg, 'pkg-threads', `${pkg}-fma`, 'pkg-threads-fma']) {
    const wasm = readFileSync(`${dir}/resnet_web_bg.wasm`);
    report({ figure: 'wasm size', pkg: dir, raw_mb: wasm.length / 2 ** 20, gzip_mb: gzipSync(wasm, { level: 9 }).length / 2 ** 20 });
  }

  // Page load to the first prediction of a stroke on the drawing canvas, in a new browser
  // context each time (the first with an empty cache).
  async function firstPrediction() {
    const times = [];
    const readyTimes = [];
    const context = await browser.newContext();
    for (let run = 0; run < (quick ? 1 : 3); run++) {
      const page = await context.newPage();
      const started = Date.now();
      await page.goto(url);
      await page.waitForFunction(() => /^Ready/.test(document.getElementById('notice').textContent), null, { timeout: 300000 });
      readyTimes.push(Date.now() - started);
      const box = await page.locator('#drawing').boundingBox();
      await page.mouse.move(box.x + 140, box.y + 40);
      await page.mouse.down();
      await page.mouse.move(box.x + 140, box.y + 240, { steps: 10 });
      await page.mouse.up();
      await page.waitForSelector('#predictions li', { timeout: 120000 });
      times.push(Date.now() - started);
      await page.close();
    }
    await context.close();
    const median = (values) => [...values].sort((a, b) => a - b)[values.length >> 1];
    report({
      subject: 'page', figure: 'first prediction', unit: 'ms', median: median(times), min: Math.min(...times),
      max: Math.max(...times), runs: times.length, ready_median: median(readyTimes),
      note: 'page load to the first prediction of one stroke, which runs on the CPU while WebGPU warms up (ready_median: to "Ready"); the first run with an empty cache',
    });
  }
  if (!only || only.includes('first-prediction')) await firstPrediction();

  for (const subject of subjects.filter((s) => s !== 'first-prediction')) {
    const page = await browser.newPage();
    page.on('console', (message) => {
      const text = message.text();
      if (text.startsWith('BENCH ')) report(JSON.parse(text.slice(6)));
    });
    page.on('pageerror', (error) => report({ subject, figure: 'error', message: error.message }));
    // Not waiting for 'load': a subject that loads scripts and then computes can hold it back.
    await page.goto(`${url}bench/?subject=${subject}&pkg=/${pkg}${quick ? '&quick=1' : ''}`, { waitUntil: 'commit' });
    await page.waitForFunction(() => window.benchDone, null, { timeout: 3600000, polling: 1000 });
    await page.close();
  }
  await browser.close();
  await server.close();
}

function printTables() {
  const number = (value) => (value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2));
  const deviceClass = (subject) => (/webgpu|webgl/.test(subject) ? 'gpu' : 'cpu');
  // [figure, model, batch, the short name a table's column gets]
  const rows = [
    ['inference', 'resnet18-224', 1, 'ResNet-18 b1 (ms)'], ['inference', 'resnet18-224', 8, 'ResNet-18 b8 (ms)'],
    ['inference', 'resnet20-32', 1, 'ResNet-20 b1 (ms)'], ['inference', 'resnet20-32', 64, 'ResNet-20 b64 (ms)'],
    ['training', 'resnet20-28x28x1', 64, 'training ResNet-20 b64 (images/s)'],
    // Transfer learning (ours only): one picture's embedding, one head epoch on 100.
    ['embedding', 'resnet18-224', 1, 'embedding ResNet-18 (ms)'], ['head epoch', '512x100', 100, 'head epoch, 100 (ms)'],
  ];
  const column = (row) => row[3];
  const find = (subject, [figure, model, batch]) =>
    figures.find((f) => f.subject === subject && f.figure === figure && f.model === model && f.batch === batch);
  const label = ([figure, model, batch]) => `${figure} ${model} b${batch} (${figure === 'training' ? 'images/s' : 'ms'})`;
  const ran = SUBJECTS.filter((s) => figures.some((f) => f.subject === s));
  // The threads a CPU subject reported using (TF.js's wasm reports one where it was asked
  // for two); 1 for the others.
  const threadsOf = (subject) => figures.find((f) => f.subject === subject && f.threads !== undefined)?.threads ?? 1;

  // One row per subject, a column per figure: with ours on every thread count and 13 peers,
  // a column per subject would not fit a page.
  console.log(`\n| subject (threads) | ${rows.map(column).join(' | ')} |`);
  console.log(`| --- |${rows.map(() => ' --- |').join('')}`);
  for (const subject of ran) {
    const cells = rows.map((row) => {
      const f = find(subject, row);
      return f ? `${number(f.median)} (${number(f.min)}–${number(f.max)})` : '';
    });
    console.log(`| ${subject}${deviceClass(subject) === 'cpu' ? ` (${threadsOf(subject)})` : ''} | ${cells.join(' | ')} |`);
  }

  // ours/peer: latency ours ÷ peer (below 1 is faster), throughput ours ÷ peer (above 1 is
  // faster), each against ours on the same device class: one row per peer, then the best
  // peer of each figure.
  const peers = ran.filter((s) => !s.startsWith('ours-'));
  const compared = rows.filter(([figure]) => figure === 'inference' || figure === 'training');
  // On the CPU, ours at the peer's thread count: the FMA modules where they ran (what the
  // page runs in this browser), else the others; the one-thread module for 1 where the
  // threaded one did not run. `plain`: only the modules without FMA.
  const ours = (peer, row, { plain = false } = {}) => {
    if (deviceClass(peer) === 'gpu') return find('ours-webgpu', row);
    const threads = threadsOf(peer);
    const single = (prefix) => find(`${prefix}-${threads}`, row) ?? (threads === 1 ? find(prefix, row) : undefined);
    return (plain ? undefined : single('ours-fma-cpu')) ?? single('ours-cpu');
  };
  const ratio = (peer, row, options) => {
    const mine = ours(peer, row, options);
    const theirs = find(peer, row);
    return mine && theirs ? mine.median / theirs.median : null;
  };
  if (peers.length) {
    console.log(`\n| ours/peer (peer's threads) | ${compared.map(column).join(' | ')} |`);
    console.log(`| --- |${compared.map(() => ' --- |').join('')}`);
    for (const peer of peers) {
      const cells = compared.map((row) => ratio(peer, row)?.toFixed(2) ?? '');
      console.log(`| ${peer}${deviceClass(peer) === 'cpu' ? ` (${threadsOf(peer)})` : ''} | ${cells.join(' | ')} |`);
    }
    // The best peer at each of the peers' thread counts on the CPU, and on the GPU; then the
    // same for our modules without FMA alone (a browser without relaxed SIMD), where the FMA
    // twins ran too.
    const classes = [...new Set(peers.filter((p) => deviceClass(p) === 'cpu').map(threadsOf))].sort()
      .map((threads) => ({ name: `CPU, ${threads} thread${threads === 1 ? '' : 's'}`, has: (p) => deviceClass(p) === 'cpu' && threadsOf(p) === threads }));
    const bestPeerTable = (title, chosen, options, target) => {
      console.log(`\n| ${title} | ${chosen.map(({ name }) => `best peer, ${name}`).join(' | ')} | target |`);
      console.log(`| --- |${chosen.map(() => ' --- |').join('')} --- |`);
      for (const row of compared) {
        const training = row[0] === 'training';
        const best = chosen.map(({ has }) => {
          const candidates = peers.filter((p) => has(p) && ratio(p, row, options) !== null);
          if (!candidates.length) return '';
          // The best peer is the one ours is closest to: the highest ratio for latency, the
          // lowest for throughput.
          const closer = (a, b) => (training ? ratio(a, row, options) < ratio(b, row, options) : ratio(a, row, options) > ratio(b, row, options));
          const pick = candidates.reduce((a, b) => (closer(b, a) ? b : a));
          return `${ratio(pick, row, options).toFixed(2)} (${pick})`;
        });
        console.log(`| ${label(row)} | ${best.join(' | ')} | ${training ? '≥ 2.0' : target} |`);
      }
    };
    bestPeerTable('figure', [...classes, { name: 'GPU', has: (p) => deviceClass(p) === 'gpu' }], {}, 'CPU ≤ 0.6, GPU ≤ 0.5');
    if (ran.some((s) => s.startsWith('ours-fma-')) && ran.some((s) => /^ours-cpu/.test(s))) {
      bestPeerTable('without FMA', classes, { plain: true }, 'CPU ≤ 0.8 (1 thread)');
    }
  }

  // FMA: how many times faster each FMA module is than its twin without.
  const twins = ran.filter((s) => s.startsWith('ours-fma-') && ran.includes(s.replace('fma-', '')));
  if (twins.length) {
    console.log(`\n| speed-up of FMA over its twin | ${twins.join(' | ')} |`);
    console.log(`| --- |${twins.map(() => ' --- |').join('')}`);
    for (const row of rows.slice(0, 5)) {
      const cells = twins.map((s) => {
        const [fma, plain] = [find(s, row), find(s.replace('fma-', ''), row)];
        if (!fma || !plain) return '';
        return (row[0] === 'training' ? fma.median / plain.median : plain.median / fma.median).toFixed(2);
      });
      console.log(`| ${label(row)} | ${cells.join(' | ')} |`);
    }
  }

  // Our scaling: how many times faster N threads are than one (targets for 2 threads on two
  // cores: 1.8 for inference at ResNet-18 b8 and ResNet-20 b64, 1.6 for training).
  const threaded = ran.filter((s) => /^ours-cpu-\d$/.test(s) && s !== 'ours-cpu-1');
  if (threaded.length && ran.includes('ours-cpu-1')) {
    console.log(`\n| speed-up over ours-cpu-1 | ${threaded.join(' | ')} |`);
    console.log(`| --- |${threaded.map(() => ' --- |').join('')}`);
    for (const row of rows.slice(0, 5)) {
      const one = find('ours-cpu-1', row);
      const cells = threaded.map((s) => {
        const f = find(s, row);
        if (!one || !f) return '';
        return (row[0] === 'training' ? f.median / one.median : one.median / f.median).toFixed(2);
      });
      console.log(`| ${label(row)} | ${cells.join(' | ')} |`);
    }
  }

  console.log('');
  for (const f of figures) {
    if (f.figure === 'wasm size') console.log(`wasm ${f.pkg ?? 'pkg'}: ${f.raw_mb.toFixed(1)} MiB raw, ${f.gzip_mb.toFixed(2)} MiB gzipped (target 4 MB)`);
    if (f.figure === 'first prediction') console.log(`first prediction: ${f.median} ms (${f.min}–${f.max}, ${f.runs} runs; ready after ${f.ready_median} ms; target 1000 ms)`);
    if (f.figure === 'error' || f.figure === 'unsupported') {
      console.log(`${f.figure}: ${f.subject} ${f.failed ?? ''} ${f.model ?? ''} ${f.batch ?? ''}: ${f.message}`);
    }
  }
  if (figures.some((f) => f.figure === 'error')) process.exitCode = 1;
}
