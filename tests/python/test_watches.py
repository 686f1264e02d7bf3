"""Watches: one-shot watches, DataWatch/ChildrenWatch recipes, persistent watches."""

import threading
import time

import pytest
from conftest import wait_until
from kazoo.protocol.states import EventType
from zkext import AddWatchMode, ExtKazooClient, WatcherType


class Recorder:
    """Thread-safe list of watch events."""

    def __init__(self):
        self.events = []
        self._lock = threading.Lock()

    def __call__(self, event):
        with self._lock:
            self.events.append(event)

    def snapshot(self):
        with self._lock:
            return list(self.events)

    def pairs(self):
        return [(e.type, e.path) for e in self.snapshot()]


def test_get_watch_fires_exactly_once(zk, root):
    path = f"{root}/w"
    zk.create(path, b"0")
    rec = Recorder()
    assert zk.get(path, watch=rec)[0] == b"0"

    zk.set(path, b"1")
    wait_until(lambda: rec.snapshot(), message="data watch event")
    zk.set(path, b"2")
    zk.sync(path)
    time.sleep(0.5)
    assert rec.pairs() == [(EventType.CHANGED, path)]


def test_exists_watch_fires_on_create(zk, root):
    path = f"{root}/later"
    rec = Recorder()
    assert zk.exists(path, watch=rec) is None
    zk.create(path, b"")
    wait_until(lambda: rec.snapshot(), message="exists watch event")
    assert rec.pairs() == [(EventType.CREATED, path)]


def test_exists_watch_fires_on_delete(zk, root):
    path = f"{root}/gone"
    zk.create(path, b"")
    rec = Recorder()
    assert zk.exists(path, watch=rec) is not None
    zk.delete(path)
    wait_until(lambda: rec.snapshot(), message="delete event")
    assert rec.pairs() == [(EventType.DELETED, path)]


def test_child_watch_fires_on_create_and_delete(zk, root):
    rec = Recorder()
    assert zk.get_children(root, watch=rec) == []
    zk.create(f"{root}/c1", b"")
    wait_until(lambda: rec.snapshot(), message="child event")
    assert rec.pairs() == [(EventType.CHILD, root)]

    rec2 = Recorder()
    zk.get_children(root, watch=rec2)
    zk.set(f"{root}/c1", b"data change is not a child change")
    zk.delete(f"{root}/c1")
    wait_until(lambda: rec2.snapshot(), message="child event on delete")
    assert rec2.pairs() == [(EventType.CHILD, root)]


def test_delete_fires_data_and_child_watches(zk, root):
    path = f"{root}/node"
    zk.create(path, b"")
    data_rec, child_rec = Recorder(), Recorder()
    zk.get(path, watch=data_rec)
    zk.get_children(path, watch=child_rec)
    zk.delete(path)
    wait_until(lambda: data_rec.snapshot() and child_rec.snapshot(), message="both deletion events")
    assert data_rec.pairs() == [(EventType.DELETED, path)]
    assert child_rec.pairs() == [(EventType.DELETED, path)]


def test_watch_triggered_by_other_client(zk, zk_factory, root):
    other = zk_factory()
    path = f"{root}/shared"
    zk.create(path, b"a")
    rec = Recorder()
    zk.get(path, watch=rec)
    other.set(path, b"b")
    wait_until(lambda: rec.snapshot(), message="event caused by another session")
    assert rec.pairs() == [(EventType.CHANGED, path)]
    assert zk.get(path)[0] == b"b"


def test_data_watch_recipe(zk, root):
    path = f"{root}/dw"
    calls = []
    lock = threading.Lock()

    @zk.DataWatch(path)
    def watcher(data, stat):
        with lock:
            calls.append((data, stat.version if stat else None))

    def seen(expected):
        with lock:
            return calls and calls[-1] == expected

    wait_until(lambda: seen((None, None)), message="initial DataWatch call")
    zk.create(path, b"one")
    wait_until(lambda: seen((b"one", 0)), message="DataWatch after create")
    zk.set(path, b"two")
    wait_until(lambda: seen((b"two", 1)), message="DataWatch after set")
    zk.delete(path)
    wait_until(lambda: seen((None, None)), message="DataWatch after delete")


def test_children_watch_recipe(zk, root):
    calls = []
    lock = threading.Lock()

    @zk.ChildrenWatch(root)
    def watcher(children):
        with lock:
            calls.append(sorted(children))

    def latest():
        with lock:
            return calls[-1] if calls else None

    wait_until(lambda: latest() == [], message="initial ChildrenWatch call")
    zk.create(f"{root}/x", b"")
    wait_until(lambda: latest() == ["x"], message="ChildrenWatch after first create")
    zk.create(f"{root}/y", b"")
    wait_until(lambda: latest() == ["x", "y"], message="ChildrenWatch after second create")
    zk.delete(f"{root}/x")
    wait_until(lambda: latest() == ["y"], message="ChildrenWatch after delete")


# ---------------------------------------------------------------------------
# ZooKeeper 3.6+ persistent watches (addWatch) and removeWatches, via zkext
# ---------------------------------------------------------------------------


@pytest.fixture
def xzk(zk_factory):
    return zk_factory(cls=ExtKazooClient)


def test_persistent_watch_survives_triggers(xzk, root):
    path = f"{root}/p"
    rec = Recorder()
    xzk.add_watch(path, rec, AddWatchMode.PERSISTENT)
    xzk.create(path, b"")
    xzk.set(path, b"1")
    xzk.set(path, b"2")
    xzk.create(f"{path}/child", b"")
    xzk.create(f"{path}/child/grandchild", b"")  # not reported: not recursive
    xzk.delete(f"{path}/child/grandchild")
    xzk.delete(f"{path}/child")
    xzk.delete(path)
    expected = [
        (EventType.CREATED, path),
        (EventType.CHANGED, path),
        (EventType.CHANGED, path),
        (EventType.CHILD, path),
        (EventType.CHILD, path),
        (EventType.DELETED, path),
    ]
    wait_until(lambda: len(rec.snapshot()) >= len(expected), message="persistent watch events")
    time.sleep(0.3)
    assert rec.pairs() == expected


def test_persistent_recursive_watch(xzk, root):
    base = f"{root}/r"
    xzk.create(base, b"")
    rec = Recorder()
    xzk.add_watch(base, rec, AddWatchMode.PERSISTENT_RECURSIVE)
    xzk.create(f"{base}/a", b"")
    xzk.create(f"{base}/a/b", b"")
    xzk.set(f"{base}/a/b", b"x")
    xzk.create(f"{root}/outside", b"")  # sibling of the watched node: not reported
    xzk.delete(f"{base}/a/b")
    xzk.set(base, b"y")
    expected = [
        (EventType.CREATED, f"{base}/a"),
        (EventType.CREATED, f"{base}/a/b"),
        (EventType.CHANGED, f"{base}/a/b"),
        (EventType.DELETED, f"{base}/a/b"),
        (EventType.CHANGED, base),
    ]
    wait_until(lambda: len(rec.snapshot()) >= len(expected), message="recursive watch events")
    time.sleep(0.3)
    # no NodeChildrenChanged events are ever sent to recursive watches
    assert rec.pairs() == expected


def test_remove_all_watches(xzk, root):
    path = f"{root}/rm"
    xzk.create(path, b"")
    rec = Recorder()
    xzk.add_watch(path, rec, AddWatchMode.PERSISTENT_RECURSIVE)
    xzk.set(path, b"1")
    wait_until(lambda: rec.snapshot(), message="event before removal")
    xzk.remove_all_watches(path, WatcherType.ANY)
    xzk.set(path, b"2")
    xzk.create(f"{path}/c", b"")
    xzk.sync(path)
    time.sleep(0.5)
    assert rec.pairs() == [(EventType.CHANGED, path)]


def test_remove_one_shot_data_watch(xzk, root):
    path = f"{root}/rm1"
    xzk.create(path, b"")
    rec = Recorder()
    xzk.get(path, watch=rec)
    xzk.remove_all_watches(path, WatcherType.DATA)
    xzk.set(path, b"1")
    xzk.sync(path)
    time.sleep(0.5)
    assert rec.pairs() == []
