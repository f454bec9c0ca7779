//! Multi-process rendezvous: how the processes of a multi-node run (one per node) learn where they
//! stand and exchange the one blob NCCL needs to connect them (its unique id, made on rank 0).
//!
//! The world comes from the environment as torchrun and Slurm set it: `MASTER_ADDR`, `MASTER_PORT`,
//! `WORLD_SIZE`, `RANK` (or `NODE_RANK`) and `LOCAL_RANK`, else `SLURM_JOB_NODELIST` (its first
//! host), `SLURM_NTASKS`, `SLURM_PROCID` and `SLURM_LOCALID`.
//!
//! Protocol (TCP, little-endian): each rank `r > 0` connects to rank 0 at `MASTER_ADDR:MASTER_PORT`
//! and sends `MAGIC, VERSION, world_size, r` (four u32). When all `world_size - 1` ranks have
//! arrived, rank 0 answers each with status 0 and the blob (`u8 0, u32 len, bytes`); if a rank
//! brings a different world size, a duplicate or out-of-range rank, rank 0 answers every connected
//! rank with status 1 and the reason (`u8 1, u32 len, utf-8`) and fails itself. Every wait has a
//! deadline, and a timeout names the ranks that did not come.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

const MAGIC: u32 = 0x5243_4e52; // "RNCR"
const VERSION: u32 = 1;
/// The port torchrun uses when none is given.
pub const DEFAULT_PORT: u16 = 29500;
/// No blob or message of the protocol is larger (an NCCL unique id is 128 bytes).
const MAX_PAYLOAD: usize = 1 << 20;

/// Where this process stands in a multi-process run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorldEnv {
    /// Rank 0's host name or address.
    pub master_addr: String,
    pub master_port: u16,
    /// The number of processes (one per node).
    pub world_size: usize,
    /// This process's rank, `0..world_size`.
    pub rank: usize,
    /// This process's index among the processes of its node.
    pub local_rank: usize,
}

impl WorldEnv {
    /// The world this process's environment describes; `None` when it describes none (neither
    /// `WORLD_SIZE` nor `SLURM_NTASKS` is set): a single-process run.
    pub fn from_env() -> Result<Option<WorldEnv>> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`WorldEnv::from_env`] with the variables looked up by `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<WorldEnv>> {
        // The first of `names` that is set, with its name, so that errors name the variable.
        let first = |names: &[&'static str]| {
            names
                .iter()
                .find_map(|&n| var(n).map(|v| (n, v.trim().to_string())))
        };
        let number = |(name, value): (&str, String)| {
            value.parse::<usize>().map_err(|_| {
                Error::Rendezvous(format!("{name}={value:?}: expected a whole number"))
            })
        };
        let Some(world) = first(&["WORLD_SIZE", "SLURM_NTASKS"]) else {
            return Ok(None);
        };
        let world_name = world.0;
        let world_size = number(world)?;
        if world_size == 0 {
            return Err(Error::Rendezvous(format!(
                "{world_name}=0: must be at least 1"
            )));
        }
        let (rank_name, rank) = match first(&["RANK", "NODE_RANK", "SLURM_PROCID"]) {
            Some(r) => (r.0, number(r)?),
            None if world_size == 1 => ("RANK", 0),
            None => {
                return Err(Error::Rendezvous(format!(
                    "{world_name}={world_size} but none of RANK, NODE_RANK, SLURM_PROCID is set"
                )))
            }
        };
        if rank >= world_size {
            return Err(Error::Rendezvous(format!(
                "{rank_name}={rank} is not below {world_name}={world_size}"
            )));
        }
        let local_rank = match first(&["LOCAL_RANK", "SLURM_LOCALID"]) {
            Some(l) => number(l)?,
            None => 0,
        };
        let master_addr = match first(&["MASTER_ADDR"]) {
            Some((_, addr)) if !addr.is_empty() => addr,
            _ => match first(&["SLURM_JOB_NODELIST", "SLURM_NODELIST"]) {
                Some((name, list)) => first_host(&list).ok_or_else(|| {
                    Error::Rendezvous(format!("{name}={list:?}: cannot read its first host"))
                })?,
                None if world_size == 1 => "127.0.0.1".into(),
                None => {
                    return Err(Error::Rendezvous(format!(
                        "{world_name}={world_size} but MASTER_ADDR is not set (rank 0's host)"
                    )))
                }
            },
        };
        let master_port = match first(&["MASTER_PORT"]) {
            None => DEFAULT_PORT,
            Some((_, p)) => p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| {
                Error::Rendezvous(format!("MASTER_PORT={p:?}: expected a port number"))
            })?,
        };
        Ok(Some(WorldEnv {
            master_addr,
            master_port,
            world_size,
            rank,
            local_rank,
        }))
    }

    /// Exchanges `blob` (only rank 0's is used) among all ranks: returns rank 0's blob on every
    /// rank, once all have arrived, or an error by `timeout`.
    pub fn rendezvous(&self, blob: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        if self.world_size == 1 {
            return Ok(blob.to_vec());
        }
        let deadline = Instant::now() + timeout;
        if self.rank == 0 {
            let listener = TcpListener::bind(("0.0.0.0", self.master_port)).map_err(|e| {
                Error::Rendezvous(format!(
                    "rank 0 cannot listen on port {} (MASTER_PORT): {e}",
                    self.master_port
                ))
            })?;
            serve(&listener, self.world_size, blob, deadline)?;
            Ok(blob.to_vec())
        } else {
            join(
                &self.master_addr,
                self.master_port,
                self.world_size,
                self.rank,
                deadline,
            )
        }
    }
}

/// The first host of a Slurm node list: `gpu[03-05,9],cpu1` gives `gpu03`.
pub fn first_host(list: &str) -> Option<String> {
    let first = list.split(',').next()?.trim();
    let host = match first.split_once('[') {
        None => first.to_string(),
        Some((prefix, range)) => {
            let start = range.split(['-', ',', ']']).next()?;
            format!("{prefix}{start}")
        }
    };
    (!host.is_empty()).then_some(host)
}

/// Rank 0's side: waits for the `world_size - 1` other ranks on `listener`, then sends each `blob`.
pub fn serve(
    listener: &TcpListener,
    world_size: usize,
    blob: &[u8],
    deadline: Instant,
) -> Result<()> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    let io = |e: std::io::Error| Error::Rendezvous(format!("rank 0 at {addr}: {e}"));
    listener.set_nonblocking(true).map_err(io)?;
    let mut peers: Vec<Option<TcpStream>> = (0..world_size).map(|_| None).collect();
    let mut arrived = 1;
    while arrived < world_size {
        let now = Instant::now();
        if now >= deadline {
            let missing: Vec<String> = (1..world_size)
                .filter(|&r| peers[r].is_none())
                .map(|r| r.to_string())
                .collect();
            let reason = format!(
                "rank 0 at {addr} waited in vain for rank{} {} of WORLD_SIZE {world_size}",
                if missing.len() == 1 { "" } else { "s" },
                missing.join(", ")
            );
            reject_all(&mut peers, &reason);
            return Err(Error::Rendezvous(reason));
        }
        let mut stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(e) => return Err(io(e)),
        };
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "?".into());
        let hello = stream
            .set_nonblocking(false)
            // A peer gets a few seconds to introduce itself, so a silent one cannot hold rank 0.
            .and_then(|()| {
                stream.set_read_timeout(Some(remaining(deadline).min(Duration::from_secs(5))))
            })
            .and_then(|()| read_u32s::<4>(&mut stream));
        // A connection that does not speak the protocol (a port scan, a stale client) is ignored.
        let Ok([MAGIC, VERSION, their_world, rank]) = hello else {
            continue;
        };
        let (their_world, rank) = (their_world as usize, rank as usize);
        let problem = if their_world != world_size {
            Some(format!(
                "rank {rank} ({peer}) has WORLD_SIZE {their_world}, rank 0 has {world_size}"
            ))
        } else if rank == 0 || rank >= world_size {
            Some(format!(
                "a process at {peer} claims rank {rank}, outside 1..{world_size}"
            ))
        } else if peers[rank].is_some() {
            Some(format!(
                "two processes claim rank {rank} (the second at {peer})"
            ))
        } else {
            None
        };
        if let Some(reason) = problem {
            let _ = send(&mut stream, 1, reason.as_bytes());
            reject_all(&mut peers, &reason);
            return Err(Error::Rendezvous(reason));
        }
        peers[rank] = Some(stream);
        arrived += 1;
    }
    for (rank, stream) in peers.iter_mut().enumerate() {
        if let Some(s) = stream {
            send(s, 0, blob).map_err(|e| {
                Error::Rendezvous(format!("rank 0 could not send the id to rank {rank}: {e}"))
            })?;
        }
    }
    Ok(())
}

/// A rank's side: connects to rank 0 (retrying until it listens), introduces itself and returns
/// rank 0's blob.
pub fn join(
    host: &str,
    port: u16,
    world_size: usize,
    rank: usize,
    deadline: Instant,
) -> Result<Vec<u8>> {
    let target = format!("{host}:{port}");
    let fail = |what: String| {
        Error::Rendezvous(format!(
            "rank {rank}: {what} (rank 0 at {target}, from MASTER_ADDR/MASTER_PORT)"
        ))
    };
    let mut last_error = String::from("no address");
    let mut stream = loop {
        if Instant::now() >= deadline {
            return Err(fail(format!(
                "rank 0 did not answer in time ({last_error})"
            )));
        }
        let addrs: Vec<SocketAddr> = match (host, port).to_socket_addrs() {
            Ok(a) => a.collect(),
            Err(e) => {
                last_error = format!("cannot resolve {host}: {e}");
                Vec::new()
            }
        };
        let connected = addrs.iter().find_map(|a| {
            TcpStream::connect_timeout(a, remaining(deadline).min(Duration::from_secs(2)))
                .map_err(|e| last_error = e.to_string())
                .ok()
        });
        match connected {
            Some(s) => break s,
            // Rank 0 may not be listening yet.
            None => std::thread::sleep(Duration::from_millis(50).min(remaining(deadline))),
        }
    };
    let io = |e: std::io::Error| {
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            fail("timed out waiting for the other ranks".into())
        } else {
            fail(format!("connection lost: {e}"))
        }
    };
    let hello = [MAGIC, VERSION, world_size as u32, rank as u32];
    let bytes: Vec<u8> = hello.iter().flat_map(|v| v.to_le_bytes()).collect();
    stream.write_all(&bytes).map_err(io)?;
    stream
        .set_read_timeout(Some(remaining(deadline)))
        .map_err(io)?;
    let mut status = [0u8; 1];
    stream.read_exact(&mut status).map_err(io)?;
    let [len] = read_u32s::<1>(&mut stream).map_err(io)?;
    let len = len as usize;
    if len > MAX_PAYLOAD {
        return Err(fail(format!("rank 0 sent a reply of {len} bytes")));
    }
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).map_err(io)?;
    match status[0] {
        0 => Ok(payload),
        _ => Err(fail(format!(
            "rank 0 refused: {}",
            String::from_utf8_lossy(&payload)
        ))),
    }
}

fn remaining(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

fn read_u32s<const N: usize>(stream: &mut TcpStream) -> std::io::Result<[u32; N]> {
    let mut out = [0u32; N];
    for v in &mut out {
        let mut b = [0u8; 4];
        stream.read_exact(&mut b)?;
        *v = u32::from_le_bytes(b);
    }
    Ok(out)
}

fn send(stream: &mut TcpStream, status: u8, payload: &[u8]) -> std::io::Result<()> {
    let mut msg = vec![status];
    msg.extend((payload.len() as u32).to_le_bytes());
    msg.extend_from_slice(payload);
    stream.write_all(&msg)
}

fn reject_all(peers: &mut [Option<TcpStream>], reason: &str) {
    for s in peers.iter_mut().flatten() {
        let _ = send(s, 1, reason.as_bytes());
    }
}
