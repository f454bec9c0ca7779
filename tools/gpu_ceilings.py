#!/usr/bin/env python3
"""The GPU's measured ceilings, against which the kernels' figures are read: the bf16 tensor-core rate
(8192^3 matrix product), the plain fp32 rate (the same with TF32 off, so FFMA-class arithmetic), and
device-to-device copy bandwidth (bytes read plus bytes written). Random data, 3 warm-ups, mean of 10.

    python3 tools/gpu_ceilings.py [--json OUT.json]
"""
import argparse
import json

import torch


def timed(fn, reps=10, warmup=3):
    for _ in range(warmup):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / reps / 1e3  # seconds per call


def matmul_tflops(dtype, n):
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    return 2 * n**3 / timed(lambda: a @ b) / 1e12


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--json")
    args = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    src = torch.empty(2 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    copy_tbps = 2 * src.numel() / timed(lambda: dst.copy_(src)) / 1e12
    del src, dst
    result = {
        "device": torch.cuda.get_device_name(),
        "bf16_tensor_tflops": matmul_tflops(torch.bfloat16, 8192),
        "fp32_tflops": matmul_tflops(torch.float32, 8192),
        "copy_tb_per_s": copy_tbps,
    }
    for k, v in result.items():
        print(f"{k:20} {v if isinstance(v, str) else round(v, 2)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
