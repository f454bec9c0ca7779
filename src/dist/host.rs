//! The host collective: N replica threads of one process meet in a mutex-protected rendezvous.
//!
//! Each operation is a generation: every member deposits its buffer in its own slot; the last to
//! arrive combines the slots (the sum in rank order `((b_0 + b_1) + b_2) + ...`, or rank 0's buffer for
//! a broadcast) into a shared result and opens the next generation; every member then copies the
//! result out. Because the combination is one fixed sequence of f32 additions, the result is the same
//! bits on every rank whatever the order in which threads arrive.
//!
//! Faults: a member that fails calls `abort` (the replica runner also does so when a thread panics);
//! waiting members wake at once and return an error naming that rank. A member that waits longer than
//! the timeout marks the missing ranks as failed, so a lost replica never hangs the others.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::Collective;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpKind {
    AllReduceSum,
    Broadcast,
    Barrier,
}

impl OpKind {
    fn name(self) -> &'static str {
        match self {
            OpKind::AllReduceSum => "all-reduce",
            OpKind::Broadcast => "broadcast",
            OpKind::Barrier => "barrier",
        }
    }
}

struct State {
    /// Completed operations so far.
    generation: u64,
    /// Which ranks have deposited their buffer in the current generation.
    present: Vec<bool>,
    /// The current generation's operation and length, set by its first arrival.
    op: Option<(OpKind, usize)>,
    slots: Vec<Vec<f32>>,
    /// The last completed generation's result.
    result: Arc<Vec<f32>>,
    /// The first member to fail, and why.
    failure: Option<(usize, String)>,
}

struct Shared {
    world_size: usize,
    timeout: Duration,
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock, but a poisoned lock must not hide a replica's
        // own error behind a second panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A group of in-process replicas.
pub struct HostGroup;

impl HostGroup {
    /// The `world_size` members of a new group, rank 0 first; a member that waits more than `timeout`
    /// for the others fails the group.
    pub fn members(world_size: usize, timeout: Duration) -> Vec<HostMember> {
        let shared = Arc::new(Shared {
            world_size,
            timeout,
            state: Mutex::new(State {
                generation: 0,
                present: vec![false; world_size],
                op: None,
                slots: vec![Vec::new(); world_size],
                result: Arc::new(Vec::new()),
                failure: None,
            }),
            wake: Condvar::new(),
        });
        (0..world_size)
            .map(|rank| HostMember {
                rank,
                shared: shared.clone(),
            })
            .collect()
    }
}

/// One member of a [`HostGroup`]; moved into its replica's thread.
pub struct HostMember {
    rank: usize,
    shared: Arc<Shared>,
}

impl HostMember {
    fn exchange(&self, kind: OpKind, buf: &mut [f32]) -> Result<()> {
        let shared = &*self.shared;
        let mut st = shared.lock();
        if let Some(e) = failed(&st) {
            return Err(e);
        }
        match st.op {
            None => st.op = Some((kind, buf.len())),
            Some(op) if op == (kind, buf.len()) => {}
            Some((other, len)) => {
                let reason = format!(
                    "called {} of {} values while the others called {} of {len} values",
                    kind.name(),
                    buf.len(),
                    other.name()
                );
                st.failure.get_or_insert((self.rank, reason));
                shared.wake.notify_all();
                return Err(failed(&st).expect("just recorded"));
            }
        }
        let rank = self.rank;
        st.slots[rank].clear();
        st.slots[rank].extend_from_slice(buf);
        st.present[rank] = true;
        let generation = st.generation;
        if st.present.iter().all(|&p| p) {
            let result = combine(kind, &st.slots);
            st.result = Arc::new(result);
            st.present.iter_mut().for_each(|p| *p = false);
            st.op = None;
            st.generation += 1;
            shared.wake.notify_all();
        } else {
            let deadline = Instant::now() + shared.timeout;
            while st.generation == generation {
                if let Some(e) = failed(&st) {
                    return Err(e);
                }
                let now = Instant::now();
                if now >= deadline {
                    let missing = st
                        .present
                        .iter()
                        .position(|&p| !p)
                        .expect("not all present");
                    let reason = format!(
                        "did not reach the {} within {:.0} s (rank {rank} waited for it)",
                        kind.name(),
                        shared.timeout.as_secs_f64()
                    );
                    st.failure.get_or_insert((missing, reason));
                    shared.wake.notify_all();
                    return Err(failed(&st).expect("just recorded"));
                }
                st = shared
                    .wake
                    .wait_timeout(st, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        let result = st.result.clone();
        drop(st);
        if kind != OpKind::Barrier {
            buf.copy_from_slice(&result);
        }
        Ok(())
    }
}

fn failed(st: &State) -> Option<Error> {
    st.failure.as_ref().map(|(rank, message)| Error::Replica {
        rank: *rank,
        message: message.clone(),
    })
}

/// The result of one operation from every rank's buffer.
fn combine(kind: OpKind, slots: &[Vec<f32>]) -> Vec<f32> {
    match kind {
        OpKind::AllReduceSum => {
            let mut sum = slots[0].clone();
            for slot in &slots[1..] {
                for (s, v) in sum.iter_mut().zip(slot) {
                    *s += v;
                }
            }
            sum
        }
        OpKind::Broadcast => slots[0].clone(),
        OpKind::Barrier => Vec::new(),
    }
}

impl Collective for HostMember {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.shared.world_size
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        self.exchange(OpKind::AllReduceSum, buf)
    }

    fn broadcast(&self, buf: &mut [f32]) -> Result<()> {
        self.exchange(OpKind::Broadcast, buf)
    }

    fn barrier(&self) -> Result<()> {
        self.exchange(OpKind::Barrier, &mut [])
    }

    fn abort(&self, reason: &str) {
        let mut st = self.shared.lock();
        st.failure.get_or_insert((self.rank, reason.to_string()));
        self.shared.wake.notify_all();
    }

    fn failure(&self) -> Option<(usize, String)> {
        self.shared.lock().failure.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    const LONG: Duration = Duration::from_secs(30);

    /// Runs `f(member)` on one thread per member and returns the results in rank order.
    fn on_threads<T: Send>(members: Vec<HostMember>, f: impl Fn(HostMember) -> T + Sync) -> Vec<T> {
        thread::scope(|s| {
            let handles: Vec<_> = members.into_iter().map(|m| s.spawn(|| f(m))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    #[test]
    fn all_reduce_is_the_rank_ordered_sum_on_every_rank() {
        // Values chosen so that f32 addition order matters: (1e8 + 1) - 1e8 = 0 but 1e8 - 1e8 + 1 = 1.
        let inputs = [vec![1e8f32, 0.5], vec![1.0, 0.25], vec![-1e8, 2.0]];
        let expected: Vec<f32> = (0..2)
            .map(|i| (inputs[0][i] + inputs[1][i]) + inputs[2][i])
            .collect();
        for _ in 0..20 {
            let out = on_threads(HostGroup::members(3, LONG), |m| {
                let mut buf = inputs[m.rank()].clone();
                // Stagger arrivals differently each time so the last arriver varies.
                thread::sleep(Duration::from_micros((m.rank() as u64 * 37) % 50));
                m.all_reduce_sum(&mut buf).unwrap();
                buf
            });
            for buf in out {
                assert_eq!(
                    buf.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    expected.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                );
            }
        }
    }

    #[test]
    fn broadcast_copies_rank_zero_and_repeats() {
        let out = on_threads(HostGroup::members(4, LONG), |m| {
            let mut seen = Vec::new();
            for step in 0..50 {
                let mut buf = vec![(m.rank() * 1000 + step) as f32; 3];
                m.broadcast(&mut buf).unwrap();
                m.barrier().unwrap();
                seen.push(buf[0]);
            }
            seen
        });
        let expected: Vec<f32> = (0..50).map(|s| s as f32).collect();
        for seen in out {
            assert_eq!(seen, expected);
        }
    }

    #[test]
    fn a_failed_member_releases_the_others_with_its_rank() {
        let started = Instant::now();
        let out = on_threads(HostGroup::members(3, LONG), |m| {
            if m.rank() == 1 {
                thread::sleep(Duration::from_millis(20));
                m.abort("out of memory");
                return None;
            }
            Some(m.all_reduce_sum(&mut [1.0]).unwrap_err().to_string())
        });
        assert!(started.elapsed() < Duration::from_secs(5), "not prompt");
        for msg in out.into_iter().flatten() {
            assert_eq!(msg, "replica 1: out of memory");
        }
    }

    #[test]
    fn a_missing_member_times_out_naming_it() {
        let out = on_threads(HostGroup::members(2, Duration::from_millis(100)), |m| {
            if m.rank() == 0 {
                m.barrier().map_err(|e| e.to_string())
            } else {
                Ok(()) // never arrives
            }
        });
        let msg = out[0].clone().unwrap_err();
        assert!(
            msg.starts_with("replica 1: did not reach the barrier"),
            "{msg}"
        );
    }

    #[test]
    fn mismatched_operations_fail_instead_of_mixing_buffers() {
        let out = on_threads(HostGroup::members(2, LONG), |m| {
            let mut buf = vec![0.0; m.rank() + 1];
            m.all_reduce_sum(&mut buf).is_err()
        });
        assert_eq!(out, vec![true, true]);
    }
}
