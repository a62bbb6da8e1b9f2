// Hand-written WGSL convolutions on this machine's WebGPU adapter (bench/conv-kernels.html):
// what a kernel's tile is worth, apart from burn. Prints one JSON line per layer and kernel.
//   node scripts/conv-kernels.mjs   (from the repository root; needs npm ci for playwright-core)
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { launchChromium } from '../tests/chromium.mjs';

const page = readFileSync(new URL('../bench/conv-kernels.html', import.meta.url));
const server = createServer((_, response) => {
  response.writeHead(200, { 'Content-Type': 'text/html' }).end(page);
}).listen(0, '127.0.0.1');
const browser = await launchChromium();
try {
  const tab = await browser.newPage();
  tab.on('console', (message) => console.log(message.text()));
  tab.on('pageerror', (error) => console.error(`page error: ${error.message}`));
  await tab.goto(`http://127.0.0.1:${server.address().port}/`);
  await tab.waitForFunction(() => window.RESULTS, null, { timeout: 600_000 });
} finally {
  await browser.close();
  server.close();
}
