"""ACLs and authentication."""

import base64
import hashlib

import pytest
from kazoo.exceptions import InvalidACLError, NoAuthError
from kazoo.security import (
    ACL,
    CREATOR_ALL_ACL,
    OPEN_ACL_UNSAFE,
    READ_ACL_UNSAFE,
    Id,
    Permissions,
    make_acl,
    make_digest_acl,
    make_digest_acl_credential,
)


def digest_id(user, password):
    raw = hashlib.sha1(f"{user}:{password}".encode()).digest()
    return f"{user}:{base64.b64encode(raw).decode()}"


def test_default_acl_is_open(zk, root):
    acls, stat = zk.get_acls(root)
    assert acls == OPEN_ACL_UNSAFE
    assert stat.aversion == 0


def test_digest_acl_protects_node(zk, zk_factory, root):
    path = f"{root}/secret"
    acl = make_digest_acl("alice", "pw", all=True)
    assert acl.id.id == digest_id("alice", "pw") == make_digest_acl_credential("alice", "pw")
    zk.create(path, b"data", acl=[acl])

    stranger = zk_factory()
    with pytest.raises(NoAuthError):
        stranger.get(path)
    with pytest.raises(NoAuthError):
        stranger.set(path, b"x")
    with pytest.raises(NoAuthError):
        stranger.create(f"{path}/child", b"")
    # exists needs no permission; get_acls needs READ or ADMIN (ZooKeeper 3.5+)
    assert stranger.exists(path) is not None
    with pytest.raises(NoAuthError):
        stranger.get_acls(path)

    wrong = zk_factory()
    wrong.add_auth("digest", "alice:wrong")
    with pytest.raises(NoAuthError):
        wrong.get(path)

    alice = zk_factory()
    alice.add_auth("digest", "alice:pw")
    assert alice.get(path)[0] == b"data"
    assert alice.get_acls(path)[0] == [acl]
    alice.set(path, b"new")
    alice.create(f"{path}/child", b"")
    assert alice.get_children(path) == ["child"]


def test_delete_needs_parent_delete_permission(zk, zk_factory, root):
    parent = f"{root}/locked-parent"
    zk.create(parent, b"", acl=[make_acl("world", "anyone", read=True, create=True, admin=True)])
    zk.create(f"{parent}/child", b"")
    with pytest.raises(NoAuthError):
        zk.delete(f"{parent}/child")
    # a protected node under an open parent can be deleted without access to it
    zk.create(f"{root}/protected", b"", acl=[make_digest_acl("bob", "pw", all=True)])
    zk.delete(f"{root}/protected")
    assert zk.exists(f"{root}/protected") is None
    # clean up: open the parent again so the fixture can remove it
    zk.set_acls(parent, OPEN_ACL_UNSAFE)


def test_read_only_acl(zk, root):
    path = f"{root}/ro"
    zk.create(path, b"r", acl=READ_ACL_UNSAFE)
    assert zk.get(path)[0] == b"r"
    with pytest.raises(NoAuthError):
        zk.set(path, b"w")
    with pytest.raises(NoAuthError):
        zk.create(f"{path}/c", b"")
    with pytest.raises(NoAuthError):
        zk.set_acls(path, OPEN_ACL_UNSAFE)


def test_set_acls_and_aversion(zk, zk_factory, root):
    path = f"{root}/n"
    zk.create(path, b"")
    acl = make_digest_acl("carol", "pw", read=True, write=True, admin=True)
    stat = zk.set_acls(path, [acl])
    assert stat.aversion == 1
    with pytest.raises(NoAuthError):
        zk.get(path)
    with pytest.raises(NoAuthError):
        zk.get_acls(path)

    carol = zk_factory()
    carol.add_auth("digest", "carol:pw")
    acls, stat = carol.get_acls(path)
    assert acls == [acl]
    assert stat.aversion == 1
    from kazoo.exceptions import BadVersionError

    with pytest.raises(BadVersionError):
        carol.set_acls(path, OPEN_ACL_UNSAFE, version=0)
    stat = carol.set_acls(path, OPEN_ACL_UNSAFE, version=1)
    assert stat.aversion == 2
    # `zk` may be on another member of an ensemble: sync before reading carol's change.
    zk.sync(path)
    assert zk.get(path)[0] == b""


def test_invalid_acls(zk, root):
    path = f"{root}/n"
    zk.create(path, b"")
    with pytest.raises(InvalidACLError):
        zk.set_acls(path, [])
    # KazooClient.create() replaces an empty list by the default ACL; create_async sends it as is
    with pytest.raises(InvalidACLError):
        zk.create_async(f"{root}/empty-acl", b"", acl=[]).get(timeout=10)
    with pytest.raises(InvalidACLError):
        zk.create(f"{root}/bad-scheme", b"", acl=[ACL(Permissions.ALL, Id("nosuchscheme", "x"))])
    # "auth" scheme without any authenticated identity
    with pytest.raises(InvalidACLError):
        zk.create(f"{root}/creator", b"", acl=CREATOR_ALL_ACL)
    assert zk.get_children(root) == ["n"]


def test_creator_all_acl_with_auth(zk_factory, root):
    dave = zk_factory()
    dave.add_auth("digest", "dave:pw")
    path = f"{root}/daves"
    dave.create(path, b"d", acl=CREATOR_ALL_ACL)
    acls, _ = dave.get_acls(path)
    assert acls == [ACL(Permissions.ALL, Id("digest", digest_id("dave", "pw")))]
    assert dave.get(path)[0] == b"d"

    other = zk_factory()
    with pytest.raises(NoAuthError):
        other.get(path)
    dave.delete(path)


def test_ip_acl(zk, zk_factory, root):
    path = f"{root}/local-only"
    zk.create(path, b"ip", acl=[make_acl("ip", "127.0.0.1", all=True)])
    assert zk.get(path)[0] == b"ip"
    zk.create(f"{root}/elsewhere", b"", acl=[make_acl("ip", "10.1.2.3", all=True)])
    with pytest.raises(NoAuthError):
        zk.get(f"{root}/elsewhere")
    zk.create(f"{root}/subnet", b"s", acl=[make_acl("ip", "127.0.0.0/8", read=True)])
    assert zk.get(f"{root}/subnet")[0] == b"s"


def test_multiple_auth_identities(zk_factory, root):
    c = zk_factory()
    c.create(f"{root}/e", b"", acl=[make_digest_acl("erin", "pw", all=True)])
    c.create(f"{root}/f", b"", acl=[make_digest_acl("frank", "pw", all=True)])
    c.add_auth("digest", "erin:pw")
    c.add_auth("digest", "frank:pw")
    assert c.get(f"{root}/e")[0] == b""
    assert c.get(f"{root}/f")[0] == b""
