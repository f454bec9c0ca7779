//! A thin, safe wrapper over the `gemm` crate for the row-major products the CPU backend needs.

use crate::backend::Element;

/// A read-only matrix view: element `(i, j)` is `data[i * row_stride + j * col_stride]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A row-major `rows x cols` matrix.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major `cols x rows` matrix, viewed as `rows x cols`.
    pub fn transposed(data: &'a [T], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            row_stride: 1,
            col_stride: rows,
        }
    }

    fn last_index(&self) -> usize {
        (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
    }
}

/// Whether a product may spread over rayon's threads (`Parallel`) or must stay on the calling thread
/// because the caller already parallelises around it (`Serial`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    Serial,
    Parallel,
}

/// `c = a b` (or `c += a b` when `accumulate`), with `c` row-major `a.rows x b.cols`.
pub fn matmul<T: Element>(
    a: MatRef<T>,
    b: MatRef<T>,
    c: &mut [T],
    accumulate: bool,
    threads: Threads,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "matmul inner dimensions");
    assert!(c.len() >= m * n, "matmul output too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(T::zero());
        }
        return;
    }
    // The asserts above and these bounds make every strided access of gemm land inside the slices.
    assert!(
        a.last_index() < a.data.len() && b.last_index() < b.data.len(),
        "matmul operand too small"
    );
    let parallelism = match threads {
        Threads::Serial => gemm::Parallelism::None,
        Threads::Parallel => gemm::Parallelism::Rayon(0),
    };
    // SAFETY: all three views were bounds-checked above; `c` is exclusively borrowed.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
}
