#!/usr/bin/env python3
"""Makes the gradient-flow fixtures under tests/fixtures/gradient-flow (committed; tests never
run PyTorch): a CIFAR ResNet-8 and its plain twin (1 input channel, 3 classes), PyTorch's own
random initialisation with BatchNorm scales and shifts randomised too, one batch, and each
weight layer's gradient and weight norms after one backward pass in training mode.

    pip install torch torchvision safetensors numpy
    python3 scripts/make_gradient_fixtures.py
"""
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file
from torchvision.models.resnet import BasicBlock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import CifarResNet, synthetic  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "gradient-flow")


class PlainBlock(BasicBlock):
    """torchvision's BasicBlock without its shortcut: relu(F(x)), not relu(F(x) + x)."""

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(x)))


def plain_twin(model):
    """The same network with every block's shortcut removed (weights kept)."""
    for stage in (model.layer1, model.layer2, model.layer3):
        for index, block in enumerate(stage):
            plain = PlainBlock(block.conv1.in_channels, block.conv1.out_channels, block.stride)
            plain.load_state_dict(block.state_dict())
            stage[index] = plain
    return model


def weight_layers(model):
    """(torchvision name, parameter) of every convolution and the classifier, in depth order."""
    return [
        (name[: -len(".weight")], param)
        for name, param in model.named_parameters()
        if name.endswith(".weight") and param.dim() in (2, 4)
    ]


def main():
    os.makedirs(OUT, exist_ok=True)
    shape = [4, 1, 12, 12]
    images = torch.from_numpy(synthetic("gradient flow input", shape) * 2.0 - 1.0)
    labels = torch.tensor([0, 1, 2, 1])
    fixture = {"input_shape": shape, "input": images.flatten().tolist(), "labels": labels.tolist()}
    for name in ["resnet8", "plain8"]:
        torch.manual_seed(8)
        model = CifarResNet(8, num_classes=3, in_channels=1)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.data.uniform_(0.5, 1.5)
                module.bias.data.uniform_(-0.2, 0.2)
        metadata = None
        if name.startswith("plain"):
            model = plain_twin(model)
            metadata = {"format": "pt", "shortcut": "none"}
        # Saved before the forward pass: training mode updates the running statistics.
        save_file(model.state_dict(), os.path.join(OUT, f"{name}.safetensors"), metadata=metadata)
        model.train()
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        fixture[name] = {
            "loss": loss.item(),
            "layers": [
                {
                    "name": layer,
                    "grad_norm": param.grad.double().norm().item(),
                    "weight_norm": param.detach().double().norm().item(),
                }
                for layer, param in weight_layers(model)
            ],
        }
        print(f"{name}: loss {loss.item():.5f}, {len(fixture[name]['layers'])} weight layers")
    with open(os.path.join(OUT, "norms.json"), "w") as file:
        json.dump(fixture, file, indent=1)


if __name__ == "__main__":
    main()
