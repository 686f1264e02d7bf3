//! Four-letter words: the plain-text commands ZooKeeper answers on the client port.
//! Their text follows ZooKeeper 3.8's, line for line, because monitoring scripts parse it.

use crate::core::{ConnStats, Core, Latency};
use std::fmt::Write;

pub const VERSION: &str = concat!("3.9.2-corral-", env!("CARGO_PKG_VERSION"), ", built on corral");

/// Whether the four bytes that open a connection are a four-letter word ZooKeeper knows.
pub fn parse(first: &[u8]) -> Option<&'static str> {
    crate::config::ALL_FOUR_LETTER_WORDS.iter().copied().find(|w| w.as_bytes() == first)
}

/// Java prints doubles with at least one decimal; ZooKeeper rounds latency to 4 places.
fn fmt_avg(v: f64) -> String {
    let r = (v * 10000.0).round() / 10000.0;
    if r.fract() == 0.0 {
        format!("{r:.1}")
    } else {
        format!("{r}")
    }
}

fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Bytes under dataDir and under the transaction log's directory (`dirs`).
pub(crate) fn dir_sizes(cfg: &crate::config::Config) -> (u64, u64) {
    (dir_size(&cfg.data_dir), dir_size(cfg.data_log_dir.as_ref().unwrap_or(&cfg.data_dir)))
}

/// Open file descriptors and the limit on them (ZooKeeper reports both on Unix).
fn file_descriptors() -> Option<(usize, u64)> {
    let open = std::fs::read_dir("/proc/self/fd").ok()?.count();
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass; no other pointers.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    Some((open, limit.rlim_cur))
}

/// What `envi` reports, with ZooKeeper's names.
pub(crate) fn environment() -> Vec<(&'static str, String)> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let dir = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default();
    vec![
        ("zookeeper.version", VERSION.to_string()),
        ("host.name", host.trim().to_string()),
        ("os.name", std::env::consts::OS.to_string()),
        ("os.arch", std::env::consts::ARCH.to_string()),
        ("user.name", std::env::var("USER").unwrap_or_default()),
        ("user.home", std::env::var("HOME").unwrap_or_default()),
        ("user.dir", dir),
    ]
}

/// ZooKeeper counts the root twice in its node table (as "/" and ""); its reports show
/// that count, so ours do too.
pub(crate) fn reported_node_count(core: &Core) -> usize {
    core.tree.node_count() + 1
}

fn server_summary(core: &Core, out: &mut String) {
    let l = &core.latency;
    let _ = writeln!(out, "Latency min/avg/max: {}/{}/{}", l.min_ms, fmt_avg(l.avg()), l.max_ms);
    let _ = writeln!(out, "Received: {}", core.packets_received);
    let _ = writeln!(out, "Sent: {}", core.packets_sent);
    let _ = writeln!(out, "Connections: {}", core.conns.len());
    let _ = writeln!(out, "Outstanding: {}", core.outstanding_requests());
    let _ = writeln!(out, "Zxid: {:#x}", core.tree.last_zxid());
    let _ = writeln!(out, "Mode: {}", core.mode_name());
    let _ = writeln!(out, "Node count: {}", reported_node_count(core));
}

fn connection_lines(core: &Core, out: &mut String, detail: bool) {
    let mut conns: Vec<_> = core.conns.iter().collect();
    conns.sort_by_key(|(id, _)| **id);
    for (_, c) in conns {
        let s = &c.stats;
        let _ = write!(out, " /{}[1](queued={},recved={},sent={}", c.addr, c.shared.outstanding(), s.received, s.sent);
        if let (true, Some(id)) = (detail, c.session) {
            let timeout = core.sessions.get(&id).map(|s| s.timeout_ms).unwrap_or(0);
            let _ = write!(
                out,
                ",sid={id:#x},lop={},est={},to={timeout},lcxid={:#x},lzxid={:#x},lresp=0,llat={},minlat={},avglat={},maxlat={}",
                s.last_op,
                s.established_ms,
                s.last_cxid,
                s.last_zxid,
                s.latency.last_ms,
                s.latency.min_ms,
                s.latency.avg() as u64,
                s.latency.max_ms
            );
        }
        out.push_str(")\n");
    }
}

/// The text answer to an allowed four-letter word.
/// What ZooKeeper answers most words with while it has no leader to serve under.
pub const NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests\n";

pub fn answer(core: &mut Core, cmd: &str) -> String {
    let mut out = String::new();
    let cfg = &core.cfg;
    if !core.serving() && !matches!(cmd, "ruok" | "envi" | "isro") {
        return NOT_SERVING.to_string();
    }
    match cmd {
        "ruok" => out.push_str("imok"),
        "isro" => out.push_str("rw"),
        "srvr" => {
            let _ = writeln!(out, "Zookeeper version: {VERSION}");
            server_summary(core, &mut out);
        }
        "stat" => {
            let _ = writeln!(out, "Zookeeper version: {VERSION}");
            out.push_str("Clients:\n");
            connection_lines(core, &mut out, false);
            out.push('\n');
            server_summary(core, &mut out);
        }
        "cons" => {
            connection_lines(core, &mut out, true);
            out.push('\n');
        }
        "conf" => {
            let data_dir = cfg.data_dir.display().to_string();
            let log_dir = cfg.data_log_dir.as_ref().map(|p| p.display().to_string()).unwrap_or(data_dir.clone());
            let _ = writeln!(out, "clientPort={}", cfg.client_port);
            let _ = writeln!(out, "secureClientPort=-1");
            let _ = writeln!(out, "dataDir={data_dir}");
            let _ = writeln!(out, "dataDirSize={}", dir_size(&cfg.data_dir));
            let _ = writeln!(out, "dataLogDir={log_dir}");
            let _ = writeln!(out, "dataLogSize={}", dir_size(std::path::Path::new(&log_dir)));
            let _ = writeln!(out, "tickTime={}", cfg.tick_time_ms);
            let _ = writeln!(out, "maxClientCnxns={}", cfg.max_client_cnxns);
            let _ = writeln!(out, "minSessionTimeout={}", cfg.min_session_timeout_ms);
            let _ = writeln!(out, "maxSessionTimeout={}", cfg.max_session_timeout_ms);
            let _ = writeln!(out, "clientPortListenBacklog=-1");
            let _ = writeln!(out, "serverId=0");
        }
        "envi" => {
            out.push_str("Environment:\n");
            for (k, v) in environment() {
                let _ = writeln!(out, "{k}={v}");
            }
        }
        "wchs" => {
            let w = &core.tree.watches;
            let _ = writeln!(out, "{} connections watching {} paths", w.session_count(), w.path_count());
            let _ = writeln!(out, "Total watches:{}", w.count());
        }
        "dirs" => {
            let (data, log) = dir_sizes(cfg);
            let _ = writeln!(out, "datadir_size: {data}");
            let _ = writeln!(out, "logdir_size: {log}");
        }
        "mntr" => out = monitor_text(core),
        "wchc" => {
            for (session, paths) in core.tree.watches.by_session() {
                let _ = writeln!(out, "{session:#x}");
                for p in paths {
                    let _ = writeln!(out, "\t{p}");
                }
            }
            out.push('\n');
        }
        "wchp" => {
            for (path, sessions) in core.tree.watches.by_path() {
                let _ = writeln!(out, "{path}");
                for s in sessions {
                    let _ = writeln!(out, "\t{s:#x}");
                }
            }
            out.push('\n');
        }
        "crst" => {
            for c in core.conns.values_mut() {
                let est = c.stats.established_ms;
                c.stats = ConnStats { established_ms: est, last_op: "NA", last_cxid: -1, last_zxid: -1, ..Default::default() };
            }
            out.push_str("Connection stats reset.\n");
        }
        "srst" => {
            core.latency = Latency::default();
            core.packets_received = 0;
            core.packets_sent = 0;
            out.push_str("Server stats reset.\n");
        }
        "gtmk" => out.push_str(&core.trace_mask.to_string()),
        "hash" => {
            let (zxid, digest) = core.digest();
            let _ = writeln!(out, "{zxid:x}: {digest}");
        }
        stmk if stmk.starts_with("stmk ") => {
            // The connection read the 8-byte mask that follows the word.
            if let Ok(mask) = stmk[5..].parse() {
                core.trace_mask = mask;
            }
            out.push_str(&core.trace_mask.to_string());
        }
        "dump" => {
            out.push_str("SessionTracker dump:\n");
            let now = std::time::Instant::now();
            let _ = writeln!(out, "Session Sets ({})/({}):", core.sessions.len(), core.sessions.len());
            let mut sessions: Vec<_> = core.sessions.iter().collect();
            sessions.sort_by_key(|(_, s)| s.expires_at);
            for (id, s) in &sessions {
                let ms = s.expires_at.saturating_duration_since(now).as_millis();
                let _ = writeln!(out, "1 expire in {ms} ms:\n\t{id:#x}");
            }
            out.push_str("ephemeral nodes dump:\n");
            let owners: Vec<i64> = core.sessions.keys().copied().filter(|id| core.tree.ephemerals_of(*id).next().is_some()).collect();
            let _ = writeln!(out, "Sessions with Ephemerals ({}):", owners.len());
            for id in owners {
                let _ = writeln!(out, "{id:#x}:");
                for p in core.tree.ephemerals_of(id) {
                    let _ = writeln!(out, "\t{p}");
                }
            }
        }
        other => {
            // Known words this server does not answer yet (see docs/compatibility.md).
            let _ = writeln!(out, "{other} is not supported by this server.");
        }
    }
    out
}

/// `mntr`'s rows (also the AdminServer's `monitor` and `/metrics`' gauges, which answer
/// while an ensemble member has no leader, as ZooKeeper's do).
pub fn monitor_text(core: &Core) -> String {
    let mut out = String::new();
    let l = core.latency;
    let w = &core.tree.watches;
    let rows: Vec<(&str, String)> = vec![
        ("zk_version", VERSION.to_string()),
        ("zk_server_state", core.mode_name().into()),
        ("zk_ephemerals_count", core.tree.ephemeral_count().to_string()),
        ("zk_num_alive_connections", core.conns.len().to_string()),
        ("zk_avg_latency", fmt_avg(l.avg())),
        ("zk_outstanding_requests", core.outstanding_requests().to_string()),
        ("zk_znode_count", reported_node_count(core).to_string()),
        ("zk_global_sessions", core.sessions.len().to_string()),
        ("zk_packets_sent", core.packets_sent.to_string()),
        ("zk_packets_received", core.packets_received.to_string()),
        ("zk_watch_count", w.count().to_string()),
        ("zk_auth_failed_count", core.auth_failed.to_string()),
        ("zk_min_latency", l.min_ms.to_string()),
        ("zk_max_latency", l.max_ms.to_string()),
        ("zk_approximate_data_size", core.tree.data_bytes().to_string()),
        ("zk_local_sessions", "0".into()),
        ("zk_uptime", core.started.elapsed().as_millis().to_string()),
    ];
    let mut rows = rows;
    if let Some((open, max)) = file_descriptors() {
        rows.push(("zk_open_file_descriptor_count", open.to_string()));
        rows.push(("zk_max_file_descriptor_count", max.to_string()));
    }
    rows.extend(crate::ensemble::monitor_rows(core));
    for (k, v) in rows {
        let _ = writeln!(out, "{k}\t{v}");
    }
    out
}
