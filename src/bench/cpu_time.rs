//! CPU time of the whole process (all threads), for figures that mean something on a shared machine:
//! wall time there mostly measures the other processes, CPU time much less so.

/// CPU time of all this process's threads so far, in ms; `None` where unsupported.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
pub fn process_cpu_ms() -> Option<f64> {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
    let mut t = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `t` is a valid, writable timespec (two 64-bit fields on 64-bit Linux); the C library
    // std already links provides `clock_gettime`.
    let rc = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    (rc == 0).then(|| t.sec as f64 * 1e3 + t.nsec as f64 / 1e6)
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
pub fn process_cpu_ms() -> Option<f64> {
    None
}
