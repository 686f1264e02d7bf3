//! The AdminServer (zoo.cfg `admin.*`): ZooKeeper's HTTP commands as JSON, and Corral's
//! /health and /ready.

mod common;

use common::*;
use serde_json::Value;
use zookeeper_client as zk;

async fn get(port: u16, path: &str) -> (String, String) {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || http_get(port, &path)).await.unwrap()
}

async fn command(port: u16, name: &str) -> Value {
    let (status, body) = get(port, &format!("/commands/{name}")).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{name}: {status}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{name}: {e}: {body}"));
    assert_eq!(v["command"], name, "{body}");
    v
}

/// A server whose AdminServer listens on 127.0.0.1:`port`, with `more` zoo.cfg lines.
fn with_admin(port: u16, more: &[&str]) -> Server {
    let port_line = format!("admin.serverPort={port}");
    let mut lines = vec!["admin.enableServer=true", "admin.serverAddress=127.0.0.1", port_line.as_str()];
    lines.extend_from_slice(more);
    Server::start_with(&lines)
}

#[tokio::test]
async fn every_command_answers_json_with_zookeepers_fields() {
    let port = free_port();
    let server = with_admin(port, &[]);
    let client = server.connect().await;
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    client.create("/a", b"data", &open).await.unwrap();
    client.create("/e", b"", &zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all())).await.unwrap();
    let (_, _, _watch) = client.get_and_watch_data("/a").await.unwrap();
    let session = client.session_id().0;

    let m = command(port, "monitor").await;
    assert!(m["znode_count"].as_i64().unwrap() >= 7, "{m}");
    assert_eq!(m["server_state"], "standalone");
    assert_eq!(m["watch_count"], 1);
    assert_eq!(m["ephemerals_count"], 1);
    assert!(m["avg_latency"].is_number() && m["packets_received"].as_i64().unwrap() >= 3, "{m}");

    let s = command(port, "server_stats").await;
    assert_eq!(s["server_stats"]["server_state"], "standalone");
    assert_eq!(s["server_stats"]["num_alive_client_connections"], 1);
    assert!(s["server_stats"]["last_processed_zxid"].as_i64().unwrap() >= 3, "{s}");
    assert_eq!(s["read_only"], false);
    assert!(s["node_count"].as_i64().unwrap() >= 7);
    let stats = command(port, "stats").await;
    assert_eq!(stats["connections"].as_array().unwrap().len(), 1, "{stats}");

    let c = command(port, "configuration").await;
    assert_eq!(c["client_port"], server.port());
    assert_eq!(c["tick_time"], 3000);
    assert_eq!(c["server_id"], 0);

    let conns = command(port, "connections").await;
    let conns = conns["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0]["session_id"], session);
    assert!(conns[0]["remote_socket_address"].as_str().unwrap().starts_with("127.0.0.1:"));

    let w = command(port, "watch_summary").await;
    assert_eq!((w["num_connections"].as_i64(), w["num_paths"].as_i64(), w["num_total_watches"].as_i64()), (Some(1), Some(1), Some(1)));
    let w = command(port, "watches").await;
    assert_eq!(w["session_id_to_watched_paths"][session.to_string()], serde_json::json!(["/a"]), "{w}");
    let w = command(port, "watches_by_path").await;
    assert_eq!(w["path_to_session_ids"]["/a"], serde_json::json!([session]), "{w}");
    let d = command(port, "dump").await;
    assert_eq!(d["session_id_to_ephemeral_paths"][session.to_string()], serde_json::json!(["/e"]), "{d}");
    let expiring: Vec<&Value> = d["expiry_time_to_session_ids"].as_object().unwrap().values().collect();
    assert_eq!(expiring, [&serde_json::json!([session])], "{d}");

    assert_eq!(command(port, "is_read_only").await["read_only"], false);
    assert!(command(port, "dirs").await["datadir_size"].as_u64().unwrap() > 0);
    assert_eq!(command(port, "zabstate").await["zabstate"], "");
    assert!(command(port, "environment").await["zookeeper.version"].as_str().unwrap().contains("corral"));

    // The list links every command, and each answers (last: `stat_reset` and
    // `connection_stat_reset` zero the counters checked above).
    let (status, list) = get(port, "/commands").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    for name in corral_server::admin::COMMANDS {
        assert!(list.contains(&format!("href=\"/commands/{name}\"")), "{name} not listed: {list}");
        let v = command(port, name).await;
        // Standalone, `leader` says so as ZooKeeper does; everything else succeeds.
        if *name == "leader" {
            assert_eq!(v["error"], "server is not initialized");
        } else if *name == "set_trace_mask" {
            assert_eq!(v["error"], "setTraceMask requires long traceMask argument");
        } else {
            assert!(v["error"].is_null(), "{name}: {v}");
        }
    }

    let (_, body) = get(port, "/commands/set_trace_mask?traceMask=255").await;
    assert!(body.contains("\"tracemask\": 255"), "{body}");
    assert_eq!(command(port, "get_trace_mask").await["tracemask"], 255);
    let initial = command(port, "initial_configuration").await;
    assert!(initial["initial_configuration"].as_str().unwrap().contains(&format!("admin.serverPort={port}")), "{initial}");
    assert!(command(port, "system_properties").await["os.name"].is_string());

    let unknown = command(port, "nosuch").await;
    assert_eq!(unknown["error"], "Unknown command: nosuch");
    let (_, body) = get(port, "/commands/ruok%20x").await;
    assert!(body.contains("Unknown command: ruok x"), "a name with a space is not its prefix: {body}");
    let (_, body) = get(port, "/commands/set_trace_mask?traceMask=abc").await;
    assert!(body.contains("setTraceMask requires long traceMask argument, got abc"), "{body}");
    // ZooKeeper's other names answer as the command they name.
    for (alias, name) in [("mntr", "monitor"), ("srvr", "server_stats"), ("cons", "connections"), ("conf", "configuration"), ("wchs", "watch_summary"), ("lsnp", "last_snapshot")] {
        let (_, body) = get(port, &format!("/commands/{alias}")).await;
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!((v["command"].as_str(), v["error"].is_null()), (Some(name), true), "{alias}: {body}");
    }
    // No snapshot yet: -1, as ZooKeeper.
    let s = command(port, "last_snapshot").await;
    assert_eq!((s["zxid"].as_str(), s["timestamp"].as_i64()), (Some("ffffffffffffffff"), Some(-1)), "{s}");

    let (status, body) = get(port, "/health").await;
    assert_eq!(body, "OK\n");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let (status, body) = get(port, "/ready").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status} {body}");
}

#[test]
fn a_taken_admin_port_is_logged_and_the_server_runs_on() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let server = with_admin(port, &[]);
    assert_eq!(server.four_letter("ruok"), "imok");
}

/// Reads from `s` until the server closes it (or the read times out: then `None`).
fn read_until_closed(s: &mut std::net::TcpStream, within: std::time::Duration) -> Option<String> {
    use std::io::Read;
    s.set_read_timeout(Some(within)).unwrap();
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        // A reset is a close too.
        Err(e) if e.kind() != std::io::ErrorKind::ConnectionReset => None,
        _ => Some(String::from_utf8_lossy(&got).into_owned()),
    }
}

#[test]
fn admin_idle_timeout_closes_silent_and_finished_connections() {
    use std::io::Write;
    use std::time::Duration;
    let port = free_port();
    let server = with_admin(port, &["admin.idleTimeout=2000"]);
    // A connection that never says anything is closed after two seconds (timed from
    // before the connection, so from before the server's clock starts).
    let started = std::time::Instant::now();
    let mut silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let got = read_until_closed(&mut silent, Duration::from_secs(30)).expect("the server closes a silent connection");
    let after = started.elapsed();
    assert!(got.is_empty(), "{got}");
    assert!(after >= Duration::from_secs(2), "closed after {after:?}, before the idle timeout");
    // A kept-alive connection gets its answer, then is closed once idle.
    let mut kept = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(kept, "GET /commands/ruok HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let got = read_until_closed(&mut kept, Duration::from_secs(30)).expect("the server closes an idle kept-alive connection");
    assert!(got.starts_with("HTTP/1.1 200") && got.contains("\"command\": \"ruok\""), "{got}");
    // A slow client that keeps sending is not cut off: a request written a few bytes at a
    // time over well more than the timeout (3.2 s, a pause every 0.4 s) still gets its
    // answer.
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let request = "GET /commands/ruok HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    for chunk in request.as_bytes().chunks(request.len().div_ceil(8)) {
        std::thread::sleep(Duration::from_millis(400));
        slow.write_all(chunk).unwrap();
    }
    let got = read_until_closed(&mut slow, Duration::from_secs(30)).expect("an answer");
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    // The server goes on answering, and clients are not affected.
    assert_eq!(server.four_letter("ruok"), "imok");
    let (status, _) = http_get(port, "/commands/ruok");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
}

#[test]
fn admin_command_url_moves_the_commands() {
    let port = free_port();
    let _server = with_admin(port, &["admin.commandURL=/zk/admin/"]);
    let (status, body) = http_get(port, "/zk/admin/ruok");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(body.contains("\"command\": \"ruok\""), "{body}");
    let (_, list) = http_get(port, "/zk/admin");
    assert!(list.contains("href=\"/zk/admin/monitor\""), "{list}");
    let (status, _) = http_get(port, "/commands/ruok");
    assert!(status.starts_with("HTTP/1.1 404"), "the old URL still answers: {status}");
}

#[test]
fn initial_configuration_hides_the_super_digest() {
    let port = free_port();
    let _server = with_admin(port, &["superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU="]);
    let (_, body) = http_get(port, "/commands/initial_configuration");
    assert!(body.contains("superDigest=<hidden>"), "{body}");
    assert!(!body.contains("D/InIHSb7yEEbrWz8b9l71RjZJU"), "{body}");
}

/// Kills the process when the test ends.
struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A member whose peers never come has no leader: the AdminServer answers the commands
/// ZooKeeper answers without a serving server, and says "not serving" for the rest;
/// `/ready` is 503 while `/health` is 200.
#[test]
fn a_member_without_a_leader_answers_as_zookeeper_does() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(8);
    let (client, admin) = (ports[0], ports[1]);
    let mut text = format!(
        "clientPort={client}\ndataDir={}\ntickTime=2000\ninitLimit=5\nsyncLimit=2\nadmin.serverPort={admin}\n",
        dir.path().display()
    );
    for id in 1..=3 {
        text += &format!("server.{id}=127.0.0.1:{}:{}\n", ports[2 * id], ports[2 * id + 1]);
    }
    std::fs::write(dir.path().join("zoo.cfg"), text).unwrap();
    std::fs::write(dir.path().join("myid"), "1\n").unwrap();
    let _member = Killed(
        std::process::Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["server", "--config"])
            .arg(dir.path().join("zoo.cfg"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", admin)).is_err() {
        assert!(std::time::Instant::now() < deadline, "no AdminServer");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (status, _) = http_get(admin, "/ready");
    assert!(status.starts_with("HTTP/1.1 503"), "{status}");
    let (status, _) = http_get(admin, "/health");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let ask = |name: &str| -> Value { serde_json::from_str(&http_get(admin, &format!("/commands/{name}")).1).unwrap() };
    let not_serving = "This ZooKeeper instance is not currently serving requests";
    for name in ["ruok", "stats", "configuration", "voting_view", "is_read_only"] {
        assert_eq!(ask(name)["error"], not_serving, "{name}");
    }
    for name in ["environment", "get_trace_mask", "system_properties", "zabstate"] {
        assert!(ask(name)["error"].is_null(), "{name}: {}", ask(name));
    }
    let m = ask("monitor");
    assert_eq!((m["error"].is_null(), m["server_state"].as_str()), (true, Some("looking")), "{m}");
}
