//! Generators of small datasets on disk for the data tests: CIFAR-10 binaries with known pixels and
//! ImageNet-style folders of JPEGs and PNGs.

#![allow(dead_code)]

use std::path::Path;

use jpeg_encoder::{ColorType, Encoder};

/// The known pixel of CIFAR record `r` of file `f` at plane `c`, position `p`.
pub fn cifar_pixel(f: usize, r: usize, c: usize, p: usize) -> u8 {
    ((f * 31 + r * 17 + c * 101 + p * 7) % 256) as u8
}

/// The label of CIFAR record `r` of file `f`.
pub fn cifar_label(f: usize, r: usize) -> u8 {
    ((f + 3 * r) % 10) as u8
}

/// The bytes of a CIFAR-10 binary file of `records` records (file number `f`).
pub fn cifar_file(f: usize, records: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(records * 3073);
    for r in 0..records {
        bytes.push(cifar_label(f, r));
        for c in 0..3 {
            for p in 0..1024 {
                bytes.push(cifar_pixel(f, r, c, p));
            }
        }
    }
    bytes
}

/// Writes the six CIFAR-10 files into `dir`: file `f` (1..=5 training, 0 test) with `records`
/// records.
pub fn write_cifar(dir: &Path, records: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for f in 1..=5 {
        std::fs::write(
            dir.join(format!("data_batch_{f}.bin")),
            cifar_file(f, records),
        )
        .unwrap();
    }
    std::fs::write(dir.join("test_batch.bin"), cifar_file(0, records)).unwrap();
}

/// An RGB image whose pixel `(y, x)` is `f(y, x)`.
pub fn rgb(w: usize, h: usize, f: impl Fn(usize, usize) -> [u8; 3]) -> Vec<u8> {
    let mut data = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            data.extend_from_slice(&f(y, x));
        }
    }
    data
}

/// Encodes a JPEG (quality 95).
pub fn jpeg(data: &[u8], w: usize, h: usize, color: ColorType, progressive: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = Encoder::new(&mut out, 95);
    enc.set_progressive(progressive);
    enc.encode(data, w as u16, h as u16, color).unwrap();
    out
}

/// Encodes an 8-bit RGB PNG.
pub fn png_rgb(data: &[u8], w: usize, h: usize) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().unwrap();
        writer.write_image_data(data).unwrap();
    }
    out
}

/// A smooth colour image, different for each `seed`.
pub fn smooth(w: usize, h: usize, seed: usize) -> Vec<u8> {
    rgb(w, h, |y, x| {
        [
            ((x * 255 / w + seed * 40) % 256) as u8,
            ((y * 255 / h + seed * 90) % 256) as u8,
            ((seed * 70 + 30) % 256) as u8,
        ]
    })
}

/// An ImageNet-style folder under `root`: classes `a` and `b`, `train_per_class` training images
/// per class and `val_per_class` validation images of `side x side` (training images alternate
/// between landscape and portrait shapes). The images mix baseline RGB, progressive, grayscale
/// JPEGs and PNGs.
pub fn write_imagenet(root: &Path, train_per_class: usize, val_per_class: usize, side: usize) {
    for (split, n) in [("train", train_per_class), ("val", val_per_class)] {
        for (c, class) in ["a", "b"].iter().enumerate() {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                let seed = c * 10 + i;
                let (w, h) = if split == "val" {
                    (side, side)
                } else if i % 2 == 0 {
                    (side + side / 2, side)
                } else {
                    (side, side + side / 3)
                };
                let data = smooth(w, h, seed);
                let (name, bytes) = match i % 4 {
                    0 => ("base.jpg", jpeg(&data, w, h, ColorType::Rgb, false)),
                    1 => ("prog.jpg", jpeg(&data, w, h, ColorType::Rgb, true)),
                    2 => {
                        let grey: Vec<u8> = data.chunks(3).map(|p| p[0]).collect();
                        ("grey.jpg", jpeg(&grey, w, h, ColorType::Luma, false))
                    }
                    _ => ("png.png", png_rgb(&data, w, h)),
                };
                std::fs::write(dir.join(format!("{i:03}-{name}")), bytes).unwrap();
            }
        }
    }
}

/// Bytes that start like a JPEG and then are garbage.
pub fn corrupt_jpeg() -> Vec<u8> {
    let mut bytes = vec![0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10];
    bytes.extend((0..200u32).map(|i| (i * 37 % 251) as u8));
    bytes
}

/// The offset of the first byte of entropy-coded data of a JPEG (just after its first SOS
/// segment), found by walking the header segments by their lengths.
pub fn jpeg_scan_start(bytes: &[u8]) -> usize {
    let mut pos = 2;
    loop {
        assert_eq!(bytes[pos], 0xff, "a marker at byte {pos}");
        let code = bytes[pos + 1];
        let length = usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]));
        pos += 2 + length;
        if code == 0xda {
            return pos;
        }
    }
}

/// A real JPEG (smooth colours, 96x64) cut to a third of its bytes, as an interrupted download
/// leaves it: the cut falls inside the scan.
pub fn truncated_jpeg() -> Vec<u8> {
    let (w, h) = (96, 64);
    let mut bytes = jpeg(&smooth(w, h, 5), w, h, ColorType::Rgb, false);
    assert!(
        bytes.len() / 3 > jpeg_scan_start(&bytes),
        "the cut is in the scan"
    );
    bytes.truncate(bytes.len() / 3);
    bytes
}
