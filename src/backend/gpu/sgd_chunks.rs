//! The table `sgd_update_chunks_f32` (kernels/elementwise.cu) walks: one SGD launch for every
//! parameter of a network. Each entry is `(w, g, v, len, w_copy)` as five u64 words, the device
//! addresses of up to [`SGD_CHUNK`] consecutive elements of one parameter's value, gradient and
//! momentum, their count, and the address of the same elements of the parameter's bf16 copy (0 for a
//! parameter without one; the kernel then writes no copy). A block takes one entry at a time. Chunks
//! bound the work of a block, so a 2.4M-element weight and a 64-element BN bias both spread over the
//! GPU.

use super::driver::DevicePtr;

/// Elements per chunk: 32 per thread of a 256-thread block.
pub const SGD_CHUNK: usize = 8192;

/// Threads per block of `sgd_update_chunks_f32`.
pub const SGD_CHUNK_THREADS: u32 = 256;

/// Words (u64) per table entry (the kernel's `SgdChunk`).
pub const WORDS_PER_CHUNK: usize = 5;

/// One parameter's f32 tensors on the device: value, gradient and momentum, and their length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgdParam {
    pub w: DevicePtr,
    pub g: DevicePtr,
    pub v: DevicePtr,
    pub len: usize,
}

/// A parameter whose update also writes a bf16 copy of its new value: `w_copy` is the device address
/// of `param.len` bf16 elements, or 0 for none (then it is updated exactly like a plain [`SgdParam`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgdParamWithCopy {
    pub param: SgdParam,
    pub w_copy: DevicePtr,
}

impl From<SgdParam> for SgdParamWithCopy {
    fn from(param: SgdParam) -> Self {
        SgdParamWithCopy { param, w_copy: 0 }
    }
}

/// The chunk table of `params`, in their order (empty parameters have no chunk); no bf16 copies.
pub fn sgd_chunk_table(params: &[SgdParam]) -> Vec<u64> {
    let mut words = Vec::new();
    for &p in params {
        push_chunks(&mut words, p.into());
    }
    words
}

/// The chunk table of `params`, in their order, each chunk writing its part of the parameter's bf16
/// copy where it has one.
pub fn sgd_chunk_table_with_copies(params: &[SgdParamWithCopy]) -> Vec<u64> {
    let mut words = Vec::new();
    for &p in params {
        push_chunks(&mut words, p);
    }
    words
}

fn push_chunks(words: &mut Vec<u64>, p: SgdParamWithCopy) {
    let SgdParamWithCopy { param, w_copy } = p;
    for start in (0..param.len).step_by(SGD_CHUNK) {
        let offset = (start * std::mem::size_of::<f32>()) as u64;
        let copy = if w_copy == 0 {
            0
        } else {
            w_copy + (start * std::mem::size_of::<u16>()) as u64
        };
        let len = SGD_CHUNK.min(param.len - start) as u64;
        words.extend_from_slice(&[
            param.w + offset,
            param.g + offset,
            param.v + offset,
            len,
            copy,
        ]);
    }
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
            0x1000, 0x9000_0000, 0x5_0000_0000, chunk, 0,
            0x1000 + step, 0x9000_0000 + step, 0x5_0000_0000 + step, chunk, 0,
            0x1000 + 2 * step, 0x9000_0000 + 2 * step, 0x5_0000_0000 + 2 * step, 5, 0,
            0x40, 0x80, 0xc0, 3, 0,
        ];
        assert_eq!(table, want);
        assert!(sgd_chunk_table(&[empty]).is_empty());
    }

    #[test]
    fn bf16_copies_advance_by_two_bytes_an_element() {
        let big = SgdParam {
            w: 0x1000,
            g: 0x9000_0000,
            v: 0x5_0000_0000,
            len: SGD_CHUNK + 1,
        };
        let small = SgdParam {
            w: 0x40,
            g: 0x80,
            v: 0xc0,
            len: 3,
        };
        let table = sgd_chunk_table_with_copies(&[
            SgdParamWithCopy {
                param: big,
                w_copy: 0x7000,
            },
            small.into(),
        ]);
        let step = (SGD_CHUNK * 4) as u64;
        let copy_step = (SGD_CHUNK * 2) as u64;
        let chunk = SGD_CHUNK as u64;
        #[rustfmt::skip]
        let want = vec![
            0x1000, 0x9000_0000, 0x5_0000_0000, chunk, 0x7000,
            0x1000 + step, 0x9000_0000 + step, 0x5_0000_0000 + step, 1, 0x7000 + copy_step,
            0x40, 0x80, 0xc0, 3, 0,
        ];
        assert_eq!(table, want);
        assert_eq!(
            sgd_chunk_table_with_copies(&[small.into()]),
            sgd_chunk_table(&[small])
        );
    }
}
