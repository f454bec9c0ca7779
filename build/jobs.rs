//! The build script's compiles (one nvcc run per kernel file, one host C++ compile per emulator
//! source) run on a small pool of threads, so a build uses the cores cargo gives it rather than one:
//! on CI's two cores this halves the build script's time, which every `cargo build`, `cargo test`
//! and `cargo clippy` waits for before the crate itself can compile.

use std::collections::VecDeque;
use std::env;
use std::sync::Mutex;
use std::thread;

/// One unit of work; it reports failure as a message (the build script then panics with it).
pub type Job<'a, T> = Box<dyn FnOnce() -> Result<T, String> + Send + 'a>;

/// How many compiles run at once: cargo's job count for this build (`NUM_JOBS`, which `-j` sets),
/// else the machine's parallelism.
pub fn workers() -> usize {
    env::var("NUM_JOBS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .or_else(|| thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .max(1)
}

/// Runs `jobs` on up to `workers` threads, taking them in the given order (put the longest first,
/// so that no long compile starts last), and returns their results in that order. Every job runs
/// even when one fails, so that all of a build's errors are reported together.
pub fn run<'a, T: Send>(jobs: Vec<Job<'a, T>>, workers: usize) -> Vec<Result<T, String>> {
    let count = jobs.len();
    let queue = Mutex::new(jobs.into_iter().enumerate().collect::<VecDeque<_>>());
    let results = Mutex::new((0..count).map(|_| None).collect::<Vec<_>>());
    thread::scope(|scope| {
        for _ in 0..workers.min(count) {
            scope.spawn(|| loop {
                let next = queue.lock().expect("job queue").pop_front();
                let Some((index, job)) = next else { break };
                let result = job();
                results.lock().expect("job results")[index] = Some(result);
            });
        }
    });
    results
        .into_inner()
        .expect("job results")
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect()
}
