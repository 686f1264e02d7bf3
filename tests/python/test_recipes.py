"""kazoo's high-level recipes, each driven by several real sessions."""

import threading
import time

import pytest
from conftest import wait_until
from kazoo.exceptions import LockTimeout
from kazoo.recipe.cache import TreeCache, TreeEvent


def start_thread(target, *args):
    t = threading.Thread(target=target, args=args, daemon=True)
    t.start()
    return t


def test_lock_contention(zk_factory, root):
    c1, c2 = zk_factory(), zk_factory()
    path = f"{root}/lock"
    lock1 = c1.Lock(path, "one")
    lock2 = c2.Lock(path, "two")
    assert lock1.acquire(timeout=10)
    assert lock1.is_acquired

    acquired = threading.Event()

    def contend():
        if lock2.acquire(timeout=20):
            acquired.set()

    t = start_thread(contend)
    wait_until(lambda: len(lock1.contenders()) == 2, message="second contender queued")
    assert lock1.contenders() == ["one", "two"]
    assert not acquired.wait(0.5), "second client got the lock while the first held it"

    lock1.release()
    assert acquired.wait(10), "second client did not get the lock after release"
    t.join(5)
    assert lock2.is_acquired
    assert lock1.contenders() == ["two"]
    lock2.release()
    assert c1.get_children(path) == []


def test_lock_timeout_and_nonblocking(zk_factory, root):
    c1, c2 = zk_factory(), zk_factory()
    path = f"{root}/lock"
    with c1.Lock(path, "holder"):
        assert c2.Lock(path).acquire(blocking=False) is False
        with pytest.raises(LockTimeout):
            c2.Lock(path).acquire(timeout=0.5)
    assert c2.Lock(path).acquire(timeout=5)


def test_lock_released_when_holder_session_closes(zk_factory, root):
    c1, c2 = zk_factory(), zk_factory()
    path = f"{root}/lock"
    assert c1.Lock(path, "one").acquire(timeout=10)
    lock2 = c2.Lock(path, "two")
    got = threading.Event()
    start_thread(lambda: lock2.acquire(timeout=20) and got.set())
    wait_until(lambda: len(lock2.contenders()) == 2, message="second contender queued")
    c1.stop()
    assert got.wait(10)


def test_read_write_locks(zk_factory, root):
    c1, c2, c3 = zk_factory(), zk_factory(), zk_factory()
    path = f"{root}/rw"
    r1, r2 = c1.ReadLock(path), c2.ReadLock(path)
    assert r1.acquire(timeout=5)
    assert r2.acquire(timeout=5), "two readers must be able to share the lock"
    w = c3.WriteLock(path)
    assert w.acquire(blocking=False) is False
    r1.release()
    r2.release()
    assert w.acquire(timeout=10)
    assert c1.ReadLock(path).acquire(blocking=False) is False
    w.release()


def test_semaphore(zk_factory, root):
    c1, c2, c3 = zk_factory(), zk_factory(), zk_factory()
    path = f"{root}/sem"
    s1 = c1.Semaphore(path, "one", max_leases=2)
    s2 = c2.Semaphore(path, "two", max_leases=2)
    s3 = c3.Semaphore(path, "three", max_leases=2)
    assert s1.acquire(timeout=10)
    assert s2.acquire(timeout=10)
    assert sorted(s1.lease_holders()) == ["one", "two"]
    assert s3.acquire(blocking=False) is False

    got = threading.Event()
    start_thread(lambda: s3.acquire(timeout=20) and got.set())
    assert not got.wait(0.5)
    s1.release()
    assert got.wait(10)
    assert sorted(s2.lease_holders()) == ["three", "two"]
    s2.release()
    s3.release()
    assert s1.lease_holders() == []


def test_election(zk_factory, root):
    path = f"{root}/election"
    clients = [zk_factory() for _ in range(2)]
    leader_events = {name: threading.Event() for name in ("a", "b")}
    stop_events = {name: threading.Event() for name in ("a", "b")}
    elections = {name: c.Election(path, name) for name, c in zip(("a", "b"), clients)}

    def lead(name):
        leader_events[name].set()
        stop_events[name].wait(30)

    threads = [start_thread(elections[n].run, lead, n) for n in ("a", "b")]
    wait_until(lambda: any(e.is_set() for e in leader_events.values()), message="a leader")
    wait_until(lambda: len(elections["a"].contenders()) == 2, message="two contenders")
    time.sleep(0.3)
    leaders = [n for n, e in leader_events.items() if e.is_set()]
    assert len(leaders) == 1, f"more than one leader: {leaders}"
    first = leaders[0]
    second = "b" if first == "a" else "a"
    assert elections[second].contenders()[0] == first

    # the leader steps down: its function returns and the other one wins
    stop_events[first].set()
    assert leader_events[second].wait(10), "the remaining contender never became leader"
    assert elections[first].contenders() == [second]
    stop_events[second].set()
    for t in threads:
        t.join(10)


def test_election_leader_session_lost(zk_factory, root):
    path = f"{root}/election"
    c1, c2 = zk_factory(), zk_factory()
    first_leads = threading.Event()
    second_leads = threading.Event()
    release = threading.Event()

    def lead(ev):
        ev.set()
        release.wait(30)

    def run_first():
        try:
            c1.Election(path, "first").run(lead, first_leads)
        except Exception:
            pass  # expected: its session is closed underneath it

    start_thread(run_first)
    assert first_leads.wait(10)
    start_thread(c2.Election(path, "second").run, lead, second_leads)
    wait_until(lambda: len(c2.get_children(path)) == 2, message="second contender")
    assert not second_leads.is_set()
    c1.stop()  # leader's session ends -> its ephemeral node goes away
    assert second_leads.wait(10)
    release.set()


def test_queue_fifo_and_priority(zk, root):
    q = zk.Queue(f"{root}/q")
    for item in (b"one", b"two", b"three"):
        q.put(item)
    q.put(b"urgent", priority=1)
    assert len(q) == 4
    assert [q.get() for _ in range(4)] == [b"urgent", b"one", b"two", b"three"]
    assert q.get() is None
    assert len(q) == 0


def test_queue_shared_between_clients(zk_factory, root):
    producer, consumer = zk_factory(), zk_factory()
    path = f"{root}/q"
    pq, cq = producer.Queue(path), consumer.Queue(path)
    for i in range(5):
        pq.put(str(i).encode())
    assert [cq.get() for _ in range(5)] == [b"0", b"1", b"2", b"3", b"4"]


def test_locking_queue(zk_factory, root):
    c1, c2 = zk_factory(), zk_factory()
    path = f"{root}/lq"
    q1, q2 = c1.LockingQueue(path), c2.LockingQueue(path)
    q1.put(b"a")
    q1.put_all([b"b", b"c"])
    q1.put(b"first", priority=1)
    assert len(q1) == 4

    assert q1.get(timeout=5) == b"first"
    assert q1.holds_lock()
    # another consumer gets the next item, not the locked one
    assert q2.get(timeout=5) == b"a"
    assert q1.consume()
    assert not q1.holds_lock()
    # an item taken but released (not consumed) goes back to the queue
    assert q2.release()
    assert q1.get(timeout=5) == b"a"
    assert q1.consume()
    assert len(q1) == 2
    assert q2.get(timeout=5) == b"b"
    assert q2.consume()
    assert q1.get(timeout=5) == b"c"
    assert q1.consume()
    assert q1.get(timeout=0.5) is None

    got = []
    t = start_thread(lambda: got.append(q2.get(timeout=20)))
    time.sleep(0.3)
    q1.put(b"late")
    t.join(15)
    assert got == [b"late"]
    assert q2.consume()
    assert len(q1) == 0


def test_barrier(zk_factory, root):
    c1, c2 = zk_factory(), zk_factory()
    path = f"{root}/barrier"
    b1, b2 = c1.Barrier(path), c2.Barrier(path)
    assert b2.wait(timeout=0.1) is True  # no barrier node: passes immediately
    b1.create()
    assert b2.wait(timeout=0.3) is False

    passed = threading.Event()
    start_thread(lambda: b2.wait(timeout=20) and passed.set())
    assert not passed.wait(0.3)
    assert b1.remove()
    assert passed.wait(10)


def test_double_barrier(zk_factory, root):
    path = f"{root}/dbarrier"
    clients = [zk_factory() for _ in range(2)]
    barriers = [c.DoubleBarrier(path, 2, identifier=f"p{i}") for i, c in enumerate(clients)]
    entered = [threading.Event(), threading.Event()]
    left = [threading.Event(), threading.Event()]

    def participant(i, may_leave):
        barriers[i].enter()
        entered[i].set()
        may_leave.wait(20)
        barriers[i].leave()
        left[i].set()

    go0, go1 = threading.Event(), threading.Event()
    start_thread(participant, 0, go0)
    time.sleep(0.5)
    assert not entered[0].is_set(), "entered before the second participant arrived"
    start_thread(participant, 1, go1)
    assert entered[0].wait(10) and entered[1].wait(10)
    assert all(b.participating for b in barriers)

    go0.set()
    time.sleep(0.5)
    assert not left[0].is_set(), "left before the other participant was ready to leave"
    go1.set()
    assert left[0].wait(10) and left[1].wait(10)


def test_counter(zk_factory, root):
    c1, c2 = zk_factory(), zk_factory()
    path = f"{root}/counter"
    counter = c1.Counter(path)
    assert counter.value == 0
    counter += 5
    counter -= 2
    assert counter.value == 3
    other = c2.Counter(path)
    other += 10
    assert counter.value == 13
    assert c1.get(path)[0] == b"13"

    fcounter = c1.Counter(f"{root}/fcounter", default=0.0)
    fcounter += 2.5
    assert fcounter.value == 2.5


def test_counter_concurrent_increments(zk_factory, root):
    path = f"{root}/counter"
    clients = [zk_factory() for _ in range(3)]

    def work(c):
        counter = c.Counter(path)
        for _ in range(10):
            counter += 1

    threads = [start_thread(work, c) for c in clients]
    for t in threads:
        t.join(30)
    assert clients[0].Counter(path).value == 30


def test_set_partitioner_single_member(zk, root):
    items = ("a", "b", "c", "d")
    part = zk.SetPartitioner(f"{root}/part", set=items, time_boundary=0.2)
    try:
        part.wait_for_acquire(timeout=15)
        assert part.acquired
        assert sorted(part) == sorted(items)
    finally:
        part.finish()
    assert not part.acquired


def test_set_partitioner_two_members(zk_factory, root):
    items = tuple(range(6))
    c1, c2 = zk_factory(), zk_factory()
    p1 = c1.SetPartitioner(f"{root}/part", set=items, identifier="m1", time_boundary=0.3)
    p2 = c2.SetPartitioner(f"{root}/part", set=items, identifier="m2", time_boundary=0.3)
    try:
        def settled():
            for p in (p1, p2):
                if p.release:
                    p.release_set()
                elif p.allocating:
                    p.wait_for_acquire(timeout=0.2)
            return p1.acquired and p2.acquired

        wait_until(settled, timeout=30, interval=0.1, message="both partitioners acquired")
        a, b = set(p1), set(p2)
        assert a and b
        assert a.isdisjoint(b)
        assert a | b == set(items)
    finally:
        p1.finish()
        p2.finish()


def test_party(zk_factory, root):
    c1, c2 = zk_factory(), zk_factory()
    path = f"{root}/party"
    p1, p2 = c1.Party(path, "alice"), c2.Party(path, "bob")
    p1.join()
    p2.join()
    assert sorted(p1) == ["alice", "bob"]
    assert len(p2) == 2
    p1.leave()
    assert list(p2) == ["bob"]
    c2.stop()
    assert list(c1.Party(path)) == []


def test_tree_cache(zk, zk_factory, root):
    writer = zk_factory()
    zk.create(f"{root}/pre", b"existing")
    cache = TreeCache(zk, root)
    events = []
    lock = threading.Lock()

    def listener(event):
        with lock:
            events.append((event.event_type, event.event_data.path if event.event_data else None))

    cache.listen(listener)
    cache.start()
    try:
        def seen(kind, path):
            with lock:
                return (kind, path) in events

        wait_until(lambda: seen(TreeEvent.INITIALIZED, None), message="cache initialised")
        assert seen(TreeEvent.NODE_ADDED, root)
        assert seen(TreeEvent.NODE_ADDED, f"{root}/pre")
        assert cache.get_data(f"{root}/pre").data == b"existing"

        writer.create(f"{root}/new/deep", b"d", makepath=True)
        wait_until(lambda: seen(TreeEvent.NODE_ADDED, f"{root}/new/deep"), message="NODE_ADDED")
        assert seen(TreeEvent.NODE_ADDED, f"{root}/new")
        assert sorted(cache.get_children(root)) == ["new", "pre"]
        assert cache.get_data(f"{root}/new/deep").data == b"d"

        writer.set(f"{root}/pre", b"changed")
        wait_until(lambda: seen(TreeEvent.NODE_UPDATED, f"{root}/pre"), message="NODE_UPDATED")
        wait_until(lambda: cache.get_data(f"{root}/pre").data == b"changed", message="cached data")
        assert cache.get_data(f"{root}/pre").stat.version == 1

        writer.delete(f"{root}/new", recursive=True)
        wait_until(lambda: seen(TreeEvent.NODE_REMOVED, f"{root}/new"), message="NODE_REMOVED")
        assert seen(TreeEvent.NODE_REMOVED, f"{root}/new/deep")
        assert cache.get_data(f"{root}/new") is None
        assert cache.get_children(root) == frozenset(["pre"])
    finally:
        cache.close()


def test_non_blocking_lease(zk_factory, root):
    c1, c2 = zk_factory(), zk_factory()
    import datetime

    path = f"{root}/lease"
    duration = datetime.timedelta(seconds=30)
    assert c1.NonBlockingLease(path, duration, identifier="one")
    assert not c2.NonBlockingLease(path, duration, identifier="two")
    assert c1.NonBlockingLease(path, duration, identifier="one")  # renewal by the holder
