//! The CPU's [`Backend::image_batch`](crate::backend::Backend::image_batch): the reference for the
//! device kernel (kernels/input.cu), computed as the host batch assembly does
//! (`pixel as f32 / 255.0 + shift - mean`, one rounding each, left to right) so that the three
//! agree bit for bit.

use rayon::prelude::*;

use super::CpuBackend;
use crate::backend::{Element, IMAGE_DRAW_WIDTH};
use crate::error::Result;
use crate::tensor::Tensor;

/// Images kept "on the device" of the CPU backend: host memory.
pub struct CpuImages {
    /// `[count, H, W, 3]` u8.
    pub(super) pixels: Vec<u8>,
    pub(super) labels: Vec<u32>,
}

impl<T: Element> CpuBackend<T> {
    pub(super) fn store_images(&self, pixels: &[u8], labels: &[u32]) -> Result<CpuImages> {
        Ok(CpuImages {
            pixels: pixels.to_vec(),
            labels: labels.to_vec(),
        })
    }

    pub(super) fn refill_stored_images(
        &self,
        images: &mut CpuImages,
        pixels: &[u8],
        labels: &[u32],
    ) -> Result<()> {
        images.pixels.copy_from_slice(pixels);
        images.labels.copy_from_slice(labels);
        Ok(())
    }

    pub(super) fn gather_image_batch(
        &self,
        images: &CpuImages,
        count: usize,
        draws: &Tensor<Self>,
        mean: &Tensor<Self>,
        x: &mut Tensor<Self>,
        labels: &mut Tensor<Self>,
    ) -> Result<()> {
        let [_, h, w, c] = x.shape().dims4().expect("ops checked x is NHWC");
        let image = h * w * c;
        let draws = draws.buf();
        let mean: Vec<f32> = mean.buf().iter().map(|m| m.f64() as f32).collect();
        const D: usize = IMAGE_DRAW_WIDTH;
        for (b, label) in labels.buf_mut().iter_mut().enumerate() {
            let i = draws[D * b].f64() as usize;
            *label = match images.labels.get(i).filter(|_| i < count) {
                Some(&l) => T::of(f64::from(l)),
                None => T::of(f64::NAN),
            };
        }
        x.buf_mut()
            .par_chunks_mut(image)
            .enumerate()
            .for_each(|(b, out)| {
                let d = &draws[D * b..D * (b + 1)];
                let shift = [4, 5, 6].map(|k| d[k].f64() as f32);
                let i = d[0].f64() as usize;
                let (dy, dx) = (d[1].f64() as isize, d[2].f64() as isize);
                let flip = d[3].f64() != 0.0;
                let src = (i < count).then(|| &images.pixels[i * image..(i + 1) * image]);
                for y in 0..h {
                    for xo in 0..w {
                        let sy = y as isize + dy;
                        let xs = if flip { w - 1 - xo } else { xo };
                        let sx = xs as isize + dx;
                        let dst = &mut out[(y * w + xo) * c..][..c];
                        let inside = (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx);
                        match src.filter(|_| inside) {
                            Some(src) => {
                                let at = (sy as usize * w + sx as usize) * c;
                                for (k, v) in dst.iter_mut().enumerate() {
                                    let value =
                                        src[at + k] as f32 / 255.0 + shift[k] - mean[at + k];
                                    *v = T::of(f64::from(value));
                                }
                            }
                            None => dst.fill(T::zero()),
                        }
                    }
                }
            });
        Ok(())
    }
}
