#!/usr/bin/env python3
"""PyTorch's time on the GPU for the training step `resnet-cuda bench --device cuda` measures.

The same step: forward, cross-entropy, backward, SGD with momentum 0.9 and weight decay 1e-4, inputs
already on the GPU, channels_last (cuDNN's NHWC kernels), cudnn.benchmark on (what a PyTorch user
would run). Networks: the paper's CIFAR ResNet-20 (option-A shortcuts, from pytorch_resnet20_step.py)
and torchvision's ResNet-50. Precisions: fp32 with TF32 off, fp32 with TF32 on, bf16 autocast.
Timing: CUDA events around each step after warm-up steps; the median is reported.

With --compile the model goes through torch.compile(mode="reduce-overhead"): Inductor's fused kernels,
replayed as CUDA graphs (the closest PyTorch comes to this engine's one graph per step); the optimiser
step stays eager, as in most compiled training loops. Compilation happens in the warm-up steps and is
not timed; it takes tens of seconds per network, so the device script runs it in a phase of its own.

    python3 tools/pytorch_gpu_step.py [--iters 30] [--warmup 10] [--json OUT.json]
        [--only resnet20:128,resnet50:256] [--precisions fp32,tf32,bf16] [--compile]

Prints one line per (model, batch, precision) and, with --json, writes the list of results.
"""
import argparse
import json
import os
import statistics
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_resnet20_step import ResNet20  # noqa: E402


def build(model_name, classes):
    if model_name == "resnet20":
        return ResNet20(classes=classes), 32
    import torchvision

    return getattr(torchvision.models, model_name)(num_classes=classes), 224


def time_step(model_name, batch, precision, iters, warmup, compiled):
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.benchmark = True
    classes = 10 if model_name == "resnet20" else 1000
    model, side = build(model_name, classes)
    model = model.cuda().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    forward = torch.compile(model, mode="reduce-overhead") if compiled else model
    x = torch.randn(batch, 3, side, side, device="cuda").to(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,), device="cuda")

    def step():
        if compiled:
            # A new iteration: the graphs' outputs of the previous one may be overwritten.
            torch.compiler.cudagraph_mark_step_begin()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(forward(x), y)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    med = statistics.median(times)
    return {
        "framework": f"pytorch {torch.__version__}",
        "cudnn": torch.backends.cudnn.version(),
        "model": model_name,
        "batch_size": batch,
        "precision": precision,
        "mode": "compile-reduce-overhead" if compiled else "eager",
        "median_ms": med,
        "min_ms": min(times),
        "images_per_s": batch / med * 1e3,
        "iters": iters,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--only", default="resnet20:128,resnet50:256")
    p.add_argument("--precisions", default="fp32,tf32,bf16")
    p.add_argument("--compile", action="store_true", help='torch.compile(mode="reduce-overhead")')
    p.add_argument("--json")
    args = p.parse_args()
    print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}  cudnn {torch.backends.cudnn.version()}")
    results = []
    for item in args.only.split(","):
        model_name, batch = item.split(":")
        for precision in args.precisions.split(","):
            r = time_step(model_name, int(batch), precision, args.iters, args.warmup, args.compile)
            results.append(r)
            mode = " compiled" if args.compile else ""
            print(
                f"{model_name:9} b{batch:<4} {precision:5}{mode} {r['median_ms']:8.2f} ms/step "
                f"(min {r['min_ms']:.2f})  {r['images_per_s']:9.1f} images/s",
                flush=True,
            )
            torch.cuda.empty_cache()
            # Rewritten after each result, so that a run cut short by a time limit keeps what it had.
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
