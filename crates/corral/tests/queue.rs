//! The task queue library (`corral-queue`) against a real server through the
//! `zookeeper-client` crate. With `CORRAL_TEST_TARGET=zookeeper` the same tests run against
//! Apache ZooKeeper 3.8, since the queue uses only standard ZooKeeper operations.

mod common;

use common::{zk, Server};
use corral_queue::{layout, Nacked, PushOptions, Queue};
use std::time::{Duration, Instant};

async fn queue(server: &Server, name: &str) -> Queue {
    let client = server.connect_with(zk::Client::connector().with_session_timeout(Duration::from_secs(4))).await;
    Queue::open(client, name).await.unwrap()
}

fn prio(p: u16) -> PushOptions {
    PushOptions { priority: p, ..Default::default() }
}

#[tokio::test]
async fn takes_follow_priority_then_age() {
    let server = Server::start();
    let q = queue(&server, "order").await;
    let mut pushed = Vec::new();
    for (i, p) in [0u16, 5, 0, 9, 5, 0].into_iter().enumerate() {
        let id = q.push(format!("task {i}").as_bytes(), &prio(p)).await.unwrap();
        pushed.push((p, i, id));
    }
    let mut expected = pushed.clone();
    expected.sort_by_key(|(p, i, _)| (std::cmp::Reverse(*p), *i));
    for (p, i, id) in expected {
        let t = q.take("w", None).await.unwrap().expect("a task");
        assert_eq!((t.id.as_str(), t.payload.as_slice()), (id.as_str(), format!("task {i}").as_bytes()), "priority {p}");
        assert_eq!((t.attempt, t.fencing_token), (1, 1));
        q.ack(&t, None).await.unwrap();
    }
    assert!(q.take("w", None).await.unwrap().is_none());
}

#[tokio::test]
async fn a_delayed_task_waits_for_its_time() {
    let server = Server::start();
    let q = queue(&server, "delay").await;
    let start = Instant::now();
    let id = q.push(b"later", &PushOptions { delay: Some(Duration::from_millis(1500)), ..Default::default() }).await.unwrap();
    assert!(q.take("w", None).await.unwrap().is_none(), "taken before its time");
    assert_eq!(q.stats().await.unwrap().delayed, 1);
    let t = q.take("w", Some(Duration::from_secs(10))).await.unwrap().expect("taken once due");
    assert_eq!(t.id, id);
    assert!(start.elapsed() >= Duration::from_millis(1400), "taken after {:?}", start.elapsed());
    q.ack(&t, None).await.unwrap();
}

#[tokio::test]
async fn a_key_pushes_once() {
    let server = Server::start();
    let q = queue(&server, "keys").await;
    let opts = PushOptions { key: Some("order/42".into()), ..Default::default() };
    let first = q.push(b"a", &opts).await.unwrap();
    let second = q.push(b"b", &opts).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(q.stats().await.unwrap().ready, 1);
    let t = q.take("w", None).await.unwrap().unwrap();
    assert_eq!(t.payload, b"a");
}

#[tokio::test]
async fn a_batch_is_pushed_whole() {
    let server = Server::start();
    let q = queue(&server, "batch").await;
    let tasks: Vec<(Vec<u8>, PushOptions)> = (0..5).map(|i| (vec![i], PushOptions::default())).collect();
    let ids = q.push_batch(&tasks).await.unwrap();
    assert_eq!(ids.len(), 5);
    // A batch with a used key pushes nothing.
    let keyed = PushOptions { key: Some("k".into()), ..Default::default() };
    q.push(b"k", &keyed).await.unwrap();
    let bad = vec![(b"x".to_vec(), PushOptions::default()), (b"y".to_vec(), keyed)];
    assert!(q.push_batch(&bad).await.is_err());
    assert_eq!(q.stats().await.unwrap().ready, 6);
    for id in ids {
        assert_eq!(q.take("w", None).await.unwrap().unwrap().id, id);
    }
}

#[tokio::test]
async fn nacks_back_off_then_go_to_the_dead_letters() {
    let server = Server::start();
    let q = queue(&server, "retry").await;
    let id = q.push(b"flaky", &PushOptions { max_attempts: 2, ..Default::default() }).await.unwrap();
    let t = q.take("w", None).await.unwrap().unwrap();
    let Nacked::Retry { not_before_ms } = q.nack(&t, "boom 1").await.unwrap() else { panic!("dead too early") };
    assert!(q.take("w", None).await.unwrap().is_none(), "retried before its backoff");
    let t2 = q.take("w", Some(Duration::from_secs(10))).await.unwrap().expect("retried");
    assert!(corral_now() + 50 >= not_before_ms);
    assert_eq!((t2.id.as_str(), t2.attempt, t2.fencing_token), (id.as_str(), 2, 2));
    assert_eq!(q.nack(&t2, "boom 2").await.unwrap(), Nacked::Dead);
    let s = q.stats().await.unwrap();
    assert_eq!((s.ready, s.delayed, s.running, s.dead), (0, 0, 0, 1));
    let dead = q.peek(&id).await.unwrap().unwrap();
    assert_eq!(dead.meta.last_error.as_deref(), Some("boom 2"));
    assert_eq!(q.dead().await.unwrap(), vec![id.clone()]);
    // Requeued with fresh attempts.
    assert_eq!(q.requeue_dead().await.unwrap(), 1);
    let t3 = q.take("w", None).await.unwrap().unwrap();
    assert_eq!((t3.id.as_str(), t3.attempt, t3.fencing_token), (id.as_str(), 1, 3));
}

fn corral_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[tokio::test]
async fn a_dead_workers_task_is_taken_again_and_its_late_ack_refused() {
    let server = Server::start();
    let q = queue(&server, "fail").await;
    let id = q.push(b"job", &PushOptions::default()).await.unwrap();
    let dying = queue(&server, "fail").await;
    let lost = dying.take("dies", None).await.unwrap().unwrap();
    assert_eq!(q.stats().await.unwrap().running_by, vec![(id.clone(), "dies".to_string())]);
    drop(dying); // its session closes: the claim vanishes
    let t = q.take("survivor", Some(Duration::from_secs(20))).await.unwrap().expect("the task comes back");
    assert_eq!((t.id.as_str(), t.attempt, t.fencing_token), (id.as_str(), 2, 2));
    // The dead worker's claim is worth nothing now, whoever sends it.
    assert!(matches!(q.ack(&lost, None).await, Err(corral_queue::Error::Stale(_))));
    assert!(matches!(q.nack(&lost, "late").await, Err(corral_queue::Error::Stale(_))));
    q.ack(&t, Some(b"done")).await.unwrap();
    assert_eq!(q.result(&id, None).await.unwrap().as_deref(), Some(&b"done"[..]));
}

#[tokio::test]
async fn results_can_be_waited_for() {
    let server = Server::start();
    let q = queue(&server, "results").await;
    let id = q.push(b"compute", &PushOptions::default()).await.unwrap();
    assert_eq!(q.result(&id, None).await.unwrap(), None);
    let waiter = {
        let (q, id) = (q.clone(), id.clone());
        tokio::spawn(async move { q.result(&id, Some(Duration::from_secs(10))).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = q.take("w", None).await.unwrap().unwrap();
    q.ack(&t, Some(b"42")).await.unwrap();
    assert_eq!(waiter.await.unwrap().as_deref(), Some(&b"42"[..]));
}

#[tokio::test]
async fn cancel_and_purge() {
    let server = Server::start();
    let q = queue(&server, "admin").await;
    let a = q.push(b"a", &PushOptions::default()).await.unwrap();
    let b = q.push(b"b", &PushOptions::default()).await.unwrap();
    assert_eq!(q.list(10).await.unwrap().iter().map(|t| t.id.clone()).collect::<Vec<_>>(), vec![a.clone(), b.clone()]);
    assert!(q.cancel(&a).await.unwrap());
    assert!(!q.cancel(&a).await.unwrap());
    assert!(q.peek(&a).await.unwrap().is_none());
    let running = q.take("w", None).await.unwrap().unwrap();
    assert_eq!(running.id, b, "the cancelled task is skipped");
    assert!(q.cancel(&b).await.is_err(), "a running task cannot be cancelled");
    q.push(b"c", &PushOptions::default()).await.unwrap();
    q.push(b"d", &PushOptions { delay: Some(Duration::from_secs(60)), ..Default::default() }).await.unwrap();
    assert_eq!(q.purge().await.unwrap(), 2);
    let s = q.stats().await.unwrap();
    assert_eq!((s.ready, s.delayed, s.running), (0, 0, 1), "the running task stays");
    q.ack(&running, None).await.unwrap();
}

/// Waiting workers line up: one task wakes one of them; more tasks wake more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_task_wakes_one_waiting_worker() {
    let server = Server::start();
    let q = queue(&server, "herd").await;
    let mut workers = Vec::new();
    for i in 0..4 {
        let w = queue(&server, "herd").await;
        workers.push(tokio::spawn(async move {
            let t = w.take(&format!("w{i}"), Some(Duration::from_secs(30))).await.unwrap();
            (t, w)
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while q.stats().await.unwrap().waiting_workers < 4 {
        assert!(Instant::now() < deadline, "workers did not line up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    q.push(b"one", &PushOptions::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(workers.iter().filter(|w| w.is_finished()).count(), 1, "one task, one worker");
    assert_eq!(q.stats().await.unwrap().waiting_workers, 3);
    for i in 0..3 {
        q.push(format!("more {i}").as_bytes(), &PushOptions::default()).await.unwrap();
    }
    let mut taken = Vec::new();
    // The workers' sessions stay open: a closed one would give its task back.
    let mut sessions = Vec::new();
    for w in workers {
        let (t, w) = tokio::time::timeout(Duration::from_secs(10), w).await.expect("every worker got a task").unwrap();
        let t = t.expect("a task");
        assert_eq!(t.attempt, 1);
        taken.push(t.id);
        sessions.push(w);
    }
    taken.sort();
    taken.dedup();
    assert_eq!(taken.len(), 4, "four different tasks");
}

/// The ready index grows in buckets of a bounded size, and drained buckets go away.
#[tokio::test]
async fn the_ready_index_is_bounded() {
    let server = Server::start();
    let q = queue(&server, "big").await;
    let n = 2 * layout::BUCKET as usize + 10;
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let tasks: Vec<(Vec<u8>, PushOptions)> = chunk.iter().map(|i| (i.to_string().into_bytes(), PushOptions::default())).collect();
        q.push_batch(&tasks).await.unwrap();
    }
    let zk = q.client();
    let ready = format!("/corral/queues/big/ready/{}", layout::priority_name(0));
    let buckets = zk.list_children(&ready).await.unwrap();
    assert!(buckets.len() >= 3, "{buckets:?}");
    for b in &buckets {
        let (_, stat) = zk.get_data(&format!("{ready}/{b}")).await.unwrap();
        assert!(stat.num_children as u64 <= layout::BUCKET + 100, "bucket {b} holds {}", stat.num_children);
    }
    for i in 0..n {
        let t = q.take("w", None).await.unwrap().expect("a task");
        assert_eq!(t.payload, i.to_string().into_bytes(), "FIFO across buckets");
        q.ack(&t, None).await.unwrap();
    }
    assert!(q.take("w", None).await.unwrap().is_none());
    let left = zk.list_children(&ready).await.unwrap();
    assert!(left.len() <= 1, "drained buckets stay: {left:?}");
}

/// A dead worker's task comes back even while every other worker is busy, and ahead of
/// the tasks pushed after it.
#[tokio::test]
async fn a_dead_workers_task_goes_back_to_the_front_while_others_are_busy() {
    let server = Server::start();
    let q = queue(&server, "busy").await;
    let first = q.push(b"first", &PushOptions::default()).await.unwrap();
    let tasks: Vec<(Vec<u8>, PushOptions)> = (0..200).map(|i| (vec![i as u8], PushOptions::default())).collect();
    q.push_batch(&tasks).await.unwrap();
    let dying = queue(&server, "busy").await;
    assert_eq!(dying.take("dies", None).await.unwrap().unwrap().id, first);
    drop(dying);
    // A busy worker: always a task at hand, never in the line of waiters.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = q.take("busy", None).await.unwrap().expect("tasks remain");
        q.ack(&t, None).await.unwrap();
        if t.id == first {
            assert_eq!(t.attempt, 2);
            break;
        }
        assert!(Instant::now() < deadline, "the dead worker's task never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(q.stats().await.unwrap().ready > 50, "it came back ahead of the others");
}

/// The delayed index is bounded too: a burst due in one second is filed in buckets,
/// promotion moves it a batch at a time, and the seconds and hours that are over go away.
#[tokio::test]
async fn the_delayed_index_is_bounded() {
    let server = Server::start();
    let q = queue(&server, "later").await;
    let n = 2 * layout::BUCKET as usize + 10;
    // Every task due at the same instant, a little ahead.
    let due = (corral_now() / 1000 + 3) * 1000 + 500;
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let delay = Duration::from_millis(due - corral_now());
        let tasks: Vec<(Vec<u8>, PushOptions)> =
            chunk.iter().map(|i| (i.to_string().into_bytes(), PushOptions { delay: Some(delay), ..Default::default() })).collect();
        q.push_batch(&tasks).await.unwrap();
    }
    assert!(corral_now() < due, "pushing took too long for this test");
    let zk = q.client();
    let second = format!("/corral/queues/later/delayed/h{:08}/s{:011}", due / 3_600_000, due / 1000);
    let buckets = zk.list_children(&second).await.unwrap();
    assert!(buckets.len() >= 3, "{buckets:?}");
    for b in &buckets {
        let (_, stat) = zk.get_data(&format!("{second}/{b}")).await.unwrap();
        assert!(stat.num_children as u64 <= layout::BUCKET, "bucket {b} holds {}", stat.num_children);
    }
    assert_eq!(q.stats().await.unwrap().delayed, n as u64);
    assert!(q.take("w", None).await.unwrap().is_none(), "taken before its time");
    tokio::time::sleep(Duration::from_millis(due.saturating_sub(corral_now()) + 50)).await;
    // One take promotes one batch, not the whole burst.
    let t = q.take("w", None).await.unwrap().expect("due now");
    q.ack(&t, None).await.unwrap();
    let s = q.stats().await.unwrap();
    assert_eq!(s.ready, corral_queue::PROMOTE_BATCH as u64 - 1, "{s:?}");
    let mut seen = std::collections::HashSet::from([t.payload]);
    while let Some(t) = q.take("w", None).await.unwrap() {
        assert!(seen.insert(t.payload.clone()), "taken twice");
        q.ack(&t, None).await.unwrap();
    }
    assert_eq!(seen.len(), n);
    // The second is gone once a pass runs after it is over; its hour goes once the hour is.
    tokio::time::sleep(Duration::from_millis((due / 1000 + 1) * 1000 + 1100 - corral_now().min((due / 1000 + 1) * 1000 + 1100))).await;
    assert!(q.take("w", None).await.unwrap().is_none());
    for h in zk.list_children("/corral/queues/later/delayed").await.unwrap() {
        let seconds = zk.list_children(&format!("/corral/queues/later/delayed/{h}")).await.unwrap();
        assert_eq!(seconds, Vec::<String>::new(), "left in hour {h}");
    }
}

/// A task node that holds something else goes to the dead letters; the takes go on.
#[tokio::test]
async fn a_corrupt_task_becomes_a_dead_letter() {
    let server = Server::start();
    let q = queue(&server, "corrupt").await;
    let bad = q.push(b"one", &PushOptions::default()).await.unwrap();
    let good = q.push(b"two", &PushOptions::default()).await.unwrap();
    let later = q.push(b"three", &PushOptions { delay: Some(Duration::from_millis(300)), ..Default::default() }).await.unwrap();
    for id in [&bad, &later] {
        q.client().set_data(&format!("/corral/queues/corrupt/tasks/{id}"), b"not a task", None).await.unwrap();
    }
    assert_eq!(q.take("w", None).await.unwrap().expect("the good task").id, good);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(q.take("w", None).await.unwrap().is_none());
    assert_eq!(q.dead().await.unwrap(), vec![bad.clone(), later.clone()].into_iter().collect::<std::collections::BTreeSet<_>>().into_iter().collect::<Vec<_>>());
    assert!(matches!(q.peek(&bad).await, Err(corral_queue::Error::Corrupt { .. })));
    assert_eq!(q.requeue_dead().await.unwrap(), 0, "nothing to run");
    assert!(q.cancel(&bad).await.unwrap());
    assert!(q.cancel(&later).await.unwrap());
    let s = q.stats().await.unwrap();
    assert_eq!((s.ready, s.delayed, s.dead), (0, 0, 0));
}

/// A take that is given up while it waits leaves the line: the workers behind it are
/// not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_wait_leaves_the_line() {
    let server = Server::start();
    let q = queue(&server, "cancelled").await;
    let gave_up = tokio::time::timeout(Duration::from_millis(300), q.take("impatient", Some(Duration::from_secs(60)))).await;
    assert!(gave_up.is_err(), "nothing to take");
    let other = queue(&server, "cancelled").await;
    let waiting = tokio::spawn(async move { other.take("patient", Some(Duration::from_secs(20))).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = q.push(b"x", &PushOptions::default()).await.unwrap();
    let t = tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("the patient worker was woken").unwrap().unwrap();
    assert_eq!(t.expect("a task").id, id);
    assert_eq!(q.stats().await.unwrap().waiting_workers, 0);
}

/// A push too large for one request is refused before it is sent; the session goes on.
#[tokio::test]
async fn an_oversized_push_is_refused() {
    let server = Server::start();
    let q = queue(&server, "huge").await;
    let big = vec![7u8; corral_queue::MAX_PUSH_BYTES];
    assert!(matches!(q.push(&big, &PushOptions::default()).await, Err(corral_queue::Error::Invalid(_))));
    let half = vec![(vec![1u8; 600_000], PushOptions::default()), (vec![2u8; 600_000], PushOptions::default())];
    assert!(matches!(q.push_batch(&half).await, Err(corral_queue::Error::Invalid(_))));
    let long_key = PushOptions { key: Some("k".repeat(corral_queue::MAX_KEY_BYTES + 1)), ..Default::default() };
    assert!(matches!(q.push(b"x", &long_key).await, Err(corral_queue::Error::Invalid(_))));
    let id = q.push(&vec![3u8; 900_000], &PushOptions::default()).await.unwrap();
    let t = q.take("w", None).await.unwrap().unwrap();
    assert_eq!(t.id, id);
    assert_eq!(q.stats().await.unwrap().ready, 0);
    // An oversized result is refused before it is sent; a long error is cut to fit.
    let big = vec![0u8; corral_queue::MAX_RESULT_BYTES + 1];
    assert!(matches!(q.ack(&t, Some(&big)).await, Err(corral_queue::Error::Invalid(_))));
    let long_error = "e".repeat(200_000);
    assert!(matches!(q.nack(&t, &long_error).await.unwrap(), Nacked::Retry { .. }));
    let back = q.peek(&id).await.unwrap().unwrap();
    assert_eq!(back.meta.last_error.map(|e| e.len()), Some(corral_queue::MAX_ERROR_BYTES));
}

/// Takes given up at any moment (a timeout of half a millisecond) never leave a task held
/// or a waiter in line: a claim made after the caller left is put back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takes_given_up_at_any_moment_leave_nothing_held() {
    let server = Server::start();
    let q = queue(&server, "hasty").await;
    q.push(b"x", &PushOptions::default()).await.unwrap();
    for _ in 0..40 {
        if let Ok(r) = tokio::time::timeout(Duration::from_micros(500), q.take("hasty", Some(Duration::from_secs(5)))).await {
            // It finished in time: done with it, and another to race for.
            q.ack(&r.unwrap().expect("a task is there"), None).await.unwrap();
            q.push(b"x", &PushOptions::default()).await.unwrap();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = q.stats().await.unwrap();
        if (s.running, s.waiting_workers, s.ready) == (0, 0, 1) {
            break;
        }
        assert!(Instant::now() < deadline, "left held or in line: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = q.take("calm", None).await.unwrap().expect("the task is free");
    assert_eq!(t.attempt, 1, "a claim given back does not count as an attempt");
}

/// A worker that lived through a purge still finds the tasks pushed after it (its hint
/// about the oldest bucket is from before).
#[tokio::test]
async fn a_purge_does_not_blind_a_long_lived_worker() {
    let server = Server::start();
    let q = queue(&server, "purged").await;
    let n = layout::BUCKET as usize + 10;
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let tasks: Vec<(Vec<u8>, PushOptions)> = chunk.iter().map(|i| (i.to_string().into_bytes(), PushOptions::default())).collect();
        q.push_batch(&tasks).await.unwrap();
    }
    for _ in 0..n {
        let t = q.take("w", None).await.unwrap().unwrap();
        q.ack(&t, None).await.unwrap();
    }
    q.purge().await.unwrap();
    let id = q.push(b"after the purge", &PushOptions::default()).await.unwrap();
    assert_eq!(q.take("w", None).await.unwrap().expect("found after the purge").id, id);
}
