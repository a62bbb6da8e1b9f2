// Every export of resnet-web, typed: `npx tsc -p examples` checks this file against the
// package's declarations (js/resnet-web.d.ts).
import {
  ErrorCode, Model, ResNetError, Run, TransferLearner, cpuThreads, describeWeights, loadModel, memory, setCpuThreads, shippedModels, train,
  type CpuThreads, type ErrorCodeValue, type MemoryUse, type Predictions, type TrainingSummary, type WeightsDescription,
} from 'resnet-web';

export async function classifyAnImage(image: HTMLImageElement): Promise<string> {
  const model: Model = await loadModel(shippedModels.digits, { backend: 'auto' });
  model.on('backend', ({ backend, notice, timings }) => console.log(backend, notice ?? '', timings?.cpu, timings?.webgpu, timings?.cpuThreads?.[2], timings?.webgpuDifference));
  console.log(model.measuring, model.timings?.cpu);
  const predictions: Predictions = await model.classify(image, { topK: 3, heatMap: true });
  const heat = predictions.heatMap?.values.length ?? 0;
  console.log(predictions.milliseconds, predictions.probabilities.length, heat, model.input, model.numClasses);
  const [best] = predictions;
  model.dispose();
  const held: MemoryUse = await memory();
  console.log(Object.values(held.heapBytes).reduce((sum, bytes) => sum + bytes, 0), held.wasmBytes, held.models, held.learners, held.runs);
  return `${best.label} (${(100 * best.probability).toFixed(1)}%)`;
}

// One thread fewer than the pool has, where it has more than one; otherwise why not.
export async function fewerThreads(): Promise<string> {
  const now: CpuThreads = await cpuThreads();
  if (now.available === 1) return `one thread: ${now.reason ?? 'a one-core machine'}`;
  const after = await setCpuThreads(now.available - 1);
  return `${after.threads} of ${after.available} threads`;
}

export async function fromAFile(file: File, pixels: ImageData): Promise<Uint8Array> {
  const described: WeightsDescription = await describeWeights(file);
  const model = await loadModel(file, { input: described.inChannels === 3 ? 'rgb-32' : 'gray-28', classNames: [] });
  await model.classify({ data: pixels.data, width: pixels.width, height: pixels.height });
  return model.export('safetensors');
}

export async function ownClasses(cats: HTMLCanvasElement[], dogs: HTMLCanvasElement[]): Promise<TrainingSummary | undefined> {
  const data = {
    classNames: ['cat', 'dog'],
    examples: [...cats.map((image) => ({ image, label: 'cat' })), ...dogs.map((image) => ({ image, label: 1 }))],
  };
  const run: Run = train(data, { arch: 'resnet8', input: 'rgb-32', epochs: 5, backend: 'cpu' });
  const stopListening = run.on('step', ({ step, totalSteps, loss }) => console.log(step, totalSteps, loss));
  run.on('start', ({ trainCount, timings }) => console.log(trainCount, timings?.webgpu));
  run.on('epoch', ({ accuracy }) => console.log(accuracy));
  run.on('notice', ({ message }) => console.log(message));
  run.on('gradients', ({ step, layers }) => console.log(step, layers.map(({ name, depth, gradNorm, weightNorm }) => `${name} ${depth} ${gradNorm / weightNorm}`)));
  run.pause();
  run.resume();
  const model = await run.result;
  stopListening();
  const allLayers = model.fineTune(data, { fineTune: 'all', epochs: 1, estimateFirst: true });
  allLayers.on('estimate', ({ seconds, waiting }) => (waiting && seconds < 60 ? allLayers.resume() : allLayers.stop()));
  await allLayers.result;
  const tuned = await model.fineTune(data, { fineTune: 'head', epochs: 1 }).result;
  const bytes = await tuned.export('burnpack');
  console.log(bytes.length);
  return tuned.trainingSummary;
}

export async function carefully(image: HTMLCanvasElement, model: Model): Promise<void> {
  try {
    await model.classify(image);
  } catch (error) {
    if (error instanceof ResNetError) {
      const code: ErrorCodeValue = error.code;
      if (code === ErrorCode.BAD_INPUT) console.log('not a picture:', error.message);
    }
    throw error;
  }
  const digits = train({ mnistJson: ['0.json'], heldOutPerClass: 10 }, { subset: 100 });
  digits.stop();
}

export async function teachableMachine(model: Model, frames: { image: HTMLCanvasElement; label: number }[]): Promise<number> {
  const learner: TransferLearner = model.transferLearner();
  const examples = [];
  for (const { image, label } of frames) examples.push({ id: await learner.add(image), label });
  learner.remove(examples[0].id);
  const tuned = await learner.train({ classNames: ['left', 'right'], examples: examples.slice(1) }, { epochs: 100, validationFraction: 0.25 });
  learner.dispose();
  return tuned.trainingSummary?.validation?.accuracy ?? 0;
}
