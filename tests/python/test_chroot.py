"""Clients with a chroot suffix in their connect string."""

import threading

from conftest import wait_until
from kazoo.protocol.states import EventType


def test_chroot_paths_are_relative(zk, zk_factory, root):
    chroot = f"{root}/chroot"
    zk.create(chroot, b"jail")
    jailed = zk_factory(chroot=chroot)

    assert jailed.get("/")[0] == b"jail"
    assert jailed.create("/a", b"1") == "/a"
    assert zk.get(f"{chroot}/a")[0] == b"1"
    assert jailed.get_children("/") == ["a"]
    assert jailed.create("/a/seq-", b"", sequence=True) == "/a/seq-0000000000"
    assert jailed.create("/n", include_data=True)[0] == "/n"
    jailed.ensure_path("/x/y/z")
    assert zk.exists(f"{chroot}/x/y/z") is not None
    assert jailed.exists(chroot) is None  # outside paths are not visible

    zk.create(f"{chroot}/from-outside", b"o")
    assert jailed.get("/from-outside")[0] == b"o"
    jailed.delete("/x", recursive=True)
    assert zk.exists(f"{chroot}/x") is None


def test_chroot_transaction_results_are_relative(zk, zk_factory, root):
    chroot = f"{root}/chroot"
    zk.create(chroot)
    jailed = zk_factory(chroot=chroot)
    t = jailed.transaction()
    t.create("/t1", b"")
    t.create("/t1/s-", b"", sequence=True)
    assert t.commit() == ["/t1", "/t1/s-0000000000"]


def test_chroot_watch_paths_are_relative(zk, zk_factory, root):
    chroot = f"{root}/chroot"
    zk.create(chroot)
    jailed = zk_factory(chroot=chroot)
    events = []
    fired = threading.Event()

    def watch(ev):
        events.append((ev.type, ev.path))
        fired.set()

    assert jailed.exists("/w", watch=watch) is None
    zk.create(f"{chroot}/w", b"")
    assert fired.wait(10)
    assert events == [(EventType.CREATED, "/w")]

    seen = []
    jailed.ChildrenWatch("/", lambda children: seen.append(sorted(children)))
    zk.create(f"{chroot}/v", b"")
    wait_until(lambda: seen and seen[-1] == ["v", "w"], message="children watch inside chroot")


def test_chroot_ephemeral_owner(zk, zk_factory, root):
    chroot = f"{root}/chroot"
    zk.create(chroot)
    jailed = zk_factory(chroot=chroot)
    jailed.create("/e", b"", ephemeral=True)
    assert zk.exists(f"{chroot}/e").ephemeralOwner == jailed.client_id[0]
    jailed.stop()
    wait_until(lambda: zk.exists(f"{chroot}/e") is None, message="ephemeral removed")
