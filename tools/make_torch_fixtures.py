#!/usr/bin/env python3
"""Writes the golden fixtures tests/golden.rs checks our engine against: one SGD training step of the
CIFAR resnet8 (n = 1; option-A and option-B shortcuts) computed by PyTorch on the CPU in float64.

Why: the gradient checks prove each backward pass against finite differences one layer at a time; this
compares a whole network's f32 fast paths (Winograd, the direct kernels, the fused ops, the GPU kernels
through the emulator) with an independent implementation.

Per model NAME (resnet8a, resnet8b) two files in tests/fixtures/:
  golden_NAME_init.safetensors  the initial state dict under torchvision's (= our) names, f32, conv
                                weights OIHW, BN num_batches_tracked i64: exactly what `--init` loads
                                (checkpoint::load_weights), so the test also goes through that path.
  golden_NAME_step.safetensors  input [8, 3, 32, 32] f32 NCHW, as PyTorch has it (the test converts to
                                our NHWC); labels [8] i64; loss [1]; for every parameter P: grad.P (its
                                gradient at the initial weights) and new.P (after the step); for every
                                BN B: new.B.running_mean and new.B.running_var. Conv tensors OIHW.
All reference values are computed in float64 from the f32 initial weights and input (so both sides
start from identical numbers) and rounded to f32 when written.

The step: train-mode forward, mean cross-entropy, backward, torch.optim.SGD(lr 0.1, momentum 0.9,
weight_decay 1e-4) from zero momentum: v = g + wd w, w -= lr v (ours: src/optim/sgd.rs, same
definition). BN: eps 1e-5, momentum 0.1, running_var updated with the unbiased batch variance, both
PyTorch's defaults and ours (src/nn/batch_norm.rs). BN affine parameters and running statistics are
made non-trivial so every BN term is exercised. The batch's seed is advanced until no ReLU input lies
within RELU_MARGIN of zero (see there why); the seed used is in each step file's metadata.

Regenerate (PyTorch, safetensors; a few seconds on the CPU; the tensor values are deterministic, the
order of the header's metadata keys may vary between runs):
  python3 tools/make_torch_fixtures.py [OUT_DIR]     # default tests/fixtures
"""

import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
BATCH = 8
LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 1e-4
# Every ReLU input of the fixture's forward pass lies at least this far from zero (absolute; the
# values are O(1) after BN). Why: f32 and f64 forward passes differ by ~1e-7 there, so an input
# within rounding of zero can be cut by one implementation and passed by the other; at a block's
# output that moves the gradient of everything upstream by ~5e-3 (seen with the first resnet8b batch:
# an input of 4.9e-8 at layer2.0's output, 18 tensors off on our CPU backend, none on the emulator).
# The seed is advanced until the batch keeps this margin; 2e-6 is met within a few seeds.
RELU_MARGIN = 2e-6
# The smallest |ReLU input| of the current forward pass (reset before each pass).
_relu_min = [float("inf")]


def relu(t):
    _relu_min[0] = min(_relu_min[0], t.detach().abs().min().item())
    return F.relu(t)


class BasicBlock(nn.Module):
    """The paper's CIFAR basic block; attribute names give our state-dict names (layerS.B.conv1, ...)."""

    def __init__(self, cin, cout, stride, option):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pad = cout - cin
        self.stride = stride
        self.option = option
        if option == "B" and (stride != 1 or self.pad):
            # torchvision's projection shortcut: 1x1 conv with the stride, then BN.
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout)
            )
        else:
            self.downsample = None

    def forward(self, x):
        out = relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x
        if self.downsample is not None:
            shortcut = self.downsample(x)
        elif self.stride != 1 or self.pad:
            # Option A: keep every other pixel, append zero channels after the input's.
            shortcut = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.pad))
        return relu(out + shortcut)


class CifarResNet(nn.Module):
    """resnet(6n+2): stem conv + BN + ReLU, three stages of n blocks (16, 32, 64 channels), global
    average pool, fc; named conv1, bn1, layer1..3, fc as torchvision names its nets (and we ours)."""

    def __init__(self, n, option, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        cin = 16
        for s, (cout, stride) in enumerate([(16, 1), (32, 2), (64, 2)]):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(cin, cout, stride if i == 0 else 1, option))
                cin = cout
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def make(name, option, seed):
    while True:
        model, x, labels = candidate(option, seed)
        _relu_min[0] = float("inf")
        with torch.no_grad():
            copy = CifarResNet(1, option)
            copy.load_state_dict(model.state_dict())
            copy.double().train()(x.double())
        if _relu_min[0] >= RELU_MARGIN:
            break
        print(f"{name}: seed {seed} has a ReLU input {_relu_min[0]:.1e} from zero; next seed")
        seed += 1
    write(name, model, x, labels, seed)


def candidate(option, seed):
    """The initial model and batch for `seed`."""
    torch.manual_seed(seed)
    model = CifarResNet(1, option)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(torch.rand(c, generator=g) - 0.5)
    x = torch.randn(BATCH, 3, 32, 32, generator=g)
    labels = torch.randint(0, 10, (BATCH,), generator=g)
    return model, x, labels


def write(name, model, x, labels, seed):
    init = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(init, os.path.join(OUT, f"golden_{name}_init.safetensors"), metadata={"format": "pt"})

    model = model.double()
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x.double()), labels)
    loss.backward()
    out = {
        "input": x.contiguous(),
        "labels": labels.contiguous(),
        "loss": loss.detach().float().reshape(1),
    }
    for k, p in model.named_parameters():
        out[f"grad.{k}"] = p.grad.detach().float().contiguous()
    opt.step()
    for k, p in model.named_parameters():
        out[f"new.{k}"] = p.detach().float().contiguous()
    for k, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            out[f"new.{k}.running_mean"] = m.running_mean.float().contiguous()
            out[f"new.{k}.running_var"] = m.running_var.float().contiguous()
    path = os.path.join(OUT, f"golden_{name}_step.safetensors")
    save_file(out, path, metadata={"format": "pt", "torch": torch.__version__, "seed": str(seed)})
    print(
        f"wrote {name} (seed {seed}, min |ReLU input| {_relu_min[0]:.1e}): "
        f"loss {loss.item():.6f}, {len(init)} + {len(out)} tensors"
    )


def main():
    os.makedirs(OUT, exist_ok=True)
    make("resnet8a", "A", 16)
    make("resnet8b", "B", 17)


if __name__ == "__main__":
    main()
