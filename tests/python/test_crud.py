"""Basic znode operations: create/get/set/delete/exists/get_children and their stats."""

import re

import pytest
from zkext import raw_create

from kazoo.exceptions import (
    BadArgumentsError,
    BadVersionError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
)


def test_create_get_set_delete_with_stats(zk, root):
    path = f"{root}/node"
    assert zk.create(path, b"hello") == path

    data, stat = zk.get(path)
    assert data == b"hello"
    assert stat.version == 0
    assert stat.cversion == 0
    assert stat.aversion == 0
    assert stat.dataLength == 5
    assert stat.numChildren == 0
    assert stat.ephemeralOwner == 0
    assert stat.czxid == stat.mzxid > 0
    assert stat.ctime == stat.mtime > 0

    stat1 = zk.set(path, b"world!")
    assert stat1.version == 1
    assert stat1.dataLength == 6
    assert stat1.czxid == stat.czxid
    assert stat1.mzxid > stat.mzxid
    assert stat1.mtime >= stat.mtime
    assert zk.get(path)[0] == b"world!"

    stat2 = zk.set(path, b"v2", version=1)
    assert stat2.version == 2
    with pytest.raises(BadVersionError):
        zk.set(path, b"stale", version=1)
    assert zk.get(path)[0] == b"v2"

    assert zk.exists(path) == stat2
    with pytest.raises(BadVersionError):
        zk.delete(path, version=0)
    zk.delete(path, version=2)
    assert zk.exists(path) is None


def test_missing_node_errors(zk, root):
    path = f"{root}/missing"
    assert zk.exists(path) is None
    with pytest.raises(NoNodeError):
        zk.get(path)
    with pytest.raises(NoNodeError):
        zk.set(path, b"x")
    with pytest.raises(NoNodeError):
        zk.delete(path)
    with pytest.raises(NoNodeError):
        zk.get_children(path)
    with pytest.raises(NoNodeError):
        zk.create(f"{path}/child", b"")


def test_node_exists_error(zk, root):
    path = f"{root}/dup"
    zk.create(path, b"first")
    with pytest.raises(NodeExistsError):
        zk.create(path, b"second")
    assert zk.get(path)[0] == b"first"


def test_empty_and_large_data(zk, root):
    zk.create(f"{root}/empty")
    data, stat = zk.get(f"{root}/empty")
    assert data == b""
    assert stat.dataLength == 0

    blob = bytes(range(256)) * 2000  # 512000 bytes, below the 1 MiB jute.maxbuffer default
    zk.create(f"{root}/big", blob)
    data, stat = zk.get(f"{root}/big")
    assert data == blob
    assert stat.dataLength == len(blob)


def test_children_and_parent_stat(zk, root):
    parent = f"{root}/parent"
    zk.create(parent, b"p")
    created = [zk.create(f"{parent}/{name}", name.encode()) for name in ("a", "b", "c")]
    assert sorted(zk.get_children(parent)) == ["a", "b", "c"]

    stat = zk.exists(parent)
    assert stat.numChildren == 3
    assert stat.cversion == 3
    assert stat.version == 0  # child changes do not bump the data version
    assert stat.pzxid == zk.exists(created[-1]).czxid

    children, stat2 = zk.get_children(parent, include_data=True)
    assert sorted(children) == ["a", "b", "c"]
    assert stat2.numChildren == 3

    with pytest.raises(NotEmptyError):
        zk.delete(parent)

    zk.delete(f"{parent}/b")
    stat3 = zk.exists(parent)
    assert stat3.numChildren == 2
    assert stat3.cversion == 4
    assert sorted(zk.get_children(parent)) == ["a", "c"]
    assert zk.get_children(f"{parent}/a") == []


def test_root_node_exists(zk, root):
    assert zk.exists("/") is not None
    assert root.lstrip("/") in zk.get_children("/")


def test_sequential_nodes(zk, root):
    parent = f"{root}/seq"
    zk.create(parent)
    names = [zk.create(f"{parent}/item-", b"", sequence=True) for _ in range(3)]
    assert names == [f"{parent}/item-{i:010d}" for i in range(3)]

    # Other children's creates/deletes in between never make the counter go back
    # (ZooKeeper derives it from the parent's cversion; the exact value after a
    # delete is an implementation detail, so only monotonicity is asserted).
    zk.create(f"{parent}/other")
    zk.delete(f"{parent}/other")
    nxt = zk.create(f"{parent}/item-", b"", sequence=True)
    assert re.fullmatch(rf"{parent}/item-\d{{10}}", nxt)
    assert nxt > names[-1]

    # A bare sequential name (prefix ends with "/") is just the counter.
    bare = zk.create(f"{parent}/", b"", sequence=True)
    assert re.fullmatch(rf"{parent}/\d{{10}}", bare)
    assert int(bare.rsplit("/", 1)[1]) > int(nxt.rsplit("-", 1)[1])
    assert sorted(zk.get_children(parent)) == sorted(
        [n.rsplit("/", 1)[1] for n in names + [nxt, bare]])


def test_ephemeral_node(zk, root):
    path = f"{root}/eph"
    zk.create(path, b"e", ephemeral=True)
    stat = zk.exists(path)
    assert stat.ephemeralOwner == zk.client_id[0]
    assert stat.ephemeralOwner != 0
    with pytest.raises(NoChildrenForEphemeralsError):
        zk.create(f"{path}/child", b"")

    seq = zk.create(f"{root}/eseq-", b"", ephemeral=True, sequence=True)
    assert seq.startswith(f"{root}/eseq-") and len(seq.rsplit("-", 1)[1]) == 10
    assert zk.exists(seq).ephemeralOwner == zk.client_id[0]


def test_makepath_and_ensure_path(zk, root):
    deep = f"{root}/a/b/c/d"
    assert zk.create(deep, b"leaf", makepath=True) == deep
    assert zk.get(deep)[0] == b"leaf"
    assert zk.get(f"{root}/a/b")[0] == b""

    assert zk.ensure_path(f"{root}/x/y/z")
    assert zk.exists(f"{root}/x/y/z") is not None
    assert zk.ensure_path(f"{root}/x/y/z")  # idempotent
    assert zk.ensure_path(deep)  # existing node untouched
    assert zk.get(deep)[0] == b"leaf"


def test_recursive_delete(zk, root):
    for p in ("t/a/1", "t/a/2", "t/b", "t/c/d/e"):
        zk.create(f"{root}/{p}", b"x", makepath=True)
    zk.delete(f"{root}/t", recursive=True)
    assert zk.exists(f"{root}/t") is None
    assert zk.get_children(root) == []


def test_create_include_data(zk, root):
    path, stat = zk.create(f"{root}/inc", b"abc", include_data=True)
    assert path == f"{root}/inc"
    assert stat.dataLength == 3
    assert stat.version == 0
    assert stat == zk.exists(path)


def test_unicode_path_and_data(zk, root):
    path = f"{root}/ünïcødé-节点"
    zk.create(path, "värde".encode())
    assert zk.get(path)[0].decode() == "värde"
    assert zk.get_children(root) == ["ünïcødé-节点"]


@pytest.mark.parametrize("suffix", ["/", "/.", "/..", "/a/", "/nul\x00"])
def test_invalid_paths_rejected_by_server(zk, root, suffix):
    # kazoo normalises paths client-side, so send the raw Create request.  The
    # parent of every bad path exists, so the only possible error is the
    # path validation (BadArguments).
    zk.ensure_path(f"{root}/a")
    with pytest.raises(BadArgumentsError):
        raw_create(zk, root + suffix)
    assert zk.get_children(root) == ["a"]
    assert zk.get_children(f"{root}/a") == []


def test_relative_path_rejected_by_server(zk):
    with pytest.raises(BadArgumentsError):
        raw_create(zk, "relative")


def test_zxid_increases_across_writes(zk, root):
    s1 = zk.create(f"{root}/z1", include_data=True)[1]
    s2 = zk.create(f"{root}/z2", include_data=True)[1]
    s3 = zk.set(f"{root}/z1", b"new")
    assert s1.czxid < s2.czxid < s3.mzxid


def test_sync(zk, root):
    assert zk.sync(root) == root
