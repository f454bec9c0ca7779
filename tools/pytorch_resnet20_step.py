#!/usr/bin/env python3
"""PyTorch's time for the training step `resnet-cuda bench --model resnet20` measures, for comparison.

The same network (the paper's CIFAR ResNet-20: 3x3 convolutions, BN, ReLU, option-A shortcuts that
subsample and zero-pad), the same step (forward, cross-entropy, backward, SGD with momentum 0.9 and
weight decay 1e-4), f32, inputs already in memory. channels_last (oneDNN's NHWC kernels) unless --nchw.

    python3 tools/pytorch_resnet20_step.py [--batch-size 128] [--threads 2] [--iters 20] [--nchw]

Prints the median and minimum ms per step and images/s, after 3 warm-up steps.
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pad = cout - cin
        self.stride = stride

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x
        if self.stride != 1 or self.pad:
            # Option A: keep every other pixel, append zero channels.
            shortcut = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.pad))
        return F.relu(out + shortcut)


class ResNet20(nn.Module):
    def __init__(self, n=3, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for cout, stride in [(16, 1), (32, 2), (64, 2)]:
            for i in range(n):
                blocks.append(BasicBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.blocks(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--nchw", action="store_true", help="keep the default NCHW layout")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layout = torch.contiguous_format if args.nchw else torch.channels_last
    model = ResNet20().to(memory_format=layout)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(args.batch_size, 3, 32, 32).to(memory_format=layout)
    y = torch.randint(0, 10, (args.batch_size,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    times = []
    for _ in range(args.iters):
        t = time.perf_counter()
        step()
        times.append((time.perf_counter() - t) * 1e3)
    med = statistics.median(times)
    print(
        f"pytorch {torch.__version__} resnet20 training step, batch {args.batch_size}, "
        f"{args.threads} threads, {'NCHW' if args.nchw else 'channels_last'}"
    )
    print(
        f"  {med:.1f} ms/step (median of {args.iters}; min {min(times):.1f} ms)  "
        f"{args.batch_size / med * 1e3:.1f} images/s"
    )


if __name__ == "__main__":
    main()
