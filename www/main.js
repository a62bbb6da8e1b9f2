// The page: draws inputs, posts their pixels to the worker, shows what comes back.
import { initTrainingPanel } from './training.js';

const $ = (id) => document.getElementById(id);
const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });

// The shipped models and their data sets, from the file the Rust crate reads too.
const CATALOG_URL = new URL('../models/models.json', import.meta.url);
const catalog = await (await fetch(CATALOG_URL)).json();
const shipped = ({ file, input, dataset }) => ({ url: new URL(file, CATALOG_URL).href, input, classNames: catalog.datasets[dataset].classNames });
const BUILT_IN = {
  digits: shipped(catalog.models.digits),
  fashion: shipped(catalog.models.fashion),
  trained: { saved: true },
};

let nextId = 1;
const pending = new Map();

function request(message, transfer = []) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    worker.postMessage({ ...message, id }, transfer);
  });
}
// Messages that need no answer (pause, resume, stop).
request.post = (message) => worker.postMessage(message);

// Training reports come without an id: they go to the training panel.
let trainingEvents = () => {};
worker.onmessage = ({ data }) => {
  if (data.type.startsWith('train-')) {
    trainingEvents(data);
    return;
  }
  if (data.type === 'backend') {
    showBackend(data.backend, data.notice);
    return;
  }
  const waiting = pending.get(data.id);
  if (!waiting) return;
  pending.delete(data.id);
  if (data.type === 'error') waiting.reject(new Error(data.message));
  else waiting.resolve(data);
};
worker.onerror = (event) => showNotice(`The model worker failed: ${event.message}`, true);

function showNotice(message, isError = false) {
  $('notice').textContent = message;
  $('notice').className = isError ? 'error' : '';
}

let model = null; // { classNames, input }

async function loadModel(load) {
  showNotice('Loading the model…');
  const loaded = await request({ type: 'load', backend: $('backend-choice').value, ...load });
  model = { classNames: loaded.classNames, input: loaded.input };
  $('backend').textContent = loaded.movingToWebgpu ? `${loaded.backend}, until WebGPU is ready` : loaded.backend;
  if (loaded.backend.startsWith('CPU') && !loaded.movingToWebgpu) $('backend-choice').value = 'cpu';
  showNotice(loaded.notice ?? 'Ready: draw, drop an image, or start the webcam.', Boolean(loaded.notice));
  modelChanged();
}

// The worker's move to WebGPU after a load, or why it stayed on the CPU.
function showBackend(backend, notice) {
  $('backend').textContent = backend;
  if (notice) {
    showNotice(notice, true);
    $('backend-choice').value = 'cpu';
  }
}

// Classification requests by source ('drawing', 'image', 'webcam'). While a prediction runs,
// the newest request of each source waits, replacing an older one of the same source (never
// a growing queue), and the sources take turns in the order they first asked. The pixels
// are read when a request runs, so a waiting drawing is classified as it is by then.
const waitingBySource = new Map(); // source -> { canvas, label, resolve }
let running = false;
let lastShown = null; // { source, canvas, label, at } of the bars on screen
// A drawing's or an image's bars stay this long before the webcam's replace them.
const HOLD_OVER_WEBCAM_MS = 2000;

// Resolves to whether this request's prediction was made (false: replaced, or failed).
function classifyCanvas(source, canvas, label) {
  return new Promise((resolve) => {
    waitingBySource.get(source)?.resolve(false);
    waitingBySource.set(source, { canvas, label, resolve });
    runNextClassification();
  });
}

function dropWaiting(source) {
  waitingBySource.get(source)?.resolve(false);
  waitingBySource.delete(source);
  showBusy();
}

// aria-busy on the bars: a prediction runs or waits, so they are about to change.
function showBusy() {
  $('predictions').setAttribute('aria-busy', String(running || waitingBySource.size > 0));
}

async function runNextClassification() {
  showBusy();
  if (running || !model) return;
  const next = waitingBySource.entries().next();
  if (next.done) return;
  const [source, job] = next.value;
  waitingBySource.delete(source);
  running = true;
  try {
    job.resolve(await classifyNow(source, job));
  } finally {
    running = false;
    runNextClassification();
  }
}

// A new model (loaded, moved or just trained): the drawing or image on screen again, by it.
function modelChanged() {
  if (lastShown && lastShown.source !== 'webcam') classifyCanvas(lastShown.source, lastShown.canvas, lastShown.label);
  runNextClassification();
}

async function classifyNow(source, { canvas, label }) {
  try {
    const { width, height } = canvas;
    const pixels = canvas.getContext('2d', { willReadFrequently: true }).getImageData(0, 0, width, height);
    const result = await request(
      { type: 'classify', rgba: pixels.data.buffer, width, height, withInput: true, withHeatMap: $('heat-map-toggle').checked },
      [pixels.data.buffer],
    );
    const held = lastShown && lastShown.source !== 'webcam' && performance.now() - lastShown.at < HOLD_OVER_WEBCAM_MS;
    if (source !== 'webcam' || !held) {
      lastShown = { source, canvas, label, at: performance.now() };
      $('prediction-source').textContent = label;
      $('predictions').dataset.source = label;
      showPredictions(result.probabilities);
      showModelInput(result.modelInput);
      showHeatMap(result.heatMap, result.heatMapSize);
      $('latency').textContent = `${result.milliseconds.toFixed(1)} ms per prediction`;
    }
    if (result.notice) {
      showNotice(result.notice, true);
      $('backend').textContent = result.backend;
      $('backend-choice').value = 'cpu';
    }
    return true;
  } catch (error) {
    showNotice(error.message, true);
    return false;
  }
}

function showPredictions(probabilities) {
  const top = Array.from(probabilities, (prob, index) => ({ prob, index }))
    .sort((a, b) => b.prob - a.prob)
    .slice(0, 5);
  $('predictions').replaceChildren(...top.map(({ prob, index }) => {
    const label = model.classNames[index] ?? `class ${index}`;
    const item = document.createElement('li');
    item.dataset.label = label;
    item.dataset.prob = prob.toFixed(6);
    const name = document.createElement('span');
    name.textContent = label; // text, never HTML: names come from files
    const bar = document.createElement('div');
    bar.className = 'bar';
    bar.style.width = `${(prob * 100).toFixed(1)}%`;
    const value = document.createElement('span');
    value.textContent = `${(prob * 100).toFixed(1)}%`;
    item.append(name, bar, value);
    return item;
  }));
}

// The class activation map of the top class, as a transparent red-to-yellow overlay.
function showHeatMap(heatMap, size) {
  const canvas = $('heat-map');
  canvas.hidden = !heatMap;
  if (!heatMap) return;
  canvas.width = canvas.height = size;
  canvas.dataset.size = String(size);
  const context = canvas.getContext('2d');
  const image = context.createImageData(size, size);
  heatMap.forEach((value, i) => {
    image.data.set([255, Math.round(255 * value), 0, Math.round(230 * value)], 4 * i);
  });
  context.putImageData(image, 0, 0);
}

// The model input, [channels, size, size], back to pixels.
function showModelInput(input) {
  if (!input) return;
  const channels = model.input === 'imagenet' || model.input?.startsWith('rgb') ? 3 : 1;
  const size = Math.round(Math.sqrt(input.length / channels));
  const canvas = $('model-input');
  canvas.width = canvas.height = size;
  const context = canvas.getContext('2d');
  const image = context.createImageData(size, size);
  const mean = [0.485, 0.456, 0.406];
  const std = [0.229, 0.224, 0.225];
  for (let i = 0; i < size * size; i++) {
    for (let c = 0; c < 3; c++) {
      const normalised = model.input === 'imagenet';
      const value = channels === 3
        ? input[c * size * size + i] * (normalised ? std[c] : 1) + (normalised ? mean[c] : 0)
        : input[i];
      image.data[4 * i + c] = Math.max(0, Math.min(255, Math.round(value * 255)));
    }
    image.data[4 * i + 3] = 255;
  }
  context.putImageData(image, 0, 0);
}

// Drawing: black ink on white, mouse, touch or pen.
const drawing = $('drawing');
const pen = drawing.getContext('2d', { willReadFrequently: true });
function clearDrawing() {
  pen.fillStyle = '#fff';
  pen.fillRect(0, 0, drawing.width, drawing.height);
}
clearDrawing();
let lastPoint = null;
drawing.addEventListener('pointerdown', (event) => {
  drawing.setPointerCapture(event.pointerId);
  lastPoint = [event.offsetX, event.offsetY];
});
drawing.addEventListener('pointermove', (event) => {
  if (!lastPoint) return;
  pen.strokeStyle = '#000';
  pen.lineWidth = 18;
  pen.lineCap = 'round';
  pen.beginPath();
  pen.moveTo(...lastPoint);
  pen.lineTo(event.offsetX, event.offsetY);
  pen.stroke();
  lastPoint = [event.offsetX, event.offsetY];
  classifyCanvas('drawing', drawing, 'Drawing');
});
const endStroke = () => {
  if (!lastPoint) return;
  lastPoint = null;
  // The whole stroke, whatever ran while it was drawn.
  classifyCanvas('drawing', drawing, 'Drawing');
};
drawing.addEventListener('pointerup', endStroke);
drawing.addEventListener('pointercancel', endStroke);
$('clear-drawing').addEventListener('click', () => {
  clearDrawing();
  dropWaiting('drawing');
  if (lastShown?.source === 'drawing') {
    lastShown = null;
    $('predictions').replaceChildren();
    $('prediction-source').textContent = '';
  }
});

// Images: file picker, drag and drop, paste. Decoding takes its time: an image given while
// an earlier one decodes wins, whichever finishes first.
const imageView = $('image-view');
let newestImage = 0;
async function classifyFile(file) {
  if (!file) return;
  const ticket = ++newestImage;
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    if (ticket === newestImage) showNotice(`${file.name || 'The pasted file'} is not an image this browser can decode.`, true);
    return;
  }
  if (ticket !== newestImage) {
    bitmap.close();
    return;
  }
  // Large photos are scaled down on the way in; the model needs at most 256 pixels.
  const scale = Math.min(1, 1024 / Math.max(bitmap.width, bitmap.height));
  imageView.width = Math.max(1, Math.round(bitmap.width * scale));
  imageView.height = Math.max(1, Math.round(bitmap.height * scale));
  const context = imageView.getContext('2d', { willReadFrequently: true });
  context.fillStyle = '#fff';
  context.fillRect(0, 0, imageView.width, imageView.height);
  context.drawImage(bitmap, 0, 0, imageView.width, imageView.height);
  bitmap.close();
  await classifyCanvas('image', imageView, file.name || 'Pasted image');
}
$('image-input').addEventListener('change', (event) => classifyFile(event.target.files[0]));
const dropZone = $('drop-zone');
dropZone.addEventListener('dragover', (event) => { event.preventDefault(); dropZone.classList.add('over'); });
dropZone.addEventListener('dragleave', () => dropZone.classList.remove('over'));
dropZone.addEventListener('drop', (event) => {
  event.preventDefault();
  dropZone.classList.remove('over');
  classifyFile(event.dataTransfer.files[0]);
});
document.addEventListener('paste', (event) => {
  const item = Array.from(event.clipboardData?.items ?? []).find((i) => i.type.startsWith('image/'));
  if (item) classifyFile(item.getAsFile());
});

// Webcam: asked for only on a click; frames are classified one after another.
const video = $('webcam');
const frame = document.createElement('canvas');
let stream = null;
async function webcamLoop() {
  const started = performance.now();
  let frames = 0;
  while (stream) {
    if (video.readyState >= 2 && video.videoWidth > 0) {
      frame.width = video.videoWidth;
      frame.height = video.videoHeight;
      frame.getContext('2d', { willReadFrequently: true }).drawImage(video, 0, 0);
      if (await classifyCanvas('webcam', frame, 'Webcam')) {
        frames += 1;
        const seconds = (performance.now() - started) / 1000;
        $('fps').textContent = `${(frames / seconds).toFixed(1)} frames/s`;
      }
    }
    await new Promise((resolve) => requestAnimationFrame(resolve));
  }
}
$('webcam-toggle').addEventListener('click', async () => {
  if (stream) {
    stream.getTracks().forEach((track) => track.stop());
    stream = null;
    $('webcam-toggle').textContent = 'Start the webcam';
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true });
  } catch (error) {
    showNotice(`No webcam: ${error.message}`, true);
    return;
  }
  video.srcObject = stream;
  await video.play();
  $('webcam-toggle').textContent = 'Stop the webcam';
  webcamLoop();
});

// Models: the built-in ones, the one trained last, or weights from a file.
let imagenetClasses = null;
let loadedWeights = null;
let lastTrained = null; // {input, classNames} of the model trained here
$('model-choice').addEventListener('change', () => {
  loadedWeights = null;
  loadModel(BUILT_IN[$('model-choice').value]).catch((e) => showNotice(e.message, true));
});
$('backend-choice').addEventListener('change', () => loadModel(currentLoad()).catch((e) => showNotice(e.message, true)));
function currentLoad() {
  return loadedWeights ?? BUILT_IN[$('model-choice').value];
}
$('weights-input').addEventListener('change', async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  try {
    const weights = new Uint8Array(await file.arrayBuffer());
    const described = await request({ type: 'describe', weights });
    if (described.numClasses === 1000 && described.inChannels === 3) {
      imagenetClasses ??= await (await fetch(new URL('./imagenet-classes.json', import.meta.url))).json();
      loadedWeights = { weights, input: 'imagenet', classNames: imagenetClasses };
      await loadModel(loadedWeights);
      showNotice(`Loaded ${file.name}: classifying into the 1,000 ImageNet classes.`);
      return;
    }
    // A model trained here: its classes and input as trained, when they fit the file.
    const fits = lastTrained && lastTrained.classNames.length === described.numClasses
      && (lastTrained.input.startsWith('rgb') ? 3 : 1) === described.inChannels;
    const input = fits ? lastTrained.input : (described.inChannels === 3 ? 'rgb-32' : 'gray-28');
    const classNames = fits ? lastTrained.classNames : [];
    loadedWeights = { weights, input, classNames };
    await loadModel(loadedWeights);
    showNotice(`Loaded ${file.name} (${described.arch}, ${described.numClasses} classes, reading '${input}' input).`);
  } catch (error) {
    loadedWeights = null;
    showNotice(`${file.name}: ${error.message}`, true);
  }
});

// The model trained last (kept in IndexedDB) joins the list.
function offerTrainedModel(trained) {
  lastTrained = trained;
  let option = document.querySelector('#model-choice option[value="trained"]');
  if (!option) {
    option = document.createElement('option');
    option.value = 'trained';
    $('model-choice').append(option);
  }
  option.textContent = `Trained here: ${trained.classNames.slice(0, 4).join(', ')}${trained.classNames.length > 4 ? '…' : ''}`;
}
request({ type: 'saved-model' })
  .then(({ model: saved }) => saved && offerTrainedModel(saved))
  .catch((error) => console.warn('no saved model:', error.message));

initTrainingPanel({
  request,
  listen: (handler) => { trainingEvents = handler; },
  showTrained: (trained) => {
    offerTrainedModel(trained);
    $('model-choice').value = 'trained';
    loadedWeights = null;
    model = { classNames: trained.classNames, input: trained.input };
    $('backend').textContent = trained.backend;
    showNotice('The model just trained now classifies the drawing, images and the webcam.');
    modelChanged();
  },
  currentInput: () => model?.input,
  drawing: $('drawing'),
  video: $('webcam'),
  webcamOn: () => Boolean(stream),
});

loadModel(BUILT_IN.digits).catch((error) => showNotice(error.message, true));
