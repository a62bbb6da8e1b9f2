// The page's start in Firefox, over and over: ROUNDS fresh contexts (PARALLEL at a time),
// each until the page is ready and `cpuThreads()` answers, with the time it took and how
// many workers the library started (more than one: a stalled start was replaced). A round
// that fails prints the page's state. Not part of the gate; docs/tests.md, "Firefox".
//   node tests/stress-firefox.mjs ROUNDS [PARALLEL]
import { launchFirefox } from './firefox.mjs';
import { serve } from './static-server.mjs';
import { libraryWorkersStarted, waitUntil, workerLog } from './waits.mjs';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const [rounds = 20, parallel = 1] = process.argv.slice(2).map(Number);
const browser = await launchFirefox();
const server = await serve(ROOT);

async function one(round, lane) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.evaluateOnNewDocument(workerLog);
  const started = Date.now();
  try {
    await page.goto(server.url);
    await waitUntil(page, () => /^Ready|running on the CPU/.test(document.getElementById('notice').textContent), undefined, { timeout: 60000, what: 'ready' });
    const threads = await waitUntil(page, async () => {
      const t = await (await import('/js/resnet-web.js')).cpuThreads();
      return JSON.stringify(t);
    }, undefined, { timeout: 60000, what: 'cpuThreads' });
    const workers = await libraryWorkersStarted(page);
    console.log(`round ${round}.${lane}: ready in ${Date.now() - started} ms, ${workers} worker${workers > 1 ? 's (a start replaced)' : ''} ${threads}`);
  } catch (error) {
    console.log(`round ${round}.${lane}: FAILED after ${Date.now() - started} ms\n${error.message}`);
    process.exitCode = 1;
  } finally {
    await context.close();
  }
}

for (let round = 0; round < rounds; round++) {
  await Promise.all(Array.from({ length: parallel }, (_, lane) => one(round, lane)));
}
await browser.close();
await server.close();
