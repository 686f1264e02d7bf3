//! Crash safety: a server SIGKILLed at random moments under a stream of pipelined writes
//! keeps, after each restart, every write it acknowledged — and of the writes it did not
//! acknowledge, any that survived survived whole.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zookeeper_client as zk;

/// How many kill-and-restart rounds; CI runs the default.
fn rounds() -> usize {
    std::env::var("CORRAL_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20)
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start(dir: &Path, log: &Path) -> (Proc, String) {
    start_with(dir, log, &[]).await
}

async fn start_with(dir: &Path, log: &Path, cfg: &[&str]) -> (Proc, String) {
    // The server picks its own port (0) and logs it: a port picked here and bound later
    // could be taken meanwhile by another test's server, which would then answer for it.
    let logged_before = std::fs::metadata(log).map_or(0, |m| m.len() as usize);
    let stderr = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let cfg_file = log.with_extension("cfg");
    std::fs::write(&cfg_file, format!("admin.enableServer=false\n{}", cfg.join("\n"))).unwrap();
    // Owned by `Proc` at once, so a failed start still kills and reaps it.
    let mut child = Proc(
        Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["server", "--port", "0", "--config"])
            .arg(&cfg_file)
            .arg("--data-dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = loop {
        let text = std::fs::read(log).unwrap_or_default();
        let new = String::from_utf8_lossy(&text[logged_before.min(text.len())..]).to_string();
        if let Some(addr) = new.lines().filter(|l| l.contains("corral server listening")).find_map(listening_addr) {
            break addr;
        }
        assert!(child.0.try_wait().unwrap().is_none(), "server exited at start; log:\n{new}");
        assert!(Instant::now() < deadline, "server did not come up; log:\n{new}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The line comes once recovery is done and the port is bound: the server serves. (No
    // probe session: its close could land in the log after a test's own writes.)
    (child, addr)
}

/// The `127.0.0.1:PORT` in a "corral server listening" log line.
fn listening_addr(line: &str) -> Option<String> {
    let at = line.find("127.0.0.1:")?;
    let port: String = line[at + "127.0.0.1:".len()..].chars().take_while(char::is_ascii_digit).collect();
    (!port.is_empty()).then(|| format!("127.0.0.1:{port}"))
}

/// The log segment files under a data directory, oldest first.
fn log_segments(data: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(data.join("log"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("log."))
        .collect();
    v.sort();
    v
}

/// Reads many nodes with many requests in flight: `None` for a node that does not exist.
async fn read_all(client: &zk::Client, paths: Vec<String>) -> HashMap<String, Option<Vec<u8>>> {
    let mut out = HashMap::new();
    let mut set = tokio::task::JoinSet::new();
    for path in paths {
        let client = client.clone();
        set.spawn(async move {
            let r = match client.get_data(&path).await {
                Ok((data, _)) => Some(data),
                Err(zk::Error::NoNode) => None,
                Err(e) => panic!("reading {path}: {e}"),
            };
            (path, r)
        });
        while set.len() >= 256 {
            let (p, r) = set.join_next().await.unwrap().unwrap();
            out.insert(p, r);
        }
    }
    while let Some(res) = set.join_next().await {
        let (p, r) = res.unwrap();
        out.insert(p, r);
    }
    out
}

/// Paths written with their values, shared with the writing task.
type Writes = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Writes per round: enough that most kills land mid-stream, few enough that checking
/// everything after each restart stays quick.
const WRITES_PER_ROUND: usize = 4000;

fn value(round: usize, i: usize) -> Vec<u8> {
    format!("round {round} write {i} ").repeat(5).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let mode = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    // path -> value, for every write the server acknowledged.
    let mut acked: HashMap<String, Vec<u8>> = HashMap::new();
    let mut attempted: HashMap<String, Vec<u8>> = HashMap::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };

    for round in 0..rounds() {
        let (mut server, addr) = start(&data, &log).await;
        let client = zk::Client::connect(&addr).await.unwrap();
        // Everything acknowledged before any earlier crash is still here, whole.
        let found = read_all(&client, acked.keys().chain(attempted.keys()).cloned().collect()).await;
        for (path, v) in &acked {
            match &found[path] {
                Some(got) => assert_eq!(got, v, "round {round}: {path} changed"),
                None => panic!("round {round}: acknowledged {path} lost"),
            }
        }
        // An unacknowledged write may have survived, but only whole; once seen (or not)
        // after a restart it is settled: present ones must stay, absent ones never come.
        for (path, v) in attempted.drain() {
            if let Some(got) = &found[&path] {
                assert_eq!(got, &v, "round {round}: unacknowledged {path} is not whole");
                acked.insert(path, v);
            }
        }
        if round == 0 {
            client.create("/crash", b"", &mode).await.unwrap();
            acked.insert("/crash".into(), vec![]);
        }

        // Pipelined writes until the kill.
        let done: Writes = Arc::default();
        let sent: Writes = Arc::default();
        let writer = {
            let (client, done, sent, mode) = (client.clone(), done.clone(), sent.clone(), mode.clone());
            tokio::spawn(async move {
                let mut set = tokio::task::JoinSet::new();
                for i in 0.. {
                    let path = format!("/crash/r{round}-{i}");
                    let v = value(round, i);
                    sent.lock().unwrap().push((path.clone(), v.clone()));
                    let (done, client, mode) = (done.clone(), client.clone(), mode.clone());
                    set.spawn(async move {
                        if client.create(&path, &v, &mode).await.is_ok() {
                            done.lock().unwrap().push((path, v));
                        }
                    });
                    while set.len() >= 64 {
                        if set.join_next().await.is_none() {
                            break;
                        }
                    }
                    if i % 256 == 255 {
                        tokio::task::yield_now().await;
                    }
                    if i + 1 >= WRITES_PER_ROUND {
                        break;
                    }
                }
                while set.join_next().await.is_some() {}
            })
        };
        let wait_ms = 10 + rand() % 90;
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        // SIGKILL: no chance to flush anything.
        server.0.kill().unwrap();
        server.0.wait().unwrap();
        // Give replies already in the client's buffers a moment, then stop writing.
        tokio::time::sleep(Duration::from_millis(100)).await;
        writer.abort();
        let _ = writer.await;
        drop(client);
        let acked_now = done.lock().unwrap().clone();
        eprintln!("round {round}: killed after {wait_ms} ms; {} writes acknowledged", acked_now.len());
        let sent = std::mem::take(&mut *sent.lock().unwrap());

        for (p, v) in acked_now {
            attempted.remove(&p);
            acked.insert(p, v);
        }
        for (p, v) in sent {
            if !acked.contains_key(&p) {
                attempted.insert(p, v);
            }
        }
    }
    assert!(acked.len() > 100, "too few writes were acknowledged to mean anything: {}", acked.len());
}

/// Sessions are durable: after a SIGKILL and restart, a client resumes its session with
/// its id and password and keeps its ephemeral nodes; a session nobody resumes expires on
/// its normal timeout and its ephemerals go with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_restart_and_expire_on_their_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let (mut server, addr) = start(&data, &log).await;
    let eph = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    let timeout = Duration::from_secs(4);
    // Detached: dropping the client (`into_session`) must not close the session. An
    // attached client closes it from a background task, which under load could reach the
    // server before the SIGKILL and end the session for real.
    let kept = zk::Client::connector().with_session_timeout(timeout).with_detached().connect(&addr).await.unwrap();
    let lost = zk::Client::connector().with_session_timeout(timeout).connect(&addr).await.unwrap();
    kept.create("/kept", b"k", &eph).await.unwrap();
    lost.create("/lost", b"l", &eph).await.unwrap();
    let kept_session = kept.into_session();
    drop(lost);
    server.0.kill().unwrap();
    server.0.wait().unwrap();

    let (_server, addr) = start(&data, &log).await;
    let resumed = zk::Client::connector()
        .with_session_timeout(timeout)
        .with_session(kept_session)
        .connect(&addr)
        .await
        .expect("the session did not survive the restart");
    let observer = zk::Client::connect(&addr).await.unwrap();
    assert!(observer.check_stat("/lost").await.unwrap().is_some(), "ephemeral gone before its session expired");
    // Past the timeout: the session nobody resumed has expired; the resumed one lives.
    tokio::time::sleep(timeout + Duration::from_secs(2)).await;
    assert!(observer.check_stat("/lost").await.unwrap().is_none(), "ephemeral of an expired session kept");
    assert_eq!(resumed.get_data("/kept").await.unwrap().0, b"k");
}

/// `corral inspect log` prints what was written and verifies every checksum; damage makes
/// it name the file and exit 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_log_prints_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let (mut server, addr) = start(&data, &log).await;
    let client = zk::Client::connect(&addr).await.unwrap();
    let mode = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    client.create("/inspected", b"hello", &mode).await.unwrap();
    client.set_data("/inspected", b"again", None).await.unwrap();
    drop(client);
    server.0.kill().unwrap();
    server.0.wait().unwrap();

    let inspect = |json: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_corral"));
        cmd.args(["inspect", "log"]).arg(data.join("log"));
        if json {
            cmd.arg("--json");
        }
        cmd.output().unwrap()
    };
    let out = inspect(false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("createSession"), "{text}");
    assert!(text.contains("create /inspected data=5B"), "{text}");
    assert!(text.contains("setData /inspected data=5B version=1"), "{text}");
    let out = inspect(true);
    assert!(out.status.success());
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert!(lines.iter().any(|l| l.contains(r#""path":"/inspected""#) && l.contains(r#""utf8":"hello""#)), "{lines:?}");

    // Flip one byte inside the first batch's payload.
    let segment = log_segments(&data).into_iter().next().expect("a segment file");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[36 + 12 + 20] ^= 0xff;
    std::fs::write(&segment, bytes).unwrap();
    let out = inspect(false);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&segment.display().to_string()) && err.contains("checksum"), "{err}");
}

/// Snapshots are taken every so many transactions without stopping writes, old ones are
/// purged, and a restart starts from the newest one plus the log after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_taken_purged_and_used_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let cfg = ["snapCount=200", "autopurge.purgeInterval=1", "autopurge.snapRetainCount=3"];
    let (mut server, addr) = start_with(&data, &log, &cfg).await;
    let client = zk::Client::connect(&addr).await.unwrap();
    let mode = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    client.create("/s", b"", &mode).await.unwrap();
    for i in 0..2000 {
        client.create(&format!("/s/n{i}"), format!("v{i}").as_bytes(), &mode).await.unwrap();
    }
    client.set_data("/s/n7", b"changed", None).await.unwrap();
    // Snapshots come from their own thread; give it a moment to catch up.
    let snaps = data.join("snapshots");
    let deadline = Instant::now() + Duration::from_secs(20);
    let count = || std::fs::read_dir(&snaps).unwrap().flatten().filter(|e| !e.file_name().to_string_lossy().ends_with(".tmp")).count();
    while count() == 0 {
        assert!(Instant::now() < deadline, "no snapshot was written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(count() <= 3, "old snapshots were not purged: {}", count());
    drop(client);
    server.0.kill().unwrap();
    server.0.wait().unwrap();

    let (_server, addr) = start_with(&data, &log, &cfg).await;
    let client = zk::Client::connect(&addr).await.unwrap();
    let (children, _) = client.get_children("/s").await.unwrap();
    assert_eq!(children.len(), 2000);
    assert_eq!(client.get_data("/s/n7").await.unwrap().0, b"changed");
    assert_eq!(client.get_data("/s/n1999").await.unwrap().0, b"v1999");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("snapshot written"), "{text}");
    assert!(text.contains("starting from snapshot"), "the restart did not use a snapshot: {text}");

    // `corral inspect snapshot` verifies the newest one and lists its nodes.
    let mut files: Vec<_> = std::fs::read_dir(&snaps)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_none_or(|x| x != "tmp"))
        .collect();
    files.sort();
    let newest = files.last().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_corral")).args(["inspect", "snapshot"]).arg(newest).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("/s/n100 data=4B"), "{listing}");
    let mut bytes = std::fs::read(newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(newest, bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_corral")).args(["inspect", "snapshot"]).arg(newest).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("checksum"));
}

/// A torn tail — the last write half on disk when the machine died — is cut at restart,
/// with a log line saying so, and everything before it is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_cut_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let (mut server, addr) = start(&data, &log).await;
    let client = zk::Client::connect(&addr).await.unwrap();
    let mode = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    // One at a time, so each create is a batch of its own.
    for i in 0..200 {
        client.create(&format!("/t{i}"), b"0123456789", &mode).await.unwrap();
    }
    // Killed with the client still open, so /t199's create is the last batch (a close
    // would be logged after it).
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    drop(client);

    // Zero the last bytes of the last batch, as a write cut short would leave them.
    let segment = log_segments(&data).pop().expect("a segment file");
    let mut bytes = std::fs::read(&segment).unwrap();
    let end = bytes.iter().rposition(|b| *b != 0).unwrap() + 1;
    bytes[end - 8..end].fill(0);
    std::fs::write(&segment, bytes).unwrap();

    let (_server, addr) = start(&data, &log).await;
    let client = zk::Client::connect(&addr).await.unwrap();
    for i in 0..199 {
        assert!(client.check_stat(&format!("/t{i}")).await.unwrap().is_some(), "/t{i} lost");
    }
    assert!(client.check_stat("/t199").await.unwrap().is_none(), "the torn write came back");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("torn tail"), "{text}");
}

/// Unmounts a filesystem mounted for a test.
struct Mount(std::path::PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A full disk: the write that cannot be logged is never acknowledged, the server stays
/// up, reads go on, and after a restart every acknowledged write is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_writes_not_reads() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("small-disk");
    std::fs::create_dir_all(&data).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=40m", "tmpfs"]).arg(&data).status();
    if !mounted.map(|s| s.success()).unwrap_or(false) {
        eprintln!("SKIPPED: cannot mount a small tmpfs here (needs root)");
        return;
    }
    let _mount = Mount(data.clone());
    let log = dir.path().join("server.log");
    let (mut server, addr) = start(&data, &log).await;
    let mode = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let reader = zk::Client::connect(&addr).await.unwrap();
    reader.create("/before", b"kept", &mode).await.unwrap();

    let writer = zk::Client::connect(&addr).await.unwrap();
    let big = vec![7u8; 900_000];
    let mut acked = Vec::new();
    let mut refused = false;
    for i in 0..200 {
        let path = format!("/big{i}");
        match tokio::time::timeout(Duration::from_secs(10), writer.create(&path, &big, &mode)).await {
            Ok(Ok(_)) => acked.push(path),
            Ok(Err(_)) | Err(_) => {
                refused = true;
                break;
            }
        }
    }
    assert!(refused, "40 MB took {} writes of 900 kB", acked.len());
    assert!(!acked.is_empty());
    // The server is up and still answers reads on an existing session.
    assert!(server.0.try_wait().unwrap().is_none(), "the server exited");
    assert_eq!(reader.get_data("/before").await.unwrap().0, b"kept");
    assert!(reader.check_stat(&acked[0]).await.unwrap().is_some());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("cannot take writes"), "{text}");

    // After a restart (the disk still full) every acknowledged write is there.
    drop((reader, writer));
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let (_server, addr) = start(&data, &log).await;
    let client = zk::Client::connect(&addr).await.unwrap();
    for p in &acked {
        assert_eq!(client.get_data(p).await.unwrap().0.len(), big.len(), "{p}");
    }
}

/// Damage in the middle of the log — in a segment that is not the last one, so it cannot
/// be a torn write — stops startup with a message naming the file; nothing is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mid_log_corruption_stops_startup_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let (mut server, addr) = start(&data, &log).await;
    let client = zk::Client::connect(&addr).await.unwrap();
    let mode = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    // Past the 64 MiB segment size, so the log rolls over to a second segment.
    let big = vec![3u8; 900_000];
    for i in 0..80 {
        client.create(&format!("/m{i}"), &big, &mode).await.unwrap();
    }
    drop(client);
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let segments = log_segments(&data);
    assert!(segments.len() >= 2, "expected a rollover: {segments:?}");
    let first = &segments[0];
    let mut bytes = std::fs::read(first).unwrap();
    bytes[1_000_000] ^= 0x5a;
    std::fs::write(first, bytes).unwrap();

    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["server", "--port", "0", "--data-dir"])
            .arg(&data)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the server did not stop on a corrupt log")
    .unwrap();
    assert!(!out.status.success(), "the server started on a corrupt log");
    let err = String::from_utf8_lossy(&out.stderr);
    let name = first.file_name().unwrap().to_string_lossy().to_string();
    assert!(err.contains(&name) && err.contains("corrupt"), "{err}");
}
