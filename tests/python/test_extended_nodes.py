"""Container and TTL nodes (ZooKeeper 3.5.3+/3.6 create modes), via zkext."""

import time

import pytest
from conftest import wait_until
from kazoo.exceptions import NodeExistsError, NoNodeError, UnimplementedError
from zkext import ExtKazooClient

FAST_REAPER = {"znode.container.checkIntervalMs": "100"}
EXTENDED = {"extendedTypesEnabled": "true", **FAST_REAPER}

# ZooKeeper stores containers/TTL nodes with a special ephemeralOwner internally
# but reports 0 to clients (DataNode.copyStat -> getClientEphemeralOwner).


@pytest.fixture
def fast_server(server_factory):
    return server_factory(FAST_REAPER)


@pytest.fixture
def ext_server(server_factory):
    return server_factory(EXTENDED)


def test_container_removed_after_last_child(zk_factory, fast_server):
    zk = zk_factory(fast_server, cls=ExtKazooClient)
    path, stat = zk.create_container("/box", b"c")
    assert path == "/box"
    assert stat.ephemeralOwner == 0
    assert zk.get("/box")[0] == b"c"
    with pytest.raises(NodeExistsError):
        zk.create_container("/box")

    zk.create("/box/a", b"")
    zk.create("/box/b", b"")
    zk.delete("/box/a")
    time.sleep(0.5)
    assert zk.exists("/box") is not None, "container removed while it still had a child"
    zk.delete("/box/b")
    wait_until(lambda: zk.exists("/box") is None, timeout=15, message="empty container removal")


def test_container_never_used_is_kept(zk_factory, fast_server):
    zk = zk_factory(fast_server, cls=ExtKazooClient)
    zk.create_container("/unused")
    time.sleep(1.0)  # many reaper intervals: a container that never had children stays
    assert zk.exists("/unused") is not None


def test_container_needs_parent(zk_factory, fast_server):
    zk = zk_factory(fast_server, cls=ExtKazooClient)
    with pytest.raises(NoNodeError):
        zk.create_container("/no/parent")


def test_ttl_rejected_without_extended_types(zk_factory, root):
    zk = zk_factory(cls=ExtKazooClient)  # default server: extendedTypesEnabled unset
    with pytest.raises(UnimplementedError):
        zk.create_ttl(f"{root}/ttl", b"", ttl=1000)
    assert zk.exists(f"{root}/ttl") is None


def test_ttl_node_expires(zk_factory, ext_server):
    zk = zk_factory(ext_server, cls=ExtKazooClient)
    path, stat = zk.create_ttl("/ttl", b"t", ttl=500)
    assert path == "/ttl"
    assert zk.get("/ttl")[0] == b"t"
    assert stat.ephemeralOwner == 0
    assert zk.exists("/ttl").ephemeralOwner == 0
    created = time.monotonic()
    wait_until(lambda: zk.exists("/ttl") is None, timeout=15, message="TTL node expiry")
    assert time.monotonic() - created >= 0.4


def test_ttl_sequential(zk_factory, ext_server):
    zk = zk_factory(ext_server, cls=ExtKazooClient)
    zk.create("/p")
    path, _ = zk.create_ttl("/p/s-", b"", ttl=60000, sequence=True)
    assert path == "/p/s-0000000000"
    time.sleep(0.5)
    assert zk.exists(path) is not None  # long TTL: still there


def test_ttl_node_with_children_is_kept(zk_factory, ext_server):
    zk = zk_factory(ext_server, cls=ExtKazooClient)
    zk.create_ttl("/parent", b"", ttl=300)
    zk.create("/parent/child", b"")
    time.sleep(1.0)
    assert zk.exists("/parent") is not None, "TTL node with children must not expire"
    zk.delete("/parent/child")
    wait_until(lambda: zk.exists("/parent") is None, timeout=15, message="TTL expiry after child removal")


@pytest.mark.parametrize("ttl", [0, -5])
def test_ttl_invalid_value(zk_factory, ext_server, ttl):
    from kazoo.exceptions import BadArgumentsError

    zk = zk_factory(ext_server, cls=ExtKazooClient)
    with pytest.raises(BadArgumentsError):
        zk.create_ttl("/bad", b"", ttl=ttl)
