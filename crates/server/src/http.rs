//! HTTP connections that are closed once idle, for the AdminServer (`admin.idleTimeout`,
//! 30 s by default as in ZooKeeper, whose Jetty server closes a connection that has
//! neither sent nor received a byte for that long) and for `/metrics` (Jetty's default
//! of 30 s; ZooKeeper has no key for it).
//!
//! Without it a client that connects and then says nothing, or keeps a connection open
//! after its last request, would hold a socket and a task for as long as the server runs.
//!
//! A request being answered does not count as idle, however long its handler takes (as
//! in Jetty, which reads nothing then): hyper keeps reading while a handler runs, to see
//! a client hang up, so the connection counts its requests in flight ([`serve`]'s layer)
//! and its timer waits while there are any.

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::IncomingStream;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

/// Jetty's default idle timeout, which ZooKeeper's HTTP servers use.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(30);

/// Serves `app` on `listener`, closing connections that are idle for `idle` (`None`:
/// never) while no request of theirs is being answered.
pub async fn serve(listener: TcpListener, idle: Option<Duration>, app: axum::Router) -> io::Result<()> {
    let app = app.layer(axum::middleware::from_fn(answering));
    axum::serve(IdleListener::new(listener, idle), app.into_make_service_with_connect_info::<InFlight>()).await
}

/// How many of a connection's requests are being answered.
#[derive(Clone)]
struct InFlight(Arc<AtomicUsize>);

impl Connected<IncomingStream<'_, IdleListener>> for InFlight {
    fn connect_info(stream: IncomingStream<'_, IdleListener>) -> Self {
        InFlight(stream.io().in_flight.clone())
    }
}

/// Counts a request in flight until its answer is ready (or it is dropped).
struct Answering(Arc<AtomicUsize>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn answering(ConnectInfo(InFlight(n)): ConnectInfo<InFlight>, req: Request, next: Next) -> Response {
    n.fetch_add(1, Ordering::Relaxed);
    let _answering = Answering(n);
    next.run(req).await
}

/// A listener whose connections close after `idle` without a byte either way (`None`:
/// never).
pub struct IdleListener {
    inner: TcpListener,
    idle: Option<Duration>,
}

impl IdleListener {
    pub fn new(inner: TcpListener, idle: Option<Duration>) -> IdleListener {
        IdleListener { inner, idle }
    }
}

impl axum::serve::Listener for IdleListener {
    type Io = IdleIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (IdleIo, SocketAddr) {
        // axum's own accept for a TcpListener: it logs and retries errors.
        let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let idle = self.idle.map(|d| (d, Box::pin(tokio::time::sleep(d))));
        (IdleIo { inner: stream, idle, in_flight: Arc::default() }, addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection that fails with `TimedOut` when it is waited on after being idle too long.
pub struct IdleIo {
    inner: TcpStream,
    /// The timeout and when it runs out; every byte read or written moves it on.
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
    /// Requests being answered (see the module docs).
    in_flight: Arc<AtomicUsize>,
}

impl IdleIo {
    fn moved(&mut self) {
        if let Some((d, deadline)) = &mut self.idle {
            deadline.as_mut().reset(Instant::now() + *d);
        }
    }

    /// Whether the connection has been idle too long; if not, the task is woken when it
    /// will have been. While a request is being answered it is not idle.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            self.moved();
        }
        self.idle.as_mut().is_some_and(|(_, deadline)| deadline.as_mut().poll(cx).is_ready())
    }

    /// After a write was tried: bytes written move the deadline on, and a client that
    /// stops reading its answer is idle too.
    fn wrote(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    self.moved();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(Self::timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn timed_out() -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, "the connection was idle too long")
    }
}

impl AsyncRead for IdleIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.moved();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(Self::timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for IdleIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(cx, polled)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A connection through an `IdleListener`, both ends.
    async fn pair(idle: Option<Duration>) -> (IdleIo, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut l = IdleListener::new(l, idle);
        let client = TcpStream::connect(addr).await.unwrap();
        let (io, _) = axum::serve::Listener::accept(&mut l).await;
        (io, client)
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_times_out_and_traffic_keeps_one_open() {
        let (mut io, mut client) = pair(Some(Duration::from_secs(30))).await;
        let mut buf = [0u8; 16];
        // Bytes in every 20 s keep it open past 30 s...
        for i in 0..4u8 {
            tokio::time::sleep(Duration::from_secs(20)).await;
            client.write_all(&[i]).await.unwrap();
            assert_eq!(io.read(&mut buf).await.unwrap(), 1);
        }
        // ... and so do bytes out.
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_secs(20)).await;
            io.write_all(b"ok").await.unwrap();
            assert_eq!(client.read(&mut buf).await.unwrap(), 2);
        }
        let started = Instant::now();
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(30) && waited < Duration::from_secs(31), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_timeout_a_connection_waits() {
        let (mut io, mut client) = pair(None).await;
        let mut buf = [0u8; 4];
        let read = tokio::time::timeout(Duration::from_secs(3600), io.read(&mut buf)).await;
        assert!(read.is_err(), "still waiting after an hour: {read:?}");
        client.write_all(b"x").await.unwrap();
        assert_eq!(io.read(&mut buf).await.unwrap(), 1);
    }

    /// One request over a new connection, answered in full (`Connection: close`).
    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn a_request_answered_slowly_is_not_idle() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/slow", axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_millis(900)).await;
                "done"
            }))
            .route("/fast", axum::routing::get(|| async { "fast" }));
        tokio::spawn(serve(l, Some(Duration::from_millis(300)), app));
        let (slow, fast) = tokio::join!(get(addr, "/slow"), get(addr, "/fast"));
        assert!(slow.starts_with("HTTP/1.1 200") && slow.ends_with("done"), "{slow:?}");
        assert!(fast.starts_with("HTTP/1.1 200") && fast.ends_with("fast"), "{fast:?}");
        // And once answered, a kept-alive connection is idle again.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let started = Instant::now();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(20), s.read_to_string(&mut answer)).await.unwrap().unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
        assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
    }
}
