#!/usr/bin/env python3
"""Task queue benchmark: corral-queue on Corral, corral-queue on Apache ZooKeeper 3.8, and
kazoo's LockingQueue (the usual ZooKeeper queue recipe) on Apache ZooKeeper 3.8.

One server at a time, standalone, fsync on, Debian's zoo.cfg defaults. For each:

  * throughput: P producer sessions push T tasks of 100 bytes one at a time while W worker
    sessions take and ack (LockingQueue: put, get, consume); tasks/s from the first push
    to the last ack;
  * take cost: with N tasks waiting, the time of one take + ack (LockingQueue: get +
    consume), median and p99 of K of them, for a small and a large N.

corral-queue is driven by `corral queue bench` (the Rust library itself); LockingQueue by
kazoo from Python threads, one client per thread. Only processes this script starts are
signalled, by their PID.

Usage:  .venv/bin/python bench/task_queue.py [--json FILE] [--tasks T] [--big N] [--zk-big N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from restart_memory import Server, log  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def corral_bench(args, port: int, queue: str, *extra: str) -> dict:
    cmd = [str(args.corral_bin), "queue", "bench", "--connect", f"127.0.0.1:{port}", "--queue", queue, *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        return {"error": out.stderr.strip()[-300:]}
    return json.loads(out.stdout)


def kazoo_client(port: int):
    from kazoo.client import KazooClient
    c = KazooClient(hosts=f"127.0.0.1:{port}", timeout=30)
    c.start(timeout=30)
    return c


def locking_throughput(port: int, producers: int, workers: int, tasks: int) -> dict:
    path = "/lq-throughput"
    payload = b"x" * 100
    done = [0]
    lock = threading.Lock()
    errors: list[str] = []

    def produce(n: int):
        c = kazoo_client(port)
        q = c.LockingQueue(path)
        for _ in range(n):
            q.put(payload)
        c.stop()

    def work():
        c = kazoo_client(port)
        q = c.LockingQueue(path)
        try:
            while True:
                with lock:
                    if done[0] >= tasks:
                        break
                if q.get(timeout=0.2) is not None:
                    q.consume()
                    with lock:
                        done[0] += 1
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
        c.stop()

    t0 = time.monotonic()
    threads = [threading.Thread(target=produce, args=(tasks // producers + (i < tasks % producers),)) for i in range(producers)]
    threads += [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.monotonic() - t0
    out = {"tasks": tasks, "seconds": secs, "tasks_per_s": tasks / secs}
    if errors:
        out["errors"] = errors[:3]
    return out


def locking_take_cost(port: int, waiting: int, takes: int) -> dict:
    path = f"/lq-{waiting}"
    c = kazoo_client(port)
    q = c.LockingQueue(path)
    t0 = time.monotonic()
    left = waiting
    while left > 0:
        n = min(left, 1000)
        q.put_all([b"x" * 100] * n)
        left -= n
    fill = time.monotonic() - t0
    us = []
    try:
        for _ in range(takes):
            s = time.monotonic()
            if q.get(timeout=10) is None:
                raise RuntimeError("the queue ran dry")
            q.consume()
            us.append((time.monotonic() - s) * 1e6)
    except Exception as e:  # noqa: BLE001
        c.stop()
        return {"waiting": waiting, "fill_s": fill, "error": repr(e)[:200]}
    c.stop()
    us.sort()
    return {"waiting": waiting, "fill_s": fill, "take_ack_us_p50": us[len(us) // 2],
            "take_ack_us_p99": us[int((len(us) - 1) * 0.99)]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=5000, help="throughput: tasks (default 5000)")
    ap.add_argument("--producers", type=int, default=4)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--small", type=int, default=1000, help="take cost: small backlog (default 1000)")
    ap.add_argument("--big", type=int, default=1_000_000, help="take cost on Corral: big backlog (default 1000000)")
    ap.add_argument("--zk-big", type=int, default=1_000_000, help="take cost on ZooKeeper: big backlog (default 1000000)")
    ap.add_argument("--takes", type=int, default=200, help="takes measured with the small backlog")
    ap.add_argument("--big-takes", type=int, default=50, help="takes measured with the big backlogs")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--zk-heap", default="4g")
    ap.add_argument("--corral-bin", type=Path,
                    default=Path(os.environ.get("CORRAL_BIN", REPO / "target" / "release" / "corral")))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="corral-queue-bench-"))
    results: dict = {}
    tp = ["--mode", "throughput", "--tasks", str(args.tasks), "--producers", str(args.producers),
          "--workers", str(args.workers)]

    def cost(port, queue, n, takes):
        return corral_bench(args, port, queue, "--mode", "take-cost", "--waiting", str(n), "--takes", str(takes))

    try:
        for kind in ["corral", "zookeeper"]:
            srv = Server(kind, tmp / kind, args)
            srv.wait_serving(srv.spawn(), None, None, 120)
            log(f"{srv.label} serving on {srv.port}")
            r: dict = {}
            r["queue_throughput"] = corral_bench(args, srv.port, "tp", *tp)
            log(f"  corral-queue throughput: {r['queue_throughput']}")
            r["queue_small"] = cost(srv.port, "small", args.small, args.takes)
            big = args.big if kind == "corral" else args.zk_big
            r["queue_big"] = cost(srv.port, "big", big, args.big_takes)
            log(f"  corral-queue take cost: {r['queue_small']} / {r['queue_big']}")
            if kind == "zookeeper":
                r["locking_throughput"] = locking_throughput(srv.port, args.producers, args.workers, args.tasks)
                log(f"  LockingQueue throughput: {r['locking_throughput']}")
                r["locking_small"] = locking_take_cost(srv.port, args.small, args.takes)
                r["locking_big"] = locking_take_cost(srv.port, args.zk_big, args.big_takes)
                log(f"  LockingQueue take cost: {r['locking_small']} / {r['locking_big']}")
            srv.stop()
            results[kind] = r
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def fmt(d: dict, key: str) -> str:
        if "error" in d:
            return "fails"
        v = d.get(key)
        return f"{v:.0f}" if isinstance(v, (int, float)) else "-"

    c, z = results["corral"], results["zookeeper"]
    print()
    print(f"{'':44} {'corral-queue':>14} {'corral-queue':>14} {'LockingQueue':>14}")
    print(f"{'':44} {'on Corral':>14} {'on ZooKeeper':>14} {'on ZooKeeper':>14}")
    print(f"{'throughput, tasks/s':44} {fmt(c['queue_throughput'], 'tasks_per_s'):>14} "
          f"{fmt(z['queue_throughput'], 'tasks_per_s'):>14} {fmt(z['locking_throughput'], 'tasks_per_s'):>14}")
    print(f"{f'take+ack p50 (us), {args.small} waiting':44} {fmt(c['queue_small'], 'take_ack_us_p50'):>14} "
          f"{fmt(z['queue_small'], 'take_ack_us_p50'):>14} {fmt(z['locking_small'], 'take_ack_us_p50'):>14}")
    print(f"{f'take+ack p50 (us), {args.big} / {args.zk_big} waiting':44} {fmt(c['queue_big'], 'take_ack_us_p50'):>14} "
          f"{fmt(z['queue_big'], 'take_ack_us_p50'):>14} {fmt(z['locking_big'], 'take_ack_us_p50'):>14}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                               "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
