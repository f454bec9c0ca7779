#!/usr/bin/env python3
"""Writes tests/fixtures/torchvision_resnet50_layer2_0.safetensors: one downsampling bottleneck of
torchvision's own resnet50 (its `layer2[0]`: 256 -> 512 channels, stride 2, projection shortcut), with
torchvision's random initial weights, BN statistics and affine parameters made non-trivial, a small
input, and the block's eval-mode output.

Why one block and not the whole resnet50: our engine builds only the paper's layer counts, and
resnet50's weights are ~100 MB in f32, far too big to commit. The variant changes nothing but where a
downsampling bottleneck puts its stride, so this block is exactly what `--variant` changes; the rest of
the network is the same either way and is checked elsewhere (tests/it/checkpoint.rs torch_import).

Tensors in the file (safetensors, as `tests/it/variant.rs` reads them):
  layer2.0.*        the block's state dict under resnet50's names (conv weights OIHW; BN
                    running_mean/var f32, num_batches_tracked i64)
  input             [2, 256, 9, 9] f32, NCHW (an odd side, so padding at the border matters)
  output            [2, 512, 5, 5] f32, NCHW: torchvision's eval-mode forward of the block, computed in
                    f64 from the same f32 weights and input, then rounded to f32

Regenerate (PyTorch on the CPU; torchvision, safetensors, numpy):
  python3 tools/torchvision_logits_fixture.py [OUT]
"""

import sys

import torch
import torchvision
from safetensors.torch import save_file

OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/torchvision_resnet50_layer2_0.safetensors"


def main():
    torch.manual_seed(16)
    model = torchvision.models.resnet50(weights=None)
    block = model.layer2[0]
    # torchvision's v1.5 placement, which is what the fixture is about: the stride is on conv2.
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2), "not torchvision's v1.5"
    assert block.downsample is not None
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                # Far from PyTorch's initial (0, 1, 1, 0), so every BN term is exercised.
                m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=g))
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(torch.rand(c, generator=g) - 0.5)
                m.num_batches_tracked.fill_(1234)
    block.eval()
    x = torch.rand(2, 256, 9, 9, generator=g) * 2 - 1
    with torch.no_grad():
        y = block.double()(x.double()).float()
    block.float()

    tensors = {f"layer2.0.{k}": v.contiguous() for k, v in block.state_dict().items()}
    tensors["input"] = x.contiguous()
    tensors["output"] = y.contiguous()
    save_file(tensors, OUT, metadata={"format": "pt", "torch": torch.__version__,
                                      "torchvision": torchvision.__version__})
    print(f"wrote {OUT}: {len(tensors)} tensors, output max |y| {y.abs().max().item():.4f}")


if __name__ == "__main__":
    main()
