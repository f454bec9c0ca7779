//! The floating-point element types a backend can store.

use std::fmt::{Debug, Display};
use std::iter::Sum;

use super::DType;

/// f32 for training, f64 for gradient checks. `'static` lets the CPU backend hand the type to the
/// `gemm` crate, which dispatches on it.
pub trait Element:
    num_traits::Float
    + num_traits::FromPrimitive
    + num_traits::ToPrimitive
    + Default
    + Debug
    + Display
    + Sum
    + Send
    + Sync
    + 'static
{
    /// How a buffer of this type is described at run time.
    const DTYPE: DType;

    /// Converts from f64, rounding to the nearest representable value.
    fn of(v: f64) -> Self {
        <Self as num_traits::FromPrimitive>::from_f64(v).expect("f64 converts to every float type")
    }

    fn f64(self) -> f64 {
        <Self as num_traits::ToPrimitive>::to_f64(&self).expect("every float converts to f64")
    }
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
}
impl Element for f64 {
    const DTYPE: DType = DType::F64;
}
