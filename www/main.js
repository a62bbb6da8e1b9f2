// The page: picks a backend, loads weights, classifies an uploaded image.
import init, { Classifier, WeightsDescription } from '../pkg/resnet_web.js';

const $ = (id) => document.getElementById(id);
// torchvision's ImageNet normalisation; the CIFAR family takes plain [0, 1] pixels here.
const IMAGENET_MEAN = [0.485, 0.456, 0.406];
const IMAGENET_STD = [0.229, 0.224, 0.225];

let classifier = null;
let model = { arch: 'resnet20', numClasses: 10, inChannels: 3, weights: undefined };

function showStatus(message, isError = false) {
  $('status').textContent = message;
  $('status').className = isError ? 'error' : '';
}

async function createClassifier() {
  const wanted = $('backend-choice').value;
  try {
    classifier = await Classifier.create(model.arch, model.numClasses, model.inChannels, wanted, model.weights);
  } catch (error) {
    if (wanted !== 'webgpu') throw error;
    showStatus(`WebGPU failed (${error.message}); using the CPU instead.`, true);
    $('backend-choice').value = 'cpu';
    classifier = await Classifier.create(model.arch, model.numClasses, model.inChannels, 'cpu', model.weights);
  }
  $('backend').textContent = classifier.backend;
  const source = model.weights ? 'loaded weights' : 'random weights';
  $('model-summary').textContent = `${model.arch}, ${model.numClasses} classes, ${source}`;
}

function inputSize() {
  return model.arch === 'resnet18' || model.arch.match(/resnet(34|50|101|152)$/) ? 224 : 32;
}

// Draws the image scaled to the model's input and returns CHW floats.
function imageToInput(image) {
  const size = inputSize();
  const canvas = $('model-input');
  canvas.width = canvas.height = size;
  const context = canvas.getContext('2d');
  context.drawImage(image, 0, 0, size, size);
  const { data } = context.getImageData(0, 0, size, size);
  const imagenet = size === 224;
  const input = new Float32Array(model.inChannels * size * size);
  for (let c = 0; c < model.inChannels; c++) {
    for (let i = 0; i < size * size; i++) {
      const value = model.inChannels === 1
        ? (data[4 * i] + data[4 * i + 1] + data[4 * i + 2]) / (3 * 255)
        : data[4 * i + c] / 255;
      input[c * size * size + i] = imagenet ? (value - IMAGENET_MEAN[c]) / IMAGENET_STD[c] : value;
    }
  }
  return { input, size };
}

function showPredictions(logits) {
  const max = Math.max(...logits);
  const exp = Array.from(logits, (v) => Math.exp(v - max));
  const total = exp.reduce((a, b) => a + b, 0);
  const top = exp.map((e, index) => ({ index, prob: e / total }))
    .sort((a, b) => b.prob - a.prob).slice(0, 5);
  $('predictions').replaceChildren(...top.map(({ index, prob }) => {
    const item = document.createElement('li');
    item.dataset.label = `class ${index}`;
    item.dataset.prob = prob.toFixed(6);
    const name = document.createElement('span');
    name.textContent = `class ${index}`;
    const bar = document.createElement('div');
    bar.className = 'bar';
    bar.style.width = `${(prob * 100).toFixed(1)}%`;
    const value = document.createElement('span');
    value.textContent = `${(prob * 100).toFixed(1)}%`;
    item.append(name, bar, value);
    return item;
  }));
}

async function classify(image) {
  const { input, size } = imageToInput(image);
  const start = performance.now();
  const logits = await classifier.logits(input, 1, model.inChannels, size, size);
  $('latency').textContent = `${(performance.now() - start).toFixed(1)} ms per prediction`;
  showPredictions(logits);
}

async function guarded(action) {
  try {
    await action();
  } catch (error) {
    showStatus(error.message ?? String(error), true);
  }
}

$('backend-choice').addEventListener('change', () => guarded(createClassifier));

$('weights-input').addEventListener('change', (event) => guarded(async () => {
  const file = event.target.files[0];
  if (!file) return;
  const bytes = new Uint8Array(await file.arrayBuffer());
  const description = WeightsDescription.describe(bytes);
  model = { arch: description.arch, numClasses: description.numClasses, inChannels: description.inChannels, weights: bytes };
  await createClassifier();
  showStatus(`Loaded ${file.name}: ${description.arch}, ${description.numParams.toLocaleString()} parameters.`);
}));

$('image-input').addEventListener('change', (event) => guarded(async () => {
  const file = event.target.files[0];
  if (!file) return;
  const image = await createImageBitmap(file).catch(() => {
    throw new Error(`${file.name} is not an image this browser can decode`);
  });
  await classify(image);
}));

guarded(async () => {
  await init();
  await createClassifier();
  showStatus('Ready: pick an image, or load torchvision .safetensors weights.');
});
