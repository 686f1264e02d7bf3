#!/usr/bin/env python3
"""Sustained writes as the tree grows: Corral 3-member ensembles, A/B between binaries
or settings.

For each binary and each snapCount given (one ensemble at a time, in the order given):

  1. start a 3-member Corral ensemble exactly as bench/compare.py does (Debian's zoo.cfg
     defaults plus snapCount, fsync on, fresh data dirs, free loopback ports);
  2. one `corral bench` create run with 1 session, 1 request at a time (p50 latency);
  3. --rounds runs of the saturated create load (9 sessions x 32 in flight, spread over
     the members), --duration seconds each; every round adds its creates to the tree;
  4. stop the ensemble, print one line: the 1x1 p50, then ops/s and p99 per round.

With --shm-snapshots the data dirs (snapshots) go to /dev/shm and only the logs
(dataLogDir) stay on the disk, to tell the snapshots' disk traffic from their CPU.
With --workers N the servers run N tokio worker threads (TOKIO_WORKER_THREADS).

Only processes this script starts are ever signalled, by their PID.

Usage:  python3 bench/decay.py --bin target/release/corral [--bin OTHER ...]
                               [--snap 100000 100000000] [--rounds 4] [--duration 6]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ensemble  # noqa: E402
from compare import Cluster, bench  # noqa: E402


def run(binary: Path, snap: str, a) -> str:
    args = argparse.Namespace(corral_bin=binary, duration=a.duration, zk_heap="1g")
    cfg = ensemble.DEBIAN_ZOO_CFG
    saved = dict(cfg)
    cfg["snapCount"] = snap
    tmp = Path(tempfile.mkdtemp(prefix="corral-decay-", dir="/dev/shm" if a.shm_snapshots else None))
    logs = None
    cluster = None
    try:
        try:
            cluster = Cluster("corral", 3, tmp, args)
        finally:
            cfg.clear()
            cfg.update(saved)
        if a.shm_snapshots:
            logs = Path(tempfile.mkdtemp(prefix="corral-decay-log-"))
            for m in cluster.members:
                (logs / f"m{m.my_id}").mkdir()
                with open(m.cfg, "a") as f:
                    f.write(f"dataLogDir={logs}/m{m.my_id}\n")
        if a.workers:
            os.environ["TOKIO_WORKER_THREADS"] = str(a.workers)
        cluster.start()
        os.environ.pop("TOKIO_WORKER_THREADS", None)
        lat = bench(args, cluster.hosts(), ["--workload", "create", "--clients", "1", "--outstanding", "1"])
        out = [f"1x1 p50 {lat['p50_us'] / 1000:.2f} ms"]
        for _ in range(a.rounds):
            res = bench(args, cluster.hosts(), ["--workload", "create", "--clients", "9", "--outstanding", "32"])
            out.append(f"{res['ops_per_s']:,.0f}/s p99 {res['p99_us'] / 1000:.0f} ms")
        return " | ".join(out)
    finally:
        if cluster is not None:
            cluster.stop()
        # Each ensemble leaves gigabytes of logs and snapshots behind.
        shutil.rmtree(tmp, ignore_errors=True)
        if logs is not None:
            shutil.rmtree(logs, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", type=Path, action="append", required=True, help="a corral binary (repeatable)")
    ap.add_argument("--snap", nargs="+", default=["100000"], help="snapCount values (default 100000)")
    ap.add_argument("--rounds", type=int, default=4, help="saturated create rounds (default 4)")
    ap.add_argument("--duration", type=float, default=6.0, help="seconds per round (default 6)")
    ap.add_argument("--shm-snapshots", action="store_true", help="snapshots on /dev/shm, logs on disk")
    ap.add_argument("--workers", type=int, help="tokio worker threads per server")
    a = ap.parse_args()
    for binary in a.bin:
        for snap in a.snap:
            print(f"{binary} snapCount={snap}: {run(binary, snap, a)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
