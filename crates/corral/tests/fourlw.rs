//! Four-letter words on the client port.

mod common;

use common::*;
use zookeeper_client as zk;

fn mntr_map(text: &str) -> std::collections::HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn ruok_srvr_stat_isro() {
    let server = Server::start();
    assert_eq!(server.four_letter("ruok"), "imok");
    assert_eq!(server.four_letter("isro"), "rw");

    let srvr = server.four_letter("srvr");
    assert!(srvr.starts_with("Zookeeper version: "), "srvr: {srvr}");
    assert!(srvr.contains("Mode: standalone"), "srvr: {srvr}");
    assert!(srvr.contains("Zxid: 0x"), "srvr: {srvr}");
    assert!(srvr.contains("Node count: "), "srvr: {srvr}");
    assert!(srvr.contains("Latency min/avg/max: "), "srvr: {srvr}");

    let stat = server.four_letter("stat");
    assert!(stat.starts_with("Zookeeper version: "), "stat: {stat}");
    assert!(stat.contains("Clients:\n"), "stat: {stat}");
    assert!(stat.contains("Mode: standalone"), "stat: {stat}");
    assert!(stat.contains("Zxid: 0x"), "stat: {stat}");
}

#[tokio::test]
async fn srvr_counts_nodes_and_zxid() {
    let server = Server::start();
    let node_count = |s: &str| -> i64 {
        s.lines().find_map(|l| l.strip_prefix("Node count: ")).unwrap().trim().parse().unwrap()
    };
    let zxid = |s: &str| -> i64 {
        let hex = s.lines().find_map(|l| l.strip_prefix("Zxid: 0x")).unwrap().trim();
        i64::from_str_radix(hex, 16).unwrap()
    };
    let before = server.four_letter("srvr");
    let client = server.connect().await;
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let (stat, _) = client.create("/fourlw-a", b"x", &opts).await.unwrap();
    client.create("/fourlw-a/b", b"x", &opts).await.unwrap();
    let after = server.four_letter("srvr");
    assert_eq!(node_count(&after), node_count(&before) + 2, "before:\n{before}\nafter:\n{after}");
    assert!(zxid(&after) > stat.czxid, "zxid {:#x} <= {:#x}", zxid(&after), stat.czxid);
}

#[tokio::test]
async fn mntr_has_standard_keys() {
    let server = Server::start();
    let client = server.connect().await;
    client
        .create("/mntr", b"", &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()))
        .await
        .unwrap();
    let text = server.four_letter("mntr");
    let m = mntr_map(&text);
    for key in [
        "zk_version",
        "zk_server_state",
        "zk_znode_count",
        "zk_watch_count",
        "zk_ephemerals_count",
        "zk_approximate_data_size",
        "zk_num_alive_connections",
        "zk_outstanding_requests",
        "zk_avg_latency",
        "zk_max_latency",
        "zk_min_latency",
        "zk_packets_received",
        "zk_packets_sent",
    ] {
        assert!(m.contains_key(key), "mntr lacks {key}:\n{text}");
    }
    assert_eq!(m["zk_server_state"], "standalone");
    // /, /zookeeper, /zookeeper/quota, /zookeeper/config and /mntr: five znodes, but
    // ZooKeeper's count is one more, as its DataTree keeps the root under both "" and "/"
    // (an empty server reports 5, as `srvr`'s "Node count" does).
    assert_eq!(m["zk_znode_count"], "6", "mntr:\n{text}");
    assert!(m["zk_num_alive_connections"].parse::<i64>().unwrap() >= 1);
    // Every line is `key<TAB>value`.
    for line in text.lines().filter(|l| !l.is_empty()) {
        assert!(line.contains('\t'), "mntr line without a tab: {line:?}");
    }
}

#[tokio::test]
async fn conf_cons_envi_wchs_dirs() {
    let server = Server::start();
    let client = server.connect().await;
    client
        .create("/w", b"", &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()))
        .await
        .unwrap();
    let (_, _, _w) = client.get_and_watch_data("/w").await.unwrap();

    let conf = server.four_letter("conf");
    assert!(conf.contains(&format!("clientPort={}", server.port())), "conf:\n{conf}");
    assert!(conf.contains("dataDir="), "conf:\n{conf}");
    assert!(conf.contains("tickTime=3000"), "conf:\n{conf}");
    assert!(conf.contains("maxSessionTimeout=60000"), "conf:\n{conf}");
    assert!(conf.contains("minSessionTimeout=6000"), "conf:\n{conf}");

    let cons = server.four_letter("cons");
    // One line per connection: " /127.0.0.1:PORT[1](queued=...,recved=...,sent=...,...)".
    assert!(cons.contains("/127.0.0.1:"), "cons:\n{cons}");
    assert!(cons.contains("queued="), "cons:\n{cons}");
    assert!(cons.contains("recved="), "cons:\n{cons}");
    assert!(cons.contains(&format!("sid=0x{:x}", client.session_id().0)), "cons:\n{cons}");

    let envi = server.four_letter("envi");
    assert!(envi.starts_with("Environment:\n"), "envi:\n{envi}");
    assert!(envi.contains("zookeeper.version="), "envi:\n{envi}");
    assert!(envi.contains("host.name="), "envi:\n{envi}");

    let wchs = server.four_letter("wchs");
    assert!(wchs.contains("1 connections watching 1 paths"), "wchs:\n{wchs}");
    assert!(wchs.contains("Total watches:1"), "wchs:\n{wchs}");

    let dirs = server.four_letter("dirs");
    assert!(dirs.contains("datadir_size: "), "dirs:\n{dirs}");
    assert!(dirs.contains("logdir_size: "), "dirs:\n{dirs}");
}

#[test]
fn command_outside_whitelist_is_refused() {
    let server = Server::start_with(&["4lw.commands.whitelist=ruok"]);
    assert_eq!(server.four_letter("ruok"), "imok");
    assert_eq!(server.four_letter("mntr"), "mntr is not executed because it is not in the whitelist.\n");
    assert_eq!(server.four_letter("stat"), "stat is not executed because it is not in the whitelist.\n");
    assert_eq!(server.four_letter("cons"), "cons is not executed because it is not in the whitelist.\n");
    // ZooKeeper always allows srvr whatever the whitelist says (its own tools need it),
    // and isro only in read-only mode.
    assert!(server.four_letter("srvr").contains("Mode: standalone"));
    assert_eq!(server.four_letter("isro"), "isro is not executed because it is not in the whitelist.\n");
}

#[test]
fn whitelist_with_several_commands() {
    let server = Server::start_with(&["4lw.commands.whitelist=ruok, srvr ,isro"]);
    assert!(server.four_letter("srvr").contains("Mode: standalone"));
    assert_eq!(server.four_letter("isro"), "rw");
    assert_eq!(server.four_letter("stat"), "stat is not executed because it is not in the whitelist.\n");
}

#[test]
fn unknown_four_letter_word_closes_connection() {
    let server = Server::start();
    // Not a command and not a valid frame length either: the server just hangs up
    // (ZooKeeper reads "zzzz" as a length of 0x7a7a7a7a and drops the connection).
    let out = four_letter_at(&server.addr(), "zzzz");
    match out {
        Ok(s) => assert_eq!(s, "", "unexpected answer to zzzz"),
        Err(e) => assert!(matches!(e.kind(), std::io::ErrorKind::ConnectionReset), "{e}"),
    }
    assert_eq!(server.four_letter("ruok"), "imok");
}

#[test]
fn stmk_sets_the_mask_gtmk_reports_and_hash_prints_the_digest() {
    use std::io::{Read, Write};
    let server = Server::start();
    assert_eq!(server.four_letter("gtmk"), "306");
    let mut s = std::net::TcpStream::connect(server.addr()).unwrap();
    s.write_all(b"stmk").unwrap();
    s.write_all(&255i64.to_be_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert_eq!(out, "255");
    assert_eq!(server.four_letter("gtmk"), "255");
    let hash = server.four_letter("hash");
    let (zxid, digest) = hash.trim().split_once(": ").unwrap_or_else(|| panic!("{hash:?}"));
    assert!(i64::from_str_radix(zxid, 16).is_ok() && digest.parse::<i64>().is_ok(), "{hash:?}");
    assert_eq!(server.four_letter("hash"), hash, "nothing changed, the same digest");
}

/// `zk_outstanding_requests` counts the requests read and not yet answered: some while a
/// pipeline of writes is being worked through, none once every one is answered.
#[tokio::test]
async fn outstanding_requests_are_counted() {
    let server = Server::start();
    let mut seen = 0;
    for attempt in 0..5 {
        let mut raw = RawConn::connect(&server.addr()).await;
        raw.handshake(10_000, 0, &[0; 16]).await.expect("session");
        let n = 900;
        raw.send_bytes(&pipelined_creates(&format!("/o{attempt}-"), n)).await.unwrap();
        let addr = server.addr();
        let poll = tokio::task::spawn_blocking(move || {
            let mut most = 0u64;
            for _ in 0..200 {
                let m = mntr_map(&four_letter_at(&addr, "mntr").unwrap_or_default());
                most = most.max(m.get("zk_outstanding_requests").and_then(|v| v.parse().ok()).unwrap_or(0));
            }
            most
        });
        for i in 1..=n {
            let r = raw.read_reply().await.expect("a reply");
            assert_eq!((r.header.xid, r.header.err), (i, 0));
        }
        seen = seen.max(poll.await.unwrap());
        if seen > 0 {
            break;
        }
    }
    assert!(seen > 0, "never saw a request outstanding");
    let m = mntr_map(&server.four_letter("mntr"));
    assert_eq!(m["zk_outstanding_requests"], "0", "all answered");
}
