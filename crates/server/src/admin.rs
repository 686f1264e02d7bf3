//! The AdminServer: ZooKeeper's HTTP interface for operators (`admin.serverAddress`:
//! `admin.serverPort`, default 0.0.0.0:8080, off with `admin.enableServer=false`).
//!
//! `GET /commands` lists the commands; `GET /commands/<name>` answers one as a JSON
//! object (`/commands` is `admin.commandURL`) with ZooKeeper 3.8's field names (`"command"` and `"error"` in every answer,
//! `"error": "Unknown command: <name>"` for a name it does not know), so scripts written
//! against ZooKeeper's AdminServer read Corral's too; ZooKeeper's other names for them
//! (`mntr`, `srvr`, `cons` ...) work too. Corral adds `GET /health` (200 while the
//! server's loop answers) and `GET /ready` (200 while it takes new sessions and writes;
//! 503 while an ensemble member has no leader, while stopping, or once the log failed)
//! for orchestrators' probes.

use crate::core::{ConnStats, Core, Latency, Msg};
use crate::fourlw;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use serde_json::{json, Map, Value};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// The commands, in ZooKeeper's order (alphabetical).
pub const COMMANDS: &[&str] = &[
    "configuration",
    "connection_stat_reset",
    "connections",
    "dirs",
    "dump",
    "environment",
    "get_trace_mask",
    "hash",
    "initial_configuration",
    "is_read_only",
    "last_snapshot",
    "leader",
    "monitor",
    "observer_connection_stat_reset",
    "observers",
    "ruok",
    "server_stats",
    "set_trace_mask",
    "stat_reset",
    "stats",
    "system_properties",
    "voting_view",
    "watch_summary",
    "watches",
    "watches_by_path",
    "zabstate",
];

/// ZooKeeper's other names for its commands (the four-letter words and a few more); the
/// answer's `"command"` is the primary name.
const ALIASES: &[(&str, &str)] = &[
    ("crst", "connection_stat_reset"),
    ("conf", "configuration"),
    ("config", "configuration"),
    ("cons", "connections"),
    ("env", "environment"),
    ("envi", "environment"),
    ("gtmk", "get_trace_mask"),
    ("icfg", "initial_configuration"),
    ("isro", "is_read_only"),
    ("lsnp", "last_snapshot"),
    ("lead", "leader"),
    ("mntr", "monitor"),
    ("orst", "observer_connection_stat_reset"),
    ("stmk", "set_trace_mask"),
    ("srvr", "server_stats"),
    ("stat", "stats"),
    ("srst", "stat_reset"),
    ("obsr", "observers"),
    ("sysp", "system_properties"),
    ("wchc", "watches"),
    ("wchs", "watch_summary"),
    ("wchp", "watches_by_path"),
];

/// Commands that answer while the server is not serving (ZooKeeper's list).
const WITHOUT_SERVING: &[&str] =
    &["environment", "get_trace_mask", "monitor", "set_trace_mask", "system_properties", "zabstate"];

/// The primary name of a command, if `name` is one of ZooKeeper's names for it.
pub fn command_name(name: &str) -> Option<&'static str> {
    COMMANDS
        .iter()
        .find(|c| **c == name)
        .or_else(|| ALIASES.iter().find(|(a, _)| *a == name).map(|(_, c)| c))
        .copied()
}

/// One command's answer, `"command"` and `"error"` included; `arg` is
/// `set_trace_mask`'s `traceMask`.
pub fn answer(core: &mut Core, name: &str, arg: Option<&str>) -> Value {
    let Some(cmd) = command_name(name) else {
        return json!({ "command": name, "error": format!("Unknown command: {name}") });
    };
    let mask = arg.and_then(|a| a.parse::<i64>().ok());
    let mut v = if !core.serving() && !WITHOUT_SERVING.contains(&cmd) {
        json!({ "error": fourlw::NOT_SERVING.trim_end() })
    } else if cmd == "set_trace_mask" && mask.is_none() {
        let got = arg.map(|a| format!(", got {a}")).unwrap_or_default();
        json!({ "error": format!("setTraceMask requires long traceMask argument{got}") })
    } else {
        if let (true, Some(mask)) = (cmd == "set_trace_mask", mask) {
            core.trace_mask = mask;
        }
        let mut v = body(core, cmd);
        v.as_object_mut().expect("an object").entry("error").or_insert(Value::Null);
        v
    };
    v.as_object_mut().expect("an object").insert("command".into(), cmd.into());
    v
}

fn body(core: &mut Core, cmd: &str) -> Value {
    match cmd {
        "ruok" => json!({}),
        "is_read_only" => json!({ "read_only": false }),
        "monitor" => monitor(core),
        "stats" | "server_stats" => {
            let mut v = json!({
                "version": fourlw::VERSION,
                "read_only": false,
                "server_stats": server_stats(core),
                "client_response": { "last_buffer_size": -1, "min_buffer_size": -1, "max_buffer_size": -1 },
                "node_count": fourlw::reported_node_count(core),
            });
            if cmd == "stats" {
                v["connections"] = connections(core, false);
                v["secure_connections"] = json!([]);
            }
            v
        }
        "connections" => json!({ "connections": connections(core, true), "secure_connections": [] }),
        "configuration" => {
            let cfg = &core.cfg;
            let log_dir = cfg.data_log_dir.as_ref().unwrap_or(&cfg.data_dir);
            json!({
                "client_port": cfg.client_port,
                "data_dir": cfg.data_dir.display().to_string(),
                "data_log_dir": log_dir.display().to_string(),
                "tick_time": cfg.tick_time_ms,
                "max_client_cnxns": cfg.max_client_cnxns,
                "min_session_timeout": cfg.min_session_timeout_ms,
                "max_session_timeout": cfg.max_session_timeout_ms,
                "server_id": cfg.ensemble.as_ref().map_or(0, |e| e.my_id),
                "client_port_listen_backlog": -1,
            })
        }
        "environment" => {
            let mut m = Map::new();
            for (k, v) in fourlw::environment() {
                m.insert(k.into(), v.into());
            }
            Value::Object(m)
        }
        "dirs" => {
            let (data, log) = fourlw::dir_sizes(&core.cfg);
            json!({ "datadir_size": data, "logdir_size": log })
        }
        "watch_summary" => {
            let w = &core.tree.watches;
            json!({ "num_connections": w.session_count(), "num_paths": w.path_count(), "num_total_watches": w.count() })
        }
        "watches" => {
            let m: Map<String, Value> =
                core.tree.watches.by_session().into_iter().map(|(s, paths)| (s.to_string(), json!(paths))).collect();
            json!({ "session_id_to_watched_paths": m })
        }
        "watches_by_path" => {
            let m: Map<String, Value> =
                core.tree.watches.by_path().into_iter().map(|(p, sessions)| (p, json!(sessions))).collect();
            json!({ "path_to_session_ids": m })
        }
        "dump" => {
            let now = std::time::Instant::now();
            let mut expiry: std::collections::BTreeMap<u128, Vec<i64>> = Default::default();
            for (id, s) in &core.sessions {
                let left = s.expires_at.saturating_duration_since(now).as_millis();
                expiry.entry(left).or_default().push(*id);
            }
            let expiry: Map<String, Value> = expiry.into_iter().map(|(ms, ids)| (ms.to_string(), json!(ids))).collect();
            let ephemerals: Map<String, Value> = core
                .sessions
                .keys()
                .filter_map(|id| {
                    let paths: Vec<&String> = core.tree.ephemerals_of(*id).collect();
                    (!paths.is_empty()).then(|| (id.to_string(), json!(paths)))
                })
                .collect();
            json!({ "expiry_time_to_session_ids": expiry, "session_id_to_ephemeral_paths": ephemerals })
        }
        "get_trace_mask" => json!({ "tracemask": core.trace_mask }),
        "set_trace_mask" => json!({ "tracemask": core.trace_mask }),
        "initial_configuration" => {
            json!({ "initial_configuration": redacted(core.cfg.file_text.as_deref().unwrap_or_default()) })
        }
        "system_properties" => {
            // Java's system properties have no Rust equivalent; the process's own facts
            // under the names ZooKeeper's JVM uses for them.
            let mut m = Map::new();
            for (k, v) in fourlw::environment() {
                m.insert(k.into(), v.into());
            }
            m.insert("file.separator".into(), "/".into());
            m.insert("line.separator".into(), "\n".into());
            Value::Object(m)
        }
        "stat_reset" => {
            fourlw::answer(core, "srst");
            json!({})
        }
        "connection_stat_reset" => {
            fourlw::answer(core, "crst");
            json!({})
        }
        "hash" => {
            let (zxid, digest) = core.digest();
            json!({ "digests": [{ "zxid": zxid, "digest": digest }] })
        }
        "last_snapshot" => {
            // -1 for both without a snapshot, as ZooKeeper.
            let (zxid, secs) = last_snapshot(core).unwrap_or((-1, -1));
            json!({ "zxid": format!("{zxid:x}"), "timestamp": secs })
        }
        "leader" => crate::ensemble::leader_json(core),
        "voting_view" => crate::ensemble::voting_view_json(core),
        "zabstate" => crate::ensemble::zabstate_json(core),
        "observers" => crate::ensemble::observers_json(core),
        "observer_connection_stat_reset" => json!({}),
        other => unreachable!("{other} is listed but not answered"),
    }
}

/// `mntr`'s rows as one object: ZooKeeper's names without the `zk_` prefix, numbers as
/// numbers.
fn monitor(core: &mut Core) -> Value {
    let text = fourlw::monitor_text(core);
    let m: Map<String, Value> = text
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| {
            let k = k.strip_prefix("zk_").unwrap_or(k).to_string();
            let v = match (v.parse::<i64>(), v.parse::<f64>()) {
                (Ok(i), _) => json!(i),
                (_, Ok(f)) => json!(f),
                _ => json!(v),
            };
            (k, v)
        })
        .collect();
    Value::Object(m)
}

fn latency_fields(l: &Latency) -> (f64, u64, u64) {
    ((l.avg() * 10000.0).round() / 10000.0, l.max_ms, l.min_ms)
}

fn server_stats(core: &Core) -> Value {
    let (avg, max, min) = latency_fields(&core.latency);
    let (data, log) = fourlw::dir_sizes(&core.cfg);
    json!({
        "packets_sent": core.packets_sent,
        "packets_received": core.packets_received,
        "fsync_threshold_exceed_count": 0,
        "client_response_stats": { "last_buffer_size": -1, "min_buffer_size": -1, "max_buffer_size": -1 },
        "data_dir_size": data,
        "log_dir_size": log,
        "provider_null": false,
        "server_state": core.mode_name(),
        "last_processed_zxid": core.tree.last_zxid(),
        "outstanding_requests": core.outstanding_requests(),
        "avg_latency": avg,
        "max_latency": max,
        "min_latency": min,
        "num_alive_client_connections": core.conns.len(),
        "uptime": core.started.elapsed().as_millis() as u64,
        "auth_failed_count": core.auth_failed,
        "non_mtlsremote_conn_count": 0,
        "non_mtlslocal_conn_count": 0,
    })
}

fn connections(core: &Core, detail: bool) -> Value {
    let mut conns: Vec<_> = core.conns.iter().collect();
    conns.sort_by_key(|(id, _)| **id);
    let list: Vec<Value> = conns
        .into_iter()
        .map(|(_, c)| {
            let s: &ConnStats = &c.stats;
            let mut v = json!({
                "remote_socket_address": c.addr.to_string(),
                "interest_ops": 1,
                "outstanding_requests": c.shared.outstanding(),
                "packets_received": s.received,
                "packets_sent": s.sent,
            });
            if let (true, Some(id)) = (detail, c.session) {
                let timeout = core.sessions.get(&id).map_or(0, |s| s.timeout_ms);
                let (avg, max, min) = latency_fields(&s.latency);
                let extra = json!({
                    "session_id": id,
                    "last_operation": s.last_op,
                    "established": s.established_ms,
                    "session_timeout": timeout,
                    "last_cxid": s.last_cxid,
                    "last_zxid": s.last_zxid,
                    "last_latency": s.latency.last_ms,
                    "min_latency": min,
                    "avg_latency": avg as u64,
                    "max_latency": max,
                });
                v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            }
            v
        })
        .collect();
    json!(list)
}

/// The newest snapshot's zxid and its file's modification time (seconds since the epoch).
fn last_snapshot(core: &Core) -> Option<(i64, i64)> {
    let dir = crate::snapshot_dir(&core.cfg);
    let (zxid, path) = corral_storage::snapshot::list(&dir).ok()?.pop()?;
    let secs = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(-1, |d| d.as_secs() as i64);
    Some((zxid, secs))
}

/// zoo.cfg's text with the super user's password hash blanked out (ZooKeeper takes it
/// as a system property, so its `initial_configuration` never shows it).
fn redacted(text: &str) -> String {
    text.lines()
        .map(|l| {
            let key = l.split('=').next().unwrap_or_default().trim();
            if key == "superDigest" || key == "DigestAuthenticationProvider.superDigest" {
                format!("{key}=<hidden>")
            } else {
                l.to_string()
            }
        })
        .flat_map(|l| [l, "\n".to_string()])
        .collect()
}

/// Serves the AdminServer on `listener`, asking the core for each answer.
/// `url` is `admin.commandURL` (`/commands` by default); a connection idle for `idle`
/// (`admin.idleTimeout`) is closed.
pub async fn serve(listener: TcpListener, core: mpsc::Sender<Msg>, url: String, idle: Option<Duration>) {
    let app = axum::Router::new()
        .route(&url, axum::routing::get(list))
        .route(&format!("{url}/"), axum::routing::get(list))
        .route(&format!("{url}/{{name}}"), axum::routing::get(command))
        .route("/health", axum::routing::get(health))
        .route("/ready", axum::routing::get(ready))
        .with_state(core);
    if let Err(e) = crate::http::serve(listener, idle, app).await {
        tracing::error!(error = %e, "the admin server stopped");
    }
}

async fn ask(core: &mpsc::Sender<Msg>, cmd: &str, arg: Option<String>) -> Option<Value> {
    let (reply, answer) = oneshot::channel();
    core.send(Msg::Admin { cmd: cmd.to_string(), arg, reply }).await.ok()?;
    answer.await.ok()
}

async fn list(uri: axum::http::Uri) -> Html<String> {
    let base = uri.path().trim_end_matches('/');
    Html(COMMANDS.iter().map(|c| format!("<a href=\"{base}/{c}\">{c}</a>\n<br/>\n")).collect())
}

async fn command(
    State(core): State<mpsc::Sender<Msg>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> impl IntoResponse {
    let arg = query.as_deref().unwrap_or_default().split('&').find_map(|kv| kv.strip_prefix("traceMask="));
    let v = ask(&core, &name, arg.map(str::to_string))
        .await
        .unwrap_or_else(|| json!({ "command": name, "error": "the server is stopping" }));
    let body = serde_json::to_string_pretty(&v).expect("JSON values serialise");
    ([(CONTENT_TYPE, "application/json")], body)
}

/// Asks the core whether it is ready; `None` if it does not answer within 5 s (stuck) or
/// is gone.
async fn ask_ready(core: &mpsc::Sender<Msg>) -> Option<bool> {
    let (reply, answer) = oneshot::channel();
    let asked = async {
        core.send(Msg::Ready { reply }).await.ok()?;
        answer.await.ok()
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), asked).await.ok().flatten()
}

/// 200 while the server's loop answers; 503 if it is gone or stuck.
async fn health(State(core): State<mpsc::Sender<Msg>>) -> impl IntoResponse {
    match ask_ready(&core).await {
        Some(_) => (StatusCode::OK, "OK\n"),
        None => (StatusCode::SERVICE_UNAVAILABLE, "not answering\n"),
    }
}

async fn ready(State(core): State<mpsc::Sender<Msg>>) -> impl IntoResponse {
    match ask_ready(&core).await {
        Some(true) => (StatusCode::OK, "ready\n"),
        Some(false) => (StatusCode::SERVICE_UNAVAILABLE, "not serving\n"),
        None => (StatusCode::SERVICE_UNAVAILABLE, "not answering\n"),
    }
}
