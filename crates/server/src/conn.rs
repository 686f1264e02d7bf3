//! One client connection: the socket, its read buffer and its writer.
//!
//! The reader decodes frames and hands requests to the core; the writer drains the
//! connection's outbound queue, batching what is ready into one write. A frame that is
//! too large or malformed closes this connection only. [`Shared`] is what the connection
//! and the core both see: when the client was last heard from (sessions are kept alive by
//! arrival, not by when the core gets round to a request), how many of its requests are
//! in flight (a bound, so one client cannot fill the core's queue), the bytes waiting to
//! be written, and a signal to drop the connection at once.

use crate::config::Config;
use crate::core::{ConnId, Handshake, Msg, Out};
use crate::fourlw;
use bytes::{Buf, BytesMut};
use corral_proto::frame::{self, FrameError};
use corral_proto::{ConnectRequest, Reader, Request, RequestHeader};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};

/// Requests of one connection that may wait for the core at once (ZooKeeper throttles a
/// connection at 1000 outstanding requests too).
pub const MAX_IN_FLIGHT: usize = 1000;

/// A request header: xid and opcode.
const REQUEST_HEADER_BYTES: usize = 8;

/// State a connection task shares with the core.
pub struct Shared {
    /// The instant `last_heard_ms` counts from.
    pub base: Instant,
    /// When the last frame arrived, in ms since `base`.
    pub last_heard_ms: AtomicU64,
    /// Permits for requests in flight; the core gives one back per request handled.
    pub in_flight: Semaphore,
    /// Encoded bytes queued for the writer and not yet written.
    pub queued_bytes: AtomicUsize,
    /// Drop the connection now, without flushing.
    pub kill: Notify,
}

impl Shared {
    fn new(base: Instant) -> Shared {
        Shared {
            base,
            last_heard_ms: AtomicU64::new(base.elapsed().as_millis() as u64),
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
            queued_bytes: AtomicUsize::new(0),
            kill: Notify::new(),
        }
    }

    /// Requests read from this connection and not answered yet.
    pub fn outstanding(&self) -> usize {
        MAX_IN_FLIGHT.saturating_sub(self.in_flight.available_permits())
    }

    fn touch(&self) {
        self.last_heard_ms.store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub fn last_heard(&self) -> Instant {
        self.base + std::time::Duration::from_millis(self.last_heard_ms.load(Ordering::Relaxed))
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("malformed {0}: {1}")]
    Decode(&'static str, corral_proto::DecodeError),
    #[error("server is shutting down")]
    CoreGone,
}

/// Reads until a whole frame is buffered; `Ok(None)` on a clean EOF between frames.
async fn read_frame(
    sock: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<BytesMut>, ConnError> {
    loop {
        if let Some(n) = frame::check(buf, max)? {
            buf.advance(4);
            return Ok(Some(buf.split_to(n)));
        }
        if sock.read_buf(buf).await? == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
}

async fn writer(mut sock: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Out>, shared: Arc<Shared>) {
    let mut batch = Vec::with_capacity(16 * 1024);
    'outer: while let Some(first) = rx.recv().await {
        let mut close = false;
        let mut next = Some(first);
        while let Some(item) = next {
            match item {
                Out::Frame(f) => batch.extend_from_slice(&f),
                Out::Close => {
                    close = true;
                    break;
                }
            }
            next = if batch.len() < 256 * 1024 { rx.try_recv().ok() } else { None };
        }
        if !batch.is_empty() && sock.write_all(&batch).await.is_err() {
            break 'outer;
        }
        shared.queued_bytes.fetch_sub(batch.len(), Ordering::Relaxed);
        batch.clear();
        if close {
            break;
        }
    }
    let _ = sock.shutdown().await;
}

pub async fn serve(
    stream: TcpStream,
    addr: SocketAddr,
    conn: ConnId,
    base: Instant,
    cfg: Arc<Config>,
    core: mpsc::Sender<Msg>,
) {
    let _ = stream.set_nodelay(true);
    let shared = Arc::new(Shared::new(base));
    if core.send(Msg::Opened { conn, addr, shared: shared.clone() }).await.is_err() {
        return;
    }
    if let Err(e) = run(stream, addr, conn, &cfg, &core, &shared).await {
        tracing::debug!(client = %addr, error = %e, "connection closed");
    }
    let _ = core.send(Msg::Closed { conn }).await;
}

async fn run(
    stream: TcpStream,
    addr: SocketAddr,
    conn: ConnId,
    cfg: &Config,
    core: &mpsc::Sender<Msg>,
    shared: &Arc<Shared>,
) -> Result<(), ConnError> {
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = BytesMut::with_capacity(8 * 1024);
    // Until the handshake is done, a stopping server may cut the connection at any point
    // (a client that connected and sent nothing must not hold up a shutdown).
    let handshake = async {
        while buf.len() < 4 {
            if rd.read_buf(&mut buf).await? == 0 {
                return Ok(None);
            }
        }
        if let Some(cmd) = fourlw::parse(&buf[..4]) {
            let text = if cfg.four_letter_whitelist.allows(cmd) {
                let mut word = cmd.to_string();
                if cmd == "stmk" {
                    // The new mask follows as 8 bytes.
                    while buf.len() < 12 {
                        if rd.read_buf(&mut buf).await? == 0 {
                            return Ok(None);
                        }
                    }
                    word = format!("stmk {}", i64::from_be_bytes(buf[4..12].try_into().expect("8 bytes")));
                }
                let (tx, rx) = oneshot::channel();
                core.send(Msg::FourLetter { cmd: word, reply: tx }).await.map_err(|_| ConnError::CoreGone)?;
                rx.await.map_err(|_| ConnError::CoreGone)?
            } else {
                format!("{cmd} is not executed because it is not in the whitelist.\n")
            };
            wr.write_all(text.as_bytes()).await?;
            wr.shutdown().await?;
            return Ok(None);
        }

        let Some(body) = read_frame(&mut rd, &mut buf, cfg.max_frame_bytes).await? else { return Ok(None) };
        let req = ConnectRequest::decode(&mut Reader::new(&body)).map_err(|e| ConnError::Decode("connect request", e))?;
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (tx, rx) = oneshot::channel();
        core.send(Msg::Connect { conn, addr, req, out: out_tx, reply: tx }).await.map_err(|_| ConnError::CoreGone)?;
        // The handshake answer goes out before anything the core queues for this session.
        match rx.await.map_err(|_| ConnError::CoreGone)? {
            Handshake::Accepted(resp) => wr.write_all(&resp).await?,
            Handshake::Refused(resp) => {
                if let Some(resp) = resp {
                    wr.write_all(&resp).await?;
                }
                let _ = wr.shutdown().await;
                return Ok(None);
            }
        }
        Ok::<_, ConnError>(Some(out_rx))
    };
    let out_rx = tokio::select! {
        done = handshake => match done? {
            Some(out_rx) => out_rx,
            None => return Ok(()),
        },
        _ = shared.kill.notified() => return Ok(()),
    };
    let mut writer = tokio::spawn(writer(wr, out_rx, shared.clone()));

    let reading = async {
        while let Some(body) = read_frame(&mut rd, &mut buf, cfg.max_frame_bytes).await? {
            shared.touch();
            let mut r = Reader::new(&body);
            let hdr = RequestHeader::decode(&mut r).map_err(|e| ConnError::Decode("request header", e))?;
            let req = Request::decode(hdr.op, &mut r);
            let unknown = matches!(req, Err(corral_proto::DecodeError::UnknownOp(_)));
            // The body after the header, kept (without a copy) for a learner to forward.
            let raw = body.freeze().slice(REQUEST_HEADER_BYTES..);
            shared.in_flight.acquire().await.map_err(|_| ConnError::CoreGone)?.forget();
            core.send(Msg::Request { conn, xid: hdr.xid, op: hdr.op, req, raw }).await.map_err(|_| ConnError::CoreGone)?;
            if unknown {
                // The core answers and closes; read no further from this stream.
                std::future::pending::<()>().await;
            }
        }
        Ok::<(), ConnError>(())
    };
    tokio::select! {
        result = reading => {
            // Let the writer flush what the core already queued (a closeSession reply,
            // say); the core drops this connection's queue when told it is closed.
            let _ = core.send(Msg::Closed { conn }).await;
            let _ = writer.await;
            result
        }
        // The core closed the connection (session moved, expired or closed, or the
        // server is stopping); its replies are written and a FIN sent.
        _ = &mut writer => Ok(()),
        // The core dropped the connection without flushing (a client not reading).
        _ = shared.kill.notified() => {
            writer.abort();
            return Ok(());
        }
    }?;
    // Closing a socket with unread bytes in it sends a reset, and a reset can throw away
    // replies the client has not read yet (a client that pipelined more than it could
    // have answered at once). Read and drop what still comes, briefly, until it hangs up.
    let drain = async {
        let mut scratch = [0u8; 4096];
        while matches!(rd.read(&mut scratch).await, Ok(n) if n > 0) {}
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
    Ok(())
}
