//! The delayed index: tasks that must not be taken before some time (delayed pushes and
//! nacked tasks waiting out their backoff), and their promotion into the ready index.
//!
//! Entries are filed by the second they come due, under the hour of that second:
//! `delayed/h<hour>/s<second>/b<bucket>/d<due ms>-<priority>-<id>_<seq>`. Each second is a
//! bucketed list like a priority of the ready index, so a burst of any size due in one
//! second is still read a bucket at a time. A promotion pass reads the hours, the seconds
//! of the first hour, then the buckets of the first seconds; it moves at most
//! [`PROMOTE_BATCH`] entries, removes the nodes of seconds and hours that are over and
//! empty, and says when the next entry is due. Takes run a pass only when this handle
//! knows something is due, and at least once a second.

use crate::layout;
use crate::record::{self, State};
use crate::{failed_op, now_ms, sequential, zk, Error, Queue, Result};

/// Delayed tasks moved into the ready index per pass at most: a take never does an
/// unbounded amount of work for other workers' tasks.
pub const PROMOTE_BATCH: usize = 32;

/// How often a take looks at the delayed index at least, for delayed tasks that other
/// handles pushed.
const LOOK_EVERY_MS: u64 = 1000;

const HOUR_MS: u64 = 3_600_000;

impl Queue {
    /// Where a delayed entry for task `id` goes: the second's list, its current bucket,
    /// and the entry's name prefix.
    pub(crate) async fn delayed_slot(&self, not_before_ms: u64, priority: u16, id: &str) -> Result<(String, u64, String)> {
        let list = self.l.delayed_second(not_before_ms / 1000);
        let bucket = self.fill_bucket(&list).await?;
        Ok((list, bucket, self.l.delayed_prefix(not_before_ms, priority, id, bucket)))
    }

    /// A promotion pass if one is due for this handle (see the module's doc).
    pub(crate) async fn promote_if_due(&self) -> Result<()> {
        if now_ms() >= self.next_promote_ms.load(std::sync::atomic::Ordering::Relaxed) {
            self.promote_due().await?;
        }
        Ok(())
    }

    /// One promotion pass: moves up to [`PROMOTE_BATCH`] due delayed tasks into the ready
    /// index. Returns when the next delayed task is due (now, if the batch ran out), if any.
    pub(crate) async fn promote_due(&self) -> Result<Option<u64>> {
        let now = now_ms();
        let next = self.promotion_pass(now).await?;
        let look = next.unwrap_or(u64::MAX).min(now + LOOK_EVERY_MS);
        self.next_promote_ms.store(look, std::sync::atomic::Ordering::Relaxed);
        Ok(next)
    }

    async fn promotion_pass(&self, now: u64) -> Result<Option<u64>> {
        let mut budget = PROMOTE_BATCH;
        let dir = self.l.dir("delayed");
        for hname in self.children(&dir).await? {
            let Some(hour) = layout::parse_hour(&hname) else { continue };
            if hour * HOUR_MS > now {
                return Ok(Some(hour * HOUR_MS));
            }
            let hpath = format!("{dir}/{hname}");
            for sname in self.children(&hpath).await? {
                let Some(second) = layout::parse_second(&sname) else { continue };
                if second * 1000 > now {
                    return Ok(Some(second * 1000));
                }
                let spath = format!("{hpath}/{sname}");
                // Producers may add to a second until it is over; after that, drained
                // buckets and the second itself go (a delete refuses a node that is not
                // empty, so nothing pushed meanwhile is lost).
                let over = (second + 1) * 1000 <= now;
                let mut next_due: Option<u64> = None;
                for bname in self.children(&spath).await? {
                    let bpath = format!("{spath}/{bname}");
                    for name in self.children(&bpath).await? {
                        let Some((due, priority, id)) = layout::parse_delayed(&name) else { continue };
                        if due > now {
                            next_due = Some(next_due.map_or(due, |d| d.min(due)));
                            continue;
                        }
                        if budget == 0 {
                            return Ok(Some(now));
                        }
                        budget -= 1;
                        self.promote(&format!("{bpath}/{name}"), id, priority).await?;
                    }
                    if over {
                        let _ = self.zk.delete(&bpath, None).await;
                    }
                }
                if next_due.is_some() {
                    return Ok(next_due);
                }
                if over {
                    let _ = self.zk.delete(&spath, None).await;
                }
            }
            if (hour + 1) * HOUR_MS <= now {
                let _ = self.zk.delete(&hpath, None).await;
            }
        }
        Ok(None)
    }

    /// One due delayed task into the ready index (if nobody else did it first).
    async fn promote(&self, entry: &str, id: &str, priority: u16) -> Result<()> {
        for _ in 0..20 {
            let (mut meta, payload, version) = match self.read_task(id).await {
                Ok(Some(t)) => t,
                // Cancelled: its entry is left over.
                Ok(None) => {
                    let _ = self.zk.delete(entry, None).await;
                    return Ok(());
                }
                Err(Error::Corrupt { reason, .. }) => return self.bury(id, entry, &reason).await,
                Err(e) => return Err(e),
            };
            let list = self.l.priority(priority);
            let bucket = self.fill_bucket(&list).await?;
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
                            self.maybe_advance(&list, bucket, seq).await?;
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
}
