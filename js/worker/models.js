// The models: loading one from a weight file, choosing its device, classifying with it, and
// setting the CPU's threads under them. Training (training.js) and transfer learning
// (transfer.js) add models here.
import { ErrorCode, Event, ResNetError } from '../protocol.js';
import { endWorkerAfterTrap, fetchBytes, post } from './io.js';
import {
  WEBGPU_LOST, backendText, browserHasWebgpu, chooseThreads, markWebgpuLost, threadsInfo, wasm, webgpuDevice,
} from './modules.js';

// model id -> {classifier, weights, input, classNames, generation, lastClassified, queue,
// holders (learners that embed with it), disposed}
export const models = new Map();

let catalog = null; // models/models.json: the shipped models and their data sets
async function shippedModel(name) {
  const url = new URL('../../models/models.json', import.meta.url);
  catalog ??= fetchBytes(url).then((bytes) => JSON.parse(new TextDecoder().decode(bytes)));
  const { models: shipped, datasets } = await catalog;
  const entry = shipped[name];
  if (!entry) throw new ResNetError(ErrorCode.BAD_OPTIONS, `no shipped model '${name}': use one of ${Object.keys(shipped).join(', ')}`);
  return { url: new URL(entry.file, url).href, input: entry.input, classNames: datasets[entry.dataset].classNames };
}

let imagenetClasses = null;
function imagenetClassNames() {
  imagenetClasses ??= fetchBytes(new URL('../imagenet-classes.json', import.meta.url))
    .then((bytes) => JSON.parse(new TextDecoder().decode(bytes)));
  return imagenetClasses;
}

// How a file's model reads pixels, where the caller did not say: ImageNet's transform and
// names for 1,000 classes on colour, else the small inputs by channel count.
async function inferInput(weights, input, classNames) {
  const described = wasm.cpu.describeWeights(weights);
  const imagenet = described.numClasses === 1000 && described.inChannels === 3;
  const inferred = imagenet ? 'imagenet' : (described.inChannels === 3 ? 'rgb-32' : 'gray-28');
  return {
    input: input ?? inferred,
    classNames: classNames ?? (imagenet && (input ?? 'imagenet') === 'imagenet' ? await imagenetClassNames() : []),
    described,
  };
}

export async function load({ id, source, backend = 'auto', input, classNames }) {
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
  await wasm.ready;
  const read = await inferInput(weights, input, classNames);
  return addModel(id, weights, backend, read.input, read.classNames, read.described);
}

// A model on the CPU at once; with 'auto' it then times a prediction on WebGPU against one
// on the CPU (once WebGPU has compiled its kernels: seconds on a slow GPU, and the first
// prediction should not wait) and moves only if WebGPU answers as the CPU does and faster.
// With 'webgpu' the load waits for WebGPU, and fails if its answer is not the CPU's.
export async function addModel(id, weights, backend, input, classNames, described) {
  const onCpu = await wasm.cpu.Classifier.forImages(weights, 'cpu', input, classNames);
  const model = { classifier: onCpu, weights, input, classNames: onCpu.classNames, generation: 0, lastClassified: performance.now(), queue: Promise.resolve() };
  models.set(id, model);
  let notice;
  if (backend === 'webgpu') {
    try {
      if (wasm.webgpuLost) throw new ResNetError(ErrorCode.UNSUPPORTED, WEBGPU_LOST);
      const gpu = await warmedUp(model);
      const difference = await answerDifference(gpu, onCpu, input);
      if (!agrees(difference)) {
        gpu.free();
        throw new ResNetError(ErrorCode.BACKEND_FAILED, `${disagreement(difference)}. Load the model with backend 'cpu' or 'auto'.`);
      }
      model.classifier = gpu;
    } catch (error) {
      models.delete(id);
      throw error;
    } finally {
      onCpu.free();
    }
  } else if (backend === 'auto') {
    if (wasm.webgpuLost) notice = WEBGPU_LOST;
    else chooseDevice(id, model, model.generation);
  }
  return { model: id, ...modelInfo(model), ...described, notice, measuring: backend === 'auto' && !wasm.webgpuLost };
}

async function warmedUp(model) {
  // The folded model as loaded, not the weight file parsed a second time, where the CPU's
  // module is WebGPU's too.
  const module = await webgpuDevice();
  const gpu = wasm.cpu === module
    ? await model.classifier.onBackend('webgpu')
    : await module.Classifier.forImages(model.weights, 'webgpu', model.input, model.classNames);
  const side = 32;
  try {
    (await gpu.classifyWithHeatMap(new Uint8Array(side * side * 4), side, side)).free();
  } catch (error) {
    gpu.free();
    throw error;
  }
  return gpu;
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const INPUT_SIDES = { digit: 28, fashion: 28, imagenet: 224 };
const inputSide = (input) => INPUT_SIDES[input] ?? Number(input.split('-')[1]);

// WebGPU is used only where it answers as the CPU does: a GPU kernel wrong on some GPU (a
// missing barrier, a race in workgroup memory) shows on none of the CPU adapters the tests
// run on. The largest difference allowed between their probabilities for one picture, and
// (training.js) between their first training step's losses, relative.
export const AGREEMENT = 1e-3;
export const agrees = (difference) => difference <= AGREEMENT; // NaN does not
export const disagreement = (difference, what = 'answer') =>
  `WebGPU's ${what} differs from the CPU's by ${difference.toPrecision(2)} (more than ${AGREEMENT}): this GPU or its driver computes this model wrong`;

// A picture whose pixels all differ, of the model's input size: a blank one would leave
// much of the network at its biases.
function checkPicture(side) {
  const rgba = new Uint8Array(side * side * 4);
  for (let i = 0; i < rgba.length; i++) rgba[i] = i % 4 === 3 ? 255 : (i * 37 + (i >> 9) * 101) & 255;
  return rgba;
}

// The largest difference between two classifiers' probabilities for the check picture; NaN
// where either gives NaN.
async function answerDifference(gpu, cpu, input) {
  const side = inputSide(input);
  const picture = checkPicture(side);
  const onGpu = await gpu.classifyPixels(picture, side, side);
  const onCpu = await cpu.classifyPixels(picture, side, side);
  let largest = 0;
  for (let i = 0; i < onCpu.length; i++) {
    const difference = Math.abs(onGpu[i] - onCpu[i]);
    if (Number.isNaN(difference)) return NaN;
    largest = Math.max(largest, difference);
  }
  return largest;
}

// Milliseconds a warm prediction takes, the median of three, on a picture of the model's
// own input size.
async function predictionMs(classifier, input) {
  const side = inputSide(input);
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
    if (!browserHasWebgpu()) {
      // Nothing failed: there is nothing to try. The CPU's time, and why WebGPU was not.
      post({ type: Event.BACKEND, model: id, backend: backendText(model.classifier.backend), timings: { ...cpuTimings, webgpuMissing: true } });
      return;
    }
    gpu = await warmedUp(model);
    if (!current()) return gpu.free();
    const webgpuDifference = await answerDifference(gpu, model.classifier, model.input);
    if (!current()) return gpu.free();
    if (!agrees(webgpuDifference)) {
      gpu.free();
      post({ type: Event.BACKEND, model: id, backend: backendText(model.classifier.backend), timings: { ...cpuTimings, webgpuDifference }, notice: `${disagreement(webgpuDifference)}; running on the CPU.` });
      return;
    }
    const timings = { ...cpuTimings, webgpu: await predictionMs(gpu, model.input), webgpuDifference };
    if (!current()) return gpu.free();
    if (timings.webgpu < timings.cpu) {
      // Safe to free while a prediction runs on it: the Rust side holds its own reference.
      const onCpu = model.classifier;
      model.classifier = gpu;
      onCpu.free();
    } else {
      gpu.free();
    }
    post({ type: Event.BACKEND, model: id, backend: backendText(model.classifier.backend), timings });
  } catch (error) {
    // The module aborted, and no call is waiting to say so.
    if (error instanceof WebAssembly.RuntimeError) {
      endWorkerAfterTrap(error);
      return;
    }
    if (gpu && model.classifier !== gpu) gpu.free();
    if (current()) post({ type: Event.BACKEND, model: id, backend: backendText(model.classifier.backend), notice: `WebGPU failed (${error.message}); running on the CPU.` });
  }
}

// The CPU's prediction time at each thread count, 1 to the pool's size; unless the caller
// chose a count, the fastest is kept (not simply every core: on a small model, handing out
// the work can cost more than it saves). {cpu: ms at the count kept, cpuThreads: {count: ms}}.
async function fastestThreadCount(model) {
  const { available } = threadsInfo();
  if (available === 1 || wasm.threadsChosen) return { cpu: await predictionMs(model.classifier, model.input) };
  const byCount = {};
  for (let threads = 1; threads <= available && !wasm.threadsChosen; threads++) {
    wasm.cpu.setCpuThreads(threads);
    byCount[threads] = await predictionMs(model.classifier, model.input);
  }
  // A count the caller chose meanwhile stands: the last call wins.
  if (wasm.threadsChosen) {
    wasm.cpu.setCpuThreads(wasm.chosenThreads);
    return { cpu: await predictionMs(model.classifier, model.input) };
  }
  const fastest = Number(Object.keys(byCount).reduce((a, b) => (byCount[b] < byCount[a] ? b : a)));
  wasm.cpu.setCpuThreads(fastest);
  return { cpu: byCount[fastest], cpuThreads: byCount };
}

export const modelInfo = (model) => ({ backend: backendText(model.classifier.backend), input: model.input, classNames: model.classNames, numClasses: model.classifier.numClasses });

export function modelFor(id) {
  const model = models.get(id);
  if (!model) throw new ResNetError(ErrorCode.DISPOSED, 'this model was disposed: load it again');
  return model;
}

export async function classify({ model: id, rgba: buffer, width, height, heatMap, modelInput }) {
  const model = modelFor(id);
  const started = performance.now();
  const rgba = new Uint8Array(buffer);
  const run = async () => {
    if (!heatMap) return { probabilities: await model.classifier.classifyPixels(rgba, width, height) };
    const prediction = await model.classifier.classifyWithHeatMap(rgba, width, height);
    try {
      return { probabilities: prediction.probabilities, heatMap: prediction.heatMap, heatMapSize: prediction.heatMapSize };
    } finally {
      prediction.free();
    }
  };
  let output;
  try {
    output = await run();
  } catch (error) {
    // A failed WebGPU: carry on on the CPU. Bad input is reported as it is.
    if (error.code !== ErrorCode.BACKEND_FAILED || !model.classifier.backend.startsWith('WebGPU')) throw error;
    markWebgpuLost();
    model.generation++;
    const failed = model.classifier;
    model.classifier = await wasm.cpu.Classifier.forImages(model.weights, 'cpu', model.input, model.classNames);
    failed.free();
    post({ type: Event.BACKEND, model: id, backend: backendText(model.classifier.backend), notice: `WebGPU failed during classification (${error.message}); switched to the CPU.` });
    output = await run();
  }
  return {
    ...output,
    milliseconds: performance.now() - started,
    modelInput: modelInput ? model.classifier.modelInput(rgba, width, height) : undefined,
  };
}

// Sets the CPU's thread count; models on the CPU then say the new count.
export function setThreads({ threads }) {
  const info = chooseThreads(threads);
  for (const [id, model] of models) {
    if (model.classifier.backend.startsWith('CPU')) post({ type: Event.BACKEND, model: id, backend: backendText(model.classifier.backend) });
  }
  return info;
}

// A model is freed once no learner holds it (transfer.js).
export function dispose(id) {
  const model = models.get(id);
  models.delete(id);
  if (model && model.holders > 0) model.disposed = true;
  else model?.classifier.free();
  return null;
}

// One model's requests run one after another, in the order they came; different models,
// training and loads do not wait for each other.
export function inOrder(message, work) {
  const model = models.get(message.model);
  if (!model) return work();
  const result = model.queue.then(work, work);
  model.queue = result.catch(() => {});
  return result;
}
