// Test hooks that tests/page.mjs and scripts/memory.mjs put in front of js/worker.js (by
// routing its request): they see what the worker does with WebGPU and WebAssembly without
// a line of test code in the product.
//   self.testGpuDevices  - the GPU devices the worker got (a test destroys them: a lost GPU)
//   self.testGpuBuffers  - {count, bytes, peakBytes}: GPU buffers alive (and the most bytes
//                          alive at once): created, and neither destroyed
//                          nor garbage-collected (wgpu drops buffers without destroying
//                          them on the web; collection frees them; expose gc to count
//                          exactly: Chromium's --js-flags=--expose-gc, then self.gc())
//   self.testWasmMemory  - the wasm module's memory (its buffer's byteLength is its size)
//   self.testResults     - how many classification results the worker has posted
//   self.testEmbeddings  - how many pictures the worker's backbones have embedded
//   self.testBreakGpuConvolutions(broken) - makes every WebGPU convolution wrong on purpose,
//                          or right again (the WebGPU module's testOnlyBreakGpuConvolutions)
// gpu: 'webgpu' as the browser has it, 'none' (no WebGPU at all), 'refused' (no adapter) or
// 'without-info' (no GPUAdapter.info);
// relaxedSimd: false makes WebAssembly.validate refuse any module with a relaxed SIMD
// instruction (0xfd, then an opcode from 0x100 to 0x113 as LEB128), as a browser without
// relaxed SIMD does: the worker's probe then fails.
// poolStarts: false gives the thread pool's workers (wasm-bindgen-rayon's, which it starts
// from a blob: URL of its workerHelpers script) a script that does nothing, so that none of
// them ever says it is ready: a pool that cannot start. stall: true blocks the worker for good as it makes the pool's first worker,
// as Firefox sometimes does (docs/design.md, "Threads"). brokenGpu: true makes WebGPU's
// convolutions wrong from the start, as a GPU with a bad driver would compute them.
export function workerPrelude({ gpu = 'webgpu', relaxedSimd = true, poolStarts = true, stall = false, brokenGpu = false } = {}) {
  const withoutGpu = {
    webgpu: '',
    none: "Object.defineProperty(WorkerNavigator.prototype, 'gpu', { get: () => undefined });",
    refused: 'GPU.prototype.requestAdapter = async () => null;',
    // A WebGPU from before GPUAdapter.info (Chrome before 127, Safari before 26), with the
    // adapter's own isFallbackAdapter of that time (SwiftShader's is one).
    'without-info': `delete GPUAdapter.prototype.info; delete GPUAdapter.prototype.requestAdapterInfo;
Object.defineProperty(GPUAdapter.prototype, 'isFallbackAdapter', { configurable: true, get: () => true });`,
  }[gpu];
  const withoutRelaxedSimd = relaxedSimd ? '' : `{
  const validate = WebAssembly.validate;
  const relaxed = (bytes) => bytes.some((byte, i) => byte === 0xfd && bytes[i + 1] >= 0x80 && bytes[i + 1] <= 0x93 && bytes[i + 2] === 0x02);
  WebAssembly.validate = (bytes) => !relaxed(new Uint8Array(bytes.buffer ?? bytes, bytes.byteOffset ?? 0, bytes.byteLength)) && validate(bytes);
}`;
  const withoutPool = poolStarts ? '' : `{
  const NativeWorker = self.Worker;
  const idle = URL.createObjectURL(new Blob([''], { type: 'text/javascript' }));
  self.Worker = class extends NativeWorker {
    constructor(url, options) { super(String(url).startsWith('blob:') ? idle : url, options); }
  };
}`;
  const stalled = stall ? `{
  const NativeWorker = self.Worker;
  self.Worker = class extends NativeWorker {
    constructor(url, options) {
      if (String(url).startsWith('blob:')) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
      super(url, options);
    }
  };
}` : '';
  return `${withoutGpu}
${withoutRelaxedSimd}
${withoutPool}
${stalled}
self.testGpuDevices = [];
self.testGpuBuffers = { count: 0, bytes: 0, peakBytes: 0 };
self.testWasmMemory = null;
self.testResults = 0;
self.testEmbeddings = 0;
if (self.GPUAdapter) {
  const requestDevice = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = async function (...args) {
    const device = await requestDevice.apply(this, args);
    self.testGpuDevices.push(device);
    return device;
  };
  const createBuffer = GPUDevice.prototype.createBuffer;
  const live = new WeakSet();
  const gone = (size) => {
    self.testGpuBuffers.count -= 1;
    self.testGpuBuffers.bytes -= size;
  };
  const collected = new FinalizationRegistry(gone);
  GPUDevice.prototype.createBuffer = function (descriptor) {
    const buffer = createBuffer.call(this, descriptor);
    live.add(buffer);
    collected.register(buffer, buffer.size, buffer);
    self.testGpuBuffers.count += 1;
    self.testGpuBuffers.bytes += buffer.size;
    self.testGpuBuffers.peakBytes = Math.max(self.testGpuBuffers.peakBytes, self.testGpuBuffers.bytes);
    return buffer;
  };
  const destroy = GPUBuffer.prototype.destroy;
  GPUBuffer.prototype.destroy = function () {
    if (live.delete(this)) {
      collected.unregister(this);
      gone(this.size);
    }
    return destroy.call(this);
  };
}
for (const name of ['instantiate', 'instantiateStreaming']) {
  const original = WebAssembly[name];
  WebAssembly[name] = async function (...args) {
    const result = await original.apply(this, args);
    const exports = (result.instance ?? result).exports;
    self.testWasmMemory = exports?.memory ?? self.testWasmMemory;
    if (exports?.testOnlyBreakGpuConvolutions) {
      self.testBreakGpuConvolutions = (broken) => exports.testOnlyBreakGpuConvolutions(broken ? 1 : 0);
      self.testBreakGpuConvolutions(${brokenGpu});
    }
    return result;
  };
}
const postMessage = self.postMessage.bind(self);
self.postMessage = (message, transfer) => {
  if (message?.type === 'done' && message.value?.probabilities) self.testResults += 1;
  if (message?.type === 'done' && message.value?.example !== undefined) self.testEmbeddings += 1;
  return postMessage(message, transfer);
};
`;
}

// Routes the page's request for js/worker.js to the worker with the prelude in front; the
// first `stalledStarts` workers stall (`stall` above).
export async function routeWorker(page, { stalledStarts = 0, ...options } = {}) {
  let starts = 0;
  await page.route((url) => url.pathname.endsWith('/js/worker.js'), async (route) => {
    const stall = starts < stalledStarts;
    starts += 1;
    const response = await route.fetch();
    const body = `${workerPrelude({ ...options, stall })}${await response.text()}`;
    await route.fulfill({ response, body, headers: { ...response.headers(), 'content-type': 'text/javascript' } });
  });
}

// The page's model worker (js/worker.js), not one of the thread pool's workers, which wait
// inside the wasm and never answer an evaluate().
export function modelWorker(page) {
  const worker = page.workers().find((w) => new URL(w.url()).pathname.endsWith('/js/worker.js'));
  if (!worker) throw new Error('the page has no model worker (js/worker.js)');
  return worker;
}
