// The worker under Node.js (node:worker_threads), which has no Web Worker globals: gives
// worker.js the ones it uses (self, postMessage, onmessage, location, navigator), and a
// fetch that reads file: URLs (Node's reads none), through which wasm-bindgen loads the
// wasm modules. Then runs worker.js as in a page.
import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';

globalThis.self = globalThis;
self.location = { href: workerData.href };
globalThis.navigator ??= { hardwareConcurrency: availableParallelism() };
self.postMessage = (message, transfer) => parentPort.postMessage(message, transfer);
// Kept until worker.js listens, as a browser keeps a worker's first messages.
const early = [];
parentPort.on('message', (data) => (self.onmessage ? self.onmessage({ data }) : early.push(data)));

const fetchOverNetwork = globalThis.fetch;
globalThis.fetch = async (resource, options) => {
  const url = new URL(resource instanceof Request ? resource.url : resource);
  if (url.protocol !== 'file:') return fetchOverNetwork(resource, options);
  const bytes = await readFile(url);
  const type = url.pathname.endsWith('.wasm') ? 'application/wasm' : 'application/octet-stream';
  return new Response(bytes, { headers: { 'Content-Type': type } });
};

await import('./worker.js');
for (const data of early.splice(0)) self.onmessage({ data });
