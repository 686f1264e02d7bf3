//! Corral's server: the network side of a ZooKeeper-compatible service.
//!
//! - [`config`]: `zoo.cfg` parsing and defaults.
//! - `conn`: one task per client connection — framing, the handshake, four-letter words,
//!   and a writer that drains the connection's outbound queue.
//! - `core`: one task that owns the tree and the sessions and answers every request in
//!   arrival order (see its docs for the ordering guarantees this gives).
//! - `fourlw`: the text of the four-letter words.
//! - `encode`: reply and notification frames.
//!
//! [`Server::bind`] then [`Server::run`] start a standalone server.

pub mod config;
mod conn;
pub mod core;
mod encode;
mod fourlw;

use crate::config::Config;
use crate::core::{Core, MemoryLog};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// How many messages may wait for the core before connection readers pause; this is what
/// pushes back on clients that send faster than the server applies.
const CORE_QUEUE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: std::path::PathBuf, source: std::io::Error },
}

pub struct Server {
    cfg: Arc<Config>,
    listener: TcpListener,
}

impl Server {
    /// Binds the client port (and creates the data directory).
    pub async fn bind(cfg: Config) -> Result<Server, ServerError> {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|source| ServerError::DataDir { path: cfg.data_dir.clone(), source })?;
        let addr = SocketAddr::new(cfg.client_port_address, cfg.client_port);
        let listener = TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?;
        Ok(Server { cfg: Arc::new(cfg), listener })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// Serves clients until the process ends.
    pub async fn run(self) {
        let (tx, rx) = mpsc::channel(CORE_QUEUE);
        let (log, durable) = MemoryLog::new();
        tokio::spawn(Core::new(self.cfg.clone(), Box::new(log)).run(rx, durable));
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
    }
}
