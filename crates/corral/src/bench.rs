//! `corral bench`: load on any ZooKeeper-compatible server through the plain ZooKeeper
//! protocol (the `zookeeper-client` crate), so the same run measures Corral and Apache
//! ZooKeeper alike.
//!
//! Each of `--clients` sessions keeps `--outstanding` requests in flight until `--ops`
//! requests completed or `--duration` passed; every request's latency goes into an HDR
//! histogram. Session `i` connects to the `i`-th host of the connect string (in turn), so
//! a load spans every member of an ensemble. Output: one human line, or with `--json` one JSON object.

use clap::{Args, ValueEnum};
use corral_queue::{zookeeper_client as zk, PushOptions, Queue};
use hdrhistogram::Histogram;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Create znodes (each request a new one).
    Create,
    /// setData on `--keys` existing znodes.
    Set,
    /// getData of `--keys` existing znodes.
    Get,
    /// exists on `--keys` existing znodes.
    Exists,
    /// getData or setData, `--read-ratio` of them reads.
    Mixed,
    /// One setData, `--clients` sessions watching it: the latency is from the write to
    /// the last watcher's notification.
    Watch,
    /// push / take / ack through corral-queue: half the sessions push, half work.
    Queue,
    /// Create `--ops` znodes as fast as possible (to fill a server).
    Populate,
}

#[derive(Args)]
pub struct BenchArgs {
    /// ZooKeeper connect string.
    #[arg(long, value_name = "HOSTS", default_value = "127.0.0.1:2181")]
    connect: String,
    #[arg(long, value_enum)]
    workload: Workload,
    /// Client sessions.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Requests in flight per session.
    #[arg(long, default_value_t = 32)]
    outstanding: usize,
    /// Run this long (seconds)...
    #[arg(long)]
    duration: Option<f64>,
    /// ...or until this many requests completed (default 10000 if neither is given).
    #[arg(long)]
    ops: Option<u64>,
    /// Bytes of data per write.
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Znodes the set/get/exists/mixed workloads cycle through.
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    /// Share of reads in the mixed workload.
    #[arg(long, default_value_t = 0.9)]
    read_ratio: f64,
    /// One JSON object instead of a human line.
    #[arg(long)]
    json: bool,
}

/// What every load loop shares.
struct Shared {
    started: AtomicU64,
    done: AtomicU64,
    errors: AtomicU64,
    limit: u64,
    deadline: Option<Instant>,
    hist: Mutex<Histogram<u64>>,
}

impl Shared {
    /// Claims the next request; false once the run is over.
    fn next(&self) -> bool {
        self.in_time() && self.started.fetch_add(1, Ordering::Relaxed) < self.limit
    }

    /// Before `--duration` ran out.
    fn in_time(&self) -> bool {
        self.deadline.is_none_or(|d| Instant::now() < d)
    }
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

async fn connect(hosts: &str) -> Result<zk::Client, String> {
    let connector = zk::Client::connector().with_session_timeout(Duration::from_secs(30));
    tokio::time::timeout(Duration::from_secs(15), connector.connect(hosts))
        .await
        .map_err(|_| format!("cannot connect to {hosts} within 15 s"))?
        .map_err(|e| format!("cannot connect to {hosts}: {e}"))
}

/// Session `i` of the load: connected to the `i`-th host of the connect string (modulo
/// their number), so that the load spans every member of an ensemble evenly; it syncs
/// first, so that it sees what the setup session created.
async fn connect_nth(hosts: &str, i: usize) -> Result<zk::Client, String> {
    let list: Vec<&str> = hosts.split(',').map(str::trim).filter(|h| !h.is_empty()).collect();
    let host = list.get(i % list.len().max(1)).copied().unwrap_or(hosts);
    let client = connect(host).await?;
    client.sync("/").await.map_err(|e| format!("sync through {host}: {e}"))?;
    Ok(client)
}

fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

async fn ensure(c: &zk::Client, path: &str, data: &[u8]) -> Result<(), String> {
    match c.create(path, data, &persistent()).await {
        Ok(_) | Err(zk::Error::NodeExists) => Ok(()),
        Err(e) => Err(format!("create {path}: {e}")),
    }
}

pub fn run(args: BenchArgs) -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match rt.block_on(bench(&args)) {
        Ok(v) => {
            if args.json {
                println!("{v}");
            } else {
                let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
                println!(
                    "{:?}: {} ops in {:.2} s = {:.0} ops/s; latency us p50 {} p90 {} p99 {} p999 {} max {}; {} errors",
                    args.workload,
                    v["ops"],
                    f("seconds"),
                    f("ops_per_s"),
                    v["p50_us"],
                    v["p90_us"],
                    v["p99_us"],
                    v["p999_us"],
                    v["max_us"],
                    v["errors"]
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("corral bench: {e}");
            ExitCode::from(1)
        }
    }
}

async fn bench(a: &BenchArgs) -> Result<serde_json::Value, String> {
    if a.clients == 0 || a.outstanding == 0 {
        return Err("--clients and --outstanding must be at least 1".into());
    }
    let limit = match (a.ops, a.duration) {
        (Some(n), _) => n,
        (None, Some(_)) => u64::MAX,
        (None, None) => 10_000,
    };
    let payload = vec![b'x'; a.payload];
    let setup = connect(&a.connect).await?;
    ensure(&setup, "/bench", b"").await?;
    let run_id = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis());
    if matches!(a.workload, Workload::Set | Workload::Get | Workload::Exists | Workload::Mixed) {
        ensure(&setup, "/bench/keys", b"").await?;
        for k in 0..a.keys {
            ensure(&setup, &format!("/bench/keys/k{k}"), &payload).await?;
        }
    }
    if matches!(a.workload, Workload::Create | Workload::Populate) {
        ensure(&setup, &format!("/bench/{run_id}"), b"").await?;
    }
    let shared = Arc::new(Shared {
        started: AtomicU64::new(0),
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        limit,
        deadline: a.duration.map(|d| Instant::now() + Duration::from_secs_f64(d)),
        hist: Mutex::new(hist()),
    });
    let t0 = Instant::now();
    match a.workload {
        Workload::Watch => watch_fanout(a, &shared, &payload).await?,
        Workload::Queue => queue_load(a, &shared, &payload, &run_id).await?,
        _ => {
            let mut set = tokio::task::JoinSet::new();
            for c in 0..a.clients {
                let client = connect_nth(&a.connect, c).await?;
                for slot in 0..a.outstanding {
                    let (client, shared, payload) = (client.clone(), shared.clone(), payload.clone());
                    let (w, keys, ratio, run_id) = (a.workload, a.keys.max(1), a.read_ratio, run_id.clone());
                    set.spawn(async move {
                        let mut h = hist();
                        let mut n: u64 = 0;
                        while shared.next() {
                            n += 1;
                            let key = format!("/bench/keys/k{}", rand::random::<u64>() % keys);
                            let t = Instant::now();
                            let ok = match w {
                                Workload::Create | Workload::Populate => client
                                    .create(&format!("/bench/{run_id}/c{c}-{slot}-{n}"), &payload, &persistent())
                                    .await
                                    .is_ok(),
                                Workload::Set => client.set_data(&key, &payload, None).await.is_ok(),
                                Workload::Get => client.get_data(&key).await.is_ok(),
                                Workload::Exists => client.check_stat(&key).await.is_ok(),
                                Workload::Mixed if rand::random::<f64>() < ratio => client.get_data(&key).await.is_ok(),
                                Workload::Mixed => client.set_data(&key, &payload, None).await.is_ok(),
                                Workload::Watch | Workload::Queue => unreachable!(),
                            };
                            record(&shared, &mut h, t, ok);
                        }
                        shared.hist.lock().unwrap().add(&h).expect("same bounds");
                    });
                }
            }
            while set.join_next().await.is_some() {}
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let h = shared.hist.lock().unwrap();
    let done = shared.done.load(Ordering::Relaxed);
    Ok(serde_json::json!({
        "workload": format!("{:?}", a.workload).to_lowercase(),
        "clients": a.clients, "outstanding": a.outstanding, "payload": a.payload,
        "ops": done, "errors": shared.errors.load(Ordering::Relaxed), "seconds": secs,
        "ops_per_s": done as f64 / secs,
        "p50_us": h.value_at_quantile(0.5), "p90_us": h.value_at_quantile(0.9),
        "p99_us": h.value_at_quantile(0.99), "p999_us": h.value_at_quantile(0.999), "max_us": h.max(),
    }))
}

fn record(shared: &Shared, h: &mut Histogram<u64>, t: Instant, ok: bool) {
    if ok {
        let _ = h.record(t.elapsed().as_micros().max(1) as u64);
        shared.done.fetch_add(1, Ordering::Relaxed);
    } else {
        shared.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// One writer sets `/bench/watched`; every session watches it; an op is one write until
/// the last watcher heard of it.
async fn watch_fanout(a: &BenchArgs, shared: &Arc<Shared>, payload: &[u8]) -> Result<(), String> {
    let writer = connect(&a.connect).await?;
    ensure(&writer, "/bench/watched", b"").await?;
    let mut watchers = Vec::new();
    for i in 0..a.clients {
        watchers.push(connect_nth(&a.connect, i + 1).await?);
    }
    let mut h = hist();
    while shared.next() {
        let mut pending = Vec::new();
        for w in &watchers {
            let (_, _, watcher) = w.get_and_watch_data("/bench/watched").await.map_err(|e| e.to_string())?;
            pending.push(watcher);
        }
        let t = Instant::now();
        let ok = writer.set_data("/bench/watched", payload, None).await.is_ok();
        for p in pending {
            let _ = tokio::time::timeout(Duration::from_secs(10), p.changed()).await;
        }
        record(shared, &mut h, t, ok);
    }
    shared.hist.lock().unwrap().add(&h).expect("same bounds");
    Ok(())
}

/// Half the sessions push tasks, half take and ack them; an op is one acked task, timed
/// from its take to its ack.
async fn queue_load(a: &BenchArgs, shared: &Arc<Shared>, payload: &[u8], run_id: &str) -> Result<(), String> {
    let name = format!("bench-{run_id}");
    let producers = (a.clients / 2).max(1);
    let workers = (a.clients - a.clients / 2).max(1);
    let pushed = Arc::new(AtomicU64::new(0));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..producers {
        let q = Queue::open(connect_nth(&a.connect, i).await?, &name).await.map_err(|e| e.to_string())?;
        let (shared, pushed, payload) = (shared.clone(), pushed.clone(), payload.to_vec());
        set.spawn(async move {
            while pushed.fetch_add(1, Ordering::Relaxed) < shared.limit && shared.in_time() {
                if q.push(&payload, &PushOptions::default()).await.is_err() {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    for w in 0..workers {
        let q = Queue::open(connect_nth(&a.connect, producers + w).await?, &name).await.map_err(|e| e.to_string())?;
        let shared = shared.clone();
        set.spawn(async move {
            let mut h = hist();
            let me = format!("bench-{w}");
            while shared.done.load(Ordering::Relaxed) < shared.limit && shared.in_time() {
                let t = Instant::now();
                match q.take(&me, Some(Duration::from_millis(200))).await {
                    Ok(Some(c)) => {
                        let ok = q.ack(&c, None).await.is_ok();
                        record(&shared, &mut h, t, ok);
                    }
                    Ok(None) => {}
                    Err(_) => {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            shared.hist.lock().unwrap().add(&h).expect("same bounds");
        });
    }
    while set.join_next().await.is_some() {}
    Ok(())
}
