//! Waiting for work without polling and without a herd.
//!
//! A worker that finds nothing to take joins a line of waiters: an ephemeral sequential
//! node under `waiters/`. Only the first in line watches the queue: the `signal` node that
//! every push, retry and promotion touches, the `claims/` directory (to put back the tasks
//! of workers that die), and the clock (for the next delayed task). Everyone else watches
//! only the waiter just before it. When the first in line finds a task it leaves the line,
//! which wakes the next one, who looks in turn: a burst of tasks wakes waiters one after
//! another, as long as there is work, and a single task wakes one worker. A waiter whose
//! session ends leaves the line the same way.

use crate::{now_ms, zk, Claim, Queue, Result};
use std::time::Duration;
use tokio::time::Instant;

impl Queue {
    /// Claims the highest-priority, oldest ready task for `worker`. With `wait`, waits up
    /// to that long for one (in line with the other waiting workers); without, answers at
    /// once.
    pub async fn take(&self, worker: &str, wait: Option<Duration>) -> Result<Option<Claim>> {
        // While every worker is busy nobody waits in line to notice a dead worker: busy
        // ones look too, now and then.
        let now = now_ms();
        let last = self.last_reap_ms.load(std::sync::atomic::Ordering::Relaxed);
        if now.saturating_sub(last) >= crate::REAP_EVERY.as_millis() as u64 {
            self.last_reap_ms.store(now, std::sync::atomic::Ordering::Relaxed);
            self.reap_orphans().await?;
        }
        if let Some(c) = self.try_take(worker).await? {
            return Ok(Some(c));
        }
        let Some(wait) = wait else { return Ok(None) };
        let deadline = Instant::now() + wait;
        let opts = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
        let (_, seq) = self.zk.create(&format!("{}/w-", self.l.dir("waiters")), worker.as_bytes(), &opts).await?;
        let me = format!("w-{seq}");
        let result = self.wait_in_line(worker, &me, deadline).await;
        match self.zk.delete(&format!("{}/{me}", self.l.dir("waiters")), None).await {
            Ok(()) | Err(zk::Error::NoNode) => {}
            // A claim is never dropped for this: the node goes with the session at worst.
            Err(e) if matches!(result, Ok(None)) => return Err(e.into()),
            Err(_) => {}
        }
        result
    }

    async fn wait_in_line(&self, worker: &str, me: &str, deadline: Instant) -> Result<Option<Claim>> {
        let waiters_dir = self.l.dir("waiters");
        loop {
            if Instant::now() >= deadline {
                return Ok(None);
            }
            let line = self.children(&waiters_dir).await?;
            let Some(pos) = line.iter().position(|w| w == me) else {
                // Our node is gone (the session was lost and renewed): give up this wait.
                return Ok(None);
            };
            if pos > 0 {
                let ahead = format!("{waiters_dir}/{}", line[pos - 1]);
                let (stat, watcher) = self.zk.check_and_watch_stat(&ahead).await?;
                if stat.is_some() && tokio::time::timeout_at(deadline, watcher.changed()).await.is_err() {
                    return Ok(None);
                }
                continue;
            }
            // First in line: watch before looking, so nothing slips between the two.
            let (_, _, signal) = self.zk.get_and_watch_data(&self.l.signal()).await?;
            let (_, claims) = self.zk.list_and_watch_children(&self.l.dir("claims")).await?;
            self.reap_orphans().await?;
            if let Some(c) = self.try_take(worker).await? {
                return Ok(Some(c));
            }
            let next_due = self.promote_due().await?;
            let until = match next_due {
                Some(due) => deadline.min(Instant::now() + Duration::from_millis(due.saturating_sub(now_ms()))),
                None => deadline,
            };
            tokio::select! {
                _ = signal.changed() => {}
                _ = claims.changed() => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }
}
