//! Test harness: starts a real server process on a free loopback port and talks to it,
//! either through the third-party `zookeeper-client` crate or byte for byte.
//!
//! By default the server is the `corral` binary of this crate. With
//! `CORRAL_TEST_TARGET=zookeeper` it is Apache ZooKeeper (the Debian `zookeeper` package,
//! `/usr/share/java/zookeeper.jar`) instead, so the same tests can be checked against the
//! real thing.
//!
//! With `CORRAL_TEST_ENSEMBLE=N` (N > 1) every server is an ensemble of N Corral members
//! instead: the `zookeeper-client` clients of [`Server::connect`] get every member in their
//! connect string, while raw connections and four-letter words go to member 1.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corral_proto::{ConnectRequest, ConnectResponse, Reader, ReplyHeader, Stat, WatcherEvent, Writer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use corral_proto;
pub use zookeeper_client as zk;

/// Which server the tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Corral,
    ZooKeeper,
}

pub fn target() -> Target {
    match std::env::var("CORRAL_TEST_TARGET").as_deref() {
        Ok("zookeeper") | Ok("zk") => Target::ZooKeeper,
        _ => Target::Corral,
    }
}

pub fn is_zookeeper() -> bool {
    target() == Target::ZooKeeper
}

/// Members per server (`CORRAL_TEST_ENSEMBLE`); 1 is a standalone server.
pub fn ensemble_size() -> usize {
    std::env::var("CORRAL_TEST_ENSEMBLE").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 1).unwrap_or(1)
}

/// Members 2..N of an ensemble: their processes and client ports.
/// Where member `id` (2 and up) of a test ensemble keeps its files.
fn dir_of(root: &tempfile::TempDir, id: usize) -> PathBuf {
    root.path().join(format!("m{id}"))
}

struct OtherMembers {
    children: Vec<Child>,
    ports: Vec<u16>,
}

impl Drop for OtherMembers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running server process, killed (and reaped) on drop.
pub struct Server {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    stderr_path: PathBuf,
    cfg_lines: Vec<String>,
    others: Option<OtherMembers>,
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// Starts a server whose zoo.cfg holds `cfg_lines` (`key=value`).
    pub fn start_with(cfg_lines: &[&str]) -> Server {
        let mut last_err = String::new();
        for _attempt in 0..4 {
            match Self::try_start(cfg_lines) {
                Ok(server) => return server,
                // An early exit may be a port stolen between probing and binding: retry
                // on a new port. Anything else (not ready in time) is a real failure.
                Err(e) => {
                    let retry = e.contains("exited") || e.contains("already in use") || e.contains("AddrInUse");
                    last_err = e;
                    if !retry {
                        break;
                    }
                }
            }
        }
        panic!("server did not start: {last_err}");
    }

    fn try_start(cfg_lines: &[&str]) -> Result<Server, String> {
        let dir = tempfile::Builder::new().prefix("corral-it-").tempdir().map_err(|e| e.to_string())?;
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).map_err(|e| e.to_string())?;
        let stderr_path = dir.path().join("server.stderr");
        let stderr = std::fs::File::create(&stderr_path).map_err(|e| e.to_string())?;
        let cfg_path = dir.path().join("zoo.cfg");

        let n = if target() == Target::Corral { ensemble_size() } else { 1 };
        // An ensemble: one set of server.N lines for every member; member 1's client
        // port is `port`. Every port is picked in one go, so none is handed out twice.
        let mut client_ports = free_ports(3 * n);
        let peer_ports = client_ports.split_off(n);
        let port = client_ports[0];
        let ensemble_lines: Vec<String> = if n > 1 {
            let mut v = vec!["initLimit=10".to_string(), "syncLimit=5".to_string()];
            v.extend((0..n).map(|i| format!("server.{}=127.0.0.1:{}:{}", i + 1, peer_ports[2 * i], peer_ports[2 * i + 1])));
            v
        } else {
            Vec::new()
        };
        let all_lines: Vec<&str> = cfg_lines.iter().copied().chain(ensemble_lines.iter().map(String::as_str)).collect();
        let cfg_lines = &all_lines[..];
        let corral_command = |port: u16, data_dir: &Path, cfg_path: &Path, id: usize| -> Result<Command, String> {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_corral"));
            cmd.arg("server").arg("--port").arg(port.to_string()).arg("--data-dir").arg(data_dir);
            // Like the ZooKeeper target, every four-letter word is enabled unless the
            // test says otherwise.
            let mut text = String::new();
            if !cfg_lines.iter().any(|l| l.trim_start().starts_with("4lw.commands.whitelist")) {
                text.push_str("4lw.commands.whitelist=*\n");
            }
            // Tests run in parallel: the AdminServer's fixed default port is for tests
            // that ask for it on a port of their own.
            text.push_str("admin.enableServer=false\n");
            for l in cfg_lines {
                text.push_str(l);
                text.push('\n');
            }
            std::fs::write(cfg_path, text).map_err(|e| e.to_string())?;
            if n > 1 {
                std::fs::write(data_dir.join("myid"), format!("{id}\n")).map_err(|e| e.to_string())?;
            }
            cmd.arg("--config").arg(cfg_path);
            Ok(cmd)
        };
        let mut others = None;
        if n > 1 {
            let mut children = Vec::new();
            for id in 2..=n {
                let d = dir_of(&dir, id);
                std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
                let log = std::fs::File::create(d.join("server.stderr")).map_err(|e| e.to_string())?;
                let mut cmd = corral_command(client_ports[id - 1], &d, &d.join("zoo.cfg"), id)?;
                cmd.stdin(Stdio::null()).stdout(Stdio::from(log.try_clone().unwrap())).stderr(Stdio::from(log));
                // SAFETY: prctl in the child before exec, as for member 1 below.
                unsafe {
                    cmd.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                        Ok(())
                    });
                }
                children.push(cmd.spawn().map_err(|e| format!("spawn failed: {e}"))?);
            }
            others = Some(OtherMembers { children, ports: client_ports[1..].to_vec() });
        }

        let mut cmd = match target() {
            Target::Corral => corral_command(port, &data_dir, &cfg_path, 1)?,
            Target::ZooKeeper => zookeeper_command(port, &data_dir, &cfg_path, cfg_lines)?,
        };
        cmd.stdin(Stdio::null()).stdout(Stdio::from(stderr.try_clone().unwrap())).stderr(Stdio::from(stderr));
        // If the test process dies without running destructors, take the server with it.
        // The server never outlives the test thread that made it, so the per-thread
        // semantics of PDEATHSIG are what we want.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| format!("spawn failed: {e}"))?;
        let mut server = Server {
            child,
            port,
            dir,
            stderr_path,
            cfg_lines: cfg_lines.iter().map(|s| s.to_string()).collect(),
            others,
        };
        // An ensemble on a loaded machine (every test of a binary starts one) may take
        // longer to elect its leader.
        let deadline = Instant::now() + if n > 1 { 3 * READY_TIMEOUT } else { READY_TIMEOUT };
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("server exited with {status} before it was ready; stderr:\n{}", server.stderr()));
            }
            // Another member that exited (a quorum or election port taken between probing
            // and binding, say) is retried on new ports too.
            if let Some(o) = &mut server.others {
                for (i, c) in o.children.iter_mut().enumerate() {
                    if let Ok(Some(status)) = c.try_wait() {
                        let log = std::fs::read_to_string(dir_of(&server.dir, i + 2).join("server.stderr")).unwrap_or_default();
                        return Err(format!("member {} exited with {status} before it was ready; stderr:\n{log}", i + 2));
                    }
                }
            }
            if server.ready() {
                break;
            }
            if Instant::now() > deadline {
                let mut err = format!("server not ready in time; stderr:\n{}", server.stderr());
                for id in 2..=n {
                    let log = std::fs::read_to_string(dir_of(&server.dir, id).join("server.stderr")).unwrap_or_default();
                    err.push_str(&format!("\nmember {id}'s stderr:\n{log}"));
                }
                return Err(err);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Someone else may have answered on a stolen port; our child must still be alive.
        std::thread::sleep(Duration::from_millis(20));
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(format!("server exited with {status} right after startup; stderr:\n{}", server.stderr()));
        }
        Ok(server)
    }

    fn ready(&self) -> bool {
        if let Some(o) = &self.others {
            // Every member serves sessions (a leader is established).
            return std::iter::once(self.port)
                .chain(o.ports.iter().copied())
                .all(|p| blocking_handshake_ok(&format!("127.0.0.1:{p}")));
        }
        if four_letter_at(&self.addr(), "ruok").ok().as_deref() != Some("imok") {
            return false;
        }
        if target() == Target::ZooKeeper {
            // ZooKeeper answers imok before it serves sessions: wait for a real handshake.
            return blocking_handshake_ok(&self.addr());
        }
        true
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The connect string naming every member (just [`Server::addr`] when standalone).
    pub fn hosts(&self) -> String {
        let others = self.others.as_ref().map(|o| o.ports.clone()).unwrap_or_default();
        std::iter::once(self.port).chain(others).map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
    }

    pub fn socket_addr(&self) -> SocketAddr {
        self.addr().parse().unwrap()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for the server process (the first member) to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the server wrote to stderr (and stdout) so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// A client with the crate's defaults.
    pub async fn connect(&self) -> zk::Client {
        self.connect_with(zk::Client::connector()).await
    }

    pub async fn connect_with(&self, connector: zk::Connector) -> zk::Client {
        match tokio::time::timeout(Duration::from_secs(15), connector.connect(&self.hosts())).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => panic!("connect to {} failed: {e}; server stderr tail:\n{}", self.hosts(), self.stderr_tail()),
            Err(_) => panic!("connect to {} timed out; server stderr tail:\n{}", self.hosts(), self.stderr_tail()),
        }
    }

    pub fn stderr_tail(&self) -> String {
        let s = self.stderr();
        let start = s.len().saturating_sub(4000);
        let mut i = start;
        while !s.is_char_boundary(i) {
            i += 1;
        }
        s[i..].to_string()
    }

    /// Sends a four-letter word on a fresh TCP connection and returns the whole answer.
    pub fn four_letter(&self, cmd: &str) -> String {
        four_letter_at(&self.addr(), cmd)
            .unwrap_or_else(|e| panic!("four-letter word {cmd} failed: {e}; stderr tail:\n{}", self.stderr_tail()))
    }

    /// SIGKILL the server now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the server process is still running.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Opens a raw protocol connection with a fresh session.
    pub async fn raw_session(&self, timeout_ms: i32) -> (RawConn, ConnectResponse) {
        let mut c = RawConn::connect(&self.addr()).await;
        let resp = c.handshake(timeout_ms, 0, &[0u8; 16]).await.expect("handshake failed");
        assert!(resp.timeout_ms > 0, "new session refused: {resp:?}");
        (c, resp)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- server stderr tail ({}) ----\n{}", self.addr(), self.stderr_tail());
        }
    }
}

pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct free loopback ports: every listener stays bound until all are picked,
/// so the kernel cannot hand out one port twice.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")).collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// zoo.cfg keys that ZooKeeper reads as Java system properties rather than from the file.
fn zk_system_property(key: &str) -> Option<&'static str> {
    Some(match key {
        "extendedTypesEnabled" => "zookeeper.extendedTypesEnabled",
        "jute.maxbuffer" => "jute.maxbuffer",
        "znode.container.checkIntervalMs" => "znode.container.checkIntervalMs",
        "superDigest" => "zookeeper.DigestAuthenticationProvider.superDigest",
        "4lw.commands.whitelist" => "zookeeper.4lw.commands.whitelist",
        _ => return None,
    })
}

fn zookeeper_command(port: u16, data_dir: &Path, cfg_path: &Path, cfg_lines: &[&str]) -> Result<Command, String> {
    let jar = "/usr/share/java/zookeeper.jar";
    if !Path::new(jar).exists() {
        return Err(format!("{jar} missing: apt-get install -y zookeeper"));
    }
    let mut cfg = format!(
        "tickTime=3000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n",
        data_dir.display()
    );
    let mut props = vec!["-Dzookeeper.jmx.log4j.disable=true".to_string()];
    if !cfg_lines.iter().any(|l| l.trim_start().starts_with("4lw.commands.whitelist")) {
        props.push("-Dzookeeper.4lw.commands.whitelist=*".to_string());
    }
    for line in cfg_lines {
        let (k, v) = line.split_once('=').ok_or_else(|| format!("bad cfg line {line}"))?;
        let (k, v) = (k.trim(), v.trim());
        match k {
            // The harness owns these.
            "clientPort" | "dataDir" => continue,
            _ => {}
        }
        if let Some(p) = zk_system_property(k) {
            props.push(format!("-D{p}={v}"));
        } else {
            cfg.push_str(&format!("{k}={v}\n"));
        }
    }
    std::fs::write(cfg_path, cfg).map_err(|e| e.to_string())?;
    let mut cp = jar.to_string();
    if Path::new("/usr/share/java/slf4j-simple.jar").exists() {
        cp.push_str(":/usr/share/java/slf4j-simple.jar");
    }
    let mut cmd = Command::new("java");
    cmd.arg("-Xmx256m").arg("-XX:+UseSerialGC").arg("-XX:TieredStopAtLevel=1").args(&props).arg("-cp").arg(cp);
    cmd.arg("org.apache.zookeeper.server.ZooKeeperServerMain").arg(cfg_path);
    Ok(cmd)
}

/// Sends `cmd` on a fresh connection and reads until the server closes it.
pub fn four_letter_at(addr: &str, cmd: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(cmd.as_bytes())?;
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => {}
        // A reset after the answer still counts as the answer.
        Err(e) if !out.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => return Err(e),
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn blocking_handshake_ok(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(&connect_frame(10000, 0, &[0; 16])).is_err() {
        return false;
    }
    let mut len = [0u8; 4];
    if s.read_exact(&mut len).is_err() {
        return false;
    }
    let n = i32::from_be_bytes(len);
    if !(0..=4096).contains(&n) {
        return false;
    }
    let mut body = vec![0u8; n as usize];
    if s.read_exact(&mut body).is_err() {
        return false;
    }
    let ok = ConnectResponse::decode(&mut Reader::new(&body)).map(|r| r.timeout_ms > 0).unwrap_or(false);
    if ok {
        // Close the session so it does not linger.
        let mut w = Writer::frame();
        w.i32(1).i32(-11);
        let _ = s.write_all(&w.finish_frame());
        let _ = s.read(&mut len);
    }
    ok
}

// ---------------------------------------------------------------------------------------
// Raw protocol
// ---------------------------------------------------------------------------------------

pub mod op {
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const EXISTS: i32 = 3;
    pub const GET_DATA: i32 = 4;
    pub const SET_DATA: i32 = 5;
    pub const GET_ACL: i32 = 6;
    pub const SET_ACL: i32 = 7;
    pub const GET_CHILDREN: i32 = 8;
    pub const SYNC: i32 = 9;
    pub const PING: i32 = 11;
    pub const GET_CHILDREN2: i32 = 12;
    pub const CHECK: i32 = 13;
    pub const MULTI: i32 = 14;
    pub const CREATE2: i32 = 15;
    pub const RECONFIG: i32 = 16;
    pub const CHECK_WATCHES: i32 = 17;
    pub const REMOVE_WATCHES: i32 = 18;
    pub const CREATE_CONTAINER: i32 = 19;
    pub const CREATE_TTL: i32 = 21;
    pub const MULTI_READ: i32 = 22;
    pub const AUTH: i32 = 100;
    pub const SET_WATCHES: i32 = 101;
    pub const GET_EPHEMERALS: i32 = 103;
    pub const GET_ALL_CHILDREN_NUMBER: i32 = 104;
    pub const ADD_WATCH: i32 = 106;
    pub const WHO_AM_I: i32 = 107;
    pub const CLOSE_SESSION: i32 = -11;
}

pub mod err {
    pub const OK: i32 = 0;
    pub const UNIMPLEMENTED: i32 = -6;
    pub const BAD_ARGUMENTS: i32 = -8;
    pub const NO_NODE: i32 = -101;
    pub const NO_AUTH: i32 = -102;
    pub const BAD_VERSION: i32 = -103;
    pub const NO_CHILDREN_FOR_EPHEMERALS: i32 = -108;
    pub const NODE_EXISTS: i32 = -110;
    pub const NOT_EMPTY: i32 = -111;
    pub const SESSION_EXPIRED: i32 = -112;
    pub const INVALID_ACL: i32 = -114;
    pub const AUTH_FAILED: i32 = -115;
    pub const NO_WATCHER: i32 = -121;
    pub const RECONFIG_DISABLED: i32 = -123;
}

pub mod event {
    pub const NODE_CREATED: i32 = 1;
    pub const NODE_DELETED: i32 = 2;
    pub const NODE_DATA_CHANGED: i32 = 3;
    pub const NODE_CHILDREN_CHANGED: i32 = 4;
    pub const DATA_WATCH_REMOVED: i32 = 5;
    pub const CHILD_WATCH_REMOVED: i32 = 6;
    pub const PERSISTENT_WATCH_REMOVED: i32 = 7;
}

/// The bytes of a whole ConnectRequest frame.
pub fn connect_frame(timeout_ms: i32, session_id: i64, passwd: &[u8]) -> Vec<u8> {
    let mut w = Writer::frame();
    ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0,
        timeout_ms,
        session_id,
        passwd: passwd.to_vec(),
        read_only: Some(false),
    }
    .encode(&mut w);
    w.finish_frame()
}

/// The bytes of a whole request frame: header then body.
pub fn request_frame(xid: i32, op: i32, body: &[u8]) -> Vec<u8> {
    let mut w = Writer::frame();
    w.i32(xid).i32(op);
    w.buf.extend_from_slice(body);
    w.finish_frame()
}

/// One frame the server sent after the handshake.
#[derive(Debug, Clone)]
pub struct Reply {
    pub header: ReplyHeader,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn reader(&self) -> Reader<'_> {
        Reader::new(&self.body)
    }
    pub fn is_notification(&self) -> bool {
        self.header.xid == -1
    }
    pub fn event(&self) -> WatcherEvent {
        WatcherEvent::decode(&mut self.reader()).expect("watcher event")
    }
    pub fn stat(&self) -> Stat {
        Stat::decode(&mut self.reader()).expect("stat")
    }
}

/// A raw client connection speaking the wire protocol.
pub struct RawConn {
    pub stream: tokio::net::TcpStream,
    next_xid: i32,
    /// Notifications read while waiting for a reply.
    pub pending_events: Vec<WatcherEvent>,
}

const RAW_READ_TIMEOUT: Duration = Duration::from_secs(10);

impl RawConn {
    pub async fn connect(addr: &str) -> RawConn {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("tcp connect");
        Self::from_stream(stream)
    }

    /// Wraps a stream connected by the caller (from a chosen local address, say).
    pub fn from_stream(stream: tokio::net::TcpStream) -> RawConn {
        stream.set_nodelay(true).ok();
        RawConn { stream, next_xid: 1, pending_events: Vec::new() }
    }

    /// Sends a ConnectRequest and reads the ConnectResponse. `None` if the server closed the
    /// connection without answering.
    pub async fn handshake(&mut self, timeout_ms: i32, session_id: i64, passwd: &[u8]) -> Option<ConnectResponse> {
        self.send_bytes(&connect_frame(timeout_ms, session_id, passwd)).await.ok()?;
        let body = self.read_frame(RAW_READ_TIMEOUT).await?;
        Some(ConnectResponse::decode(&mut Reader::new(&body)).expect("connect response"))
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Sends a request with an explicit xid.
    pub async fn send(&mut self, xid: i32, op: i32, body: &[u8]) {
        self.send_bytes(&request_frame(xid, op, body)).await.expect("send request");
    }

    /// Reads one frame body; `None` on EOF, error or timeout.
    pub async fn read_frame(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let fut = async {
            let mut len = [0u8; 4];
            self.stream.read_exact(&mut len).await.ok()?;
            let n = i32::from_be_bytes(len);
            if !(0..=16 << 20).contains(&n) {
                panic!("server sent a frame of length {n}");
            }
            let mut body = vec![0u8; n as usize];
            self.stream.read_exact(&mut body).await.ok()?;
            Some(body)
        };
        tokio::time::timeout(timeout, fut).await.ok().flatten()
    }

    /// Reads the next frame as a reply (or notification).
    pub async fn read_reply(&mut self) -> Option<Reply> {
        self.read_reply_timeout(RAW_READ_TIMEOUT).await
    }

    pub async fn read_reply_timeout(&mut self, timeout: Duration) -> Option<Reply> {
        let body = self.read_frame(timeout).await?;
        let mut r = Reader::new(&body);
        let header = ReplyHeader::decode(&mut r).expect("reply header");
        Some(Reply { header, body: r.rest().to_vec() })
    }

    /// Sends a request with the next xid and waits for its reply, keeping notifications
    /// that arrive first in `pending_events`.
    pub async fn call(&mut self, op: i32, body: &[u8]) -> Reply {
        let xid = self.next_xid;
        self.next_xid += 1;
        self.send(xid, op, body).await;
        loop {
            let reply = self.read_reply().await.unwrap_or_else(|| panic!("no reply to op {op} (xid {xid})"));
            if reply.header.xid == -1 {
                self.pending_events.push(reply.event());
                continue;
            }
            assert_eq!(reply.header.xid, xid, "reply out of order for op {op}: {reply:?}");
            return reply;
        }
    }

    /// The next notification, from `pending_events` or the wire.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<WatcherEvent> {
        if !self.pending_events.is_empty() {
            return Some(self.pending_events.remove(0));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let reply = self.read_reply_timeout(left).await?;
            if reply.header.xid == -1 {
                return Some(reply.event());
            }
            // A stray ping reply or similar: skip.
        }
    }

    /// Waits until the server closes the connection (EOF or reset), skipping whatever it
    /// sends before. `false` if it is still open after `timeout`.
    pub async fn closed_by_server(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) => return true,
                Ok(Ok(_)) => continue,
                Ok(Err(_)) => return true,
            }
        }
    }

    pub async fn ping(&mut self) -> Reply {
        self.send(-2, op::PING, &[]).await;
        loop {
            let r = self.read_reply().await.expect("ping reply");
            if r.header.xid == -1 {
                self.pending_events.push(r.event());
                continue;
            }
            return r;
        }
    }

    pub async fn close_session(&mut self) -> Reply {
        self.call(op::CLOSE_SESSION, &[]).await
    }
}

// Request bodies.

pub fn body_path(path: &str) -> Vec<u8> {
    let mut w = Writer::new();
    w.string(path);
    w.into_inner()
}

pub fn body_path_watch(path: &str, watch: bool) -> Vec<u8> {
    let mut w = Writer::new();
    w.string(path).bool(watch);
    w.into_inner()
}

pub fn body_path_i32(path: &str, v: i32) -> Vec<u8> {
    let mut w = Writer::new();
    w.string(path).i32(v);
    w.into_inner()
}

/// `n` create frames in a row, xids 1 to `n`, for the nodes `<prefix>1` to `<prefix>n`
/// (data "data"), to pipeline in one write.
pub fn pipelined_creates(prefix: &str, n: i32) -> Vec<u8> {
    (1..=n).flat_map(|i| request_frame(i, op::CREATE, &body_create(&format!("{prefix}{i}"), b"data", 0))).collect()
}

pub fn body_create(path: &str, data: &[u8], flags: i32) -> Vec<u8> {
    body_create_acl(path, data, &corral_proto::Acl::open_unsafe(), flags)
}

pub fn body_create_acl(path: &str, data: &[u8], acl: &[corral_proto::Acl], flags: i32) -> Vec<u8> {
    let mut w = Writer::new();
    let req = corral_proto::request::CreateRequest {
        path: path.to_string(),
        data: Some(data.to_vec()),
        acl: acl.to_vec(),
        flags,
        ttl: 0,
    };
    corral_proto::request::encode_create(&mut w, corral_proto::OpCode::Create, &req);
    w.into_inner()
}

pub fn body_create_ttl(path: &str, data: &[u8], flags: i32, ttl: i64) -> Vec<u8> {
    let mut w = Writer::new();
    let req = corral_proto::request::CreateRequest {
        path: path.to_string(),
        data: Some(data.to_vec()),
        acl: corral_proto::Acl::open_unsafe(),
        flags,
        ttl,
    };
    corral_proto::request::encode_create(&mut w, corral_proto::OpCode::CreateTtl, &req);
    w.into_inner()
}

pub fn body_set_data(path: &str, data: &[u8], version: i32) -> Vec<u8> {
    let mut w = Writer::new();
    w.string(path).buffer(data).i32(version);
    w.into_inner()
}

pub fn body_auth(scheme: &str, auth: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    w.i32(0).string(scheme).buffer(auth);
    w.into_inner()
}

// Misc.

/// `digest` ACL id for user:password, as ZooKeeper computes it: user:base64(sha1(user:password)).
pub fn digest_id(user: &str, password: &str) -> String {
    use base64::Engine;
    use sha1::Digest;
    let hash = sha1::Sha1::digest(format!("{user}:{password}").as_bytes());
    format!("{user}:{}", base64::engine::general_purpose::STANDARD.encode(hash))
}

/// A path unique within this test process.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Polls `f` every 50 ms until it is true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for an event on a oneshot watcher, panicking after `timeout`.
pub async fn within<T>(timeout: Duration, what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(timeout, fut).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Whether a future stays pending for `d` (used to check that a watch did not fire).
pub async fn stays_pending<T>(d: Duration, fut: impl std::future::Future<Output = T>) -> bool {
    tokio::time::timeout(d, fut).await.is_err()
}

/// GET `path` from 127.0.0.1:`port`; (status line, body).
pub fn http_get(port: u16, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the HTTP port");
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    (head.lines().next().unwrap_or_default().to_string(), body.to_string())
}
