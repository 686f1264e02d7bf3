#!/usr/bin/env python3
"""Ensemble benchmark: Corral vs Apache ZooKeeper 3.8, 3-member ensembles side by side.

For each server kind (one after the other, never both at once), in one run:

  1. start a 3-member ensemble on loopback (free ports, fresh data dirs, fsync on;
     Debian's zoo.cfg defaults tickTime=2000, initLimit=10, syncLimit=5) and wait
     until every member serves a session;
  2. write throughput: create N znodes of 100 bytes (default 100,000) over C
     connections spread across the members, W requests in flight on each
     (raw jute frames, so the client is not the bottleneck);
  3. failover, R times (default 5): SIGKILL the leader (found with `srvr`), then
     from the survivors' client ports try a create every 10 ms (a new session
     each time, 0.5 s timeouts) until one is acknowledged; the time from the
     SIGKILL to that acknowledgement is the failover time. The killed member is
     restarted and the ensemble waits until all three serve before the next round;
  4. stop every member.

Then print a table (metric, ZooKeeper, Corral, ratio Corral/ZooKeeper); --json
FILE also writes all numbers. ZooKeeper runs as `java -Xmx<--zk-heap> -cp
zookeeper.jar:slf4j-simple.jar org.apache.zookeeper.server.quorum.QuorumPeerMain
zoo.cfg`, logging at WARN, with `admin.enableServer=false`.

Only processes this script starts are ever signalled, by their PID.

Usage:  python3 bench/ensemble.py [--creates N] [--rounds R] [--json FILE] [--only corral|zookeeper]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from restart_memory import (  # noqa: E402  (shared raw client and helpers)
    DEBIAN_ZOO_CFG, Session, ZkError, _die_with_parent, free_port, log, populate, write_json, zk_classpath,
)

REPO = Path(__file__).resolve().parents[1]
MEMBERS = 3


def four_letter(port: int, cmd: str, timeout: float = 1.0) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(cmd.encode())
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out.decode(errors="replace")
            out += chunk


def mode(port: int) -> str | None:
    try:
        for line in four_letter(port, "srvr").splitlines():
            if line.startswith("Mode:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


class Member:
    def __init__(self, kind: str, my_id: int, workdir: Path, servers: dict, args):
        self.kind, self.my_id, self.args = kind, my_id, args
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True)
        (self.data_dir / "myid").write_text(f"{my_id}\n")
        self.port = free_port()
        self.log_path = workdir / "server.log"
        self.cfg = workdir / "zoo.cfg"
        cfg = dict(DEBIAN_ZOO_CFG)
        cfg.update({"dataDir": str(self.data_dir), "clientPort": str(self.port),
                    "clientPortAddress": "127.0.0.1", "admin.enableServer": "false",
                    "4lw.commands.whitelist": "srvr,ruok", **servers})
        self.cfg.write_text("".join(f"{k}={v}\n" for k, v in cfg.items()))
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        if self.kind == "zookeeper":
            return [shutil.which("java") or "java", f"-Xmx{self.args.zk_heap}",
                    "-Dzookeeper.admin.enableServer=false",
                    "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                    "-Dzookeeper.jmx.log4j.disable=true",
                    "-cp", zk_classpath(),
                    "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(self.cfg)]
        return [str(self.args.corral_bin), "server", "--config", str(self.cfg)]

    def start(self) -> None:
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, cwd=self.workdir,
                                         preexec_fn=_die_with_parent, env={**os.environ, "NO_COLOR": "1"})

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def sigkill(self) -> None:
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc:
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.alive():
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)

    def serves(self) -> bool:
        try:
            Session(self.port, timeout=0.5).close()
            return True
        except (OSError, ConnectionError, struct.error, ZkError):
            return False

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "<no log>"


def wait_all_serving(members: list[Member], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in members:
            if not m.alive():
                raise RuntimeError(f"member {m.my_id} exited\n{m.log_tail()}")
        modes = [mode(m.port) for m in members]
        if modes.count("leader") == 1 and all(x in ("leader", "follower") for x in modes) \
                and all(m.serves() for m in members):
            return
        time.sleep(0.1)
    raise RuntimeError("ensemble not serving\n" + "\n".join(m.log_tail() for m in members))


def failover_once(members: list[Member], n: int) -> float:
    leader = next(m for m in members if mode(m.port) == "leader")
    others = [m for m in members if m is not leader]
    leader.sigkill()
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < 120:
        m = others[i % len(others)]
        i += 1
        try:
            s = Session(m.port, timeout=0.5)
            try:
                s.create(b"/failover-%d-%d" % (n, i))
                return time.monotonic() - t0
            finally:
                s.close()
        except (OSError, ConnectionError, struct.error, ZkError):
            time.sleep(0.01)
    raise RuntimeError("no write acknowledged within 120 s of the leader's death")


def run_one(kind: str, tmp: Path, args) -> dict:
    label = "ZooKeeper" if kind == "zookeeper" else "Corral"
    root = tmp / kind
    servers = {f"server.{i}": f"127.0.0.1:{free_port()}:{free_port()}" for i in range(1, MEMBERS + 1)}
    members = [Member(kind, i, root / f"m{i}", servers, args) for i in range(1, MEMBERS + 1)]
    out: dict = {"server": label}
    try:
        for m in members:
            m.start()
        wait_all_serving(members)
        log(f"{label}: ensemble serving; {args.creates} creates over {args.connections} connections")
        r = populate([m.port for m in members], args.creates, args.connections, args.window)
        out["creates_per_s"] = r["creates_per_s"]
        log(f"{label}: {r['creates_per_s']:.0f} creates/s")
        times = []
        for n in range(args.rounds):
            t = failover_once(members, n)
            times.append(t)
            log(f"{label}: failover {n + 1}/{args.rounds}: {t * 1000:.0f} ms")
            dead = next(m for m in members if not m.alive())
            dead.start()
            wait_all_serving(members)
        out["failover_ms"] = [round(t * 1000) for t in times]
        out["failover_median_ms"] = round(statistics.median(times) * 1000)
    finally:
        for m in members:
            m.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--creates", type=int, default=100_000, help="znodes created for throughput (default 100000)")
    ap.add_argument("--connections", type=int, default=6, help="client connections, spread over members (default 6)")
    ap.add_argument("--window", type=int, default=200, help="requests in flight per connection (default 200)")
    ap.add_argument("--rounds", type=int, default=5, help="failover rounds (default 5)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON ('-' = stdout)")
    ap.add_argument("--only", choices=["corral", "zookeeper"], help="measure one server only")
    ap.add_argument("--zk-heap", default="1g", help="each ZooKeeper member's -Xmx (default 1g)")
    ap.add_argument("--corral-bin", type=Path,
                    default=Path(os.environ.get("CORRAL_BIN", REPO / "target" / "release" / "corral")))
    ap.add_argument("--tmp", type=Path, help="parent of the temporary dir (default: $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep data dirs and logs")
    args = ap.parse_args()
    kinds = [args.only] if args.only else ["zookeeper", "corral"]
    tmp = Path(tempfile.mkdtemp(prefix="corral-ensemble-bench-", dir=args.tmp))
    started = datetime.datetime.now(datetime.timezone.utc)
    results: dict = {}
    try:
        for kind in kinds:
            results[kind] = run_one(kind, tmp, args)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"kept {tmp}")
    print()
    print(f"{MEMBERS}-member ensembles on loopback; fsync on; {args.creates} creates x 100 B over "
          f"{args.connections} connections x {args.window} in flight; {args.rounds} failovers")
    rows = [("write throughput (creates/s)", "creates_per_s", "{:.0f}"),
            ("failover median (ms)", "failover_median_ms", "{:.0f}")]
    print(f"{'metric':32} {'ZooKeeper':>12} {'Corral':>12} {'ratio':>8}")
    for name, key, f in rows:
        z = results.get("zookeeper", {}).get(key)
        c = results.get("corral", {}).get(key)
        ratio = f"{c / z:.2f}x" if z and c else "-"
        print(f"{name:32} {f.format(z) if z is not None else '-':>12} {f.format(c) if c is not None else '-':>12} {ratio:>8}")
    for kind in kinds:
        print(f"{results[kind]['server']} failovers (ms): {results[kind].get('failover_ms')}")
    if args.json:
        doc = {"date_utc": started.isoformat(timespec="seconds"), "host": platform.node(),
               "nproc": os.cpu_count(), "args": {k: str(v) for k, v in vars(args).items()}, "results": results}
        write_json(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
