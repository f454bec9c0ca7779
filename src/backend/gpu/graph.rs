//! Capturing a training step as one graph and replaying it ([`Backend::begin_graph_capture`] and
//! the methods after it), on any [`Driver`] that can: CUDA graphs on a GPU, recordings under the
//! emulator.
//!
//! What keeps a replay right, beyond the driver's part:
//!
//! - Nothing is allocated while capturing (`alloc_bytes` refuses): on a GPU an allocation would
//!   become part of the graph, and the step's buffers must be the ones it had when captured.
//! - A workspace outgrown while a graph exists is kept, not freed, until the last graph goes: the
//!   graph still writes to the address it captured.
//! - Host memory is never read inside a capture (the drivers refuse copies from or to it); a step's
//!   inputs are uploaded to their fixed buffers before each replay.
//!
//! [`Backend::begin_graph_capture`]: crate::backend::Backend::begin_graph_capture

use std::sync::atomic::Ordering;

use super::backend::GpuBackend;
use super::driver::Driver;
use crate::backend::StepGraph;
use crate::error::{Error, Result};

impl<D: Driver> GpuBackend<D> {
    pub(super) fn graph_capture_begin(&self) -> Result<()> {
        if self.capturing.swap(true, Ordering::Relaxed) {
            return Err(Error::Device {
                device: self.driver.name(),
                message: "a graph capture is already under way".into(),
            });
        }
        self.driver.begin_capture().inspect_err(|_| {
            self.capturing.store(false, Ordering::Relaxed);
        })
    }

    pub(super) fn graph_capture_end(&self) -> Result<StepGraph> {
        if !self.capturing.swap(false, Ordering::Relaxed) {
            return Err(Error::Device {
                device: self.driver.name(),
                message: "end of a graph capture that was not begun".into(),
            });
        }
        let (id, nodes) = self.driver.end_capture()?;
        self.graphs_alive.fetch_add(1, Ordering::Relaxed);
        Ok(StepGraph { id, nodes })
    }

    pub(super) fn graph_replay(&self, graph: &StepGraph) -> Result<()> {
        self.counters.graph_launch(graph.nodes);
        self.driver.launch_graph(graph.id)
    }

    pub(super) fn graph_drop(&self, graph: StepGraph) {
        self.driver.destroy_graph(graph.id);
        if self.graphs_alive.fetch_sub(1, Ordering::Relaxed) == 1 {
            // No graph is left to use them; frees are ordered after the work already issued.
            self.retired_workspaces
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
    }
}
