// The benchmark's ResNet-20 in jax-js (@jax-js/jax): the same layers as ours, TF.js's and the
// ONNX models' (3x3 stem, three stages of three basic blocks, option A shortcuts, global
// average pooling, a linear head), NCHW, random weights, written with its numpy, lax and nn.
// Inference is one `jit`; a training step is one `jit` of `valueAndGrad` of the
// cross-entropy (BatchNorm on the batch's statistics) and an Adam update.
//
// jax-js counts references: every function consumes its array arguments, so an array used
// twice is passed as `x.ref` the first time.

const EPSILON = 1e-5;
const STAGES = [16, 32, 64];

// Seeded uniform values in [-bound, bound): the same weights on every run.
function uniform(count, bound, seed) {
  const values = new Float32Array(count);
  let state = seed;
  for (let i = 0; i < count; i++) {
    state = (state * 1103515245 + 12345) % 2147483648;
    values[i] = (state / 2147483648 * 2 - 1) * bound;
  }
  return values;
}

export function resnet20(jax, { classes, channels }) {
  const { numpy: np, lax, nn } = jax;
  let seed = 1;
  const convWeight = (out, inChannels, kernel) => {
    const fanIn = inChannels * kernel * kernel;
    return np.array(uniform(out * fanIn, Math.sqrt(6 / fanIn), seed++)).reshape([out, inChannels, kernel, kernel]);
  };
  const batchNorm = (width) => ({ gamma: np.ones([width]), beta: np.zeros([width]) });
  // Running statistics for inference: fixed, not trained.
  const statistics = (width) => ({ mean: np.array(uniform(width, 0.1, seed++)), variance: np.ones([width]) });

  const params = { stem: convWeight(STAGES[0], channels, 3), stemNorm: batchNorm(STAGES[0]), blocks: [], head: null, bias: np.zeros([classes]) };
  const running = { stem: statistics(STAGES[0]), blocks: [] };
  const layout = []; // per block: {stride, extra channels of its shortcut}
  let width = STAGES[0];
  for (const [stage, out] of STAGES.entries()) {
    for (let block = 0; block < 3; block++) {
      const stride = stage > 0 && block === 0 ? 2 : 1;
      params.blocks.push({ conv1: convWeight(out, width, 3), norm1: batchNorm(out), conv2: convWeight(out, out, 3), norm2: batchNorm(out) });
      running.blocks.push({ norm1: statistics(out), norm2: statistics(out) });
      layout.push({ stride, extra: out - width });
      width = out;
    }
  }
  params.head = np.array(uniform(width * classes, Math.sqrt(1 / width), seed++)).reshape([width, classes]);

  const perChannel = (v) => v.reshape([1, -1, 1, 1]);
  // BatchNorm: with `running`, its statistics; else the batch's (training).
  function normalise(x, norm, running) {
    let mean;
    let variance;
    if (running) {
      mean = perChannel(running.mean);
      variance = perChannel(running.variance);
    } else {
      mean = np.mean(x.ref, [0, 2, 3], { keepdims: true });
      variance = np.var_(x.ref, [0, 2, 3], { keepdims: true });
    }
    const scale = perChannel(norm.gamma).div(np.sqrt(variance.add(EPSILON)));
    return x.sub(mean).mul(scale).add(perChannel(norm.beta));
  }
  const conv3x3 = (x, w, stride) => lax.conv(x, w, [stride, stride], [[1, 1], [1, 1]]);
  // Option A: every other pixel, and zero channels on both sides.
  function shortcut(x, { stride, extra }) {
    if (stride === 1 && extra === 0) return x;
    const [n, c, h, w] = x.shape;
    const sampled = x.reshape([n, c, h / 2, 2, w / 2, 2]).slice([], [], [], 0, [], 0);
    const before = extra >> 1;
    return np.pad(sampled, [[0, 0], [before, extra - before], [0, 0], [0, 0]]);
  }

  // Logits for a batch. With `statistics` (the running ones) BatchNorm uses them; without,
  // the batch's, as in training. Consumes all three.
  function forward(p, x, statistics) {
    let y = nn.relu(normalise(conv3x3(x, p.stem, 1), p.stemNorm, statistics?.stem));
    for (const [i, block] of p.blocks.entries()) {
      const r = statistics?.blocks[i] ?? {};
      let z = nn.relu(normalise(conv3x3(y.ref, block.conv1, layout[i].stride), block.norm1, r.norm1));
      z = normalise(conv3x3(z, block.conv2, 1), block.norm2, r.norm2);
      y = nn.relu(z.add(shortcut(y, layout[i])));
    }
    return np.matmul(np.mean(y, [2, 3]), p.head).add(p.bias);
  }
  return { params, running, forward };
}

// Adam on a parameter tree: m and v kept between steps; `corrections` are the step's bias
// corrections, 1 - beta1^t and 1 - beta2^t, as arrays (a number would be compiled in, and a
// jit would compile again at every step). Consumes everything it is given.
export const ADAM = { learningRate: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 };
export function adamUpdate(jax, params, grads, state, corrections) {
  const { tree, numpy: np } = jax;
  const { learningRate, beta1, beta2, epsilon } = ADAM;
  const m = tree.map((mi, g) => mi.mul(beta1).add(g.mul(1 - beta1)), state.m, tree.ref(grads));
  const v = tree.map((vi, g) => vi.mul(beta2).add(np.square(g).mul(1 - beta2)), state.v, grads);
  const { first, second } = corrections;
  const updated = tree.map(
    (p, mi, vi) => p.sub(mi.div(first.ref).mul(learningRate).div(np.sqrt(vi.div(second.ref)).add(epsilon))),
    params, tree.ref(m), tree.ref(v),
  );
  first.dispose();
  second.dispose();
  return { params: updated, state: { m, v } };
}
