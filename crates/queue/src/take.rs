//! Taking, finishing and managing tasks.

use crate::layout;
use crate::record::{self, Meta, State};
use crate::{backoff, ephemeral, failed_op, now_ms, persistent, sequential, zk, Claim, Error, Nacked, Queue, Result, Stats};

/// How far ahead of a contended entry a take jumps (at random) for its next try.
const CONTENDED_SPREAD: usize = 32;

/// A task as `list` and `peek` show it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: String,
    pub meta: Meta,
    pub payload: Vec<u8>,
}

impl Queue {
    /// A task's metadata, payload and node version; `None` if it is gone.
    async fn read_task(&self, id: &str) -> Result<Option<(Meta, Vec<u8>, i32)>> {
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
        self.promote_due().await?;
        for pname in self.children(&self.l.dir("ready")).await? {
            let Some(priority) = layout::parse_priority(&pname) else { continue };
            let current = self.current_bucket(priority).await?;
            // Bucket 0 (put-backs) first, then from the oldest bucket this handle knows
            // to hold entries up to the current one: no list of buckets on the way.
            let first = match self.head_hint(priority) {
                Some(h) => h,
                None => {
                    // A new handle: one look at the buckets to find the oldest.
                    let oldest = self
                        .children(&self.l.priority(priority))
                        .await?
                        .iter()
                        .filter_map(|b| layout::parse_bucket(b))
                        .filter(|&b| b > 0)
                        .min()
                        .unwrap_or(current);
                    self.set_head_hint(priority, oldest);
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
        let Some((mut meta, payload, version)) = self.read_task(id).await? else {
            // Cancelled: its entry is left over.
            let _ = self.zk.delete(entry, None).await;
            return Ok(None);
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
        match w.commit().await {
            Ok(_) => Ok(Some(Claim {
                id: id.to_string(),
                payload,
                attempt: meta.attempt,
                fencing_token: meta.token,
                version: version + 1,
                meta,
            })),
            // Taken (entry gone, task changed, claim or running marker present): not ours.
            Err(e) if matches!(failed_op(&e), Some((_, zk::Error::NoNode | zk::Error::BadVersion | zk::Error::NodeExists))) => {
                Ok(None)
            }
            // The connection broke with the multi in flight: it may have been applied.
            // If the claim is there and ours (our session's ephemeral), we hold the task;
            // otherwise forgetting it would leave it claimed for as long as we live.
            Err(zk::MultiWriteError::RequestFailed { source })
                if !matches!(source, zk::Error::SessionExpired | zk::Error::ClientClosed) =>
            {
                // Ask until the answer is definite.
                let mut tries = 0;
                let found = loop {
                    match self.zk.get_data(&self.l.claim(id)).await {
                        Ok((data, _)) => break Some(data),
                        Err(zk::Error::NoNode) => break None,
                        Err(e @ (zk::Error::SessionExpired | zk::Error::ClientClosed)) => return Err(e.into()),
                        Err(e) if tries >= 50 => return Err(e.into()),
                        Err(_) => {
                            tries += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                    }
                };
                match found {
                    Some(data) if data == claim_data.as_bytes() => {
                        let Some((meta, payload, version)) = self.read_task(id).await? else { return Ok(None) };
                        Ok(Some(Claim {
                            id: id.to_string(),
                            payload,
                            attempt: meta.attempt,
                            fencing_token: meta.token,
                            version,
                            meta,
                        }))
                    }
                    _ => Ok(None),
                }
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
    /// one; `result`, if any, is kept for [`Queue::result`].
    pub async fn ack(&self, c: &Claim, result: Option<&[u8]>) -> Result<()> {
        let mut w = self.zk.new_multi_writer();
        self.end_claim(&mut w, c)?;
        w.add_delete(&self.l.task(&c.id), None)?;
        if let Some(r) = result {
            w.add_create(&self.l.result(&c.id), r, &persistent())?;
        }
        match w.commit().await {
            Ok(_) => Ok(()),
            Err(e) if matches!(failed_op(&e), Some((0..=2, _))) => Err(Error::Stale(c.id.clone())),
            Err(e) => Err(e.into()),
        }
    }

    /// The task failed: it is retried after a backoff, or, out of attempts, goes to the
    /// dead letters with `error`. Only while the claim is still this one.
    pub async fn nack(&self, c: &Claim, error: &str) -> Result<Nacked> {
        let mut meta = c.meta.clone();
        meta.last_error = Some(error.to_string());
        meta.worker = None;
        let dead = meta.attempt >= meta.max_attempts;
        let not_before_ms = now_ms() + backoff(meta.attempt).as_millis() as u64;
        if dead {
            meta.state = State::Dead;
        } else {
            meta.state = State::Delayed;
            meta.not_before_ms = not_before_ms;
            self.create_if_absent(&self.l.delayed_minute(not_before_ms / 60_000), b"").await?;
        }
        let mut w = self.zk.new_multi_writer();
        self.end_claim(&mut w, c)?;
        w.add_set_data(&self.l.task(&c.id), &record::encode(&meta, &c.payload), Some(c.version))?;
        if dead {
            w.add_create(&self.l.dead(&c.id), b"", &persistent())?;
        } else {
            w.add_create(&self.l.delayed_entry(not_before_ms, meta.priority, &c.id), b"", &persistent())?;
            w.add_set_data(&self.l.signal(), b"", None)?;
        }
        match w.commit().await {
            Ok(_) if dead => Ok(Nacked::Dead),
            Ok(_) => Ok(Nacked::Retry { not_before_ms }),
            Err(e) if matches!(failed_op(&e), Some((0..=2, _))) => Err(Error::Stale(c.id.clone())),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves delayed tasks that are due into the ready index; returns when the next one is
    /// due (ms since the epoch), if any.
    pub(crate) async fn promote_due(&self) -> Result<Option<u64>> {
        let now = now_ms();
        for mname in self.children(&self.l.dir("delayed")).await? {
            let Some(minute) = layout::parse_minute(&mname) else { continue };
            let mpath = self.l.delayed_minute(minute);
            let entries = self.children(&mpath).await?;
            if entries.is_empty() {
                if (minute + 1) * 60_000 <= now {
                    let _ = self.zk.delete(&mpath, None).await;
                }
                continue;
            }
            for name in entries {
                let Some((due, priority, id)) = layout::parse_delayed(&name) else { continue };
                if due > now {
                    return Ok(Some(due));
                }
                self.promote(&format!("{mpath}/{name}"), id, priority).await?;
            }
        }
        Ok(None)
    }

    /// One due delayed task into the ready index (if nobody else did it first).
    async fn promote(&self, entry: &str, id: &str, priority: u16) -> Result<()> {
        for _ in 0..20 {
            let Some((mut meta, payload, version)) = self.read_task(id).await? else {
                let _ = self.zk.delete(entry, None).await;
                return Ok(());
            };
            let bucket = self.current_bucket(priority).await?;
            meta.state = State::Ready;
            meta.not_before_ms = 0;
            let mut w = self.zk.new_multi_writer();
            w.add_delete(entry, None)?;
            w.add_set_data(&self.l.task(id), &record::encode(&meta, &payload), Some(version))?;
            w.add_create(&self.l.entry_prefix(priority, bucket, id), b"", &sequential())?;
            w.add_set_data(&self.l.signal(), b"", None)?;
            match w.commit().await {
                Ok(r) => {
                    if let Some(zk::MultiWriteResult::Create { path, .. }) = r.get(2) {
                        if let Some((_, seq)) = path.rsplit('/').next().and_then(layout::parse_entry) {
                            self.maybe_advance(priority, bucket, seq).await?;
                        }
                    }
                    return Ok(());
                }
                // Someone else promoted it (the entry is gone) or the task changed.
                Err(e) if matches!(failed_op(&e), Some((0, _))) => return Ok(()),
                Err(e) if matches!(failed_op(&e), Some((1, zk::Error::BadVersion))) => continue,
                // The current bucket is missing (a half-made priority): make it.
                Err(e) if matches!(failed_op(&e), Some((2, zk::Error::NoNode))) => {
                    self.create_if_absent(&self.l.bucket(priority, bucket), b"").await?;
                }
                // Cancelled meanwhile.
                Err(e) if matches!(failed_op(&e), Some((1, zk::Error::NoNode))) => {
                    let _ = self.zk.delete(entry, None).await;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Invalid(format!("queue {}: could not promote task {id}; will try again", self.name)))
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

    async fn requeue_orphan(&self, id: &str) -> Result<bool> {
        loop {
            match self.try_requeue_orphan(id).await? {
                Some(done) => return Ok(done),
                None => continue,
            }
        }
    }

    /// One attempt; `None` when the front bucket vanished meanwhile (try again).
    async fn try_requeue_orphan(&self, id: &str) -> Result<Option<bool>> {
        let Some((mut meta, payload, version)) = self.read_task(id).await? else {
            let _ = self.zk.delete(&self.l.running(id), None).await;
            return Ok(Some(false));
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
        for m in self.children(&self.l.dir("delayed")).await? {
            s.delayed += count(format!("{}/{m}", self.l.dir("delayed"))).await?;
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
        for m in self.children(&self.l.dir("delayed")).await? {
            for name in self.children(&format!("{}/{m}", self.l.dir("delayed"))).await? {
                if ids.len() >= limit {
                    break;
                }
                if let Some((_, _, id)) = layout::parse_delayed(&name) {
                    ids.push(id.to_string());
                }
            }
        }
        let mut out = Vec::new();
        for id in ids {
            if let Some(t) = self.peek(&id).await? {
                out.push(t);
            }
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
        let Some((meta, _, version)) = self.read_task(id).await? else { return Ok(false) };
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
            let Some((mut meta, payload, version)) = self.read_task(&id).await? else {
                let _ = self.zk.delete(&self.l.dead(&id), None).await;
                continue;
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
