#!/usr/bin/env python3
"""Writes two small datasets in the formats `train --data` reads, for end-to-end runs on a machine that
has no real data (the device check): a CIFAR-10 binary folder (5 training files and a test file of
3,073-byte records: label, then 1024 red, 1024 green, 1024 blue bytes) and an ImageNet-style folder
(DIR/train/<class>/*.JPEG, DIR/val/<class>/*.JPEG, images of varied sizes). Each class is a colour
tint plus noise, so a few hundred steps learn something.

    python3 tools/make_tiny_datasets.py OUT_DIR [--per-file 256] [--classes 4] [--per-class 24]

Needs numpy and Pillow.
"""
import argparse
import os

import numpy as np
from PIL import Image


def class_image(rng, label, classes, h, w):
    tint = np.zeros(3)
    tint[label % 3] = 120 + 100 * (label // 3) / max(1, classes // 3)
    noise = rng.normal(0, 40, (h, w, 3))
    return np.clip(60 + tint + noise, 0, 255).astype(np.uint8)


def write_cifar(root, per_file, rng):
    os.makedirs(root, exist_ok=True)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for name in names:
        records = []
        for _ in range(per_file):
            label = int(rng.integers(10))
            img = class_image(rng, label, 10, 32, 32)
            records.append(bytes([label]) + img.transpose(2, 0, 1).tobytes())
        with open(os.path.join(root, name), "wb") as f:
            f.write(b"".join(records))


def write_imagenet(root, classes, per_class, rng):
    for split, count in (("train", per_class), ("val", max(2, per_class // 4))):
        for c in range(classes):
            folder = os.path.join(root, split, f"n{c:08d}")
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                h, w = int(rng.integers(180, 320)), int(rng.integers(180, 320))
                Image.fromarray(class_image(rng, c, classes, h, w)).save(
                    os.path.join(folder, f"img_{i:04d}.JPEG"), quality=90
                )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--per-file", type=int, default=256)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--per-class", type=int, default=24)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    write_cifar(os.path.join(args.out, "cifar10"), args.per_file, rng)
    write_imagenet(os.path.join(args.out, "imagenet"), args.classes, args.per_class, rng)
    print(f"wrote {args.out}/cifar10 and {args.out}/imagenet")


if __name__ == "__main__":
    main()
