// Types of resnet-web's public API (resnet-web.js).

export type Backend = 'auto' | 'webgpu' | 'cpu';
export type Input = 'digit' | 'fashion' | 'imagenet' | 'gray-28' | 'gray-32' | 'rgb-28' | 'rgb-32';
export type ExportFormat = 'safetensors' | 'burnpack';
export type Arch = 'resnet8' | 'resnet14' | 'resnet20' | 'resnet32' | 'resnet44' | 'resnet56'
  | 'resnet110' | 'resnet18' | 'resnet34' | 'resnet50' | 'resnet101' | 'resnet152'
  /** The plain twins: the same layers with no shortcut in any block. */
  | 'plain8' | 'plain14' | 'plain20' | 'plain32' | 'plain44' | 'plain56'
  | 'plain110' | 'plain18' | 'plain34' | 'plain50' | 'plain101' | 'plain152';

export declare const ErrorCode: Readonly<{
  BAD_OPTIONS: 'bad-options';
  BAD_WEIGHTS: 'bad-weights';
  BAD_INPUT: 'bad-input';
  BAD_TRAINING: 'bad-training';
  BACKEND_FAILED: 'backend-failed';
  UNSUPPORTED: 'unsupported';
  IO: 'io';
  NETWORK: 'network';
  BUSY: 'busy';
  DISPOSED: 'disposed';
  WORKER_FAILED: 'worker-failed';
  WORKER_CRASHED: 'worker-crashed';
  INTERNAL: 'internal';
}>;
export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Every failure of the library: branch on `code`, show `message`. */
export declare class ResNetError extends Error {
  constructor(code: ErrorCodeValue, message: string);
  readonly name: 'ResNetError';
  readonly code: ErrorCodeValue;
}

/** A model that comes with the package. */
export interface ShippedModel { readonly shipped: 'digits' | 'fashion' }
export declare const shippedModels: Readonly<{ digits: ShippedModel; fashion: ShippedModel }>;

export type WeightSource = string | URL | Blob | ArrayBuffer | Uint8Array | ShippedModel;

export interface LoadOptions {
  /**
   * 'auto' (default): answers on the CPU at once, then times a prediction on WebGPU against
   * one on the CPU and runs on the faster.
   */
  backend?: Backend;
  /** How the model reads pixels; inferred from the file where it can be. */
  input?: Input;
  classNames?: string[];
}

/**
 * Pixels in any form a canvas can draw, RGBA bytes with their size, or a PNG or JPEG file:
 * its bytes, a Blob, or its URL or path (relative to the page; outside a page, Deno's
 * working directory). Files are decoded by the browser, or in the wasm where there is no canvas.
 */
export type ImageInput = HTMLImageElement | HTMLCanvasElement | OffscreenCanvas | HTMLVideoElement
  | ImageBitmap | ImageData | { data: Uint8Array | Uint8ClampedArray; width: number; height: number }
  | Uint8Array | ArrayBuffer | Blob | URL | string;

export interface ClassifyOptions {
  /** How many classes to return, best first (default 5). */
  topK?: number;
  /** Where the model looked for its top class. */
  heatMap?: boolean;
  /** Exactly what the model received, for showing it. */
  modelInput?: boolean;
}

export interface Prediction { label: string; probability: number; index: number }

export interface Predictions extends Array<Prediction> {
  /** Every class's probability, in class order. */
  probabilities: Float32Array;
  milliseconds: number;
  /** Row-major [size, size] in [0, 1]. */
  heatMap?: { values: Float32Array; size: number };
  /** [channels, size, size] in the model's own scale. */
  modelInput?: { values: Float32Array; channels: number; size: number };
}

/**
 * Milliseconds on each device; cpuThreads: a prediction's at each thread count, where 'auto'
 * measured them. webgpuDifference (a model) and webgpuLossDifference (a run, relative): how
 * far WebGPU's answer was from the CPU's; over 1e-3, WebGPU is not used, and webgpu is absent.
 * webgpuMissing: true where the browser has no WebGPU at all (nothing was tried).
 */
export interface DeviceTimings { cpu: number; webgpu?: number; cpuThreads?: Record<number, number>; webgpuDifference?: number; webgpuLossDifference?: number; webgpuMissing?: boolean }
export interface BackendEvent { backend: string; notice?: string; timings?: DeviceTimings }

export interface Evaluation {
  accuracy: number;
  loss: number;
  count: number;
  /** Row: true class, column: predicted; [classes * classes]. */
  confusion: Uint32Array;
  perClass: Float64Array;
}

export interface TrainingSummary {
  stopped: boolean;
  /** For a head trained on embeddings: its figures on the training pictures, and its losses. */
  train?: Evaluation;
  losses?: number[];
  failure: string | null;
  validation: Evaluation | null;
  test: Evaluation | null;
  steps: number;
  totalSteps: number;
  seconds: number;
  backend: string;
}

export declare class Model {
  private constructor();
  /** What runs the model, in words (the WebGPU adapter, or CPU). */
  readonly backend: string;
  readonly classNames: readonly string[];
  readonly input: Input;
  readonly numClasses: number;
  /** Why the model is not where it was asked to be, if it is not. */
  readonly notice?: string;
  /** True while an 'auto' model is still timing WebGPU against the CPU. */
  readonly measuring: boolean;
  /** What 'auto' measured, once it has. */
  readonly timings?: DeviceTimings;
  /** How the run that made this model went; undefined for a loaded model. */
  readonly trainingSummary?: TrainingSummary;
  classify(image: ImageInput, options?: ClassifyOptions): Promise<Predictions>;
  on(event: 'backend', handler: (event: BackendEvent) => void): () => void;
  export(format?: ExportFormat): Promise<Uint8Array>;
  fineTune(data: TrainingData, options?: TrainOptions & { fineTune?: 'all' | 'head' }): Run;
  /** Transfer learning: embeddings made once per picture, new classifiers trained on them. */
  transferLearner(): TransferLearner;
  dispose(): void;
}

export interface HeadOptions {
  epochs?: number;
  learningRate?: number;
  weightDecay?: number;
  validationFraction?: number;
  seed?: number;
  backend?: Backend;
}

export declare class TransferLearner {
  private constructor();
  /** Embeds the picture with the model's backbone (once) and keeps it; resolves to its id. */
  add(image: ImageInput): Promise<number>;
  remove(id: number): void;
  /** The backbone with a new classifier trained on the kept embeddings of `examples`. */
  train(data: { classNames: string[]; examples: { id: number; label: number }[] }, options?: HeadOptions): Promise<Model>;
  dispose(): void;
}

export type TrainingData =
  | { classNames: string[]; examples: { image: ImageInput; label: number | string }[] }
  | { idx: { trainImages: string | Uint8Array; trainLabels: string | Uint8Array; testImages?: string | Uint8Array; testLabels?: string | Uint8Array }; classNames: string[]; input?: Input }
  | { mnistJson: (string | Uint8Array)[]; heldOutPerClass?: number };

export interface TrainOptions {
  arch?: Arch;
  /** How pictures are read (for `examples`); the IDX and mnist sets read 'digit'/'fashion'. */
  input?: Input;
  epochs?: number;
  batchSize?: number;
  learningRate?: number;
  weightDecay?: number;
  optimizer?: 'adam' | 'sgd';
  schedule?: 'one-cycle' | 'cosine' | 'constant';
  augment?: boolean;
  validationFraction?: number;
  seed?: number;
  backend?: Backend;
  /** Train on this many pictures of the set, drawn at random (seeded). */
  subset?: number;
  /** Test on this many of the held-out pictures. */
  testSubset?: number;
  /** After the first step, emit 'estimate' and wait for resume() (or stop()). */
  estimateFirst?: boolean;
  /** Every how many steps 'gradients' comes (the first step included); 0: never. Default: 10
   * when a 'gradients' handler is added as the run starts, else 0. */
  gradientEvery?: number;
  /**
   * The most bytes a run may need (its model, optimizer state and a step's activations):
   * measured on the CPU from steps of 1, 2, 4, 8 and 16 pictures before the run starts, and
   * past it the run is refused with 'bad-options' and the largest batch that fits. Default:
   * 1 GiB on a phone or tablet (a touch screen with no fine pointer), else 3.5 GiB. Where the
   * run may train on WebGPU, what the GPU's memory pool would hold (2.2 times the CPU's bytes,
   * the most measured) is held to it too on a phone or tablet, or where it is given: past it
   * 'auto' trains on the CPU, with a notice, and 'webgpu' is refused.
   */
  memoryLimit?: number;
}

/**
 * timings: with backend 'auto', the milliseconds a step took on each device. memory: the
 * bytes the run was measured to need on the CPU (see memoryLimit), and `webgpu`, of the GPU
 * memory pool, where it was measured there.
 */
export interface RunStart { backend: string; trainCount: number; validationCount: number; totalSteps: number; classNames: string[]; timings?: DeviceTimings; memory: MemoryMeasure & { webgpu?: MemoryMeasure } }
export interface MemoryMeasure { needed: number; fixed: number; perPicture: number; batch: number }
export interface RunStep { step: number; totalSteps: number; epoch: number; loss: number; accuracy: number; imagesPerSecond: number; secondsLeft: number }
/** After the first step: how long the run's steps take, by the first one. */
export interface RunEstimate { secondsPerStep: number; totalSteps: number; seconds: number; backend: string; waiting: boolean }
export interface RunEpoch { epoch: number; accuracy: number; loss: number }
export interface RunNotice { message: string; backend?: string; resumedFrom?: number }
/** A weight layer (a convolution or the classifier) at a step: the L2 norms of its weight
 * gradient (0 when frozen) and of its weights. depth: 1 (the stem) to the classifier. */
export interface LayerGradient { name: string; depth: number; gradNorm: number; weightNorm: number }
/** step counts from 0: step 0's gradients are the fresh model's. */
export interface RunGradients { step: number; layers: LayerGradient[] }

export declare class Run {
  private constructor();
  /** The trained model, whatever ended the run (its trainingSummary says what did). */
  readonly result: Promise<Model>;
  on(event: 'start', handler: (event: RunStart) => void): () => void;
  on(event: 'step', handler: (event: RunStep) => void): () => void;
  on(event: 'estimate', handler: (event: RunEstimate) => void): () => void;
  on(event: 'epoch', handler: (event: RunEpoch) => void): () => void;
  on(event: 'notice', handler: (event: RunNotice) => void): () => void;
  on(event: 'gradients', handler: (event: RunGradients) => void): () => void;
  pause(): void;
  resume(): void;
  stop(): void;
}

export declare function loadModel(source: WeightSource, options?: LoadOptions): Promise<Model>;
export interface WeightsDescription { arch: Arch; numClasses: number; inChannels: number }
export declare function describeWeights(source: string | URL | Blob | ArrayBuffer | Uint8Array): Promise<WeightsDescription>;
export declare function train(data: TrainingData, options?: TrainOptions): Run;
/**
 * threads: a CPU prediction's now; available: the pool's size (1 where the page is not cross-origin isolated, with the reason);
 * module: the wasm module that runs the CPU; fma: whether its kernels use relaxed SIMD's fused multiply-add (browsers that have it).
 */
export interface CpuThreads {
  threads: number;
  available: number;
  reason: string | null;
  module: 'pkg' | 'pkg-fma' | 'pkg-threads' | 'pkg-threads-fma';
  fma: boolean;
}
export declare function cpuThreads(): Promise<CpuThreads>;
export declare function setCpuThreads(threads: number): Promise<CpuThreads>;

/**
 * What the library's worker holds, for each wasm module it loaded: heapBytes, what its code
 * holds now (flat over a session that disposes what it makes), heapPeakBytes, the most it
 * held at once since the last CPU run was measured (or the module loaded), and wasmBytes, its
 * memory's size (it only grows; freed bytes are reused); gpuPoolBytes, what the GPU memory
 * pool holds on WebGPU (null before WebGPU opens); and the models, learners and runs alive.
 */
export interface MemoryUse { heapBytes: Record<string, number>; heapPeakBytes: Record<string, number>; wasmBytes: Record<string, number>; gpuPoolBytes: number | null; models: number; learners: number; runs: number }
export declare function memory(): Promise<MemoryUse>;
