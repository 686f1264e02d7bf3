//! Zab over real processes and real connections: `corral zab-member` runs the replication
//! layer of an ensemble member without the client service (docs/zab.md). Three members
//! on free loopback ports elect a leader, replicate its test writes, survive a SIGKILL of
//! the leader, and end with identical trees.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Ports nobody listens on now (bound to port 0, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// What a member last said on stdout.
#[derive(Debug, Default, Clone)]
struct Seen {
    role: String,
    applied: String,
    digest: String,
    lines: Vec<String>,
}

struct Member {
    id: u64,
    dir: PathBuf,
    cfg: PathBuf,
    child: Option<Child>,
    seen: Arc<Mutex<Seen>>,
}

impl Member {
    fn start(&mut self, writes: u64) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["zab-member", "--config"])
            .arg(&self.cfg)
            .args(["--writes", &writes.to_string(), "--write-every-ms", "10"])
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(self.dir.join(format!("stderr.{}", self.id))).unwrap()))
            .process_group(0)
            .spawn()
            .expect("start corral zab-member");
        let out = child.stdout.take().unwrap();
        let seen = self.seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                let mut s = seen.lock().unwrap();
                if let Some(rest) = line.strip_prefix("role ") {
                    s.role = rest.to_string();
                }
                if let Some(rest) = line.strip_prefix("applied ") {
                    let f: HashMap<&str, &str> = rest.split(' ').filter_map(|kv| kv.split_once('=')).collect();
                    s.applied = f["zxid"].to_string();
                    s.digest = f["digest"].to_string();
                }
                s.lines.push(line);
            }
        });
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        *self.seen.lock().unwrap() = Seen::default();
    }

    fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }
}

impl Member {
    fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().expect("running").id() as i32;
        // SAFETY: kill(2) on a child process this test started.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    fn applied(&self) -> u64 {
        let a = self.seen().applied;
        u64::from_str_radix(a.trim_start_matches("0x"), 16).unwrap_or(0)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `n` members; the last `observers` of them are observers.
fn ensemble(root: &Path, n: u64, observers: u64) -> Vec<Member> {
    let ports = free_ports(2 * n as usize);
    let servers: String = (1..=n)
        .map(|id| {
            let i = (id - 1) as usize;
            let role = if id > n - observers { ":observer" } else { "" };
            format!("server.{id}=127.0.0.1:{}:{}{role}\n", ports[2 * i], ports[2 * i + 1])
        })
        .collect();
    (1..=n)
        .map(|id| {
            let dir = root.join(format!("m{id}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("myid"), format!("{id}\n")).unwrap();
            let cfg = dir.join("zoo.cfg");
            std::fs::write(
                &cfg,
                format!("tickTime=100\ninitLimit=20\nsyncLimit=10\ndataDir={}\nclientPort=0\n{servers}", dir.display()),
            )
            .unwrap();
            Member { id, dir, cfg, child: None, seen: Arc::default() }
        })
        .collect()
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The one member whose last role line says it leads, if exactly one does.
fn leader(members: &[Member]) -> Option<usize> {
    let leading: Vec<usize> =
        members.iter().enumerate().filter(|(_, m)| m.child.is_some() && m.seen().role.starts_with("leading")).map(|(i, _)| i).collect();
    (leading.len() == 1).then(|| leading[0])
}

fn all_agree(members: &[Member]) -> Option<(String, String)> {
    let live: Vec<Seen> = members.iter().filter(|m| m.child.is_some()).map(|m| m.seen()).collect();
    let first = live.first()?.clone();
    let same = live.iter().all(|s| s.applied == first.applied && s.digest == first.digest && !s.applied.is_empty());
    same.then_some((first.applied, first.digest))
}

fn serving(role: &str) -> bool {
    ["following", "leading", "observing"].iter().any(|r| role.starts_with(r))
}

/// Starts every member (each proposing `writes` while it leads) and waits for a leader
/// and two followers; returns the leader's index.
fn start_and_elect(members: &mut [Member], writes: u64) -> usize {
    for m in members.iter_mut() {
        m.start(writes);
    }
    wait_for("a leader and two followers", Duration::from_secs(30), || {
        leader(members).is_some() && members.iter().filter(|m| m.seen().role.starts_with("following")).count() == 2
    });
    leader(members).unwrap()
}

/// Restarts a member without writes and waits until it serves again; on a timeout the
/// failure shows the end of every member's log.
fn restart_quietly(m: &mut Member) {
    m.kill();
    m.start(0);
    let start = Instant::now();
    while !serving(&m.seen().role) {
        if start.elapsed() > Duration::from_secs(30) {
            let root = m.dir.parent().unwrap().to_path_buf();
            let mut logs = String::new();
            for id in 1..=4 {
                let log = std::fs::read_to_string(root.join(format!("m{id}/stderr.{id}"))).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(8).collect();
                logs += &format!("--- member {id}\n{}\n", tail.join("\n"));
            }
            panic!("member {} did not come back: {:?}\n{logs}", m.id, m.seen().lines.iter().rev().take(5).collect::<Vec<_>>());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn three_members_elect_replicate_fail_over_and_converge() {
    let root = tempfile::tempdir().unwrap();
    let mut members = ensemble(root.path(), 3, 0);
    let first = start_and_elect(&mut members, 100);
    let epoch1 = members[first].seen().role;
    // Its 100 writes reach everyone.
    wait_for("the first leader's writes everywhere", Duration::from_secs(30), || {
        all_agree(&members).is_some_and(|(zxid, _)| zxid.ends_with("64"))
    });
    // SIGKILL the leader (mid-stream for the others' view of it) and let the two others
    // carry on: a new leader in a new epoch, which writes again.
    members[first].kill();
    let failover = Instant::now();
    wait_for("a new leader", Duration::from_secs(30), || leader(&members).is_some_and(|l| l != first));
    let second = leader(&members).unwrap();
    let took = failover.elapsed();
    assert_ne!(members[second].seen().role, epoch1);
    eprintln!("failover: a new leader {:?} after {took:?}", members[second].seen().role);
    // The killed member comes back: it syncs from the new leader and converges.
    members[first].start(0);
    wait_for("three identical trees", Duration::from_secs(60), || {
        all_agree(&members).is_some_and(|(zxid, _)| {
            // The new leader's writes (100 of them, in the new epoch) are in.
            let z = u64::from_str_radix(zxid.trim_start_matches("0x"), 16).unwrap();
            z & 0xffff_ffff == 100 && z >> 32 > 1
        })
    });
    let (zxid, digest) = all_agree(&members).unwrap();
    eprintln!("converged at {zxid} with digest {digest}");
    for m in &members {
        assert!(m.child.is_some());
        let s = m.seen();
        assert!(s.role.starts_with("leading") || s.role.starts_with("following"), "member {}: {}", m.id, s.role);
    }
}

/// A minority stopped (SIGSTOP) does not stop writes; a majority stopped does, and the
/// leader gives up; after SIGCONT everyone converges. An observer follows along and never
/// counts toward a quorum.
#[test]
fn a_stopped_minority_is_tolerated_a_stopped_majority_is_not_and_observers_never_count() {
    let root = tempfile::tempdir().unwrap();
    // Voters 1..3, observer 4.
    let mut members = ensemble(root.path(), 4, 1);
    for m in members.iter_mut() {
        m.start(100_000);
    }
    wait_for("a leader, two followers and an observer", Duration::from_secs(30), || {
        let roles: Vec<String> = members.iter().map(|m| m.seen().role).collect();
        leader(&members).is_some()
            && roles.iter().filter(|r| r.starts_with("following")).count() == 2
            && roles[3].starts_with("observing")
    });
    let l = leader(&members).unwrap();
    assert_ne!(l, 3, "an observer is never elected");
    let followers: Vec<usize> = (0..3).filter(|&i| i != l).collect();
    // Stop one follower: the leader and the other follower go on committing.
    members[followers[0]].signal(libc::SIGSTOP);
    let before = members[l].applied();
    wait_for("writes with a minority stopped", Duration::from_secs(10), || members[l].applied() > before + 50);
    wait_for("the running follower and the observer to keep up", Duration::from_secs(10), || {
        members[followers[1]].applied() > before + 50 && members[3].applied() > before + 50
    });
    // Stop the second follower too: only the leader and the observer run. No quorum.
    members[followers[1]].signal(libc::SIGSTOP);
    wait_for("the leader to give up", Duration::from_secs(10), || members[l].seen().role.starts_with("looking"));
    // Reports lag what was applied by up to a few hundred ms: let them settle first.
    std::thread::sleep(Duration::from_millis(1500));
    let stuck = (0..4).map(|i| members[i].applied()).max().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        (0..4).all(|i| members[i].applied() <= stuck),
        "nothing may commit without a quorum of voters: {:?}",
        members.iter().map(|m| m.seen().applied).collect::<Vec<_>>()
    );
    // Let them run again: a leader, writes resume, and everyone converges.
    for &f in &followers {
        members[f].signal(libc::SIGCONT);
    }
    wait_for("writes after SIGCONT", Duration::from_secs(30), || {
        leader(&members).is_some_and(|l| members[l].applied() > stuck)
    });
    // Stop proposing: restart each member without writes, one at a time, keeping a
    // quorum up, so the trees can settle and be compared.
    for m in members.iter_mut() {
        restart_quietly(m);
    }
    wait_for("four identical trees", Duration::from_secs(30), || all_agree(&members).is_some());
}

/// How the leader (`leader`) brought member `to` up to date, from its stdout, since line
/// `from`.
fn syncs_to(m: &Member, to: u64, from: usize) -> Vec<String> {
    let prefix = format!("sync to={to} how=");
    m.seen().lines[from..].iter().filter_map(|l| l.strip_prefix(&prefix).map(|h| h.split(' ').next().unwrap().to_string())).collect()
}

/// Issue 4 (b): a follower that missed a few writes catches up by DIFF, one that missed
/// more than the leader's window (500) by SNAP, and a former leader holding an
/// uncommitted tail is cut back by TRUNC. Every time, all members converge.
#[test]
fn restarted_members_catch_up_by_diff_snap_and_trunc() {
    let root = tempfile::tempdir().unwrap();
    let mut members = ensemble(root.path(), 3, 0);
    let l = start_and_elect(&mut members, 1_000_000);
    let f = (0..3).find(|&i| i != l).unwrap();
    let f_id = members[f].id;
    wait_for("some writes", Duration::from_secs(10), || members[f].applied() & 0xffff_ffff > 20);

    // DIFF: down for a few writes.
    members[f].kill();
    let at = members[l].applied();
    wait_for("a few writes without it", Duration::from_secs(10), || members[l].applied() > at + 20);
    let mark = members[l].seen().lines.len();
    members[f].start(0);
    wait_for("it to catch up", Duration::from_secs(30), || members[f].applied() >= members[l].applied().min(at + 20));
    assert_eq!(syncs_to(&members[l], f_id, mark), ["diff"]);

    // SNAP: down for more than the leader's in-memory window.
    members[f].kill();
    let at = members[l].applied();
    wait_for("many writes without it", Duration::from_secs(60), || members[l].applied() > at + 700);
    let mark = members[l].seen().lines.len();
    members[f].start(0);
    wait_for("it to catch up", Duration::from_secs(30), || members[f].applied() > at + 700);
    assert_eq!(syncs_to(&members[l], f_id, mark), ["snap"]);

    // TRUNC: stop, then kill, both followers; the leader goes on logging proposals nobody
    // else will have until it notices it lost its quorum. Kill it too, restart the
    // followers (they elect a new leader without that tail), then bring the old leader
    // back.
    let others: Vec<usize> = (0..3).filter(|&i| i != l).collect();
    let at = members[l].applied();
    // Stopped first, so they log nothing more while the leader goes on proposing for
    // syncLimit (what its sockets hold for them dies with them below).
    for &o in &others {
        members[o].signal(libc::SIGSTOP);
    }
    wait_for("the lone leader to give up", Duration::from_secs(10), || members[l].seen().role.starts_with("looking"));
    for &o in &others {
        members[o].kill();
    }
    let old_leader_id = members[l].id;
    members[l].kill();
    for &o in &others {
        members[o].start(1_000_000);
    }
    wait_for("a new leader", Duration::from_secs(30), || leader(&members).is_some());
    let n = leader(&members).unwrap();
    wait_for("writes of the new epoch", Duration::from_secs(10), || members[n].applied() > at && members[n].applied() >> 32 > at >> 32);
    let mark = members[n].seen().lines.len();
    members[l].start(0);
    wait_for("the old leader back as a follower", Duration::from_secs(30), || members[l].seen().role.starts_with("following"));
    assert_eq!(syncs_to(&members[n], old_leader_id, mark), ["trunc"]);
    // Converge: stop all writing (restart the two writers without writes, one at a
    // time) and compare.
    for &o in &others {
        restart_quietly(&mut members[o]);
    }
    wait_for("three identical trees", Duration::from_secs(60), || all_agree(&members).is_some());
}
