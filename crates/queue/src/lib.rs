//! A distributed task queue on ZooKeeper's protocol, for Corral and for Apache ZooKeeper.
//!
//! Producers [`Queue::push`] tasks; workers on any number of machines [`Queue::take`]
//! them under their own ZooKeeper session, then [`Queue::ack`] or [`Queue::nack`] them.
//! A worker that dies loses its session, its claims vanish with it, and its tasks are
//! taken again by others. Only standard ZooKeeper operations are used (multi, sequential
//! and ephemeral nodes, watches), so the same code runs against Apache ZooKeeper.
//!
//! The layout (docs/queue.md) keeps every list a take reads bounded, so a take costs the
//! same with a million tasks waiting as with ten; waiting workers queue up behind one
//! another so that each new task wakes one of them, not all.
//!
//! ```no_run
//! # async fn demo() -> Result<(), corral_queue::Error> {
//! let zk = zookeeper_client::Client::connect("127.0.0.1:2181").await?;
//! let q = corral_queue::Queue::open(zk, "emails").await?;
//! let id = q.push(b"hello", &corral_queue::PushOptions::default()).await?;
//! if let Some(task) = q.take("worker-1", Some(std::time::Duration::from_secs(5))).await? {
//!     q.ack(&task, Some(b"sent")).await?;
//! }
//! # let _ = id; Ok(()) }
//! ```

pub mod layout;
pub mod record;

use layout::{Layout, BUCKET, MAX_PRIORITY};
use record::{Meta, State};
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use zookeeper_client as zk;

pub use zookeeper_client;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("zookeeper: {0}")]
    Zk(#[from] zk::Error),
    #[error("the claim on task {0} is no longer this worker's (it timed out, or the task was taken again)")]
    Stale(String),
    #[error("no task {0}")]
    NoTask(String),
    #[error("task {id} holds something that is not a task: {reason}")]
    Corrupt { id: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    /// A guarded push found its guard changed: nothing was pushed.
    #[error("the guard node changed; nothing was pushed")]
    GuardFailed,
}

impl From<zk::MultiWriteError> for Error {
    fn from(e: zk::MultiWriteError) -> Error {
        Error::Zk(e.into())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// How to push a task.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// 0 (the default) to 999; higher first.
    pub priority: u16,
    /// Not to be taken before this long from now.
    pub delay: Option<Duration>,
    /// A second push with the same key returns the first task's id and pushes nothing.
    pub key: Option<String>,
    /// Claims before the task goes to the dead letters (at least 1).
    pub max_attempts: u32,
}

impl Default for PushOptions {
    fn default() -> PushOptions {
        PushOptions { priority: 0, delay: None, key: None, max_attempts: 3 }
    }
}

/// A task a worker holds.
#[derive(Debug, Clone)]
pub struct Claim {
    pub id: String,
    pub payload: Vec<u8>,
    /// 1 for the first claim of the task, 2 for the second...
    pub attempt: u32,
    /// Grows with every claim of the task: pass it along to fence off a stale worker.
    pub fencing_token: u64,
    /// The task node's version right after the claim: ack and nack succeed only while it
    /// is unchanged, that is while the claim is still this one.
    version: i32,
    meta: Meta,
}

/// What a nack did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nacked {
    /// Back in the queue, not before this time (ms since the epoch).
    Retry { not_before_ms: u64 },
    /// Out of attempts: in the dead letters.
    Dead,
}

/// Counts of a queue's tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub ready: u64,
    pub delayed: u64,
    pub running: u64,
    pub dead: u64,
    /// Workers waiting for work.
    pub waiting_workers: u64,
    /// The running tasks and the worker holding each.
    pub running_by: Vec<(String, String)>,
}

/// Backoff before retry `attempt` (1-based) after a nack: 1 s, 2 s, 4 s... capped at 5 min.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(8)).min(Duration::from_secs(300))
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

fn ephemeral() -> zk::CreateOptions<'static> {
    zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all())
}

fn sequential() -> zk::CreateOptions<'static> {
    zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all())
}

/// The error of a failed multi, with the index of the operation that failed.
fn failed_op(e: &zk::MultiWriteError) -> Option<(usize, &zk::Error)> {
    match e {
        zk::MultiWriteError::OperationFailed { index, source } => Some((*index, source)),
        _ => None,
    }
}

/// Whether a request that failed this way may or may not have been applied: the
/// connection broke with it in flight.
pub(crate) fn outcome_unknown(e: &zk::Error) -> bool {
    matches!(e, zk::Error::ConnectionLoss | zk::Error::Timeout | zk::Error::UnexpectedError(_) | zk::Error::Custom(_))
}

/// Runs `op` until its answer is definite: again, with growing pauses (50 ms up to 2 s),
/// while it fails with an unknown outcome (the connection is down). The session's end is
/// definite too: it fails with [`zk::Error::SessionExpired`].
pub(crate) async fn until_definite<T, F, Fut>(mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, zk::Error>>,
{
    let mut pause = Duration::from_millis(50);
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if outcome_unknown(&e) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A task id: the push time in ms (hex, so ids sort by age), then randomness.
fn new_id() -> String {
    format!("t{:012x}{:08x}", now_ms(), rand::random::<u32>())
}

/// One queue, through one ZooKeeper session.
#[derive(Clone)]
pub struct Queue {
    zk: zk::Client,
    name: String,
    l: Layout,
    /// When this handle last looked for dead workers' tasks (ms since the epoch).
    last_reap_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Per priority, the oldest bucket (other than 0) that may still hold entries, as far
    /// as this handle knows: takes start there instead of listing the buckets.
    head: std::sync::Arc<std::sync::Mutex<HashMap<u16, u64>>>,
    /// When this handle's takes next look at the delayed index (ms since the epoch): the
    /// next due time it knows of, and at least once a second (other producers' delayed
    /// tasks).
    next_promote_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// How often a busy worker also looks for dead workers' tasks (an idle one does it
/// whenever a claim vanishes).
pub const REAP_EVERY: Duration = Duration::from_secs(1);

/// The most bytes one push (a task, or a whole batch) may write: ZooKeeper's default
/// frame limit (jute.maxbuffer) is 1 MiB, and a larger request would only break the
/// connection.
pub const MAX_PUSH_BYTES: usize = 1_000_000;

/// The longest idempotency key (it becomes a node name, escaped).
pub const MAX_KEY_BYTES: usize = 1024;

impl Queue {
    /// Opens the queue `name` (under `/corral/queues`), creating its nodes if needed.
    pub async fn open(zk: zk::Client, name: &str) -> Result<Queue> {
        Queue::open_at(zk, name, &format!("/corral/queues/{name}")).await
    }

    /// Opens a queue kept under `root`.
    pub async fn open_at(zk: zk::Client, name: &str, root: &str) -> Result<Queue> {
        if name.is_empty() || name.contains('/') {
            return Err(Error::Invalid(format!("bad queue name {name:?}")));
        }
        let q = Queue {
            zk,
            name: name.to_string(),
            l: Layout::new(root),
            last_reap_ms: Default::default(),
            head: Default::default(),
            next_promote_ms: Default::default(),
        };
        q.ensure_path(&q.l.root).await?;
        for d in Layout::DIRS {
            q.create_if_absent(&q.l.dir(d), b"").await?;
        }
        Ok(q)
    }

    pub(crate) fn head_hint(&self, priority: u16) -> Option<u64> {
        self.head.lock().expect("head hints").get(&priority).copied()
    }

    /// Sets the hint to what a look at the buckets found.
    pub(crate) fn reset_head_hint(&self, priority: u16, bucket: u64) {
        self.head.lock().expect("head hints").insert(priority, bucket);
    }

    /// Moves the hint forward (never back).
    pub(crate) fn set_head_hint(&self, priority: u16, bucket: u64) {
        let mut h = self.head.lock().expect("head hints");
        let e = h.entry(priority).or_insert(bucket);
        *e = (*e).max(bucket);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn client(&self) -> &zk::Client {
        &self.zk
    }

    async fn create_if_absent(&self, path: &str, data: &[u8]) -> Result<()> {
        match self.zk.create(path, data, &persistent()).await {
            Ok(_) | Err(zk::Error::NodeExists) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn ensure_path(&self, path: &str) -> Result<()> {
        let mut at = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            at.push('/');
            at.push_str(part);
            self.create_if_absent(&at, b"").await?;
        }
        Ok(())
    }

    async fn children(&self, path: &str) -> Result<Vec<String>> {
        match self.zk.list_children(path).await {
            Ok(mut v) => {
                v.sort();
                Ok(v)
            }
            Err(zk::Error::NoNode) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// The bucket producers of `priority` fill now, creating the priority's node (and
    /// its first bucket) on first use. Producers start at bucket 1: bucket 0, read first,
    /// is where the tasks of dead workers go back.
    async fn current_bucket(&self, priority: u16) -> Result<u64> {
        self.fill_bucket(&self.l.priority(priority)).await
    }

    /// The bucket producers fill now in the bucketed list `list` (a priority of the ready
    /// index, or a second of the delayed one): the number in `list`'s data. Makes `list`
    /// (and its parent) and its bucket 1 on first use.
    async fn fill_bucket(&self, list: &str) -> Result<u64> {
        loop {
            match self.zk.get_data(list).await {
                Ok((data, _)) => return Ok(std::str::from_utf8(&data).ok().and_then(|s| s.parse().ok()).unwrap_or(1)),
                Err(zk::Error::NoNode) => {}
                Err(e) => return Err(e.into()),
            }
            match self.zk.create(list, b"1", &persistent()).await {
                Ok(_) | Err(zk::Error::NodeExists) => {}
                Err(zk::Error::NoNode) => {
                    let parent = &list[..list.rfind('/').expect("an absolute path")];
                    self.create_if_absent(parent, b"").await?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            // The list may be swept away again before its first bucket is made (a promoter
            // whose clock is ahead): then look again.
            match self.zk.create(&layout::bucket_in(list, 1), b"", &persistent()).await {
                Ok(_) | Err(zk::Error::NodeExists) | Err(zk::Error::NoNode) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// After an entry landed at `seq` in `bucket` of `list`: once the bucket is full,
    /// producers move to the next one. The next bucket is made and the number moved in one
    /// multi, checked against the number's version: whoever gets there first does it, the
    /// others' multis fail harmlessly, and a bucket already drained and removed is never
    /// made again.
    async fn maybe_advance(&self, list: &str, bucket: u64, seq: u64) -> Result<()> {
        if seq + 1 < BUCKET {
            return Ok(());
        }
        let (data, stat) = self.zk.get_data(list).await?;
        if std::str::from_utf8(&data).ok().and_then(|s| s.parse::<u64>().ok()) != Some(bucket) {
            return Ok(());
        }
        let mut w = self.zk.new_multi_writer();
        w.add_create(&layout::bucket_in(list, bucket + 1), b"", &persistent())?;
        w.add_set_data(list, (bucket + 1).to_string().as_bytes(), Some(stat.version))?;
        match w.commit().await {
            Ok(_) => Ok(()),
            Err(e) if failed_op(&e).is_some() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Delayed tasks may be due by `due_ms`: this handle's next take looks no later.
    pub(crate) fn due_by(&self, due_ms: u64) {
        self.next_promote_ms.fetch_min(due_ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Pushes a task; returns its id (with a key already used: the first task's id).
    pub async fn push(&self, payload: &[u8], opts: &PushOptions) -> Result<String> {
        Ok(self.push_batch(&[(payload.to_vec(), opts.clone())]).await?.remove(0))
    }

    /// Pushes several tasks in one multi: all or none. A key already used makes the whole
    /// batch fail with [`Error::Invalid`] naming it (push such tasks one by one).
    pub async fn push_batch(&self, tasks: &[(Vec<u8>, PushOptions)]) -> Result<Vec<String>> {
        self.push_guarded(tasks, None, None).await
    }

    /// Pushes in one multi that also sets `guard`'s node to its data if its version is
    /// still the given one; [`Error::GuardFailed`] if it was not (nothing was pushed). A
    /// scheduler records a firing this way, so that the firing's task is pushed once.
    pub(crate) async fn push_guarded(
        &self,
        tasks: &[(Vec<u8>, PushOptions)],
        guard: Option<(&str, &[u8], i32)>,
        schedule: Option<(&str, u64)>,
    ) -> Result<Vec<String>> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        for (_, o) in tasks {
            if o.priority > MAX_PRIORITY {
                return Err(Error::Invalid(format!("priority {} is above {MAX_PRIORITY}", o.priority)));
            }
            if o.max_attempts == 0 {
                return Err(Error::Invalid("max attempts must be at least 1".into()));
            }
            if o.key.as_ref().is_some_and(|k| k.len() > MAX_KEY_BYTES) {
                return Err(Error::Invalid(format!("an idempotency key is at most {MAX_KEY_BYTES} bytes")));
            }
        }
        let ids: Vec<String> = tasks.iter().map(|_| new_id()).collect();
        let mut attempts = 0;
        let mut bytes = 0;
        loop {
            attempts += 1;
            if attempts > 20 {
                return Err(Error::Invalid(format!(
                    "queue {}: its nodes keep vanishing under the push (was it deleted?)",
                    self.name
                )));
            }
            let now = now_ms();
            // Where each task's entry goes: a priority of the ready index, or a second of
            // the delayed one; both are bucketed lists. One look at each list's current
            // bucket per attempt: a batch fills it by at most its own size past the
            // bucket's nominal size.
            let mut current: HashMap<String, u64> = HashMap::new();
            let mut lists = Vec::new();
            for (_, o) in tasks {
                let not_before_ms = o.delay.filter(|d| !d.is_zero()).map_or(0, |d| now + d.as_millis() as u64);
                let list =
                    if not_before_ms > 0 { self.l.delayed_second(not_before_ms / 1000) } else { self.l.priority(o.priority) };
                if !current.contains_key(&list) {
                    let b = self.fill_bucket(&list).await?;
                    current.insert(list.clone(), b);
                }
                lists.push((list, not_before_ms));
            }
            let mut w = self.zk.new_multi_writer();
            // Which operations of the multi are index entries (to read their sequence) and
            // key creations (to recognise a used key).
            let mut n = 0usize;
            let mut entry_ops = Vec::new();
            let mut key_ops = Vec::new();
            for (((payload, o), id), (list, not_before_ms)) in tasks.iter().zip(&ids).zip(&lists) {
                let not_before_ms = *not_before_ms;
                let meta = Meta {
                    priority: o.priority,
                    state: if not_before_ms > 0 { State::Delayed } else { State::Ready },
                    attempt: 0,
                    max_attempts: o.max_attempts,
                    token: 0,
                    created_ms: now,
                    not_before_ms,
                    key: o.key.clone(),
                    worker: None,
                    last_error: None,
                    schedule: schedule.map(|(name, _)| name.to_string()),
                    fired_ms: schedule.map(|(_, at)| at),
                };
                let record = record::encode(&meta, payload);
                // The whole request: the records, and per operation its path and framing.
                bytes += record.len() + 3 * (self.l.root.len() + 64) + o.key.as_ref().map_or(0, |k| 3 * k.len() + id.len());
                w.add_create(&self.l.task(id), &record, &persistent())?;
                n += 1;
                let bucket = current[list];
                entry_ops.push((n, list, bucket));
                let prefix = if not_before_ms > 0 {
                    self.l.delayed_prefix(not_before_ms, o.priority, id, bucket)
                } else {
                    self.l.entry_prefix(o.priority, bucket, id)
                };
                w.add_create(&prefix, b"", &sequential())?;
                n += 1;
                if let Some(k) = &o.key {
                    key_ops.push((n, k.clone()));
                    w.add_create(&self.l.key(k), id.as_bytes(), &persistent())?;
                    n += 1;
                }
            }
            if bytes > MAX_PUSH_BYTES {
                return Err(Error::Invalid(format!(
                    "the push is {bytes} bytes; at most {MAX_PUSH_BYTES} fit in one (push fewer or smaller tasks)"
                )));
            }
            bytes = 0;
            w.add_set_data(&self.l.signal(), b"", None)?;
            n += 1;
            if let Some((path, data, version)) = guard {
                w.add_set_data(path, data, Some(version))?;
            }
            let guard_op = n;
            match w.commit().await {
                Ok(results) => {
                    for (_, not_before_ms) in &lists {
                        if *not_before_ms > 0 {
                            self.due_by(*not_before_ms);
                        }
                    }
                    // The last entry of each bucket says how full it is now.
                    let mut last: HashMap<(&str, u64), u64> = HashMap::new();
                    for (index, list, bucket) in entry_ops {
                        if let Some(zk::MultiWriteResult::Create { path, .. }) = results.get(index) {
                            if let Some(seq) = path.rsplit_once('_').and_then(|(_, seq)| seq.parse().ok()) {
                                last.insert((list.as_str(), bucket), seq);
                            }
                        }
                    }
                    // The push is done: a failure to move producers on is only logged (the
                    // next push tries again), never reported as a failed push.
                    for ((list, bucket), seq) in last {
                        if let Err(e) = self.maybe_advance(list, bucket, seq).await {
                            tracing::warn!(queue = %self.name, error = %e, "moving to the next bucket failed");
                        }
                    }
                    return Ok(ids);
                }
                Err(e) => match failed_op(&e) {
                    Some((i, zk::Error::BadVersion | zk::Error::NoNode)) if guard.is_some() && i == guard_op => {
                        return Err(Error::GuardFailed)
                    }
                    // A bucket emptied and removed meanwhile (a delayed second swept away by
                    // a promoter whose clock is ahead, say): look again, making the current
                    // bucket if it is missing (a list whose creation was cut short).
                    Some((_, zk::Error::NoNode)) => {
                        for (list, &b) in &current {
                            if self.fill_bucket(list).await? == b {
                                self.create_if_absent(&layout::bucket_in(list, b), b"").await?;
                            }
                        }
                        continue;
                    }
                    Some((index, zk::Error::NodeExists)) => {
                        if let Some((_, k)) = key_ops.iter().find(|(i, _)| *i == index) {
                            if tasks.len() == 1 {
                                let (data, _) = self.zk.get_data(&self.l.key(k)).await?;
                                return Ok(vec![String::from_utf8_lossy(&data).into_owned()]);
                            }
                            return Err(Error::Invalid(format!("key {k:?} was used already")));
                        }
                        return Err(e.into());
                    }
                    _ => return Err(e.into()),
                },
            }
        }
    }
}

mod delay;
pub mod schedule;
mod take;
mod wait;
pub use delay::PROMOTE_BATCH;
pub use take::{Listed, MAX_ERROR_BYTES, MAX_RESULT_BYTES};
