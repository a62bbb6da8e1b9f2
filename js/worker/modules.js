// The wasm modules and the CPU's threads.
// pkg/ has WebGPU and a one-thread CPU; pkg-threads/ has only the CPU, on a pool of threads,
// and needs a cross-origin isolated page (its memory is shared with the pool's workers). A
// model's objects live in the module that made them: the CPU's come from `wasm.cpu`,
// WebGPU's from `webgpu()`, which loads only when something asks for WebGPU.
// Each has an FMA twin (pkg-fma/, pkg-threads-fma/) whose CPU kernels use relaxed SIMD's
// fused multiply-add. A browser without relaxed SIMD refuses such a module whole, so the
// twins load only where this probe, one f32x4.relaxed_madd, validates.
// Nothing starts on import: the worker calls `startModules()` once its own script runs, so
// that whatever that script sets up first (a test's hooks) sees every module load.
import { ErrorCode, ResNetError } from '../protocol.js';

const RELAXED_SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // "\0asm", version 1
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // types: () -> v128
  0x03, 0x02, 0x01, 0x00, // one function of that type
  0x0a, 0x13, 0x01, 0x11, 0x00, // its code, no locals:
  0x41, 0x00, 0xfd, 0x11, 0x41, 0x00, 0xfd, 0x11, 0x41, 0x00, 0xfd, 0x11, // 3 x i32x4.splat(0)
  0xfd, 0x85, 0x02, 0x0b, // f32x4.relaxed_madd, end
]);
// Node.js (Deno says it is Node too, for the packages it runs).
const inNode = Boolean(globalThis.process?.versions?.node) && !globalThis.Deno;

const moduleUrl = (dir) => new URL(`../../${dir}/resnet_web.js`, import.meta.url).href;

// At most 8 threads: the kernels split each convolution evenly, and beyond that the shares
// are small.
const POOL_SIZE = Math.max(1, Math.min(8, navigator.hardwareConcurrency ?? 1));

// What the other parts of the worker read; only this file's functions and `markWebgpuLost`
// change it.
export const wasm = {
  modules: null, // the directories: {main, threads}, with or without FMA
  cpu: null, // the CPU's module, once loaded
  cpuModuleName: null, // the directory of the module that runs the CPU
  cpuLoading: null, // a promise of the CPU's module
  ready: null, // settles once the CPU's module has loaded (its pool started, or given up)
  oneThreadReason: null, // why the CPU has one thread, when it has
  threadsChosen: false, // by the caller (setCpuThreads), so no measurement overrides it
  chosenThreads: null, // that count, as far as the pool has threads
  webgpuLost: false,
  loaded: {}, // each loaded module's directory -> {module, memory (its WebAssembly.Memory)}
  // How far the pool's start got, for a status request: the workers wasm-bindgen-rayon made
  // and those that said they were ready.
  pool: { size: POOL_SIZE, made: 0, ready: 0, state: 'not started', ms: null },
};

// Once WebGPU has failed under a model, every model stays on the CPU: burn keeps the one
// device it was given, lost or not, until the page reloads.
export const WEBGPU_LOST = 'WebGPU was lost earlier: reload the page to use it again. Running on the CPU.';
export function markWebgpuLost() {
  wasm.webgpuLost = true;
}

let webgpuLoading = null;
export const webgpu = () => (webgpuLoading ??= import(moduleUrl(wasm.modules.main)).then(async (module) => {
  wasm.loaded[wasm.modules.main] = { module, memory: (await module.default()).memory };
  return module;
}));

// Each loaded module's memory in bytes: `wasmBytes`, its size, which only grows (what a
// disposed model freed is reused, not given back), and `heapBytes`, what its Rust code holds
// now (src/web/heap.rs), which a leak makes grow; `heapPeakBytes`, the most it held at once
// since the last run on the CPU was measured (training.js, checkMemory) or the module loaded.
// `gpuPoolBytes`: the bytes burn's GPU memory pool keeps (what its tensors use, and pages
// kept for reuse: it never gives them back), or null before WebGPU opens.
export function memoryUse() {
  const each = (bytesOf) => Object.fromEntries(Object.entries(wasm.loaded).map(([dir, loaded]) => [dir, bytesOf(loaded)]));
  return {
    wasmBytes: each(({ memory }) => memory?.buffer.byteLength ?? 0),
    heapBytes: each(({ module }) => module.heapBytes()),
    heapPeakBytes: each(({ module }) => module.heapPeakBytes()),
    gpuPoolBytes: webgpuPool()?.reserved ?? null,
  };
}
// wgpu reads `GPUAdapter.info` (its description, isFallbackAdapter and subgroup sizes) as it
// opens the device; a WebGPU from before that attribute (Chrome before 127, Safari's before
// 26: only `requestAdapterInfo()`, or nothing) would throw from inside the wasm. There, an
// `info` with what the adapter itself says: its older `isFallbackAdapter` (a software
// adapter), and nothing of subgroups (wgpu then assumes none).
function giveAdaptersInfo() {
  if (!self.GPUAdapter || 'info' in GPUAdapter.prototype) return;
  Object.defineProperty(GPUAdapter.prototype, 'info', {
    configurable: true,
    get() {
      return { vendor: '', architecture: '', device: '', description: '', isFallbackAdapter: Boolean(this.isFallbackAdapter), subgroupMinSize: 0, subgroupMaxSize: 0 };
    },
  });
}

// The WebGPU module with its device open, for every use of WebGPU: opened once, before any
// of them (two openings at the same time fail; the page's 'auto' model and a caller's
// 'webgpu' load would otherwise race).
let webgpuOpening = null;
let webgpuOpened = false;
export const webgpuDevice = () => (webgpuOpening ??= webgpu().then(async (module) => {
  // Not asked of wgpu: outside a browser and a Web Worker (Node.js) it traps, ending the worker.
  if (!browserHasWebgpu()) {
    const [where, instead] = inNode
      ? ['Node.js has no navigator.gpu', 'or Deno, whose WebGPU the package uses']
      : ['this browser has no WebGPU: navigator.gpu is missing', 'or a browser with WebGPU enabled'];
    throw new ResNetError(ErrorCode.UNSUPPORTED, `WebGPU is not available (${where}): use the CPU backend, ${instead}`);
  }
  giveAdaptersInfo();
  await module.openWebgpu();
  webgpuOpened = true;
  return module;
}));
// What burn's GPU memory pool holds, {reserved, inUse} bytes; undefined before WebGPU opens.
export const webgpuPool = () => (webgpuOpened ? wasm.loaded[wasm.modules.main].module.webgpuPoolBytes() : undefined);
export const moduleFor = async (backend) => (backend === 'webgpu' ? webgpuDevice() : wasm.cpuLoading);

// A pool that has not started in this time will not: its workers are ended and the CPU runs
// on one thread, saying why (a start takes well under a second, or seconds on a loaded machine).
const POOL_START_MS = 30_000;

async function startPool(threaded) {
  const { pool } = wasm;
  const started = performance.now();
  const made = [];
  const NativeWorker = self.Worker;
  // wasm-bindgen-rayon makes the pool's workers with the global `Worker`: counted here, so
  // that a start that stalls says how far it got, and its workers can be ended.
  self.Worker = class extends NativeWorker {
    constructor(url, options) {
      super(url, options);
      made.push(this);
      pool.made += 1;
      this.addEventListener('message', ({ data }) => { if (data?.type === 'wasm_bindgen_worker_ready') pool.ready += 1; });
    }
  };
  pool.state = 'starting';
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`its pool of ${POOL_SIZE} threads had not started after ${POOL_START_MS / 1000} s: ${pool.made} made, ${pool.ready} ready`)), POOL_START_MS);
  });
  try {
    await Promise.race([threaded.initThreadPool(POOL_SIZE), late]);
    pool.state = 'started';
  } catch (error) {
    for (const worker of made) worker.terminate();
    pool.state = 'failed';
    throw error;
  } finally {
    clearTimeout(timer);
    self.Worker = NativeWorker;
    pool.ms = Math.round(performance.now() - started);
  }
}

// Whether this browser has WebGPU at all (Firefox on Linux, WebKitGTK and Safari before 26
// have none): where it has not, 'auto' stays on the CPU without trying, and says so plainly.
export const browserHasWebgpu = () => Boolean(self.navigator?.gpu);

async function loadCpuModule() {
  // A browser says whether the page may share memory with its workers; a runtime that is no
  // browser (Deno) has no such attribute, and no headers to ask for.
  if (self.crossOriginIsolated === false) {
    wasm.oneThreadReason = 'the page is not cross-origin isolated, served without COOP/COEP headers';
    return webgpu();
  }
  // wasm-bindgen-rayon starts its pool with Web Workers: Node.js has worker_threads instead,
  // and Safari before 15.5 none inside a worker.
  if (typeof self.Worker === 'undefined') {
    wasm.oneThreadReason = inNode ? 'Node.js has no Web Workers for the thread pool, only worker_threads' : 'this browser starts no worker from a worker, as the thread pool needs';
    return webgpu();
  }
  // WebKitGTK is cross-origin isolated with COOP/COEP, yet has no SharedArrayBuffer: the
  // threaded module's shared memory cannot be made there, nor sent to the pool's workers.
  if (typeof SharedArrayBuffer === 'undefined') {
    wasm.oneThreadReason = 'this browser has no SharedArrayBuffer, which the threads share their memory through';
    return webgpu();
  }
  // The library starts a worker this way after starting the pool stopped two workers for
  // good (resnet-web.js, replaceStalledWorker).
  if (new URL(self.location.href).searchParams.get('pool') === 'stalled') {
    wasm.oneThreadReason = 'starting the thread pool stopped the worker twice (no answer for 10 s)';
    return webgpu();
  }
  try {
    const threaded = await import(moduleUrl(wasm.modules.threads));
    wasm.loaded[wasm.modules.threads] = { module: threaded, memory: (await threaded.default()).memory };
    await startPool(threaded);
    wasm.cpuModuleName = wasm.modules.threads;
    return threaded;
  } catch (error) {
    wasm.oneThreadReason = `the threaded module did not start (${error.message ?? error})`;
    return webgpu();
  }
}

// Chooses the modules and starts loading the CPU's; returns `wasm.ready`.
export function startModules() {
  const fma = WebAssembly.validate(RELAXED_SIMD_PROBE);
  wasm.modules = fma ? { main: 'pkg-fma', threads: 'pkg-threads-fma' } : { main: 'pkg', threads: 'pkg-threads' };
  wasm.cpuModuleName = wasm.modules.main;
  wasm.cpuLoading = loadCpuModule();
  wasm.ready = wasm.cpuLoading.then((module) => { wasm.cpu = module; });
  return wasm.ready;
}

// What runs a model, in words; a CPU on one thread says why.
export function backendText(backend) {
  return wasm.oneThreadReason && backend.startsWith('CPU') && backend.endsWith('1 thread)')
    ? `${backend.slice(0, -1)}: ${wasm.oneThreadReason})`
    : backend;
}

export function threadsInfo() {
  const { cpu } = wasm;
  return {
    threads: cpu.cpuThreads(), available: cpu.hasThreads() ? POOL_SIZE : 1, reason: wasm.oneThreadReason,
    module: wasm.cpuModuleName, fma: cpu.hasFma(),
  };
}

// The caller's thread count, which no measurement overrides from then on.
export function chooseThreads(threads) {
  if (!Number.isInteger(threads) || threads < 1) throw new ResNetError(ErrorCode.BAD_OPTIONS, `threads must be a whole number from 1, not ${JSON.stringify(threads)}`);
  wasm.threadsChosen = true;
  wasm.chosenThreads = Math.min(threads, threadsInfo().available);
  wasm.cpu.setCpuThreads(wasm.chosenThreads);
  return threadsInfo();
}
