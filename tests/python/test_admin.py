"""Four-letter words and server identification."""

import re

from conftest import four_letter_word


def test_ruok(zk):
    assert zk.command(b"ruok") == "imok"


def test_srvr(zk):
    out = zk.command(b"srvr")
    assert "Mode: standalone" in out
    assert re.search(r"^Zookeeper version: \d+\.\d+\.\d+", out, re.M), out
    assert re.search(r"^Zxid: 0x[0-9a-f]+$", out, re.M), out
    assert re.search(r"^Node count: \d+$", out, re.M), out


def test_stat_lists_clients(zk):
    out = zk.command(b"stat")
    assert "Mode: standalone" in out
    assert "Clients:" in out
    assert re.search(r"^Node count: \d+$", out, re.M), out


def test_server_version(zk):
    version = zk.server_version()
    assert isinstance(version, tuple) and len(version) >= 3
    assert all(isinstance(part, int) for part in version)
    assert version >= (3, 4, 0)


def test_envi(zk):
    out = zk.command(b"envi")
    assert "zookeeper.version=" in out


def test_isro(zk):
    assert zk.command(b"isro") == "rw"


def test_conf_reports_client_port(zk, server):
    out = zk.command(b"conf")
    assert f"clientPort={server.port}" in out


def test_mntr(zk, root):
    out = zk.command(b"mntr")
    values = dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)
    assert values.get("zk_server_state") == "standalone"
    assert int(values["zk_znode_count"]) >= 2
    assert "zk_version" in values


def test_unknown_command_does_not_kill_server(zk, server):
    try:
        four_letter_word(server.port, "xxxx", timeout=2)
    except OSError:
        pass
    assert zk.command(b"ruok") == "imok"
    assert zk.exists("/") is not None


def test_whitelist_restricts_commands(server_factory):
    srv = server_factory({"4lw.commands.whitelist": "ruok, srvr"})
    assert four_letter_word(srv.port, "ruok") == "imok"
    assert "Mode: standalone" in four_letter_word(srv.port, "srvr")
    assert "stat is not executed because it is not in the whitelist" in four_letter_word(srv.port, "stat")
