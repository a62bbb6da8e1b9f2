// The threaded module against itself on one thread and against the one-thread module: the
// same PyTorch-written ResNet-20 and input as tests/web.rs, and the same-seed training run;
// and the FMA twins of both modules (relaxed SIMD's fused multiply-add) on the same input.
// Posts {threads, logits: {oneThread, twoThreads, pytorch, fma: {oneThread, twoThreads,
// modules}}, losses: {oneThread, twoThreads}}.
import initPlain, * as plain from '../../pkg/resnet_web.js';
import initPlainFma, * as plainFma from '../../pkg-fma/resnet_web.js';
import initThreaded, * as threaded from '../../pkg-threads/resnet_web.js';
import initThreadedFma, * as threadedFma from '../../pkg-threads-fma/resnet_web.js';

// Batch 4: each convolution after the first (9.4 M multiply-adds) is over the size that
// crates/cpu-kernels splits across threads in wasm, so two threads really share them.
const CIFAR_INPUT = [4, 3, 32, 32];
const STEPS = 6;

// tests/common/mod.rs `uniform01`: splitmix64 of fnv1a(name) + (i + 1) * golden.
function uniform01(name, count) {
  const u64 = (value) => BigInt.asUintN(64, value);
  let seed = 0xcbf29ce484222325n;
  for (const byte of new TextEncoder().encode(name)) seed = u64((seed ^ BigInt(byte)) * 0x100000001b3n);
  return Array.from({ length: count }, (_, index) => {
    let z = u64(seed + u64(BigInt(index + 1) * 0x9e3779b97f4a7c15n));
    z = u64((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n);
    z = u64((z ^ (z >> 27n)) * 0x94d049bb133111ebn);
    z ^= z >> 31n;
    return Number(z >> 11n) / 2 ** 53;
  });
}

// tests/common/mod.rs `synthetic_images`: a 4-d tensor's synthetic values, mapped to [-1, 1).
function syntheticImages(shape) {
  const bound = Math.sqrt(3 / (shape[1] * shape[2] * shape[3]));
  const count = shape.reduce((a, b) => a * b);
  return Float32Array.from(uniform01('input', count), (u) => Math.fround(Math.fround((2 * u - 1) * bound) * 2 - 1));
}

// A little-endian f32 .npy file's values.
function npyValues(bytes) {
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset).getUint16(8, true);
  return new Float32Array(bytes.slice(10 + headerLength).buffer);
}

const fetchBytes = async (path) => new Uint8Array(await (await fetch(new URL(path, import.meta.url))).arrayBuffer());

// A same-seed training run on the CPU of `module`: its losses.
async function losses(module) {
  const classes = ['a', 'b', 'c', 'd'];
  const data = module.TrainingData.forInput('gray-28', classes);
  const pixels = new Uint8Array(28 * 28 * 4);
  for (let i = 0; i < 64; i++) {
    for (let p = 0; p < pixels.length; p++) pixels[p] = (i * 31 + p * 7 + (i % 4) * 60 * (p % 3)) % 256;
    data.addPixels('gray-28', pixels, 28, 28, i % 4);
  }
  const session = await module.TrainingSession.create(
    { backend: 'cpu', arch: 'resnet8', input: 'gray-28', batchSize: 16, epochs: 2, seed: 3, validationFraction: 0, augment: false },
    data,
  );
  const values = [];
  for (let step = 0; step < STEPS; step++) values.push((await session.step()).loss);
  session.free();
  return values;
}

// ResNet-20's logits for `images` from `module`'s CPU, on `threads` threads where it has a pool.
async function cpuLogits(module, weights, images, threads) {
  const classifier = await module.Classifier.create('resnet20', 10, 3, 'cpu', weights);
  if (threads) module.setCpuThreads(threads);
  const logits = Array.from(await classifier.logits(images, ...CIFAR_INPUT));
  classifier.free();
  return logits;
}

try {
  await Promise.all([initPlain(), initThreaded(), initPlainFma(), initThreadedFma()]);
  await threaded.initThreadPool(2);
  await threadedFma.initThreadPool(2);
  const weights = await fetchBytes('../fixtures/resnet20.safetensors');
  const images = syntheticImages(CIFAR_INPUT);
  const classifier = await threaded.Classifier.create('resnet20', 10, 3, 'cpu', weights);
  const logits = async (threads) => {
    threaded.setCpuThreads(threads);
    return Array.from(await classifier.logits(images, ...CIFAR_INPUT));
  };
  const oneThread = await logits(1);
  const twoThreads = await logits(2);
  const backend = classifier.backend;
  classifier.free();
  self.postMessage({
    threads: threaded.cpuThreads(),
    backend,
    logits: {
      oneThread,
      twoThreads,
      pytorch: Array.from(npyValues(await fetchBytes('../fixtures/resnet20.logits.npy'))),
      fma: {
        oneThread: await cpuLogits(plainFma, weights, images),
        twoThreads: await cpuLogits(threadedFma, weights, images, 2),
        modules: { oneThread: plainFma.hasFma(), twoThreads: threadedFma.hasFma() && threadedFma.hasThreads() },
      },
    },
    losses: { oneThread: await losses(plain), twoThreads: await losses(threaded) },
  });
} catch (error) {
  self.postMessage({ failed: String(error?.message ?? error) });
}
