// The benchmark's ResNets in TensorFlow.js (tf.layers, channels last, random weights): the
// same layers as ours and as scripts/make_peer_models.py's ONNX models.
//   resnet18: 7x7 stem, max pool, four stages of two basic blocks, projection shortcuts
//   resnet20: 3x3 stem, three stages of three basic blocks, option A shortcuts

let channelPadRegistered = null;

// Option A's shortcut widens the channels with zeros; tf.layers has no such layer.
function channelPadLayer(tf) {
  if (channelPadRegistered) return channelPadRegistered;
  class ChannelPad extends tf.layers.Layer {
    constructor(config) {
      super(config);
      this.extra = config.extra;
    }

    computeOutputShape(shape) {
      return [shape[0], shape[1], shape[2], shape[3] + this.extra];
    }

    call(inputs) {
      const x = Array.isArray(inputs) ? inputs[0] : inputs;
      const before = this.extra >> 1;
      return tf.pad(x, [[0, 0], [0, 0], [0, 0], [before, this.extra - before]]);
    }

    getConfig() {
      return { ...super.getConfig(), extra: this.extra };
    }

    static get className() {
      return 'ChannelPad';
    }
  }
  tf.serialization.registerClass(ChannelPad);
  channelPadRegistered = ChannelPad;
  return ChannelPad;
}

function convBn(tf, x, filters, kernel, stride, relu) {
  let y = tf.layers.conv2d({
    filters, kernelSize: kernel, strides: stride, padding: 'same', useBias: false,
    kernelInitializer: 'heNormal',
  }).apply(x);
  y = tf.layers.batchNormalization({ epsilon: 1e-5, momentum: 0.9 }).apply(y);
  return relu ? tf.layers.reLU().apply(y) : y;
}

function basicBlock(tf, x, inChannels, outChannels, stride, shortcut) {
  let y = convBn(tf, x, outChannels, 3, stride, true);
  y = convBn(tf, y, outChannels, 3, 1, false);
  let identity = x;
  if (inChannels !== outChannels || stride !== 1) {
    if (shortcut === 'projection') {
      identity = convBn(tf, x, outChannels, 1, stride, false);
    } else {
      const ChannelPad = channelPadLayer(tf);
      const sampled = tf.layers.averagePooling2d({ poolSize: 1, strides: stride }).apply(x);
      identity = new ChannelPad({ extra: outChannels - inChannels }).apply(sampled);
    }
  }
  return tf.layers.reLU().apply(tf.layers.add().apply([y, identity]));
}

export function buildResNet(tf, arch, { classes, channels, size }) {
  const input = tf.input({ shape: [size, size, channels] });
  let x;
  let stages;
  let shortcut;
  if (arch === 'resnet18') {
    x = convBn(tf, input, 64, 7, 2, true);
    x = tf.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same' }).apply(x);
    stages = [[64, 2], [128, 2], [256, 2], [512, 2]];
    shortcut = 'projection';
  } else if (arch === 'resnet20') {
    x = convBn(tf, input, 16, 3, 1, true);
    stages = [[16, 3], [32, 3], [64, 3]];
    shortcut = 'zero-pad';
  } else {
    throw new Error(`no TF.js model for ${arch}`);
  }
  let inChannels = stages[0][0];
  stages.forEach(([outChannels, blocks], stage) => {
    for (let block = 0; block < blocks; block++) {
      const stride = stage > 0 && block === 0 ? 2 : 1;
      x = basicBlock(tf, x, inChannels, outChannels, stride, shortcut);
      inChannels = outChannels;
    }
  });
  x = tf.layers.globalAveragePooling2d({}).apply(x);
  const logits = tf.layers.dense({ units: classes }).apply(x);
  return tf.model({ inputs: input, outputs: logits });
}
