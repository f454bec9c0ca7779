#!/usr/bin/env python3
"""Writes two small datasets in the formats `train --data` reads, for end-to-end runs on a machine that
has no real data (the device check): a CIFAR-10 binary folder (5 training files and a test file of
3,073-byte records: label, then 1024 red, 1024 green, 1024 blue bytes) and an ImageNet-style folder
(DIR/train/<class>/*.JPEG, DIR/val/<class>/*.JPEG, images of varied sizes). Each class is a colour
tint plus noise, so a few hundred steps learn something.

    python3 tools/make_tiny_datasets.py OUT_DIR [--per-file 256] [--classes 4] [--per-class 24] [--cifar-only]

With --per-file 10000 the CIFAR folder has CIFAR-10's full size (50,000 + 10,000 images), for timing
the paper's CIFAR schedule.

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
        # A whole file at once (CIFAR-10's full size, 10,000 records a file, takes a second).
        labels = rng.integers(10, size=per_file)
        tint = np.zeros((per_file, 3))
        tint[np.arange(per_file), labels % 3] = 120 + 100 * (labels // 3) / 3
        noise = rng.normal(0, 40, (per_file, 32, 32, 3))
        images = np.clip(60 + tint[:, None, None, :] + noise, 0, 255).astype(np.uint8)
        records = np.empty((per_file, 3073), dtype=np.uint8)
        records[:, 0] = labels
        records[:, 1:] = images.transpose(0, 3, 1, 2).reshape(per_file, 3072)
        with open(os.path.join(root, name), "wb") as f:
            f.write(records.tobytes())


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
    p.add_argument("--cifar-only", action="store_true", help="write only the CIFAR-10 folder")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    write_cifar(os.path.join(args.out, "cifar10"), args.per_file, rng)
    print(f"wrote {args.out}/cifar10")
    if not args.cifar_only:
        write_imagenet(os.path.join(args.out, "imagenet"), args.classes, args.per_class, rng)
        print(f"wrote {args.out}/imagenet")


if __name__ == "__main__":
    main()
