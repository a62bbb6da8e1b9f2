// The benchmark: one subject per page load (?subject=NAME), so that no library's threads,
// memory or GPU device sit beside another's. Each figure is the median of timed runs after
// a warm-up run, with min and max. The models run on the page's thread: there is nothing
// else to keep responsive. Except ours-cpu-N (our threaded module on a pool of N threads):
// its thread must wait for the pool's, which a page's thread cannot, so this script runs
// it in a module worker of its own and passes its figures on.
// Results: one `BENCH {json}` console line per figure, and `window.benchDone` at the end
// (scripts/bench.mjs reads both). ?quick=1 takes fewer runs (a check that it works).
//
// Subjects: ours (resnet-web, from pkg/) on webgpu and cpu (one thread), ours-cpu-N (from
// pkg-threads/, N threads, up to 8), and their FMA twins ours-fma-cpu and ours-fma-cpu-N
// (pkg-fma/, pkg-threads-fma/: what the page runs where the browser has relaxed SIMD); the
// peers, from
// bench/node_modules (bench/package.json): onnxruntime-web's wasm EP (1 and 2 threads) and
// webgpu EP, and TensorFlow.js's wasm (1 and 2 threads), webgpu, webgl and cpu backends.
// Every subject runs the same shapes: ResNet-18 224x224 at batch 1 and 8, ResNet-20 32x32 at
// batch 1 and 64, random weights; and a training step of ResNet-20 on 28x28x1 at batch 64
// where the library can train.
import { buildResNet } from './tfjs-resnet.js';

const params = new URLSearchParams(location.search);
const quick = params.has('quick');
const subject = params.get('subject') ?? 'ours-webgpu';
const inWorker = typeof document === 'undefined';
const log = globalThis.document?.getElementById('log');

// [model, arch, classes, channels, size, batch]
const INFERENCE = [
  ['resnet18-224', 'resnet18', 1000, 3, 224, 1],
  ['resnet18-224', 'resnet18', 1000, 3, 224, 8],
  ['resnet20-32', 'resnet20', 10, 3, 32, 1],
  ['resnet20-32', 'resnet20', 10, 3, 32, 64],
];
const TRAINING = { model: 'resnet20-28x28x1', arch: 'resnet20', classes: 10, size: 28, batch: 64 };
// A head trained on kept embeddings: 100 pictures of ResNet-18's 512 features, 5 classes.
const HEAD = { count: 100, dim: 512, classes: 5 };
const RUNS = quick ? { warmUp: 1, runs: 2, budgetMs: 0 } : { warmUp: 1, runs: 10, budgetMs: 30000 };

function report(figure) {
  const line = JSON.stringify({ subject, ...figure });
  if (inWorker) return self.postMessage({ line });
  console.log(`BENCH ${line}`);
  log.textContent += `${line}\n`;
}

function summary(times) {
  const sorted = [...times].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median, min: sorted[0], max: sorted.at(-1), runs: sorted.length };
}

// Warm-up runs (kernel compilation, allocation), then timed runs until `runs` are done or
// `budgetMs` is spent, with at least 3.
async function timed(run) {
  const { warmUp, runs, budgetMs } = RUNS;
  for (let i = 0; i < warmUp; i++) await run();
  const times = [];
  const started = performance.now();
  while (times.length < runs && (times.length < 3 || performance.now() - started < budgetMs)) {
    const t = performance.now();
    await run();
    times.push(performance.now() - t);
  }
  return summary(times);
}

function randomInput(count) {
  const values = new Float32Array(count);
  let seed = 1;
  for (let i = 0; i < count; i++) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    values[i] = seed / 2147483648 - 0.5;
  }
  return values;
}

// Step times to images per second (the slowest step gives the minimum).
function throughput(times, batch) {
  const perSecond = (ms) => (batch * 1000) / ms;
  return { median: perSecond(times.median), min: perSecond(times.max), max: perSecond(times.min), runs: times.runs };
}

// Each runner: { backend (what it runs on, in words), threads, inference(spec) and
// training(), each resolving to { run, free } (null where the library cannot) }. A run
// includes the input upload and the read back of the result, for every subject.

// fma: the FMA twin of the module (pkg-fma/, pkg-threads-fma/: relaxed SIMD's fused
// multiply-add in the CPU kernels), which the page loads where the browser has relaxed SIMD.
async function ours(backendName, threads, { fma = false } = {}) {
  const plain = threads ? '/pkg-threads' : params.get('pkg') ?? '/pkg';
  const pkg = fma ? `${plain}-fma` : plain;
  const module = await import(`${pkg}/resnet_web.js`);
  const { default: init, Classifier, TrainingData, TrainingSession, trainHead } = module;
  await init();
  if (threads) await module.initThreadPool(threads);
  let backend = backendName;
  return {
    threads: threads ? module.cpuThreads() : 1,
    get backend() { return backend; },
    async inference([, arch, classes, channels, size, batch]) {
      const classifier = await Classifier.create(arch, classes, channels, backendName);
      backend = classifier.backend;
      const input = randomInput(batch * channels * size * size);
      return { run: () => classifier.logits(input, batch, channels, size, size), free: () => classifier.free() };
    },
    async training() {
      const { arch, size, batch } = TRAINING;
      const data = TrainingData.forInput('gray-28', ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j']);
      const pixels = new Uint8Array(size * size * 4);
      for (let i = 0; i < batch * 4; i++) {
        for (let p = 0; p < pixels.length; p++) pixels[p] = (i * 31 + p * 7) % 256;
        data.addPixels('gray-28', pixels, size, size, i % 10);
      }
      const session = await TrainingSession.create(
        { backend: backendName, arch, input: 'gray-28', batchSize: batch, epochs: 50, validationFraction: 0, augment: false },
        data,
      );
      backend = session.backend;
      // One step: forward, backward, Adam update, the read back of loss and accuracy, and
      // (on WebGPU) the checkpoint that a lost device resumes from.
      return { run: () => session.step(), free: () => session.free() };
    },
    // Transfer learning: one picture's embedding (224x224 RGBA through ImageNet's transform,
    // the backbone, the pooling) and one epoch of a new head on 100 kept embeddings.
    async embedding() {
      const classifier = await Classifier.create('resnet18', 1000, 3, backendName, undefined, 'imagenet');
      backend = classifier.backend;
      const side = 224;
      const pixels = new Uint8Array(side * side * 4).map((_, i) => (i * 7) % 256);
      return { run: () => classifier.embedImage(pixels, side, side), free: () => classifier.free() };
    },
    async headEpoch() {
      const { count, dim, classes } = HEAD;
      const embeddings = randomInput(count * dim);
      const labels = new Uint32Array(count).map((_, i) => i % classes);
      const options = { epochs: 1, validationFraction: 0 };
      return { run: async () => trainHead(embeddings, labels, classes, options).free(), free: () => {} };
    },
  };
}

async function onnxRuntime(provider, threads) {
  const ort = await import('./node_modules/onnxruntime-web/dist/ort.all.min.mjs');
  ort.env.wasm.wasmPaths = new URL('./node_modules/onnxruntime-web/dist/', location.href).href;
  ort.env.wasm.numThreads = threads ?? 1;
  ort.env.logLevel = 'error';
  return {
    threads: threads ?? 1,
    backend: provider === 'wasm' ? `onnxruntime-web ${ort.env.versions.web} wasm EP` : `onnxruntime-web ${ort.env.versions.web} webgpu EP`,
    async inference([model, , , channels, size, batch]) {
      const session = await ort.InferenceSession.create(`models/${model}.onnx`, {
        executionProviders: [provider], graphOptimizationLevel: 'all',
      });
      const input = new ort.Tensor('float32', randomInput(batch * channels * size * size), [batch, channels, size, size]);
      return {
        run: async () => {
          const outputs = await session.run({ input });
          const logits = outputs[session.outputNames[0]];
          await logits.getData(true);
        },
        free: () => session.release(),
      };
    },
    // onnxruntime-web runs inference only: its training API needs artefacts made by the
    // onnxruntime-training Python package, and its npm build no longer ships it.
    training: null,
  };
}

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = src;
    script.onload = resolve;
    script.onerror = () => reject(new Error(`could not load ${src}`));
    document.head.append(script);
  });
}

async function tensorflow(backendName, threads) {
  await loadScript('node_modules/@tensorflow/tfjs/dist/tf.min.js');
  const { tf } = window;
  if (backendName === 'wasm') {
    await loadScript('node_modules/@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.min.js');
    tf.wasm.setWasmPaths(new URL('./node_modules/@tensorflow/tfjs-backend-wasm/dist/', location.href).href);
    tf.wasm.setThreadsCount(threads);
  } else if (backendName === 'webgpu') {
    await loadScript('node_modules/@tensorflow/tfjs-backend-webgpu/dist/tf-backend-webgpu.min.js');
  }
  if (!(await tf.setBackend(backendName))) throw new Error(`TF.js could not start its ${backendName} backend`);
  await tf.ready();
  const actualThreads = backendName === 'wasm' ? tf.wasm.getThreadsCount?.() ?? threads : 1;
  return {
    threads: actualThreads,
    backend: `TF.js ${tf.version.tfjs} ${backendName}`,
    // The tfjs cpu backend is plain JavaScript: measured for training only, where it is what
    // TF.js falls back to on the CPU.
    inference: backendName === 'cpu' ? null : async ([, arch, classes, channels, size, batch]) => {
      const model = buildResNet(tf, arch, { classes, channels, size });
      const input = tf.tensor4d(randomInput(batch * size * size * channels), [batch, size, size, channels]);
      return {
        run: async () => {
          const logits = model.predict(input);
          await logits.data();
          logits.dispose();
        },
        free: () => { input.dispose(); model.dispose(); },
      };
    },
    async training() {
      const { arch, classes, size, batch } = TRAINING;
      const model = buildResNet(tf, arch, { classes, channels: 1, size });
      model.compile({ optimizer: tf.train.adam(1e-3), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
      const images = tf.tensor4d(randomInput(batch * size * size), [batch, size, size, 1]);
      const labels = tf.oneHot(tf.tensor1d(Array.from({ length: batch }, (_, i) => i % classes), 'int32'), classes);
      // trainOnBatch: forward, backward, Adam update, and the read back of loss and accuracy.
      return { run: () => model.trainOnBatch(images, labels), free: () => { images.dispose(); labels.dispose(); model.dispose(); } };
    },
  };
}

// jax-js: ResNet-20 only (bench/jax-resnet.js). Its wasm pool has a worker per
// navigator.hardwareConcurrency and no setting, so `threads` sets what that reports here.
async function jaxjs(device, threads) {
  if (threads) Object.defineProperty(Navigator.prototype, 'hardwareConcurrency', { get: () => threads, configurable: true });
  const jax = await import('./node_modules/@jax-js/jax/dist/index.js');
  const { ADAM, resnet20, adamUpdate } = await import('./jax-resnet.js');
  const { numpy: np, nn, tree, jit, valueAndGrad } = jax;
  const started = await jax.init(device);
  if (!started.includes(device)) throw new Error(`jax-js could not start its ${device} device`);
  jax.defaultDevice(device);
  return {
    threads: device === 'wasm' ? (crossOriginIsolated ? navigator.hardwareConcurrency : 1) : 1,
    backend: `jax-js ${device}`,
    async inference([, arch, classes, channels, size, batch]) {
      if (arch !== 'resnet20') return null;
      const model = resnet20(jax, { classes, channels });
      const predict = jit((params, running, x) => model.forward(params, x, running));
      const input = np.array(randomInput(batch * channels * size * size)).reshape([batch, channels, size, size]);
      return {
        run: async () => { await predict(tree.ref(model.params), tree.ref(model.running), input.ref).data(); },
        free: () => { input.dispose(); tree.dispose(model.params); tree.dispose(model.running); predict.dispose(); },
      };
    },
    async training() {
      const { classes, size, batch } = TRAINING;
      const model = resnet20(jax, { classes, channels: 1 });
      const loss = (params, x, labels) => {
        const logProbabilities = nn.logSoftmax(model.forward(params, x), -1);
        return np.mean(np.sum(logProbabilities.mul(labels), -1)).mul(-1);
      };
      // Forward, backward and the Adam update in one compiled function.
      const step = jit((params, state, corrections, x, labels) => {
        const [value, grads] = valueAndGrad(loss)(tree.ref(params), x, labels);
        const updated = adamUpdate(jax, params, grads, state, corrections);
        return [value, updated.params, updated.state];
      });
      const images = np.array(randomInput(batch * size * size)).reshape([batch, 1, size, size]);
      const labels = nn.oneHot(np.array(Int32Array.from({ length: batch }, (_, i) => i % classes), { dtype: np.int32 }), classes);
      let params = model.params;
      let state = { m: tree.map((p) => np.zerosLike(p), tree.ref(params)), v: tree.map((p) => np.zerosLike(p), tree.ref(params)) };
      let count = 0;
      return {
        // A step, and the read back of its loss.
        run: async () => {
          count += 1;
          const corrections = { first: np.array(Float32Array.of(1 - ADAM.beta1 ** count)), second: np.array(Float32Array.of(1 - ADAM.beta2 ** count)) };
          const [value, nextParams, nextState] = step(params, state, corrections, images.ref, labels.ref);
          params = nextParams;
          state = nextState;
          await value.data();
        },
        free: () => { tree.dispose([params, state, model.running]); images.dispose(); labels.dispose(); step.dispose(); },
      };
    },
  };
}

const SUBJECTS = {
  'ours-webgpu': () => ours('webgpu'),
  'ours-cpu': () => ours('cpu'),
  ...Object.fromEntries([1, 2, 3, 4, 5, 6, 7, 8].map((n) => [`ours-cpu-${n}`, () => ours('cpu', n)])),
  'ours-fma-cpu': () => ours('cpu', 0, { fma: true }),
  ...Object.fromEntries([1, 2, 3, 4, 5, 6, 7, 8].map((n) => [`ours-fma-cpu-${n}`, () => ours('cpu', n, { fma: true })])),
  'ort-wasm-1': () => onnxRuntime('wasm', 1),
  'ort-wasm-2': () => onnxRuntime('wasm', 2),
  'ort-webgpu': () => onnxRuntime('webgpu'),
  'tfjs-wasm-1': () => tensorflow('wasm', 1),
  'tfjs-wasm-2': () => tensorflow('wasm', 2),
  'tfjs-webgpu': () => tensorflow('webgpu'),
  'tfjs-webgl': () => tensorflow('webgl'),
  'tfjs-cpu': () => tensorflow('cpu'),
  'jax-wasm-1': () => jaxjs('wasm', 1),
  'jax-wasm-2': () => jaxjs('wasm', 2),
  'jax-webgpu': () => jaxjs('webgpu'),
};

async function measure(runner, figure, make, toFigure) {
  let instance;
  try {
    instance = await make();
    if (!instance) return; // a model this library's subject does not build
    const times = await timed(instance.run);
    report({ ...figure, backend: runner.backend, threads: runner.threads, ...toFigure(times) });
  } catch (error) {
    const message = String(error?.message ?? error);
    // A kernel the library lacks (TF.js's wasm backend has no convolution gradients) is a
    // fact about the peer, not a failure of the benchmark.
    const outcome = /not registered for backend/.test(message) ? 'unsupported' : 'error';
    report({ ...figure, figure: outcome, failed: figure.figure, backend: runner.backend, message });
  } finally {
    instance?.free();
  }
}

async function main() {
  if (!SUBJECTS[subject]) throw new Error(`unknown subject ${subject}: one of ${Object.keys(SUBJECTS).join(', ')}`);
  if (subject.includes('-2') && !crossOriginIsolated) {
    throw new Error('two threads need SharedArrayBuffer: serve with COOP/COEP (scripts/bench.sh does)');
  }
  const runner = await SUBJECTS[subject]();
  if (runner.inference) {
    for (const spec of INFERENCE) {
      const [model, , , , , batch] = spec;
      await measure(runner, { figure: 'inference', model, batch, unit: 'ms' }, () => runner.inference(spec), (t) => t);
    }
  }
  if (runner.training) {
    const { model, batch } = TRAINING;
    await measure(runner, { figure: 'training', model, batch, unit: 'images/s' }, () => runner.training(), (t) => throughput(t, batch));
  }
  if (runner.embedding) {
    await measure(runner, { figure: 'embedding', model: 'resnet18-224', batch: 1, unit: 'ms' }, () => runner.embedding(), (t) => t);
    await measure(runner, { figure: 'head epoch', model: `${HEAD.dim}x${HEAD.count}`, batch: HEAD.count, unit: 'ms' }, () => runner.headEpoch(), (t) => t);
  }
}

// ours-cpu-N from the page: this script again, in a worker, with the same query.
function inItsOwnWorker() {
  return new Promise((resolve) => {
    const worker = new Worker(new URL(`bench.js${location.search}`, location.href), { type: 'module' });
    worker.onmessage = ({ data }) => (data.line ? report(JSON.parse(data.line)) : resolve());
    worker.onerror = (event) => {
      report({ figure: 'error', message: `the worker failed: ${event.message}` });
      resolve();
    };
  });
}

if (inWorker) {
  main()
    .catch((error) => report({ figure: 'error', message: String(error?.message ?? error) }))
    .finally(() => self.postMessage({ done: true }));
} else {
  (/^ours-(fma-)?cpu-\d$/.test(subject) ? inItsOwnWorker() : main())
    .catch((error) => report({ figure: 'error', message: String(error?.message ?? error) }))
    .finally(() => { window.benchDone = true; });
}
