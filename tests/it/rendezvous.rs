//! The multi-process rendezvous on loopback: the environment as torchrun and Slurm set it, rank 0
//! handing its blob (the NCCL unique id) to every rank, in separate processes and in threads, and
//! the failures: a rank that never arrives, a wrong world size, no rank 0.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use resnet_cuda::dist::rendezvous::{first_host, join, serve, WorldEnv, DEFAULT_PORT};

fn env_of(pairs: &[(&str, &str)]) -> Result<Option<WorldEnv>, String> {
    let vars: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    WorldEnv::from_vars(|n| vars.get(n).cloned()).map_err(|e| e.to_string())
}

#[test]
fn torchrun_variables_describe_the_world() {
    let env = env_of(&[
        ("MASTER_ADDR", "10.0.0.1"),
        ("MASTER_PORT", "1234"),
        ("WORLD_SIZE", "4"),
        ("RANK", "2"),
        ("LOCAL_RANK", "1"),
    ]);
    let expected = WorldEnv {
        master_addr: "10.0.0.1".into(),
        master_port: 1234,
        world_size: 4,
        rank: 2,
        local_rank: 1,
    };
    assert_eq!(env, Ok(Some(expected)));
    assert_eq!(env_of(&[]), Ok(None), "no variables: a single process");
    let node_rank = env_of(&[
        ("MASTER_ADDR", "h"),
        ("WORLD_SIZE", "2"),
        ("NODE_RANK", "1"),
    ]);
    let node_rank = node_rank.unwrap().unwrap();
    assert_eq!((node_rank.rank, node_rank.master_port), (1, DEFAULT_PORT));
}

#[test]
fn slurm_variables_describe_the_world() {
    let env = env_of(&[
        ("SLURM_JOB_NODELIST", "gpu[07-09,12],login1"),
        ("SLURM_NTASKS", "4"),
        ("SLURM_PROCID", "3"),
        ("SLURM_LOCALID", "0"),
    ])
    .unwrap()
    .unwrap();
    assert_eq!(env.master_addr, "gpu07");
    assert_eq!((env.world_size, env.rank, env.local_rank), (4, 3, 0));
    assert_eq!(first_host("node5"), Some("node5".into()));
    assert_eq!(first_host("a[1-2]"), Some("a1".into()));
}

#[test]
fn bad_variables_are_named() {
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("WORLD_SIZE", "two")], "WORLD_SIZE=\"two\""),
        (&[("WORLD_SIZE", "2"), ("MASTER_ADDR", "h")], "RANK"),
        (
            &[("WORLD_SIZE", "2"), ("RANK", "2"), ("MASTER_ADDR", "h")],
            "RANK=2",
        ),
        (&[("WORLD_SIZE", "2"), ("RANK", "1")], "MASTER_ADDR"),
        (
            &[
                ("WORLD_SIZE", "2"),
                ("RANK", "1"),
                ("MASTER_ADDR", "h"),
                ("MASTER_PORT", "x"),
            ],
            "MASTER_PORT",
        ),
    ];
    for (vars, culprit) in cases {
        let err = env_of(vars).unwrap_err();
        assert!(err.contains(culprit), "{vars:?}: {err}");
    }
}

/// A listener on a free loopback port, for rank 0.
fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn in_secs(s: f64) -> Instant {
    Instant::now() + Duration::from_secs_f64(s)
}

#[test]
fn every_rank_gets_rank_zeros_blob_in_threads() {
    let (l, port) = listener();
    let blob: Vec<u8> = (0..128).map(|i| (i * 7) as u8).collect();
    let got: Vec<Vec<u8>> = thread::scope(|s| {
        let joins: Vec<_> = (1..4)
            .map(|rank| s.spawn(move || join("127.0.0.1", port, 4, rank, in_secs(20.0)).unwrap()))
            .collect();
        serve(&l, 4, &blob, in_secs(20.0)).unwrap();
        joins.into_iter().map(|j| j.join().unwrap()).collect()
    });
    assert_eq!(got, vec![blob.clone(); 3]);
}

#[test]
fn a_rank_that_never_arrives_is_named_by_rank_zero_and_the_others_are_told() {
    let (l, port) = listener();
    let started = Instant::now();
    let (served, joined) = thread::scope(|s| {
        let one = s.spawn(move || join("127.0.0.1", port, 3, 1, in_secs(20.0)));
        // Rank 2 never comes.
        let served = serve(&l, 3, b"id", in_secs(1.0));
        (served, one.join().unwrap())
    });
    let served = served.unwrap_err().to_string();
    assert!(
        served.contains("waited in vain for rank 2 of WORLD_SIZE 3"),
        "{served}"
    );
    let joined = joined.unwrap_err().to_string();
    assert!(
        joined.contains("rank 0 refused") && joined.contains("rank 2"),
        "{joined}"
    );
    // Rank 1 learnt of it from rank 0 at rank 0's deadline, not at its own.
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn a_wrong_world_size_is_refused_on_both_sides() {
    let (l, port) = listener();
    let (served, joined) = thread::scope(|s| {
        let bad = s.spawn(move || join("127.0.0.1", port, 3, 1, in_secs(20.0)));
        let served = serve(&l, 2, b"id", in_secs(20.0));
        (served, bad.join().unwrap())
    });
    let expected = "rank 1 (";
    let served = served.unwrap_err().to_string();
    assert!(
        served.contains(expected) && served.contains("has WORLD_SIZE 3, rank 0 has 2"),
        "{served}"
    );
    let joined = joined.unwrap_err().to_string();
    assert!(
        joined.contains("has WORLD_SIZE 3, rank 0 has 2"),
        "{joined}"
    );
}

#[test]
fn no_rank_zero_times_out_naming_where_it_looked() {
    let (l, port) = listener();
    drop(l); // nobody listens there now
    let err = join("127.0.0.1", port, 2, 1, in_secs(0.5))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rank 1: rank 0 did not answer in time")
            && err.contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

/// Rank `r > 0` of the multi-process test: this same test binary, run again with the world in its
/// environment; prints the blob it received in hex.
/// Ignored in a plain `cargo test`: it is a helper process, not a test of its own.
#[test]
#[ignore = "a child process of ranks_in_separate_processes_meet"]
fn rendezvous_child_rank() {
    if std::env::var("RENDEZVOUS_TEST_CHILD").is_err() {
        eprintln!("run by ranks_in_separate_processes_meet, with the world in the environment");
        return;
    }
    let env = WorldEnv::from_env()
        .unwrap()
        .expect("the parent sets the world");
    match env.rendezvous(&[], Duration::from_secs(20)) {
        Ok(blob) => println!("BLOB {}", hex(&blob)),
        Err(e) => println!("ERROR {e}"),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|v| format!("{v:02x}")).collect()
}

/// Starts rank `rank` of a `world`-process run whose rank 0 listens on `port`, as a child process.
fn spawn_rank(port: u16, world: usize, rank: usize) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            // The test's full name in the `it` program, of which this file is a module.
            concat!(module_path!(), "::rendezvous_child_rank")
                .split_once("::")
                .map_or("", |(_, name)| name),
            "--ignored",
            "--nocapture",
        ])
        .env("RENDEZVOUS_TEST_CHILD", "1")
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("RANK", rank.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn rank0(port: u16, world: usize) -> WorldEnv {
    let (port, world) = (port.to_string(), world.to_string());
    env_of(&[
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", &port),
        ("WORLD_SIZE", &world),
        ("RANK", "0"),
    ])
    .unwrap()
    .unwrap()
}

#[test]
fn ranks_in_separate_processes_meet() {
    let (l, port) = listener();
    drop(l); // rank 0 listens on it below, on all interfaces, as a real run does
    let children: Vec<_> = (1..3).map(|rank| spawn_rank(port, 3, rank)).collect();
    let id: Vec<u8> = (0..128u8).rev().collect();
    rank0(port, 3)
        .rendezvous(&id, Duration::from_secs(20))
        .unwrap();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(&format!("BLOB {}", hex(&id))), "{stdout}");
    }
}

#[test]
fn a_process_that_never_arrives_is_named_in_every_process() {
    let (l, port) = listener();
    drop(l);
    let child = spawn_rank(port, 3, 1); // rank 2 is never started
    let err = rank0(port, 3)
        .rendezvous(b"id", Duration::from_secs(2))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("waited in vain for rank 2 of WORLD_SIZE 3"),
        "{err}"
    );
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ERROR rendezvous: rank 1: rank 0 refused") && stdout.contains("rank 2"),
        "{stdout}"
    );
}
