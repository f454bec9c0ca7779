#!/usr/bin/env python3
"""torchvision's ResNet state dicts, for checking that our checkpoints match them.

Needs torch, torchvision and safetensors (`pip install torch torchvision safetensors`); CI does not:
the fixtures it writes are committed.

  fixtures OUT_DIR   write OUT_DIR/torchvision_{resnet18,resnet50}_state_dict.txt: one line per key of
                     `torchvision.models.resnetN().state_dict()`, in order, as `name [d0, d1, ...]`.
  verify DIR         cross-check with the engine in both directions (see tests/it/checkpoint.rs):
                     1. DIR/ours/model.safetensors, saved by the engine, must load into
                        torchvision.models.resnet18() with load_state_dict(strict=True), and the
                        eval-mode logits on DIR/ours_io.safetensors `input` (NCHW) must match its
                        `logits`;
                     2. writes DIR/torch/model.safetensors (a torchvision resnet18 with random weights
                        and BN statistics) and DIR/torch_io.safetensors (`input`, `logits`) for the
                        engine to load and compare.
"""

import os
import sys

import torch
import torchvision
from safetensors.torch import load_file, save_file


def fixtures(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for arch in ["resnet18", "resnet50"]:
        model = getattr(torchvision.models, arch)(num_classes=1000)
        path = os.path.join(out_dir, f"torchvision_{arch}_state_dict.txt")
        with open(path, "w") as f:
            for name, tensor in model.state_dict().items():
                f.write(f"{name} {list(tensor.shape)}\n")
        print(f"wrote {path}")


def compare(what, ours, theirs):
    diff = (ours - theirs).abs().max().item()
    scale = theirs.abs().max().item()
    print(f"{what}: max |logit| {scale:.4g}, max |difference| {diff:.3g}")
    if diff > 1e-4 * max(scale, 1.0):
        raise SystemExit(f"{what}: logits differ")


def verify(directory):
    torch.manual_seed(0)
    # 1. Ours into torchvision.
    state = load_file(os.path.join(directory, "ours", "model.safetensors"))
    model = torchvision.models.resnet18()
    result = model.load_state_dict(state, strict=True)
    print(f"load_state_dict(strict=True) of our checkpoint: {result}")
    io = load_file(os.path.join(directory, "ours_io.safetensors"))
    model.eval()
    with torch.no_grad():
        compare("our checkpoint in torchvision", model(io["input"]), io["logits"])

    # 2. torchvision's into ours: random weights and BN statistics far from the defaults.
    model = torchvision.models.resnet18()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.num_batches_tracked.fill_(1234)
    model.eval()
    os.makedirs(os.path.join(directory, "torch"), exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(directory, "torch", "model.safetensors"))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = model(x)
    save_file({"input": x, "logits": logits}, os.path.join(directory, "torch_io.safetensors"))
    print(f"wrote {directory}/torch/model.safetensors and torch_io.safetensors")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "fixtures":
        fixtures(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "verify":
        verify(sys.argv[2])
    else:
        raise SystemExit(__doc__)
