"""Server configuration (zoo.cfg keys), session-timeout negotiation and persistence."""

import pytest
from conftest import raw_connect, wait_until
from kazoo.exceptions import ConnectionLoss, NoAuthError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.security import make_digest_acl


def test_default_session_timeout_bounds(server):
    # tickTime=2000: min = 2*tickTime, max = 20*tickTime
    assert raw_connect(server.port, 1000).time_out == 4000
    assert raw_connect(server.port, 10000).time_out == 10000
    assert raw_connect(server.port, 100000).time_out == 40000


def test_configured_session_timeout_bounds(server_factory):
    srv = server_factory({"minSessionTimeout": "3000", "maxSessionTimeout": "6000"})
    assert raw_connect(srv.port, 1000).time_out == 3000
    assert raw_connect(srv.port, 5000).time_out == 5000
    assert raw_connect(srv.port, 60000).time_out == 6000
    resp = raw_connect(srv.port, 5000)
    assert resp.session_id != 0 and len(resp.passwd) == 16


def test_tick_time_sets_default_bounds(server_factory):
    srv = server_factory({"tickTime": "500"})
    assert raw_connect(srv.port, 100).time_out == 1000
    assert raw_connect(srv.port, 60000).time_out == 10000


def test_max_client_connections(zk_factory, server_factory):
    srv = server_factory({"maxClientCnxns": "2"})
    zk_factory(srv)
    zk_factory(srv)
    third = zk_factory(srv, start=False)
    with pytest.raises(KazooTimeoutError):
        third.start(timeout=3)


def test_jute_maxbuffer_limits_request_size(zk_factory, server_factory):
    srv = server_factory({"jute.maxbuffer": "65536"})
    zk = zk_factory(srv)
    zk.create("/small", b"x" * 1000)
    with pytest.raises(ConnectionLoss):
        zk.set("/small", b"y" * 100_000)
    wait_until(lambda: zk.connected, message="client reconnect after oversized request")
    assert zk.retry(zk.get, "/small")[0] == b"x" * 1000


def _populate(zk):
    zk.create("/persist")
    seq = zk.create("/persist/seq-", b"", sequence=True)
    zk.create("/persist/a", b"alpha")
    zk.set("/persist/a", b"alpha2")
    zk.create("/persist/secret", b"s", acl=[make_digest_acl("u", "p", all=True)])
    zk.create("/persist/eph", b"", ephemeral=True)
    t = zk.transaction()
    t.create("/persist/t1", b"1")
    t.create("/persist/t2", b"2")
    t.commit()
    return zk.exists("/persist/a"), seq


def _check(zk, stat_a, seq):
    data, stat = zk.get("/persist/a")
    assert data == b"alpha2"
    assert stat.version == 1
    assert stat.mzxid == stat_a.mzxid and stat.czxid == stat_a.czxid
    assert seq == "/persist/seq-0000000000"
    assert sorted(zk.get_children("/persist")) == ["a", "secret", "seq-0000000000", "t1", "t2"]
    with pytest.raises(NoAuthError):
        zk.get("/persist/secret")
    # new writes get larger zxids than anything before the restart
    assert zk.create("/persist/after", include_data=True)[1].czxid > zk.exists("/persist/t2").czxid
    # the sequence counter does not restart from zero
    assert zk.create("/persist/seq-", b"", sequence=True) > "/persist/seq-0000000005"


@pytest.mark.parametrize("hard", [False, True], ids=["sigterm", "sigkill"])
def test_data_survives_restart(zk_factory, server_factory, hard):
    srv = server_factory()
    if srv.declares_memory_only():
        pytest.xfail("the server logs that it keeps data in memory only (no persistence yet)")
    zk = zk_factory(srv)
    observer = zk_factory(srv)
    stat_a, seq = _populate(zk)
    zk.stop()  # closes the session: its ephemeral node goes away before the restart
    wait_until(lambda: observer.exists("/persist/eph") is None, message="ephemeral removal")
    observer.stop()
    srv.restart(hard=hard)
    zk2 = zk_factory(srv)
    _check(zk2, stat_a, seq)
