// Transfer learning, Teachable Machine's way: a learner keeps one embedding per picture
// (the backbone runs once each), then trains a new head on them; the head with the
// backbone joins the models (models.js) as a model of its own.
import { ErrorCode, ResNetError } from '../protocol.js';
import { addModel, modelFor } from './models.js';
import { wasm } from './modules.js';

// learner id -> {base (a model entry), embeddings: Map(example id -> Float32Array)}
export const learners = new Map();
// Learners disposed: an embed queued behind a model's predictions can run after its
// learner's dispose, and must not make it again (and hold its model for good).
const forgotten = new Set();
let nextExample = 1;

function learnerFor(id, modelId) {
  if (forgotten.has(id)) throw new ResNetError(ErrorCode.DISPOSED, 'this learner was disposed: make a new one');
  let learner = learners.get(id);
  if (!learner) {
    const base = modelFor(modelId);
    // The learner holds its base: disposing the model (the page replaces it with the model
    // it trains) frees it only once the learner is gone too.
    base.holders = (base.holders ?? 0) + 1;
    learner = { base, embeddings: new Map() };
    learners.set(id, learner);
  }
  return learner;
}

// The backbone runs here, once per picture.
export async function embed({ learner: learnerId, model, rgba, width, height }) {
  const learner = learnerFor(learnerId, model);
  const embedding = await learner.base.classifier.embedImage(new Uint8Array(rgba), width, height);
  const example = nextExample++;
  learner.embeddings.set(example, embedding);
  return { example };
}

export function forget({ learner: learnerId, example }) {
  if (example === undefined) forgotten.add(learnerId);
  const learner = learners.get(learnerId);
  if (!learner) return null;
  if (example !== undefined) {
    learner.embeddings.delete(example);
    return null;
  }
  learners.delete(learnerId);
  learner.base.holders -= 1;
  if (learner.base.disposed && learner.base.holders === 0) learner.base.classifier.free();
  return null;
}

// A new head on the kept embeddings, and the whole ResNet with it as a new model.
export async function trainHeadModel({ id, learner: learnerId, classNames, examples, options = {} }) {
  await wasm.ready;
  const learner = learners.get(learnerId);
  if (!learner || examples.length === 0) throw new ResNetError(ErrorCode.BAD_INPUT, 'no pictures to train on: add some with learner.add(image) first');
  const started = performance.now();
  const dim = learner.embeddings.values().next().value?.length ?? 0;
  const flat = new Float32Array(examples.length * dim);
  const labels = new Uint32Array(examples.length);
  examples.forEach(({ example, label }, i) => {
    const embedding = learner.embeddings.get(example);
    if (!embedding) throw new ResNetError(ErrorCode.BAD_INPUT, `picture ${example} is not one this learner embedded`);
    flat.set(embedding, i * dim);
    labels[i] = label;
  });
  const head = wasm.cpu.trainHead(flat, labels, classNames.length, options);
  const trainedSeconds = (performance.now() - started) / 1000;
  try {
    const weights = head.withBackbone(learner.base.weights);
    const info = await addModel(id, weights, options.backend ?? 'cpu', learner.base.input, classNames);
    return {
      ...info,
      summary: {
        stopped: false, failure: null, validation: head.validation, train: head.train, test: null,
        losses: head.losses, steps: head.losses.length, totalSteps: head.losses.length,
        seconds: trainedSeconds, backend: info.backend,
      },
    };
  } finally {
    head.free();
  }
}
