//! Per-thread f32 scratch buffers reused from call to call, so that a training step does not ask
//! the kernel for fresh zeroed pages in every convolution (measured: a third of a Winograd
//! backward-filter's time went to page faults and zeroing before these).

use std::cell::Cell;

thread_local! {
    static POOL: Cell<Vec<Vec<f32>>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` on `N` buffers of the given lengths from this thread's pool. Their contents are
/// unspecified (whatever an earlier call left). A nested call on the same thread finds the pool
/// empty and allocates, so it cannot alias an outer call's buffers.
pub fn with_buffers<const N: usize, R>(
    lens: [usize; N],
    f: impl FnOnce([&mut [f32]; N]) -> R,
) -> R {
    let mut pool = POOL.take();
    let mut taken: [Vec<f32>; N] = std::array::from_fn(|_| pool.pop().unwrap_or_default());
    POOL.set(pool);
    for (buf, &len) in taken.iter_mut().zip(&lens) {
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
    }
    let out = {
        let mut slices = taken.iter_mut().zip(lens).map(|(buf, len)| &mut buf[..len]);
        f(std::array::from_fn(|_| {
            slices.next().expect("one slice per length")
        }))
    };
    let mut pool = POOL.take();
    pool.extend(taken);
    POOL.set(pool);
    out
}
