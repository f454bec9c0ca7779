//! The launch limits nvcc compiled into each kernel, for the emulator to enforce as a GPU does.
//!
//! A GPU refuses a launch (`CUDA_ERROR_INVALID_VALUE`) whose block has more threads than its kernel
//! can take: no more than `__launch_bounds__`'s first argument (PTX's `.maxntid`), and no more than
//! the registers ptxas gave each thread leave room for. Registers are handed out per warp in units of
//! 256 (a thread's count rounds up to a multiple of 8), and an SM's 64 K are four register files of
//! 16 K, one per sub-partition, over which a block's warps are spread evenly: so a block has at most
//! four times the warps one file holds (255 registers allow 256 threads, 168 allow 384, 80 allow
//! 768). This is the stricter reading of the hardware (a block's 64 K alone would allow 800 at 80);
//! the device check compares it with the driver's own figure. And a block's shared memory is its
//! static part (ptxas's "bytes smem")
//! plus the launch's dynamic part, at most 48 KiB without the opt-in attribute and 227 KiB with it.
//! The host compiler sees none of this (`__launch_bounds__` expands to nothing in the emulator), so
//! build.rs reads it from what nvcc made: the PTX it keeps (`--keep`) and ptxas's `-v` report. Each
//! kernel file's limits go to `<stem>.limits` beside its fatbin, one line per kernel:
//! `name max_threads static_shared_bytes`, the smallest thread limit and largest static shared memory
//! over the architectures compiled (a launch must fit every GPU the binary targets).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::nvcc::entry_function;

/// Registers of one of an SM's four sub-partitions (sm_80, sm_90: 64 K in all).
const REGISTERS_PER_SUBPARTITION: u32 = 16 * 1024;
/// Sub-partitions of an SM, each with its own register file and a quarter of a block's warps.
const SUBPARTITIONS: u32 = 4;
/// Registers are given to a warp in units of 256, 8 a thread.
const REGISTER_UNIT_PER_THREAD: u32 = 8;
/// CUDA's limit on a block, whatever the kernel.
const MAX_THREADS_PER_BLOCK: u32 = 1024;

/// One kernel's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelLimits {
    pub max_threads: u32,
    pub static_shared_bytes: u32,
}

/// The most threads a block can have when each uses `registers`: whole warps, as many in each
/// sub-partition as its register file holds, and no more than CUDA's 1024.
pub fn threads_for_registers(registers: u32) -> u32 {
    let per_thread = registers.max(1).div_ceil(REGISTER_UNIT_PER_THREAD) * REGISTER_UNIT_PER_THREAD;
    let warps_per_file = REGISTERS_PER_SUBPARTITION / (per_thread * 32);
    (SUBPARTITIONS * warps_per_file * 32).min(MAX_THREADS_PER_BLOCK)
}

/// Each entry of a PTX file and its `.maxntid` (the product of its dimensions), `None` for an entry
/// without one. The directive stands between the entry's parameter list and its body.
pub fn ptx_max_threads(ptx: &str) -> BTreeMap<String, Option<u32>> {
    let mut entries = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in ptx.lines().map(str::trim) {
        if let Some(rest) = line.split(".entry ").nth(1) {
            let name = rest.split(['(', ' ']).next().unwrap_or("").to_string();
            entries.insert(name.clone(), None);
            current = Some(name);
        } else if let (Some(name), Some(dims)) = (&current, line.strip_prefix(".maxntid")) {
            let threads = dims
                .split(',')
                .map(|d| d.trim().parse::<u32>().unwrap_or(1))
                .product();
            entries.insert(name.clone(), Some(threads));
        } else if line.starts_with('{') {
            current = None;
        }
    }
    entries
}

/// Each entry function of ptxas's `-v` report with, over the architectures it was compiled for, the
/// most registers and the most static shared memory it was given.
pub fn ptxas_resources(log: &str) -> BTreeMap<String, (u32, u32)> {
    let mut resources: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut function = String::new();
    for line in log.lines() {
        if let Some((name, _)) = entry_function(line) {
            function = name.to_string();
        } else if let Some(rest) = line.split("Used ").nth(1) {
            let registers = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            // "Used 44 registers, used 1 barriers, 8192 bytes smem, 384 bytes cmem[0]"
            let smem = rest
                .split(',')
                .find_map(|part| part.trim().strip_suffix(" bytes smem"))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            let entry = resources.entry(function.clone()).or_default();
            *entry = (entry.0.max(registers), entry.1.max(smem));
        }
    }
    resources
}

/// The limits of every kernel of one file, from ptxas's report and the PTX files nvcc kept. A kernel
/// of the report missing from the PTX is an error (the two would disagree on what was compiled).
pub fn limits(log: &str, ptx_files: &[String]) -> Result<BTreeMap<String, KernelLimits>, String> {
    let mut bounds: BTreeMap<String, Option<u32>> = BTreeMap::new();
    for ptx in ptx_files {
        for (name, threads) in ptx_max_threads(ptx) {
            let slot = bounds.entry(name).or_insert(threads);
            *slot = match (*slot, threads) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }
    ptxas_resources(log)
        .into_iter()
        .map(|(name, (registers, static_shared_bytes))| {
            let bound = bounds
                .get(&name)
                .ok_or_else(|| format!("ptxas compiled {name}, which no kept PTX file defines"))?
                .unwrap_or(MAX_THREADS_PER_BLOCK);
            let max_threads = bound.min(threads_for_registers(registers));
            Ok((
                name,
                KernelLimits {
                    max_threads,
                    static_shared_bytes,
                },
            ))
        })
        .collect()
}

/// Reads the PTX files nvcc kept in `keep_dir`, writes the limits to `limits_file`.
pub fn write_limits(log: &str, keep_dir: &Path, limits_file: &Path) -> Result<(), String> {
    let mut ptx_files = Vec::new();
    let dir = fs::read_dir(keep_dir).map_err(|e| format!("{}: {e}", keep_dir.display()))?;
    for entry in dir {
        let path = entry
            .map_err(|e| format!("{}: {e}", keep_dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "ptx") {
            ptx_files
                .push(fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?);
        }
    }
    if ptx_files.is_empty() {
        return Err(format!("nvcc --keep left no PTX in {}", keep_dir.display()));
    }
    let text: String = limits(log, &ptx_files)?
        .iter()
        .map(|(name, l)| format!("{name} {} {}\n", l.max_threads, l.static_shared_bytes))
        .collect();
    fs::write(limits_file, text).map_err(|e| format!("{}: {e}", limits_file.display()))
}

/// The lines of a `.limits` file as Rust tuple literals for `kernels_embedded.rs`.
pub fn embedded_rows(limits_text: &str) -> Vec<String> {
    limits_text
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (name, threads, shared) = (parts.next()?, parts.next()?, parts.next()?);
            Some(format!("({name:?}, {threads}, {shared})"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PTX: &str = "\
.visible .entry plain_kernel(
\t.param .u64 plain_kernel_param_0
)
{
\tret;
}
.visible .entry bounded_kernel(
\t.param .u64 bounded_kernel_param_0
)
.maxntid 128, 2, 1
.minnctapersm 3
{
\tret;
}
";

    fn report(function: &str, arch: &str, used: &str) -> String {
        format!(
            "ptxas info    : Compiling entry function '{function}' for '{arch}'\n\
             ptxas info    : Function properties for {function}\n    \
             0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
             ptxas info    : Used {used}\n"
        )
    }

    #[test]
    fn registers_limit_a_block_in_whole_warps() {
        // 16 K registers in each of 4 files, a thread's count rounded up to 8.
        assert_eq!(threads_for_registers(32), 1024);
        assert_eq!(threads_for_registers(64), 1024);
        assert_eq!(threads_for_registers(65), 896); // 72 a thread: 7 warps a file
        assert_eq!(threads_for_registers(80), 768); // 6 warps a file (the 64 K would hold 25)
        assert_eq!(threads_for_registers(128), 512);
        assert_eq!(threads_for_registers(168), 384);
        assert_eq!(threads_for_registers(240), 256);
        assert_eq!(threads_for_registers(255), 256);
    }

    #[test]
    fn the_ptx_bound_and_the_registers_both_limit_a_kernel() {
        let log = report("plain_kernel", "sm_80", "40 registers, used 0 barriers")
            + &report(
                "plain_kernel",
                "sm_90",
                "130 registers, used 1 barriers, 8192 bytes smem, 376 bytes cmem[0]",
            )
            + &report(
                "bounded_kernel",
                "sm_90",
                "32 registers, used 1 barriers, 4096 bytes smem",
            );
        let l = limits(&log, &[PTX.to_string()]).unwrap();
        // sm_90's 130 registers (136 rounded) leave 3 warps a file; the bound is 128 x 2 x 1.
        assert_eq!(
            l["plain_kernel"],
            KernelLimits {
                max_threads: 384,
                static_shared_bytes: 8192
            }
        );
        assert_eq!(
            l["bounded_kernel"],
            KernelLimits {
                max_threads: 256,
                static_shared_bytes: 4096
            }
        );
    }

    #[test]
    fn a_kernel_without_ptx_is_an_error_and_rows_round_trip() {
        let log = report("missing_kernel", "sm_90", "32 registers, used 0 barriers");
        let e = limits(&log, &[PTX.to_string()]).unwrap_err();
        assert!(e.contains("missing_kernel"), "{e}");
        assert_eq!(
            embedded_rows("bounded_kernel 256 4096\n"),
            ["(\"bounded_kernel\", 256, 4096)"]
        );
    }
}
