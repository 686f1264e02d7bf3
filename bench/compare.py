#!/usr/bin/env python3
"""Corral vs Apache ZooKeeper 3.8, side by side: the same `corral bench` workloads
against each, in alternation, on one machine in one run.

For each topology (standalone, then a 3-member ensemble on loopback):

  1. start ZooKeeper and Corral with the same zoo.cfg (Debian's defaults, fsync on,
     fresh data dirs, free loopback ports; each ZooKeeper JVM gets -Xmx<--zk-heap>)
     and wait until every member serves;
  2. warm both up (every workload once, --warmup seconds, not recorded: the JVM
     compiles its hot paths under load); then for each round, for each workload,
     run `corral bench ... --json` once against
     ZooKeeper and once against Corral (which goes first alternates by round), each
     for --duration seconds. `corral bench` speaks the plain ZooKeeper protocol, and
     its session i connects to member i mod 3, so a load spans the ensemble.
     The saturated create workload is the exception: it runs a fixed number of
     creates (--create-ops per round, a quarter of that to warm up), so both trees
     grow by the same amount and every round meets trees of the same size. Timed, the
     faster server would build the bigger tree and pay for it in later rounds (bigger
     snapshots, colder caches); --create-ops 0 times it like the others;
  3. stop both.

It also times the disk's fsync (4 KiB write + fdatasync, the floor under a single
client's write latency) in the same directory. Then it prints, per topology, the
median of the rounds for each figure and the ratio Corral / ZooKeeper, and checks
issue 6's targets for the ensemble. --json FILE writes every number.

Only processes this script starts are ever signalled, by their PID.

Usage:  python3 bench/compare.py [--rounds 3] [--duration 5] [--warmup 2] [--create-ops N]
                                 [--json FILE] [--topology standalone|ensemble]
                                 [--only corral|zookeeper]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ensemble import Member, mode, wait_all_serving  # noqa: E402
from restart_memory import free_port, log, write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# name, `corral bench` arguments, figures reported: (label, JSON key, scale, format).
# Nine sessions: three per member of an ensemble.
OPS = ("ops/s", "ops_per_s", 1, "{:,.0f}")
P50 = ("p50 ms", "p50_us", 1e-3, "{:.2f}")
P99 = ("p99 ms", "p99_us", 1e-3, "{:.2f}")
# The workload that grows the tree by the most; see --create-ops.
SATURATED_CREATE = "create, 9 x 32 in flight"
WORKLOADS = [
    (SATURATED_CREATE, ["--workload", "create", "--clients", "9", "--outstanding", "32"], [OPS, P99]),
    ("create, 1 client, 1 at a time", ["--workload", "create", "--clients", "1", "--outstanding", "1"], [P50, P99]),
    ("set, 9 x 32", ["--workload", "set", "--clients", "9", "--outstanding", "32"], [OPS, P99]),
    ("get, 9 x 32", ["--workload", "get", "--clients", "9", "--outstanding", "32"], [OPS, P99]),
    ("mixed 90% get, 9 x 32", ["--workload", "mixed", "--clients", "9", "--outstanding", "32"], [OPS]),
    ("watch fan-out to 18 sessions", ["--workload", "watch", "--clients", "18"], [P50]),
]


def fsync_floor(directory: Path, n: int = 200) -> float:
    """Median ms of a 4 KiB append + fdatasync in `directory`."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    times = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            os.write(fd, b"x" * 4096)
            os.fdatasync(fd)
            times.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(times) * 1000


class Cluster:
    def __init__(self, kind: str, size: int, root: Path, args):
        self.kind = kind
        servers = ({f"server.{i}": f"127.0.0.1:{free_port()}:{free_port()}" for i in range(1, size + 1)}
                   if size > 1 else {})
        self.members = [Member(kind, i, root / f"m{i}", servers, args) for i in range(1, size + 1)]

    def start(self) -> None:
        for m in self.members:
            m.start()
        if len(self.members) > 1:
            wait_all_serving(self.members)
            return
        deadline = time.monotonic() + 120
        m = self.members[0]
        while not (mode(m.port) == "standalone" and m.serves()):
            if not m.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind} did not start\n{m.log_tail()}")
            time.sleep(0.1)

    def hosts(self) -> str:
        return ",".join(f"127.0.0.1:{m.port}" for m in self.members)

    def stop(self) -> None:
        for m in self.members:
            m.stop()


def bench(args, hosts: str, extra: list[str], duration: float | None = None, ops: int | None = None) -> dict:
    limit = ["--ops", str(ops)] if ops else ["--duration", str(duration or args.duration)]
    cmd = [str(args.corral_bin), "bench", "--connect", hosts, *limit, "--json", *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration * 10 + 600)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return json.loads(out.stdout)


def run_topology(name: str, size: int, kinds: list[str], tmp: Path, args) -> dict:
    clusters = {k: Cluster(k, size, tmp / name / k, args) for k in kinds}
    raw: dict = {k: {w[0]: [] for w in WORKLOADS} for k in kinds}
    try:
        for c in clusters.values():
            c.start()
        log(f"{name}: serving ({', '.join(kinds)}); warming up")
        # Unrecorded: the JVM compiles its hot paths during the first seconds of load.
        for k in kinds:
            for wname, extra, _ in WORKLOADS:
                ops = args.create_ops // 4 if wname == SATURATED_CREATE else None
                bench(args, clusters[k].hosts(), extra, duration=args.warmup, ops=ops)
        for r in range(args.rounds):
            order = kinds if r % 2 == 0 else list(reversed(kinds))
            for wname, extra, _ in WORKLOADS:
                for k in order:
                    ops = args.create_ops if wname == SATURATED_CREATE else None
                    res = bench(args, clusters[k].hosts(), extra, ops=ops)
                    raw[k][wname].append(res)
                    log(f"{name} round {r + 1}/{args.rounds} {k:9} {wname}: {res['ops_per_s']:,.0f} ops/s, "
                        f"p50 {res['p50_us'] / 1000:.2f} ms, p99 {res['p99_us'] / 1000:.2f} ms, errors {res['errors']}")
    finally:
        for c in clusters.values():
            c.stop()
    medians = {k: {w: {key: statistics.median(x[key] for x in runs) for key in ("ops_per_s", "p50_us", "p99_us")}
                   for w, runs in per.items()} for k, per in raw.items()}
    return {"raw": raw, "medians": medians}


def table(name: str, res: dict) -> list[str]:
    med = res["medians"]
    z, c = med.get("zookeeper"), med.get("corral")
    lines = [f"### {name}", "", "| workload | figure | ZooKeeper | Corral | Corral / ZooKeeper |", "|---|---|---:|---:|---:|"]
    for wname, _, figs in WORKLOADS:
        for label, key, scale, f in figs:
            zv = z[wname][key] if z else None
            cv = c[wname][key] if c else None
            ratio = f"{cv / zv:.2f}" if zv and cv else "-"
            show = lambda v: f.format(v * scale) if v is not None else "-"  # noqa: E731
            lines.append(f"| {wname} | {label} | {show(zv)} | {show(cv)} | {ratio} |")
    return lines


def targets(res: dict) -> list[str]:
    med = res["medians"]
    if "zookeeper" not in med or "corral" not in med:
        return []
    z, c = med["zookeeper"], med["corral"]
    rows = [
        ("write throughput (create, saturated) >= 3x", c[SATURATED_CREATE]["ops_per_s"] / z[SATURATED_CREATE]["ops_per_s"], 3, ">="),
        ("write p99 at that load <= 1/3", c[SATURATED_CREATE]["p99_us"] / z[SATURATED_CREATE]["p99_us"], 1 / 3, "<="),
        ("one client, one at a time: create latency <= 0.5x", c["create, 1 client, 1 at a time"]["p50_us"] / z["create, 1 client, 1 at a time"]["p50_us"], 0.5, "<="),
        ("read throughput (get across all members) >= 2x", c["get, 9 x 32"]["ops_per_s"] / z["get, 9 x 32"]["ops_per_s"], 2, ">="),
    ]
    out = ["| target (3-member ensemble) | measured | |", "|---|---:|---|"]
    for label, v, bound, op in rows:
        met = v >= bound if op == ">=" else v <= bound
        out.append(f"| {label} | {v:.2f} | {'met' if met else '**not met**'} |")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of every workload on each server (default 3)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    ap.add_argument("--warmup", type=float, default=2.0,
                    help="seconds of each workload run unrecorded on each server first (default 2)")
    ap.add_argument("--create-ops", type=int, default=100_000,
                    help="creates per round of the saturated create workload, for equal trees (default 100000; "
                         "0: time it with --duration like the others)")
    ap.add_argument("--topology", choices=["standalone", "ensemble"], help="only this topology")
    ap.add_argument("--only", choices=["corral", "zookeeper"], help="measure one server only")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON ('-' = stdout)")
    ap.add_argument("--zk-heap", default="1g", help="each ZooKeeper JVM's -Xmx (default 1g)")
    ap.add_argument("--corral-bin", type=Path,
                    default=Path(os.environ.get("CORRAL_BIN", REPO / "target" / "release" / "corral")))
    ap.add_argument("--tmp", type=Path, help="parent of the temporary dir (default: $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep data dirs and logs")
    args = ap.parse_args()
    kinds = [args.only] if args.only else ["zookeeper", "corral"]
    topologies = [(t, s) for t, s in (("standalone", 1), ("ensemble", 3)) if args.topology in (None, t)]
    tmp = Path(tempfile.mkdtemp(prefix="corral-compare-", dir=args.tmp))
    started = datetime.datetime.now(datetime.timezone.utc)
    results: dict = {}
    try:
        floor = fsync_floor(tmp)
        log(f"fsync floor in {tmp}: {floor:.2f} ms (median of 200 x 4 KiB + fdatasync)")
        for name, size in topologies:
            results[name] = run_topology(name, size, kinds, tmp, args)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"kept {tmp}")
    print()
    print(f"{started:%Y-%m-%d %H:%M} UTC; {os.cpu_count()} CPUs; fsync on; 100-byte payloads; "
          f"median of {args.rounds} rounds x {args.duration:g} s; fsync floor {floor:.2f} ms"
          + (f"; saturated creates: {args.create_ops:,} per round" if args.create_ops else ""))
    for name, _ in topologies:
        print()
        print("\n".join(table(name, results[name])))
    if "ensemble" in results:
        t = targets(results["ensemble"])
        if t:
            print()
            print("\n".join(t))
    if args.json:
        doc = {"date_utc": started.isoformat(timespec="seconds"), "host": platform.node(), "nproc": os.cpu_count(),
               "fsync_floor_ms": floor, "args": {k: str(v) for k, v in vars(args).items()}, "results": results}
        write_json(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
