//! The `corral server` command line: config file errors, overrides and defaults.

mod common;

use common::{free_port, free_ports};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn corral() -> Command {
    Command::new(env!("CARGO_BIN_EXE_corral"))
}


fn ruok(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"ruok").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Runs a server that must fail at startup; returns its exit code and stderr.
fn failing_start(cfg: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zoo.cfg");
    std::fs::write(&path, cfg).unwrap();
    start_with(&path)
}

#[test]
fn malformed_values_stop_startup_naming_the_line() {
    let (code, err) = failing_start("tickTime=2000\nclientPort=abc\n");
    assert_ne!(code, 0);
    assert!(err.contains("line 2") && err.contains("clientPort") && err.contains("abc"), "{err}");

    let (code, err) = failing_start("minSessionTimeout=9000\nmaxSessionTimeout=4000\n");
    assert_ne!(code, 0);
    assert!(err.to_lowercase().contains("session"), "{err}");

    let (code, err) = failing_start("4lw.commands.whitelist=ruok,nope\n");
    assert_ne!(code, 0);
    assert!(err.contains("nope"), "{err}");

    let (code, err) = failing_start("extendedTypesEnabled=maybe\n");
    assert_ne!(code, 0);
    assert!(err.contains("extendedTypesEnabled"), "{err}");

    let (code, err) = failing_start("logLevel=info,corral=nonsense\n");
    assert_eq!(code, 2);
    assert!(err.contains("log level") && err.contains("nonsense"), "{err}");
}

/// Starts a server from `cfg` with `flags`, waits until it answers ruok, and returns its
/// stderr so far.
fn stderr_once_serving(cfg: &str, flags: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zoo.cfg");
    let port = free_port();
    std::fs::write(&path, format!("{cfg}dataDir={}\nadmin.enableServer=false\n", dir.path().display())).unwrap();
    let log = std::fs::File::create(dir.path().join("stderr")).unwrap();
    let _child = Child(
        corral()
            .args(["server", "--port", &port.to_string(), "--config"])
            .arg(&path)
            .args(flags)
            .env_remove("RUST_LOG")
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while ruok(port).as_deref() != Some("imok") {
        assert!(Instant::now() < deadline, "server did not answer ruok");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::read_to_string(dir.path().join("stderr")).unwrap()
}

#[test]
fn the_log_level_and_format_come_from_the_file_or_the_flags() {
    let text = stderr_once_serving("", &[]);
    assert!(text.contains("INFO") && text.contains("listening"), "{text}");
    let text = stderr_once_serving("logLevel=warn\n", &[]);
    assert!(!text.contains("listening"), "logLevel=warn still logs info lines: {text}");
    let text = stderr_once_serving("logLevel=warn\n", &["--log-level", "info"]);
    assert!(text.contains("listening"), "--log-level does not win over the file: {text}");
    let text = stderr_once_serving("logFormat=json\n", &[]);
    let line = text.lines().find(|l| l.contains("listening")).unwrap_or_else(|| panic!("{text}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["level"], "INFO", "{line}");
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let out = corral().args(["server", "--config", "/nonexistent/zoo.cfg"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/zoo.cfg"));
}

/// Kills the child when the test ends, whatever happens.
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn flags_override_the_file_and_unknown_keys_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("from-flag");
    let cfg = dir.path().join("zoo.cfg");
    let file_port = free_port();
    std::fs::write(
        &cfg,
        format!(
            "clientPort={file_port}\ndataDir={}\npreAllocSize=65536\nnoSuchKey=1\n4lw.commands.whitelist=ruok,conf\nadmin.enableServer=false\n",
            dir.path().join("from-file").display()
        ),
    )
    .unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("stderr")).unwrap();
    let _child = Child(
        corral()
            .args(["server", "--config"])
            .arg(&cfg)
            .args(["--port", &port.to_string(), "--data-dir"])
            .arg(&data)
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while ruok(port).as_deref() != Some("imok") {
        assert!(Instant::now() < deadline, "server did not answer ruok on the --port port");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(TcpStream::connect(("127.0.0.1", file_port)).is_err(), "the file's port must not be used");
    assert!(data.is_dir(), "--data-dir was not created");
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"conf").unwrap();
    let mut conf = String::new();
    s.read_to_string(&mut conf).unwrap();
    assert!(conf.contains(&format!("clientPort={port}")), "{conf}");
    assert!(conf.contains(&format!("dataDir={}", data.display())), "{conf}");
    let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert!(stderr.contains("noSuchKey"), "unknown key not logged: {stderr}");
    assert!(stderr.contains("preAllocSize"), "unused ZooKeeper key not logged: {stderr}");
}

/// A zoo.cfg in `dir` (which is also its dataDir) with `servers` participant lines on
/// loopback, free ports throughout; returns its path.
fn ensemble_cfg(dir: &std::path::Path, servers: u64) -> std::path::PathBuf {
    let ports = free_ports(1 + 2 * servers as usize);
    let mut text = format!(
        "clientPort={}\ndataDir={}\ntickTime=2000\ninitLimit=5\nsyncLimit=2\nadmin.enableServer=false\n",
        ports[0],
        dir.display()
    );
    for id in 1..=servers as usize {
        text += &format!("server.{id}=127.0.0.1:{}:{}\n", ports[2 * id - 1], ports[2 * id]);
    }
    let path = dir.join("zoo.cfg");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `corral server --config <cfg>` to its end; returns its exit code and stderr.
fn start_with(cfg: &std::path::Path) -> (i32, String) {
    let out = corral()
        .args(["server", "--config"])
        .arg(cfg)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// An ensemble zoo.cfg starts a member, never a standalone server: alone, it waits for
/// its peers and serves no client (four-letter words say so, as ZooKeeper's do).
#[test]
fn an_ensemble_member_alone_waits_for_its_peers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ensemble_cfg(dir.path(), 3);
    std::fs::write(dir.path().join("myid"), "2\n").unwrap();
    let port: u16 = std::fs::read_to_string(&cfg).unwrap().lines().find_map(|l| l.strip_prefix("clientPort=")).unwrap().parse().unwrap();
    let _child = Child(corral().args(["server", "--config"]).arg(&cfg).stderr(Stdio::null()).spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while ruok(port).as_deref() != Some("imok") {
        assert!(Instant::now() < deadline, "the member did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"srvr").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert_eq!(out, "This ZooKeeper instance is not currently serving requests\n");
    assert!(dir.path().join("log").is_dir(), "the member opened its log");
}

#[test]
fn an_ensemble_without_myid_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ensemble_cfg(dir.path(), 3);
    let (code, err) = start_with(&cfg);
    assert_ne!(code, 0, "{err}");
    let myid = dir.path().join("myid");
    assert!(err.contains(&format!("myid file {}", myid.display())), "{err}");

    std::fs::write(&myid, "9\n").unwrap();
    let (code, err) = start_with(&cfg);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("no server.9 line"), "{err}");
}

#[test]
fn a_single_server_line_runs_standalone() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!(
            "clientPort={port}\ndataDir={}\nserver.1=127.0.0.1:{}:{}\n",
            dir.path().join("data").display(),
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    let _child = Child(
        corral()
            .args(["server", "--config"])
            .arg(&cfg)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while ruok(port).as_deref() != Some("imok") {
        assert!(Instant::now() < deadline, "a one-server zoo.cfg did not start standalone");
        std::thread::sleep(Duration::from_millis(50));
    }
}
