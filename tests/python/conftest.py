"""Fixtures for Corral's Python integration tests (kazoo against a real server).

Every server is a real process on a free loopback port with its own temporary
data dir and a generated zoo.cfg.  Which server is started is chosen by the
environment:

  CORRAL_TEST_TARGET=corral     (default) the Corral binary: $CORRAL_BIN, else
                                <repo>/target/release/corral, started as
                                ``corral server --port P --data-dir D --config zoo.cfg``
  CORRAL_TEST_TARGET=zookeeper  Apache ZooKeeper (Debian package ``zookeeper``,
                                3.8) started with java + ZooKeeperServerMain.
                                This validates the suite itself against the
                                reference implementation.  $ZOOKEEPER_CLASSPATH
                                overrides the jar path(s).

  CORRAL_TEST_ENSEMBLE=N        (Corral only) every server is an ensemble of N
                                members started from one set of server.N lines;
                                clients get all members in their connect string.
                                Modules that need one server's own port (4lw,
                                config, differential) are skipped.

Fixtures:
  server          session-scoped default server shared by most tests
  server_factory  function-scoped factory: server_factory({"key": "value"}) starts
                  an extra server whose zoo.cfg has those extra keys
  zk_factory      function-scoped factory of started kazoo clients (stopped and
                  closed at teardown): zk_factory(server=None, **KazooClient kwargs)
  zk              one started client connected to the default server
  root            a unique znode path (/t-<uuid>) created for the test and removed
                  afterwards, so tests never collide on the shared server

Only processes started here are ever stopped, by their Popen handle.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from kazoo.client import KazooClient

REPO = Path(__file__).resolve().parents[2]
TARGET = os.environ.get("CORRAL_TEST_TARGET", "corral").strip().lower() or "corral"
ENSEMBLE = int(os.environ.get("CORRAL_TEST_ENSEMBLE", "0") or 0)
# Modules about one server process (its port, its zoo.cfg, its restart): not run
# against an ensemble.
SINGLE_SERVER_MODULES = {"test_admin", "test_config", "test_differential"}
READY_TIMEOUT = float(os.environ.get("CORRAL_TEST_READY_TIMEOUT", "10" if TARGET == "corral" else "40"))

# The configuration every test server gets (tests add keys through server_factory).
BASE_CFG = {
    "tickTime": "2000",
    "4lw.commands.whitelist": "*",
}

# ZooKeeper reads these as plain JVM system properties (not "zookeeper."-prefixed),
# so a zoo.cfg line alone does not reach them; they are also passed as -D flags.
ZK_PLAIN_SYSPROPS = (
    "jute.maxbuffer",
    "znode.container.checkIntervalMs",
    "znode.container.maxPerMinute",
    "znode.container.maxNeverUsedIntervalMs",
)


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """`n` distinct free loopback ports: every socket stays bound until all are
    picked, so the kernel cannot hand out one port twice."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def four_letter_word(port: int, cmd: str | bytes, timeout: float = 3.0, host: str = "127.0.0.1") -> str:
    """Send a four-letter word on a fresh connection and read until the server closes it."""
    if isinstance(cmd, str):
        cmd = cmd.encode()
    chunks = []
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(cmd)
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except socket.timeout:
            pass
    return b"".join(chunks).decode("utf-8", "replace")


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk
    return buf


def raw_connect(port: int, timeout_ms: int, close: bool = True, host: str = "127.0.0.1"):
    """Open a bare ZooKeeper session (ConnectRequest) and return the
    ConnectResponse (negotiated time_out, session_id, passwd).  With close=True
    the session is then ended with a closeSession request."""
    from kazoo.protocol.serialization import Close, Connect

    req = Connect(0, 0, timeout_ms, 0, b"\x00" * 16, False).serialize()
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(struct.pack("!i", len(req)) + req)
        (length,) = struct.unpack("!i", _recv_exact(s, 4))
        response, _ = Connect.deserialize(_recv_exact(s, length), 0)
        if close:
            body = struct.pack("!ii", 1, Close.type)
            s.sendall(struct.pack("!i", len(body)) + body)
            try:
                (length,) = struct.unpack("!i", _recv_exact(s, 4))
                _recv_exact(s, length)
            except (OSError, ConnectionError):
                pass
    return response


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05, message: str = "condition"):
    """Poll predicate() until it returns a truthy value; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # keep polling; report the last error on timeout
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            pytest.fail(f"timed out after {timeout}s waiting for {message}{detail}")
        time.sleep(interval)


def _die_with_parent():
    """preexec_fn: ask Linux to SIGKILL the server if the pytest process dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def corral_bin() -> Path:
    env = os.environ.get("CORRAL_BIN")
    return Path(env).resolve() if env else REPO / "target" / "release" / "corral"


def zookeeper_classpath() -> str:
    env = os.environ.get("ZOOKEEPER_CLASSPATH")
    if env:
        return env
    jars = ["/usr/share/java/zookeeper.jar"]  # its manifest Class-Path lists the deps
    if Path("/usr/share/java/slf4j-simple.jar").exists():
        jars.append("/usr/share/java/slf4j-simple.jar")  # log to stderr
    return ":".join(jars)


class ServerProcess:
    """One server process (Corral or Apache ZooKeeper) on 127.0.0.1:port."""

    def __init__(self, workdir: Path, cfg_extra: dict | None = None):
        self.workdir = workdir
        self.cfg_extra = {k: str(v) for k, v in (cfg_extra or {}).items()}
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.data_dir = workdir / "data"
        self.cfg_path = workdir / "zoo.cfg"
        self.log_path = workdir / "server.log"
        self.target = TARGET
        self.my_id: int | None = None  # an ensemble member's id, written to dataDir/myid

    @property
    def host_port(self) -> str:
        return f"{self.host}:{self.port}"

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "<no server log>"
        return "\n".join(lines[-n:])

    def declares_memory_only(self) -> bool:
        """Corral logs this warning while it has no persistence to its data dir."""
        return "held in memory only" in self.log_tail(500)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- starting ---------------------------------------------------------

    def _write_cfg(self, port: int) -> None:
        cfg = dict(BASE_CFG)
        cfg["clientPort"] = str(port)
        cfg["dataDir"] = str(self.data_dir)
        # Tests run in parallel: no AdminServer on its fixed default port.
        cfg["admin.enableServer"] = "false"
        if self.target == "zookeeper":
            cfg["clientPortAddress"] = "127.0.0.1"
        cfg.update(self.cfg_extra)
        self.cfg_path.write_text("".join(f"{k}={v}\n" for k, v in cfg.items()))

    def _command(self, port: int) -> list[str]:
        if self.target == "zookeeper":
            java = shutil.which("java") or "java"
            props = [
                "-Dzookeeper.admin.enableServer=false",
                "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                "-Dzookeeper.jmx.log4j.disable=true",
            ]
            for key in ZK_PLAIN_SYSPROPS:
                if key in self.cfg_extra:
                    props.append(f"-D{key}={self.cfg_extra[key]}")
            if "extendedTypesEnabled" in self.cfg_extra:
                props.append(f"-Dzookeeper.extendedTypesEnabled={self.cfg_extra['extendedTypesEnabled']}")
            return [java, "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", *props,
                    "-cp", zookeeper_classpath(),
                    "org.apache.zookeeper.server.ZooKeeperServerMain", str(self.cfg_path)]
        if self.target != "corral":
            raise pytest.UsageError(f"unknown CORRAL_TEST_TARGET={self.target!r} (corral|zookeeper)")
        binary = corral_bin()
        if not binary.exists():
            raise pytest.UsageError(
                f"Corral binary not found at {binary}; run `cargo build --release` or set CORRAL_BIN")
        return [str(binary), "server", "--port", str(port), "--data-dir", str(self.data_dir),
                "--config", str(self.cfg_path)]

    def start(self, attempts: int = 4) -> "ServerProcess":
        """Start on a fresh free port with an empty data dir."""
        return self._start(attempts, keep=False)

    def restart(self, hard: bool = False) -> "ServerProcess":
        """Stop (SIGTERM, or SIGKILL if hard) and start again on the same port and
        the same data dir."""
        if hard and self.alive():
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.stop()
        return self._start(attempts=4, keep=True)

    def _start(self, attempts: int, keep: bool) -> "ServerProcess":
        last_error = ""
        for _ in range(attempts):
            port = self.port if keep else free_port()
            self.launch(port, fresh=not keep)
            ok, last_error = self._wait_ready()
            if ok:
                return self
            self.stop()
            log_text = self.log_tail(200).lower()
            if "in use" not in log_text and "addrinuse" not in log_text:
                break  # not a port race: do not retry
            if keep:
                time.sleep(0.5)  # same port: wait for it to be released
        raise RuntimeError(
            f"{self.target} server did not become ready on port {self.port}: {last_error}\n"
            f"command: {' '.join(self._command(self.port))}\n--- server log tail ---\n{self.log_tail()}")

    def launch(self, port: int, fresh: bool) -> None:
        """Start the process on `port` (with an empty data dir if `fresh`), not waiting."""
        if fresh:
            if self.data_dir.exists():
                shutil.rmtree(self.data_dir)
            self.data_dir.mkdir(parents=True)
            if self.my_id is not None:
                (self.data_dir / "myid").write_text(f"{self.my_id}\n")
        self._write_cfg(port)
        self.port = port
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self._command(port), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.workdir, preexec_fn=_die_with_parent,
                env={**os.environ, "NO_COLOR": "1", "RUST_BACKTRACE": "1"})

    def _wait_ready(self) -> tuple[bool, str]:
        """Ready once a client session can be opened (and closed again).
        Accepting TCP connections, or even answering ruok, is not enough:
        ZooKeeper answers `imok` before it accepts sessions."""
        deadline = time.monotonic() + READY_TIMEOUT
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False, f"process exited with code {self.proc.returncode}"
            try:
                resp = raw_connect(self.port, 10000)
                if resp.time_out > 0 and resp.session_id != 0:
                    return True, ""
                last = f"unexpected ConnectResponse {resp!r}"
            except (OSError, ConnectionError, struct.error) as exc:
                last = repr(exc)
            time.sleep(0.05)
        return False, f"no session could be opened within {READY_TIMEOUT}s (last: {last})"

    # -- stopping ---------------------------------------------------------

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


class EnsembleProcess:
    """An ensemble of `n` Corral members on loopback, used like one ServerProcess:
    `host_port` is the connect string naming every member."""

    def __init__(self, workdir: Path, cfg_extra: dict | None = None, n: int = 3):
        self.workdir = workdir
        self.cfg_extra = cfg_extra or {}
        self.n = n
        self.target = TARGET
        self.host = "127.0.0.1"
        self._assign_ports()

    def _assign_ports(self) -> None:
        """Every member's client, quorum and election port, picked together."""
        ports = free_ports(3 * self.n)
        self.client_ports = ports[: self.n]
        peers = {f"server.{i}": f"127.0.0.1:{ports[self.n + 2 * (i - 1)]}:{ports[self.n + 2 * (i - 1) + 1]}"
                 for i in range(1, self.n + 1)}
        extra = {"initLimit": "10", "syncLimit": "5", **peers, **self.cfg_extra}
        self.members = []
        for i in range(1, self.n + 1):
            m = ServerProcess(self.workdir / f"m{i}", extra)
            m.workdir.mkdir(parents=True, exist_ok=True)
            m.my_id = i
            self.members.append(m)

    @property
    def host_port(self) -> str:
        return ",".join(m.host_port for m in self.members)

    @property
    def port(self) -> int:
        return self.members[0].port

    @property
    def log_path(self) -> Path:
        return self.members[0].log_path

    @property
    def proc(self):
        return next((m.proc for m in self.members if not m.alive()), self.members[0].proc)

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(f"--- member {m.my_id} ---\n{m.log_tail(n)}" for m in self.members)

    def declares_memory_only(self) -> bool:
        return False

    def alive(self) -> bool:
        return all(m.alive() for m in self.members)

    def start(self, attempts: int = 4) -> "EnsembleProcess":
        for attempt in range(attempts):
            if attempt:
                self._assign_ports()  # another process took one of the ports: pick anew
            for m, port in zip(self.members, self.client_ports):
                m.launch(port, fresh=True)
            failed = None
            for m in self.members:
                ok, err = m._wait_ready()
                if not ok:
                    failed = (m, err)
                    break
            if failed is None:
                return self
            self.stop()
            m, err = failed
            raced = any("in use" in x.log_tail(200).lower() for x in self.members)
            if not raced or attempt == attempts - 1:
                raise RuntimeError(f"ensemble member {m.my_id} did not become ready: {err}\n{self.log_tail()}")
        raise AssertionError("unreachable")

    def stop(self) -> None:
        for m in self.members:
            m.stop()


def new_server(workdir: Path, cfg_extra: dict | None = None):
    """A standalone server, or an ensemble with CORRAL_TEST_ENSEMBLE=N."""
    if ENSEMBLE > 1:
        return EnsembleProcess(workdir, cfg_extra, ENSEMBLE)
    return ServerProcess(workdir, cfg_extra)


def pytest_collection_modifyitems(config, items):
    if ENSEMBLE <= 1:
        return
    skip = pytest.mark.skip(reason=f"about one server process; not run against a {ENSEMBLE}-member ensemble")
    for item in items:
        if item.module.__name__.rsplit(".", 1)[-1] in SINGLE_SERVER_MODULES:
            item.add_marker(skip)


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------


def pytest_report_header(config):
    where = corral_bin() if TARGET == "corral" else zookeeper_classpath()
    shape = f", {ENSEMBLE}-member ensembles" if ENSEMBLE > 1 else ""
    return f"corral integration tests: target={TARGET} ({where}){shape}"


def _read_from(path: Path, offset: int, max_lines: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-max_lines:])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failing test, attach what the servers it used logged meanwhile."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when != "call" or not rep.failed:
        return
    for label, srv, offset in getattr(item, "_corral_servers", []):
        text = _read_from(srv.log_path, offset)
        alive = "running" if srv.alive() else f"exited with {srv.proc.returncode if srv.proc else '?'}"
        rep.sections.append((f"{label} log ({srv.target} on port {srv.port}, {alive})", text or "<empty>"))


def _log_size(srv: "ServerProcess") -> int:
    try:
        return srv.log_path.stat().st_size
    except OSError:
        return 0


@pytest.fixture(autouse=True)
def _track_default_server_log(request):
    request.node._corral_servers = []
    if "server" in request.fixturenames:
        srv = request.getfixturevalue("server")
        request.node._corral_servers.append(("default server", srv, _log_size(srv)))
    yield


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    srv = new_server(tmp_path_factory.mktemp("server-default")).start()
    yield srv
    crashed = not srv.alive()
    srv.stop()
    if crashed:
        pytest.fail(f"default server died during the session (exit {srv.proc.returncode})\n{srv.log_tail()}")


@pytest.fixture
def server_factory(tmp_path_factory, request):
    started: list[ServerProcess] = []

    def start(cfg_extra: dict | None = None) -> ServerProcess:
        srv = new_server(tmp_path_factory.mktemp("server"), cfg_extra)
        started.append(srv)
        getattr(request.node, "_corral_servers", []).append((f"server {cfg_extra or {}}", srv, 0))
        return srv.start()

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture
def zk_factory(server):
    clients: list[KazooClient] = []

    def make(srv: ServerProcess | None = None, *, chroot: str = "", start: bool = True,
             cls=KazooClient, **kwargs) -> KazooClient:
        srv = srv or server
        kwargs.setdefault("timeout", 10.0)
        client = cls(hosts=srv.host_port + chroot, **kwargs)
        clients.append(client)
        if start:
            client.start(timeout=10)
        return client

    yield make
    for client in clients:
        try:
            client.stop()
            client.close()
        except Exception:
            pass
    if not server.alive():
        pytest.fail(f"server died (exit {server.proc.returncode})\n{server.log_tail()}")


@pytest.fixture
def zk(zk_factory):
    return zk_factory()


@pytest.fixture
def root(zk):
    path = f"/t-{uuid.uuid4().hex[:12]}"
    zk.create(path, b"")
    yield path
    if zk.connected:
        try:
            zk.delete(path, recursive=True)
        except Exception:
            pass
