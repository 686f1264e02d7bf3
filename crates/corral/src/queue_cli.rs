//! `corral queue ...`: the task queue from the command line (docs/queue.md).

use clap::{Args, Subcommand};
use corral_queue::{zookeeper_client as zk, Claim, Nacked, PushOptions, Queue};
use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Clone)]
pub struct Target {
    /// ZooKeeper connect string: host:port[,host:port...].
    #[arg(long, value_name = "HOSTS", default_value = "127.0.0.1:2181")]
    connect: String,
    /// The queue's name.
    #[arg(long, value_name = "NAME")]
    queue: String,
    /// ZooKeeper session timeout: how long after a worker's death its tasks go back.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    session_timeout: Duration,
}

#[derive(Subcommand)]
pub enum QueueCommand {
    /// Push a task; prints its id.
    Push {
        #[command(flatten)]
        t: Target,
        /// 0 (default) to 999; higher first.
        #[arg(long, default_value_t = 0)]
        priority: u16,
        /// Not to be taken before this long from now: 30s, 5m, 2h, 250ms.
        #[arg(long, value_parser = parse_duration)]
        delay: Option<Duration>,
        /// Idempotency key: a second push with the same key prints the first task's id.
        #[arg(long)]
        key: Option<String>,
        /// Claims before the task goes to the dead letters.
        #[arg(long, default_value_t = 3)]
        max_attempts: u32,
        /// The payload; `-` or nothing reads it from stdin.
        payload: Option<String>,
    },
    /// Run a command for each task: payload on stdin, CORRAL_TASK_ID, CORRAL_TASK_ATTEMPT and
    /// CORRAL_FENCING_TOKEN in its environment. Exit 0 acks (stdout is kept as the result);
    /// any other exit nacks with stderr as the error. SIGTERM or Ctrl-C: stop taking, finish
    /// the running tasks, exit.
    Work {
        #[command(flatten)]
        t: Target,
        /// Tasks run at once.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// The command, run with `sh -c`.
        #[arg(long, value_name = "CMD")]
        exec: String,
        /// This worker's name in stats (default: host name and process id).
        #[arg(long)]
        name: Option<String>,
    },
    /// Counts: ready, delayed, running (with their workers), dead.
    Stats {
        #[command(flatten)]
        t: Target,
        #[arg(long)]
        json: bool,
    },
    /// Tasks in the order they will be taken (ready, then delayed).
    List {
        #[command(flatten)]
        t: Target,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// One task: its state, attempts, last error and payload.
    Peek {
        #[command(flatten)]
        t: Target,
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a task that no worker holds.
    Cancel {
        #[command(flatten)]
        t: Target,
        id: String,
    },
    /// Put every dead letter back in the queue.
    RequeueDead {
        #[command(flatten)]
        t: Target,
    },
    /// Remove every task no worker holds, with results and keys.
    Purge {
        #[command(flatten)]
        t: Target,
    },
    /// Schedules: push a task at every firing of a cron expression.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Measure (for bench/queue.py): the cost of a take with many tasks waiting, or
    /// end-to-end throughput; prints one JSON object.
    #[command(hide = true)]
    Bench {
        #[command(flatten)]
        t: Target,
        /// take-cost or throughput.
        #[arg(long)]
        mode: String,
        /// take-cost: tasks waiting (pushed first, up to this many).
        #[arg(long, default_value_t = 1000)]
        waiting: u64,
        /// take-cost: takes measured.
        #[arg(long, default_value_t = 200)]
        takes: u32,
        /// throughput: producer sessions, worker sessions, tasks.
        #[arg(long, default_value_t = 4)]
        producers: usize,
        #[arg(long, default_value_t = 8)]
        workers: usize,
        #[arg(long, default_value_t = 10000)]
        tasks: u64,
    },
    /// Print the result a worker stored for a task.
    Result {
        #[command(flatten)]
        t: Target,
        id: String,
        /// Wait for it: forever, or as long as given (30s, 5m...).
        #[arg(long, num_args = 0..=1, default_missing_value = "forever")]
        wait: Option<String>,
    },
}

#[derive(Args, Clone)]
pub struct Server {
    /// ZooKeeper connect string: host:port[,host:port...].
    #[arg(long, value_name = "HOSTS", default_value = "127.0.0.1:2181")]
    connect: String,
    /// ZooKeeper session timeout: how long after a scheduler's death another takes over.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    session_timeout: Duration,
}

#[derive(Subcommand)]
pub enum ScheduleCommand {
    /// Add (or redefine) a schedule: at every firing, a task with this payload is pushed.
    Add {
        #[command(flatten)]
        s: Server,
        /// The schedule's name.
        #[arg(long)]
        name: String,
        /// Cron expression: `minute hour day-of-month month day-of-week`, or six fields
        /// with seconds first.
        #[arg(long)]
        cron: String,
        /// IANA time zone of the expression.
        #[arg(long, default_value = "UTC")]
        tz: String,
        /// The queue its tasks go to.
        #[arg(long)]
        queue: String,
        #[arg(long, default_value_t = 0)]
        priority: u16,
        #[arg(long, default_value_t = 3)]
        max_attempts: u32,
        /// The payload; `-` or nothing reads it from stdin.
        payload: Option<String>,
    },
    /// Every schedule, with its next firing.
    List {
        #[command(flatten)]
        s: Server,
        #[arg(long)]
        json: bool,
    },
    /// Remove a schedule.
    Remove {
        #[command(flatten)]
        s: Server,
        name: String,
    },
    /// Run a scheduler. Run several (on several machines): they elect one, which fires
    /// every schedule; each firing is pushed once. SIGTERM or Ctrl-C stops it.
    Run {
        #[command(flatten)]
        s: Server,
        /// This scheduler's name (default: host name and process id).
        #[arg(long)]
        name: Option<String>,
    },
}

async fn connect(s: &Server) -> Result<zk::Client, String> {
    let connector = zk::Client::connector().with_session_timeout(s.session_timeout);
    tokio::time::timeout(Duration::from_secs(15), connector.connect(&s.connect))
        .await
        .map_err(|_| format!("cannot connect to {} within 15 s", s.connect))?
        .map_err(|e| format!("cannot connect to {}: {e}", s.connect))
}

fn read_payload(payload: Option<&str>) -> Result<Vec<u8>, String> {
    match payload {
        None | Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).map_err(|e| format!("reading the payload from stdin: {e}"))?;
            Ok(buf)
        }
        Some(p) => Ok(p.as_bytes().to_vec()),
    }
}

fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}:{}", host.trim(), std::process::id())
}

async fn schedule(cmd: ScheduleCommand) -> ExitCode {
    use corral_queue::schedule;
    match cmd {
        ScheduleCommand::Add { s, name, cron, tz, queue, priority, max_attempts, payload } => {
            let payload = match read_payload(payload.as_deref()) {
                Ok(p) => p,
                Err(e) => return fail(e),
            };
            let def = schedule::Schedule { name, cron, tz, queue, priority, max_attempts, payload };
            if let Err(e) = def.validate() {
                return fail(e);
            }
            let zk = match connect(&s).await {
                Ok(z) => z,
                Err(e) => return fail(e),
            };
            match schedule::add(&zk, &def).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        ScheduleCommand::List { s, json } => {
            let zk = match connect(&s).await {
                Ok(z) => z,
                Err(e) => return fail(e),
            };
            match schedule::list(&zk).await {
                Ok(all) => {
                    for (d, fired) in all {
                        let next = d.next_after(fired.max(now_ms())).ok().flatten();
                        if json {
                            let v = serde_json::json!({
                                "name": d.name, "cron": d.cron, "tz": d.tz, "queue": d.queue,
                                "priority": d.priority, "max_attempts": d.max_attempts,
                                "last_fired_ms": fired, "next_ms": next,
                            });
                            println!("{v}");
                        } else {
                            println!("{} {:?} {} -> queue {} (next in {} s)", d.name, d.cron, d.tz, d.queue,
                                next.map_or("?".to_string(), |n| ((n.saturating_sub(now_ms())) / 1000).to_string()));
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        ScheduleCommand::Remove { s, name } => {
            let zk = match connect(&s).await {
                Ok(z) => z,
                Err(e) => return fail(e),
            };
            match schedule::remove(&zk, &name).await {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => fail(format!("no schedule {name}")),
                Err(e) => fail(e),
            }
        }
        ScheduleCommand::Run { s, name } => {
            let zk = match connect(&s).await {
                Ok(z) => z,
                Err(e) => return fail(e),
            };
            let name = name.unwrap_or_else(default_name);
            eprintln!("corral queue schedule run: scheduler {name} waiting for its turn");
            let stop = async {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM");
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            };
            match schedule::run(&zk, &name, stop).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn bench(
    t: &Target,
    mode: &str,
    waiting: u64,
    takes: u32,
    producers: usize,
    workers: usize,
    tasks: u64,
) -> Result<serde_json::Value, String> {
    let payload = vec![b'x'; 100];
    match mode {
        "take-cost" => {
            let q = open(t).await?;
            let have = q.stats().await.map_err(|e| e.to_string())?.ready;
            let started = std::time::Instant::now();
            // Fill with 4 sessions, 500 tasks per multi.
            let mut fill = tokio::task::JoinSet::new();
            let need = waiting.saturating_sub(have);
            for p in 0..4u64 {
                let (q, payload) = (open(t).await?, payload.clone());
                let mine = need / 4 + u64::from(p < need % 4);
                fill.spawn(async move {
                    let mut left = mine;
                    while left > 0 {
                        let n = left.min(500);
                        let batch: Vec<(Vec<u8>, PushOptions)> = (0..n).map(|_| (payload.clone(), PushOptions::default())).collect();
                        q.push_batch(&batch).await.map_err(|e| e.to_string())?;
                        left -= n;
                    }
                    Ok::<(), String>(())
                });
            }
            while let Some(r) = fill.join_next().await {
                r.map_err(|e| e.to_string())??;
            }
            let fill_s = started.elapsed().as_secs_f64();
            let mut us = Vec::new();
            for _ in 0..takes {
                let t0 = std::time::Instant::now();
                let c = q.take("bench", None).await.map_err(|e| e.to_string())?.ok_or("the queue ran dry")?;
                q.ack(&c, None).await.map_err(|e| e.to_string())?;
                us.push(t0.elapsed().as_micros() as u64);
            }
            us.sort();
            let pct = |p: f64| us[((us.len() - 1) as f64 * p) as usize];
            Ok(serde_json::json!({
                "mode": mode, "waiting": waiting, "pushed": need, "fill_s": fill_s, "takes": takes,
                "take_ack_us_p50": pct(0.5), "take_ack_us_p99": pct(0.99),
                "take_ack_us_mean": us.iter().sum::<u64>() / us.len().max(1) as u64,
            }))
        }
        "throughput" => {
            let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let started = std::time::Instant::now();
            let mut set = tokio::task::JoinSet::new();
            for p in 0..producers.max(1) {
                let (q, payload) = (open(t).await?, payload.clone());
                let mine = tasks / producers.max(1) as u64 + u64::from((p as u64) < tasks % producers.max(1) as u64);
                set.spawn(async move {
                    for _ in 0..mine {
                        q.push(&payload, &PushOptions::default()).await.map_err(|e| e.to_string())?;
                    }
                    Ok::<(), String>(())
                });
            }
            for w in 0..workers.max(1) {
                let (q, done) = (open(t).await?, done.clone());
                set.spawn(async move {
                    let name = format!("bench-{w}");
                    while done.load(Ordering::SeqCst) < tasks {
                        if let Some(c) = q.take(&name, Some(Duration::from_millis(200))).await.map_err(|e| e.to_string())? {
                            q.ack(&c, None).await.map_err(|e| e.to_string())?;
                            done.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Ok::<(), String>(())
                });
            }
            while let Some(r) = set.join_next().await {
                r.map_err(|e| e.to_string())??;
            }
            let secs = started.elapsed().as_secs_f64();
            Ok(serde_json::json!({
                "mode": mode, "producers": producers, "workers": workers, "tasks": tasks,
                "seconds": secs, "tasks_per_s": tasks as f64 / secs,
            }))
        }
        _ => Err(format!("unknown bench mode {mode:?} (take-cost, throughput)")),
    }
}

/// `30s`, `5m`, `2h`, `250ms`, `1d`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("not a duration: {s:?} (try 30s, 5m, 2h)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?} (ms, s, m, h, d)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("corral queue: {e}");
    ExitCode::from(1)
}

async fn open(t: &Target) -> Result<Queue, String> {
    let client = connect(&Server { connect: t.connect.clone(), session_timeout: t.session_timeout }).await?;
    Queue::open(client, &t.queue).await.map_err(|e| e.to_string())
}

pub fn run(cmd: QueueCommand) -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        match cmd {
            QueueCommand::Work { t, concurrency, exec, name } => work(t, concurrency.max(1), exec, name).await,
            QueueCommand::Schedule(cmd) => schedule(cmd).await,
            cmd => match command(cmd).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            },
        }
    })
}

/// The commands that do one thing and end.
async fn command(cmd: QueueCommand) -> Result<(), String> {
    let err = |e: corral_queue::Error| e.to_string();
    match cmd {
        QueueCommand::Push { t, priority, delay, key, max_attempts, payload } => {
            let payload = read_payload(payload.as_deref())?;
            let q = open(&t).await?;
            let id = q.push(&payload, &PushOptions { priority, delay, key, max_attempts }).await.map_err(err)?;
            println!("{id}");
        }
        QueueCommand::Stats { t, json } => {
            let s = open(&t).await?.stats().await.map_err(err)?;
            if json {
                let running: Vec<_> =
                    s.running_by.iter().map(|(id, w)| serde_json::json!({"id": id, "worker": w})).collect();
                let v = serde_json::json!({
                    "queue": t.queue, "ready": s.ready, "delayed": s.delayed, "running": s.running,
                    "dead": s.dead, "waiting_workers": s.waiting_workers, "running_tasks": running,
                });
                println!("{v}");
            } else {
                println!("queue {}: {} ready, {} delayed, {} running, {} dead; {} workers waiting",
                    t.queue, s.ready, s.delayed, s.running, s.dead, s.waiting_workers);
                for (id, w) in s.running_by {
                    println!("  running {id} on {w}");
                }
            }
        }
        QueueCommand::List { t, limit, json } => {
            for task in open(&t).await?.list(limit).await.map_err(err)? {
                print_task(&task, json, false);
            }
        }
        QueueCommand::Peek { t, id, json } => match open(&t).await?.peek(&id).await.map_err(err)? {
            Some(task) => print_task(&task, json, true),
            None => return Err(format!("no task {id} in queue {}", t.queue)),
        },
        QueueCommand::Cancel { t, id } => {
            if !open(&t).await?.cancel(&id).await.map_err(err)? {
                return Err(format!("no task {id} in queue {}", t.queue));
            }
        }
        QueueCommand::RequeueDead { t } => println!("{}", open(&t).await?.requeue_dead().await.map_err(err)?),
        QueueCommand::Purge { t } => println!("{}", open(&t).await?.purge().await.map_err(err)?),
        QueueCommand::Bench { t, mode, waiting, takes, producers, workers, tasks } => {
            println!("{}", bench(&t, &mode, waiting, takes, producers, workers, tasks).await?);
        }
        QueueCommand::Result { t, id, wait } => {
            let wait = match wait.as_deref() {
                None => None,
                Some("forever") => Some(Duration::from_secs(100 * 365 * 86400)),
                Some(w) => Some(parse_duration(w)?),
            };
            match open(&t).await?.result(&id, wait).await.map_err(err)? {
                Some(r) => {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&r);
                    let _ = out.flush();
                }
                None => return Err(format!("no result for task {id} (yet)")),
            }
        }
        QueueCommand::Work { .. } | QueueCommand::Schedule(_) => unreachable!("run() handles these"),
    }
    Ok(())
}

fn print_task(task: &corral_queue::Listed, json: bool, full: bool) {
    let m = &task.meta;
    if json {
        let v = serde_json::json!({
            "id": task.id, "meta": m, "payload": String::from_utf8_lossy(&task.payload),
        });
        println!("{v}");
        return;
    }
    let state = serde_json::to_value(m.state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    print!("{} {state} priority={} attempt={}/{}", task.id, m.priority, m.attempt, m.max_attempts);
    if let Some(w) = &m.worker {
        print!(" worker={w}");
    }
    if let Some(e) = &m.last_error {
        print!(" last_error={e:?}");
    }
    println!();
    if full {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&task.payload);
        let _ = out.write_all(b"\n");
    }
}

/// The longest result kept (ZooKeeper's default frame limit is 1 MiB).
const MAX_RESULT: usize = 1_000_000;

async fn work(t: Target, concurrency: usize, exec: String, name: Option<String>) -> ExitCode {
    let name = name.unwrap_or_else(default_name);
    let stopping = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(tokio::sync::Notify::new());
    {
        let (stopping, stop) = (stopping.clone(), stop.clone());
        tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            eprintln!("corral queue work: stopping: no new tasks; finishing the running ones");
            stopping.store(true, Ordering::SeqCst);
            stop.notify_waiters();
        });
    }
    let mut first = true;
    // A session that expires (a long network cut, say) takes this worker's claims with
    // it; the worker starts a new one and goes on.
    while !stopping.load(Ordering::SeqCst) {
        let q = match open(&t).await {
            Ok(q) => q,
            Err(e) if first => return fail(e),
            Err(e) => {
                eprintln!("corral queue work: {e}; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if first {
            eprintln!("corral queue work: {name} takes from queue {} ({concurrency} at a time)", t.queue);
            first = false;
        } else {
            eprintln!("corral queue work: new session; taking again");
        }
        let mut slots = tokio::task::JoinSet::new();
        for slot in 0..concurrency {
            let (q, exec, stopping, stop) = (q.clone(), exec.clone(), stopping.clone(), stop.clone());
            let worker = if concurrency > 1 { format!("{name}#{slot}") } else { name.clone() };
            slots.spawn(async move {
                while !stopping.load(Ordering::SeqCst) {
                    let taken = tokio::select! {
                        r = q.take(&worker, Some(Duration::from_secs(60))) => r,
                        _ = stop.notified() => break,
                    };
                    match taken {
                        Ok(Some(task)) => {
                            if !run_task(&q, &task, &exec).await {
                                return;
                            }
                        }
                        Ok(None) => {}
                        Err(e) if session_gone(&e) => {
                            eprintln!("corral queue work: {e}");
                            return;
                        }
                        Err(e) => {
                            eprintln!("corral queue work: {e}");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            });
        }
        while slots.join_next().await.is_some() {}
    }
    ExitCode::SUCCESS
}

/// The session is over: nothing more can be done through it.
fn session_gone(e: &corral_queue::Error) -> bool {
    matches!(e, corral_queue::Error::Zk(zk::Error::SessionExpired | zk::Error::ClientClosed))
}

/// Runs one task's command and acks or nacks it. False when the session is gone (the
/// worker must start a new one).
async fn run_task(q: &Queue, task: &Claim, exec: &str) -> bool {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(exec)
        .env("CORRAL_TASK_ID", &task.id)
        .env("CORRAL_TASK_ATTEMPT", task.attempt.to_string())
        .env("CORRAL_FENCING_TOKEN", task.fencing_token.to_string())
        .env("CORRAL_QUEUE", q.name())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let outcome = match child {
        Err(e) => Err(format!("cannot run {exec:?}: {e}")),
        Ok(mut child) => {
            if let Some(mut stdin) = child.stdin.take() {
                let payload = task.payload.clone();
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let _ = stdin.write_all(&payload).await;
                });
            }
            match child.wait_with_output().await {
                Ok(out) if out.status.success() => Ok(out.stdout),
                Ok(out) => {
                    let mut err = String::from_utf8_lossy(&out.stderr).trim().to_string();
                    if err.is_empty() {
                        err = format!("exited with {}", out.status);
                    }
                    err.truncate(4000);
                    Err(err)
                }
                Err(e) => Err(format!("waiting for {exec:?}: {e}")),
            }
        }
    };
    match outcome {
        Ok(mut result) => {
            result.truncate(MAX_RESULT);
            match q.ack(task, Some(&result)).await {
                Ok(()) => eprintln!("corral queue work: task {} done (attempt {})", task.id, task.attempt),
                Err(e) if session_gone(&e) => {
                    eprintln!("corral queue work: task {} finished but the session ended: {e}", task.id);
                    return false;
                }
                Err(e) => eprintln!("corral queue work: task {} finished but its ack was refused: {e}", task.id),
            }
        }
        Err(error) => {
            let r = q.nack(task, &error).await;
            if matches!(&r, Err(e) if session_gone(e)) {
                return false;
            }
            report(r, task);
        }
    }
    true
}

fn report(r: corral_queue::Result<Nacked>, task: &Claim) {
    match r {
        Ok(Nacked::Retry { not_before_ms }) => {
            let secs = not_before_ms.saturating_sub(now_ms()) as f64 / 1000.0;
            eprintln!("corral queue work: task {} failed (attempt {}); retry in {secs:.1} s", task.id, task.attempt);
        }
        Ok(Nacked::Dead) => eprintln!("corral queue work: task {} failed (attempt {}); now a dead letter", task.id, task.attempt),
        Err(e) => eprintln!("corral queue work: task {} failed, and its nack was refused: {e}", task.id),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("12"), Ok(Duration::from_secs(12)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
    }
}
