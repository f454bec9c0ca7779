//! The NCCL binding against a stand-in library compiled here from C (the C compiler the emulator's
//! build needs): the symbols are found by their nccl.h names, the 128-byte unique id crosses the
//! FFI boundary by value intact, results and error strings come back, and a library lacking a
//! function is refused naming it. No GPU and no real NCCL are needed.

use std::path::{Path, PathBuf};
use std::process::Command;

use resnet_cuda::dist::nccl_ffi::{Nccl, UniqueId};

/// Functions with nccl.h's signatures. `ncclCommInitRank` accepts only the id `ncclGetUniqueId`
/// made, world 4 and rank 2, so a wrongly passed id shows as an error; the async error is always
/// `ncclInternalError` (3).
const FAKE_NCCL: &str = r#"
typedef struct { char internal[128]; } ncclUniqueId;
int ncclGetVersion(int *v) { *v = 22703; return 0; }
int ncclGetUniqueId(ncclUniqueId *id) {
    for (int i = 0; i < 128; i++) id->internal[i] = (char)(i * 3);
    return 0;
}
int ncclCommInitRank(void **comm, int nranks, ncclUniqueId id, int rank) {
    for (int i = 0; i < 128; i++) if (id.internal[i] != (char)(i * 3)) return 4;
    if (nranks != 4 || rank != 2) return 4;
    *comm = (void *)0x1234;
    return 0;
}
int ncclAllReduce(const void *s, void *r, unsigned long n, int t, int op, void *c, void *st) { return 0; }
int ncclBroadcast(const void *s, void *r, unsigned long n, int t, int root, void *c, void *st) { return 0; }
int ncclGroupStart(void) { return 0; }
int ncclGroupEnd(void) { return 0; }
int ncclCommGetAsyncError(void *comm, int *err) { *err = 3; return 0; }
int ncclCommAbort(void *comm) { return 0; }
int ncclCommDestroy(void *comm) { return 0; }
const char *ncclGetErrorString(int code) {
    return code == 3 ? "internal error - please report this issue to the NCCL developers"
                     : "invalid argument";
}
"#;

/// Compiles `source` into a shared library `name` in `dir`.
fn compile(dir: &Path, name: &str, source: &str) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, source).unwrap();
    let lib = dir.join(name);
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&c)
        .output()
        .unwrap_or_else(|e| panic!("the C compiler {cc} (needed to build the emulator) runs: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lib
}

#[test]
fn the_binding_calls_a_library_with_nccls_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let nccl = Nccl::load(&compile(dir.path(), "libnccl.so.2", FAKE_NCCL)).unwrap();
    assert_eq!(nccl.version().unwrap(), 22703);
    let id = nccl.unique_id().unwrap();
    assert_eq!(id.to_bytes()[5], 15);
    // The id through bytes (as the rendezvous carries it) and back into NCCL by value.
    let id = UniqueId::from_bytes(&id.to_bytes()).unwrap();
    // SAFETY: the stand-in needs no GPU context.
    let comm = unsafe { nccl.comm_init_rank(&id, 4, 2) }.unwrap();
    assert!(!comm.is_null());
    // SAFETY: as above.
    let err = unsafe { nccl.comm_init_rank(&id, 4, 1) }
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "ncclCommInitRank (rank 1 of 4) failed: invalid argument (NCCL error 4)"
    );
    // SAFETY: the stand-in's communicator is a token.
    let code = unsafe { nccl.async_error(comm) };
    assert_eq!(code, 3);
    assert!(nccl.error_string(code).starts_with("internal error"));
    assert!(nccl.group_start().is_ok() && nccl.group_end().is_ok());
}

#[test]
fn a_library_missing_a_function_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let lib = compile(
        dir.path(),
        "libnccl.so.2",
        "int ncclGetVersion(int *v) { *v = 2708; return 0; }",
    );
    let err = Nccl::load(&lib).err().expect("refused").to_string();
    assert!(!err.contains('\n'), "{err}");
    assert!(
        err.contains("libnccl.so.2") && err.contains("has no ncclGetUniqueId"),
        "{err}"
    );
}
