//! `corral queue` from the command line, against a real server: pushing, looking, and
//! worker processes that run a command per task, including some killed mid-task.

mod common;

use common::Server;
use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn corral(server: &Server, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_corral"));
    c.arg("queue").arg(args[0]).args(["--connect", &server.hosts(), "--session-timeout", "4s"]).args(&args[1..]);
    c
}

/// Runs `corral queue ...` to its end; stdout on success, panics with stderr otherwise.
fn run(server: &Server, args: &[&str]) -> String {
    let out = corral(server, args).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "corral queue {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn stats(server: &Server, queue: &str) -> serde_json::Value {
    serde_json::from_str(&run(server, &["stats", "--queue", queue, "--json"])).unwrap()
}

struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn worker(server: &Server, queue: &str, exec: &str, name: &str) -> Worker {
    Worker(
        corral(server, &["work", "--queue", queue, "--exec", exec, "--name", name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn push_look_cancel_and_purge() {
    let server = Server::start();
    let id = run(&server, &["push", "--queue", "q", "--priority", "5", "hello"]).trim().to_string();
    let mut push = corral(&server, &["push", "--queue", "q", "--key", "k1", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    push.stdin.take().unwrap().write_all(b"from stdin").unwrap();
    let keyed = String::from_utf8(push.wait_with_output().unwrap().stdout).unwrap().trim().to_string();
    let again = run(&server, &["push", "--queue", "q", "--key", "k1", "other"]).trim().to_string();
    assert_eq!(keyed, again, "a key pushes once");
    run(&server, &["push", "--queue", "q", "--delay", "1h", "later"]);
    let s = stats(&server, "q");
    assert_eq!((s["ready"].as_u64(), s["delayed"].as_u64(), s["dead"].as_u64()), (Some(2), Some(1), Some(0)));
    let list = run(&server, &["list", "--queue", "q"]);
    let first = list.lines().next().unwrap();
    assert!(first.starts_with(&format!("{id} ready priority=5")), "{list}");
    let peek = run(&server, &["peek", "--queue", "q", &keyed]);
    assert!(peek.ends_with("from stdin\n"), "{peek}");
    run(&server, &["cancel", "--queue", "q", &id]);
    let out = corral(&server, &["peek", "--queue", "q", &id]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no task"));
    assert_eq!(run(&server, &["purge", "--queue", "q"]).trim(), "2");
    let s = stats(&server, "q");
    assert_eq!((s["ready"].as_u64(), s["delayed"].as_u64()), (Some(0), Some(0)));
    let bad = corral(&server, &["push", "--queue", "q", "--delay", "soon", "x"]).output().unwrap();
    assert!(!bad.status.success());
}

/// Workers run every task to its end, even with some of them SIGKILLed mid-task: the
/// killed workers' tasks go back when their sessions expire and others finish them. Each
/// task is acknowledged once (its result is stored once, by whoever held it last).
#[test]
fn workers_killed_mid_task_lose_nothing() {
    let server = Server::start();
    let n = 12;
    let mut ids = BTreeSet::new();
    for i in 0..n {
        ids.insert(run(&server, &["push", "--queue", "jobs", &format!("job {i}")]).trim().to_string());
    }
    // Each task takes a while; its result names the worker and the attempt.
    let exec = "sleep 0.4; printf '%s attempt %s by %s' \"$(cat)\" \"$CORRAL_TASK_ATTEMPT\" \"$WORKER\"";
    let spawn = |name: &str| {
        let mut c = corral(&server, &["work", "--queue", "jobs", "--exec", exec, "--name", name]);
        c.env("WORKER", name).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        Worker(c.spawn().unwrap())
    };
    let doomed = [spawn("doomed-1"), spawn("doomed-2")];
    let _survivor = spawn("survivor");
    // Wait until both doomed workers hold a task, then kill them.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let running: Vec<String> = stats(&server, "jobs")["running_tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["worker"].as_str().unwrap().to_string())
            .collect();
        if running.iter().any(|w| w == "doomed-1") && running.iter().any(|w| w == "doomed-2") {
            break;
        }
        assert!(Instant::now() < deadline, "the doomed workers never held tasks together: {running:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    for mut w in doomed {
        w.0.kill().unwrap(); // SIGKILL
        w.0.wait().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut results = Vec::new();
    for id in &ids {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = run(&server, &["result", "--queue", "jobs", id, "--wait", &format!("{}ms", left.as_millis())]);
        results.push(r);
    }
    let retried: Vec<&String> = results.iter().filter(|r| r.contains("attempt 2")).collect();
    assert!(retried.len() >= 2, "the killed workers' tasks were finished again: {results:?}");
    assert!(retried.iter().all(|r| r.ends_with("by survivor")), "{retried:?}");
    let s = stats(&server, "jobs");
    assert_eq!((s["ready"].as_u64(), s["running"].as_u64(), s["dead"].as_u64()), (Some(0), Some(0), Some(0)));
}

/// A failing command nacks (its stderr is the task's last error) until the task is a
/// dead letter; requeue-dead puts it back.
#[test]
fn failing_tasks_become_dead_letters() {
    let server = Server::start();
    let id = run(&server, &["push", "--queue", "bad", "--max-attempts", "2", "x"]).trim().to_string();
    let _w = worker(&server, "bad", "echo \"no luck on $CORRAL_TASK_ATTEMPT\" >&2; exit 3", "w");
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats(&server, "bad")["dead"].as_u64() != Some(1) {
        assert!(Instant::now() < deadline, "no dead letter");
        std::thread::sleep(Duration::from_millis(50));
    }
    let peek = run(&server, &["peek", "--queue", "bad", &id]);
    assert!(peek.contains("dead") && peek.contains("attempt=2/2") && peek.contains("no luck on 2"), "{peek}");
    assert_eq!(run(&server, &["requeue-dead", "--queue", "bad"]).trim(), "1");
}

/// SIGTERM: the worker takes nothing new, finishes the task it runs, and exits cleanly.
#[test]
fn sigterm_finishes_the_running_task() {
    let server = Server::start();
    let first = run(&server, &["push", "--queue", "term", "a"]).trim().to_string();
    let mut w = worker(&server, "term", "sleep 1; cat", "w");
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats(&server, "term")["running"].as_u64() != Some(1) {
        assert!(Instant::now() < deadline, "the task never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    run(&server, &["push", "--queue", "term", "b"]);
    // SAFETY: kill(2) on a child this test started.
    assert_eq!(unsafe { libc::kill(w.0.id() as i32, libc::SIGTERM) }, 0);
    let status = w.0.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(run(&server, &["result", "--queue", "term", &first]), "a");
    let s = stats(&server, "term");
    assert_eq!((s["ready"].as_u64(), s["running"].as_u64()), (Some(1), Some(0)), "the second task stays for others");
}

/// A schedule firing every second, with three schedulers running: each firing is pushed
/// once. The elected scheduler is SIGKILLed; another takes over once its session expires,
/// pushes the latest firing it missed once, and goes on.
#[test]
fn a_schedule_fires_once_per_firing_with_three_schedulers_and_one_killed() {
    let server = Server::start();
    let sched = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_corral"));
        c.args(["queue", "schedule", args[0], "--connect", &server.hosts(), "--session-timeout", "4s"]).args(&args[1..]);
        c
    };
    let out = sched(&["add", "--name", "tick", "--cron", "* * * * * *", "--queue", "ticks", "tock"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bad = sched(&["add", "--name", "x", "--cron", "every day", "--queue", "ticks", "p"]).output().unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("cron expression"));
    let mut schedulers = Vec::new();
    for i in 1..=3 {
        let c = sched(&["run", "--name", &format!("s{i}")]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
        schedulers.push(Worker(c.unwrap()));
        std::thread::sleep(Duration::from_millis(300)); // s1 is first in line
    }
    std::thread::sleep(Duration::from_secs(3));
    let killed_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    schedulers[0].0.kill().unwrap(); // SIGKILL the elected one
    schedulers[0].0.wait().unwrap();
    // Its session expires after 4 s; s2 takes over and fires again.
    std::thread::sleep(Duration::from_secs(9));
    for w in &schedulers[1..] {
        // SAFETY: kill(2) on a child this test started.
        unsafe { libc::kill(w.0.id() as i32, libc::SIGTERM) };
    }
    std::thread::sleep(Duration::from_millis(500));
    let fired: Vec<u64> = run(&server, &["list", "--queue", "ticks", "--json", "--limit", "1000"])
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["meta"]["fired_ms"].as_u64().expect("fired_ms"))
        .collect();
    let mut distinct = fired.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), fired.len(), "a firing was pushed twice: {fired:?}");
    assert!(fired.iter().all(|t| t % 1000 == 0), "firings fall on whole seconds: {fired:?}");
    let before = distinct.iter().filter(|&&t| t < killed_at).count();
    let after = distinct.iter().filter(|&&t| t > killed_at + 3000).count();
    assert!(before >= 2 && after >= 2, "firings before ({before}) and after ({after}) the failover: {distinct:?}");
    // The missed firings of the failover collapse into one: no second-by-second run
    // through the gap.
    let gaps = distinct.windows(2).filter(|w| w[1] - w[0] > 1000).count();
    assert!(gaps <= 1, "{distinct:?}");
}

/// A worker whose session expired (stopped longer than its session timeout) starts a new
/// session and goes on taking tasks.
#[test]
fn a_worker_whose_session_expired_carries_on() {
    let server = Server::start();
    let mut w = worker(&server, "reborn", "cat", "w");
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats(&server, "reborn")["waiting_workers"].as_u64() != Some(1) {
        assert!(Instant::now() < deadline, "the worker never waited");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on a child this test started.
    unsafe { libc::kill(w.0.id() as i32, libc::SIGSTOP) };
    std::thread::sleep(Duration::from_secs(7)); // its 4 s session expires meanwhile
    assert_eq!(stats(&server, "reborn")["waiting_workers"].as_u64(), Some(0), "the expired session's waiter went");
    unsafe { libc::kill(w.0.id() as i32, libc::SIGCONT) };
    let id = run(&server, &["push", "--queue", "reborn", "still here"]).trim().to_string();
    assert_eq!(run(&server, &["result", "--queue", "reborn", &id, "--wait", "20s"]), "still here");
    assert!(w.0.try_wait().unwrap().is_none(), "the worker is still running");
}
