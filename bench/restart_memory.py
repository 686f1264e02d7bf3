#!/usr/bin/env python3
"""Memory and restart-time benchmark: Corral vs Apache ZooKeeper 3.8, side by side.

For each server (one after the other, never both at once), in one run:

  1. start it standalone on a free loopback port with a fresh data dir under a
     temporary directory (fsync on: neither server gets forceSync=no);
  2. create N znodes (default 1,000,000) of 100 bytes each under 100 parents
     (/bench/p{0..99}/n{i:07d}) as fast as the protocol allows: raw jute
     frames, several connections, many requests in flight on each;
  3. wait for the process to settle (RSS stable) and record VmRSS / VmHWM from
     /proc/PID/status and the allocated size of the data dir;
  4. SIGKILL it, start it again on the same port and data dir, and time
     restart-to-serving: from just before the process is spawned until a new
     client session is open AND a getData of the last znode written returns its
     data; then check every znode is there (sum of numChildren of the parents),
     let it settle and record RSS again;
  5. stop it (SIGTERM, SIGKILL after 20 s) and remove its data dir.

Then print a table (metric, ZooKeeper, Corral, ratio Corral/ZooKeeper);
--json FILE also writes all numbers ("-" for stdout).

Both servers get the same zoo.cfg: Debian's defaults (/etc/zookeeper/conf/zoo.cfg:
tickTime=2000, initLimit=10, syncLimit=5) plus dataDir, clientPort,
clientPortAddress=127.0.0.1 and admin.enableServer=false (so ZooKeeper does not
open its AdminServer on :8080).  snapCount is left at the default (100000) for
both.  ZooKeeper runs as `java -Xmx<--zk-heap, default 4g> -cp zookeeper.jar:slf4j-simple.jar
org.apache.zookeeper.server.ZooKeeperServerMain zoo.cfg` with the JVM's default
(ergonomic) GC and logging at WARN; Debian's JAVA_OPTS is empty, so the heap
cap is the only JVM tuning.

Only processes this script starts are ever signalled, by their PID.

Usage:  python3 bench/restart_memory.py [--nodes N] [--json FILE] [--only corral|zookeeper]
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import os
import platform
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PARENTS = 100
# Socket timeout of one readiness probe. A server that accepts connections before it can
# serve them (ZooKeeper binds its port before loading its database and does not answer a
# connection made then) would otherwise hold each probe for the whole timeout; a short one
# keeps the error of the restart measurement below this value.
PROBE_TIMEOUT = 0.1
DATA_LEN = 100

OP_CREATE = 1
OP_EXISTS = 3
OP_GET_DATA = 4
OP_SYNC = 9
OP_CLOSE_SESSION = -11

# world:anyone, all permissions, encoded once
OPEN_ACL = struct.pack(">ii", 1, 31) + struct.pack(">i", 5) + b"world" + struct.pack(">i", 6) + b"anyone"

DEBIAN_ZOO_CFG = {"tickTime": "2000", "initLimit": "10", "syncLimit": "5"}


def write_json(dest: str, doc: dict) -> None:
    """Writes `doc` as indented JSON to the file `dest`, or to stdout for '-'."""
    text = json.dumps(doc, indent=2)
    if dest == "-":
        print(text)
    else:
        Path(dest).write_text(text + "\n")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# znode naming / payload
# ---------------------------------------------------------------------------

def node_path(i: int) -> bytes:
    return b"/bench/p%d/n%07d" % (i % PARENTS, i)


def node_data(i: int) -> bytes:
    head = b"node-%07d:" % i
    return (head + b"x" * DATA_LEN)[:DATA_LEN]


def create_frame(xid: int, path: bytes, data: bytes) -> bytes:
    # len | xid | type | path | data | acl | flags
    body_len = 4 + 4 + 4 + len(path) + 4 + len(data) + len(OPEN_ACL) + 4
    return (struct.pack(">iiii", body_len, xid, OP_CREATE, len(path)) + path
            + struct.pack(">i", len(data)) + data + OPEN_ACL + b"\0\0\0\0")


# ---------------------------------------------------------------------------
# minimal blocking client (connect, getData, exists, create, close)
# ---------------------------------------------------------------------------

class ZkError(Exception):
    pass


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk
    return bytes(buf)


class Session:
    def __init__(self, port: int, timeout: float = 10.0, session_timeout_ms: int = 30000):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        req = struct.pack(">iqiq", 0, 0, session_timeout_ms, 0) + struct.pack(">i", 16) + b"\0" * 16
        self.sock.sendall(struct.pack(">i", len(req)) + req)
        body = self._frame()
        _proto, neg_timeout, session_id = struct.unpack_from(">iiq", body, 0)
        if neg_timeout <= 0 or session_id == 0:
            raise ConnectionError("session refused")
        self.session_id = session_id
        self.xid = 0

    def _frame(self) -> bytes:
        (n,) = struct.unpack(">i", _recv_exact(self.sock, 4))
        return _recv_exact(self.sock, n)

    def call(self, op: int, body: bytes) -> bytes:
        self.xid += 1
        frame = struct.pack(">ii", self.xid, op) + body
        self.sock.sendall(struct.pack(">i", len(frame)) + frame)
        while True:
            reply = self._frame()
            xid, _zxid, err = struct.unpack_from(">iqi", reply, 0)
            if xid == self.xid:
                if err != 0:
                    raise ZkError(err)
                return reply[16:]
            # anything else (pings, notifications) is ignored

    @staticmethod
    def _path(path: bytes) -> bytes:
        return struct.pack(">i", len(path)) + path

    def get_data(self, path: bytes) -> bytes:
        rest = self.call(OP_GET_DATA, self._path(path) + b"\0")
        (n,) = struct.unpack_from(">i", rest, 0)
        return rest[4:4 + n] if n >= 0 else b""

    def num_children(self, path: bytes) -> int:
        stat = self.call(OP_EXISTS, self._path(path) + b"\0")
        # czxid mzxid ctime mtime version cversion aversion ephemeralOwner dataLength numChildren pzxid
        return struct.unpack_from(">qqqqiiiqiiq", stat, 0)[9]

    def create(self, path: bytes, data: bytes = b"") -> None:
        body = self._path(path) + struct.pack(">i", len(data)) + data + OPEN_ACL + b"\0\0\0\0"
        self.call(OP_CREATE, body)

    def close(self) -> None:
        try:
            self.call(OP_CLOSE_SESSION, b"")
        except Exception:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------
# pipelined population
# ---------------------------------------------------------------------------

class PipeConn:
    def __init__(self, port: int, indices: range):
        s = Session(port)
        self.sess = s
        self.sock = s.sock
        self.sock.setblocking(False)
        self.todo = iter(indices)
        self.exhausted = False
        self.out = bytearray()
        self.inbuf = bytearray()
        self.inflight = 0
        self.xid = 0
        self.done = 0


def populate(port: int | list[int], n: int, connections: int, window: int) -> dict:
    """Creates n znodes over `connections` pipelined connections (`window` requests in
    flight on each); with a list of ports (an ensemble), connection c goes to ports[c % len]."""
    ports = port if isinstance(port, list) else [port]
    port = ports[0]
    s = Session(port)
    s.create(b"/bench")
    for p in range(PARENTS):
        s.create(b"/bench/p%d" % p)
    s.close()
    for other in ports[1:]:
        # Another ensemble member sees the parents once it has synced with the leader.
        s = Session(other)
        s.call(OP_SYNC, Session._path(b"/bench"))
        s.close()

    # connection c creates i = c, c+C, c+2C, ...  (every parent gets traffic from every conn)
    conns = [PipeConn(ports[c % len(ports)], range(c, n, connections)) for c in range(connections)]
    sel = selectors.DefaultSelector()
    for c in conns:
        sel.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
    remaining = n
    errors: dict[int, int] = {}
    t0 = time.monotonic()
    next_report = t0 + 10
    batch = max(1, window // 4)

    def refill(c: PipeConn) -> None:
        if c.exhausted or c.inflight > window - batch:
            return
        parts = []
        while c.inflight < window:
            i = next(c.todo, None)
            if i is None:
                c.exhausted = True
                break
            c.xid += 1
            parts.append(create_frame(c.xid, node_path(i), node_data(i)))
            c.inflight += 1
        if parts:
            c.out += b"".join(parts)

    for c in conns:
        refill(c)
    while remaining > 0:
        for key, mask in sel.select(timeout=30):
            c: PipeConn = key.data
            if mask & selectors.EVENT_WRITE and c.out:
                try:
                    sent = c.sock.send(c.out)
                    del c.out[:sent]
                except BlockingIOError:
                    pass
            if mask & selectors.EVENT_READ:
                try:
                    chunk = c.sock.recv(1 << 20)
                except BlockingIOError:
                    chunk = None
                if chunk == b"":
                    raise ConnectionError("server closed a populate connection")
                if chunk:
                    c.inbuf += chunk
                    buf = c.inbuf
                    pos = 0
                    blen = len(buf)
                    while blen - pos >= 4:
                        (flen,) = struct.unpack_from(">i", buf, pos)
                        if blen - pos - 4 < flen:
                            break
                        xid, _zxid, err = struct.unpack_from(">iqi", buf, pos + 4)
                        pos += 4 + flen
                        if xid < 0:
                            continue  # ping / notification
                        c.inflight -= 1
                        c.done += 1
                        remaining -= 1
                        if err:
                            errors[err] = errors.get(err, 0) + 1
                    del buf[:pos]
                    refill(c)
            want = selectors.EVENT_READ | (selectors.EVENT_WRITE if c.out else 0)
            if key.events != want:
                sel.modify(c.sock, want, c)
        now = time.monotonic()
        if now >= next_report:
            done = n - remaining
            log(f"  populated {done}/{n} ({done / (now - t0):.0f}/s)")
            next_report = now + 10
    elapsed = time.monotonic() - t0
    for c in conns:
        sel.unregister(c.sock)
        c.sock.setblocking(True)
        c.sess.close()
    if errors:
        raise RuntimeError(f"create errors (code: count): {errors}")
    return {"populate_s": elapsed, "creates_per_s": n / elapsed}


# ---------------------------------------------------------------------------
# process helpers
# ---------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def proc_status(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                parts = v.split()
                out[k] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    return out


def dir_size(path: Path) -> tuple[int, int]:
    """(allocated bytes, apparent bytes) of every file under path."""
    alloc = apparent = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            alloc += st.st_blocks * 512
            apparent += st.st_size
    return alloc, apparent


def zk_classpath() -> str:
    env = os.environ.get("ZOOKEEPER_CLASSPATH")
    if env:
        return env
    jars = ["/usr/share/java/zookeeper.jar"]  # its manifest Class-Path lists the deps
    if Path("/usr/share/java/slf4j-simple.jar").exists():
        jars.append("/usr/share/java/slf4j-simple.jar")
    return ":".join(jars)


class Server:
    def __init__(self, kind: str, workdir: Path, args):
        self.kind = kind
        self.workdir = workdir
        self.args = args
        self.data_dir = workdir / "data"
        self.cfg = workdir / "zoo.cfg"
        self.log_path = workdir / "server.log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.data_dir.mkdir(parents=True)
        cfg = dict(DEBIAN_ZOO_CFG)
        cfg.update({"dataDir": str(self.data_dir), "clientPort": str(self.port),
                    "clientPortAddress": "127.0.0.1", "admin.enableServer": "false"})
        self.cfg.write_text("".join(f"{k}={v}\n" for k, v in cfg.items()))

    @property
    def label(self) -> str:
        return "ZooKeeper" if self.kind == "zookeeper" else "Corral"

    def command(self) -> list[str]:
        if self.kind == "zookeeper":
            return [shutil.which("java") or "java", f"-Xmx{self.args.zk_heap}",
                    "-Dzookeeper.admin.enableServer=false",
                    "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                    "-Dzookeeper.jmx.log4j.disable=true",
                    "-cp", zk_classpath(),
                    "org.apache.zookeeper.server.ZooKeeperServerMain", str(self.cfg)]
        return [str(self.args.corral_bin), "server", "--port", str(self.port),
                "--data-dir", str(self.data_dir), "--config", str(self.cfg)]

    def spawn(self) -> float:
        t0 = time.monotonic()
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, cwd=self.workdir,
                                         preexec_fn=_die_with_parent,
                                         env={**os.environ, "NO_COLOR": "1"})
        return t0

    def wait_serving(self, t0: float, probe: bytes | None, expect: bytes | None,
                     timeout: float) -> float:
        """Seconds from t0 until a session opens (and, with probe, getData(probe) == expect)."""
        deadline = t0 + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.proc.returncode}\n{self.log_tail()}")
            try:
                s = Session(self.port, timeout=PROBE_TIMEOUT)
                try:
                    if probe is not None:
                        got = s.get_data(probe)
                        if got != expect:
                            raise RuntimeError(f"{probe!r} has unexpected data {got[:40]!r}")
                    t = time.monotonic() - t0
                finally:
                    s.close()
                return t
            except (OSError, ConnectionError, struct.error, ZkError) as exc:
                last = repr(exc)
            time.sleep(0.01)
        raise RuntimeError(f"{self.label} not serving after {timeout}s (last: {last})\n{self.log_tail()}")

    def sigkill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc:
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "<no log>"

    def settle(self, min_s: float, max_s: float) -> dict:
        """Wait at least min_s, then until VmRSS moved < 1% over 3 s (at most max_s)."""
        t0 = time.monotonic()
        samples = []
        while True:
            st = proc_status(self.proc.pid)
            samples.append((time.monotonic(), st["VmRSS"]))
            el = time.monotonic() - t0
            if el >= min_s:
                window = [r for t, r in samples if t >= samples[-1][0] - 3.0]
                if len(window) >= 3 and (max(window) - min(window)) <= 0.01 * max(window):
                    break
            if el >= max_s:
                break
            time.sleep(1.0)
        st = proc_status(self.proc.pid)
        st["settle_s"] = time.monotonic() - t0
        return st

    def jvm_heap(self) -> str | None:
        """`jcmd PID GC.heap_info` (does not trigger a GC), for information."""
        if self.kind != "zookeeper" or not shutil.which("jcmd"):
            return None
        try:
            out = subprocess.run(["jcmd", str(self.proc.pid), "GC.heap_info"], capture_output=True,
                                 text=True, timeout=30).stdout
        except Exception:
            return None
        lines = [l.strip() for l in out.splitlines()[1:] if l.strip()]
        return " | ".join(lines[:2]) if lines else None


def count_nodes(port: int) -> int:
    s = Session(port, timeout=30)
    try:
        return sum(s.num_children(b"/bench/p%d" % p) for p in range(PARENTS))
    finally:
        s.close()


# ---------------------------------------------------------------------------
# one server's run
# ---------------------------------------------------------------------------

def run_one(kind: str, tmp: Path, args) -> dict:
    srv = Server(kind, tmp / kind, args)
    res: dict = {"server": srv.label, "command": " ".join(srv.command())}
    n = args.nodes
    last = n - 1
    try:
        log(f"{srv.label}: starting on port {srv.port}")
        t0 = srv.spawn()
        res["first_start_s"] = srv.wait_serving(t0, None, None, args.start_timeout)
        res["rss_idle"] = proc_status(srv.proc.pid)["VmRSS"]
        log(f"{srv.label}: serving after {res['first_start_s']:.2f}s; populating {n} znodes")
        res.update(populate(srv.port, n, args.connections, args.window))
        log(f"{srv.label}: populated in {res['populate_s']:.1f}s ({res['creates_per_s']:.0f}/s); settling")
        st = srv.settle(args.settle_min, args.settle_max)
        res["rss_populated"] = st["VmRSS"]
        res["hwm_populated"] = st["VmHWM"]
        res["rss_anon_populated"] = st.get("RssAnon")
        res["settle_populated_s"] = st["settle_s"]
        res["jvm_heap_populated"] = srv.jvm_heap()
        res["data_dir_alloc"], res["data_dir_apparent"] = dir_size(srv.data_dir)
        log(f"{srv.label}: RSS {st['VmRSS'] / 2**20:.0f} MiB, data dir "
            f"{res['data_dir_alloc'] / 2**20:.0f} MiB; SIGKILL and restart")

        srv.sigkill()
        t0 = srv.spawn()
        res["restart_to_serving_s"] = srv.wait_serving(t0, node_path(last), node_data(last),
                                                       args.restart_timeout)
        res["rss_at_serving"] = proc_status(srv.proc.pid)["VmRSS"]
        log(f"{srv.label}: serving again after {res['restart_to_serving_s']:.2f}s; counting znodes")
        res["nodes_after_restart"] = count_nodes(srv.port)
        if res["nodes_after_restart"] != n:
            log(f"{srv.label}: WARNING: {res['nodes_after_restart']} znodes after restart, expected {n}")
        st = srv.settle(args.settle_min, args.settle_max)
        res["rss_restarted"] = st["VmRSS"]
        res["hwm_restarted"] = st["VmHWM"]
        res["rss_anon_restarted"] = st.get("RssAnon")
        res["jvm_heap_restarted"] = srv.jvm_heap()
        log(f"{srv.label}: RSS after restart {st['VmRSS'] / 2**20:.0f} MiB (peak {st['VmHWM'] / 2**20:.0f} MiB)")
    finally:
        srv.stop()
        if not args.keep:
            shutil.rmtree(srv.workdir, ignore_errors=True)
    return res


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------

MIB = 2 ** 20
ROWS = [
    # (key, label, scale, fmt)
    ("populate_s", "populate time (s)", 1, "{:.1f}"),
    ("creates_per_s", "populate throughput (creates/s)", 1, "{:.0f}"),
    ("rss_populated", "RSS after populate, settled (MiB)", MIB, "{:.0f}"),
    ("hwm_populated", "peak RSS during populate (MiB)", MIB, "{:.0f}"),
    ("data_dir_alloc", "data dir size, allocated (MiB)", MIB, "{:.0f}"),
    ("data_dir_apparent", "data dir size, apparent (MiB)", MIB, "{:.0f}"),
    ("restart_to_serving_s", "restart-to-serving after SIGKILL (s)", 1, "{:.2f}"),
    ("rss_at_serving", "RSS when first serving after restart (MiB)", MIB, "{:.0f}"),
    ("rss_restarted", "RSS after restart, settled (MiB)", MIB, "{:.0f}"),
    ("hwm_restarted", "peak RSS during restart (MiB)", MIB, "{:.0f}"),
    ("nodes_after_restart", "znodes found after restart", 1, "{:.0f}"),
]


def fmt(v, scale, f) -> str:
    return "-" if v is None else f.format(v / scale)


def table(results: dict) -> str:
    zk, co = results.get("zookeeper", {}), results.get("corral", {})
    out = ["| metric | ZooKeeper 3.8 | Corral | Corral/ZooKeeper |", "|---|---:|---:|---:|"]
    for key, label, scale, f in ROWS:
        a, b = zk.get(key), co.get(key)
        ratio = f"{b / a:.2f}" if a and b is not None and key != "nodes_after_restart" else ""
        out.append(f"| {label} | {fmt(a, scale, f)} | {fmt(b, scale, f)} | {ratio} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=1_000_000, help="znodes to create (default 1000000)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON ('-' = stdout)")
    ap.add_argument("--only", choices=["corral", "zookeeper"], help="measure one server only")
    ap.add_argument("--zk-heap", default="4g", help="ZooKeeper's -Xmx (default 4g)")
    ap.add_argument("--corral-bin", type=Path,
                    default=Path(os.environ.get("CORRAL_BIN", REPO / "target" / "release" / "corral")))
    ap.add_argument("--connections", type=int, default=4, help="populate connections (default 4)")
    ap.add_argument("--window", type=int, default=500, help="requests in flight per connection (default 500)")
    ap.add_argument("--settle-min", type=float, default=10.0, help="seconds to wait before reading RSS (default 10)")
    ap.add_argument("--settle-max", type=float, default=60.0, help="give up waiting for a stable RSS after this (default 60)")
    ap.add_argument("--start-timeout", type=float, default=60.0)
    ap.add_argument("--restart-timeout", type=float, default=600.0)
    ap.add_argument("--tmp", type=Path, help="parent of the temporary dir (default: $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep data dirs and logs")
    args = ap.parse_args()
    if args.nodes < 1:
        ap.error("--nodes must be >= 1")
    if not args.only or args.only == "corral":
        if not args.corral_bin.exists():
            ap.error(f"no Corral binary at {args.corral_bin} (cargo build --release)")

    kinds = [args.only] if args.only else ["zookeeper", "corral"]
    tmp = Path(tempfile.mkdtemp(prefix="corral-bench-", dir=args.tmp))
    started = datetime.datetime.now(datetime.timezone.utc)
    results: dict = {}
    try:
        for kind in kinds:
            results[kind] = run_one(kind, tmp, args)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"kept {tmp}")

    print()
    print(f"N = {args.nodes} znodes x {DATA_LEN} bytes under {PARENTS} parents; fsync on; "
          f"ZooKeeper -Xmx{args.zk_heap}")
    print(table(results))
    for kind in kinds:
        for k in ("jvm_heap_populated", "jvm_heap_restarted"):
            if results[kind].get(k):
                print(f"{results[kind]['server']} {k}: {results[kind][k]}")
    if args.json:
        doc = {"date_utc": started.isoformat(timespec="seconds"), "host": platform.node(),
               "nproc": os.cpu_count(), "nodes": args.nodes, "data_len": DATA_LEN, "parents": PARENTS,
               "zk_heap": args.zk_heap, "connections": args.connections, "window": args.window,
               "results": results}
        write_json(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
