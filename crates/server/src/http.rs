//! HTTP connections that are closed once idle, for the AdminServer (`admin.idleTimeout`,
//! 30 s by default as in ZooKeeper, whose Jetty server closes a connection that has
//! neither sent nor received a byte for that long) and for `/metrics` (Jetty's default
//! of 30 s; ZooKeeper has no key for it).
//!
//! Without it a client that connects and then says nothing, or keeps a connection open
//! after its last request, would hold a socket and a task for as long as the server runs.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

/// Jetty's default idle timeout, which ZooKeeper's HTTP servers use.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(30);

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
        (IdleIo { inner: stream, idle }, addr)
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
}

impl IdleIo {
    fn moved(&mut self) {
        if let Some((d, deadline)) = &mut self.idle {
            deadline.as_mut().reset(Instant::now() + *d);
        }
    }

    /// Whether the connection has been idle too long; if not, the task is woken when it
    /// will have been.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.idle.as_mut().is_some_and(|(_, deadline)| deadline.as_mut().poll(cx).is_ready())
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
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    self.moved();
                }
                Poll::Ready(r)
            }
            // A client that stops reading its answer is idle too.
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(Self::timed_out())),
            Poll::Pending => Poll::Pending,
        }
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
        // Bytes every 20 s keep it open past 30 s.
        for i in 0..4u8 {
            tokio::time::sleep(Duration::from_secs(20)).await;
            client.write_all(&[i]).await.unwrap();
            assert_eq!(io.read(&mut buf).await.unwrap(), 1);
            io.write_all(b"ok").await.unwrap();
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
}
