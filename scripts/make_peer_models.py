"""ONNX models for the benchmark's onnxruntime-web runs (scripts/bench.sh calls this).

The same ResNets as ours, random weights, NCHW float32 input with a free batch size:
  resnet18-224.onnx  torchvision's ResNet-18: 7x7 stem, max pool, projection shortcuts, 1000 classes
  resnet20-32.onnx   the CIFAR ResNet-20: 3x3 stem, option A shortcuts (subsample, zero channels)
Conv and BatchNormalization stay separate nodes, as torchvision exports them: folding BN into
the conv is onnxruntime's own graph optimisation, part of what is measured.

  python3 scripts/make_peer_models.py OUT_DIR      (needs the `onnx` and `numpy` packages)
The models are generated, never committed.
"""

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class Graph:
    def __init__(self, seed):
        self.nodes = []
        self.weights = []
        self.rng = np.random.default_rng(seed)
        self.count = 0

    def name(self, prefix):
        self.count += 1
        return f"{prefix}{self.count}"

    def weight(self, prefix, values):
        name = self.name(prefix)
        self.weights.append(numpy_helper.from_array(values.astype(np.float32), name))
        return name

    def node(self, op, inputs, **attributes):
        output = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [output], **attributes))
        return output

    def conv(self, x, in_channels, out_channels, kernel, stride):
        # He initialisation keeps activations in range through the depth.
        std = np.sqrt(2.0 / (in_channels * kernel * kernel))
        w = self.weight("w", self.rng.normal(0, std, (out_channels, in_channels, kernel, kernel)))
        pad = kernel // 2
        return self.node("Conv", [x, w], kernel_shape=[kernel, kernel], strides=[stride, stride],
                         pads=[pad, pad, pad, pad])

    def batch_norm(self, x, channels):
        params = [self.rng.uniform(0.8, 1.2, channels), self.rng.normal(0, 0.1, channels),
                  self.rng.normal(0, 0.1, channels), self.rng.uniform(0.8, 1.2, channels)]
        names = [self.weight(p, v) for p, v in zip(["gamma", "beta", "mean", "var"], params)]
        return self.node("BatchNormalization", [x, *names], epsilon=1e-5)

    def conv_bn(self, x, in_channels, out_channels, kernel, stride, relu):
        x = self.batch_norm(self.conv(x, in_channels, out_channels, kernel, stride), out_channels)
        return self.node("Relu", [x]) if relu else x

    def constant(self, prefix, values):
        name = self.name(prefix)
        self.weights.append(numpy_helper.from_array(np.array(values, dtype=np.int64), name))
        return name

    def basic_block(self, x, in_channels, out_channels, stride, shortcut):
        y = self.conv_bn(x, in_channels, out_channels, 3, stride, relu=True)
        y = self.conv_bn(y, out_channels, out_channels, 3, 1, relu=False)
        if in_channels == out_channels and stride == 1:
            identity = x
        elif shortcut == "projection":
            identity = self.conv_bn(x, in_channels, out_channels, 1, stride, relu=False)
        else:  # option A: x[:, :, ::s, ::s] with zero channels on both sides
            sliced = self.node("Slice", [x, self.constant("starts", [0, 0]),
                                         self.constant("ends", [2**62, 2**62]),
                                         self.constant("axes", [2, 3]),
                                         self.constant("steps", [stride, stride])])
            extra = out_channels - in_channels
            pads = [0, extra // 2, 0, 0, 0, extra - extra // 2, 0, 0]
            identity = self.node("Pad", [sliced, self.constant("pads", pads)], mode="constant")
        return self.node("Relu", [self.node("Add", [y, identity])])

    def head(self, x, channels, classes):
        x = self.node("Flatten", [self.node("GlobalAveragePool", [x])], axis=1)
        w = self.weight("fc_w", self.rng.normal(0, np.sqrt(1.0 / channels), (classes, channels)))
        b = self.weight("fc_b", np.zeros(classes))
        return self.node("Gemm", [x, w, b], transB=1)

    def model(self, name, x, logits, in_channels, size, classes):
        inputs = [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", in_channels, size, size])]
        outputs = [helper.make_tensor_value_info(logits, TensorProto.FLOAT, ["batch", classes])]
        graph = helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.weights)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def resnet18(classes=1000, size=224):
    g = Graph(seed=18)
    x = g.conv_bn("input", 3, 64, 7, 2, relu=True)
    x = g.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    channels = 64
    for stage, out_channels in enumerate([64, 128, 256, 512]):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            x = g.basic_block(x, channels, out_channels, stride, "projection")
            channels = out_channels
    return g.model("resnet18", "input", g.head(x, channels, classes), 3, size, classes)


def resnet20(classes=10, size=32, in_channels=3):
    g = Graph(seed=20)
    x = g.conv_bn("input", in_channels, 16, 3, 1, relu=True)
    channels = 16
    for stage, out_channels in enumerate([16, 32, 64]):
        for block in range(3):
            stride = 2 if stage > 0 and block == 0 else 1
            x = g.basic_block(x, channels, out_channels, stride, "zero-pad")
            channels = out_channels
    return g.model("resnet20", "input", g.head(x, channels, classes), in_channels, size, classes)


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/models")
    out.mkdir(parents=True, exist_ok=True)
    for file, model in [("resnet18-224.onnx", resnet18()), ("resnet20-32.onnx", resnet20())]:
        onnx.save(model, out / file)
        print(f"{out / file}: {(out / file).stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
