//! The synthetic dataset, the CIFAR augmentation, batch assembly, the mean image and the epoch order.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use resnet_cuda::data::augment::{pad_crop_flip, CropFlip, CropFlipParams};
use resnet_cuda::data::batch::{
    epoch_order, fill_batch, fill_batch_with_views, DataCursor, MeanImage,
};
use resnet_cuda::data::synthetic::{self, Split, SyntheticDataset, NUM_CLASSES, SIDE};
use resnet_cuda::data::Dataset;

const IMAGE: usize = SIDE * SIDE * 3;

fn image(ds: &dyn Dataset, index: usize) -> (Vec<u8>, u32) {
    let mut out = vec![0u8; IMAGE];
    let label = ds.load(index, &mut out).unwrap();
    (out, label)
}

// ---------------------------------------------------------------------------------------------------
// The synthetic dataset.

#[test]
fn splits_have_the_documented_shape() {
    let splits = synthetic::splits(3);
    assert_eq!(splits.name, "synthetic");
    assert_eq!((splits.train.len(), splits.test.len()), (50_000, 10_000));
    for ds in [&splits.train, &splits.test] {
        assert_eq!(ds.num_classes(), 10);
        assert_eq!(ds.image_size(), (32, 32));
    }
    assert!(
        splits.train.describe().contains("50000"),
        "{}",
        splits.train.describe()
    );
}

#[test]
fn images_are_a_function_of_seed_split_and_index() {
    let a = SyntheticDataset::new(7, Split::Train, 1000);
    let b = SyntheticDataset::new(7, Split::Train, 50_000);
    // Any order, any instance: the same (seed, split, index) gives the same image and label.
    for &i in &[999, 0, 500, 3, 999] {
        assert_eq!(image(&a, i), image(&b, i), "image {i}");
    }
    // Different indices, seeds and splits give different images.
    let first = image(&a, 10).0;
    assert_ne!(first, image(&a, 11).0);
    assert_ne!(
        first,
        image(&SyntheticDataset::new(8, Split::Train, 1000), 10).0
    );
    assert_ne!(
        first,
        image(&SyntheticDataset::new(7, Split::Test, 1000), 10).0
    );
    let distinct: std::collections::HashSet<Vec<u8>> = (0..200).map(|i| image(&a, i).0).collect();
    assert_eq!(distinct.len(), 200, "every image differs");
}

#[test]
fn out_of_range_loads_are_errors() {
    let ds = SyntheticDataset::new(0, Split::Test, 20);
    let mut out = vec![0u8; IMAGE];
    let err = ds.load(20, &mut out).unwrap_err().to_string();
    assert!(err.contains("20"), "{err}");
    assert!(ds.load(0, &mut out[..IMAGE - 1]).is_err());
}

/// Every aligned block of ten indices holds each class once, so any window of `n` consecutive indices
/// has between `n / 10 - 2` and `n / 10 + 2` images of each class (the partial blocks at its ends).
#[test]
fn labels_are_balanced_and_in_range() {
    for split in [Split::Train, Split::Test] {
        let ds = SyntheticDataset::new(11, split, 50_000);
        for (start, n) in [(0, 1000), (37, 2013), (40_000, 10_000)] {
            let mut counts = [0usize; NUM_CLASSES];
            for i in start..start + n {
                let label = ds.label(i) as usize;
                assert!(label < NUM_CLASSES);
                counts[label] += 1;
            }
            for &c in &counts {
                assert!(
                    c.abs_diff(n / NUM_CLASSES) <= 2,
                    "{split:?} [{start}, {}): counts {counts:?}",
                    start + n
                );
            }
            if start % 10 == 0 && n % 10 == 0 {
                assert!(
                    counts.iter().all(|&c| c == n / 10),
                    "exact on whole blocks: {counts:?}"
                );
            }
        }
        // The order within blocks is not a fixed cycle.
        let firsts: std::collections::HashSet<u32> = (0..50).map(|b| ds.label(b * 10)).collect();
        assert!(firsts.len() >= 5, "first labels of blocks: {firsts:?}");
    }
    // `load` returns the same label as `label`.
    let ds = SyntheticDataset::new(11, Split::Train, 100);
    assert!((0..100).all(|i| image(&ds, i).1 == ds.label(i)));
}

#[test]
fn pixel_statistics_are_sane() {
    let ds = SyntheticDataset::new(0, Split::Train, 2000);
    let (mut sum, mut sum_sq, mut lo, mut hi) = ([0f64; 3], [0f64; 3], [255u8; 3], [0u8; 3]);
    let mut low_spread = 0;
    for i in 0..ds.len() {
        let (img, _) = image(&ds, i);
        let mean_of_image = img.iter().map(|&p| p as f64).sum::<f64>() / IMAGE as f64;
        let var_of_image = img
            .iter()
            .map(|&p| (p as f64 - mean_of_image).powi(2))
            .sum::<f64>()
            / IMAGE as f64;
        if var_of_image.sqrt() < 5.0 {
            low_spread += 1;
        }
        for (k, &p) in img.iter().enumerate() {
            let ch = k % 3;
            sum[ch] += p as f64;
            sum_sq[ch] += (p as f64).powi(2);
            lo[ch] = lo[ch].min(p);
            hi[ch] = hi[ch].max(p);
        }
    }
    let n = (ds.len() * SIDE * SIDE) as f64;
    for ch in 0..3 {
        let mean = sum[ch] / n / 255.0;
        let std = (sum_sq[ch] / n - (sum[ch] / n).powi(2)).sqrt() / 255.0;
        assert!((0.4..0.6).contains(&mean), "channel {ch} mean {mean}");
        assert!((0.2..0.4).contains(&std), "channel {ch} std {std}");
        assert!(
            lo[ch] < 5 && hi[ch] > 250,
            "channel {ch} range {}..{}",
            lo[ch],
            hi[ch]
        );
    }
    assert_eq!(low_spread, 0, "images without visible content");
}

/// Features a trivial classifier might use, by class, from the training split; accuracy on the test
/// split of the nearest class mean.
fn nearest_mean_accuracy(feature: impl Fn(&[u8]) -> Vec<f64>) -> f64 {
    let train = SyntheticDataset::new(5, Split::Train, 5000);
    let test = SyntheticDataset::new(5, Split::Test, 2000);
    let mut means: Vec<Vec<f64>> = Vec::new();
    let mut counts = [0usize; NUM_CLASSES];
    for i in 0..train.len() {
        let (img, label) = image(&train, i);
        let f = feature(&img);
        if means.is_empty() {
            means = vec![vec![0.0; f.len()]; NUM_CLASSES];
        }
        counts[label as usize] += 1;
        for (m, v) in means[label as usize].iter_mut().zip(&f) {
            *m += v;
        }
    }
    for (m, &c) in means.iter_mut().zip(&counts) {
        m.iter_mut().for_each(|v| *v /= c as f64);
    }
    let correct = (0..test.len())
        .filter(|&i| {
            let (img, label) = image(&test, i);
            let f = feature(&img);
            let dist = |m: &Vec<f64>| m.iter().zip(&f).map(|(a, b)| (a - b).powi(2)).sum::<f64>();
            let best = (0..NUM_CLASSES)
                .min_by(|&a, &b| dist(&means[a]).total_cmp(&dist(&means[b])))
                .unwrap();
            best == label as usize
        })
        .count();
    correct as f64 / test.len() as f64
}

/// Mean absolute differences of the grey image along x, y and both diagonals: the edge-orientation
/// energy, which tells stripes from stripes and busy figures from plain ones.
fn edge_energy(img: &[u8]) -> Vec<f64> {
    let grey = |y: usize, x: usize| {
        img[(y * SIDE + x) * 3..][..3]
            .iter()
            .map(|&p| p as f64)
            .sum::<f64>()
    };
    let mut f = [0.0; 4];
    for y in 0..SIDE - 1 {
        for x in 0..SIDE - 1 {
            let g = grey(y, x);
            f[0] += (grey(y, x + 1) - g).abs();
            f[1] += (grey(y + 1, x) - g).abs();
            f[2] += (grey(y + 1, x + 1) - g).abs();
            f[3] += (grey(y + 1, x) - grey(y, x + 1)).abs();
        }
    }
    let total: f64 = f.iter().sum();
    f.iter().map(|v| v / total).collect()
}

/// The data is not trivial: classifiers that look at raw pixels, colour statistics or edge
/// orientation are far from the 90% a resnet20 reaches. Measured (seed 5, 5000 train / 2000 test
/// images; chance is 10%): nearest class mean on raw pixels 9.8%, on the mean colour 9.3%, on
/// per-channel mean and spread 10.3%, on the normalised edge energy along x, y and the diagonals 25.7%.
#[test]
fn trivial_classifiers_fail() {
    let raw = nearest_mean_accuracy(|img| img.iter().map(|&p| p as f64).collect());
    let colour = nearest_mean_accuracy(|img| {
        (0..3)
            .map(|ch| {
                img.iter()
                    .skip(ch)
                    .step_by(3)
                    .map(|&p| p as f64)
                    .sum::<f64>()
                    / (SIDE * SIDE) as f64
            })
            .collect()
    });
    let spread = nearest_mean_accuracy(|img| {
        let mut f = Vec::new();
        for ch in 0..3 {
            let values: Vec<f64> = img.iter().skip(ch).step_by(3).map(|&p| p as f64).collect();
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>()
                / values.len() as f64)
                .sqrt();
            f.extend([mean, std]);
        }
        f
    });
    let edges = nearest_mean_accuracy(edge_energy);
    println!("nearest class mean: raw pixels {raw:.3}, mean colour {colour:.3}, colour mean and spread {spread:.3}, edge energy {edges:.3}");
    assert!(raw < 0.2, "raw-pixel nearest mean reaches {raw}");
    assert!(colour < 0.2, "mean-colour nearest mean reaches {colour}");
    assert!(
        spread < 0.25,
        "colour mean/spread nearest mean reaches {spread}"
    );
    assert!(edges < 0.4, "edge-energy nearest mean reaches {edges}");
}

// ---------------------------------------------------------------------------------------------------
// Augmentation.

/// A test image whose every value is distinct: value = 1 + index.
fn ramp_image(h: usize, w: usize, c: usize) -> Vec<f32> {
    (0..h * w * c).map(|i| 1.0 + i as f32).collect()
}

#[test]
fn drawn_views_stay_in_bounds_and_cover_every_offset() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let views = CropFlip::CIFAR.draw_batch(&mut rng, 4000);
    let mut seen_dy = [false; 9];
    let mut seen_dx = [false; 9];
    let mut flips = 0;
    for v in &views {
        assert!(
            (-4..=4).contains(&v.dy) && (-4..=4).contains(&v.dx),
            "{v:?}"
        );
        seen_dy[(v.dy + 4) as usize] = true;
        seen_dx[(v.dx + 4) as usize] = true;
        flips += v.flip as usize;
    }
    assert!(
        seen_dy.iter().chain(&seen_dx).all(|&s| s),
        "every offset in [-4, 4] is drawn"
    );
    assert!((1800..2200).contains(&flips), "{flips} flips in 4000");
    let no_flip = CropFlip {
        pad: 2,
        flip: false,
    }
    .draw_batch(&mut rng, 500);
    assert!(no_flip
        .iter()
        .all(|v| !v.flip && v.dy.abs() <= 2 && v.dx.abs() <= 2));
    // The same stream gives the same views.
    assert_eq!(
        views,
        CropFlip::CIFAR.draw_batch(&mut ChaCha8Rng::seed_from_u64(1), 4000)
    );
}

#[test]
fn identity_view_copies_the_image() {
    let (h, w, c) = (5, 7, 3);
    let src = ramp_image(h, w, c);
    let mut dst = vec![-1.0; src.len()];
    pad_crop_flip(&src, h, w, c, 4, CropFlipParams::IDENTITY, &mut dst);
    assert_eq!(dst, src);
}

#[test]
fn flip_is_an_exact_mirror() {
    let (h, w, c) = (4, 6, 3);
    let src = ramp_image(h, w, c);
    let mut dst = vec![0.0; src.len()];
    pad_crop_flip(
        &src,
        h,
        w,
        c,
        4,
        CropFlipParams {
            dy: 0,
            dx: 0,
            flip: true,
        },
        &mut dst,
    );
    for y in 0..h {
        for x in 0..w {
            for ch in 0..c {
                assert_eq!(
                    dst[(y * w + x) * c + ch],
                    src[(y * w + (w - 1 - x)) * c + ch]
                );
            }
        }
    }
    // Twice is the identity.
    let mut back = vec![0.0; src.len()];
    pad_crop_flip(
        &dst,
        h,
        w,
        c,
        4,
        CropFlipParams {
            dy: 0,
            dx: 0,
            flip: true,
        },
        &mut back,
    );
    assert_eq!(back, src);
}

#[test]
fn shifted_crops_move_pixels_by_the_offset_and_pad_with_zeros() {
    let (h, w, c) = (6, 5, 2);
    let pad = 4;
    let src = ramp_image(h, w, c);
    let mut dst = vec![0.0; src.len()];
    for dy in -4..=4isize {
        for dx in -4..=4isize {
            for flip in [false, true] {
                pad_crop_flip(
                    &src,
                    h,
                    w,
                    c,
                    pad,
                    CropFlipParams { dy, dx, flip },
                    &mut dst,
                );
                let mut zeros = 0;
                for y in 0..h {
                    for x in 0..w {
                        let crop_x = if flip { w - 1 - x } else { x } as isize;
                        let (sy, sx) = (y as isize + dy, crop_x + dx);
                        let inside = (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx);
                        for ch in 0..c {
                            let got = dst[(y * w + x) * c + ch];
                            if inside {
                                assert_eq!(
                                    got,
                                    src[(sy as usize * w + sx as usize) * c + ch],
                                    "({dy},{dx},{flip}) at ({y},{x})"
                                );
                            } else {
                                assert_eq!(
                                    got, 0.0,
                                    "({dy},{dx},{flip}) at ({y},{x}) should be padding"
                                );
                                zeros += 1;
                            }
                        }
                    }
                }
                // Exactly the rows and columns shifted out are zero.
                let kept = (h - dy.unsigned_abs()) * (w - dx.unsigned_abs());
                assert_eq!(zeros, (h * w - kept) * c);
            }
        }
    }
    // An offset of 3 moves pixel (0, 0) of the source to (0, 3) of the output.
    pad_crop_flip(
        &src,
        h,
        w,
        c,
        pad,
        CropFlipParams {
            dy: 0,
            dx: -3,
            flip: false,
        },
        &mut dst,
    );
    assert_eq!(&dst[3 * c..4 * c], &src[..c]);
    assert!(dst[..3 * c].iter().all(|&v| v == 0.0));
}

#[test]
#[should_panic(expected = "cannot be drawn from 10 images")]
fn the_cursor_rejects_a_batch_larger_than_the_dataset() {
    DataCursor::default().next_batch_indices(10, 11, 1, true);
}

#[test]
#[should_panic(expected = "exceeds the padding")]
fn offsets_beyond_the_padding_are_rejected() {
    let src = ramp_image(4, 4, 3);
    let mut dst = vec![0.0; src.len()];
    pad_crop_flip(
        &src,
        4,
        4,
        3,
        2,
        CropFlipParams {
            dy: 3,
            dx: 0,
            flip: false,
        },
        &mut dst,
    );
}

// ---------------------------------------------------------------------------------------------------
// The mean image and batches.

#[test]
fn mean_image_equals_a_direct_computation() {
    let ds = SyntheticDataset::new(2, Split::Train, 777);
    let mean = MeanImage::compute(&ds).unwrap();
    assert_eq!(
        (mean.height, mean.width, mean.shape()),
        (32, 32, [32, 32, 3])
    );
    let mut sums = vec![0f64; IMAGE];
    for i in 0..ds.len() {
        for (s, &p) in sums.iter_mut().zip(&image(&ds, i).0) {
            *s += p as f64;
        }
    }
    let direct: Vec<f32> = sums
        .iter()
        .map(|s| (s / (255.0 * ds.len() as f64)) as f32)
        .collect();
    assert_eq!(mean.data, direct);
    // The same on one thread.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    assert_eq!(pool.install(|| MeanImage::compute(&ds).unwrap()), mean);
    assert!(MeanImage::from_parts(32, 32, vec![0.0; 10]).is_err());
    assert!(MeanImage::compute(&SyntheticDataset::new(2, Split::Train, 0)).is_err());
}

#[test]
fn batches_are_normalised_images_and_labels() {
    let ds = SyntheticDataset::new(4, Split::Test, 300);
    let mean = MeanImage::compute(&ds).unwrap();
    let indices = [299, 0, 17, 17, 150];
    let mut pixels = vec![0f32; indices.len() * IMAGE];
    let mut labels = vec![99u32; indices.len()];
    fill_batch(
        &ds,
        &indices,
        &mean,
        None::<&mut ChaCha8Rng>,
        &mut pixels,
        &mut labels,
    )
    .unwrap();
    for (k, &i) in indices.iter().enumerate() {
        let (img, label) = image(&ds, i);
        assert_eq!(labels[k], label);
        let expected: Vec<f32> = img
            .iter()
            .zip(&mean.data)
            .map(|(&p, &m)| p as f32 / 255.0 - m)
            .collect();
        assert_eq!(&pixels[k * IMAGE..(k + 1) * IMAGE], &expected[..]);
    }
    // With augmentation, each image is its view of the normalised image.
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut augmented = vec![0f32; pixels.len()];
    fill_batch(
        &ds,
        &indices,
        &mean,
        Some(&mut rng),
        &mut augmented,
        &mut labels,
    )
    .unwrap();
    let views = CropFlip::CIFAR.draw_batch(&mut ChaCha8Rng::seed_from_u64(9), indices.len());
    for k in 0..indices.len() {
        let mut expected = vec![0f32; IMAGE];
        pad_crop_flip(
            &pixels[k * IMAGE..(k + 1) * IMAGE],
            32,
            32,
            3,
            4,
            views[k],
            &mut expected,
        );
        assert_eq!(
            &augmented[k * IMAGE..(k + 1) * IMAGE],
            &expected[..],
            "image {k} view {:?}",
            views[k]
        );
    }
    // Bad sizes and indices are errors.
    assert!(fill_batch(
        &ds,
        &indices,
        &mean,
        None::<&mut ChaCha8Rng>,
        &mut pixels[1..],
        &mut labels
    )
    .is_err());
    assert!(fill_batch(
        &ds,
        &indices,
        &mean,
        None::<&mut ChaCha8Rng>,
        &mut pixels,
        &mut labels[1..]
    )
    .is_err());
    assert!(fill_batch(
        &ds,
        &[300],
        &mean,
        None::<&mut ChaCha8Rng>,
        &mut pixels[..IMAGE],
        &mut labels[..1]
    )
    .is_err());
    let small = MeanImage::from_parts(16, 16, vec![0.0; 16 * 16 * 3]).unwrap();
    assert!(fill_batch(
        &ds,
        &indices,
        &small,
        None::<&mut ChaCha8Rng>,
        &mut pixels,
        &mut labels
    )
    .is_err());
    let short_views = [CropFlipParams::IDENTITY];
    assert!(fill_batch_with_views(
        &ds,
        &indices,
        &mean,
        Some((4, &short_views)),
        &mut pixels,
        &mut labels
    )
    .is_err());
}

#[test]
fn the_same_seed_gives_the_same_batches_on_any_number_of_threads() {
    let ds = SyntheticDataset::new(1, Split::Train, 1000);
    let mean = MeanImage::compute(&ds).unwrap();
    let run = |aug_seed: u64| {
        let mut cursor = DataCursor::default();
        let mut rng = ChaCha8Rng::seed_from_u64(aug_seed);
        let mut out = Vec::new();
        for _ in 0..3 {
            let (indices, _) = cursor.next_batch_indices(ds.len(), 64, 42, true);
            let mut pixels = vec![0f32; 64 * IMAGE];
            let mut labels = vec![0u32; 64];
            fill_batch(
                &ds,
                &indices,
                &mean,
                Some(&mut rng),
                &mut pixels,
                &mut labels,
            )
            .unwrap();
            out.push((pixels, labels));
        }
        out
    };
    let a = run(5);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    assert!(
        pool.install(|| run(5)) == a,
        "one thread and many give the same batches"
    );
    let b = run(6);
    assert_eq!(
        a.iter().map(|x| &x.1).collect::<Vec<_>>(),
        b.iter().map(|x| &x.1).collect::<Vec<_>>()
    );
    assert!(
        a.iter().zip(&b).all(|(x, y)| x.0 != y.0),
        "another augmentation seed gives other views"
    );
}

// ---------------------------------------------------------------------------------------------------
// Epoch order and the data cursor.

#[test]
fn epoch_orders_are_permutations_that_change_per_epoch() {
    let n = 1000;
    let e0 = epoch_order(n, 3, 0, true);
    let mut sorted = e0.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..n).collect::<Vec<_>>());
    assert_eq!(e0, epoch_order(n, 3, 0, true), "deterministic");
    assert_ne!(
        e0,
        epoch_order(n, 3, 1, true),
        "another epoch, another order"
    );
    assert_ne!(
        e0,
        epoch_order(n, 4, 0, true),
        "another seed, another order"
    );
    assert_ne!(e0, (0..n).collect::<Vec<_>>());
    assert_eq!(epoch_order(n, 3, 5, false), (0..n).collect::<Vec<_>>());
    assert!(epoch_order(0, 3, 0, true).is_empty());
    assert_eq!(epoch_order(1, 3, 0, true), vec![0]);
}

#[test]
fn the_cursor_walks_epochs_and_drops_the_last_partial_batch() {
    let (num, batch) = (10, 4);
    let mut cursor = DataCursor::default();
    let mut seen = Vec::new();
    for expected_epoch in [0, 0, 1, 1, 2] {
        let (indices, epoch) = cursor.next_batch_indices(num, batch, 1, true);
        assert_eq!(epoch, expected_epoch);
        assert_eq!(indices.len(), batch);
        seen.push(indices);
    }
    // An epoch's two batches are its order's first eight images; the last two are skipped.
    for epoch in 0..2 {
        let order = epoch_order(num, 1, epoch, true);
        assert_eq!(
            [
                &seen[2 * epoch as usize][..],
                &seen[2 * epoch as usize + 1][..]
            ]
            .concat(),
            order[..8]
        );
    }
    assert_eq!((cursor.epoch, cursor.position), (2, 4));
    // Without shuffling every epoch reads 0..8.
    let mut plain = DataCursor::default();
    for _ in 0..4 {
        let (indices, _) = plain.next_batch_indices(num, batch, 1, false);
        assert!(indices.iter().all(|&i| i < 8));
    }
}

#[test]
fn a_saved_cursor_resumes_exactly() {
    let (num, batch, seed) = (1000, 128, 77);
    let mut cursor = DataCursor::default();
    for _ in 0..11 {
        cursor.next_batch_indices(num, batch, seed, true);
    }
    let saved = serde_json::to_string(&cursor).unwrap();
    let mut resumed: DataCursor = serde_json::from_str(&saved).unwrap();
    assert_eq!(resumed, cursor);
    assert_eq!(resumed, DataCursor::new(cursor.epoch, cursor.position));
    for _ in 0..20 {
        assert_eq!(
            resumed.next_batch_indices(num, batch, seed, true),
            cursor.next_batch_indices(num, batch, seed, true)
        );
    }
}
