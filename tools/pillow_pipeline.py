#!/usr/bin/env python3
"""Pillow's speed on the ImageNet training views `resnet-cuda data-bench` measures, on the same
files and one core, for comparison: decode only, and a torchvision-style pipeline that does what our
loader does (decode, shorter side resized to a random length in [256, 480] with bilinear filtering,
random 224x224 crop, random mirror, bytes out; the normalisation happens later in both).

    python3 tools/pillow_pipeline.py --make DIR          # the README's files: 400 training JPEGs
    python3 tools/pillow_pipeline.py DIR/train [--images 400]

Needs numpy and Pillow.
"""
import argparse
import os
import random
import time

import numpy as np
from PIL import Image


def files(root, n):
    paths = sorted(
        os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if not f.startswith(".")
    )
    return (paths * (n // max(1, len(paths)) + 1))[:n]


def view(path, rng):
    img = Image.open(path).convert("RGB")
    w, h = img.size
    side = rng.randint(256, 480)
    scale = side / min(w, h)
    img = img.resize((max(side, round(w * scale)), max(side, round(h * scale))), Image.BILINEAR)
    w, h = img.size
    x0, y0 = rng.randint(0, w - 224), rng.randint(0, h - 224)
    img = img.crop((x0, y0, x0 + 224, y0 + 224))
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(img)


def make(root):
    """400 training and 8 validation JPEGs of 500x375 in two classes (gradients plus noise, quality 90,
    about 68 KB each), an ImageNet-style folder for `data-bench` and this script."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:375, 0:500]
    for split, n in (("train", 200), ("val", 4)):
        for c in range(2):
            folder = os.path.join(root, split, f"c{c}")
            os.makedirs(folder, exist_ok=True)
            for i in range(n):
                base = np.stack(
                    [(x * 255 // 500 + i * 13) % 256, (y * 255 // 375 + i * 7) % 256,
                     ((x + y) * 127 // 875 + c * 90) % 256], -1).astype(float)
                img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(os.path.join(folder, f"{i:04d}.JPEG"), quality=90)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("train_dir", help="DIR/train, or with --make the folder to write")
    p.add_argument("--images", type=int, default=400)
    p.add_argument("--make", action="store_true", help="write the benchmark's files into the folder")
    args = p.parse_args()
    if args.make:
        make(args.train_dir)
        return
    paths = files(args.train_dir, args.images)
    t = time.perf_counter()
    for path in paths:
        Image.open(path).convert("RGB").load()
    decode = len(paths) / (time.perf_counter() - t)
    rng = random.Random(0)
    t = time.perf_counter()
    for path in paths:
        view(path, rng)
    pipeline = len(paths) / (time.perf_counter() - t)
    print(f"Pillow {Image.__version__}, one core: decode {decode:.0f} images/s, "
          f"training views {pipeline:.0f} images/s ({len(paths)} images)")


if __name__ == "__main__":
    main()
