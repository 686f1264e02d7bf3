"""Sessions: ephemeral cleanup on close, expiry after a lost client, reconnects."""

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

from conftest import wait_until
from kazoo.protocol.states import KazooState


def test_client_ids_are_distinct(zk, zk_factory):
    other = zk_factory()
    sid1, passwd1 = zk.client_id
    sid2, passwd2 = other.client_id
    assert sid1 != 0 and sid2 != 0
    assert sid1 != sid2
    assert len(passwd1) == 16 and len(passwd2) == 16


def test_ephemeral_removed_when_session_closes(zk, zk_factory, root):
    owner = zk_factory()
    path = f"{root}/eph"
    owner.create(path, b"", ephemeral=True)
    owner.create(f"{root}/seq-", b"", ephemeral=True, sequence=True)
    assert zk.exists(path).ephemeralOwner == owner.client_id[0]

    deleted = threading.Event()
    zk.exists(path, watch=lambda ev: deleted.set())
    owner.stop()
    assert deleted.wait(10), "watch on the ephemeral did not fire after the owner closed"
    assert zk.exists(path) is None
    assert zk.get_children(root) == []


def test_ephemeral_survives_other_clients_close(zk, zk_factory, root):
    zk.create(f"{root}/mine", b"", ephemeral=True)
    other = zk_factory()
    other.stop()
    assert zk.exists(f"{root}/mine") is not None


def test_session_expires_after_client_dies(zk, server, root):
    """A client process killed without closing its session: its ephemeral node
    stays until the session times out, then disappears."""
    path = f"{root}/dead-client"
    script = textwrap.dedent(f"""
        import sys, time
        from kazoo.client import KazooClient
        c = KazooClient(hosts={server.host_port!r}, timeout=4.0)
        c.start(timeout=10)
        c.create({path!r}, b"", ephemeral=True)
        print(c.client_id[0], flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()
        assert line.strip(), "helper client failed to start"
        session_id = int(line)
        assert zk.exists(path).ephemeralOwner == session_id
        proc.kill()  # no closeSession is sent
        proc.wait(10)
        killed_at = time.monotonic()
        # still there right after the TCP connection dropped
        assert zk.exists(path) is not None
        wait_until(lambda: zk.exists(path) is None, timeout=30, message="session expiry")
        # negotiated timeout is 4s; expiry must not happen much earlier than that
        assert time.monotonic() - killed_at > 2.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_reconnect_keeps_session_and_ephemerals(zk, zk_factory, root):
    client = zk_factory()
    path = f"{root}/survivor"
    client.create(path, b"", ephemeral=True)
    session_before = client.client_id

    states = []
    lost = threading.Event()
    back = threading.Event()

    def listener(state):
        states.append(state)
        if state == KazooState.SUSPENDED:
            lost.set()
        elif state == KazooState.CONNECTED and lost.is_set():
            back.set()

    client.add_listener(listener)
    # drop the TCP connection under the client; it reconnects with its session id/password
    client._connection._socket.shutdown(socket.SHUT_RDWR)
    assert lost.wait(10), f"client never noticed the dropped connection: {states}"
    assert back.wait(15), f"client did not reconnect: {states}"
    assert KazooState.LOST not in states
    assert client.client_id == session_before
    assert zk.exists(path).ephemeralOwner == session_before[0]
    client.set(path, b"still works")
    assert zk.get(path)[0] == b"still works"


def test_watch_restored_after_reconnect(zk, zk_factory, root):
    client = zk_factory()
    path = f"{root}/w"
    client.create(path, b"0")
    fired = threading.Event()
    client.get(path, watch=lambda ev: fired.set())

    reconnected = threading.Event()
    lost = threading.Event()

    def listener(state):
        if state == KazooState.SUSPENDED:
            lost.set()
        elif state == KazooState.CONNECTED and lost.is_set():
            reconnected.set()

    client.add_listener(listener)
    client._connection._socket.shutdown(socket.SHUT_RDWR)
    assert reconnected.wait(15)
    zk.set(path, b"1")  # the watch was re-registered via SetWatches
    assert fired.wait(10)
