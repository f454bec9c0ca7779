//! The few NCCL functions this crate calls, loaded at run time from the library file
//! `super::nccl` finds (cudarc's loader never tries `libnccl.so.2`, the name NCCL ships under).
//!
//! Declarations follow `nccl.h` of NCCL 2 (stable across 2.x): `ncclResult_t` is a C enum (an
//! `int`), communicators are opaque pointers, `ncclUniqueId` is a 128-byte struct passed by value,
//! streams are `cudaStream_t`, which is the driver API's `CUstream`.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// `ncclResult_t`.
pub type NcclResult = c_int;
/// `ncclComm_t`.
pub type RawComm = *mut c_void;
/// `cudaStream_t` (the same handle as the driver API's `CUstream`).
pub type RawStream = *mut c_void;

pub const NCCL_SUCCESS: NcclResult = 0;
/// `ncclInProgress`: a nonblocking operation has not finished (not an error).
pub const NCCL_IN_PROGRESS: NcclResult = 7;
/// `ncclFloat32` of `ncclDataType_t`.
pub const NCCL_FLOAT32: c_int = 7;

/// `ncclRedOp_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum ReduceOp {
    Sum = 0,
    /// The mean over ranks (NCCL 2.10 and later).
    Avg = 4,
}

/// `ncclUniqueId`: what rank 0 makes and every rank needs to join the communicator.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct UniqueId {
    pub internal: [c_char; 128],
}

impl UniqueId {
    pub fn to_bytes(&self) -> Vec<u8> {
        self.internal.iter().map(|&c| c as u8).collect()
    }

    /// The id from the 128 bytes [`UniqueId::to_bytes`] gave (as sent through the rendezvous).
    pub fn from_bytes(bytes: &[u8]) -> Result<UniqueId> {
        if bytes.len() != 128 {
            return Err(Error::Rendezvous(format!(
                "the NCCL id from rank 0 has {} bytes, expected 128",
                bytes.len()
            )));
        }
        let mut id = UniqueId { internal: [0; 128] };
        for (d, &b) in id.internal.iter_mut().zip(bytes) {
            *d = b as c_char;
        }
        Ok(id)
    }
}

type GetVersion = unsafe extern "C" fn(*mut c_int) -> NcclResult;
type GetUniqueId = unsafe extern "C" fn(*mut UniqueId) -> NcclResult;
type CommInitRank = unsafe extern "C" fn(*mut RawComm, c_int, UniqueId, c_int) -> NcclResult;
type AllReduce = unsafe extern "C" fn(
    *const c_void,
    *mut c_void,
    usize,
    c_int,
    c_int,
    RawComm,
    RawStream,
) -> NcclResult;
type Broadcast = unsafe extern "C" fn(
    *const c_void,
    *mut c_void,
    usize,
    c_int,
    c_int,
    RawComm,
    RawStream,
) -> NcclResult;
type GroupCall = unsafe extern "C" fn() -> NcclResult;
type CommGetAsyncError = unsafe extern "C" fn(RawComm, *mut NcclResult) -> NcclResult;
type CommCall = unsafe extern "C" fn(RawComm) -> NcclResult;
type GetErrorString = unsafe extern "C" fn(NcclResult) -> *const c_char;

/// The loaded library and its entry points. The `Library` is kept so the pointers stay valid.
pub struct Nccl {
    path: PathBuf,
    _lib: libloading::Library,
    get_version: GetVersion,
    get_unique_id: GetUniqueId,
    comm_init_rank: CommInitRank,
    all_reduce: AllReduce,
    broadcast: Broadcast,
    group_start: GroupCall,
    group_end: GroupCall,
    comm_get_async_error: CommGetAsyncError,
    comm_abort: CommCall,
    comm_destroy: CommCall,
    get_error_string: GetErrorString,
}

impl Nccl {
    /// Loads NCCL from `path` and looks up every function used here; an error names the file and
    /// the first missing function.
    pub fn load(path: &Path) -> Result<Nccl> {
        let bad = |why: String| Error::Config(format!("NCCL at {}: {why}", path.display()));
        // SAFETY: loading NCCL runs its initialisers, as using it would.
        let lib = unsafe { libloading::Library::new(path) }.map_err(|e| {
            let reason = std::error::Error::source(&e).map_or(e.to_string(), |r| r.to_string());
            bad(format!("cannot be loaded ({reason})"))
        })?;
        /// Looks up `name` as a function of type `T`.
        ///
        /// # Safety
        /// `T` must be the function's C signature.
        unsafe fn sym<T: Copy>(lib: &libloading::Library, name: &str) -> Option<T> {
            let cname = format!("{name}\0");
            // SAFETY: the caller guarantees the type.
            unsafe { lib.get::<T>(cname.as_bytes()).ok().map(|s| *s) }
        }
        macro_rules! get {
            ($name:literal) => {
                // SAFETY: the types above are nccl.h's declarations.
                unsafe { sym(&lib, $name) }
                    .ok_or_else(|| bad(format!("has no {}: not NCCL 2.10 or later", $name)))?
            };
        }
        Ok(Nccl {
            path: path.to_path_buf(),
            get_version: get!("ncclGetVersion"),
            get_unique_id: get!("ncclGetUniqueId"),
            comm_init_rank: get!("ncclCommInitRank"),
            all_reduce: get!("ncclAllReduce"),
            broadcast: get!("ncclBroadcast"),
            group_start: get!("ncclGroupStart"),
            group_end: get!("ncclGroupEnd"),
            comm_get_async_error: get!("ncclCommGetAsyncError"),
            comm_abort: get!("ncclCommAbort"),
            comm_destroy: get!("ncclCommDestroy"),
            get_error_string: get!("ncclGetErrorString"),
            _lib: lib,
        })
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// NCCL's message for `code`.
    pub fn error_string(&self, code: NcclResult) -> String {
        // SAFETY: ncclGetErrorString returns a static NUL-terminated string for any code.
        let s = unsafe { (self.get_error_string)(code) };
        if s.is_null() {
            return format!("NCCL error {code}");
        }
        // SAFETY: non-null, NUL-terminated, static.
        let msg = unsafe { CStr::from_ptr(s) }.to_string_lossy();
        format!("{msg} (NCCL error {code})")
    }

    /// `Ok` for `ncclSuccess`, else an error naming `what` and NCCL's message.
    pub fn check(&self, what: &str, code: NcclResult) -> Result<()> {
        match code {
            NCCL_SUCCESS => Ok(()),
            code => Err(Error::Config(format!(
                "{what} failed: {}",
                self.error_string(code)
            ))),
        }
    }

    /// The library's version code (22703 for 2.27.3).
    pub fn version(&self) -> Result<i32> {
        let mut v = 0;
        // SAFETY: writes one int.
        self.check("ncclGetVersion", unsafe { (self.get_version)(&mut v) })?;
        Ok(v)
    }

    /// A new unique id (made once, on global rank 0).
    pub fn unique_id(&self) -> Result<UniqueId> {
        let mut id = UniqueId { internal: [0; 128] };
        // SAFETY: writes one ncclUniqueId.
        self.check("ncclGetUniqueId", unsafe { (self.get_unique_id)(&mut id) })?;
        Ok(id)
    }

    /// `ncclCommInitRank`: joins the communicator `id` as `rank` of `world`. Blocks until every rank
    /// has joined; the calling thread's current CUDA context must be the GPU's.
    ///
    /// # Safety
    /// The caller has made the context of the rank's GPU current on this thread.
    pub unsafe fn comm_init_rank(
        &self,
        id: &UniqueId,
        world: usize,
        rank: usize,
    ) -> Result<RawComm> {
        let mut comm: RawComm = std::ptr::null_mut();
        // SAFETY: writes one communicator handle; the id is passed by value.
        let code = unsafe { (self.comm_init_rank)(&mut comm, world as c_int, *id, rank as c_int) };
        self.check(&format!("ncclCommInitRank (rank {rank} of {world})"), code)?;
        Ok(comm)
    }

    /// Issues `recv = reduce over ranks of send` of `count` f32 on `stream`; returns once issued.
    ///
    /// # Safety
    /// `send` and `recv` are device memory of `count` f32 on the communicator's GPU (they may be the
    /// same), untouched by other streams until the operation is done; `comm` and `stream` are live.
    pub unsafe fn all_reduce(
        &self,
        send: u64,
        recv: u64,
        count: usize,
        op: ReduceOp,
        comm: RawComm,
        stream: RawStream,
    ) -> NcclResult {
        // SAFETY: the caller's guarantees.
        unsafe {
            (self.all_reduce)(
                send as *const c_void,
                recv as *mut c_void,
                count,
                NCCL_FLOAT32,
                op as c_int,
                comm,
                stream,
            )
        }
    }

    /// Issues `recv = send of root` of `count` f32 on `stream`.
    ///
    /// # Safety
    /// As [`Nccl::all_reduce`].
    pub unsafe fn broadcast(
        &self,
        send: u64,
        recv: u64,
        count: usize,
        root: usize,
        comm: RawComm,
        stream: RawStream,
    ) -> NcclResult {
        // SAFETY: the caller's guarantees.
        unsafe {
            (self.broadcast)(
                send as *const c_void,
                recv as *mut c_void,
                count,
                NCCL_FLOAT32,
                root as c_int,
                comm,
                stream,
            )
        }
    }

    /// `ncclGroupStart`: the operations up to [`Nccl::group_end`] are issued as one.
    pub fn group_start(&self) -> Result<()> {
        // SAFETY: no arguments; pairs with group_end.
        self.check("ncclGroupStart", unsafe { (self.group_start)() })
    }

    pub fn group_end(&self) -> Result<()> {
        // SAFETY: no arguments.
        self.check("ncclGroupEnd", unsafe { (self.group_end)() })
    }

    /// The communicator's asynchronous error (`ncclSuccess` while all is well, `ncclInProgress`
    /// while a nonblocking call runs).
    ///
    /// # Safety
    /// `comm` is live.
    pub unsafe fn async_error(&self, comm: RawComm) -> NcclResult {
        let mut state = NCCL_SUCCESS;
        // SAFETY: the caller's guarantee; writes one result.
        let code = unsafe { (self.comm_get_async_error)(comm, &mut state) };
        if code != NCCL_SUCCESS {
            code
        } else {
            state
        }
    }

    /// `ncclCommAbort`: frees the communicator, cancelling its pending operations.
    ///
    /// # Safety
    /// `comm` is live and not used after.
    pub unsafe fn comm_abort(&self, comm: RawComm) -> NcclResult {
        // SAFETY: the caller's guarantee.
        unsafe { (self.comm_abort)(comm) }
    }

    /// `ncclCommDestroy`: frees the communicator once its operations are done.
    ///
    /// # Safety
    /// `comm` is live and not used after.
    pub unsafe fn comm_destroy(&self, comm: RawComm) -> NcclResult {
        // SAFETY: the caller's guarantee.
        unsafe { (self.comm_destroy)(comm) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unique_id_survives_the_trip_through_bytes() {
        let mut id = UniqueId { internal: [0; 128] };
        for (i, c) in id.internal.iter_mut().enumerate() {
            *c = (i as u8).wrapping_mul(37) as c_char;
        }
        let back = UniqueId::from_bytes(&id.to_bytes()).unwrap();
        assert_eq!(back.internal, id.internal);
        let err = UniqueId::from_bytes(&[0; 5]).unwrap_err().to_string();
        assert!(err.contains("5 bytes, expected 128"), "{err}");
    }

    #[test]
    fn a_library_without_nccl_is_named_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("libnccl.so.2");
        std::fs::write(&fake, b"not an ELF file").unwrap();
        let err = Nccl::load(&fake).err().expect("not loadable").to_string();
        assert!(!err.contains('\n'), "{err}");
        assert!(
            err.contains("libnccl.so.2") && err.contains("cannot be loaded"),
            "{err}"
        );
    }
}
