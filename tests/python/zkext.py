"""ZooKeeper 3.5/3.6+ operations that the pinned kazoo release does not expose.

kazoo 2.10/2.11 has no API for container nodes, TTL nodes, persistent /
persistent-recursive watches (addWatch) or removeWatches.  ExtKazooClient adds
them using kazoo's own request plumbing (``KazooClient._call``), with the wire
formats from ZooKeeper's zookeeper.jute:

  opcode 19 createContainer  CreateRequest{path,data,acl,flags=4}  -> Create2Response
  opcode 21 createTTL        CreateTTLRequest{path,data,acl,flags,ttl} -> Create2Response
  opcode 106 addWatch        AddWatchRequest{path,mode}            -> (empty)
  opcode 18 removeWatches    RemoveWatchesRequest{path,type}       -> (empty)

Persistent-watch events arrive as ordinary WatcherEvents; kazoo only knows
one-shot watchers, so the connection's event reader is wrapped to also deliver
events to the registered persistent watchers (without removing them).
"""

from __future__ import annotations

import threading
from collections import defaultdict, namedtuple

from kazoo.client import KazooClient, _prefix_root
from kazoo.exceptions import ZookeeperError, _zookeeper_exception
from kazoo.protocol.serialization import (
    Watch,
    int_struct,
    long_struct,
    read_string,
    stat_struct,
    write_buffer,
    write_string,
)
from kazoo.protocol.states import (
    EVENT_TYPE_MAP,
    Callback,
    WatchedEvent,
    ZnodeStat,
)
from kazoo.security import OPEN_ACL_UNSAFE

CHILD_EVENT_TYPE = 4  # ZooKeeper's NodeChildrenChanged

# CreateMode flags
CONTAINER = 4
PERSISTENT_WITH_TTL = 5
PERSISTENT_SEQUENTIAL_WITH_TTL = 6


class AddWatchMode:
    PERSISTENT = 0
    PERSISTENT_RECURSIVE = 1


class WatcherType:
    CHILDREN = 1
    DATA = 2
    ANY = 3
    PERSISTENT = 4
    PERSISTENT_RECURSIVE = 5


@_zookeeper_exception(-121)
class NoWatcherError(ZookeeperError):
    """ZooKeeper's NoWatcherException (kazoo does not know this code)."""


def _serialize_acl(acl):
    b = bytearray(int_struct.pack(len(acl)))
    for a in acl:
        b.extend(int_struct.pack(a.perms) + write_string(a.id.scheme) + write_string(a.id.id))
    return b


def _read_create2(buffer, offset):
    path, offset = read_string(buffer, offset)
    stat = ZnodeStat._make(stat_struct.unpack_from(buffer, offset))
    return path, stat


class CreateContainer(namedtuple("CreateContainer", "path data acl")):
    type = 19

    def serialize(self):
        b = bytearray(write_string(self.path))
        b.extend(write_buffer(self.data))
        b.extend(_serialize_acl(self.acl))
        b.extend(int_struct.pack(CONTAINER))
        return b

    @classmethod
    def deserialize(cls, buffer, offset):
        return _read_create2(buffer, offset)


class CreateTTL(namedtuple("CreateTTL", "path data acl flags ttl")):
    type = 21

    def serialize(self):
        b = bytearray(write_string(self.path))
        b.extend(write_buffer(self.data))
        b.extend(_serialize_acl(self.acl))
        b.extend(int_struct.pack(self.flags))
        b.extend(long_struct.pack(self.ttl))
        return b

    @classmethod
    def deserialize(cls, buffer, offset):
        return _read_create2(buffer, offset)


class AddWatch(namedtuple("AddWatch", "path mode")):
    type = 106

    def serialize(self):
        return bytearray(write_string(self.path) + int_struct.pack(self.mode))

    @classmethod
    def deserialize(cls, buffer, offset):
        return True


class RemoveWatches(namedtuple("RemoveWatches", "path watcher_type")):
    type = 18

    def serialize(self):
        return bytearray(write_string(self.path) + int_struct.pack(self.watcher_type))

    @classmethod
    def deserialize(cls, buffer, offset):
        return True


def _ancestors_and_self(path):
    yield path
    while path not in ("/", ""):
        path = path.rsplit("/", 1)[0] or "/"
        yield path


class ExtKazooClient(KazooClient):
    """KazooClient plus create_container / create_ttl / add_watch / remove_all_watches."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pw_lock = threading.Lock()
        self._persistent_watchers = defaultdict(list)  # full server path -> [fn]
        self._persistent_recursive_watchers = defaultdict(list)
        conn = self._connection
        original = conn._read_watch_event

        def read_watch_event(buffer, offset):
            try:
                self._dispatch_persistent(buffer, offset)
            finally:
                return original(buffer, offset)

        conn._read_watch_event = read_watch_event

    # -- requests -----------------------------------------------------------

    def _full(self, path):
        if not isinstance(path, str):
            raise TypeError("path must be a str")
        return _prefix_root(self.chroot, path)

    def create_container(self, path, value=b"", acl=None):
        """Create a container node; returns (path, ZnodeStat)."""
        result = self.handler.async_result()
        self._call(CreateContainer(self._full(path), value, acl or OPEN_ACL_UNSAFE), result)
        path, stat = result.get()
        return self.unchroot(path), stat

    def create_ttl(self, path, value=b"", ttl=1000, acl=None, sequence=False):
        """Create a persistent node with a TTL in ms; returns (path, ZnodeStat)."""
        flags = PERSISTENT_SEQUENTIAL_WITH_TTL if sequence else PERSISTENT_WITH_TTL
        result = self.handler.async_result()
        self._call(CreateTTL(self._full(path), value, acl or OPEN_ACL_UNSAFE, flags, int(ttl)), result)
        path, stat = result.get()
        return self.unchroot(path), stat

    def add_watch(self, path, watch, mode):
        """Add a persistent (mode 0) or persistent-recursive (mode 1) watch."""
        if not callable(watch):
            raise TypeError("watch must be callable")
        full = self._full(path)
        table = (self._persistent_recursive_watchers if mode == AddWatchMode.PERSISTENT_RECURSIVE
                 else self._persistent_watchers)
        with self._pw_lock:
            table[full].append(watch)
        result = self.handler.async_result()
        self._call(AddWatch(full, mode), result)
        try:
            return result.get()
        except Exception:
            with self._pw_lock:
                if watch in table[full]:
                    table[full].remove(watch)
            raise

    def remove_all_watches(self, path, watcher_type=WatcherType.ANY):
        """Remove all watches of watcher_type that this session holds on path."""
        full = self._full(path)
        result = self.handler.async_result()
        self._call(RemoveWatches(full, watcher_type), result)
        result.get()
        with self._pw_lock:
            if watcher_type in (WatcherType.ANY, WatcherType.PERSISTENT):
                self._persistent_watchers.pop(full, None)
            if watcher_type in (WatcherType.ANY, WatcherType.PERSISTENT_RECURSIVE):
                self._persistent_recursive_watchers.pop(full, None)
            if watcher_type in (WatcherType.ANY, WatcherType.DATA):
                self._data_watchers.pop(full, None)
            if watcher_type in (WatcherType.ANY, WatcherType.CHILDREN):
                self._child_watchers.pop(full, None)
        return True

    # -- event delivery -----------------------------------------------------

    def _dispatch_persistent(self, buffer, offset):
        watch, _ = Watch.deserialize(buffer, offset)
        if watch.type not in EVENT_TYPE_MAP or self._stopped.is_set():
            return
        with self._pw_lock:
            fns = list(self._persistent_watchers.get(watch.path, ()))
            if watch.type != CHILD_EVENT_TYPE:  # recursive watches never get child events
                for p in _ancestors_and_self(watch.path):
                    fns.extend(self._persistent_recursive_watchers.get(p, ()))
        if not fns:
            return
        event = WatchedEvent(EVENT_TYPE_MAP[watch.type], self._state, self.unchroot(watch.path))
        for fn in fns:
            self.handler.dispatch_callback(Callback("watch", fn, (event,)))


def raw_create(client, path, value=b"", flags=0, acl=None):
    """Send a Create request with the path exactly as given (no kazoo
    normalisation), to exercise the server's own path validation."""
    from kazoo.protocol.serialization import Create

    result = client.handler.async_result()
    client._call(Create(path, value, acl or OPEN_ACL_UNSAFE, flags), result)
    return result.get()
