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

use crate::{now_ms, outcome_unknown, until_definite, zk, Claim, Queue, Result};
use std::time::Duration;
use tokio::time::Instant;

impl Queue {
    /// Claims the highest-priority, oldest ready task for `worker`. With `wait`, waits up
    /// to that long for one (in line with the other waiting workers); without, answers at
    /// once.
    ///
    /// A take may be given up (its future dropped, by a timeout say): it goes on in a task
    /// of its own until it is safe to stop, leaves the line of waiters, and puts back a
    /// task it claimed meanwhile, so that nothing is left held or in line for nobody.
    pub async fn take(&self, worker: &str, wait: Option<Duration>) -> Result<Option<Claim>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (q, worker) = (self.clone(), worker.to_string());
        tokio::spawn(async move {
            let mut tx = tx;
            let r = q.take_inner(&worker, wait, &mut tx).await;
            if let Err(Ok(Some(claim))) = tx.send(r) {
                q.give_back(&claim).await;
            }
        });
        rx.await.unwrap_or_else(|_| Err(crate::Error::Invalid("the take's task ended without an answer".into())))
    }

    async fn take_inner(&self, worker: &str, wait: Option<Duration>, cancel: &mut Answer) -> Result<Option<Claim>> {
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
        if cancel.is_closed() {
            return Ok(None);
        }
        let place = self.join_line(worker).await?;
        let result = self.wait_in_line(worker, &place.name, deadline, cancel).await;
        match place.leave().await {
            Ok(()) => result,
            // A claim is never dropped for this: the node goes with the session at worst.
            Err(e) if matches!(result, Ok(None)) => Err(e),
            Err(_) => result,
        }
    }

    /// Joins the line of waiting workers. The node carries a nonce, so that when the
    /// reply to its creation is lost the node can still be found and removed: a node that
    /// nobody waits behind would hold up everyone after it for as long as the session lives.
    async fn join_line(&self, worker: &str) -> Result<Place> {
        let dir = self.l.dir("waiters");
        let data = format!("{worker}\n{:016x}", rand::random::<u64>());
        let opts = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
        match self.zk.create(&format!("{dir}/w-"), data.as_bytes(), &opts).await {
            Ok((_, seq)) => Ok(Place { zk: Some(self.zk.clone()), path: format!("{dir}/w-{seq}"), name: format!("w-{seq}") }),
            Err(e) if outcome_unknown(&e) => {
                for name in self.children(&dir).await? {
                    let path = format!("{dir}/{name}");
                    if matches!(self.get_definitely(&path).await?, Some((d, _)) if d == data.as_bytes()) {
                        delete_definitely(&self.zk, &path).await?;
                    }
                }
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn wait_in_line(&self, worker: &str, me: &str, deadline: Instant, cancel: &mut Answer) -> Result<Option<Claim>> {
        let waiters_dir = self.l.dir("waiters");
        // The claims held when this waiter last looked, while first in line.
        let mut seen: Option<Vec<String>> = None;
        loop {
            if Instant::now() >= deadline || cancel.is_closed() {
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
                if stat.is_some() {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => return Ok(None),
                        _ = cancel.closed() => return Ok(None),
                        _ = watcher.changed() => {}
                    }
                }
                continue;
            }
            // First in line: watch before looking, so nothing slips between the two.
            let (_, _, signal) = self.zk.get_and_watch_data(&self.l.signal()).await?;
            let (mut held, claims) = self.zk.list_and_watch_children(&self.l.dir("claims")).await?;
            held.sort();
            // The first time, a full look for dead workers' tasks; after that, only the
            // claims that vanished since the last look are checked (an ack or a nack
            // removes the running marker with the claim; a death leaves it).
            match &seen {
                None => {
                    self.reap_orphans().await?;
                }
                Some(before) => {
                    for id in before.iter().filter(|id| held.binary_search(id).is_err()) {
                        if self.zk.check_stat(&self.l.running(id)).await?.is_some() {
                            self.requeue_orphan(id).await?;
                        }
                    }
                    // A claim made and gone between two looks was never seen: more running
                    // markers than claims means some task lost its worker that way.
                    let running = self.zk.check_stat(&self.l.dir("running")).await?.map_or(0, |s| s.num_children as usize);
                    if running > held.len() {
                        self.reap_orphans().await?;
                    }
                }
            }
            seen = Some(held);
            let next_due = self.promote_due().await?;
            if let Some(c) = self.try_take(worker).await? {
                return Ok(Some(c));
            }
            let until = match next_due {
                Some(due) => deadline.min(Instant::now() + Duration::from_millis(due.saturating_sub(now_ms()))),
                None => deadline,
            };
            tokio::select! {
                _ = signal.changed() => {}
                _ = claims.changed() => {}
                _ = tokio::time::sleep_until(until) => {}
                _ = cancel.closed() => return Ok(None),
            }
        }
    }
}

/// A worker's node in the line of waiters. Dropped without [`Place::leave`] (the take
/// was cancelled), it is removed in the background.
struct Place {
    zk: Option<zk::Client>,
    path: String,
    name: String,
}

impl Place {
    async fn leave(mut self) -> Result<()> {
        let zk = self.zk.take().expect("left once");
        delete_definitely(&zk, &self.path).await
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let (Some(zk), Ok(rt)) = (self.zk.take(), tokio::runtime::Handle::try_current()) else { return };
        let path = std::mem::take(&mut self.path);
        rt.spawn(async move {
            let _ = delete_definitely(&zk, &path).await;
        });
    }
}

/// Deletes `path`, asking again while the connection is down (a stale waiter must not
/// be left behind because one reply was lost).
async fn delete_definitely(zk: &zk::Client, path: &str) -> Result<()> {
    until_definite(|| async {
        match zk.delete(path, None).await {
            Ok(()) | Err(zk::Error::NoNode) => Ok(()),
            Err(e) => Err(e),
        }
    })
    .await
}

/// Where a take's answer goes; closed once the caller gave the take up.
type Answer = tokio::sync::oneshot::Sender<Result<Option<Claim>>>;
