"""A minimal raw ZooKeeper (jute) client for byte-level tests.

Unlike kazoo, nothing here normalises paths, retries, reorders or hides
frames: a ``RawConn`` sends exactly the request it is given and hands back
every frame the server writes (replies *and* notifications) in arrival
order.  Used by test_differential.py to compare Corral with Apache ZooKeeper
reply by reply.

Wire formats follow ZooKeeper's zookeeper.jute; all integers are big-endian.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct

# -- opcodes ----------------------------------------------------------------

OP_NOTIFICATION = 0
OP_CREATE = 1
OP_DELETE = 2
OP_EXISTS = 3
OP_GET_DATA = 4
OP_SET_DATA = 5
OP_GET_ACL = 6
OP_SET_ACL = 7
OP_GET_CHILDREN = 8
OP_SYNC = 9
OP_PING = 11
OP_GET_CHILDREN2 = 12
OP_CHECK = 13
OP_MULTI = 14
OP_CREATE2 = 15
OP_RECONFIG = 16
OP_CHECK_WATCHES = 17
OP_REMOVE_WATCHES = 18
OP_CREATE_CONTAINER = 19
OP_CREATE_TTL = 21
OP_MULTI_READ = 22
OP_AUTH = 100
OP_SET_WATCHES = 101
OP_GET_EPHEMERALS = 103
OP_GET_ALL_CHILDREN_NUMBER = 104
OP_SET_WATCHES2 = 105
OP_ADD_WATCH = 106
OP_WHO_AM_I = 107
OP_CLOSE_SESSION = -11

XID_NOTIFICATION = -1
XID_PING = -2
XID_AUTH = -4
XID_SET_WATCHES = -8

ERROR_NAMES = {
    0: "OK", -1: "SystemError", -2: "RuntimeInconsistency", -3: "DataInconsistency",
    -4: "ConnectionLoss", -5: "MarshallingError", -6: "Unimplemented", -7: "OperationTimeout",
    -8: "BadArguments", -13: "NewConfigNoQuorum", -14: "ReconfigInProgress", -15: "UnknownSession",
    -100: "APIError", -101: "NoNode", -102: "NoAuth", -103: "BadVersion",
    -108: "NoChildrenForEphemerals", -110: "NodeExists", -111: "NotEmpty", -112: "SessionExpired",
    -113: "InvalidCallback", -114: "InvalidACL", -115: "AuthFailed", -118: "SessionMoved",
    -119: "NotReadOnly", -120: "EphemeralOnLocalSession", -121: "NoWatcher", -122: "RequestTimeout",
    -123: "ReconfigDisabled", -124: "SessionClosedRequireSasl", -125: "QuotaExceeded",
    -127: "ThrottledOp",
}

EVENT_NAMES = {-1: "None", 1: "NodeCreated", 2: "NodeDeleted", 3: "NodeDataChanged",
               4: "NodeChildrenChanged", 5: "DataWatchRemoved", 6: "ChildWatchRemoved",
               7: "PersistentWatchRemoved"}

OPEN_ACL = [(31, "world", "anyone")]

STAT_FIELDS = ("czxid", "mzxid", "ctime", "mtime", "version", "cversion", "aversion",
               "ephemeralOwner", "dataLength", "numChildren", "pzxid")


def digest_id(user: str, password: str) -> str:
    """The id ZooKeeper's digest scheme derives from user:password."""
    sha = hashlib.sha1(f"{user}:{password}".encode()).digest()
    return f"{user}:{base64.b64encode(sha).decode()}"


# -- encoding -----------------------------------------------------------------

def w_int(v: int) -> bytes:
    return struct.pack(">i", v)


def w_long(v: int) -> bytes:
    return struct.pack(">q", v)


def w_bool(v: bool) -> bytes:
    return b"\x01" if v else b"\x00"


def w_buf(b: bytes | None) -> bytes:
    return w_int(-1) if b is None else w_int(len(b)) + b


def w_str(s: str | bytes | None) -> bytes:
    if s is None:
        return w_int(-1)
    if isinstance(s, str):
        s = s.encode("utf-8", "surrogatepass")
    return w_buf(s)


def w_strvec(v: list | None) -> bytes:
    return w_int(-1) if v is None else w_int(len(v)) + b"".join(w_str(x) for x in v)


def w_acl(acl: list | None) -> bytes:
    if acl is None:
        return w_int(-1)
    return w_int(len(acl)) + b"".join(w_int(p) + w_str(s) + w_str(i) for p, s, i in acl)


# Request bodies (everything after the RequestHeader).

def create_body(path, data=b"", acl=OPEN_ACL, flags=0, ttl=None) -> bytes:
    body = w_str(path) + w_buf(data) + w_acl(acl) + w_int(flags)
    return body if ttl is None else body + w_long(ttl)


def path_watch_body(path, watch=False) -> bytes:
    return w_str(path) + w_bool(watch)


def path_version_body(path, version=-1) -> bytes:
    return w_str(path) + w_int(version)


def set_data_body(path, data, version=-1) -> bytes:
    return w_str(path) + w_buf(data) + w_int(version)


def set_acl_body(path, acl, version=-1) -> bytes:
    return w_str(path) + w_acl(acl) + w_int(version)


def path_int_body(path, value) -> bytes:
    return w_str(path) + w_int(value)


def multi_body(ops) -> bytes:
    """ops: [(opcode, body)] -> MultiHeader-framed ops plus the terminator."""
    out = b"".join(w_int(t) + w_bool(False) + w_int(-1) + b for t, b in ops)
    return out + w_int(-1) + w_bool(True) + w_int(-1)


def reconfig_body(joining="", leaving="", members="", config_id=-1) -> bytes:
    return w_str(joining) + w_str(leaving) + w_str(members) + w_long(config_id)


def set_watches_body(rel_zxid, data, exist, child, persistent=None, recursive=None) -> bytes:
    body = w_long(rel_zxid) + w_strvec(data) + w_strvec(exist) + w_strvec(child)
    if persistent is not None or recursive is not None:
        body += w_strvec(persistent or []) + w_strvec(recursive or [])
    return body


def auth_body(scheme, auth: bytes) -> bytes:
    return w_int(0) + w_str(scheme) + w_buf(auth)


# -- decoding -----------------------------------------------------------------

class Reader:
    def __init__(self, data: bytes, offset: int = 0):
        self.b = data
        self.o = offset

    def remaining(self) -> int:
        return len(self.b) - self.o

    def rest(self) -> bytes:
        out = self.b[self.o:]
        self.o = len(self.b)
        return out

    def int(self) -> int:
        (v,) = struct.unpack_from(">i", self.b, self.o)
        self.o += 4
        return v

    def long(self) -> int:
        (v,) = struct.unpack_from(">q", self.b, self.o)
        self.o += 8
        return v

    def bool(self) -> bool:
        if self.o >= len(self.b):
            raise struct.error("bool past end of frame")
        v = self.b[self.o]
        self.o += 1
        return v != 0

    def buf(self) -> bytes | None:
        n = self.int()
        if n < 0:
            return None
        if self.o + n > len(self.b):
            raise struct.error("buffer past end of frame")
        v = self.b[self.o:self.o + n]
        self.o += n
        return v

    def str(self) -> str | None:
        v = self.buf()
        return None if v is None else v.decode("utf-8", "surrogateescape")

    def strvec(self) -> list | None:
        n = self.int()
        return None if n < 0 else [self.str() for _ in range(n)]

    def stat(self) -> dict:
        vals = (self.long(), self.long(), self.long(), self.long(), self.int(), self.int(),
                self.int(), self.long(), self.int(), self.int(), self.long())
        return dict(zip(STAT_FIELDS, vals))

    def acl(self) -> list | None:
        n = self.int()
        return None if n < 0 else [(self.int(), self.str(), self.str()) for _ in range(n)]


def decode_multi(r: Reader) -> list:
    """Multi / multiRead response body -> [(kind, ...)], ending with ('end', type, done, err)."""
    out = []
    while True:
        typ, done, err = r.int(), r.bool(), r.int()
        if done:
            out.append(("end", typ, err))
            return out
        if typ == -1:
            out.append(("error", err, r.int()))
        elif typ == OP_CREATE:
            out.append(("create", err, r.str()))
        elif typ in (OP_CREATE2, OP_CREATE_CONTAINER, OP_CREATE_TTL):
            out.append(("create2", typ, err, r.str(), r.stat()))
        elif typ == OP_DELETE:
            out.append(("delete", err))
        elif typ == OP_CHECK:
            out.append(("check", err))
        elif typ == OP_SET_DATA:
            out.append(("setData", err, r.stat()))
        elif typ == OP_GET_DATA:
            out.append(("getData", err, r.buf(), r.stat()))
        elif typ == OP_GET_CHILDREN:
            out.append(("getChildren", err, r.strvec()))
        else:
            out.append(("unknown-result-type", typ, err, r.rest().hex()))
            return out


# -- connection ---------------------------------------------------------------

class Closed(Exception):
    """The server closed the connection."""


class RawConn:
    """One TCP connection speaking the client protocol frame by frame."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send_frame(self, body: bytes) -> None:
        self.sock.sendall(w_int(len(body)) + body)

    def send_request(self, xid: int, op: int, body: bytes = b"") -> None:
        self.send_frame(w_int(xid) + w_int(op) + body)

    def _recv_exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            try:
                chunk = self.sock.recv(n - len(out))
            except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError) as exc:
                raise Closed(f"connection closed ({exc.__class__.__name__})") from exc
            if not chunk:
                raise Closed(f"EOF after {len(out)} of {n} bytes")
            out += chunk
        return out

    def recv_frame(self, timeout: float | None = None) -> bytes:
        """Next frame; socket.timeout if none within timeout, Closed on EOF."""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            (n,) = struct.unpack(">i", self._recv_exact(4))
            self.sock.settimeout(self.timeout)
            return self._recv_exact(n)
        finally:
            self.sock.settimeout(self.timeout)

    def connect(self, timeout_ms: int = 10000, session_id: int = 0, passwd: bytes = b"\0" * 16,
                last_zxid: int = 0, read_only: bool | None = None) -> dict:
        """Send a ConnectRequest and decode the ConnectResponse."""
        body = w_int(0) + w_long(last_zxid) + w_int(timeout_ms) + w_long(session_id) + w_buf(passwd)
        if read_only is not None:
            body += w_bool(read_only)
        self.send_frame(body)
        r = Reader(self.recv_frame())
        resp = {"protocolVersion": r.int(), "timeOut": r.int(), "sessionId": r.long(), "passwd": r.buf()}
        if r.remaining():
            resp["readOnly"] = r.bool()
        resp["extra"] = r.rest()
        return resp

    def wait_closed(self, timeout: float = 3.0) -> tuple[str, list[bytes]]:
        """Read until EOF: ('closed', frames) or ('open', frames) if still open after timeout."""
        frames = []
        try:
            while True:
                frames.append(self.recv_frame(timeout))
        except Closed:
            return "closed", frames
        except socket.timeout:
            return "open", frames
