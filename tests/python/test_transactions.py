"""Multi-op transactions (client.transaction())."""

from kazoo.exceptions import (
    BadVersionError,
    NodeExistsError,
    NoNodeError,
    RolledBackError,
    RuntimeInconsistency,
)
from kazoo.protocol.states import ZnodeStat


def test_transaction_success(zk, root):
    zk.create(f"{root}/existing", b"old")
    zk.create(f"{root}/doomed", b"")

    t = zk.transaction()
    t.create(f"{root}/a", b"1")
    t.create(f"{root}/a/child", b"2")
    t.set_data(f"{root}/existing", b"new")
    t.check(f"{root}/existing", 1)
    t.delete(f"{root}/doomed")
    t.create(f"{root}/seq-", b"", sequence=True)
    results = t.commit()

    assert results[0] == f"{root}/a"
    assert results[1] == f"{root}/a/child"
    assert isinstance(results[2], ZnodeStat) and results[2].version == 1
    assert results[3] is True
    assert results[4] is True
    assert results[5].startswith(f"{root}/seq-") and len(results[5].rsplit("-", 1)[1]) == 10

    assert zk.get(f"{root}/a/child")[0] == b"2"
    assert zk.get(f"{root}/existing")[0] == b"new"
    assert zk.exists(f"{root}/doomed") is None
    assert zk.exists(results[5]) is not None
    # all ops of one transaction share a single zxid
    assert zk.exists(f"{root}/a").czxid == zk.exists(f"{root}/a/child").czxid


def test_transaction_failure_rolls_back(zk, root):
    zk.create(f"{root}/keep", b"orig")

    t = zk.transaction()
    t.create(f"{root}/first", b"")
    t.set_data(f"{root}/keep", b"changed")
    t.create(f"{root}/no/parent", b"")  # fails: parent missing
    t.create(f"{root}/last", b"")
    results = t.commit()

    assert len(results) == 4
    assert isinstance(results[0], RolledBackError)
    assert isinstance(results[1], RolledBackError)
    assert isinstance(results[2], NoNodeError)
    assert isinstance(results[3], RuntimeInconsistency)

    assert zk.exists(f"{root}/first") is None
    assert zk.exists(f"{root}/last") is None
    data, stat = zk.get(f"{root}/keep")
    assert data == b"orig" and stat.version == 0
    assert zk.get_children(root) == ["keep"]


def test_transaction_check_version_failure(zk, root):
    zk.create(f"{root}/n", b"")
    zk.set(f"{root}/n", b"v1")  # version 1

    t = zk.transaction()
    t.check(f"{root}/n", 0)
    t.create(f"{root}/m", b"")
    results = t.commit()
    assert isinstance(results[0], BadVersionError)
    assert isinstance(results[1], RuntimeInconsistency)
    assert zk.exists(f"{root}/m") is None


def test_transaction_context_manager_commits(zk, root):
    with zk.transaction() as t:
        t.create(f"{root}/cm1", b"1")
        t.create(f"{root}/cm2", b"2")
    assert t.committed
    assert sorted(zk.get_children(root)) == ["cm1", "cm2"]


def test_transaction_ops_see_earlier_ops(zk, root):
    # create then delete of the same node in one transaction, and a duplicate create failing
    t = zk.transaction()
    t.create(f"{root}/tmp", b"")
    t.delete(f"{root}/tmp")
    t.create(f"{root}/final", b"x")
    assert t.commit() == [f"{root}/tmp", True, f"{root}/final"]
    assert zk.get_children(root) == ["final"]

    t = zk.transaction()
    t.create(f"{root}/dup", b"")
    t.create(f"{root}/dup", b"")
    results = t.commit()
    assert isinstance(results[0], RolledBackError)
    assert isinstance(results[1], NodeExistsError)
    assert zk.exists(f"{root}/dup") is None
