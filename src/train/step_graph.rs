//! `--cuda-graph`: a training step captured once as a graph and replayed every iteration after.
//!
//! The first step runs eagerly: it allocates the layers' tensors, the workspaces, the momentum and
//! the SGD table. The second is captured (nothing allocates any more) and run by replaying its
//! graph; every later one is a replay. Whatever changes the step's buffers (an evaluation's other
//! batch shapes reallocate the layers' tensors) calls [`GraphedStep::invalidate`], which drops the
//! graph and starts over with an eager step. A capture that fails (a backend that cannot capture,
//! an op that would touch host memory) is reported once and the run goes on eagerly.

use crate::backend::{Backend, StepGraph};
use crate::error::Result;

enum State {
    Off,
    /// The next step runs eagerly, then the one after is captured.
    Warmup,
    Capture,
    Ready(StepGraph),
}

pub struct GraphedStep {
    state: State,
}

/// How [`GraphedStep::run`] ran a step, which tells the caller what happened to the host-side
/// effects of the step's ops (a layer's counters, such as batch norm's `num_batches_tracked`):
/// they happen when `issue` is called, and a replay does not call it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepRun {
    /// `issue` ran once: its host-side effects happened once, as they should.
    Issued,
    /// The graph ran and `issue` did not: the step's host-side effects are missing.
    Replayed,
    /// A capture failed and the step then ran eagerly: `issue` ran twice, its host-side effects
    /// happened once too often.
    IssuedTwice,
}

impl GraphedStep {
    /// Graphs on `be` when `wanted` and the backend can capture; otherwise every step is eager.
    pub fn new<B: Backend>(be: &B, wanted: bool) -> Self {
        GraphedStep {
            state: if wanted && be.supports_graphs() {
                State::Warmup
            } else {
                State::Off
            },
        }
    }

    /// How many more steps run before every step is a replay: 2 before the first (eager, then the
    /// capture), 1 before the capture, 0 once replaying or with graphs off.
    pub fn steps_before_replay(&self) -> usize {
        match self.state {
            State::Warmup => 2,
            State::Capture => 1,
            State::Off | State::Ready(_) => 0,
        }
    }

    /// Runs one step, whose work `issue` issues: eagerly, by capturing it then replaying the
    /// graph, or by replaying the graph captured before (`issue` is not called then; see
    /// [`StepRun`]). The step's inputs must already be in their device buffers.
    pub fn run<B: Backend>(
        &mut self,
        be: &B,
        mut issue: impl FnMut() -> Result<()>,
    ) -> Result<StepRun> {
        match std::mem::replace(&mut self.state, State::Off) {
            State::Off => issue().map(|()| StepRun::Issued),
            State::Warmup => {
                issue()?;
                self.state = State::Capture;
                Ok(StepRun::Issued)
            }
            State::Capture => {
                be.begin_graph_capture()?;
                let issued = issue();
                let captured = be.end_graph_capture();
                match (issued, captured) {
                    (Ok(()), Ok(graph)) => {
                        // Capturing ran nothing: this step runs now, as its graph; `issue`
                        // ran once, while capturing.
                        let replayed = be.replay_graph(&graph);
                        self.state = State::Ready(graph);
                        replayed.map(|()| StepRun::Issued)
                    }
                    (issued, captured) => {
                        if let Ok(graph) = captured {
                            be.drop_graph(graph);
                        }
                        let why = issued.err().map_or_else(
                            || "the capture could not be made a graph".to_string(),
                            |e| e.to_string(),
                        );
                        eprintln!(
                            "warning: --cuda-graph: the step could not be captured ({why}); \
                             it runs eagerly"
                        );
                        // Nothing of the failed capture ran: the step runs now.
                        issue().map(|()| StepRun::IssuedTwice)
                    }
                }
            }
            State::Ready(graph) => {
                let replayed = be.replay_graph(&graph);
                self.state = State::Ready(graph);
                replayed.map(|()| StepRun::Replayed)
            }
        }
    }

    /// The step's buffers may have moved: the next step runs eagerly and the one after is captured
    /// anew.
    pub fn invalidate<B: Backend>(&mut self, be: &B) {
        match std::mem::replace(&mut self.state, State::Off) {
            State::Off => {}
            State::Ready(graph) => {
                be.drop_graph(graph);
                self.state = State::Warmup;
            }
            State::Warmup | State::Capture => self.state = State::Warmup,
        }
    }

    /// Frees the graph, if there is one.
    pub fn release<B: Backend>(mut self, be: &B) {
        if let State::Ready(graph) = std::mem::replace(&mut self.state, State::Off) {
            be.drop_graph(graph);
        }
    }
}
