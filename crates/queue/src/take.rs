//! Taking, finishing and managing tasks.

use crate::layout;
use crate::record::{self, Meta, State};
use crate::{
    backoff, ephemeral, failed_op, now_ms, outcome_unknown, persistent, sequential, until_definite, zk, Claim, Error,
    Nacked, Queue, Result, Stats,
};

/// How far ahead of a contended entry a take jumps (at random) for its next try.
const CONTENDED_SPREAD: usize = 32;

/// The longest result an ack stores (ZooKeeper's default frame limit is 1 MiB).
pub const MAX_RESULT_BYTES: usize = 1_000_000;

/// The longest error a nack keeps in the task (it is stored with the payload).
pub const MAX_ERROR_BYTES: usize = 4096;

/// Tries of an ack, nack or their reads whose outcome stayed unknown before giving up.
const MAX_UNKNOWN: u32 = 10;

/// A task as `list` and `peek` show it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: String,
    pub meta: Meta,
    pub payload: Vec<u8>,
}

impl Queue {
    /// A task's metadata, payload and node version; `None` if it is gone.
    pub(crate) async fn read_task(&self, id: &str) -> Result<Option<(Meta, Vec<u8>, i32)>> {
        match self.zk.get_data(&self.l.task(id)).await {
            Ok((data, stat)) => {
                let (meta, payload) =
                    record::decode(&data).map_err(|reason| Error::Corrupt { id: id.to_string(), reason })?;
                Ok(Some((meta, payload.to_vec(), stat.version)))
            }
            Err(zk::Error::NoNode) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Claims the highest-priority, oldest ready task for `worker`, if there is one now.
    pub async fn try_take(&self, worker: &str) -> Result<Option<Claim>> {
        self.promote_if_due().await?;
        for pname in self.children(&self.l.dir("ready")).await? {
            let Some(priority) = layout::parse_priority(&pname) else { continue };
            let current = self.current_bucket(priority).await?;
            // Bucket 0 (put-backs) first, then from the oldest bucket this handle knows
            // to hold entries up to the current one: no list of buckets on the way.
            let first = match self.head_hint(priority) {
                // A hint past the current bucket is from before a purge (which starts the
                // priority again at bucket 1): look again.
                Some(h) if h <= current => h,
                _ => {
                    // A new handle: one look at the buckets to find the oldest.
                    let oldest = self
                        .children(&self.l.priority(priority))
                        .await?
                        .iter()
                        .filter_map(|b| layout::parse_bucket(b))
                        .filter(|&b| b > 0)
                        .min()
                        .unwrap_or(current);
                    self.reset_head_hint(priority, oldest);
                    oldest
                }
            };
            for bucket in std::iter::once(0).chain(first.max(1)..=current) {
                let bpath = self.l.bucket(priority, bucket);
                let Some(names) = self.children_if_exists(&bpath).await? else {
                    if bucket > 0 && bucket < current {
                        self.set_head_hint(priority, bucket + 1);
                    }
                    continue;
                };
                let mut entries: Vec<(String, u64)> = names
                    .into_iter()
                    .filter_map(|n| layout::parse_entry(&n).map(|(_, seq)| (n.clone(), seq)))
                    .collect();
                if entries.is_empty() {
                    if bucket < current {
                        // Drained for good: producers have moved on (bucket 0 is made
                        // again when needed). Only once it is gone does this handle skip
                        // it: a producer with a stale view may still add to it until then.
                        match self.zk.delete(&bpath, None).await {
                            Ok(()) | Err(zk::Error::NoNode) if bucket > 0 => self.set_head_hint(priority, bucket + 1),
                            _ => {}
                        }
                    }
                    continue;
                }
                entries.sort_by_key(|(_, seq)| *seq);
                // The oldest first. Losing a race for it means other workers are taking
                // from the head too: jump to a random entry among the next few instead of
                // racing them for each entry in turn.
                let mut i = 0;
                let mut tried = vec![false; entries.len()];
                while let Some(pos) = (i..entries.len()).chain(0..i).find(|&p| !tried[p]) {
                    tried[pos] = true;
                    let name = &entries[pos].0;
                    let (id, _) = layout::parse_entry(name).expect("parsed above");
                    if let Some(claim) = self.claim(worker, id, &format!("{bpath}/{name}")).await? {
                        return Ok(Some(claim));
                    }
                    let spread = entries.len().min(CONTENDED_SPREAD);
                    i = (pos + 1 + rand::random::<usize>() % spread) % entries.len();
                }
            }
        }
        Ok(None)
    }

    /// The children of `path`, sorted; `None` if it does not exist.
    async fn children_if_exists(&self, path: &str) -> Result<Option<Vec<String>>> {
        match self.zk.list_children(path).await {
            Ok(mut v) => {
                v.sort();
                Ok(Some(v))
            }
            Err(zk::Error::NoNode) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Claims task `id` through its ready entry; `None` if another worker was first.
    async fn claim(&self, worker: &str, id: &str, entry: &str) -> Result<Option<Claim>> {
        let (mut meta, payload, version) = match self.read_task(id).await {
            Ok(Some(t)) => t,
            // Cancelled: its entry is left over.
            Ok(None) => {
                let _ = self.zk.delete(entry, None).await;
                return Ok(None);
            }
            Err(Error::Corrupt { reason, .. }) => {
                self.bury(id, entry, &reason).await?;
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        meta.attempt += 1;
        meta.token += 1;
        meta.state = State::Running;
        meta.worker = Some(worker.to_string());
        let mut w = self.zk.new_multi_writer();
        w.add_delete(entry, None)?;
        w.add_set_data(&self.l.task(id), &record::encode(&meta, &payload), Some(version))?;
        // A nonce of this take, to know it for ours if the answer is lost (two takes through
        // one session may race for the same entry).
        let claim_data = format!("{worker}\n{}\n{:016x}", meta.token, rand::random::<u64>());
        w.add_create(&self.l.claim(id), claim_data.as_bytes(), &ephemeral())?;
        w.add_create(&self.l.running(id), b"", &persistent())?;
        let ours = match w.commit().await {
            Ok(_) => true,
            // Taken (entry gone, task changed, claim or running marker present): not ours.
            Err(e) if matches!(failed_op(&e), Some((_, zk::Error::NoNode | zk::Error::BadVersion | zk::Error::NodeExists))) => {
                false
            }
            // The connection broke with the multi in flight: it may have been applied.
            // If the claim is there and holds our nonce, the multi was applied and the
            // task is as it wrote it (only the holder of the claim changes it); forgetting
            // it would leave it claimed for as long as we live.
            Err(zk::MultiWriteError::RequestFailed { source }) if outcome_unknown(&source) => {
                matches!(self.get_definitely(&self.l.claim(id)).await?, Some((data, _)) if data == claim_data.as_bytes())
            }
            Err(e) => return Err(e.into()),
        };
        Ok(ours.then(|| Claim {
            id: id.to_string(),
            payload,
            attempt: meta.attempt,
            fencing_token: meta.token,
            version: version + 1,
            meta,
        }))
    }

    /// A node's data and stat, `None` if it does not exist. Asks again, with growing
    /// pauses, while the connection is down: the answer decides whether an operation
    /// whose reply was lost took effect, so only a definite one will do (the session's
    /// end is definite too: it fails with [`zk::Error::SessionExpired`]).
    pub(crate) async fn get_definitely(&self, path: &str) -> Result<Option<(Vec<u8>, zk::Stat)>> {
        until_definite(|| async {
            // On an ensemble the member we reconnected to may not have applied the write
            // whose fate we ask about yet: catch up with the leader first.
            match self.zk.sync(path).await {
                Ok(()) | Err(zk::Error::NoNode) => {}
                Err(e) => return Err(e),
            }
            match self.zk.get_data(path).await {
                Ok(found) => Ok(Some(found)),
                Err(zk::Error::NoNode) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Task `id` holds something that is not a task: it goes from `entry` (its index
    /// entry) to the dead letters as it is, so that takes go on with the others.
    pub(crate) async fn bury(&self, id: &str, entry: &str, reason: &str) -> Result<()> {
        tracing::warn!(queue = %self.name, task = id, reason, "a task node is corrupt; moving it to the dead letters");
        let mut w = self.zk.new_multi_writer();
        w.add_delete(entry, None)?;
        w.add_create(&self.l.dead(id), b"", &persistent())?;
        match w.commit().await {
            // Someone else moved it, or it is a dead letter already.
            Ok(_) | Err(zk::MultiWriteError::OperationFailed { index: 0, .. }) => Ok(()),
            Err(zk::MultiWriteError::OperationFailed { index: 1, .. }) => {
                let _ = self.zk.delete(entry, None).await;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The multi operations that end a claim: the task unchanged since the claim, then the
    /// claim and the running marker gone.
    fn end_claim(&self, w: &mut zk::MultiWriter<'_>, c: &Claim) -> Result<()> {
        w.add_check_version(&self.l.task(&c.id), c.version)?;
        w.add_delete(&self.l.claim(&c.id), None)?;
        w.add_delete(&self.l.running(&c.id), None)?;
        Ok(())
    }

    /// The task is done: it and its claim go, atomically, only if the claim is still this
    /// one; `result`, if any, is kept for [`Queue::result`]. If the connection breaks with
    /// the ack in flight, it is settled before this returns: asked about until the answer
    /// is definite, and sent again if it was not applied (so is a nack).
    pub async fn ack(&self, c: &Claim, result: Option<&[u8]>) -> Result<()> {
        if let Some(r) = result.filter(|r| r.len() > MAX_RESULT_BYTES) {
            return Err(Error::Invalid(format!("a result of {} bytes; at most {MAX_RESULT_BYTES} are kept", r.len())));
        }
        let mut unknown = 0;
        loop {
            let mut w = self.zk.new_multi_writer();
            self.end_claim(&mut w, c)?;
            w.add_delete(&self.l.task(&c.id), None)?;
            if let Some(r) = result {
                w.add_create(&self.l.result(&c.id), r, &persistent())?;
            }
            match w.commit().await {
                Ok(_) => return Ok(()),
                Err(e) if matches!(failed_op(&e), Some((0..=2, _))) => return Err(Error::Stale(c.id.clone())),
                // The reply was lost: while this claim holds nobody else removes the task,
                // so a task gone is an ack done, and one unchanged an ack to send again.
                Err(zk::MultiWriteError::RequestFailed { source }) if outcome_unknown(&source) => {
                    match self.get_definitely(&self.l.task(&c.id)).await? {
                        None => return Ok(()),
                        Some((_, stat)) if stat.version == c.version => {
                            unknown = self.again_after_unknown(unknown, &source).await?;
                            continue;
                        }
                        Some(_) => return Err(Error::Stale(c.id.clone())),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The task failed: it is retried after a backoff, or, out of attempts, goes to the
    /// dead letters with `error`. Only while the claim is still this one.
    pub async fn nack(&self, c: &Claim, error: &str) -> Result<Nacked> {
        let mut meta = c.meta.clone();
        // Kept short: the error goes into the task node, with its payload.
        let mut error = error.to_string();
        if error.len() > MAX_ERROR_BYTES {
            let mut end = MAX_ERROR_BYTES;
            while !error.is_char_boundary(end) {
                end -= 1;
            }
            error.truncate(end);
        }
        meta.last_error = Some(error);
        meta.worker = None;
        let dead = meta.attempt >= meta.max_attempts;
        let not_before_ms = now_ms() + backoff(meta.attempt).as_millis() as u64;
        let outcome = if dead { Nacked::Dead } else { Nacked::Retry { not_before_ms } };
        if dead {
            meta.state = State::Dead;
        } else {
            meta.state = State::Delayed;
            meta.not_before_ms = not_before_ms;
        }
        let record = record::encode(&meta, &c.payload);
        let mut unknown = 0;
        loop {
            // Where the delayed entry goes; a broken connection here is retried (the claim
            // must not be left held for want of an answer).
            let slot = if dead {
                None
            } else {
                match self.delayed_slot(not_before_ms, meta.priority, &c.id).await {
                    Ok(slot) => Some(slot),
                    Err(Error::Zk(e)) if outcome_unknown(&e) => {
                        unknown = self.again_after_unknown(unknown, &e).await?;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            };
            let mut w = self.zk.new_multi_writer();
            self.end_claim(&mut w, c)?;
            w.add_set_data(&self.l.task(&c.id), &record, Some(c.version))?;
            let slot = match slot {
                None => {
                    w.add_create(&self.l.dead(&c.id), b"", &persistent())?;
                    None
                }
                Some((list, bucket, prefix)) => {
                    w.add_create(&prefix, b"", &sequential())?;
                    w.add_set_data(&self.l.signal(), b"", None)?;
                    Some((list, bucket))
                }
            };
            match w.commit().await {
                Ok(r) => {
                    if let Some((list, bucket)) = slot {
                        self.due_by(not_before_ms);
                        if let Some(zk::MultiWriteResult::Create { path, .. }) = r.get(4) {
                            if let Some(seq) = path.rsplit_once('_').and_then(|(_, s)| s.parse().ok()) {
                                // The nack is done: a failure to move producers on is only
                                // logged (the next entry tries again).
                                if let Err(e) = self.maybe_advance(&list, bucket, seq).await {
                                    tracing::warn!(queue = %self.name, error = %e, "moving to the next bucket failed");
                                }
                            }
                        }
                    }
                    return Ok(outcome);
                }
                Err(e) if matches!(failed_op(&e), Some((0..=2, _))) => return Err(Error::Stale(c.id.clone())),
                // The delayed bucket is missing (swept away meanwhile, or a second whose
                // making was cut short): make it if it is still the current one, and place
                // the entry again.
                Err(e) if !dead && matches!(failed_op(&e), Some((4, zk::Error::NoNode))) => {
                    if let Some((list, bucket)) = slot {
                        if self.fill_bucket(&list).await? == bucket {
                            self.create_if_absent(&layout::bucket_in(&list, bucket), b"").await?;
                        }
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
                // The reply was lost: the task unchanged means the nack is to send again;
                // rewritten by this nack (the next version, this claim's token, no longer
                // running) means it was done.
                Err(zk::MultiWriteError::RequestFailed { source }) if outcome_unknown(&source) => {
                    match self.get_definitely(&self.l.task(&c.id)).await? {
                        Some((_, stat)) if stat.version == c.version => {
                            unknown = self.again_after_unknown(unknown, &source).await?;
                            continue;
                        }
                        Some((data, stat)) if stat.version == c.version + 1 => match record::decode(&data) {
                            Ok((m, _)) if m.token == c.fencing_token && m.state == meta.state => return Ok(outcome),
                            _ => return Err(Error::Stale(c.id.clone())),
                        },
                        _ => return Err(Error::Stale(c.id.clone())),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Puts a claimed task back at the front of its priority, as if never claimed (the
    /// attempt is not counted; the fencing token keeps growing): for a take whose caller
    /// gave it up after it claimed. If that fails, the claim goes with the session.
    pub(crate) async fn give_back(&self, c: &Claim) {
        let mut meta = c.meta.clone();
        meta.attempt = meta.attempt.saturating_sub(1);
        meta.state = State::Ready;
        meta.worker = None;
        let record = record::encode(&meta, &c.payload);
        for _ in 0..10 {
            let made = async {
                self.current_bucket(meta.priority).await?;
                self.create_if_absent(&self.l.bucket(meta.priority, 0), b"").await
            };
            if made.await.is_err() {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
            let mut w = self.zk.new_multi_writer();
            if self.end_claim(&mut w, c).is_err()
                || w.add_set_data(&self.l.task(&c.id), &record, Some(c.version)).is_err()
                || w.add_create(&self.l.entry_prefix(meta.priority, 0, &c.id), b"", &sequential()).is_err()
                || w.add_set_data(&self.l.signal(), b"", None).is_err()
            {
                break;
            }
            match w.commit().await {
                Ok(_) => return,
                // No longer ours (or given back already).
                Err(e) if matches!(failed_op(&e), Some((0..=3, _))) => return,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
        tracing::warn!(queue = %self.name, task = %c.id, "could not put back a task whose take was given up; it goes back when the session ends");
    }

    /// After an outcome left unknown and found not applied: pauses, then says to try
    /// again, up to [`MAX_UNKNOWN`] times; then gives up with the error (a request the
    /// server drops every time, say, must not be sent forever).
    async fn again_after_unknown(&self, tries: u32, e: &zk::Error) -> Result<u32> {
        if tries + 1 >= MAX_UNKNOWN {
            return Err(Error::Zk(e.clone()));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50u64 << tries.min(5))).await;
        Ok(tries + 1)
    }

    /// Puts back the tasks of workers that died: running, but with no claim (its
    /// ephemeral node went with the worker's session). Returns how many.
    pub async fn reap_orphans(&self) -> Result<usize> {
        let claims = self.children(&self.l.dir("claims")).await?;
        let mut n = 0;
        for id in self.children(&self.l.dir("running")).await? {
            if claims.binary_search(&id).is_ok() {
                continue;
            }
            if self.requeue_orphan(&id).await? {
                n += 1;
            }
        }
        Ok(n)
    }

    pub(crate) async fn requeue_orphan(&self, id: &str) -> Result<bool> {
        loop {
            match self.try_requeue_orphan(id).await? {
                Some(done) => return Ok(done),
                None => continue,
            }
        }
    }

    /// One attempt; `None` when the front bucket vanished meanwhile (try again).
    async fn try_requeue_orphan(&self, id: &str) -> Result<Option<bool>> {
        let (mut meta, payload, version) = match self.read_task(id).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                let _ = self.zk.delete(&self.l.running(id), None).await;
                return Ok(Some(false));
            }
            // Not a task (any more): to the dead letters as it is, if no take holds it.
            Err(Error::Corrupt { reason, .. }) => {
                tracing::warn!(queue = %self.name, task = id, reason, "a task node is corrupt; moving it to the dead letters");
                let mut w = self.zk.new_multi_writer();
                w.add_create(&self.l.claim(id), b"", &ephemeral())?;
                w.add_delete(&self.l.claim(id), None)?;
                w.add_delete(&self.l.running(id), None)?;
                w.add_create(&self.l.dead(id), b"", &persistent())?;
                return match w.commit().await {
                    Ok(_) => Ok(Some(true)),
                    Err(e) if failed_op(&e).is_some() => Ok(Some(false)),
                    Err(e) => Err(e.into()),
                };
            }
            Err(e) => return Err(e),
        };
        let dead = meta.attempt >= meta.max_attempts;
        meta.worker = None;
        meta.last_error = Some("the worker's session ended while it held the task".into());
        // It goes to the front of its priority: bucket 0, which producers never fill and
        // takes read first (emptied, it is removed, so it may have to be made again).
        self.current_bucket(meta.priority).await?;
        let bucket = 0;
        if !dead {
            self.create_if_absent(&self.l.bucket(meta.priority, bucket), b"").await?;
        }
        meta.state = if dead { State::Dead } else { State::Ready };
        let mut w = self.zk.new_multi_writer();
        // Creating and deleting the claim in one multi proves nobody holds it now (a take
        // that raced with our listing made one).
        w.add_create(&self.l.claim(id), b"", &ephemeral())?;
        w.add_delete(&self.l.claim(id), None)?;
        w.add_delete(&self.l.running(id), None)?;
        w.add_set_data(&self.l.task(id), &record::encode(&meta, &payload), Some(version))?;
        if dead {
            w.add_create(&self.l.dead(id), b"", &persistent())?;
        } else {
            w.add_create(&self.l.entry_prefix(meta.priority, bucket, id), b"", &sequential())?;
            w.add_set_data(&self.l.signal(), b"", None)?;
        }
        match w.commit().await {
            Ok(_) => {
                tracing::info!(queue = %self.name, task = id, dead, "put back the task of a worker that died");
                Ok(Some(true))
            }
            // The front bucket was removed as drained between our create and the multi.
            Err(e) if !dead && matches!(failed_op(&e), Some((4, zk::Error::NoNode))) => Ok(None),
            Err(e) if failed_op(&e).is_some() => Ok(Some(false)),
            Err(e) => Err(e.into()),
        }
    }

    /// The result a worker stored for task `id`; with `wait`, waits up to that long for it.
    pub async fn result(&self, id: &str, wait: Option<std::time::Duration>) -> Result<Option<Vec<u8>>> {
        let deadline = wait.map(|w| tokio::time::Instant::now() + w);
        loop {
            let (stat, watcher) = self.zk.check_and_watch_stat(&self.l.result(id)).await?;
            if stat.is_some() {
                match self.zk.get_data(&self.l.result(id)).await {
                    Ok((data, _)) => return Ok(Some(data)),
                    Err(zk::Error::NoNode) => return Ok(None),
                    Err(e) => return Err(e.into()),
                }
            }
            let Some(deadline) = deadline else { return Ok(None) };
            if tokio::time::timeout_at(deadline, watcher.changed()).await.is_err() {
                return Ok(None);
            }
        }
    }

    /// Counts, without listing any bucket (each node's stat holds its child count).
    pub async fn stats(&self) -> Result<Stats> {
        let count = |path: String| async move {
            match self.zk.check_stat(&path).await {
                Ok(Some(s)) => Ok(s.num_children as u64),
                Ok(None) => Ok(0),
                Err(e) => Err(Error::from(e)),
            }
        };
        let mut s = Stats::default();
        for pname in self.children(&self.l.dir("ready")).await? {
            let ppath = format!("{}/{pname}", self.l.dir("ready"));
            for b in self.children(&ppath).await? {
                s.ready += count(format!("{ppath}/{b}")).await?;
            }
        }
        for spath in self.delayed_seconds().await? {
            for b in self.children(&spath).await? {
                s.delayed += count(format!("{spath}/{b}")).await?;
            }
        }
        s.running = count(self.l.dir("running")).await?;
        s.dead = count(self.l.dir("dead")).await?;
        s.waiting_workers = count(self.l.dir("waiters")).await?;
        for id in self.children(&self.l.dir("claims")).await? {
            if let Ok((data, _)) = self.zk.get_data(&self.l.claim(&id)).await {
                let worker = String::from_utf8_lossy(&data).lines().next().unwrap_or_default().to_string();
                s.running_by.push((id, worker));
            }
        }
        Ok(s)
    }

    /// One task, whatever its state.
    pub async fn peek(&self, id: &str) -> Result<Option<Listed>> {
        Ok(self.read_task(id).await?.map(|(meta, payload, _)| Listed { id: id.to_string(), meta, payload }))
    }

    /// Up to `limit` tasks in the order takes would claim them (ready ones by priority and
    /// age), then delayed ones by due time.
    pub async fn list(&self, limit: usize) -> Result<Vec<Listed>> {
        let mut ids = Vec::new();
        'ready: for pname in self.children(&self.l.dir("ready")).await? {
            let ppath = format!("{}/{pname}", self.l.dir("ready"));
            for b in self.children(&ppath).await? {
                let mut entries: Vec<(u64, String)> = self
                    .children(&format!("{ppath}/{b}"))
                    .await?
                    .iter()
                    .filter_map(|n| layout::parse_entry(n).map(|(id, seq)| (seq, id.to_string())))
                    .collect();
                entries.sort();
                for (_, id) in entries {
                    if ids.len() >= limit {
                        break 'ready;
                    }
                    ids.push(id);
                }
            }
        }
        'delayed: for spath in self.delayed_seconds().await? {
            let mut entries = Vec::new();
            for b in self.children(&spath).await? {
                entries.extend(self.children(&format!("{spath}/{b}")).await?);
            }
            entries.sort();
            for name in entries {
                if ids.len() >= limit {
                    break 'delayed;
                }
                if let Some((_, _, id)) = layout::parse_delayed(&name) {
                    ids.push(id.to_string());
                }
            }
        }
        let mut out = Vec::new();
        for id in ids {
            match self.peek(&id).await {
                Ok(Some(t)) => out.push(t),
                Ok(None) => {}
                // Left for the next take to move to the dead letters.
                Err(Error::Corrupt { reason, .. }) => tracing::warn!(queue = %self.name, task = id, reason, "a task node is corrupt"),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The paths of the seconds of the delayed index, in time order.
    async fn delayed_seconds(&self) -> Result<Vec<String>> {
        let dir = self.l.dir("delayed");
        let mut out = Vec::new();
        for h in self.children(&dir).await? {
            out.extend(self.children(&format!("{dir}/{h}")).await?.into_iter().map(|s| format!("{dir}/{h}/{s}")));
        }
        Ok(out)
    }

    /// The dead letters' ids.
    pub async fn dead(&self) -> Result<Vec<String>> {
        self.children(&self.l.dir("dead")).await
    }

    /// Cancels a task that is not running: it is gone, its index entry is left for takes
    /// to sweep. False if there is no such task; [`Error::Invalid`] if a worker holds it.
    pub async fn cancel(&self, id: &str) -> Result<bool> {
        let (meta, version) = match self.read_task(id).await {
            Ok(Some((meta, _, version))) => (meta, version),
            Ok(None) => return Ok(false),
            // Not a task: it goes, with its dead letter if it has become one, unless a
            // worker holds a claim on it.
            Err(Error::Corrupt { .. }) => {
                if self.zk.check_stat(&self.l.claim(id)).await?.is_some() {
                    return Err(Error::Invalid(format!("task {id} is running; it can be cancelled once it is not")));
                }
                self.zk.delete(&self.l.task(id), None).await.or_else(|e| if e == zk::Error::NoNode { Ok(()) } else { Err(e) })?;
                let _ = self.zk.delete(&self.l.dead(id), None).await;
                return Ok(true);
            }
            Err(e) => return Err(e),
        };
        if meta.state == State::Running {
            return Err(Error::Invalid(format!("task {id} is running; it can be cancelled once it is not")));
        }
        let mut w = self.zk.new_multi_writer();
        w.add_delete(&self.l.task(id), Some(version))?;
        if meta.state == State::Dead {
            w.add_delete(&self.l.dead(id), None)?;
        }
        match w.commit().await {
            Ok(_) => Ok(true),
            Err(e) if matches!(failed_op(&e), Some((_, zk::Error::NoNode))) => Ok(false),
            Err(e) if matches!(failed_op(&e), Some((_, zk::Error::BadVersion))) => {
                Err(Error::Invalid(format!("task {id} changed meanwhile; try again")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Puts every dead letter back in the queue with fresh attempts; returns how many.
    pub async fn requeue_dead(&self) -> Result<usize> {
        let mut n = 0;
        for id in self.dead().await? {
            let (mut meta, payload, version) = match self.read_task(&id).await {
                Ok(Some(t)) => t,
                Ok(None) => {
                    let _ = self.zk.delete(&self.l.dead(&id), None).await;
                    continue;
                }
                // Stays a dead letter: there is no task to run (cancel removes it).
                Err(Error::Corrupt { .. }) => continue,
                Err(e) => return Err(e),
            };
            meta.state = State::Ready;
            meta.attempt = 0;
            let bucket = self.current_bucket(meta.priority).await?;
            let mut w = self.zk.new_multi_writer();
            w.add_delete(&self.l.dead(&id), None)?;
            w.add_set_data(&self.l.task(&id), &record::encode(&meta, &payload), Some(version))?;
            w.add_create(&self.l.entry_prefix(meta.priority, bucket, &id), b"", &sequential())?;
            w.add_set_data(&self.l.signal(), b"", None)?;
            match w.commit().await {
                Ok(_) => n += 1,
                Err(e) if failed_op(&e).is_some() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(n)
    }

    /// Removes every task that no worker holds (ready, delayed and dead), their index
    /// entries, results and keys; returns how many tasks went. Running tasks stay.
    pub async fn purge(&self) -> Result<usize> {
        let mut n = 0;
        let running = self.children(&self.l.dir("running")).await?;
        for id in self.children(&self.l.dir("tasks")).await? {
            if running.binary_search(&id).is_ok() {
                continue;
            }
            match self.zk.delete(&self.l.task(&id), None).await {
                Ok(()) => n += 1,
                Err(zk::Error::NoNode) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for dir in ["ready", "delayed"] {
            self.delete_below(&self.l.dir(dir)).await?;
        }
        for dir in ["dead", "results", "keys"] {
            for c in self.children(&self.l.dir(dir)).await? {
                let _ = self.zk.delete(&format!("{}/{c}", self.l.dir(dir)), None).await;
            }
        }
        Ok(n)
    }

    /// Deletes everything below `path` (not `path` itself), depth first.
    async fn delete_below(&self, path: &str) -> Result<()> {
        let mut stack = vec![(path.to_string(), false)];
        while let Some((p, expanded)) = stack.pop() {
            if expanded {
                if p != path {
                    let _ = self.zk.delete(&p, None).await;
                }
                continue;
            }
            stack.push((p.clone(), true));
            for c in self.children(&p).await? {
                stack.push((format!("{p}/{c}"), false));
            }
        }
        Ok(())
    }
}
