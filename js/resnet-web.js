// resnet-web: a ResNet that classifies and trains in the browser, on WebGPU or on the CPU.
//
//   import { loadModel, shippedModels } from 'resnet-web';
//   const model = await loadModel(shippedModels.digits);
//   const [best] = await model.classify(canvas);   // {label, probability}
//
// The models run in a Web Worker that this module starts and owns; every failure is a
// ResNetError with a stable `code` (protocol.js lists them).
import { ErrorCode, Event, Reply, Request, ResNetError } from './protocol.js';
import { fetchBytes } from './worker/io.js';

export { ErrorCode, ResNetError };

/** The models that come with the package: `loadModel(shippedModels.digits)`. */
export const shippedModels = Object.freeze({
  digits: Object.freeze({ shipped: 'digits' }),
  fashion: Object.freeze({ shipped: 'fashion' }),
});

const BACKENDS = ['auto', 'webgpu', 'cpu'];
const INPUTS = ['digit', 'fashion', 'imagenet', 'gray-28', 'gray-32', 'rgb-28', 'rgb-32'];
const EXPORT_FORMATS = ['safetensors', 'burnpack'];
// Larger pictures are scaled down to this before they go to the worker: the models read at
// most 256 px (ImageNet's resize before its 224 px crop).
const MAX_SIDE = 1024;
// Pixels given as {data, width, height} with a longer side are refused, as the worker would
// (src/data/preprocess.rs, MAX_SIDE): a side, not an area, bounds every buffer made for them.
const MAX_DATA_SIDE = 4096;
// Relative URLs are the page's; outside a page (Deno, Node.js), the working directory's.
const base = () => globalThis.document?.baseURI ?? globalThis.location?.href ?? workingDirectory();
function workingDirectory() {
  const cwd = globalThis.Deno?.cwd() ?? globalThis.process?.cwd();
  return new URL(`file://${cwd.replaceAll('\\', '/').replace(/^(?!\/)/, '/')}/`).href;
}

// ---- The worker and its answers ----

let worker = null;
let nextId = 1;
// id -> {type, resolve, reject, message?}: `message` is kept, not transferred, while the
// worker starts, so that a worker started in its place can be sent it again.
const pending = new Map();
const listeners = new Map(); // model or run id -> event handler

// No call may wait forever on a worker that has stopped: while calls wait, a watchdog asks
// the worker where it stands once it has been silent for STATUS_AFTER_MS (it answers at
// once unless one call runs without yielding, as a load does for seconds, or a training
// step of a large model on the CPU for minutes). Silent for UNRESPONSIVE_MS, it is ended
// and every waiting call rejects with WORKER_FAILED; the next call starts a new one.
const WATCH_MS = 5000;
const STATUS_AFTER_MS = 10_000;
const UNRESPONSIVE_MS = 600_000;
let lastHeard = 0; // performance.now() when the worker last posted anything
let watchdog = null;
let statusAsked = false;

// A worker's start can stop it for good: in Firefox, about one start in a hundred on a busy
// machine blocks the worker inside `new Worker` as the thread pool's start makes its first
// worker, and it answers nothing more (docs/design.md, "Threads"). So until the worker says
// it has started (Event.STARTED), it is asked where it stands every START_PING_MS; silent
// for START_SILENT_MS, it is ended and a new worker takes its calls: once more with a pool,
// then without one (its backend line says why).
const START_PING_MS = 1000;
const START_SILENT_MS = 10_000;
const STALLS_BEFORE_ONE_THREAD = 2;
let stalledStarts = 0;
let started = false;
// Messages without a reply (a run's pause, resume and stop) posted while the worker starts,
// in order: a worker started in its place gets them again after the calls.
let controlsBeforeStart = [];

// Each worker ended by a failure counts here. A model (or learner) remembers the count it
// was made under, so that after a crash its calls say it was lost rather than reach a new
// worker that never had it.
let workersLost = 0;
let lastLoss = null; // the error the last lost worker's calls got

function failWorker(reason, code = ErrorCode.WORKER_FAILED) {
  const error = new ResNetError(code, `the resnet-web worker ${reason}; the models it held are gone: load them again`);
  workersLost += 1;
  lastLoss = error;
  worker?.terminate();
  worker = null;
  controlsBeforeStart = [];
  clearInterval(watchdog);
  watchdog = null;
  statusAsked = false;
  for (const waiting of pending.values()) waiting.reject(error);
  pending.clear();
}

// Throws the loss that ended the worker `what` lived in, if that worker is gone.
function lostWith(workerCount, what) {
  if (workerCount === workersLost) return;
  throw new ResNetError(lastLoss.code, `${lastLoss.message.split(';')[0]}: ${what} was lost with it; load the model again`);
}

const callsWaiting = () => [...pending.values()].some(({ type }) => type !== Request.STATUS);

function watch() {
  watchdog ??= setInterval(() => {
    if (!callsWaiting()) {
      clearInterval(watchdog);
      watchdog = null;
      return;
    }
    const silent = performance.now() - lastHeard;
    if (silent >= UNRESPONSIVE_MS) {
      failWorker(`stopped answering (nothing for ${Math.round(silent / 1000)} s)`);
    } else if (silent >= STATUS_AFTER_MS && !statusAsked) {
      statusAsked = true;
      send({ type: Request.STATUS }).catch(() => {}).finally(() => { statusAsked = false; });
    }
  }, WATCH_MS);
  watchdog.unref?.(); // Node.js: the worker, not this, keeps the process alive while calls wait
}

function watchStart(starting) {
  let askedAt = null; // when the status request not yet answered was sent
  const timer = setInterval(() => {
    if (worker !== starting || started) {
      clearInterval(timer);
    } else if (askedAt === null) {
      askedAt = performance.now();
      send({ type: Request.STATUS }).then(() => { askedAt = null; }, () => {});
    } else if (performance.now() - askedAt >= START_SILENT_MS) {
      clearInterval(timer);
      replaceStalledWorker();
    }
  }, START_PING_MS);
  timer.unref?.();
}

// The calls made so far go to a new worker, then the controls; status requests are dropped.
function replaceStalledWorker() {
  stalledStarts += 1;
  worker.terminate();
  worker = null;
  const calls = [...pending].filter(([, call]) => call.message);
  for (const [id, call] of pending) if (!call.message) pending.delete(id);
  const next = connection();
  for (const [, call] of calls) next.postMessage(call.message);
  for (const message of controlsBeforeStart) next.postMessage(message);
}

// A message without a reply; kept while the worker starts (above).
function postControl(message) {
  connection().postMessage(message);
  if (!started) controlsBeforeStart.push(message);
}

// Node.js has no Web Workers: a worker of node:worker_threads, behind the same few members,
// runs worker.js behind worker-node.js. It keeps the process alive only while calls wait.
const workerThreads = !globalThis.Worker && globalThis.process?.versions?.node ? await import('node:worker_threads') : null;
class NodeWorker {
  constructor(url) {
    this.thread = new workerThreads.Worker(new URL('./worker-node.js', import.meta.url), { workerData: { href: url.href } });
    this.thread.on('message', (data) => this.onmessage?.({ data }));
    this.thread.on('error', (error) => this.onerror?.({ message: error.message, preventDefault() {} }));
    this.thread.unref();
  }
  postMessage(message, transfer) { this.thread.postMessage(message, transfer); }
  terminate() { this.thread.terminate(); }
  ref() { this.thread.ref(); }
  unref() { this.thread.unref(); }
}

function connection() {
  if (worker) return worker;
  const url = new URL('./worker.js', import.meta.url);
  if (stalledStarts >= STALLS_BEFORE_ONE_THREAD) url.searchParams.set('pool', 'stalled');
  worker = workerThreads ? new NodeWorker(url) : new Worker(url, { type: 'module' });
  started = false;
  worker.onmessage = ({ data }) => {
    lastHeard = performance.now();
    if (data.type === Reply.DONE || data.type === Reply.FAILED) {
      const waiting = pending.get(data.id);
      pending.delete(data.id);
      if (data.type === Reply.DONE) waiting?.resolve(data.value);
      else waiting?.reject(new ResNetError(data.code, data.message));
      if (!callsWaiting()) worker?.unref?.();
    } else if (data.type === Event.STARTED) {
      started = true;
      for (const call of pending.values()) delete call.message;
      controlsBeforeStart = [];
    } else {
      listeners.get(data.model ?? data.run)?.(data);
    }
  };
  // An uncaught error in the worker (a module that cannot load, an aborted wasm module, a
  // bug) leaves it in no state to trust: it is ended, and every call waiting fails.
  worker.onerror = (event) => {
    event.preventDefault();
    if (started) failWorker(`crashed (${event.message ?? 'an uncaught error'})`, ErrorCode.WORKER_CRASHED);
    else failWorker(`failed to start (${event.message ?? 'an uncaught error'})`);
  };
  watchStart(worker);
  return worker;
}

function send(message, transfer = []) {
  const id = message.id ?? nextId++;
  // A call after a quiet spell: the worker's silence counts from now.
  if (!callsWaiting()) lastHeard = performance.now();
  return new Promise((resolve, reject) => {
    const call = { type: message.type, resolve, reject };
    pending.set(id, call);
    const target = connection();
    target.ref?.();
    // While the worker starts, a call is copied rather than transferred, and kept.
    if (started || message.type === Request.STATUS) {
      target.postMessage({ ...message, id }, transfer);
    } else {
      call.message = { ...message, id };
      target.postMessage(call.message);
    }
    watch();
  });
}

const badOption = (message) => new ResNetError(ErrorCode.BAD_OPTIONS, message);
function oneOf(name, value, allowed) {
  if (value !== undefined && !allowed.includes(value)) throw badOption(`${name} must be one of ${allowed.join(', ')}, not ${JSON.stringify(value)}`);
  return value;
}

// ---- Loading ----

async function sourceMessage(source) {
  if (source?.shipped) return { shipped: source.shipped };
  if (typeof source === 'string' || source instanceof URL) return { url: new URL(source, base()).href };
  if (typeof Blob !== 'undefined' && source instanceof Blob) return { bytes: new Uint8Array(await source.arrayBuffer()) };
  if (source instanceof ArrayBuffer) return { bytes: new Uint8Array(source.slice(0)) };
  if (source instanceof Uint8Array) return { bytes: source.slice() };
  throw new ResNetError(ErrorCode.BAD_INPUT, 'loadModel takes a URL, a File or Blob, an ArrayBuffer, a Uint8Array or one of shippedModels');
}

/**
 * A model from a weight file (.safetensors, .bpk, or PyTorch's .pth/.pt): a URL, File/Blob,
 * ArrayBuffer, Uint8Array, or one of `shippedModels`. Options: backend ('auto', the default,
 * answers on the CPU at once, then times both devices and runs on the faster), input and classNames
 * (inferred where the file tells: 1,000 classes on colour are ImageNet's).
 */
export async function loadModel(source, options = {}) {
  const backend = oneOf('backend', options.backend ?? 'auto', BACKENDS);
  const input = oneOf('input', options.input, INPUTS);
  if (options.classNames !== undefined && !Array.isArray(options.classNames)) throw badOption('classNames must be an array of strings');
  const message = { type: Request.LOAD, source: await sourceMessage(source), backend, input, classNames: options.classNames?.map(String) };
  const id = nextId++;
  const model = new Model(id);
  listeners.set(id, (event) => model._event(event));
  try {
    model._loaded(await send({ ...message, id }, message.source.bytes ? [message.source.bytes.buffer] : []));
  } catch (error) {
    listeners.delete(id);
    throw error;
  }
  return model;
}

/** What a weight file holds, from its tensor names and shapes: {arch, numClasses, inChannels}. */
export async function describeWeights(source) {
  const message = await sourceMessage(source);
  if (message.shipped) throw new ResNetError(ErrorCode.BAD_INPUT, 'describeWeights takes a file, bytes or a URL');
  return send({ type: Request.DESCRIBE, source: message }, message.bytes ? [message.bytes.buffer] : []);
}

// ---- The CPU's threads ----

/**
 * The CPU's threads: {threads (a prediction's now), available (the pool's size: 1 on a page
 * that is not cross-origin isolated), reason (why there is one thread, or null), module (the
 * wasm module that runs the CPU: pkg, pkg-fma, pkg-threads or pkg-threads-fma), fma (whether
 * its kernels use relaxed SIMD's fused multiply-add, which the browser then has)}.
 */
export async function cpuThreads() {
  return send({ type: Request.THREADS });
}

/**
 * How many of the pool's threads a CPU prediction uses from now on (at most `available`);
 * a count set here is kept, not replaced by the one 'auto' measures fastest.
 */
export async function setCpuThreads(threads) {
  if (!Number.isInteger(threads) || threads < 1) throw badOption(`threads must be a whole number from 1, not ${JSON.stringify(threads)}`);
  return send({ type: Request.THREADS, threads });
}

/**
 * What the library's worker holds now: for each wasm module it loaded, {module: bytes},
 * heapBytes (what its code holds: over a session that disposes what it makes, this stays
 * flat) and wasmBytes (its memory's size, which only grows; freed bytes are reused);
 * gpuPoolBytes, what the GPU memory pool holds on WebGPU; and how many models, learners and
 * runs are alive.
 */
export async function memory() {
  const { heapBytes, heapPeakBytes, wasmBytes, gpuPoolBytes, models, learners, runs } = await send({ type: Request.STATUS });
  return { heapBytes, heapPeakBytes, wasmBytes, gpuPoolBytes, models, learners, runs };
}

// ---- Pictures ----

// RGBA pixels of anything a canvas can draw, of ImageData-like {data, width, height}, or of
// a PNG or JPEG file (bytes, a Blob, a URL or a path): where there is no canvas (Deno,
// Node.js) the worker decodes files.
async function pixels(image) {
  const file = await encodedImage(image);
  if (file) {
    if (hasCanvas2d()) {
      const bitmap = await createImageBitmap(new Blob([file])).catch(() => {
        throw new ResNetError(ErrorCode.BAD_INPUT, 'not an image this browser decodes');
      });
      try {
        return await pixels(bitmap);
      } finally {
        bitmap.close();
      }
    }
    return send({ type: Request.DECODE, bytes: file }, [file.buffer]);
  }
  if (image && typeof image === 'object' && 'data' in image && 'width' in image && 'height' in image) {
    const { data, width, height } = image;
    if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
      throw new ResNetError(ErrorCode.BAD_INPUT, `an image needs a positive whole width and height, not ${width} x ${height}`);
    }
    if (!(data instanceof Uint8ClampedArray || data instanceof Uint8Array) || data.length !== width * height * 4) {
      throw new ResNetError(ErrorCode.BAD_INPUT, `an image of ${width} x ${height} needs ${width * height * 4} RGBA bytes, not ${data?.length ?? 'none'}`);
    }
    if (Math.max(width, height) > MAX_DATA_SIDE) {
      throw new ResNetError(ErrorCode.BAD_INPUT, `the image is ${width}x${height} pixels, more than ${MAX_DATA_SIDE} on a side: scale it down first`);
    }
    // Larger pixels are scaled down like any picture, from a canvas that holds them; where
    // none can be drawn (Deno, Node.js), the worker scales them as it prepares them.
    if (Math.max(width, height) <= MAX_SIDE || !hasCanvas2d()) return { rgba: new Uint8Array(data), width, height };
    const held = new OffscreenCanvas(width, height);
    held.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(data.buffer, data.byteOffset, data.length), width, height), 0, 0);
    return pixels(held);
  }
  const size = drawableSize(image);
  if (!size) throw new ResNetError(ErrorCode.BAD_INPUT, 'classify takes an <img>, <canvas>, <video>, OffscreenCanvas, ImageBitmap, ImageData, {data, width, height}, or a PNG or JPEG file (bytes, a Blob, a URL or a path)');
  const isImage = typeof HTMLImageElement !== 'undefined' && image instanceof HTMLImageElement;
  if (isImage && !image.complete) await image.decode().catch(() => {});
  const { width, height } = drawableSize(image);
  if (!width || !height) throw new ResNetError(ErrorCode.BAD_INPUT, 'the image has no pixels yet (not loaded, or a video without a frame)');
  // A 2D canvas is read as it is, as the page's own canvases always were.
  const isCanvas = (typeof HTMLCanvasElement !== 'undefined' && image instanceof HTMLCanvasElement)
    || (typeof OffscreenCanvas !== 'undefined' && image instanceof OffscreenCanvas);
  const context2d = isCanvas && Math.max(width, height) <= MAX_SIDE ? image.getContext('2d', { willReadFrequently: true }) : null;
  if (context2d) return { rgba: new Uint8Array(context2d.getImageData(0, 0, width, height).data.buffer), width, height };
  const scale = Math.min(1, MAX_SIDE / Math.max(width, height));
  const canvas = new OffscreenCanvas(Math.max(1, Math.round(width * scale)), Math.max(1, Math.round(height * scale)));
  const context = canvas.getContext('2d', { willReadFrequently: true });
  // White under transparency: drawings and icons have a white ground.
  context.fillStyle = '#fff';
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.drawImage(image, 0, 0, canvas.width, canvas.height);
  const { data } = context.getImageData(0, 0, canvas.width, canvas.height);
  return { rgba: new Uint8Array(data.buffer), width: canvas.width, height: canvas.height };
}

// Whether pictures can be drawn here: Deno has OffscreenCanvas and createImageBitmap, but no
// 2D context to draw with.
let canvas2d = null;
const hasCanvas2d = () => (canvas2d ??= typeof OffscreenCanvas !== 'undefined' && typeof createImageBitmap !== 'undefined'
  && new OffscreenCanvas(1, 1).getContext('2d') !== null);

// The bytes of an image given as a file: a Uint8Array or ArrayBuffer, a Blob, a URL, or a
// path (relative paths are the page's, or the working directory's outside a page); null
// for anything else.
async function encodedImage(image) {
  if (image instanceof Uint8Array) return image.slice();
  if (image instanceof ArrayBuffer) return new Uint8Array(image.slice(0));
  if (typeof Blob !== 'undefined' && image instanceof Blob) return new Uint8Array(await image.arrayBuffer());
  if (typeof image === 'string' || image instanceof URL) return fetchBytes(new URL(image, base()).href);
  return null;
}

function drawableSize(image) {
  if (typeof HTMLImageElement !== 'undefined' && image instanceof HTMLImageElement) return { width: image.naturalWidth, height: image.naturalHeight };
  if (typeof HTMLVideoElement !== 'undefined' && image instanceof HTMLVideoElement) return { width: image.videoWidth, height: image.videoHeight };
  if ((typeof HTMLCanvasElement !== 'undefined' && image instanceof HTMLCanvasElement)
    || (typeof OffscreenCanvas !== 'undefined' && image instanceof OffscreenCanvas)
    || (typeof ImageBitmap !== 'undefined' && image instanceof ImageBitmap)) return { width: image.width, height: image.height };
  return null;
}

// ---- Models ----

export class Model {
  constructor(id) {
    this._id = id;
    this._handlers = new Map(); // event name -> Set of handlers
    this._disposed = false;
    this._worker = workersLost; // the worker it lives in (lostWith)
  }

  _loaded(info) {
    this.backend = info.backend;
    this.classNames = Object.freeze([...info.classNames]);
    this.input = info.input;
    this.numClasses = info.numClasses;
    this.notice = info.notice;
    this.measuring = Boolean(info.measuring);
    this.timings = undefined;
    this.trainingSummary = info.summary;
  }

  _event(event) {
    if (event.type !== Event.BACKEND) return;
    this.backend = event.backend;
    this.measuring = false;
    if (event.timings) this.timings = event.timings;
    for (const handler of this._handlers.get('backend') ?? []) handler({ backend: event.backend, notice: event.notice, timings: event.timings });
  }

  /**
   * on('backend', ({backend, notice, timings}) => ...): 'auto' measured both devices
   * (timings: milliseconds a prediction takes, {cpu, webgpu}, and webgpuDifference, how far
   * WebGPU's probabilities were from the CPU's) and the model runs on the faster, or WebGPU
   * failed or answered otherwise than the CPU (by over 1e-3) and it runs on the CPU (notice
   * says why).
   */
  on(name, handler) {
    if (name !== 'backend') throw badOption(`a model has only 'backend' events, not '${name}'`);
    if (!this._handlers.has(name)) this._handlers.set(name, new Set());
    this._handlers.get(name).add(handler);
    return () => this._handlers.get(name).delete(handler);
  }

  _check() {
    if (this._disposed) throw new ResNetError(ErrorCode.DISPOSED, 'this model was disposed: load it again');
    lostWith(this._worker, 'this model');
  }

  /**
   * The topK most likely classes of an image, best first: [{label, probability}]. With
   * heatMap, the list has `heatMap` ({values, size}: where the model looked for the top
   * class); with modelInput, `modelInput` ({values, channels, size}: exactly what it read).
   * It always has `probabilities` (every class) and `milliseconds`.
   */
  async classify(image, { topK = 5, heatMap = false, modelInput = false } = {}) {
    this._check();
    if (!Number.isInteger(topK) || topK < 1) throw badOption(`topK must be a whole number above 0, not ${topK}`);
    const { rgba, width, height } = await pixels(image);
    const result = await send({ type: Request.CLASSIFY, model: this._id, rgba: rgba.buffer, width, height, heatMap, modelInput }, [rgba.buffer]);
    const predictions = Array.from(result.probabilities, (probability, index) => ({ label: this.classNames[index] ?? `class ${index}`, probability, index }))
      .sort((a, b) => b.probability - a.probability)
      .slice(0, topK);
    predictions.probabilities = result.probabilities;
    predictions.milliseconds = result.milliseconds;
    if (result.heatMap) predictions.heatMap = { values: result.heatMap, size: result.heatMapSize };
    if (result.modelInput) {
      const channels = this.input === 'imagenet' || this.input.startsWith('rgb') ? 3 : 1;
      predictions.modelInput = { values: result.modelInput, channels, size: Math.round(Math.sqrt(result.modelInput.length / channels)) };
    }
    return predictions;
  }

  /** The model's weights as a file: 'safetensors' (torchvision's names, for PyTorch) or 'burnpack'. */
  async export(format = 'safetensors') {
    this._check();
    oneOf('format', format, EXPORT_FORMATS);
    return send({ type: Request.EXPORT, model: this._id, format });
  }

  /** Trains this model further on `data` (see train); options.fineTune: 'all' (default) or 'head'. */
  fineTune(data, options = {}) {
    this._check();
    return startRun(data, options, this._id);
  }

  /**
   * Transfer learning, Teachable Machine's way: a learner embeds each picture once with this
   * model's backbone and trains new classifiers on the kept embeddings in milliseconds.
   */
  transferLearner() {
    this._check();
    return new TransferLearner(this._id, this._worker);
  }

  /** Frees the model in the worker; calls made before are still answered. */
  dispose() {
    if (this._disposed) return;
    this._disposed = true;
    listeners.delete(this._id);
    // A model lost with its worker has nothing left to free.
    if (this._worker === workersLost) send({ type: Request.DISPOSE, model: this._id }).catch(() => {});
  }
}

// ---- Transfer learning ----

export class TransferLearner {
  constructor(modelId, modelWorker) {
    this._id = nextId++;
    this._model = modelId;
    this._disposed = false;
    this._worker = modelWorker;
  }

  _check() {
    if (this._disposed) throw new ResNetError(ErrorCode.DISPOSED, 'this learner was disposed: make a new one');
    lostWith(this._worker, 'this learner');
  }

  /** Embeds a picture (the backbone runs once, now) and keeps it; resolves to its id. */
  async add(image) {
    this._check();
    const { rgba, width, height } = await pixels(image);
    const { example } = await send({ type: Request.EMBED, learner: this._id, model: this._model, rgba: rgba.buffer, width, height }, [rgba.buffer]);
    return example;
  }

  /** Forgets a picture added before. */
  remove(id) {
    this._check();
    send({ type: Request.FORGET, learner: this._id, example: id }).catch(() => {});
  }

  /**
   * A new model: the backbone with a classifier for `classNames`, trained on the kept
   * embeddings of `examples` ([{id, label}], label an index into classNames). Options:
   * epochs, learningRate, weightDecay, validationFraction, seed, backend. Its
   * trainingSummary has the validation figures.
   */
  async train({ classNames, examples }, options = {}) {
    this._check();
    if (!Array.isArray(classNames) || !Array.isArray(examples)) throw new ResNetError(ErrorCode.BAD_INPUT, 'train takes {classNames, examples: [{id, label}]}');
    if (options.backend !== undefined) oneOf('backend', options.backend, BACKENDS);
    const id = nextId++;
    const model = new Model(id);
    listeners.set(id, (event) => model._event(event));
    try {
      model._loaded(await send({
        type: Request.TRAIN_HEAD, id, learner: this._id, classNames: classNames.map(String),
        examples: examples.map(({ id: example, label }) => ({ example, label })), options: { backend: 'auto', ...options },
      }));
    } catch (error) {
      listeners.delete(id);
      throw error;
    }
    return model;
  }

  /** Forgets every picture; the model it was made from is freed once both are disposed. */
  dispose() {
    if (this._disposed) return;
    this._disposed = true;
    if (this._worker === workersLost) send({ type: Request.FORGET, learner: this._id }).catch(() => {});
  }
}

// ---- Training ----

/**
 * Trains a new ResNet on `data`: {classNames, examples: [{image, label}]} (your pictures,
 * label an index into classNames), {idx: {trainImages, trainLabels, testImages?,
 * testLabels?}, classNames} (URLs or bytes of IDX files) or {mnistJson: [ten URLs or bytes],
 * heldOutPerClass?}. Options: arch ('resnet8', 'resnet20', ... or a plain twin without
 * shortcuts: 'plain8', 'plain20', ...), input (for pictures), epochs, batchSize, learningRate,
 * weightDecay, optimizer, schedule, augment, validationFraction, seed, backend, subset,
 * testSubset, gradientEvery, memoryLimit (bytes a run may need: it is measured before the
 * run starts, which is refused past it). Returns a Run at once.
 */
export function train(data, options = {}) {
  return startRun(data, options, undefined);
}

export class Run {
  constructor(id) {
    this._id = id;
    this._handlers = new Map();
    // Control messages go after the run's request, which waits for its pictures' pixels.
    this._sent = new Promise((resolve) => { this._markSent = resolve; });
  }

  /**
   * on('start' | 'step' | 'estimate' | 'epoch' | 'notice' | 'gradients', handler); returns a
   * function that removes it. 'estimate' comes after the first step: {secondsPerStep,
   * totalSteps, seconds, backend, waiting}; with options.estimateFirst the run then waits for
   * resume() (or stop()). 'gradients' comes every options.gradientEvery steps (10 when a
   * handler is added as the run starts), the first step included: {step, layers: [{name,
   * depth, gradNorm, weightNorm}]}, each weight layer in depth order.
   */
  on(name, handler) {
    if (!RUN_EVENT_NAMES.includes(name)) throw badOption(`a run has ${RUN_EVENT_NAMES.join(', ')} events, not '${name}'`);
    if (!this._handlers.has(name)) this._handlers.set(name, new Set());
    this._handlers.get(name).add(handler);
    return () => this._handlers.get(name).delete(handler);
  }

  _emit(name, event) {
    for (const handler of this._handlers.get(name) ?? []) handler(event);
  }

  pause() { this._control('pause'); }
  resume() { this._control('resume'); }
  /** Ends the run after the current step; `result` is the model as trained so far. */
  stop() { this._control('stop'); }
  _control(action) {
    this._sent.then(() => postControl({ type: Request.CONTROL, run: this._id, action }));
  }
}

const RUN_EVENTS = {
  [Event.RUN_START]: 'start', [Event.RUN_STEP]: 'step', [Event.RUN_ESTIMATE]: 'estimate', [Event.RUN_EPOCH]: 'epoch', [Event.RUN_NOTICE]: 'notice',
  [Event.RUN_GRADIENTS]: 'gradients',
};
const RUN_EVENT_NAMES = Object.values(RUN_EVENTS);
const DEFAULT_GRADIENT_EVERY = 10;

// The most memory a run may need, by default: 1 GiB on a phone or tablet (iOS ends a tab at
// about 1.5 GB, GPU memory included), else 3.5 GiB (wasm32's memory ends at 4 GiB, and a run
// that reaches it aborts the module, losing what it trained). The GPU's memory is bounded by
// it where the GPU shares the tab's memory (a phone or tablet) or the caller set a limit; a
// computer's GPU has memory of its own, which wasm32's bound says nothing of.
const GIB = 1024 ** 3;
const touchOnly = () => (globalThis.navigator?.maxTouchPoints ?? 0) > 0 && Boolean(globalThis.matchMedia?.('(pointer: coarse)').matches);
function memoryLimits(memoryLimit) {
  if (memoryLimit !== undefined) return { memoryLimit, gpuMemoryLimit: memoryLimit };
  return touchOnly() ? { memoryLimit: GIB, gpuMemoryLimit: GIB } : { memoryLimit: 3.5 * GIB };
}

function startRun(data, options, base) {
  if (options.backend !== undefined) oneOf('backend', options.backend, BACKENDS);
  if (options.memoryLimit !== undefined && !(options.memoryLimit > 0)) throw badOption(`memoryLimit is a number of bytes, not ${JSON.stringify(options.memoryLimit)}`);
  if (options.input !== undefined) oneOf('input', options.input, INPUTS);
  const run = new Run(nextId++);
  listeners.set(run._id, (event) => {
    const { type, run: _, ...fields } = event;
    run._emit(RUN_EVENTS[type], fields);
  });
  run.result = (async () => {
    const id = nextId++;
    const model = new Model(id);
    try {
      const { message, transfer } = await trainMessage(data);
      listeners.set(id, (event) => model._event(event));
      // Gradient norms cost a little: measured only for a run someone listens to (handlers
      // added right after train() returns are in by now).
      const gradientEvery = options.gradientEvery ?? (run._handlers.get('gradients')?.size ? DEFAULT_GRADIENT_EVERY : 0);
      const trained = send({ type: Request.TRAIN, id, run: run._id, data: message, options: { backend: 'auto', ...options, gradientEvery, ...memoryLimits(options.memoryLimit) }, base }, transfer);
      run._markSent();
      model._loaded(await trained);
    } catch (error) {
      listeners.delete(id);
      throw error;
    } finally {
      listeners.delete(run._id);
    }
    return model;
  })();
  return run;
}

async function trainMessage(data) {
  if (!data || typeof data !== 'object') throw new ResNetError(ErrorCode.BAD_INPUT, 'training data must be an object (see train)');
  if (data.idx || data.mnistJson) {
    const urls = (sources) => sources.map((source) => (source instanceof Uint8Array || source === undefined ? source : new URL(source, base()).href));
    if (data.idx) {
      const { trainImages, trainLabels, testImages, testLabels } = data.idx;
      const [a, b, c, d] = urls([trainImages, trainLabels, testImages, testLabels]);
      const input = oneOf('data.input', data.input ?? 'fashion', INPUTS);
      return { message: { idx: { trainImages: a, trainLabels: b, testImages: c, testLabels: d }, classNames: data.classNames, input }, transfer: [] };
    }
    return { message: { mnistJson: urls(data.mnistJson), heldOutPerClass: data.heldOutPerClass, input: 'digit' }, transfer: [] };
  }
  const { classNames, examples } = data;
  if (!Array.isArray(classNames) || !Array.isArray(examples)) throw new ResNetError(ErrorCode.BAD_INPUT, 'training pictures come as {classNames, examples: [{image, label}]}');
  const prepared = [];
  for (const { image, label } of examples) {
    const index = typeof label === 'string' ? classNames.indexOf(label) : label;
    if (!Number.isInteger(index) || index < 0 || index >= classNames.length) {
      throw new ResNetError(ErrorCode.BAD_INPUT, `label ${JSON.stringify(label)} is not one of the ${classNames.length} classes`);
    }
    prepared.push({ ...(await pixels(image)), label: index });
  }
  for (const example of prepared) example.rgba = example.rgba.buffer;
  return { message: { classNames: classNames.map(String), examples: prepared }, transfer: prepared.map((e) => e.rgba) };
}
