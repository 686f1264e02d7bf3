//! Schedules: a named cron expression (in a time zone) that pushes a task to a queue at
//! every firing, exactly once however many schedulers run.
//!
//! ```text
//! /corral/schedules/<name>          a JSON line (cron, tz, queue, priority, max attempts), then the payload
//! /corral/schedules/<name>/fired    the time (ms) of the last firing pushed
//! /corral/schedulers/s-<seq>        EPHEMERAL_SEQUENTIAL, one per scheduler process
//! ```
//!
//! Scheduler processes elect one among them: the lowest `s-` node; the others each watch
//! the one before them and take over when it goes. The elected one pushes each firing's
//! task in the same multi that moves `fired` forward with a version check, so a firing is
//! pushed once even if two schedulers both believe they are elected for a moment (the
//! second multi fails as a whole). A scheduler elected after a failover finds the firings
//! it missed from `fired` and pushes the latest of them once, then goes on.

use crate::{now_ms, persistent, zk, Error, PushOptions, Queue, Result};
use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use std::time::Duration;

pub const SCHEDULES: &str = "/corral/schedules";
pub const SCHEDULERS: &str = "/corral/schedulers";

/// A schedule's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    #[serde(skip)]
    pub name: String,
    /// Five fields (minute hour day-of-month month day-of-week), or six with seconds first.
    pub cron: String,
    /// An IANA time zone name: `UTC`, `Europe/Paris`...
    pub tz: String,
    pub queue: String,
    pub priority: u16,
    pub max_attempts: u32,
    #[serde(skip)]
    pub payload: Vec<u8>,
}

impl Schedule {
    /// Checks the cron expression, the time zone and the names.
    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty() || self.name.contains('/') {
            return Err(Error::Invalid(format!("bad schedule name {:?}", self.name)));
        }
        if self.queue.is_empty() || self.queue.contains('/') {
            return Err(Error::Invalid(format!("bad queue name {:?}", self.queue)));
        }
        self.parsed()?;
        Ok(())
    }

    fn parsed(&self) -> Result<(croner::Cron, chrono_tz::Tz)> {
        let cron = croner::Cron::from_str(&self.cron)
            .map_err(|e| Error::Invalid(format!("cron expression {:?}: {e}", self.cron)))?;
        let tz = chrono_tz::Tz::from_str(&self.tz).map_err(|_| Error::Invalid(format!("unknown time zone {:?}", self.tz)))?;
        Ok((cron, tz))
    }

    /// The first firing after `after_ms` (ms since the epoch).
    pub fn next_after(&self, after_ms: u64) -> Result<Option<u64>> {
        let (cron, tz) = self.parsed()?;
        // Cron's finest unit is the second: search from the whole second.
        let Some(t) = Utc.timestamp_millis_opt((after_ms - after_ms % 1000) as i64).single() else { return Ok(None) };
        Ok(cron.find_next_occurrence(&t.with_timezone(&tz), false).ok().map(|d| d.timestamp_millis() as u64))
    }

    /// The last firing at or before `at_ms`.
    pub fn last_at_or_before(&self, at_ms: u64) -> Result<Option<u64>> {
        let (cron, tz) = self.parsed()?;
        let Some(t) = Utc.timestamp_millis_opt((at_ms - at_ms % 1000) as i64).single() else { return Ok(None) };
        Ok(cron.find_previous_occurrence(&t.with_timezone(&tz), true).ok().map(|d| d.timestamp_millis() as u64))
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).expect("schedule serialises");
        out.push(b'\n');
        out.extend_from_slice(&self.payload);
        out
    }

    fn decode(name: &str, bytes: &[u8]) -> Result<Schedule> {
        let bad = |reason: String| Error::Corrupt { id: format!("schedule {name}"), reason };
        let nl = bytes.iter().position(|&b| b == b'\n').ok_or_else(|| bad("no definition line".into()))?;
        let mut s: Schedule = serde_json::from_slice(&bytes[..nl]).map_err(|e| bad(e.to_string()))?;
        s.name = name.to_string();
        s.payload = bytes[nl + 1..].to_vec();
        Ok(s)
    }
}

async fn ensure(zk: &zk::Client, path: &str) -> Result<()> {
    let mut at = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at.push('/');
        at.push_str(part);
        match zk.create(&at, b"", &persistent()).await {
            Ok(_) | Err(zk::Error::NodeExists) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn schedule_path(name: &str) -> String {
    format!("{SCHEDULES}/{name}")
}

/// Adds a schedule (or replaces its definition, keeping what it fired). Its first firing
/// is the first one after now.
pub async fn add(zk: &zk::Client, s: &Schedule) -> Result<()> {
    s.validate()?;
    ensure(zk, SCHEDULES).await?;
    let path = schedule_path(&s.name);
    let mut w = zk.new_multi_writer();
    w.add_create(&path, &s.encode(), &persistent())?;
    w.add_create(&format!("{path}/fired"), now_ms().to_string().as_bytes(), &persistent())?;
    match w.commit().await {
        Ok(_) => Ok(()),
        Err(zk::MultiWriteError::OperationFailed { index: 0, source: zk::Error::NodeExists }) => {
            zk.set_data(&path, &s.encode(), None).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Every schedule, with the time of its last firing pushed.
pub async fn list(zk: &zk::Client) -> Result<Vec<(Schedule, u64)>> {
    let mut names = match zk.list_children(SCHEDULES).await {
        Ok(n) => n,
        Err(zk::Error::NoNode) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let path = schedule_path(&name);
        let Ok((data, _)) = zk.get_data(&path).await else { continue };
        let fired = match zk.get_data(&format!("{path}/fired")).await {
            Ok((d, _)) => std::str::from_utf8(&d).ok().and_then(|s| s.parse().ok()).unwrap_or(0),
            Err(_) => 0,
        };
        out.push((Schedule::decode(&name, &data)?, fired));
    }
    Ok(out)
}

/// Removes a schedule; false if there was none.
pub async fn remove(zk: &zk::Client, name: &str) -> Result<bool> {
    let path = schedule_path(name);
    let mut w = zk.new_multi_writer();
    w.add_delete(&format!("{path}/fired"), None)?;
    w.add_delete(&path, None)?;
    match w.commit().await {
        Ok(_) => Ok(true),
        Err(zk::MultiWriteError::OperationFailed { source: zk::Error::NoNode, .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Pushes a schedule's due firing, if any: the latest firing not yet pushed. Returns
/// when its next firing is (ms since the epoch).
async fn fire_due(zk: &zk::Client, s: &Schedule) -> Result<Option<u64>> {
    let fired_path = format!("{}/fired", schedule_path(&s.name));
    let (data, stat) = match zk.get_data(&fired_path).await {
        Ok(x) => x,
        Err(zk::Error::NoNode) => return Ok(None), // removed meanwhile
        Err(e) => return Err(e.into()),
    };
    let fired: u64 = std::str::from_utf8(&data).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let now = now_ms();
    let Some(next) = s.next_after(fired)? else { return Ok(None) };
    if next > now {
        return Ok(Some(next));
    }
    // Due; perhaps several were missed (no scheduler ran): the latest of them, once.
    let at = s.last_at_or_before(now)?.unwrap_or(next).max(next);
    let q = Queue::open(zk.clone(), &s.queue).await?;
    let opts = PushOptions { priority: s.priority, max_attempts: s.max_attempts.max(1), ..Default::default() };
    match q
        .push_guarded(&[(s.payload.clone(), opts)], Some((&fired_path, at.to_string().as_bytes(), stat.version)), Some((&s.name, at)))
        .await
    {
        Ok(ids) => {
            tracing::info!(schedule = %s.name, queue = %s.queue, task = %ids[0], firing_ms = at, "schedule fired");
        }
        // Another scheduler pushed it (or the schedule went): nothing to do.
        Err(Error::GuardFailed) => {}
        Err(e) => return Err(e),
    }
    s.next_after(at)
}

/// Runs a scheduler until `stop` resolves: it waits for its turn among the schedulers,
/// then fires every schedule on time.
pub async fn run(zk: &zk::Client, name: &str, stop: impl std::future::Future<Output = ()>) -> Result<()> {
    ensure(zk, SCHEDULERS).await?;
    ensure(zk, SCHEDULES).await?;
    let opts = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    let (_, seq) = zk.create(&format!("{SCHEDULERS}/s-"), name.as_bytes(), &opts).await?;
    let me = format!("s-{seq}");
    tokio::pin!(stop);
    let mut elected = false;
    loop {
        let mut line = zk.list_children(SCHEDULERS).await?;
        line.sort();
        let Some(pos) = line.iter().position(|n| *n == me) else {
            return Err(Error::Invalid("this scheduler's node vanished (its session ended)".into()));
        };
        if pos > 0 {
            let (stat, watcher) = zk.check_and_watch_stat(&format!("{SCHEDULERS}/{}", line[pos - 1])).await?;
            if stat.is_some() {
                tokio::select! {
                    _ = watcher.changed() => {}
                    _ = &mut stop => return Ok(()),
                }
            }
            continue;
        }
        if !elected {
            elected = true;
            tracing::info!(scheduler = name, "elected: firing the schedules");
        }
        let (names, watcher) = zk.list_and_watch_children(SCHEDULES).await?;
        let mut next: Option<u64> = None;
        for n in names {
            let (data, _) = match zk.get_data(&schedule_path(&n)).await {
                Ok(x) => x,
                Err(zk::Error::NoNode) => continue,
                Err(e) => return Err(e.into()),
            };
            let s = match Schedule::decode(&n, &data) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(schedule = %n, error = %e, "skipping a schedule that does not decode");
                    continue;
                }
            };
            match fire_due(zk, &s).await {
                Ok(Some(t)) => next = Some(next.map_or(t, |x| x.min(t))),
                Ok(None) => {}
                Err(e) => tracing::warn!(schedule = %n, error = %e, "firing a schedule failed; will retry"),
            }
        }
        // Wake for the next firing, a schedule added or removed, or at least every
        // minute (a definition changed in place).
        let wait = next.map_or(60_000, |t| t.saturating_sub(now_ms()).min(60_000));
        tokio::select! {
            _ = watcher.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(wait.max(1))) => {}
            _ = &mut stop => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(cron: &str, tz: &str) -> Schedule {
        Schedule {
            name: "s".into(),
            cron: cron.into(),
            tz: tz.into(),
            queue: "q".into(),
            priority: 0,
            max_attempts: 3,
            payload: b"p".to_vec(),
        }
    }

    #[test]
    fn firings_in_a_time_zone() {
        // 2026-01-15 10:30:00 UTC.
        let t = Utc.with_ymd_and_hms(2026, 1, 15, 10, 30, 0).unwrap().timestamp_millis() as u64;
        // Daily at 12:00 in Paris (UTC+1 in January) is 11:00 UTC.
        let s = sched("0 12 * * *", "Europe/Paris");
        assert_eq!(s.next_after(t).unwrap(), Some(t + 30 * 60_000));
        assert_eq!(s.last_at_or_before(t + 30 * 60_000).unwrap(), Some(t + 30 * 60_000));
        // Every 15 minutes, UTC.
        let s = sched("*/15 * * * *", "UTC");
        assert_eq!(s.next_after(t).unwrap(), Some(t + 15 * 60_000));
        assert_eq!(s.last_at_or_before(t + 20 * 60_000).unwrap(), Some(t + 15 * 60_000));
        // Seconds first when there are six fields; firings fall on whole seconds.
        let s = sched("*/10 * * * * *", "UTC");
        assert_eq!(s.next_after(t).unwrap(), Some(t + 10_000));
        assert_eq!(s.next_after(t + 1234).unwrap(), Some(t + 10_000));
        assert_eq!(s.last_at_or_before(t + 10_999).unwrap(), Some(t + 10_000));
    }

    #[test]
    fn bad_definitions_are_refused() {
        assert!(sched("61 * * * *", "UTC").validate().is_err());
        assert!(sched("* * * * *", "Mars/Olympus").validate().is_err());
        assert!(sched("* * * * *", "UTC").validate().is_ok());
        let mut s = sched("* * * * *", "UTC");
        s.name = "a/b".into();
        assert!(s.validate().is_err());
    }

    #[test]
    fn definitions_round_trip() {
        let s = sched("0 * * * *", "UTC");
        assert_eq!(Schedule::decode("s", &s.encode()).unwrap(), s);
    }
}
