//! The table `sgd_update_chunks_f32` (kernels/elementwise.cu) walks: one SGD launch for every
//! parameter of a network. Each entry is `(w, g, v, len)` as four u64 words, the device addresses of
//! up to [`SGD_CHUNK`] consecutive elements of one parameter's value, gradient and momentum; a block
//! takes one entry at a time. Chunks bound the work of a block, so a 2.4M-element weight and a
//! 64-element BN bias both spread over the GPU.

use super::driver::DevicePtr;

/// Elements per chunk: 32 per thread of a 256-thread block.
pub const SGD_CHUNK: usize = 8192;

/// Threads per block of `sgd_update_chunks_f32`.
pub const SGD_CHUNK_THREADS: u32 = 256;

/// Words (u64) per table entry.
pub const WORDS_PER_CHUNK: usize = 4;

/// One parameter's f32 tensors on the device: value, gradient and momentum, and their length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgdParam {
    pub w: DevicePtr,
    pub g: DevicePtr,
    pub v: DevicePtr,
    pub len: usize,
}

/// The chunk table of `params`, in their order (empty parameters have no chunk).
pub fn sgd_chunk_table(params: &[SgdParam]) -> Vec<u64> {
    let mut words = Vec::new();
    for p in params {
        for start in (0..p.len).step_by(SGD_CHUNK) {
            let offset = (start * std::mem::size_of::<f32>()) as u64;
            let len = SGD_CHUNK.min(p.len - start) as u64;
            words.extend_from_slice(&[p.w + offset, p.g + offset, p.v + offset, len]);
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_split_into_chunks_in_order() {
        let big = SgdParam {
            w: 0x1000,
            g: 0x9000_0000,
            v: 0x5_0000_0000,
            len: 2 * SGD_CHUNK + 5,
        };
        let empty = SgdParam { len: 0, ..big };
        let small = SgdParam {
            w: 0x40,
            g: 0x80,
            v: 0xc0,
            len: 3,
        };
        let table = sgd_chunk_table(&[big, empty, small]);
        let step = (SGD_CHUNK * 4) as u64;
        let chunk = SGD_CHUNK as u64;
        #[rustfmt::skip]
        let want = vec![
            0x1000, 0x9000_0000, 0x5_0000_0000, chunk,
            0x1000 + step, 0x9000_0000 + step, 0x5_0000_0000 + step, chunk,
            0x1000 + 2 * step, 0x9000_0000 + 2 * step, 0x5_0000_0000 + 2 * step, 5,
            0x40, 0x80, 0xc0, 3,
        ];
        assert_eq!(table, want);
        assert!(sgd_chunk_table(&[empty]).is_empty());
    }
}
