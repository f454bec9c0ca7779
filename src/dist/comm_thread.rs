//! A replica's communication thread: host all-reduces run on it while the replica's own thread
//! carries on with backward.
//!
//! The compute thread hands over a bucket (a host buffer, moved, not copied) with
//! [`CommThread::all_reduce`]; the communication thread sums it across the group with
//! [`Collective::all_reduce_sum`] and hands it back; [`CommThread::wait`] returns the buckets in the
//! order they were issued. Buffers travel back and forth, so a training step allocates nothing
//! after the first.
//!
//! Faults: an error of the collective (another replica failed, a timeout) comes back with its
//! bucket and [`CommThread::wait`] returns it; a panic on the communication thread is caught and
//! returned the same way, naming the rank. When the compute thread fails instead, the replica runner
//! aborts the group, which wakes a communication thread blocked in a collective.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::Scope;

use super::Collective;
use crate::error::{panic_message, Error, Result};

/// A bucket on its way: its tag (the caller's bucket number) and its values.
struct Job {
    tag: usize,
    buf: Vec<f32>,
}

/// A bucket back: the summed values, or why they could not be summed.
struct Done {
    tag: usize,
    buf: Vec<f32>,
    outcome: Result<()>,
}

/// The handle the compute thread keeps.
///
/// The thread lives in a [`Scope`], which joins it when it ends; dropping the handle closes the
/// thread's queue, so it ends once its current collective returns (at once when the group has
/// failed). Replica runners abort the group on failure before their scope ends, so that a thread
/// blocked in a collective is released rather than joined after the group's timeout.
pub struct CommThread {
    rank: usize,
    jobs: Sender<Job>,
    done: Receiver<Done>,
    /// Tags issued and not yet returned by `wait`, oldest first.
    in_flight: VecDeque<usize>,
}

impl CommThread {
    /// Starts the communication thread of `group`'s member in `scope`.
    pub fn spawn<'scope, 'env>(
        scope: &'scope Scope<'scope, 'env>,
        group: &'env dyn Collective,
    ) -> Result<CommThread> {
        let rank = group.rank();
        let (jobs, job_rx) = channel::<Job>();
        let (done_tx, done) = channel::<Done>();
        std::thread::Builder::new()
            .name(format!("replica-{rank}-comm"))
            .spawn_scoped(scope, move || serve(group, job_rx, done_tx))
            .map_err(|e| Error::Replica {
                rank,
                message: format!("cannot start its communication thread: {e}"),
            })?;
        Ok(CommThread {
            rank,
            jobs,
            done,
            in_flight: VecDeque::new(),
        })
    }

    /// Issues the all-reduce (sum) of `buf`, to come back from [`CommThread::wait`] under `tag`.
    pub fn all_reduce(&mut self, tag: usize, buf: Vec<f32>) -> Result<()> {
        if self.jobs.send(Job { tag, buf }).is_err() {
            return Err(self.lost());
        }
        self.in_flight.push_back(tag);
        Ok(())
    }

    /// The number of buckets issued and not yet waited for.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The oldest bucket not yet waited for, summed: `(tag, values)`. An error when its all-reduce
    /// failed (the error of the collective) or when nothing is in flight.
    pub fn wait(&mut self) -> Result<(usize, Vec<f32>)> {
        let Some(expected) = self.in_flight.pop_front() else {
            return Err(Error::Replica {
                rank: self.rank,
                message: "waited for a bucket that was never issued".into(),
            });
        };
        let done = self.done.recv().map_err(|_| self.lost())?;
        // One thread serves the jobs in order, so they come back in order.
        debug_assert_eq!(done.tag, expected);
        done.outcome.map(|()| (done.tag, done.buf))
    }

    fn lost(&self) -> Error {
        Error::Replica {
            rank: self.rank,
            message: "its communication thread stopped".into(),
        }
    }
}

/// The communication thread's loop: sums each bucket until the queue closes. It catches panics, so
/// the scope that joins it never re-raises one.
fn serve(group: &dyn Collective, jobs: Receiver<Job>, done: Sender<Done>) {
    for Job { tag, mut buf } in jobs {
        let outcome = catch_unwind(AssertUnwindSafe(|| group.all_reduce_sum(&mut buf)))
            .unwrap_or_else(|payload| {
                Err(Error::Replica {
                    rank: group.rank(),
                    message: format!(
                        "its communication thread panicked: {}",
                        panic_message(&*payload)
                    ),
                })
            });
        if done.send(Done { tag, buf, outcome }).is_err() {
            return; // the compute thread is gone
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::HostGroup;
    use std::time::Duration;

    #[test]
    fn buckets_come_back_summed_in_issue_order() {
        let members = HostGroup::members(2, Duration::from_secs(30));
        let out: Vec<Vec<(usize, Vec<f32>)>> = std::thread::scope(|s| {
            let handles: Vec<_> = members
                .iter()
                .map(|m| {
                    s.spawn(move || {
                        std::thread::scope(|inner| {
                            let mut comm = CommThread::spawn(inner, m).unwrap();
                            let r = m.rank() as f32;
                            for tag in 0..4 {
                                comm.all_reduce(tag, vec![r + tag as f32; tag + 1]).unwrap();
                            }
                            assert_eq!(comm.in_flight(), 4);
                            (0..4).map(|_| comm.wait().unwrap()).collect()
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for per_rank in out {
            for (tag, (got_tag, buf)) in per_rank.into_iter().enumerate() {
                assert_eq!(got_tag, tag);
                // (0 + tag) + (1 + tag)
                assert_eq!(buf, vec![1.0 + 2.0 * tag as f32; tag + 1]);
            }
        }
    }

    #[test]
    fn a_failed_member_fails_the_pending_bucket_with_its_rank() {
        let members = HostGroup::members(2, Duration::from_secs(30));
        std::thread::scope(|s| {
            let mut comm = CommThread::spawn(s, &members[0]).unwrap();
            comm.all_reduce(0, vec![1.0; 8]).unwrap();
            members[1].abort("out of memory in backward");
            let err = comm.wait().unwrap_err().to_string();
            assert_eq!(err, "replica 1: out of memory in backward");
        });
    }

    #[test]
    fn waiting_for_nothing_is_an_error_not_a_hang() {
        let members = HostGroup::members(1, Duration::from_secs(30));
        std::thread::scope(|s| {
            let mut comm = CommThread::spawn(s, &members[0]).unwrap();
            assert!(comm
                .wait()
                .unwrap_err()
                .to_string()
                .contains("never issued"));
        });
    }
}
