// The worker's ways out: messages to the library (resnet-web.js), files fetched, and its end.
import { ErrorCode, ResNetError } from '../protocol.js';

export const post = (message, transfer = []) => self.postMessage(message, transfer);

// After a trap (a Rust panic, an allocation that failed) nothing in the wasm module can be
// trusted: an uncaught error ends the worker, and the library answers it by failing every
// other call and model with worker-crashed.
export const endWorkerAfterTrap = (trap) => setTimeout(() => { throw trap; });

// Node.js's fetch reads no file: URL (Deno's does); its fs does.
const readFile = globalThis.process?.versions?.node && !globalThis.Deno ? (await import('node:fs/promises')).readFile : null;

export async function fetchBytes(url) {
  let response;
  try {
    response = readFile && String(url).startsWith('file:') ? new Response(await readFile(new URL(url))) : await fetch(url);
  } catch (error) {
    throw new ResNetError(ErrorCode.NETWORK, `cannot load ${url}: ${error.message}`);
  }
  if (!response.ok) throw new ResNetError(ErrorCode.NETWORK, `cannot load ${url}: ${response.status} ${response.statusText}`);
  return new Uint8Array(await response.arrayBuffer());
}
