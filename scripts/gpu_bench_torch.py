"""PyTorch's figures for the work `resnet bench` times (scripts/gpu-bench.sh), one JSON line
each, in the same fields: eager mode, float32, on CUDA. `--tf32 off` turns TF32 off for
matrix products and cuDNN (float32 as ours computes it); `--tf32 default` leaves PyTorch's
defaults. Each figure is a median of timed runs after warm-up, timed with CUDA events."""

import argparse
import json
import sys


def median_ms(work, warmup, runs):
    for _ in range(max(warmup, 1)):
        work()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    work()
    end.record()
    torch.cuda.synchronize()
    once = start.elapsed_time(end)
    repeats = min(max(int(2.0 / max(once, 1e-3)) + 1, 1), 50)
    times = []
    for _ in range(max(runs, 1)):
        start.record()
        for _ in range(repeats):
            work()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / repeats)
    times.sort()
    return times[len(times) // 2]


def cifar_resnet(depth, classes, channels):
    """He et al.'s CIFAR ResNet (option A shortcuts), as resnet-web builds it."""

    class Block(torch.nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = torch.nn.BatchNorm2d(cout)
            self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = torch.nn.BatchNorm2d(cout)
            self.stride, self.extra = stride, cout - cin

        def forward(self, x):
            y = F.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            shortcut = x[:, :, :: self.stride, :: self.stride]
            if self.extra:
                before = self.extra // 2
                shortcut = F.pad(shortcut, (0, 0, 0, 0, before, self.extra - before))
            return F.relu(y + shortcut)

    n = (depth - 2) // 6
    layers = [torch.nn.Conv2d(channels, 16, 3, 1, 1, bias=False), torch.nn.BatchNorm2d(16), torch.nn.ReLU()]
    cin = 16
    for width, stride in [(16, 1), (32, 2), (64, 2)]:
        for i in range(n):
            layers.append(Block(cin, width, stride if i == 0 else 1))
            cin = width
    layers += [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, classes)]
    return torch.nn.Sequential(*layers)


def model(arch, classes, channels):
    if arch == "resnet20":
        return cifar_resnet(20, classes, channels)
    net = getattr(torchvision.models, arch)(num_classes=classes)
    if channels != 3:
        net.conv1 = torch.nn.Conv2d(channels, 64, 7, 2, 3, bias=False)
    return net


def figure_key(figure):
    """What makes two lines the same work: the figure and its shape fields."""
    fields = ["figure", "arch", "size", "batch", "input", "model", "in_channels", "out_channels",
              "kernel", "stride", "shape"]
    return json.dumps([figure.get(field) for field in fields])


def ratios(path):
    """Ours over PyTorch's (TF32 off, and its default) for every figure both have."""
    lines = [json.loads(line) for line in open(path) if line.startswith("{")]
    ours = [line for line in lines if "framework" not in line and line.get("implementation", "ours") == "ours"]
    for tf32 in ["off", "default"]:
        theirs = {figure_key(line): line for line in lines if line.get("framework") == "pytorch" and line["tf32"] == tf32}
        for line in ours:
            other = theirs.get(figure_key(line))
            if other is None or line["figure"] == "adapter":
                continue
            ratio = {key: line[key] / other[key] for key in ["median_ms", "forward_ms", "forward_backward_ms"]
                     if key in line and key in other}
            key = {k: v for k, v in line.items() if not isinstance(v, float) and k != "figure"}
            print(json.dumps({"figure": "ours_over_pytorch", "of": line["figure"], "pytorch_tf32": tf32, **key,
                              **{f"{k}_ratio": v for k, v in ratio.items()}}))
    best_tiles(ours)


def best_tiles(lines):
    """Per convolution, the fastest tile and prefetch forward beside what the rule picks today
    (its tile, no prefetch): what the rule is tuned by."""
    by_shape = {}
    for line in lines:
        if line.get("figure") == "convolution" and "tile" in line and "framework" not in line:
            by_shape.setdefault(figure_key(line), []).append(line)
    for tiles in by_shape.values():
        best = min(tiles, key=lambda line: line["forward_ms"])
        rule = next((line for line in tiles if line["rule_tile"] and not line.get("prefetch")), None)
        if rule is None:
            continue
        shape = {k: best[k] for k in ["model", "batch", "in_channels", "size", "out_channels", "kernel", "stride"]}
        print(json.dumps({"figure": "best_tile", **shape, "rule": rule["tile"], "best": best["tile"],
                          "best_prefetch": best.get("prefetch", False),
                          "rule_over_best_forward": rule["forward_ms"] / best["forward_ms"],
                          "best_forward_tflops": best["forward_tflops"]}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tf32", choices=["off", "default"], default="off")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--ratios", metavar="FILE", help="print ours over PyTorch's from FILE's lines, and stop")
    args = parser.parse_args()
    if args.ratios:
        return ratios(args.ratios)
    global torch, F, torchvision
    import torch
    import torch.nn.functional as F
    import torchvision
    if args.tf32 == "off":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    cuda = torch.device("cuda")
    emit = lambda figure: print(json.dumps({"framework": "pytorch", "tf32": args.tf32, **figure}), flush=True)
    emit({"figure": "adapter", "name": torch.cuda.get_device_name(), "torch": torch.__version__})

    with torch.no_grad():
        for arch, size, batch in [("resnet18", 224, 1), ("resnet18", 224, 8), ("resnet18", 224, 64),
                                  ("resnet50", 224, 1), ("resnet50", 224, 32), ("resnet20", 32, 1),
                                  ("resnet20", 32, 64)]:
            net = model(arch, 1000 if size == 224 else 10, 3).to(cuda).eval()
            x = torch.randn(batch, 3, size, size, device=cuda)
            ms = median_ms(lambda: net(x), args.warmup, args.runs)
            emit({"figure": "inference", "arch": arch, "size": size, "batch": batch, "median_ms": ms,
                  "images_per_s": batch / ms * 1e3})

    for arch, size, channels, batch, optimizer, classes in [("resnet20", 28, 1, 64, "adam", 10),
                                                            ("resnet18", 224, 3, 32, "sgd", 1000)]:
        net = model(arch, classes, channels).to(cuda).train()
        opt = (torch.optim.Adam(net.parameters(), lr=0.01) if optimizer == "adam"
               else torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9))
        x = torch.randn(batch, channels, size, size, device=cuda)
        labels = torch.arange(batch, device=cuda) % classes

        def step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), labels).backward()
            opt.step()

        ms = median_ms(step, args.warmup, args.runs)
        emit({"figure": "training_step", "arch": arch, "input": f"{size}x{size}x{channels}", "batch": batch,
              "optimizer": optimizer, "median_ms": ms, "images_per_s": batch / ms * 1e3})

    cases = [("resnet18", 32, 3, 224, 64, 7, 2), ("resnet18", 32, 64, 56, 64, 3, 1),
             ("resnet18", 32, 64, 56, 128, 3, 2), ("resnet18", 32, 64, 56, 128, 1, 2),
             ("resnet18", 32, 128, 28, 128, 3, 1), ("resnet18", 32, 128, 28, 256, 3, 2),
             ("resnet18", 32, 128, 28, 256, 1, 2), ("resnet18", 32, 256, 14, 256, 3, 1),
             ("resnet18", 32, 256, 14, 512, 3, 2), ("resnet18", 32, 256, 14, 512, 1, 2),
             ("resnet18", 32, 512, 7, 512, 3, 1), ("resnet20", 64, 3, 32, 16, 3, 1),
             ("resnet20", 64, 16, 32, 16, 3, 1), ("resnet20", 64, 16, 32, 32, 3, 2),
             ("resnet20", 64, 32, 16, 32, 3, 1), ("resnet20", 64, 32, 16, 64, 3, 2),
             ("resnet20", 64, 64, 8, 64, 3, 1)]
    for name, batch, cin, size, cout, kernel, stride in cases:
        padding = kernel // 2
        out = (size + 2 * padding - kernel) // stride + 1
        flops = 2.0 * batch * out * out * cout * cin * kernel * kernel
        x = torch.randn(batch, cin, size, size, device=cuda)
        w = torch.randn(cout, cin, kernel, kernel, device=cuda)
        with torch.no_grad():
            forward = median_ms(lambda: F.conv2d(x, w, None, stride, padding), args.warmup, args.runs)
        xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
        both = median_ms(lambda: F.conv2d(xg, wg, None, stride, padding).sum().backward(), args.warmup, args.runs)
        emit({"figure": "convolution", "model": name, "batch": batch, "in_channels": cin, "size": size,
              "out_channels": cout, "kernel": kernel, "stride": stride, "forward_ms": forward,
              "forward_tflops": flops / forward / 1e9, "forward_backward_ms": both,
              "forward_backward_tflops": 3 * flops / both / 1e9})

    shapes = [[32, 64, 112, 112], [32, 64, 56, 56], [32, 128, 28, 28], [32, 256, 14, 14], [32, 512, 7, 7],
              [64, 16, 32, 32], [64, 32, 16, 16], [64, 64, 8, 8]]
    first = torch.randn(*shapes[0], device=cuda) * 2 + 0.5
    size = first.numel() * 4
    copy = median_ms(lambda: first.clone(), args.warmup, args.runs)
    emit({"figure": "copy", "bytes": size, "median_ms": copy, "gb_per_s": 2 * size / copy / 1e6})
    del first
    for shape in shapes:
        size = 4 * shape[0] * shape[1] * shape[2] * shape[3]
        x = torch.randn(*shape, device=cuda) * 2 + 0.5
        gamma, beta = torch.ones(shape[1], device=cuda), torch.zeros(shape[1], device=cuda)
        mean, var = torch.zeros(shape[1], device=cuda), torch.ones(shape[1], device=cuda)
        with torch.no_grad():
            forward = median_ms(lambda: F.batch_norm(x, mean, var, gamma, beta, True), args.warmup, args.runs)
        xg, gg, bg = x.clone().requires_grad_(), gamma.clone().requires_grad_(), beta.clone().requires_grad_()
        seed = torch.ones_like(x)
        both = median_ms(lambda: F.batch_norm(xg, mean, var, gg, bg, True).backward(seed), args.warmup, args.runs)
        emit({"figure": "batch_norm", "shape": shape, "implementation": "pytorch", "forward_ms": forward,
              "forward_gb_per_s": 3 * size / forward / 1e6, "forward_backward_ms": both,
              "forward_backward_gb_per_s": 9 * size / both / 1e6})


if __name__ == "__main__":
    sys.exit(main())
