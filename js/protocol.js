// The messages between the library (resnet-web.js, on the page) and its worker (worker.js):
// one table that both import, so that each type is spelled once.
//
// A request is {type, id, ...fields}; the worker answers it exactly once, in the order the
// requests of one model were made: {type: Reply.DONE, id, value} or
// {type: Reply.FAILED, id, code, message}. Events come unasked, for a model or a run:
// {type: Event.*, model | run, ...fields}. A training run's control messages get no answer.
export const Request = Object.freeze({
  LOAD: 'load', //         {source: {bytes} | {url} | {shipped}, backend, input?, classNames?} -> ModelInfo
  //                         ModelInfo: {model, backend, input, classNames, numClasses, ...}
  CLASSIFY: 'classify', // {model, rgba, width, height, heatMap, modelInput} -> {probabilities, ...}
  EXPORT: 'export', //     {model, format} -> Uint8Array
  DISPOSE: 'dispose', //   {model} -> null
  DESCRIBE: 'describe', // {source: {bytes} | {url}} -> {arch, numClasses, inChannels}
  DECODE: 'decode', //     {bytes} -> {rgba, width, height}: a PNG or JPEG file's pixels, where there is no canvas (Deno, Node.js)
  TRAIN: 'train', //       {run, data, options, base?: model} -> ModelInfo & {summary}
  CONTROL: 'control', //   {run, action: 'pause' | 'resume' | 'stop'}, no reply
  // Transfer learning: a learner keeps one embedding per picture, made by its model's backbone.
  EMBED: 'embed', //       {learner, model, rgba, width, height} -> {example}
  FORGET: 'forget', //     {learner, example?}: one picture's embedding, or the whole learner -> null
  TRAIN_HEAD: 'train-head', // {learner, classNames, examples: [{example, label}], options} -> ModelInfo & {summary}
  // The CPU's threads: {threads?} sets how many a prediction uses -> {threads, available, reason}
  THREADS: 'threads',
  // Where the worker stands, answered at once even while other requests wait:
  // {} -> {pool: {size, made, ready, state, ms}, cpuModule, cpuThreads, oneThreadReason, models, runs, inFlight: [{id, type, ms}]}
  STATUS: 'status',
});

export const Reply = Object.freeze({ DONE: 'done', FAILED: 'failed' });

export const Event = Object.freeze({
  STARTED: 'started', //       {cpuModule, reason}: the worker's CPU module is ready (its pool started, or given up; reason: why one thread)
  BACKEND: 'backend', //       {model, backend, notice?, timings?}: 'auto' measured ({cpu, webgpu, cpuThreads?: {count: ms}} ms a prediction; webgpuMissing where the browser has none), or WebGPU failed
  RUN_START: 'run-start', //   {run, backend, trainCount, validationCount, totalSteps, classNames, timings?, memory: {needed, fixed, perPicture, batch, webgpu?} bytes: measured on the CPU; webgpu, the GPU pool's share}
  RUN_STEP: 'run-step', //     {run, step, totalSteps, epoch, loss, accuracy, imagesPerSecond, secondsLeft}
  RUN_ESTIMATE: 'run-estimate', // {run, secondsPerStep, totalSteps, seconds, backend, waiting}: after the first step
  RUN_EPOCH: 'run-epoch', //   {run, epoch, accuracy, loss}: validation after an epoch
  RUN_GRADIENTS: 'run-gradients', // {run, step, layers: [{name, depth, gradNorm, weightNorm}]}: every options.gradientEvery steps
  RUN_NOTICE: 'run-notice', // {run, message, backend?, resumedFrom?}
});

// Every failure carries one of these codes; callers branch on the code, never on the text.
// The first group comes from the Rust crate (`Error::code`), the second from JavaScript.
export const ErrorCode = Object.freeze({
  BAD_OPTIONS: 'bad-options',
  BAD_WEIGHTS: 'bad-weights',
  BAD_INPUT: 'bad-input',
  BAD_TRAINING: 'bad-training',
  BACKEND_FAILED: 'backend-failed',
  UNSUPPORTED: 'unsupported',
  IO: 'io',
  NETWORK: 'network',
  BUSY: 'busy',
  DISPOSED: 'disposed',
  WORKER_FAILED: 'worker-failed', // the worker stopped answering, or could not start
  WORKER_CRASHED: 'worker-crashed', // an uncaught error ended the worker, and the models in it
  INTERNAL: 'internal',
});

const CODES = new Set(Object.values(ErrorCode));

export class ResNetError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'ResNetError';
    this.code = CODES.has(code) ? code : ErrorCode.INTERNAL;
  }
}

// Any thrown value as a reply: the crate's errors carry their code, ours too.
export function failure(id, error) {
  return { type: Reply.FAILED, id, code: error?.code ?? ErrorCode.INTERNAL, message: error?.message ?? String(error) };
}
