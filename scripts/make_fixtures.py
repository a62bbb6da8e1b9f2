#!/usr/bin/env python3
"""Makes the PyTorch parity fixtures under tests/fixtures (committed; tests never run PyTorch).

    pip install torch torchvision safetensors numpy
    python3 scripts/make_fixtures.py

torchvision resnet18/resnet50 weights are too big to commit, so their weights come from a
counter-based generator that tests/common/mod.rs reproduces bit for bit (`synthetic`): the
fixture is the list of torchvision's keys and shapes, and PyTorch's logits. BatchNorm
weights, biases and running statistics are randomised too, or a BatchNorm-loading bug would
go unseen. The CIFAR resnet20 is small enough to commit as real files written by PyTorch
(.safetensors and .pth), with torch's own random initialisation.
"""
import math
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file
from torchvision.models.resnet import BasicBlock

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def fnv1a(text):
    h = 0xCBF29CE484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001B3) % 2**64
    return h


def uniform01(name, count):
    """splitmix64 of (fnv1a(name) + (i + 1) * golden), top 53 bits, in [0, 1)."""
    with np.errstate(over="ignore"):
        z = np.uint64(fnv1a(name)) + (np.arange(count, dtype=np.uint64) + np.uint64(1)) * GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


def synthetic(name, shape):
    """The value of every tensor of a torchvision state_dict, from its name and shape."""
    count = int(np.prod(shape)) if shape else 1
    u = uniform01(name, count)
    if len(shape) == 4:  # convolution: unit-gain uniform bound, so 16 bottlenecks do not blow up
        values = (2.0 * u - 1.0) * math.sqrt(3.0 / (shape[1] * shape[2] * shape[3]))
    elif len(shape) == 2:  # classifier
        values = (2.0 * u - 1.0) * (1.0 / math.sqrt(shape[1]))
    elif name.endswith("running_var") or name.endswith("weight"):
        values = 0.5 + u
    elif name == "fc.bias":
        values = 0.1 * (2.0 * u - 1.0)
    else:  # BatchNorm bias and running mean
        values = 0.2 * (2.0 * u - 1.0)
    return values.astype(np.float32).reshape(shape)


def save_npy(name, array):
    np.save(os.path.join(OUT, name), np.ascontiguousarray(array, dtype=np.float32))


def torchvision_fixture(arch, input_shape):
    model = getattr(torchvision.models, arch)(weights=None)
    state = model.state_dict()
    with open(os.path.join(OUT, f"{arch}.keys"), "w") as keys:
        keys.write("# torchvision state_dict keys: name dtype shape\n")
        for name, tensor in state.items():
            dtype = str(tensor.dtype).replace("torch.", "")
            keys.write(f"{name} {dtype} {','.join(map(str, tensor.shape))}\n")
            if tensor.dtype == torch.float32:
                state[name] = torch.from_numpy(synthetic(name, list(tensor.shape)))
    model.load_state_dict(state)
    model.eval()
    images = torch.from_numpy(synthetic("input", input_shape) * 2.0 - 1.0)
    with torch.no_grad():
        logits = model(images).numpy()
    save_npy(f"{arch}.logits.npy", logits)
    print(f"{arch}: logits {logits.shape}, max |logit| {np.abs(logits).max():.3f}")


class ZeroPadShortcut(nn.Module):
    """He et al.'s option A: subsample and pad the new channels with zeros (no parameters)."""

    def __init__(self, stride, extra):
        super().__init__()
        self.stride, self.extra = stride, extra

    def forward(self, x):
        x = x[:, :, :: self.stride, :: self.stride]
        before = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, before, self.extra - before))


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet (6n+2 layers), named as torchvision names its ResNets."""

    def __init__(self, depth, num_classes=10, in_channels=3):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages, channels = [], 16
        for width, stride in [(16, 1), (32, 2), (64, 2)]:
            blocks = []
            for index in range(n):
                s = stride if index == 0 else 1
                shortcut = None
                if s != 1 or channels != width:
                    shortcut = ZeroPadShortcut(s, width - channels)
                blocks.append(BasicBlock(channels, width, s, shortcut))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def cifar_fixture():
    torch.manual_seed(20)
    model = CifarResNet(20)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    state = model.state_dict()
    save_file(state, os.path.join(OUT, "resnet20.safetensors"))
    torch.save(state, os.path.join(OUT, "resnet20.pth"))
    images = torch.from_numpy(synthetic("input", [4, 3, 32, 32]) * 2.0 - 1.0)
    with torch.no_grad():
        logits = model(images).numpy()
    save_npy("resnet20.logits.npy", logits)
    print(f"resnet20: {params} parameters, max |logit| {np.abs(logits).max():.3f}")


# (width, height) of the preprocessing fixtures: wider, taller, and smaller than 256.
PREPROCESS_SIZES = [(300, 200), (200, 300), (100, 80)]


def synthetic_rgba(width, height):
    """Noise, the hardest case for resampling: byte = floor(u * 256), alpha opaque."""
    rgba = np.floor(uniform01(f"image-{width}x{height}", width * height * 4) * 256).astype(np.uint8)
    rgba = rgba.reshape(height, width, 4)
    rgba[:, :, 3] = 255
    return rgba


def preprocess_fixture():
    """torchvision's ImageNet eval transform on float tensors (antialiased bilinear, as on PIL
    images); every 7th row and column of the output is kept to keep the fixture small."""
    from torchvision.transforms.v2 import functional as TF

    for width, height in PREPROCESS_SIZES:
        rgb = torch.from_numpy(synthetic_rgba(width, height)[:, :, :3].copy())
        image = rgb.permute(2, 0, 1).float() / 255.0
        image = TF.resize(image, [256], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        image = TF.center_crop(image, [224])
        image = TF.normalize(image, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        save_npy(f"imagenet-{width}x{height}.npy", image[:, ::7, ::7].numpy())
    print(f"preprocessing: {len(PREPROCESS_SIZES)} images")


def imagenet_class_names():
    """The page names ImageNet classes as torchvision does."""
    import json

    from torchvision.models import ResNet18_Weights

    names = ResNet18_Weights.DEFAULT.meta["categories"]
    www = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "www")
    with open(os.path.join(www, "imagenet-classes.json"), "w") as out:
        json.dump(names, out)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(2)
    torchvision_fixture("resnet18", [2, 3, 64, 64])
    torchvision_fixture("resnet50", [2, 3, 64, 64])
    cifar_fixture()
    preprocess_fixture()
    imagenet_class_names()
