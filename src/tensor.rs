//! Shapes and device tensors.
//!
//! Activations are NHWC (batch, height, width, channel); convolution weights are KRSC (output channel,
//! kernel row, kernel column, input channel); vectors such as BN parameters are `[C]`. A tensor owns one
//! buffer of its backend and knows its shape; it does not own a reference to the backend, so every op
//! takes the backend explicitly.

use crate::backend::Backend;
use crate::error::{Error, Result};

/// A tensor shape, outermost dimension first.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct Shape(pub Vec<usize>);

impl Shape {
    pub fn new(dims: &[usize]) -> Self {
        Shape(dims.to_vec())
    }

    pub fn numel(&self) -> usize {
        self.0.iter().product()
    }

    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// The four dimensions of an NHWC activation or a KRSC weight.
    pub fn dims4(&self) -> Option<[usize; 4]> {
        match self.0.as_slice() {
            &[a, b, c, d] => Some([a, b, c, d]),
            _ => None,
        }
    }

    /// The two dimensions of a matrix such as `[N, features]`.
    pub fn dims2(&self) -> Option<[usize; 2]> {
        match self.0.as_slice() {
            &[a, b] => Some([a, b]),
            _ => None,
        }
    }
}

impl From<&[usize]> for Shape {
    fn from(d: &[usize]) -> Self {
        Shape(d.to_vec())
    }
}

impl<const N: usize> From<[usize; N]> for Shape {
    fn from(d: [usize; N]) -> Self {
        Shape(d.to_vec())
    }
}

/// A tensor living on backend `B`.
///
/// `repr(C)` fixes the field layout, so tensors of two backends that share a buffer type are laid out
/// alike; [`Tensor::view_as`] relies on it.
#[repr(C)]
pub struct Tensor<B: Backend> {
    shape: Shape,
    buf: B::Buffer,
}

impl<B: Backend> Tensor<B> {
    /// A zero-filled tensor.
    pub fn zeros(backend: &B, shape: impl Into<Shape>) -> Result<Self> {
        let shape = shape.into();
        let buf = backend.alloc_zeros(shape.numel())?;
        Ok(Tensor { shape, buf })
    }

    /// A tensor holding `data` (row-major in `shape`).
    pub fn from_slice(backend: &B, shape: impl Into<Shape>, data: &[B::Elem]) -> Result<Self> {
        let shape = shape.into();
        if shape.numel() != data.len() {
            return Err(Error::Shape {
                op: "upload",
                tensor: "data",
                actual: vec![data.len()],
                expected: format!("{} elements for shape {:?}", shape.numel(), shape.0),
            });
        }
        let mut t = Self::zeros(backend, shape)?;
        backend.upload(data, &mut t.buf)?;
        Ok(t)
    }

    /// Overwrites the contents with `data`, which must have exactly `numel` elements.
    pub fn copy_from_slice(&mut self, backend: &B, data: &[B::Elem]) -> Result<()> {
        if self.numel() != data.len() {
            return Err(Error::Shape {
                op: "upload",
                tensor: "data",
                actual: vec![data.len()],
                expected: format!("{} elements", self.numel()),
            });
        }
        backend.upload(data, &mut self.buf)
    }

    /// Copies the contents to the host.
    pub fn to_vec(&self, backend: &B) -> Result<Vec<B::Elem>> {
        let mut out = vec![B::Elem::default(); self.numel()];
        backend.download(&self.buf, &mut out)?;
        Ok(out)
    }

    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    pub fn dims(&self) -> &[usize] {
        &self.shape.0
    }

    pub fn numel(&self) -> usize {
        self.shape.numel()
    }

    pub fn buf(&self) -> &B::Buffer {
        &self.buf
    }

    pub fn buf_mut(&mut self) -> &mut B::Buffer {
        &mut self.buf
    }

    /// The same tensor seen as one of backend `C`, which stores its data in the same buffer type (a
    /// decorator such as `bench::Profiled<B>` handing its tensors to the backend it wraps).
    pub fn view_as<C: Backend<Buffer = B::Buffer>>(&self) -> &Tensor<C> {
        // SAFETY: `Tensor` is `repr(C)` and `Tensor<B>`, `Tensor<C>` have identical field types
        // (`Shape`, then `B::Buffer == C::Buffer`), so they have identical layouts; `B` and `C` appear
        // in no field, so every value valid for one is valid for the other.
        unsafe { &*(self as *const Tensor<B>).cast::<Tensor<C>>() }
    }

    /// Mutable [`Tensor::view_as`].
    pub fn view_as_mut<C: Backend<Buffer = B::Buffer>>(&mut self) -> &mut Tensor<C> {
        // SAFETY: as in `view_as`; the exclusive borrow is carried over unchanged.
        unsafe { &mut *(self as *mut Tensor<B>).cast::<Tensor<C>>() }
    }

    /// Reallocates (zeroed) only when the shape differs, so a network that sees the same batch shape
    /// every step allocates nothing after its first step.
    pub fn ensure_shape(&mut self, backend: &B, shape: &[usize]) -> Result<()> {
        if self.shape.0 != shape {
            *self = Self::zeros(backend, Shape::new(shape))?;
        }
        Ok(())
    }

    /// An empty placeholder, to be shaped by [`Tensor::ensure_shape`] on first use.
    pub fn empty(backend: &B) -> Result<Self> {
        Self::zeros(backend, Shape::new(&[0]))
    }
}
