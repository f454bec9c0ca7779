//! ImageNet-style folders: decoding (baseline, progressive, grayscale, CMYK JPEG; PNG), the folder
//! scan and its errors, the paper's augmentation, the test views, the mean image and its cache, and
//! the prefetching loader (determinism across worker counts, sharding, skipping unreadable files).

use crate::common;

use std::path::Path;
use std::sync::Arc;

use common::data_gen::{
    corrupt_jpeg, jpeg, jpeg_scan_start, png_rgb, rgb, smooth, truncated_jpeg, write_imagenet,
};
use jpeg_encoder::ColorType;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use resnet_cuda::data::batch::{DataCursor, MeanImage};
use resnet_cuda::data::eval_views::{eval_views, Crops, MULTISCALE_SIDES};
use resnet_cuda::data::image::{decode_rgb, RgbImage};
use resnet_cuda::data::imagenet::{center_view, ImageNet};
use resnet_cuda::data::imagenet_augment::{
    self, pca_shift, CROP, PCA_EIGENVALUES, PCA_EIGENVECTORS,
};
use resnet_cuda::data::loader::{shard, Loader, LoaderConfig};
use resnet_cuda::data::mean_cache::{imagenet_mean, CACHE_FILE};
use resnet_cuda::data::resize::{crop, resize, resize_crop, shorter_side_size};

fn decode(bytes: &[u8]) -> RgbImage {
    decode_rgb(bytes, Path::new("test.jpg")).unwrap()
}

/// Largest absolute difference between two byte images.
fn max_diff(a: &[u8], b: &[u8]) -> u8 {
    a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap()
}

#[test]
fn png_decodes_exactly_and_jpeg_closely_in_every_flavour() {
    let (w, h) = (40, 24);
    let data = smooth(w, h, 3);
    let png = decode(&png_rgb(&data, w, h));
    assert_eq!((png.width, png.height), (w, h));
    assert_eq!(png.data, data, "PNG is lossless");
    // JPEG at quality 95 on a smooth image: within 12 levels per channel (chroma subsampling and
    // quantisation blur the colour edges a little; a wrong colour conversion is off by 50+).
    for progressive in [false, true] {
        let j = decode(&jpeg(&data, w, h, ColorType::Rgb, progressive));
        assert_eq!((j.width, j.height), (w, h));
        assert!(max_diff(&j.data, &data) <= 12, "progressive {progressive}");
    }
    let grey: Vec<u8> = data.chunks(3).map(|p| p[1]).collect();
    let g = decode(&jpeg(&grey, w, h, ColorType::Luma, false));
    for (px, &v) in g.data.chunks(3).zip(&grey) {
        assert!(px[0] == px[1] && px[1] == px[2], "grey becomes R = G = B");
        assert!(px[0].abs_diff(v) <= 4);
    }
}

#[test]
fn cmyk_jpeg_becomes_rgb() {
    // CMYK with no black: R = 255 - C and so on. The encoder writes Adobe (inverted) CMYK, which
    // the decoder reads back; a constant colour survives JPEG almost exactly.
    let (w, h) = (16, 16);
    let cmyk: Vec<u8> = (0..w * h).flat_map(|_| [30u8, 120, 220, 0]).collect();
    let img = decode(&jpeg(&cmyk, w, h, ColorType::Cmyk, false));
    assert_eq!(img.data.len(), w * h * 3);
    let px = img.pixel(8, 8);
    let expected = [225u8, 135, 35];
    for c in 0..3 {
        assert!(
            px[c].abs_diff(expected[c]) <= 6,
            "pixel {px:?}, expected near {expected:?}"
        );
    }
}

#[test]
fn corrupt_and_non_image_files_fail_naming_the_file() {
    let bad = decode_rgb(&corrupt_jpeg(), Path::new("dir/broken.jpg")).unwrap_err();
    assert!(bad.to_string().contains("dir/broken.jpg"), "{bad}");
    assert!(bad.to_string().contains("corrupt JPEG"), "{bad}");
    let text = decode_rgb(b"hello, world", Path::new("dir/notes.txt")).unwrap_err();
    assert!(text.to_string().contains("dir/notes.txt"), "{text}");
    assert!(text.to_string().contains("not a JPEG or PNG"), "{text}");
}

/// The error of decoding `bytes` as the file `name`, checked to name the file and the format.
fn damaged(bytes: &[u8], name: &str, format: &str) -> String {
    let path = format!("dir/{name}");
    let e = decode_rgb(bytes, Path::new(&path))
        .expect_err(name)
        .to_string();
    assert!(e.contains(&path) && e.contains(format), "{name}: {e}");
    assert!(!e.contains('\n'), "one line: {e}");
    e
}

/// A JPEG of `w x h` smooth colours, baseline or progressive.
fn colour_jpeg(w: usize, h: usize, progressive: bool) -> Vec<u8> {
    jpeg(&smooth(w, h, 2), w, h, ColorType::Rgb, progressive)
}

#[test]
fn truncated_jpegs_are_errors_naming_the_file() {
    // The end-to-end test's interrupted download (cli_data.rs), which zune-jpeg alone decodes.
    damaged(&truncated_jpeg(), "download.jpg", "truncated");
    for progressive in [false, true] {
        let bytes = colour_jpeg(96, 64, progressive);
        let scan = jpeg_scan_start(&bytes);
        let end = bytes.len();
        assert_eq!(&bytes[end - 2..], [0xff, 0xd9], "the encoder ends with EOI");
        // Inside the header, just after the scan header, inside the scan (a third and nine tenths
        // of it), just before the end marker, and between its two bytes.
        let cuts = [
            20,
            scan,
            scan + (end - scan) / 3,
            scan + (end - scan) * 9 / 10,
            end - 2,
            end - 1,
        ];
        for cut in cuts {
            let name = format!("cut-{cut}-of-{end}-progressive-{progressive}.jpg");
            let e = damaged(&bytes[..cut], &name, "corrupt JPEG");
            assert!(cut == 20 || e.contains("truncated"), "{e}");
        }
        // Padding after the end marker, or a trailer (cameras append them), leaves the image whole.
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0; 16]);
        padded.extend_from_slice(b"trailer");
        assert_eq!(decode(&padded), decode(&bytes));
    }
}

#[test]
fn a_thumbnails_end_marker_does_not_hide_a_truncated_image() {
    // An APP1 segment holding a whole small JPEG (as an EXIF thumbnail does) has its own end marker
    // before the main image's scan: the segment is skipped by its length, not searched.
    let thumb = colour_jpeg(8, 8, false);
    let main = colour_jpeg(96, 64, false);
    let mut bytes = main[..2].to_vec();
    bytes.extend_from_slice(&[0xff, 0xe1]);
    bytes.extend_from_slice(&u16::try_from(thumb.len() + 2).unwrap().to_be_bytes());
    bytes.extend_from_slice(&thumb);
    bytes.extend_from_slice(&main[2..]);
    assert_eq!(decode(&bytes), decode(&main), "the thumbnail is skipped");
    let cut = bytes.len() - (main.len() - jpeg_scan_start(&main)) / 2;
    let e = damaged(&bytes[..cut], "thumbnail.jpg", "corrupt JPEG");
    assert!(e.contains("truncated"), "{e}");
}

#[test]
fn a_run_of_one_bits_in_the_scan_is_an_invalid_huffman_code() {
    // 48 one-bits (0xFF 0x00 is a stuffed 0xFF data byte): whatever code the decoder is in the
    // middle of (at most 16 code bits and 11 value bits), a new code starts inside the run with 16
    // ones ahead, and the all-ones 16-bit code is reserved in every JPEG Huffman table.
    for progressive in [false, true] {
        let bytes = colour_jpeg(96, 64, progressive);
        let scan = jpeg_scan_start(&bytes);
        let first_scan_end = scan + bytes[scan..].windows(2).position(is_marker).unwrap();
        for at in [scan + 4, (scan + first_scan_end) / 2, first_scan_end - 16] {
            let mut bad = bytes[..at].to_vec();
            bad.extend_from_slice(&[0xff, 0x00].repeat(6));
            bad.extend_from_slice(&bytes[at + 12..]);
            damaged(
                &bad,
                &format!("ones-at-{at}-progressive-{progressive}.jpg"),
                "corrupt JPEG",
            );
        }
    }
}

/// Whether two bytes of entropy-coded data are a marker (not stuffing, not a restart marker).
fn is_marker(pair: &[u8]) -> bool {
    pair[0] == 0xff && pair[1] != 0x00 && !(0xd0..=0xd7).contains(&pair[1])
}

#[test]
fn single_bit_flips_in_the_scan_never_panic_and_the_detectable_ones_are_errors() {
    // A flipped bit changes the Huffman codes read from there on. When the stream no longer parses
    // (an invalid code, a marker where none belongs, the data running out before the last row of
    // blocks) the file is an error. Most flips still parse, to valid codes that give wrong pixels:
    // a JPEG has no checksum, and zune-jpeg does not tell whether the scan's codes ended exactly
    // at its end (codes running out inside the last row of blocks, or ending with bytes left over,
    // pass silently), so these decode, as in Pillow: here 63 of 885 baseline and 16 of 974
    // progressive flips are detected. Tested: no flip panics or changes the image's size, and
    // every detected one is named.
    for progressive in [false, true] {
        let bytes = colour_jpeg(96, 64, progressive);
        let clean = decode(&bytes);
        let (scan, end) = (jpeg_scan_start(&bytes), bytes.len() - 2);
        let (mut flips, mut detected) = (0, 0);
        for at in (scan..end).step_by(7) {
            // Leave marker bytes and byte stuffing alone: changing those is a different damage.
            if bytes[at] == 0xff || bytes[at - 1] == 0xff {
                continue;
            }
            for bit in [0, 3, 6] {
                let mut bad = bytes.clone();
                bad[at] ^= 1 << bit;
                if bad[at] == 0xff {
                    continue;
                }
                flips += 1;
                let name = format!("flip-{at}-{bit}.jpg");
                match decode_rgb(&bad, Path::new(&name)) {
                    Ok(img) => assert_eq!((img.width, img.height), (clean.width, clean.height)),
                    Err(e) => {
                        assert!(e.to_string().contains(&name), "{e}");
                        detected += 1;
                    }
                }
            }
        }
        eprintln!("progressive {progressive}: {detected} of {flips} single-bit flips detected");
        assert!(detected > 0, "progressive {progressive}: none of {flips}");
    }
}

#[test]
fn damaged_pngs_are_errors_naming_the_file() {
    let (w, h) = (40, 24);
    let bytes = png_rgb(&smooth(w, h, 1), w, h);
    // Chunks: signature (8), IHDR (25), IDAT (12 + data), IEND (12).
    let idat = 8 + 25;
    assert_eq!(&bytes[idat + 4..idat + 8], b"IDAT");
    let idat_len = u32::from_be_bytes(bytes[idat..idat + 4].try_into().unwrap()) as usize;
    let idat_crc = idat + 8 + idat_len;
    assert_eq!(bytes.len(), idat_crc + 4 + 12, "one IDAT, then IEND");
    let flip = |at: usize| {
        let mut bad = bytes.clone();
        bad[at] ^= 0x10;
        bad
    };
    damaged(&flip(idat_crc), "idat-crc.png", "corrupt PNG");
    damaged(
        &flip(idat + 8 + idat_len / 2),
        "idat-data.png",
        "corrupt PNG",
    );
    damaged(&flip(bytes.len() - 1), "iend-crc.png", "corrupt PNG");
    damaged(&flip(8 + 20), "ihdr.png", "corrupt PNG");
    damaged(&bytes[..bytes.len() - 12], "no-iend.png", "corrupt PNG");
    damaged(&bytes[..idat_crc], "no-idat-crc.png", "corrupt PNG");
    damaged(
        &bytes[..idat + 8 + idat_len / 2],
        "cut-idat.png",
        "corrupt PNG",
    );
    damaged(&bytes[..20], "cut-ihdr.png", "corrupt PNG");
}

#[test]
fn clean_files_decode_exactly_as_the_lenient_decoders_do() {
    // The strict checks only reject; a whole file's pixels are what the decoders gave before them
    // (zune-jpeg in its default, lenient mode; png without reading on to IEND).
    let (w, h) = (57, 41);
    let data = smooth(w, h, 4);
    let grey: Vec<u8> = data.chunks(3).map(|p| p[0]).collect();
    let cmyk: Vec<u8> = data.chunks(3).flat_map(|p| [p[0], p[1], p[2], 9]).collect();
    let jpegs = [
        jpeg(&data, w, h, ColorType::Rgb, false),
        jpeg(&data, w, h, ColorType::Rgb, true),
        jpeg(&grey, w, h, ColorType::Luma, false),
        jpeg(&grey, w, h, ColorType::Luma, true),
        jpeg(&cmyk, w, h, ColorType::Cmyk, false),
    ];
    for (i, bytes) in jpegs.iter().enumerate() {
        let options = zune_jpeg::zune_core::options::DecoderOptions::default()
            .jpeg_set_out_colorspace(zune_jpeg::zune_core::colorspace::ColorSpace::RGB);
        let mut lenient = zune_jpeg::JpegDecoder::new_with_options(
            zune_jpeg::zune_core::bytestream::ZCursor::new(&bytes[..]),
            options,
        );
        let expected = lenient.decode().unwrap();
        assert_eq!(decode(bytes).data, expected, "JPEG {i}");
    }
    let png = png_rgb(&data, w, h);
    let mut reader = png::Decoder::new(std::io::Cursor::new(&png[..]))
        .read_info()
        .unwrap();
    let mut expected = vec![0; reader.output_buffer_size().unwrap()];
    reader.next_frame(&mut expected).unwrap();
    assert_eq!(decode(&png).data, expected);
}

#[test]
fn the_folder_scan_sorts_classes_and_names_missing_or_empty_folders() {
    let dir = tempfile::tempdir().unwrap();
    write_imagenet(dir.path(), 3, 1, 40);
    let data = ImageNet::open(dir.path()).unwrap();
    assert_eq!(data.train.classes, ["a", "b"]);
    assert_eq!(data.train.len(), 6);
    assert_eq!(data.val.len(), 2);
    let labels: Vec<u32> = data.train.images.iter().map(|(_, l)| *l).collect();
    assert_eq!(labels, [0, 0, 0, 1, 1, 1]);
    std::fs::create_dir(dir.path().join("train/c")).unwrap();
    let empty = ImageNet::open(dir.path()).unwrap_err().to_string();
    assert!(
        empty.contains("train/c") && empty.contains("no image"),
        "{empty}"
    );
    std::fs::remove_dir(dir.path().join("train/c")).unwrap();
    std::fs::remove_dir_all(dir.path().join("val")).unwrap();
    let missing = ImageNet::open(dir.path()).unwrap_err().to_string();
    assert!(
        missing.contains("val") && missing.contains("missing"),
        "{missing}"
    );
}

/// A 256x256 image whose pixel `(y, x)` is `(x, y, 7)`: a view's pixels tell where they came from.
fn coordinates_256() -> RgbImage {
    RgbImage::new(256, 256, rgb(256, 256, |y, x| [x as u8, y as u8, 7])).unwrap()
}

#[test]
fn ten_crops_see_the_corners_the_centre_and_their_mirrors() {
    let image = coordinates_256();
    let views = eval_views(&image, Crops::Ten).unwrap();
    assert_eq!(views.len(), 10);
    // Top-left source pixel of each unmirrored view: corners, then centre.
    let origins = [(0, 0), (0, 32), (32, 0), (32, 32), (16, 16)];
    for (v, &(y0, x0)) in views[..5].iter().zip(&origins) {
        assert_eq!((v.height, v.width), (CROP, CROP));
        assert_eq!(v.pixel(0, 0), [x0 as u8, y0 as u8, 7]);
        assert_eq!(v.pixel(223, 223), [(x0 + 223) as u8, (y0 + 223) as u8, 7]);
    }
    for (plain, mirrored) in views[..5].iter().zip(&views[5..]) {
        for y in [0, 100, 223] {
            for x in [0, 50, 223] {
                assert_eq!(mirrored.pixel(y, x), plain.pixel(y, 223 - x));
            }
        }
    }
    // The centre view alone is the same region as the 10-crop's centre.
    let center = eval_views(&image, Crops::Center).unwrap();
    assert_eq!(center, vec![views[4].clone()]);
    assert_eq!(center_view(&image).unwrap(), views[4]);
}

#[test]
fn multiscale_views_are_the_whole_image_at_each_scale_and_mirrored() {
    let (w, h) = (60, 40);
    let image = RgbImage::new(w, h, smooth(w, h, 1)).unwrap();
    let views = eval_views(&image, Crops::Multiscale).unwrap();
    assert_eq!(views.len(), 10);
    for (pair, side) in views.chunks(2).zip(MULTISCALE_SIDES) {
        assert_eq!((pair[0].height, pair[0].width), (side, side * 3 / 2));
        let mirror = crop(&pair[0], 0, 0, pair[0].height, pair[0].width, true);
        assert_eq!(pair[1], mirror);
        // The whole image: the resized corners keep the corners' colours (smooth image, 8 levels).
        let last = pair[0].width - 1;
        assert!(max_diff(&pair[0].pixel(0, 0), &image.pixel(0, 0)) <= 8);
        assert!(max_diff(&pair[0].pixel(0, last), &image.pixel(0, w - 1)) <= 8);
    }
}

#[test]
fn shorter_side_resizing_keeps_the_aspect_and_resizing_is_antialiased() {
    assert_eq!(shorter_side_size(100, 200, 256), (256, 512));
    assert_eq!(shorter_side_size(300, 200, 256), (384, 256));
    // A one-pixel checkerboard shrunk 4x must become flat grey (127 or 128): a filter that only
    // samples would give black or white.
    let board = RgbImage::new(64, 64, rgb(64, 64, |y, x| [((x + y) % 2 * 255) as u8; 3])).unwrap();
    let small = resize(&board, 16, 16).unwrap();
    for &v in &small.data {
        assert!((120..=135).contains(&v), "{v}");
    }
}

#[test]
fn augmentation_draws_stay_in_bounds_with_the_papers_statistics() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut alphas = Vec::new();
    let (mut flips, mut sides) = (0, std::collections::BTreeSet::new());
    for i in 0..3000 {
        let (h, w) = if i % 2 == 0 { (100, 300) } else { (500, 60) };
        let p = imagenet_augment::draw(&mut rng, h, w);
        assert!((256..=480).contains(&p.short_side));
        let (rh, rw) = shorter_side_size(h, w, p.short_side);
        assert!(p.y0 + CROP <= rh && p.x0 + CROP <= rw, "{p:?} in {rh}x{rw}");
        flips += p.flip as usize;
        sides.insert(p.short_side);
        alphas.extend(p.alpha);
    }
    // Mirror probability 1/2: 3000 draws, standard deviation 27; allow 5 of them.
    assert!((1365..=1635).contains(&flips), "{flips}");
    assert!(sides.contains(&256) && sides.contains(&480));
    // alpha ~ N(0, 0.1^2): the sample mean of 9000 has s.e. 0.001, the sample std about 0.0008.
    let n = alphas.len() as f32;
    let mean = alphas.iter().sum::<f32>() / n;
    let std = (alphas.iter().map(|a| (a - mean).powi(2)).sum::<f32>() / n).sqrt();
    assert!(mean.abs() < 0.005, "{mean}");
    assert!((std - 0.1).abs() < 0.005, "{std}");
}

#[test]
fn every_drawn_training_crop_can_be_resampled() {
    // Sizes whose rounded resized sides put the crop's far edge at the source's edge.
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for (h, w) in [(375, 500), (333, 500), (41, 67), (500, 281), (97, 97)] {
        let image = RgbImage::new(w, h, smooth(w, h, 2)).unwrap();
        for _ in 0..150 {
            let p = imagenet_augment::draw(&mut rng, h, w);
            let size = shorter_side_size(h, w, p.short_side);
            let view = resize_crop(&image, size, (p.y0, p.x0), (CROP, CROP))
                .unwrap_or_else(|e| panic!("{h}x{w}, {p:?}: {e}"));
            assert_eq!((view.height, view.width), (CROP, CROP));
        }
    }
}

#[test]
fn the_pca_shift_is_the_eigenvectors_weighted_by_alpha_and_eigenvalues() {
    for i in 0..3 {
        let mut alpha = [0.0; 3];
        alpha[i] = 2.0;
        let shift = pca_shift(alpha);
        for c in 0..3 {
            let expected = PCA_EIGENVECTORS[c][i] * 2.0 * PCA_EIGENVALUES[i];
            assert!((shift[c] - expected).abs() < 1e-7);
        }
    }
}

/// A folder of constant-colour PNGs: class `a` is (200, 100, 50), class `b` is (0, 50, 100).
fn constant_folder(root: &Path, per_class: usize) {
    for (class, colour) in [("a", [200u8, 100, 50]), ("b", [0, 50, 100])] {
        for split in ["train", "val"] {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..per_class {
                let (w, h) = (50 + 7 * i, 40 + 5 * i);
                std::fs::write(
                    dir.join(format!("{i}.png")),
                    png_rgb(&rgb(w, h, |_, _| colour), w, h),
                )
                .unwrap();
            }
        }
    }
}

#[test]
fn the_mean_image_is_the_average_colour_and_is_cached() {
    let dir = tempfile::tempdir().unwrap();
    constant_folder(dir.path(), 3);
    let data = ImageNet::open(dir.path()).unwrap();
    let run = tempfile::tempdir().unwrap();
    let mean = imagenet_mean(&data, run.path()).unwrap();
    assert_eq!((mean.height, mean.width), (CROP, CROP));
    // Half the images of each colour: the mean is the average colour, to within the resize's
    // rounding of a constant image (one level, 1/255).
    let expected = [100.0 / 255.0, 75.0 / 255.0, 75.0 / 255.0];
    for (i, &m) in mean.data.iter().enumerate() {
        assert!((m - expected[i % 3]).abs() <= 1.0 / 255.0, "value {i}: {m}");
    }
    let cache = dir.path().join(CACHE_FILE);
    assert!(cache.exists());
    // A second call reads the cache: tamper with it (same key) and see the tampered value come back.
    let mut file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
    file["data"][0] = serde_json::json!(0.125);
    std::fs::write(&cache, file.to_string()).unwrap();
    assert_eq!(imagenet_mean(&data, run.path()).unwrap().data[0], 0.125);
    // A changed training split does not match the cache's key: recomputed.
    std::fs::write(
        dir.path().join("train/a/9.png"),
        png_rgb(&rgb(50, 50, |_, _| [200, 100, 50]), 50, 50),
    )
    .unwrap();
    let data = ImageNet::open(dir.path()).unwrap();
    let again = imagenet_mean(&data, run.path()).unwrap();
    assert!((again.data[0] - (4.0 * 200.0 / 7.0) / 255.0).abs() <= 1.0 / 255.0);
}

fn grey_mean() -> Arc<MeanImage> {
    Arc::new(MeanImage::from_parts(CROP, CROP, vec![0.5; CROP * CROP * 3]).unwrap())
}

/// The first `n` batches of a loader.
fn batches(
    data: &Arc<ImageNet>,
    cfg: LoaderConfig,
    n: usize,
) -> Vec<resnet_cuda::data::loader::Batch> {
    let mut loader = Loader::start(data.clone(), cfg, DataCursor::default(), 0).unwrap();
    (0..n).map(|_| loader.next_batch().unwrap()).collect()
}

#[test]
fn the_loader_gives_the_same_batches_on_any_number_of_workers_and_shards_them() {
    let dir = tempfile::tempdir().unwrap();
    write_imagenet(dir.path(), 4, 1, 40);
    let data = Arc::new(ImageNet::open(dir.path()).unwrap());
    let one = batches(&data, LoaderConfig::new(4, 9, true, true, 1), 3);
    let three = batches(&data, LoaderConfig::new(4, 9, true, true, 3), 3);
    assert_eq!(one, three);
    assert!(
        one.iter().all(|b| b.skipped == 0),
        "every image is readable"
    );
    // Augmented values: pixel / 255 + PCA shift - 0.5 stays within [-0.5 - s, 0.5 + s] for a small
    // shift s (|alpha| < 0.5 is 5 standard deviations: s < 0.5 * 0.2175 * 1.7).
    let mean = grey_mean();
    for b in &one {
        assert!(b
            .shifts
            .iter()
            .flatten()
            .all(|s| s.abs() <= 0.19 && *s != 0.0));
        let mut x = vec![0f32; b.pixels.len()];
        b.normalise(&mean, &mut x).unwrap();
        for v in x {
            assert!(v.abs() <= 0.5 + 0.19, "{v}");
        }
    }
    // The normalised view is the bytes over 255, plus the view's shift, less the mean.
    let b = &one[0];
    let mut x = vec![0f32; b.pixels.len()];
    b.normalise(&mean, &mut x).unwrap();
    let size = CROP * CROP * 3;
    for at in [0, 7, size + 5, 3 * size + 2] {
        let expected = b.pixels[at] as f32 / 255.0 + b.shifts[at / size][at % 3] - 0.5;
        assert_eq!(x[at].to_bits(), expected.to_bits(), "value {at}");
    }
    let short = b.normalise(&mean, &mut x[1..]).unwrap_err().to_string();
    assert!(short.contains("normalise batch"), "{short}");
    // A different seed gives different views.
    let other = batches(&data, LoaderConfig::new(4, 10, true, true, 2), 1);
    assert_ne!(other[0].pixels, one[0].pixels);
    // Two shards of the same global batches are its halves.
    let s0 = batches(&data, LoaderConfig::new(4, 9, true, true, 2).shard(0, 2), 3);
    let s1 = batches(&data, LoaderConfig::new(4, 9, true, true, 2).shard(1, 2), 3);
    for ((full, a), b) in one.iter().zip(&s0).zip(&s1) {
        assert_eq!([&a.labels[..], &b.labels[..]].concat(), full.labels);
        assert_eq!([&a.pixels[..], &b.pixels[..]].concat(), full.pixels);
    }
    assert!(
        shard(4, 0, 3).is_err(),
        "4 images do not split over 3 replicas"
    );
}

#[test]
fn unreadable_training_images_are_skipped_and_an_unreadable_split_fails() {
    let dir = tempfile::tempdir().unwrap();
    write_imagenet(dir.path(), 2, 1, 40);
    std::fs::write(dir.path().join("train/a/000-base.jpg"), corrupt_jpeg()).unwrap();
    std::fs::write(dir.path().join("train/b/000-base.jpg"), b"not an image").unwrap();
    let data = Arc::new(ImageNet::open(dir.path()).unwrap());
    // One epoch of four images, unshuffled: both bad ones are replaced.
    let b = batches(&data, LoaderConfig::new(4, 0, false, true, 2), 1);
    assert_eq!(b[0].skipped, 2);
    assert_eq!(b[0].labels, [0, 0, 1, 1]);
    for f in ["train/a/001-prog.jpg", "train/b/001-prog.jpg"] {
        std::fs::write(dir.path().join(f), corrupt_jpeg()).unwrap();
    }
    let cfg = LoaderConfig::new(2, 0, false, true, 2);
    let mut loader = Loader::start(data, cfg, DataCursor::default(), 0).unwrap();
    let e = loader.next_batch().unwrap_err().to_string();
    assert!(
        e.contains("no readable image") && e.contains("train"),
        "{e}"
    );
}
