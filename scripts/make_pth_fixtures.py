#!/usr/bin/env python3
"""Makes the torch.save fixtures under tests/fixtures (committed; tests never run PyTorch):
one small CIFAR ResNet-8 saved as PyTorch users save it, and PyTorch's logits for it.

    pip install torch numpy
    python3 scripts/make_pth_fixtures.py

  resnet8-zip.pth         torch.save(model.state_dict(), path) (the zip format, PyTorch >= 1.6)
  resnet8-legacy.pth      the same with _use_new_zipfile_serialization=False
  resnet8-module.pth      a DataParallel state_dict: every key prefixed with "module."
  resnet8-checkpoint.pth  {"epoch", "state_dict", "optimizer", "best_acc1"}, as training scripts save
  resnet8-whole-model.pth torch.save(model): a pickled nn.Module, which readers must refuse
  resnet8.logits.npy      the model's logits on the shared synthetic input [4, 3, 32, 32]
"""
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def fnv1a(text):
    h = 0xCBF29CE484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001B3) % 2**64
    return h


def uniform01(name, count):
    """splitmix64 of (fnv1a(name) + (i + 1) * golden), as tests/common/mod.rs computes it."""
    with np.errstate(over="ignore"):
        z = np.uint64(fnv1a(name)) + (np.arange(count, dtype=np.uint64) + np.uint64(1)) * GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


class ZeroPadShortcut(nn.Module):
    """He et al.'s option A: subsample and pad the new channels with zeros."""

    def __init__(self, stride, extra):
        super().__init__()
        self.stride, self.extra = stride, extra

    def forward(self, x):
        x = x[:, :, :: self.stride, :: self.stride]
        before = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, before, self.extra - before))


class BasicBlock(nn.Module):
    """torchvision's BasicBlock, named as torchvision names it."""

    def __init__(self, inplanes, planes, stride, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet (6n+2 layers)."""

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
                shortcut = ZeroPadShortcut(s, width - channels) if s != 1 or channels != width else None
                blocks.append(BasicBlock(channels, width, s, shortcut))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def main():
    torch.manual_seed(8)
    model = CifarResNet(8)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.num_batches_tracked.fill_(7)
    model.eval()
    state = model.state_dict()
    path = lambda name: os.path.join(OUT, name)
    torch.save(state, path("resnet8-zip.pth"))
    torch.save(state, path("resnet8-legacy.pth"), _use_new_zipfile_serialization=False)
    torch.save({f"module.{k}": v for k, v in state.items()}, path("resnet8-module.pth"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    torch.save(
        {"epoch": 3, "arch": "resnet8", "state_dict": state, "optimizer": optimizer.state_dict(), "best_acc1": 0.5},
        path("resnet8-checkpoint.pth"),
    )
    torch.save(model, path("resnet8-whole-model.pth"))
    # tests/common/mod.rs `synthetic_images(CIFAR_INPUT)`, as make_fixtures.py makes it.
    bound = np.sqrt(3.0 / (3 * 32 * 32))
    u = uniform01("input", 4 * 3 * 32 * 32)
    images = torch.from_numpy((((2.0 * u - 1.0) * bound).astype(np.float32) * 2.0 - 1.0).reshape(4, 3, 32, 32))
    with torch.no_grad():
        logits = model(images).numpy()
    np.save(path("resnet8.logits.npy"), np.ascontiguousarray(logits, dtype=np.float32))
    params = sum(p.numel() for p in model.parameters())
    print(f"resnet8: {params} parameters, max |logit| {np.abs(logits).max():.3f}")


if __name__ == "__main__":
    main()
