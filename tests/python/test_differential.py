"""Differential test: the same raw request script against Corral and Apache ZooKeeper.

Both servers are started side by side (fresh data dirs, free loopback ports,
identical settings: tickTime 2000, ``4lw.commands.whitelist=*``,
``extendedTypesEnabled=true``, a short ``znode.container.checkIntervalMs``).
One scripted sequence of raw jute requests (tests/python/rawzk.py) is run
against each over plain sockets, with several sessions.  Every frame a
session receives is recorded in arrival order - replies (header err plus the
decoded body, with any undecoded trailing bytes) and watch notifications -
so the transcript also captures where a notification lands relative to the
replies.  Notifications caused by another session's write are collected by a
ping barrier on the watching session (`flush`): both servers queue the event
before answering the write, and answer the ping in request order, so the
position of the event is deterministic.

What legitimately differs is normalised before the comparison:

* zxids -> ``#N``, N being the number of the script request whose reply
  header first carried that zxid (requests are numbered ``[NNN]`` in the
  transcript); a new zxid that skips values is shown as ``#N(+gap)``, one
  never seen in a header as ``#N+k``.  So the zxids a server consumes must
  agree (ZooKeeper logs a transaction for a session create/close and for a
  failed write), but a difference only shows up to the next write;
* ctime/mtime -> ``T`` (checked to be a plausible epoch-ms time), 0 kept;
* session ids (ephemeralOwner, ConnectResponse) -> the session's symbolic
  name; passwords -> their length;
* deliberate differences (docs/compatibility.md): children lists compared
  sorted (Corral sorts, ZooKeeper uses hash order), whoAmI compared as a
  set, 4lw version strings and counters dropped.  getEphemerals, whose
  order ZooKeeper leaves unspecified (hash-set iteration), is compared
  sorted as well.

The test fails with a unified diff of the two transcripts (ZooKeeper's is the
reference) and writes both to the test's tmp dir.

It needs Apache ZooKeeper (Debian package ``zookeeper``): without it the test
fails with a hint to run ``apt-get install -y zookeeper``, unless
CORRAL_SKIP_ZOOKEEPER=1 is set, in which case it is skipped.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import shutil
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import conftest
import pytest
from conftest import ServerProcess, four_letter_word

import rawzk as rz
from rawzk import OPEN_ACL, Closed, RawConn, Reader

# The zoo.cfg keys both servers get (conftest passes the JVM-property ones to
# ZooKeeper as -D flags as well).
CHECK_INTERVAL_MS = 300
CFG = {
    "tickTime": "2000",
    "4lw.commands.whitelist": "*",
    "extendedTypesEnabled": "true",
    "znode.container.checkIntervalMs": str(CHECK_INTERVAL_MS),
}
SESSION_TIMEOUT_MS = 30000
ZK_JAR = Path("/usr/share/java/zookeeper.jar")
INSTALL_HINT = "run `apt-get install -y zookeeper` (Debian's ZooKeeper 3.8; it pulls in a JRE)"


def show_path(path) -> str:
    """repr() of a path, shortened (with length and hash) when it is long."""
    if not isinstance(path, str) or len(path) <= 64:
        return repr(path)
    digest = hashlib.sha1(path.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{path[:16]!r}...<{len(path)} chars, sha1 {digest}>"


def _require_zookeeper() -> None:
    missing = None
    if not os.environ.get("ZOOKEEPER_CLASSPATH") and not ZK_JAR.exists():
        missing = f"Apache ZooKeeper is not installed ({ZK_JAR} not found)"
    elif not shutil.which("java"):
        missing = "java is not installed (needed to run Apache ZooKeeper)"
    if missing is None:
        return
    if os.environ.get("CORRAL_SKIP_ZOOKEEPER") == "1":
        pytest.skip(f"{missing}; skipped because CORRAL_SKIP_ZOOKEEPER=1")
    pytest.fail(f"{missing}: the differential test needs it - {INSTALL_HINT}, "
                "or set CORRAL_SKIP_ZOOKEEPER=1 to skip this test", pytrace=False)


# ---------------------------------------------------------------------------
# recording one server's transcript
# ---------------------------------------------------------------------------

class Session:
    def __init__(self, name: str, conn: RawConn):
        self.name = name
        self.conn = conn
        self.xid = 0
        self.sid = 0
        self.passwd = b""
        self.open = True


class Transcript:
    """Runs script steps against one server and records normalised lines."""

    def __init__(self, target: str, port: int):
        self.target = target
        self.port = port
        self.lines: list[str] = []
        self.sessions: dict[str, Session] = {}
        self.sid_names: dict[int, str] = {}
        self.req_no = 0                          # requests sent so far (same on both servers)
        self.zxid_labels: dict[int, str] = {}    # zxid -> "#N": first returned by request N
        self.max_zxid: int | None = None
        self.started_ms = int(time.time() * 1000)

    # -- normalisation --------------------------------------------------

    def z(self, v: int, header: bool = False) -> str:
        """A zxid as '#N', N being the number of the request whose reply header
        first carried it.  A reply header carrying a new zxid that is not the
        previous highest + 1 says so: '#N(+gap)'.  A zxid never seen in a reply
        header (a reaper's delete, say) is '#N+k' from the nearest lower one.
        0 and -1 are kept.  Unlike offsets from one base zxid, a transaction
        that one server logs and the other does not only changes the lines up
        to the next write."""
        if v in (0, -1):
            return str(v)
        if v in self.zxid_labels:
            return self.zxid_labels[v]
        if header:
            label = f"#{self.req_no}"
            gap = "" if self.max_zxid is None or v == self.max_zxid + 1 else f"({v - self.max_zxid:+d})"
            self.zxid_labels[v] = label
            self.max_zxid = v if self.max_zxid is None else max(self.max_zxid, v)
            return label + gap
        lower = [k for k in self.zxid_labels if k < v]
        if lower:
            k = max(lower)
            return f"{self.zxid_labels[k]}+{v - k}"
        higher = [k for k in self.zxid_labels if k > v]
        if higher:
            k = min(higher)
            return f"{self.zxid_labels[k]}-{k - v}"
        return "?"

    def t(self, v: int) -> str:
        """A ctime/mtime: 'T' when it is a plausible epoch-ms time of this run."""
        if v == 0:
            return "0"
        now = int(time.time() * 1000)
        return "T" if self.started_ms - 600_000 <= v <= now + 600_000 else f"T!{v}"

    def sid(self, v: int) -> str:
        if v == 0:
            return "0"
        return self.sid_names.get(v, "S?unknown-session")

    def stat(self, s: dict) -> str:
        return ("{czxid=%s mzxid=%s ctime=%s mtime=%s version=%d cversion=%d aversion=%d "
                "ephemeralOwner=%s dataLength=%d numChildren=%d pzxid=%s}" % (
                    self.z(s["czxid"]), self.z(s["mzxid"]), self.t(s["ctime"]), self.t(s["mtime"]),
                    s["version"], s["cversion"], s["aversion"], self.sid(s["ephemeralOwner"]),
                    s["dataLength"], s["numChildren"], self.z(s["pzxid"])))

    def multi_results(self, results: list) -> str:
        out = []
        for res in results:
            kind = res[0]
            if kind == "create2":
                _, typ, err, path, st = res
                out.append(f"create2(type={typ},err={err},{path!r},{self.stat(st)})")
            elif kind == "setData":
                out.append(f"setData(err={res[1]},{self.stat(res[2])})")
            elif kind == "getData":
                out.append(f"getData(err={res[1]},{res[2]!r},{self.stat(res[3])})")
            elif kind == "getChildren":
                # Deliberate difference: Corral returns children sorted.
                out.append(f"getChildren(err={res[1]},{sorted(res[2] or [])!r})")
            else:
                out.append(f"{kind}{tuple(res[1:])!r}")
        return "[" + ", ".join(out) + "]"

    # -- frames ---------------------------------------------------------

    def log(self, line: str) -> None:
        self.lines.append(line)

    def _event(self, s: Session, zxid: int, err: int, r: Reader) -> None:
        typ, state, path = r.int(), r.int(), r.str()
        extra = f" +extra={r.rest().hex()}" if r.remaining() else ""
        self.log(f"{s.name}   <- event {rz.EVENT_NAMES.get(typ, typ)} {path!r} state={state} "
                 f"(hdr zxid={self.z(zxid)} err={err}){extra}")

    def _read_until(self, s: Session, xid, timeout: float = 5.0, any_reply: bool = False):
        """Record frames on s until the reply with this xid (with any_reply, the
        first frame that is not a notification); return (zxid, err, Reader) or None."""
        while True:
            try:
                frame = s.conn.recv_frame(timeout)
            except Closed:
                s.open = False
                self.log(f"{s.name}   <- connection closed by the server (no reply to xid {xid})")
                return None
            except socket.timeout:
                self.log(f"{s.name}   <- no reply to xid {xid} within {timeout}s")
                return None
            r = Reader(frame)
            rxid, zxid, err = r.int(), r.long(), r.int()
            if rxid == rz.XID_NOTIFICATION:
                self._event(s, zxid, err, r)
            elif rxid == xid or any_reply:
                if any_reply:
                    self.log(f"{s.name}   <- reply frame with xid={rxid}")
                return zxid, err, r
            else:
                self.log(f"{s.name}   <- unexpected frame xid={rxid} zxid={self.z(zxid)} err={err} "
                         f"body={r.rest().hex()}")

    def call(self, name: str, what: str, op: int, body: bytes = b"", decode=None, xid: int | None = None,
             reply_xid: int | str | None = None):
        """Send one request on session `name`; record every frame up to its reply
        (the frame with reply_xid, by default the request's xid; "any": the first
        frame that is not a notification).
        decode(reader) -> (raw value, text) is applied to the body of an err=0 reply.
        Returns {'zxid', 'err', 'value'} (raw values) or None without a reply."""
        s = self.sessions[name]
        if not s.open:
            self.log(f"{name} {what} -> (session connection already closed)")
            return None
        if xid is None:
            s.xid += 1
            xid = s.xid
        self.req_no += 1
        try:
            s.conn.send_request(xid, op, body)
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            # Reported like a close seen while reading: which of the two a closed
            # connection produces is down to timing.
            s.open = False
            self.log(f"{s.name}   <- connection closed by the server (no reply to xid {xid})")
            return None
        got = self._read_until(s, xid if reply_xid is None else reply_xid, any_reply=reply_xid == "any")
        if got is None:
            return None
        zxid, err, r = got
        zxid_text = self.z(zxid, header=True)
        value, text = None, ""
        if err == 0 and decode is not None:
            try:
                value, text = decode(r)
                text = " " + text
            except Exception as exc:  # a short or garbled body is part of the transcript
                text = f" <undecodable body: {exc!r}>"
        if r.remaining():
            text += f" +extra={r.rest().hex()}"
        self.log(f"[{self.req_no:03d}] {name} {what} -> err={err}({rz.ERROR_NAMES.get(err, '?')}) "
                 f"zxid={zxid_text}{text}")
        return {"zxid": zxid, "err": err, "value": value}

    # -- sessions -------------------------------------------------------

    def connect(self, name: str, timeout_ms: int = SESSION_TIMEOUT_MS, resume: str | None = None,
                wrong_passwd: bool = False, last_zxid: int = 0, read_only: bool | None = None,
                what: str = "") -> None:
        """Opens connection `name`: a new session, or (resume=) the session of an
        earlier connection, with its password or a wrong one."""
        conn = RawConn(self.port)
        s = Session(name, conn)
        self.sessions[name] = s
        sid, passwd = 0, b"\0" * 16
        if resume is not None:
            old = self.sessions[resume]
            sid, passwd = old.sid, (b"\x55" * 16 if wrong_passwd else old.passwd)
        what = what or f"connect(timeout={timeout_ms})"
        try:
            resp = conn.connect(timeout_ms, session_id=sid, passwd=passwd, last_zxid=last_zxid,
                                read_only=read_only)
        except Closed:
            s.open = False
            self.log(f"{name} {what} -> connection closed without a ConnectResponse")
            return
        s.sid, s.passwd = resp["sessionId"], resp["passwd"]
        if s.sid and s.sid not in self.sid_names:
            self.sid_names[s.sid] = name
        extra = f" +extra={resp['extra'].hex()}" if resp["extra"] else ""
        ro = f" readOnly={resp['readOnly']}" if "readOnly" in resp else ""
        pw = resp["passwd"] or b""
        pw_text = f"{len(pw)} bytes" + (" (all zero)" if pw and not any(pw) else "")
        self.log(f"{name} {what} -> protocolVersion={resp['protocolVersion']} "
                 f"timeOut={resp['timeOut']} sessionId={self.sid(s.sid)} passwd={pw_text}{ro}{extra}")

    def flush(self, name: str) -> None:
        """Ping barrier: records whatever the session received before the ping's reply."""
        self.call(name, "ping", rz.OP_PING, xid=rz.XID_PING)

    def expect_close(self, name: str, timeout: float = 3.0) -> None:
        s = self.sessions[name]
        state, frames = s.conn.wait_closed(timeout)
        s.open = state == "open"
        self.log(f"{name}   <- connection {state} ({len(frames)} more frames)")

    def wait_events(self, name: str, count: int, timeout: float = 10.0) -> None:
        """Waits for `count` notification frames (nothing else is expected meanwhile)
        and records them in arrival order."""
        s = self.sessions[name]
        got = 0
        deadline = time.monotonic() + timeout
        while got < count:
            try:
                frame = s.conn.recv_frame(max(0.05, deadline - time.monotonic()))
            except socket.timeout:
                self.log(f"{name}   <- timed out after {timeout}s waiting for event {got + 1} of {count}")
                return
            except Closed:
                s.open = False
                self.log(f"{name}   <- connection closed while waiting for events")
                return
            r = Reader(frame)
            rxid, zxid, err = r.int(), r.long(), r.int()
            if rxid == rz.XID_NOTIFICATION:
                self._event(s, zxid, err, r)
                got += 1
            else:
                self.log(f"{name}   <- unexpected frame xid={rxid} zxid={self.z(zxid)} err={err} "
                         f"body={r.rest().hex()}")

    def close_all(self) -> None:
        for s in self.sessions.values():
            s.conn.close()

    # -- operations -----------------------------------------------------

    def _stat(self, r):
        st = r.stat()
        return st, self.stat(st)

    def _path(self, r):
        p = r.str()
        return p, show_path(p)

    def _path_stat(self, r):
        p, st = r.str(), r.stat()
        return (p, st), f"{show_path(p)} {self.stat(st)}"

    def _data_stat(self, r):
        d, st = r.buf(), r.stat()
        return (d, st), f"{d!r} {self.stat(st)}"

    def _children(self, r):
        ch = r.strvec()
        # Deliberate difference: Corral returns children sorted, ZooKeeper in hash order.
        return ch, repr(sorted(ch or []))

    def _children_stat(self, r):
        ch, st = r.strvec(), r.stat()
        return (ch, st), f"{sorted(ch or [])!r} {self.stat(st)}"

    def _acl_stat(self, r):
        acl, st = r.acl(), r.stat()
        return (acl, st), f"{acl!r} {self.stat(st)}"

    def _int(self, r):
        n = r.int()
        return n, str(n)

    def _sorted_strvec(self, r):
        v = r.strvec()
        # getEphemerals: ZooKeeper iterates a hash set, the order is unspecified.
        return v, repr(sorted(v or []))

    def _whoami(self, r):
        n = r.int()
        infos = [(r.str(), r.str()) for _ in range(max(n, 0))]
        # Deliberate difference: compared as a set (ZooKeeper uses hash-set order).
        return infos, repr(sorted(infos))

    def _multi(self, r):
        res = rz.decode_multi(r)
        return res, self.multi_results(res)

    def create(self, s, path, data=b"", acl=OPEN_ACL, flags=0, op=rz.OP_CREATE2, ttl=None):
        names = {rz.OP_CREATE: "create", rz.OP_CREATE2: "create2", rz.OP_CREATE_CONTAINER: "createContainer",
                 rz.OP_CREATE_TTL: "createTTL"}
        what = f"{names[op]}({show_path(path)}, data={data!r}, flags={flags}"
        what += "" if acl == OPEN_ACL else f", acl={acl!r}"
        what += "" if ttl is None else f", ttl={ttl}"
        decode = self._path if op == rz.OP_CREATE else self._path_stat
        return self.call(s, what + ")", op, rz.create_body(path, data, acl, flags, ttl), decode)

    def delete(self, s, path, version=-1):
        return self.call(s, f"delete({show_path(path)}, version={version})", rz.OP_DELETE,
                         rz.path_version_body(path, version))

    def exists(self, s, path, watch=False):
        return self.call(s, f"exists({path!r}, watch={watch})", rz.OP_EXISTS,
                         rz.path_watch_body(path, watch), self._stat)

    def get(self, s, path, watch=False):
        return self.call(s, f"getData({path!r}, watch={watch})", rz.OP_GET_DATA,
                         rz.path_watch_body(path, watch), self._data_stat)

    def set(self, s, path, data, version=-1):
        return self.call(s, f"setData({path!r}, {data!r}, version={version})", rz.OP_SET_DATA,
                         rz.set_data_body(path, data, version), self._stat)

    def children(self, s, path, watch=False):
        return self.call(s, f"getChildren({path!r}, watch={watch})", rz.OP_GET_CHILDREN,
                         rz.path_watch_body(path, watch), self._children)

    def children2(self, s, path, watch=False):
        return self.call(s, f"getChildren2({path!r}, watch={watch})", rz.OP_GET_CHILDREN2,
                         rz.path_watch_body(path, watch), self._children_stat)

    def get_acl(self, s, path):
        return self.call(s, f"getACL({path!r})", rz.OP_GET_ACL, rz.w_str(path), self._acl_stat)

    def set_acl(self, s, path, acl, version=-1):
        return self.call(s, f"setACL({path!r}, {acl!r}, version={version})", rz.OP_SET_ACL,
                         rz.set_acl_body(path, acl, version), self._stat)

    def sync(self, s, path):
        return self.call(s, f"sync({path!r})", rz.OP_SYNC, rz.w_str(path), self._path)

    def check(self, s, path, version):
        return self.call(s, f"check({path!r}, version={version})", rz.OP_CHECK,
                         rz.path_version_body(path, version))

    def multi(self, s, what, ops, op=rz.OP_MULTI):
        name = "multi" if op == rz.OP_MULTI else "multiRead"
        return self.call(s, f"{name}[{what}]", op, rz.multi_body(ops), self._multi)

    def auth(self, s, scheme, data: bytes):
        return self.call(s, f"addAuth({scheme!r}, {data!r})", rz.OP_AUTH, rz.auth_body(scheme, data),
                         xid=rz.XID_AUTH)

    def whoami(self, s):
        return self.call(s, "whoAmI", rz.OP_WHO_AM_I, b"", self._whoami)

    def all_children_number(self, s, path):
        return self.call(s, f"getAllChildrenNumber({path!r})", rz.OP_GET_ALL_CHILDREN_NUMBER,
                         rz.w_str(path), self._int)

    def ephemerals(self, s, prefix):
        return self.call(s, f"getEphemerals({prefix!r})", rz.OP_GET_EPHEMERALS, rz.w_str(prefix),
                         self._sorted_strvec)

    def add_watch(self, s, path, mode):
        return self.call(s, f"addWatch({path!r}, mode={mode})", rz.OP_ADD_WATCH, rz.path_int_body(path, mode))

    def check_watches(self, s, path, wtype):
        return self.call(s, f"checkWatches({path!r}, type={wtype})", rz.OP_CHECK_WATCHES,
                         rz.path_int_body(path, wtype))

    def remove_watches(self, s, path, wtype):
        return self.call(s, f"removeWatches({path!r}, type={wtype})", rz.OP_REMOVE_WATCHES,
                         rz.path_int_body(path, wtype))

    def set_watches(self, s, rel, data, exist, child, persistent=None, recursive=None):
        op = rz.OP_SET_WATCHES if persistent is None and recursive is None else rz.OP_SET_WATCHES2
        what = (f"setWatches{'2' if op == rz.OP_SET_WATCHES2 else ''}(relativeZxid={self.z(rel)}, "
                f"data={data!r}, exist={exist!r}, child={child!r}")
        if op == rz.OP_SET_WATCHES2:
            what += f", persistent={persistent!r}, recursive={recursive!r}"
        return self.call(s, what + ")", op, rz.set_watches_body(rel, data, exist, child, persistent, recursive),
                         xid=rz.XID_SET_WATCHES)

    def close_session(self, s):
        res = self.call(s, "closeSession", rz.OP_CLOSE_SESSION)
        self.expect_close(s)
        return res

    def four_letter(self, cmd: str) -> None:
        text = four_letter_word(self.port, cmd)
        if cmd == "srvr":
            fields = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
            # Deliberate difference: the version string; counters/latencies vary run to run.
            kept = {k: fields[k] for k in ("Mode", "Node count") if k in fields}
            if "Zxid" in fields:
                kept["Zxid"] = self.z(int(fields["Zxid"], 16))
            self.log(f"4lw srvr -> keys={sorted(fields)!r} {kept!r}")
        else:
            self.log(f"4lw {cmd} -> {text!r}")


# ---------------------------------------------------------------------------
# the script
# ---------------------------------------------------------------------------

ALICE = rz.digest_id("alice", "pw")
BOB = rz.digest_id("bob", "pw")


def m_create(path, data=b"", flags=0, op=rz.OP_CREATE, acl=OPEN_ACL, ttl=None):
    return (op, rz.create_body(path, data, acl, flags, ttl))


def m_delete(path, version=-1):
    return (rz.OP_DELETE, rz.path_version_body(path, version))


def m_set(path, data, version=-1):
    return (rz.OP_SET_DATA, rz.set_data_body(path, data, version))


def m_check(path, version):
    return (rz.OP_CHECK, rz.path_version_body(path, version))


def m_get(path):
    return (rz.OP_GET_DATA, rz.path_watch_body(path, False))


def m_children(path):
    return (rz.OP_GET_CHILDREN, rz.path_watch_body(path, False))


def script(t: Transcript) -> None:
    A, B = "A", "B"

    # ---- fresh tree and system nodes
    t.connect(A)
    t.exists(A, "/")
    t.children2(A, "/")
    t.exists(A, "")                               # "" reads as the root
    t.get(A, "")
    t.children(A, "/zookeeper")
    t.exists(A, "/zookeeper")
    t.get(A, "/zookeeper/quota")
    t.get(A, "/zookeeper/config")
    t.get_acl(A, "/")
    t.get_acl(A, "/zookeeper/config")
    t.connect(B)
    t.whoami(A)

    # ---- create in every mode
    t.create(A, "/d", b"root-data")
    t.create(A, "/d/p", b"p", op=rz.OP_CREATE)    # plain create: reply is the path only
    t.create(A, "/d/e", b"eph", flags=1)          # ephemeral
    for _ in range(3):
        t.create(A, "/d/s-", flags=2)             # persistent sequential
    t.delete(A, "/d/s-0000000003")
    t.delete(A, "/d/s-0000000004")
    t.exists(A, "/d")                             # cversion after deletes
    t.create(A, "/d/s-", flags=2)                 # sequence numbers never go back
    t.create(A, "/d/", flags=2)                   # sequential with trailing slash: allowed
    t.create(A, "/d/es-", b"x", flags=3)          # ephemeral sequential
    t.create(A, "/d/ct", b"c", flags=4, op=rz.OP_CREATE_CONTAINER)
    t.create(A, "/d/ct0", flags=0, op=rz.OP_CREATE_CONTAINER)   # the opcode decides, not the flags
    t.create(A, "/d/ttl", b"t", flags=5, op=rz.OP_CREATE_TTL, ttl=3_600_000)
    t.create(A, "/d/ttls-", flags=6, op=rz.OP_CREATE_TTL, ttl=3_600_000)
    t.create(A, "/d/ttlmax", flags=5, op=rz.OP_CREATE_TTL, ttl=(1 << 40) - 1)
    t.create(A, "/seq-", flags=2)                 # sequential under the root
    t.create(A, "/zookeeper/x")                   # allowed under /zookeeper
    t.delete(A, "/zookeeper/x")
    t.children2(A, "/d")
    t.get(A, "/d/ct")
    t.get(A, "/d/ttl")
    t.get(A, "/d/e")

    # ---- create errors
    t.create(A, "/")                              # NodeExists
    t.create(A, "/d/p")                           # NodeExists
    t.create(A, "/nope/x")                        # NoNode
    t.create(A, "/d/e/c")                         # NoChildrenForEphemerals
    t.create(A, "/d/e/c", flags=2)
    t.create(A, "/d/noacl", acl=[])               # InvalidACL
    t.create(A, "/d/noacl", acl=None)
    for acl in ([(31, "world", "other")], [(31, "digest", "nocolon")], [(31, "ip", "abc")],
                [(31, "ip", "127.0.0.1/33")], [(31, "foo", "bar")], [(31, "auth", "")],
                [(31, "auth", ""), (31, "world", "anyone")]):
        t.create(A, "/d/badacl", acl=acl)
    for flags in (7, 99, -1):
        t.create(A, "/d/badflags", flags=flags)
    t.create(A, "/d/ttlbad", flags=5)             # TTL mode through create2
    t.create(A, "/d/ttlbad", flags=5, op=rz.OP_CREATE)
    t.create(A, "/d/ttlbad", flags=0, op=rz.OP_CREATE_TTL, ttl=1000)
    for ttl in (0, -5, 1 << 40):
        t.create(A, "/d/ttlbad", flags=5, op=rz.OP_CREATE_TTL, ttl=ttl)
    for path in ("rel", "", "/d/", "/d/.", "/d/..", "/.", "//d", "/d//x", "/d/x\x00y",
                 "/d/\x01", "/d/\x1f", "/d/\x7f", "/d/\u0085", "/d/\u009f", "/d/\ue000",
                 "/d/\ufff0", "/d/\U0001F600", "/nope/.", "/nope//x"):
        t.create(A, path)
    for path in ("/d/.a", "/d/..a", "/d/a.", "/d/a b", "/d/\u00a0", "/d/\u00e9t\u00e9", "/d/\uf900"):
        t.create(A, path)
    t.create(A, "/d/" + "n" * 300)
    t.delete(A, "/d/" + "n" * 300)
    t.create(A, "/d/nul", None)                   # null data
    t.get(A, "/d/nul")
    t.create(A, "/d/e2", flags=1)
    t.create(A, "/d/e2/.")                        # check order: bad path vs ephemeral parent

    # ---- delete errors
    t.create(A, "/d/ne")
    t.create(A, "/d/ne/c", b"cc")
    t.delete(A, "/d/ne")                          # NotEmpty
    t.delete(A, "/d/ne/c", 5)                     # BadVersion
    t.delete(A, "/nope")
    t.delete(A, "/nope", 5)
    for path in ("/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config", "rel", "", "/d/", "/d/.",
                 "/d/x\x00"):
        t.delete(A, path)
    t.delete(A, "/d/ne/c", 0)
    t.delete(A, "/d/ne", 0)

    # ---- setData / getData / exists / getChildren
    t.set(A, "/d", b"v1", 0)
    t.set(A, "/d", b"v2", 0)                      # BadVersion
    t.set(A, "/d", b"v2")
    t.set(A, "/d", b"v2")                         # identical data still bumps the version
    t.set(A, "/nope", b"x")
    t.set(A, "/nope", b"x", 7)
    t.set(A, "/d/p", None)                        # null data
    t.get(A, "/d/p")
    t.set(A, "/zookeeper/config", b"x")           # NoAuth: world READ only
    t.set(A, "/", b"root")
    t.get(A, "/")
    t.set(A, "/", b"")
    t.get(A, "/d")
    t.get(A, "/nope")
    t.get(A, "rel")
    t.get(A, "/d/")
    t.get(A, "/d/x\x00")
    t.exists(A, "/nope")
    t.exists(A, "/d/.")
    t.exists(A, "/d/x\x00")
    t.children(A, "/d")
    t.children2(A, "/d")
    t.children(A, "/nope")
    t.children2(A, "/nope")
    t.children2(A, "/")
    t.exists(A, "/d/es-0000000007")

    # ---- getAllChildrenNumber, getEphemerals, sync, check
    t.all_children_number(A, "/d")
    t.all_children_number(A, "/d/p")
    t.all_children_number(A, "/zookeeper")
    t.all_children_number(A, "/")
    t.all_children_number(A, "/nope")
    t.create(B, "/d/be", b"b", flags=1)
    bes = t.create(B, "/d/bes-", flags=3)
    for prefix in ("/", "", "/d/e", "/d/", "/d/es", "/zz"):
        t.ephemerals(A, prefix)
    t.ephemerals(B, "/")
    t.sync(A, "/d")
    t.sync(A, "/nope")
    t.sync(A, "bad")
    # A standalone check that succeeds is not sent: ZooKeeper (3.8, and master's
    # FinalRequestProcessor) answers it with SetDataResponse(null stat), which
    # fails to serialise, so the client never gets a reply - a ZooKeeper bug
    # Corral does not copy (it answers err 0).  Failing checks are answered.
    t.check(A, "/d", 0)                           # BadVersion
    t.check(A, "/nope", -1)

    # ---- ACLs and auth
    t.get_acl(A, "/d")
    t.get_acl(A, "/nope")
    t.auth(A, "digest", b"alice:pw")
    t.whoami(A)
    t.create(A, "/d/acl", b"secret", acl=[(31, "digest", ALICE), (1, "world", "anyone")])
    t.create(A, "/d/acl2", b"s2", acl=[(31, "auth", "")])
    t.get_acl(A, "/d/acl2")
    t.create(A, "/d/acl3", acl=[(31, "auth", "ignored"), (1, "world", "anyone")])
    t.get_acl(A, "/d/acl3")
    t.create(A, "/d/dup", acl=[(1, "world", "anyone"), (1, "world", "anyone")])
    t.get_acl(A, "/d/dup")
    t.create(A, "/d/perms", acl=[(0, "world", "anyone")])
    t.get_acl(A, "/d/perms")                      # neither READ nor ADMIN
    t.get(B, "/d/acl")                            # READ for everyone
    t.set(B, "/d/acl", b"x")                      # NoAuth
    t.get_acl(B, "/d/acl")                        # READ without ADMIN: digest shown as user:x
    t.set_acl(B, "/d/acl", OPEN_ACL)
    t.create(B, "/d/acl/c")
    t.get(B, "/d/acl2")
    t.get_acl(A, "/d/acl")
    t.set_acl(A, "/d/acl", [(31, "digest", ALICE), (3, "world", "anyone")], 0)
    t.set_acl(A, "/d/acl", OPEN_ACL, 0)           # BadVersion (aversion is 1 now)
    t.set_acl(A, "/d/acl", [])
    t.set_acl(A, "/d/acl", [(31, "foo", "bar")])
    t.set_acl(A, "/nope", OPEN_ACL)
    t.set_acl(A, "/zookeeper/config", OPEN_ACL)
    t.get_acl(A, "/d/acl")
    t.exists(A, "/d/acl")                         # aversion 1, mzxid unchanged
    t.set(B, "/d/acl", b"by-world-write")         # world has WRITE now
    t.auth(B, "digest", b"alice:wrong")           # accepted; just another identity
    t.whoami(B)
    t.set_acl(B, "/d/acl", OPEN_ACL)              # still NoAuth
    t.auth(B, "digest", b"bob:pw")
    t.auth(B, "ip", b"1.2.3.4")
    t.whoami(B)
    t.create(A, "/d/ipok", b"i", acl=[(31, "ip", "127.0.0.1")])
    t.create(A, "/d/ipnet", b"i", acl=[(31, "ip", "127.0.0.0/8")])
    t.create(A, "/d/ipno", b"i", acl=[(31, "ip", "10.0.0.0/8")])
    t.get(A, "/d/ipok")
    t.get(A, "/d/ipnet")
    t.get(A, "/d/ipno")                           # NoAuth
    t.sync(A, "/d/ipno")                          # sync has no ACL check
    t.exists(A, "/d/ipno")                        # exists has no ACL check
    t.all_children_number(A, "/d/ipno")
    t.create(A, "/d/bobs", b"b", acl=[(31, "digest", BOB)])
    t.get(A, "/d/bobs")
    t.get(B, "/d/bobs")
    t.delete(A, "/d/bobs")                        # DELETE is checked on the parent only

    # ---- multi / multiRead
    t.multi(A, "success", [
        # Deliberate difference: a create2 inside a multi answers with path + Stat in
        # Corral, as ZooKeeper 3.9 does (3.8 drops the Stat, ZOOKEEPER-4026); so the
        # multi here uses create, and crates/corral/tests/opcodes.rs covers create2.
        m_create("/d/m", b"m"), m_create("/d/m/a"), m_set("/d/m", b"m2"),
        m_check("/d/m", 1), m_delete("/d/m/a"), m_create("/d/m/s-", flags=2), m_create("/d/m/s-", flags=2),
        m_create("/d/m/ct", op=rz.OP_CREATE_CONTAINER, flags=4),
        m_create("/d/m/ttl", op=rz.OP_CREATE_TTL, flags=5, ttl=3_600_000),
        m_create("/d/m/e", flags=1)])
    t.children2(A, "/d/m")
    t.exists(A, "/d/m/e")
    t.multi(A, "fails at op 2", [m_create("/d/m/b"), m_create("/d/m"), m_set("/d/m", b"q"), m_delete("/nope")])
    t.exists(A, "/d/m/b")                         # nothing applied
    t.multi(A, "fails at op 1", [m_delete("/nope"), m_create("/d/m/c")])
    t.multi(A, "check BadVersion", [m_create("/d/m/c"), m_check("/d/m", 99), m_set("/d/m", b"q")])
    t.multi(A, "check NoNode", [m_check("/nope", -1)])
    t.multi(A, "two failing ops", [m_create("/d/m"), m_delete("/nope")])
    t.multi(A, "invalid path", [m_create("/d/m/h"), m_create("bad")])
    t.multi(A, "ephemeral parent", [m_create("/d/e/x")])
    t.multi(A, "create then child", [m_create("/d/m/f"), m_create("/d/m/f/g", b"g")])
    t.multi(A, "empty", [])
    t.multi(A, "with a read op", [m_create("/d/m/r"), m_get("/d/m")])   # MarshallingError, stays open
    t.exists(A, "/d/m/r")
    t.multi(A, "getData, getData missing, getChildren, getChildren missing",
            [m_get("/d/m"), m_get("/nope"), m_children("/d/m"), m_children("/nope")], op=rz.OP_MULTI_READ)
    t.multi(A, "with a write op", [m_get("/d/m"), m_create("/d/m/w")], op=rz.OP_MULTI_READ)
    t.multi(A, "empty", [], op=rz.OP_MULTI_READ)
    t.multi(A, "NoAuth read", [m_get("/d/ipno"), m_get("/d")], op=rz.OP_MULTI_READ)
    t.multi(A, "NoAuth write", [m_set("/d/ipno", b"x")])

    # ---- one-shot watches
    t.create(A, "/d/w", b"w0")
    t.get(A, "/d/w", watch=True)
    t.set(A, "/d/w", b"w1")                       # own write: event before the reply
    t.exists(A, "/d/w/c", watch=True)
    t.children(A, "/d/w", watch=True)
    t.create(B, "/d/w/c")                         # other session's write
    t.flush(A)
    t.get(A, "/d/w", watch=True)
    t.exists(A, "/d/w", watch=True)
    t.set(B, "/d/w", b"w2")
    t.set(B, "/d/w", b"w3")                       # one-shot: a single event
    t.flush(A)
    t.get(A, "/d/nowatch", watch=True)            # NoNode leaves no watch
    t.children(A, "/d/nowatch2", watch=True)
    t.create(B, "/d/nowatch")
    t.create(B, "/d/nowatch2")
    t.flush(A)
    t.get(A, "/d/w/c", watch=True)
    t.children(A, "/d/w/c", watch=True)
    t.exists(A, "/d/w/c", watch=True)
    t.children(A, "/d/w", watch=True)
    t.delete(B, "/d/w/c")                         # one NodeDeleted plus the parent's child event
    t.flush(A)
    t.exists(A, "/d/w/x", watch=True)
    t.create(A, "/d/w/x")                         # own create fires the exist watch
    t.get(A, "/d/w/x", watch=True)
    t.get(B, "/d/w/x", watch=True)
    t.set(A, "/d/w/x", b"both")                   # both sessions notified
    t.flush(B)
    t.get(A, "/d/w/x", watch=True)
    t.delete(A, "/d/w/x")

    # ---- checkWatches / removeWatches
    t.check_watches(A, "/d/w", 3)                 # NoWatcher
    t.remove_watches(A, "/d/w", 3)
    t.remove_watches(A, "/nope", 1)
    t.get(A, "/d/w", watch=True)
    t.check_watches(A, "/d/w", 2)
    t.check_watches(A, "/d/w", 1)                 # NoWatcher
    t.check_watches(A, "/d/w", 3)
    t.remove_watches(A, "/d/w", 1)                # NoWatcher
    t.remove_watches(A, "/d/w", 2)
    t.check_watches(A, "/d/w", 3)
    t.set(B, "/d/w", b"w4")
    t.flush(A)                                    # nothing: the watch was removed
    t.children(A, "/d/w", watch=True)
    t.get(A, "/d/w", watch=True)
    t.remove_watches(A, "/d/w", 3)
    t.create(B, "/d/w/y")
    t.set(B, "/d/w", b"w5")
    t.flush(A)
    t.exists(A, "/d/w/none", watch=True)          # exist watch on a missing node
    t.check_watches(A, "/d/w/none", 2)
    t.remove_watches(A, "/d/w/none", 2)
    t.remove_watches(A, "/d/w", 7)                # bad type: MarshallingError
    t.check_watches(A, "/d/w", 0)

    # ---- persistent and persistent-recursive watches
    t.add_watch(A, "/d/pw", 0)                    # before the node exists
    t.create(B, "/d/pw", b"0")
    t.set(B, "/d/pw", b"1")
    t.create(B, "/d/pw/k")
    t.set(B, "/d/pw/k", b"k")                     # no event: child data
    t.delete(B, "/d/pw/k")
    t.delete(B, "/d/pw")
    t.create(B, "/d/pw")
    t.flush(A)
    t.set(A, "/d/pw", b"own")                     # persistent: fires again, before the reply
    t.add_watch(A, "/d/pr", 1)
    t.create(B, "/d/pr")
    t.create(B, "/d/pr/a")
    t.create(B, "/d/pr/a/b", b"b")
    t.set(B, "/d/pr/a/b", b"b2")
    t.delete(B, "/d/pr/a/b")
    t.create(B, "/d/pr2")                         # sibling with the same string prefix: nothing
    t.flush(A)
    t.set(A, "/d/pr/a", b"own")
    t.add_watch(A, "/d/pr", 5)                    # bad mode
    t.check_watches(A, "/d/pw", 1)
    t.check_watches(A, "/d/pw", 2)
    t.check_watches(A, "/d/pw", 3)
    t.check_watches(A, "/d/pr", 3)
    t.remove_watches(A, "/d/pw", 3)
    t.remove_watches(A, "/d/pr", 3)
    t.set(B, "/d/pw", b"after")
    t.create(B, "/d/pr/z")
    t.flush(A)
    t.add_watch(B, "/d/pq", 1)                    # recursive + persistent on a descendant, same session
    t.add_watch(B, "/d/pq/sub", 0)
    t.create(A, "/d/pq")
    t.create(A, "/d/pq/sub")
    t.flush(B)

    # ---- setWatches (reconnect-style re-registration) on a new session
    t.create(A, "/d/sw")
    t.create(A, "/d/sw/d")
    t.create(A, "/d/sw/del")
    rel = t.exists(A, "/d/sw")["zxid"]
    t.set(B, "/d/sw", b"chg")
    t.create(B, "/d/sw/new")
    t.delete(B, "/d/sw/del")
    t.connect("C")
    t.set_watches("C", rel,
                  data=["/d/sw", "/d/sw/del", "/d/sw/d", "/d/never"],
                  exist=["/d/sw/new", "/d/sw/none"],
                  child=["/d/sw", "/d/sw/d"])
    t.create(B, "/d/sw/none")
    t.set(B, "/d/sw/d", b"q")
    t.create(B, "/d/sw/d/k")
    t.flush("C")
    t.set_watches("C", rel, data=[], exist=[], child=[], persistent=["/d/sw2"], recursive=["/d/sw3"])
    t.create(B, "/d/sw2")
    t.create(B, "/d/sw3")
    t.create(B, "/d/sw3/x")
    t.flush("C")

    # ---- container and TTL reaping, seen through a recursive watch
    t.create(A, "/reap")
    t.add_watch(A, "/reap", 1)
    t.create(B, "/reap/c", op=rz.OP_CREATE_CONTAINER, flags=4)
    t.create(B, "/reap/c/x")
    t.create(B, "/reap/p4", flags=4, op=rz.OP_CREATE)   # create with the container flag
    t.create(B, "/reap/p4/x")
    t.delete(B, "/reap/p4/x")
    t.create(B, "/reap/never", op=rz.OP_CREATE_CONTAINER, flags=4)   # never had a child
    t.create(B, "/reap/t", op=rz.OP_CREATE_TTL, flags=5, ttl=1000)
    t.delete(B, "/reap/c/x")                      # /reap/c is now an empty used container
    # A sends nothing meanwhile: its next frames are the recursive-watch events of
    # B's eight writes, then the reaper's NodeDeleted for /reap/c (reapable at
    # once) and, about a second later, for the expired TTL node /reap/t.
    t.wait_events(A, 10)
    time.sleep(3 * CHECK_INTERVAL_MS / 1000)      # more passes: nothing else is reaped
    t.flush(A)
    t.children2(A, "/reap")

    # ---- malformed bodies: MarshallingError, the connection stays open
    t.call(A, "getData(null path)", rz.OP_GET_DATA, rz.w_str(None) + rz.w_bool(False), t._data_stat)
    t.call(A, "create2(null path)", rz.OP_CREATE2, rz.create_body(None), t._path_stat)
    t.call(A, "setData(truncated body)", rz.OP_SET_DATA, rz.w_str("/d"))
    t.exists(A, "/d/ct")

    # ---- reconfig, ping, 4lw
    t.call(A, "reconfig", rz.OP_RECONFIG, rz.reconfig_body(), None)
    t.flush(A)
    t.call(A, "ping(xid=77)", rz.OP_PING, xid=77, reply_xid="any")   # ZooKeeper answers with xid -2
    t.four_letter("ruok")
    t.four_letter("isro")
    t.four_letter("srvr")

    # ---- closing: B's ephemerals go, A's watches on them fire
    t.exists(A, "/d/be", watch=True)
    t.children(A, "/d", watch=True)
    t.ephemerals(B, "/")
    if bes and bes["value"]:
        # Leave B one ephemeral: ZooKeeper deletes a closing session's ephemerals
        # in hash-set order, which the event order would otherwise depend on.
        t.delete(B, bes["value"][0])
    t.close_session(B)
    t.flush(A)
    t.exists(A, "/d/be")
    t.children2(A, "/d")

    # ---- an unknown opcode: Unimplemented, then the connection is closed
    t.connect("D")
    t.create("D", "/d/de", flags=1)
    t.call("D", "opcode 999", 999, b"")
    t.expect_close("D")
    t.exists(A, "/d/de")                          # the session outlives its connection

    # ---- an unknown auth scheme: AuthFailed, then the connection is closed
    t.connect("E")
    t.auth("E", "foo", b"bar")
    t.expect_close("E")

    # ---- handshakes: resume a session on a new connection, wrong password,
    # unknown session, a client that has seen a newer zxid, the readOnly byte
    t.create(A, "/d/ae", flags=1)
    t.connect("A2", resume=A, timeout_ms=20000, what="connect(resume A)")
    t.expect_close(A)                             # the old connection is closed
    t.exists("A2", "/d/ae")                       # same session: its ephemeral is kept
    t.connect("Y", timeout_ms=1000, read_only=False, what="connect(timeout=1000, readOnly byte sent)")
    t.connect("X", resume="Y", wrong_passwd=True, what="connect(resume Y, wrong password)")
    t.expect_close("X")
    # Deliberate difference: ZooKeeper also closes Y's live connection when someone
    # presents Y's id with a wrong password (anyone who learns a session id can cut
    # it off); Corral refuses only the impostor. So Y's old connection is not probed.
    t.connect("Y2", resume="Y", what="connect(resume Y)")
    t.close_session("Y2")
    t.connect("W", resume=B, what="connect(resume the closed session B)")
    t.expect_close("W")
    t.connect("Z", last_zxid=(t.max_zxid or 0) + 1_000_000, what="connect(lastZxidSeen from the future)")
    t.close_session("A2")
    t.connect("F")
    t.exists("F", "/d/e")                         # A's ephemerals are gone
    t.children2("F", "/d")
    t.all_children_number("F", "/")
    t.close_session("F")


def run_script(srv: ServerProcess) -> Transcript:
    t = Transcript(srv.target, srv.port)
    try:
        script(t)
    finally:
        t.close_all()
    return t


# ---------------------------------------------------------------------------
# the test
# ---------------------------------------------------------------------------

@pytest.fixture
def both_servers(tmp_path, request, monkeypatch):
    """A Corral and an Apache ZooKeeper server with the same settings."""
    _require_zookeeper()
    # ZooKeeper's JVM can take longer to accept sessions than the Corral default allows.
    monkeypatch.setattr(conftest, "READY_TIMEOUT", max(conftest.READY_TIMEOUT, 40.0))
    servers = {}
    for target in ("zookeeper", "corral"):
        workdir = tmp_path / target
        workdir.mkdir()
        srv = ServerProcess(workdir, CFG)
        srv.target = target
        servers[target] = srv
        getattr(request.node, "_corral_servers", []).append((target, srv, 0))
    try:
        # Started from this (main) thread: the servers get PR_SET_PDEATHSIG, which
        # fires when the *thread* that forked them ends.
        for srv in servers.values():
            srv.start()
        yield servers
    finally:
        for srv in servers.values():
            srv.stop()   # only the process this fixture started, by its Popen handle


def test_same_transcript_as_zookeeper(both_servers, tmp_path):
    zk_srv, corral_srv = both_servers["zookeeper"], both_servers["corral"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        zk_future = pool.submit(run_script, zk_srv)
        corral_future = pool.submit(run_script, corral_srv)
        zk_t, corral_t = zk_future.result(), corral_future.result()

    (tmp_path / "transcript-zookeeper.txt").write_text("\n".join(zk_t.lines) + "\n")
    (tmp_path / "transcript-corral.txt").write_text("\n".join(corral_t.lines) + "\n")
    assert corral_srv.alive(), f"Corral died during the script\n{corral_srv.log_tail()}"
    assert zk_srv.alive(), f"ZooKeeper died during the script\n{zk_srv.log_tail()}"

    if zk_t.lines != corral_t.lines:
        diff = "\n".join(difflib.unified_diff(
            zk_t.lines, corral_t.lines, "zookeeper (reference)", "corral", lineterm="", n=3))
        n_diff = sum(1 for line in diff.splitlines()
                     if line[:1] in "+-" and not line.startswith(("+++", "---")))
        pytest.fail(
            f"Corral's transcript differs from ZooKeeper's ({len(zk_t.lines)} vs {len(corral_t.lines)} "
            f"lines, {n_diff} differing). Full transcripts: {tmp_path}/transcript-*.txt\n{diff}",
            pytrace=False)
