// The page: draws inputs, hands them to the library, shows what comes back. It uses only
// resnet-web's public API (js/resnet-web.js), as any other page would.
import { ErrorCode, cpuThreads, describeWeights, loadModel, setCpuThreads, shippedModels } from '../js/resnet-web.js';
import { describeTimings } from './format.js';
import { savedModel, saveModel } from './saved-model.js';
import { initComparePanel } from './compare.js';
import { initTrainingPanel } from './training.js';

const $ = (id) => document.getElementById(id);

function showNotice(message, isError = false) {
  $('notice').textContent = message;
  $('notice').className = isError ? 'error' : '';
}

let model = null; // the resnet-web Model that classifies the page's inputs

// The page's backend choice, in the library's words ('auto', 'webgpu', 'cpu').
const backendOption = () => $('backend-choice').value;

// Replaces the page's model; the one before is freed once the new one is in place.
function useModel(next) {
  const previous = model;
  model = next;
  if (previous && previous !== next) previous.dispose();
  model.on('backend', ({ backend, notice, timings }) => {
    if (model !== next) return;
    showBackend(backend, notice, timings);
    if (timings?.cpuThreads) showThreads().catch((error) => showNotice(error.message, true));
  });
  showBackend(model.measuring ? `${model.backend}, while WebGPU is measured` : model.backend, null, model.timings);
  if (!model.measuring && backendOption() === 'webgpu' && model.backend.startsWith('CPU')) $('backend-choice').value = 'cpu';
  modelChanged();
}

// The last load asked for wins: each takes a ticket when it is asked for (a choice in the
// list, a file, a backend), and one whose ticket is no longer the latest is dropped.
let latestLoad = 0;
class SupersededLoad extends Error {}
function checkTicket(ticket) {
  if (ticket !== latestLoad) throw new SupersededLoad();
}

async function showLoaded(source, options, message, ticket = ++latestLoad) {
  showNotice('Loading the model…');
  const loaded = await loadModel(source, { backend: backendOption(), ...options });
  if (ticket !== latestLoad) {
    loaded.dispose();
    throw new SupersededLoad();
  }
  useModel(loaded);
  showNotice(loaded.notice ?? message ?? 'Ready: draw, drop an image, or start the webcam.', Boolean(loaded.notice));
}

// A load's failure, unless a later load replaced it.
function loadFailed(error, prefix = '') {
  if (!(error instanceof SupersededLoad)) showNotice(`${prefix}${error.message}`, true);
}

// Where the model runs, with what 'auto' measured, or why it is on (or went back to) the CPU.
function showBackend(backend, notice, timings) {
  $('backend').textContent = timings ? `${backend}, ${describeTimings(timings, 'a prediction')}` : backend;
  if (notice) {
    showNotice(notice, true);
    if (backendOption() === 'webgpu') $('backend-choice').value = 'cpu';
  }
}

// The CPU's thread count, up to the pool's size: 'auto' keeps the fastest it measured, a count
// chosen here is kept. One thread, and no choice, where the page is not cross-origin isolated.
async function showThreads() {
  const { threads, available, reason } = await cpuThreads();
  const select = $('cpu-threads');
  select.replaceChildren(...Array.from({ length: available }, (_, i) => new Option(String(i + 1))));
  select.value = String(threads);
  select.disabled = available === 1;
  select.title = reason ?? '';
}
$('cpu-threads').addEventListener('change', () => {
  setCpuThreads(Number($('cpu-threads').value)).catch((error) => showNotice(error.message, true));
});

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
    const predictions = await model.classify(canvas, { topK: 5, heatMap: $('heat-map-toggle').checked, modelInput: true });
    const held = lastShown && lastShown.source !== 'webcam' && performance.now() - lastShown.at < HOLD_OVER_WEBCAM_MS;
    if (source !== 'webcam' || !held) {
      lastShown = { source, canvas, label, at: performance.now() };
      $('prediction-source').textContent = label;
      $('predictions').dataset.source = label;
      showPredictions(predictions);
      showModelInput(predictions.modelInput);
      showHeatMap(predictions.heatMap);
      $('latency').textContent = `${predictions.milliseconds.toFixed(1)} ms per prediction`;
    }
    return true;
  } catch (error) {
    if (error.code === ErrorCode.WORKER_CRASHED || error.code === ErrorCode.WORKER_FAILED) offerReload(error);
    else showNotice(error.message, true);
    return false;
  }
}

// The library's worker was lost, and the model with it: a button loads the same model again.
function offerReload(error) {
  const button = document.createElement('button');
  button.id = 'reload-model';
  button.textContent = 'Load the model again';
  button.addEventListener('click', () => reloadModel().catch((e) => loadFailed(e)));
  $('notice').replaceChildren(`${error.message} `, button);
  $('notice').className = 'error';
}

function showPredictions(predictions) {
  $('predictions').replaceChildren(...predictions.map(({ label, probability }) => {
    const item = document.createElement('li');
    item.dataset.label = label;
    item.dataset.prob = probability.toFixed(6);
    const name = document.createElement('span');
    name.textContent = label; // text, never HTML: names come from files
    const bar = document.createElement('div');
    bar.className = 'bar';
    bar.style.width = `${(probability * 100).toFixed(1)}%`;
    const value = document.createElement('span');
    value.textContent = `${(probability * 100).toFixed(1)}%`;
    item.append(name, bar, value);
    return item;
  }));
}

// The class activation map of the top class, as a transparent red-to-yellow overlay.
function showHeatMap(heatMap) {
  const canvas = $('heat-map');
  canvas.hidden = !heatMap;
  if (!heatMap) return;
  const { values, size } = heatMap;
  canvas.width = canvas.height = size;
  canvas.dataset.size = String(size);
  const context = canvas.getContext('2d');
  const image = context.createImageData(size, size);
  values.forEach((value, i) => {
    image.data.set([255, Math.round(255 * value), 0, Math.round(230 * value)], 4 * i);
  });
  context.putImageData(image, 0, 0);
}

// The model input, [channels, size, size], back to pixels.
function showModelInput(modelInput) {
  if (!modelInput) return;
  const { values: input, channels, size } = modelInput;
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
// In the canvas's own pixels: on a narrow screen it is shown smaller than it is.
const canvasPoint = (event) => [event.offsetX * (drawing.width / drawing.clientWidth), event.offsetY * (drawing.height / drawing.clientHeight)];
drawing.addEventListener('pointerdown', (event) => {
  drawing.setPointerCapture(event.pointerId);
  lastPoint = canvasPoint(event);
});
drawing.addEventListener('pointermove', (event) => {
  if (!lastPoint) return;
  const point = canvasPoint(event);
  pen.strokeStyle = '#000';
  pen.lineWidth = 18;
  pen.lineCap = 'round';
  pen.beginPath();
  pen.moveTo(...lastPoint);
  pen.lineTo(...point);
  pen.stroke();
  lastPoint = point;
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
  const own = stream; // a restart with another camera starts a loop of its own
  while (stream === own) {
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
function stopWebcam() {
  stream?.getTracks().forEach((track) => track.stop());
  stream = null;
  $('webcam-toggle').textContent = 'Start the webcam';
}
// The camera chosen (a phone's front or back one); a laptop's only camera serves either.
async function startWebcam() {
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: $('webcam-facing').value } });
  } catch (error) {
    showNotice(`No webcam: ${error.message}`, true);
    return;
  }
  video.srcObject = stream;
  await video.play();
  $('webcam-toggle').textContent = 'Stop the webcam';
  webcamLoop();
}
$('webcam-toggle').addEventListener('click', () => (stream ? stopWebcam() : startWebcam()));
$('webcam-facing').addEventListener('change', () => {
  if (!stream) return;
  stopWebcam();
  startWebcam();
});

// Models: the shipped ones, the one trained last (kept in IndexedDB), or weights from a file.
const TRAINED = 'trained';
let loadedFile = null; // {source, options, message} of the weight file loaded last
let lastTrained = null; // {input, classNames} of the model trained here
async function loadChoice(ticket = ++latestLoad) {
  const choice = $('model-choice').value;
  if (choice !== TRAINED) return showLoaded(shippedModels[choice], {}, undefined, ticket);
  const saved = await savedModel();
  checkTicket(ticket);
  if (!saved) throw new Error('The model trained here is no longer kept: train it again.');
  return showLoaded(saved.weights, { input: saved.input, classNames: saved.classNames }, undefined, ticket);
}
$('model-choice').addEventListener('change', () => {
  loadedFile = null;
  loadChoice().catch((e) => loadFailed(e));
});
// The page's model loaded again: the weight file loaded last, or the choice in the list.
const reloadModel = () => (loadedFile ? showLoaded(loadedFile.source, loadedFile.options, loadedFile.message) : loadChoice());
$('backend-choice').addEventListener('change', () => {
  reloadModel().catch((e) => loadFailed(e));
});
$('weights-input').addEventListener('change', async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  let thisFile = null; // loadedFile, until a later choice replaces it
  const ticket = ++latestLoad;
  try {
    const weights = new Uint8Array(await file.arrayBuffer());
    const described = await describeWeights(weights);
    checkTicket(ticket);
    // A model trained here: its classes and input as trained, when they fit the file.
    const fits = lastTrained && described.numClasses !== 1000 && lastTrained.classNames.length === described.numClasses
      && (lastTrained.input.startsWith('rgb') ? 3 : 1) === described.inChannels;
    const options = fits ? { input: lastTrained.input, classNames: lastTrained.classNames } : {};
    const imagenet = described.numClasses === 1000 && described.inChannels === 3;
    thisFile = { source: weights, options };
    loadedFile = thisFile;
    await showLoaded(weights, options, undefined, ticket);
    thisFile.message = imagenet
      ? `Loaded ${file.name}: classifying into the 1,000 ImageNet classes.`
      : `Loaded ${file.name} (${described.arch}, ${described.numClasses} classes, reading '${model.input}' input).`;
    showNotice(model.notice ?? thisFile.message, Boolean(model.notice));
  } catch (error) {
    if (loadedFile === thisFile) loadedFile = null;
    if (ticket === latestLoad) loadFailed(error, `${file.name}: `);
  }
});

// The model trained last joins the list.
function offerTrainedModel(trained) {
  lastTrained = trained;
  let option = document.querySelector(`#model-choice option[value="${TRAINED}"]`);
  if (!option) {
    option = document.createElement('option');
    option.value = TRAINED;
    $('model-choice').append(option);
  }
  option.textContent = `Trained here: ${trained.classNames.slice(0, 4).join(', ')}${trained.classNames.length > 4 ? '…' : ''}`;
}
savedModel()
  .then((saved) => saved && offerTrainedModel(saved))
  .catch((error) => console.warn('no saved model:', error.message));

const trainingPanel = initTrainingPanel({
  currentModel: () => model,
  backend: backendOption,
  // `burnpack`: the trained model's file, exported by the panel for its download.
  showTrained: async (trained, burnpack) => {
    const kept = { input: trained.input, classNames: [...trained.classNames] };
    offerTrainedModel(kept);
    $('model-choice').value = TRAINED;
    loadedFile = null;
    useModel(trained);
    showNotice('The model just trained now classifies the drawing, images and the webcam.');
    await saveModel({ weights: burnpack, ...kept, savedAt: Date.now() })
      .catch((error) => showNotice(`The model could not be kept for the next visit: ${error.message}`, true));
  },
  drawing: $('drawing'),
  video: $('webcam'),
  webcamOn: () => Boolean(stream),
});
initComparePanel({ backend: backendOption, ownClasses: trainingPanel.ownClasses, ownInput: trainingPanel.ownInput });

showLoaded(shippedModels.digits)
  .then(showThreads)
  .catch((error) => loadFailed(error));
