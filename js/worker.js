// The models live here, off the main thread; resnet-web.js starts this worker and talks to it
// in the messages of protocol.js. This file only dispatches; each job has a file in worker/:
// the wasm modules and threads (modules.js), models and classifying (models.js), training
// (training.js) and transfer learning (transfer.js).
import { ErrorCode, Event, Reply, Request, ResNetError, failure } from './protocol.js';
import { endWorkerAfterTrap, fetchBytes, post } from './worker/io.js';
import { classify, dispose, inOrder, load, modelFor, models, setThreads } from './worker/models.js';
import { memoryUse, startModules, threadsInfo, wasm } from './worker/modules.js';
import { controlRun, runs, train } from './worker/training.js';
import { embed, forget, learners, trainHeadModel } from './worker/transfer.js';

// The library watches a worker until it says this (resnet-web.js, watchStart).
const announce = () => post({ type: Event.STARTED, cpuModule: wasm.cpu ? wasm.cpuModuleName : null, reason: wasm.oneThreadReason });
startModules().then(announce, announce);

async function handle(message) {
  switch (message.type) {
    case Request.LOAD: return load(message);
    case Request.CLASSIFY: return inOrder(message, async () => {
      const result = await classify(message);
      const model = models.get(message.model);
      if (model) model.lastClassified = performance.now();
      return result;
    });
    case Request.EXPORT: return inOrder(message, async () => {
      await wasm.ready;
      return wasm.cpu.convertWeights(modelFor(message.model).weights, message.format);
    });
    case Request.DISPOSE: return inOrder(message, async () => dispose(message.model));
    case Request.EMBED: return inOrder(message, () => embed(message));
    case Request.FORGET: return forget(message);
    case Request.TRAIN_HEAD: return trainHeadModel(message);
    case Request.TRAIN: return train(message);
    case Request.THREADS: {
      await wasm.ready;
      return message.threads === undefined ? threadsInfo() : setThreads(message);
    }
    case Request.DECODE: {
      await wasm.ready;
      return wasm.cpu.decodeImage(message.bytes);
    }
    case Request.DESCRIBE: {
      await wasm.ready;
      const bytes = message.source.bytes ?? await fetchBytes(message.source.url);
      return wasm.cpu.describeWeights(bytes);
    }
    default: throw new ResNetError(ErrorCode.INTERNAL, `unknown request type '${message.type}'`);
  }
}

// The requests not yet answered: id -> {type, since}.
const inFlight = new Map();

// Where this worker stands, answered at once, whatever else waits: the library asks when its
// calls go unanswered and for `memory()`, and a test that fails prints it.
function status() {
  const now = performance.now();
  const { cpu } = wasm;
  return {
    pool: { ...wasm.pool },
    cpuModule: cpu ? wasm.cpuModuleName : null,
    cpuThreads: cpu ? cpu.cpuThreads() : null,
    oneThreadReason: wasm.oneThreadReason,
    models: models.size,
    learners: learners.size,
    runs: runs.size,
    ...memoryUse(),
    inFlight: [...inFlight].map(([id, { type, since }]) => ({ id, type, ms: Math.round(now - since) })),
  };
}

self.onmessage = async ({ data: message }) => {
  if (message.type === Request.CONTROL) {
    controlRun(message);
    return;
  }
  if (message.type === Request.STATUS) {
    post({ type: Reply.DONE, id: message.id, value: status() });
    return;
  }
  inFlight.set(message.id, { type: message.type, since: performance.now() });
  try {
    const value = await handle(message);
    const bytes = value instanceof Uint8Array ? value : value?.rgba;
    post({ type: Reply.DONE, id: message.id, value }, bytes instanceof Uint8Array ? [bytes.buffer] : []);
  } catch (error) {
    // A trap: this call says so first, then the worker ends.
    if (error instanceof WebAssembly.RuntimeError) {
      post(failure(message.id, new ResNetError(ErrorCode.WORKER_CRASHED, `the wasm module aborted (${error.message}); the models are gone: load them again`)));
      endWorkerAfterTrap(error);
    } else {
      post(failure(message.id, error));
    }
  } finally {
    inFlight.delete(message.id);
  }
};
