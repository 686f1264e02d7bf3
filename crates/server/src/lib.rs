//! Corral's server: the network side of a ZooKeeper-compatible service.
//!
//! - [`config`]: `zoo.cfg` parsing and defaults.
//! - `conn`: one task per client connection — framing, the handshake, four-letter words,
//!   and a writer that drains the connection's outbound queue.
//! - `core`: one task that owns the tree and the sessions and answers every request in
//!   arrival order (see its docs for the ordering guarantees this gives).
//! - [`durable`]: the log-writer thread (group commit) and recovery by log replay.
//! - `fourlw`: the text of the four-letter words.
//! - `encode`: reply and notification frames.
//! - [`quorum`]: connections between ensemble members (election and quorum links), the
//!   network `corral-zab` runs on.
//! - [`replica`]: a Zab member's disk — the storage side of the Zab actions (epochs and
//!   their 1653 repair, appends, TRUNC, installing and sending snapshots).
//! - `ensemble`: an ensemble member: the core running on Zab (docs/zab.md).
//!
//! [`Server::bind`] then [`Server::run`] start a standalone server, or an ensemble member
//! when `zoo.cfg` describes an ensemble (see [`config`] and docs/zab.md).

pub mod admin;
pub mod config;
mod conn;
pub mod core;
pub mod durable;
mod encode;
mod ensemble;
mod fourlw;
pub mod http;
pub mod metrics;
pub mod quorum;
pub mod replica;

use crate::config::Config;
use crate::core::{Core, Msg};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// How many messages may wait for the core before connection readers pause; this is what
/// pushes back on clients that send faster than the server applies.
const CORE_QUEUE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "zoo.cfg describes an ensemble ({servers} servers) but this server's id was not read \
         (the myid file in dataDir)"
    )]
    NoMyId { servers: usize },
    #[error(
        "server.{id} in zoo.cfg: an ensemble member's id must be between 1 and 255 (it is the top \
         byte of the session ids the member hands out), as ZooKeeper's documentation requires"
    )]
    IdTooLarge { id: u64 },
    #[error("cannot listen for ensemble members on {addr}: {source}")]
    Peer { addr: String, source: std::io::Error },
    #[error("cannot open this member's state: {0}")]
    Replica(#[from] replica::ReplicaError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("the server's loop ended ({0}); exiting so the server can be restarted from its log")]
    LoopEnded(&'static str),
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: std::path::PathBuf, source: std::io::Error },
    #[error("cannot open the transaction log: {0}")]
    Log(#[from] corral_storage::StorageError),
    #[error("cannot recover from the transaction log: {0}")]
    Recovery(#[from] durable::RecoveryError),
}

pub struct Server {
    cfg: Arc<Config>,
    listener: TcpListener,
    /// `/metrics`, when `metricsProvider.className` asks for it.
    metrics: Option<TcpListener>,
    /// The AdminServer, unless `admin.enableServer=false` (or its port was taken).
    admin: Option<TcpListener>,
    core: Core,
    feed: Feed,
}

/// What drives the core besides its clients.
enum Feed {
    /// Standalone: the log writer's "durable through zxid" reports.
    Durable(mpsc::UnboundedReceiver<i64>),
    /// An ensemble member: messages from the other members.
    Quorum(mpsc::UnboundedReceiver<quorum::Inbound>),
}

/// Where the transaction log lives: `<dataLogDir or dataDir>/log`.
pub fn log_dir(cfg: &Config) -> std::path::PathBuf {
    cfg.data_log_dir.as_ref().unwrap_or(&cfg.data_dir).join("log")
}

/// Where snapshots live: `<dataDir>/snapshots`.
pub fn snapshot_dir(cfg: &Config) -> std::path::PathBuf {
    cfg.data_dir.join("snapshots")
}

/// Binds `/metrics`'s port if `metricsProvider.className` asks for it.
async fn bind_metrics(cfg: &Config) -> Result<Option<TcpListener>, ServerError> {
    if !cfg.metrics_enabled {
        return Ok(None);
    }
    let addr = SocketAddr::new(cfg.metrics_http_host, cfg.metrics_http_port);
    let l = TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?;
    // The bound address: port 0 asks for any free port.
    let addr = l.local_addr().unwrap_or(addr);
    tracing::info!(%addr, "serving Prometheus metrics at /metrics");
    Ok(Some(l))
}

/// Binds the AdminServer's port unless `admin.enableServer=false`. As in a ZooKeeper
/// ensemble member (a standalone ZooKeeper exits), a port that cannot be had is logged
/// and the server runs without it.
async fn bind_admin(cfg: &Config) -> Option<TcpListener> {
    if !cfg.admin_enabled {
        return None;
    }
    let addr = SocketAddr::new(cfg.admin_address.unwrap_or(cfg.client_port_address), cfg.admin_port);
    match TcpListener::bind(addr).await {
        Ok(l) => {
            let addr = l.local_addr().unwrap_or(addr);
            tracing::info!(%addr, url = %cfg.admin_command_url, "AdminServer");
            Some(l)
        }
        Err(e) => {
            tracing::warn!(%addr, error = %e, "could not start the AdminServer; running without it (admin.serverPort, or admin.enableServer=false)");
            None
        }
    }
}

impl Server {
    /// Recovers the tree from the transaction log, then binds the client port: clients
    /// can connect only once everything acknowledged before is back.
    ///
    /// A configuration that describes an ensemble starts a member (its `myid` must have
    /// been read, see [`Config::load_my_id`]); it is never run standalone by mistake.
    pub async fn bind(mut cfg: Config) -> Result<Server, ServerError> {
        if cfg.describes_ensemble() || cfg.ensemble.is_some() {
            let Some(ens) = &cfg.ensemble else { return Err(ServerError::NoMyId { servers: cfg.servers.len() }) };
            if let Some(s) = ens.servers.iter().find(|s| s.id > 255) {
                return Err(ServerError::IdTooLarge { id: s.id });
            }
            if let Some(client) = ens.me().client.clone() {
                // `server.N=...;[addr:]port` names this member's client address.
                cfg.client_port = client.port;
                if let Some(ip) = client.host.as_deref().and_then(|h| h.parse().ok()) {
                    cfg.client_port_address = ip;
                }
            }
            let cfg = Arc::new(cfg);
            for d in [&cfg.data_dir, &log_dir(&cfg), &snapshot_dir(&cfg)] {
                std::fs::create_dir_all(d).map_err(|source| ServerError::DataDir { path: d.clone(), source })?;
            }
            let started = ensemble::start(cfg.clone()).await?;
            let addr = SocketAddr::new(cfg.client_port_address, cfg.client_port);
            let listener = TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?;
            let (metrics, admin) = (bind_metrics(&cfg).await?, bind_admin(&cfg).await);
            return Ok(Server { cfg, listener, metrics, admin, core: started.core, feed: Feed::Quorum(started.inbox) });
        }
        let dir = log_dir(&cfg);
        let snap_dir = snapshot_dir(&cfg);
        for d in [&dir, &snap_dir] {
            std::fs::create_dir_all(d).map_err(|source| ServerError::DataDir { path: d.clone(), source })?;
        }
        let started = std::time::Instant::now();
        let options = corral_storage::FileLogOptions { preallocate_bytes: 16 << 20, ..Default::default() };
        // Opening the log (which verifies every segment) and loading the newest snapshot
        // read different files: do both at once. So the log's length is not known yet
        // when the snapshot is read: the snapshot interval says how long it usually is.
        let (log, snapshot) = std::thread::scope(|s| {
            let log = s.spawn(|| corral_storage::FileLog::open(&dir, options));
            let snapshot = durable::newest_snapshot(&snap_dir, |_| cfg.snap_count as usize);
            (log.join().expect("opening the log panicked"), snapshot)
        });
        let (log, report) = log?;
        let (tree, snapshot_zxid) = snapshot?;
        if let Some(torn) = &report.truncated {
            tracing::warn!("recovery: {torn} (writes that were never acknowledged)");
        }
        for f in &report.removed {
            tracing::warn!(file = %f.display(), "recovery: removed an unfinished log file");
        }
        let tree = durable::replay_log(tree, snapshot_zxid, &log)?;
        durable::release_free_memory();
        metrics::metrics().db_init_time.observe(metrics::ms(started.elapsed()));
        tracing::info!(
            records = report.records,
            segments = report.segments,
            zxid = format_args!("{:#x}", tree.last_zxid()),
            nodes = tree.node_count(),
            sessions = tree.sessions().len(),
            ms = started.elapsed().as_millis() as u64,
            "recovered from the transaction log"
        );
        let cfg = Arc::new(cfg);
        if !cfg.force_sync {
            tracing::warn!(
                "forceSync=no: writes are acknowledged WITHOUT fsync; a power failure can lose \
                 acknowledged writes. Use this for benchmarks only."
            );
        }
        let (writer, durable) = durable::spawn_writer(log, cfg.force_sync);
        let snapshotter = durable::spawn_snapshotter(
            durable::SnapshotSettings {
                snap_dir,
                log_dir: dir,
                retain: cfg.snap_retain_count as usize,
                purge_interval_hours: cfg.purge_interval_hours,
            },
            writer.purger(),
        );
        let core = Core::recovered(cfg.clone(), Box::new(writer), tree).with_snapshots(snapshotter);
        let addr = SocketAddr::new(cfg.client_port_address, cfg.client_port);
        let listener = TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?;
        let (metrics, admin) = (bind_metrics(&cfg).await?, bind_admin(&cfg).await);
        Ok(Server { cfg, listener, metrics, admin, core, feed: Feed::Durable(durable) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// Where the AdminServer listens, if it does.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Where `/metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves clients until the process ends.
    pub async fn run(self) -> Result<(), ServerError> {
        self.run_until(std::future::pending()).await
    }

    /// Serves clients until `stop` completes; then stops taking connections, answers the
    /// requests in flight, closes every connection (sessions live on: their clients move
    /// to another server, or come back after a restart) and returns. Gives up waiting
    /// for the requests in flight after 10 s. An error if the server's loop ended on its
    /// own (a bug: it panicked): the process should exit and be restarted, recovering
    /// from its log.
    pub async fn run_until(self, stop: impl std::future::Future<Output = ()>) -> Result<(), ServerError> {
        let (tx, rx) = mpsc::channel(CORE_QUEUE);
        let admin_url = self.core.cfg.admin_command_url.clone();
        let admin_idle = self.core.cfg.admin_idle_timeout();
        let mut core_task = match self.feed {
            Feed::Durable(durable) => tokio::spawn(self.core.run(rx, durable)),
            Feed::Quorum(inbox) => tokio::spawn(self.core.run_member(rx, inbox)),
        };
        if let Some(l) = self.metrics {
            tokio::spawn(metrics::serve(l, tx.clone()));
        }
        if let Some(l) = self.admin {
            tokio::spawn(admin::serve(l, tx.clone(), admin_url, admin_idle));
        }
        let core = tx.clone();
        let accept = async move {
            let base = std::time::Instant::now();
            let per_ip: Arc<Mutex<HashMap<IpAddr, u32>>> = Arc::default();
            let mut next_conn = 1u64;
            loop {
                let (stream, addr) = match self.listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: log, wait, go on.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let max = self.cfg.max_client_cnxns;
                {
                    let mut m = per_ip.lock().unwrap();
                    let n = m.entry(addr.ip()).or_insert(0);
                    if max > 0 && *n >= max {
                        tracing::warn!(client = %addr, max, "too many connections from this address; closing");
                        drop(stream);
                        continue;
                    }
                    *n += 1;
                }
                let conn = next_conn;
                next_conn += 1;
                let (cfg, core, per_ip) = (self.cfg.clone(), tx.clone(), per_ip.clone());
                tokio::spawn(async move {
                    conn::serve(stream, addr, conn, base, cfg, core).await;
                    let mut m = per_ip.lock().unwrap();
                    if let Some(n) = m.get_mut(&addr.ip()) {
                        *n -= 1;
                        if *n == 0 {
                            m.remove(&addr.ip());
                        }
                    }
                });
            }
        };
        tokio::select! {
            _ = accept => {}
            _ = stop => {}
            ended = &mut core_task => {
                let why = match ended {
                    Err(e) if e.is_panic() => "it panicked",
                    _ => "it returned",
                };
                return Err(ServerError::LoopEnded(why));
            }
        }
        let (reply, done) = oneshot::channel();
        if core.send(Msg::Shutdown { reply }).await.is_ok()
            && tokio::time::timeout(std::time::Duration::from_secs(10), done).await.is_err()
        {
            tracing::warn!("connections still open or requests in flight after 10 s; stopping anyway");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bind_refuses_member_ids_above_255() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::parse("initLimit=5\nsyncLimit=2\nserver.1=zoo1:12888:13888\nserver.300=zoo2:12888:13888\n")
            .unwrap();
        cfg.data_dir = dir.path().join("data");
        cfg.set_my_id(1).unwrap();
        let err = Server::bind(cfg).await.err().expect("an id above 255 must be refused");
        assert!(matches!(err, ServerError::IdTooLarge { id: 300 }), "{err}");
        assert!(!dir.path().join("data").exists(), "nothing may be created on disk");
    }

    #[tokio::test]
    async fn bind_refuses_an_ensemble_whose_myid_was_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::parse(
            "initLimit=5\nsyncLimit=2\nserver.1=zoo1:12888:13888\nserver.2=zoo2:12888:13888\n",
        )
        .unwrap();
        cfg.data_dir = dir.path().join("data");
        assert!(cfg.ensemble.is_none());
        let err = Server::bind(cfg).await.err().expect("an ensemble without myid must be refused");
        assert!(matches!(err, ServerError::NoMyId { servers: 2 }), "{err}");
        assert!(err.to_string().contains("the myid file in dataDir"), "{err}");
        assert!(!dir.path().join("data").exists(), "nothing may be created on disk");
    }
}
