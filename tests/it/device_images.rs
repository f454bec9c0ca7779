//! Batches built by the backend from stored images (`ops::image_batch`) against the host's batch
//! assembly, on the CPU backend (the reference; tests/device_data.rs runs the same comparison on
//! the GPU backend). Both compute `pixel / 255 - mean` with one rounding each and move values
//! around without arithmetic, so they must agree bit for bit.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use resnet_cuda::backend::cpu::CpuBackend;
use resnet_cuda::data::augment::{CropFlip, CropFlipParams};
use resnet_cuda::data::batch::{fill_batch_with_views, MeanImage};
use resnet_cuda::data::device_images::{BatchDraws, DeviceImages};
use resnet_cuda::data::imagenet::normalise_view;
use resnet_cuda::data::synthetic;
use resnet_cuda::data::Dataset;
use resnet_cuda::ops;
use resnet_cuda::tensor::Tensor;

type Cpu = CpuBackend<f32>;

struct Fixture {
    be: Cpu,
    ds: Box<dyn Dataset>,
    mean: MeanImage,
    images: DeviceImages<Cpu>,
    mean_t: Tensor<Cpu>,
}

fn fixture() -> Fixture {
    let be = Cpu::new();
    let ds = synthetic::splits_sized(11, 40, 8).train;
    let mean = MeanImage::compute(ds.as_ref()).unwrap();
    let images = DeviceImages::upload(&be, ds.as_ref()).unwrap();
    let mut mean_t = Tensor::zeros(&be, mean.shape()).unwrap();
    mean_t.copy_from_slice(&be, &mean.data).unwrap();
    Fixture {
        be,
        ds,
        mean,
        images,
        mean_t,
    }
}

/// The batch of `indices` with `views`, built by the backend: values and labels.
fn device_batch(
    f: &Fixture,
    indices: &[usize],
    views: Option<&[CropFlipParams]>,
) -> (Vec<f32>, Vec<u32>) {
    let (h, w) = f.ds.image_size();
    let n = indices.len();
    let mut draws = BatchDraws::new(&f.be, n).unwrap();
    draws.fill(&f.be, &f.images, indices, views).unwrap();
    let mut x = Tensor::zeros(&f.be, [n, h, w, 3]).unwrap();
    let mut labels = Tensor::zeros(&f.be, [n]).unwrap();
    ops::image_batch(&f.be, &f.images, &draws, &f.mean_t, &mut x, &mut labels).unwrap();
    let labels = labels
        .to_vec(&f.be)
        .unwrap()
        .iter()
        .map(|&l| l as u32)
        .collect();
    (x.to_vec(&f.be).unwrap(), labels)
}

/// The same batch built by the backend and by the host.
fn both(
    f: &Fixture,
    indices: &[usize],
    views: Option<&[CropFlipParams]>,
) -> [(Vec<f32>, Vec<u32>); 2] {
    let (h, w) = f.ds.image_size();
    let n = indices.len();
    let mut pixels = vec![0f32; n * h * w * 3];
    let mut host_labels = vec![0u32; n];
    let pad = CropFlip::CIFAR.pad;
    fill_batch_with_views(
        f.ds.as_ref(),
        indices,
        &f.mean,
        views.map(|v| (pad, v)),
        &mut pixels,
        &mut host_labels,
    )
    .unwrap();
    [device_batch(f, indices, views), (pixels, host_labels)]
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn an_augmented_batch_equals_the_host_batch_bit_for_bit() {
    let f = fixture();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    // Repeated images, every offset the paper's padding allows, both mirror states.
    let indices: Vec<usize> = (0..24)
        .map(|_| rng.random_range(0..f.images.len()))
        .collect();
    let views = CropFlip::CIFAR.draw_batch(&mut rng, indices.len());
    assert!(views.iter().any(|v| v.flip) && views.iter().any(|v| !v.flip));
    let [(x, labels), (host_x, host_labels)] = both(&f, &indices, Some(&views));
    assert_eq!(labels, host_labels);
    assert_eq!(bits(&x), bits(&host_x));
}

#[test]
fn an_unaugmented_batch_is_the_normalised_images() {
    let f = fixture();
    let indices: Vec<usize> = (0..f.images.len()).rev().collect();
    let [(x, labels), (host_x, host_labels)] = both(&f, &indices, None);
    assert_eq!(labels, host_labels);
    assert_eq!(bits(&x), bits(&host_x));
}

/// Offsets past the paper's padding (the host path refuses them; the device op takes any that
/// leaves part of the image in view), against the definition written out pixel by pixel.
#[test]
fn offsets_up_to_the_image_size_follow_the_definition() {
    let f = fixture();
    let (h, w) = f.ds.image_size();
    let (hi, wi) = (h as isize, w as isize);
    let views = [
        CropFlipParams {
            dy: hi - 1,
            dx: wi - 1,
            flip: false,
        },
        CropFlipParams {
            dy: 1 - hi,
            dx: 1 - wi,
            flip: true,
        },
        CropFlipParams {
            dy: 0,
            dx: wi - 1,
            flip: true,
        },
        CropFlipParams {
            dy: -7,
            dx: 9,
            flip: false,
        },
    ];
    let indices = [3, 4, 5, 39];
    let (x, _) = device_batch(&f, &indices, Some(&views));
    let mut raw = vec![0u8; h * w * 3];
    for (b, (v, &i)) in views.iter().zip(&indices).enumerate() {
        f.ds.load(i, &mut raw).unwrap();
        for y in 0..hi {
            for xo in 0..wi {
                let sy = y + v.dy;
                let sx = if v.flip { wi - 1 - xo } else { xo } + v.dx;
                for c in 0..3 {
                    let expected = if (0..hi).contains(&sy) && (0..wi).contains(&sx) {
                        let at = ((sy * wi + sx) * 3 + c) as usize;
                        raw[at] as f32 / 255.0 - f.mean.data[at]
                    } else {
                        0.0
                    };
                    let got = x[b * h * w * 3 + ((y * wi + xo) * 3 + c) as usize];
                    assert_eq!(
                        got.to_bits(),
                        expected.to_bits(),
                        "view {v:?} at ({y}, {xo}, {c})"
                    );
                }
            }
        }
    }
}

#[test]
fn draws_outside_the_images_are_refused_with_the_culprit_named() {
    let f = fixture();
    let mut draws = BatchDraws::new(&f.be, 2).unwrap();
    let past = draws
        .fill(&f.be, &f.images, &[0, 40], None)
        .unwrap_err()
        .to_string();
    assert!(past.contains("index 40 is past the end"), "{past}");
    let (h, _) = f.ds.image_size();
    let far = [
        CropFlipParams::IDENTITY,
        CropFlipParams {
            dy: h as isize,
            dx: 0,
            flip: false,
        },
    ];
    let off = draws
        .fill(&f.be, &f.images, &[0, 1], Some(&far))
        .unwrap_err()
        .to_string();
    assert!(off.contains("leaves a"), "{off}");
    let short = draws
        .fill(&f.be, &f.images, &[0], None)
        .unwrap_err()
        .to_string();
    assert!(
        short.contains("a table of 2 draws given 1 indices"),
        "{short}"
    );
}

#[test]
fn a_batch_of_the_wrong_shape_is_refused() {
    let f = fixture();
    let mut draws = BatchDraws::new(&f.be, 2).unwrap();
    draws.fill(&f.be, &f.images, &[0, 1], None).unwrap();
    let mut x = Tensor::zeros(&f.be, [3, 32, 32, 3]).unwrap();
    let mut labels = Tensor::zeros(&f.be, [2]).unwrap();
    let e = ops::image_batch(&f.be, &f.images, &draws, &f.mean_t, &mut x, &mut labels)
        .unwrap_err()
        .to_string();
    assert!(e.contains("image_batch") && e.contains("`x`"), "{e}");
}

/// ImageNet views: unmoved images with a colour shift each, against the host's `normalise_view`.
#[test]
fn shifted_draws_equal_the_hosts_normalised_views() {
    let f = fixture();
    let (h, w) = f.ds.image_size();
    let size = h * w * 3;
    let indices = [0, 9, 17];
    let shifts = [[0.031, -0.017, 0.0049], [-0.12, 0.08, 0.1], [0.0, 0.0, 0.0]];
    let mut draws = BatchDraws::new(&f.be, 3).unwrap();
    draws
        .fill_shifted(&f.be, &f.images, &indices, None, Some(&shifts))
        .unwrap();
    let mut x = Tensor::zeros(&f.be, [3, h, w, 3]).unwrap();
    let mut labels = Tensor::zeros(&f.be, [3]).unwrap();
    ops::image_batch(&f.be, &f.images, &draws, &f.mean_t, &mut x, &mut labels).unwrap();
    let x = x.to_vec(&f.be).unwrap();
    let mut raw = vec![0u8; size];
    let mut host = vec![0f32; size];
    for (b, (&i, &shift)) in indices.iter().zip(&shifts).enumerate() {
        f.ds.load(i, &mut raw).unwrap();
        normalise_view(&raw, shift, &f.mean.data, &mut host);
        assert_eq!(bits(&x[b * size..(b + 1) * size]), bits(&host), "image {i}");
    }
    let e = draws
        .fill_shifted(&f.be, &f.images, &indices, None, Some(&shifts[..2]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("3 indices, 3 views and 2 shifts"), "{e}");
}
