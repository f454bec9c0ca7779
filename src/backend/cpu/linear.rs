//! The fully connected layer: `y = x wᵀ + b` with `x: [N, in]`, `w: [out, in]`, `b: [out]`.
//! Backward: `dx = dy w`, `dw = dyᵀ x`, `db = sum_n dy`.

use super::matmul::{matmul, MatRef, Threads};
use crate::backend::Element;

pub fn forward<T: Element>(
    x: &[T],
    w: &[T],
    b: &[T],
    y: &mut [T],
    n: usize,
    fin: usize,
    fout: usize,
) {
    matmul(
        MatRef::row_major(x, n, fin),
        MatRef::transposed(w, fin, fout),
        y,
        false,
        Threads::Parallel,
    );
    for row in y.chunks_mut(fout) {
        row.iter_mut().zip(b).for_each(|(y, &b)| *y = *y + b);
    }
}

pub fn backward<T: Element>(
    x: &[T],
    w: &[T],
    dy: &[T],
    dx: Option<&mut [T]>,
    dw: &mut [T],
    db: &mut [T],
    [n, fin, fout]: [usize; 3],
) {
    if let Some(dx) = dx {
        matmul(
            MatRef::row_major(dy, n, fout),
            MatRef::row_major(w, fout, fin),
            dx,
            false,
            Threads::Parallel,
        );
    }
    matmul(
        MatRef::transposed(dy, fout, n),
        MatRef::row_major(x, n, fin),
        dw,
        false,
        Threads::Parallel,
    );
    for (o, d) in db.iter_mut().enumerate() {
        *d = T::of((0..n).map(|i| dy[i * fout + o].f64()).sum());
    }
}
