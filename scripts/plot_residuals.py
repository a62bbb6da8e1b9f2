#!/usr/bin/env python3
"""Draws docs/residuals.png from the CSVs `resnet compare` writes: training loss and error
per step (smoothed over an epoch's tenth), held-out accuracy per epoch, and the gradient
norm by layer depth at the first and the last logged step, for every network compared.
Prints, as a Markdown table, each network's gradient norms at a few depths at those steps.

    python3 -m venv /tmp/plotenv && /tmp/plotenv/bin/pip install matplotlib
    /tmp/plotenv/bin/python scripts/plot_residuals.py COMPARE_DIR docs/residuals.png plain20 resnet20 ...
"""
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Plain twins dashed, ResNets solid; one colour per depth.
COLOURS = ["#e07b00", "#4a7bd1", "#2a9d3a", "#b03060"]


def read(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def smooth(values, window):
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def main(directory, output, archs):
    depths = sorted({int("".join(c for c in a if c.isdigit())) for a in archs})
    figure, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    (loss_axis, error_axis), (accuracy_axis, gradient_axis) = axes
    for arch in archs:
        depth = int("".join(c for c in arch if c.isdigit()))
        style = {
            "color": COLOURS[depths.index(depth) % len(COLOURS)],
            "linestyle": "--" if arch.startswith("plain") else "-",
            "label": arch,
        }
        curves = read(os.path.join(directory, f"{arch}-curves.csv"))
        steps = [int(row["step"]) for row in curves]
        epochs = max(int(row["epoch"]) for row in curves)
        window = max(1, len(steps) // (10 * epochs))
        loss_axis.plot(steps, smooth([float(row["loss"]) for row in curves], window), **style)
        error_axis.plot(steps, smooth([float(row["error"]) for row in curves], window), **style)
        held_out = [(int(row["epoch"]), float(row["validation_accuracy"])) for row in curves if row["validation_accuracy"]]
        accuracy_axis.plot([e for e, _ in held_out], [a for _, a in held_out], marker="o", **style)
        accuracy_axis.set_xticks(range(1, epochs + 1))
        gradients = read(os.path.join(directory, f"{arch}-gradients.csv"))
        logged = sorted({int(row["step"]) for row in gradients})
        for step, alpha in [(logged[0], 0.35), (logged[-1], 1.0)]:
            by_depth = {}
            for row in gradients:
                if int(row["step"]) == step:
                    by_depth.setdefault(int(row["depth"]), float(row["grad_norm"]))
            points = sorted(by_depth.items())
            label = f"{arch}, step {step}"
            gradient_axis.plot([d for d, _ in points], [g for _, g in points], alpha=alpha,
                               **{**style, "label": label})
    loss_axis.set(title="training loss (smoothed)", xlabel="step")
    error_axis.set(title="training error (smoothed)", xlabel="step", ylim=(0, None))
    accuracy_axis.set(title="held-out accuracy", xlabel="epoch")
    gradient_axis.set(title="gradient norm by layer depth (faint: step 0)", xlabel="depth", yscale="log")
    for axis in axes.flat:
        axis.grid(alpha=0.3)
    loss_axis.legend()
    gradient_axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(output, dpi=90)
    print_gradient_table(directory, archs)


def print_gradient_table(directory, archs):
    """Gradient norms at the stem, a quarter, half and three quarters of the way, the last
    convolution and the classifier, at the first and the last logged step."""
    print("| network | step | " + " | ".join(["depth 1", "1/4", "1/2", "3/4", "last conv", "fc"]) + " |")
    print("| --- | --- |" + " --- |" * 6)
    for arch in archs:
        gradients = read(os.path.join(directory, f"{arch}-gradients.csv"))
        logged = sorted({int(row["step"]) for row in gradients})
        for step in (logged[0], logged[-1]):
            by_depth = {}
            for row in gradients:
                if int(row["step"]) == step:
                    by_depth.setdefault(int(row["depth"]), float(row["grad_norm"]))
            last = max(by_depth)
            depths = [1, round(last / 4), round(last / 2), round(3 * last / 4), last - 1, last]
            cells = " | ".join(f"{by_depth[d]:.3g} ({d})" if i in (1, 2, 3) else f"{by_depth[d]:.3g}" for i, d in enumerate(depths))
            print(f"| {arch} | {step} | {cells} |")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
