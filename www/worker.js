// The model lives here, off the main thread: the page only draws and posts messages.
//   in:  {type: 'load', id, backend, input, classNames, weights? (bytes) | url?}
//        {type: 'classify', id, rgba, width, height, withInput}
//   out: {type: 'loaded', id, backend, classNames, notice?}
//        {type: 'result', id, probabilities, milliseconds, modelInput?}
//        {type: 'error', id, message}
import init, { Classifier } from '../pkg/resnet_web.js';

const ready = init();
let classifier = null;
let lastLoad = null;

// WebGPU when it works, else the CPU, saying so.
async function createClassifier(load) {
  await ready;
  const weights = load.weights ?? new Uint8Array(await fetchBytes(load.url));
  lastLoad = { ...load, weights };
  try {
    return { classifier: await Classifier.forImages(weights, load.backend, load.input, load.classNames) };
  } catch (error) {
    if (load.backend !== 'webgpu') throw error;
    const cpu = await Classifier.forImages(weights, 'cpu', load.input, load.classNames);
    return { classifier: cpu, notice: `WebGPU failed (${error.message}); running on the CPU.` };
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
  let probabilities;
  let notice;
  try {
    probabilities = await classifier.classifyPixels(rgba, message.width, message.height);
  } catch (error) {
    // A lost WebGPU device: carry on on the CPU. Bad input is reported as it is.
    if (!classifier.backend.startsWith('WebGPU') || /invalid input/.test(error.message)) throw error;
    classifier = await Classifier.forImages(lastLoad.weights, 'cpu', lastLoad.input, lastLoad.classNames);
    notice = `WebGPU failed during classification (${error.message}); switched to the CPU.`;
    probabilities = await classifier.classifyPixels(rgba, message.width, message.height);
  }
  const milliseconds = performance.now() - started;
  const modelInput = message.withInput ? classifier.modelInput(rgba, message.width, message.height) : undefined;
  return { probabilities, milliseconds, modelInput, notice, backend: classifier.backend };
}

self.onmessage = async ({ data }) => {
  try {
    if (data.type === 'load') {
      const created = await createClassifier(data);
      classifier = created.classifier;
      self.postMessage({
        type: 'loaded', id: data.id, backend: classifier.backend,
        classNames: classifier.classNames, notice: created.notice,
      });
    } else if (data.type === 'classify') {
      self.postMessage({ type: 'result', id: data.id, ...(await classify(data)) });
    } else {
      throw new Error(`unknown message type ${data.type}`);
    }
  } catch (error) {
    self.postMessage({ type: 'error', id: data.id, message: error.message ?? String(error) });
  }
};
