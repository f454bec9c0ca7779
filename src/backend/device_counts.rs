//! What a device backend counts as it works: kernel launches, host synchronisations and device
//! allocations. The GPU training step's overhead is mostly launches and the host waiting on the
//! device; these counts let `bench` and the tests see both without a profiler.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counts since the backend was created (or between two snapshots, see [`DeviceCounts::since`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceCounts {
    /// Kernel launches.
    pub launches: u64,
    /// Times the host waited for the device: explicit synchronisations and device-to-host copies
    /// (which return only once the data has arrived).
    pub host_syncs: u64,
    /// Device memory allocations.
    pub allocations: u64,
    /// Replays of captured graphs (each one launch from the host).
    pub graph_launches: u64,
    /// Kernels run by those replays (copies and memsets not counted).
    pub graph_nodes: u64,
}

impl DeviceCounts {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &DeviceCounts) -> DeviceCounts {
        DeviceCounts {
            launches: self.launches - earlier.launches,
            host_syncs: self.host_syncs - earlier.host_syncs,
            allocations: self.allocations - earlier.allocations,
            graph_launches: self.graph_launches - earlier.graph_launches,
            graph_nodes: self.graph_nodes - earlier.graph_nodes,
        }
    }

    /// The sum of two counts.
    pub fn plus(&self, other: &DeviceCounts) -> DeviceCounts {
        DeviceCounts {
            launches: self.launches + other.launches,
            host_syncs: self.host_syncs + other.host_syncs,
            allocations: self.allocations + other.allocations,
            graph_launches: self.graph_launches + other.graph_launches,
            graph_nodes: self.graph_nodes + other.graph_nodes,
        }
    }
}

/// The live counters a backend bumps; relaxed atomics, since only totals matter and the backend's
/// ops are issued by one thread at a time.
#[derive(Debug, Default)]
pub struct DeviceCounters {
    launches: AtomicU64,
    host_syncs: AtomicU64,
    allocations: AtomicU64,
    graph_launches: AtomicU64,
    graph_nodes: AtomicU64,
}

impl DeviceCounters {
    pub fn launch(&self) {
        self.launches.fetch_add(1, Ordering::Relaxed);
    }

    pub fn host_sync(&self) {
        self.host_syncs.fetch_add(1, Ordering::Relaxed);
    }

    pub fn allocation(&self) {
        self.allocations.fetch_add(1, Ordering::Relaxed);
    }

    /// A graph replay running `nodes` operations.
    pub fn graph_launch(&self, nodes: usize) {
        self.graph_launches.fetch_add(1, Ordering::Relaxed);
        self.graph_nodes.fetch_add(nodes as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> DeviceCounts {
        DeviceCounts {
            launches: self.launches.load(Ordering::Relaxed),
            host_syncs: self.host_syncs.load(Ordering::Relaxed),
            allocations: self.allocations.load(Ordering::Relaxed),
            graph_launches: self.graph_launches.load(Ordering::Relaxed),
            graph_nodes: self.graph_nodes.load(Ordering::Relaxed),
        }
    }
}
