//! Where a queue keeps what, and how names sort. Every list a take reads is bounded: the
//! priorities in use, the buckets of one priority (one per [`BUCKET`] tasks pushed), and
//! the entries of one bucket (about [`BUCKET`]); for delayed tasks, the hours in which
//! some come due, the seconds of one hour, and the buckets and entries of one second.
//! docs/queue.md draws the tree.

/// Ready entries per bucket before producers move on to the next one. A bucket's child
/// list stays far below ZooKeeper's 1 MB reply limit (an entry name is about 40 bytes).
pub const BUCKET: u64 = 1000;

/// The highest priority; priorities are 0 (the default) to this.
pub const MAX_PRIORITY: u16 = 999;

/// Paths of one queue.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: String,
}

impl Layout {
    pub fn new(root: &str) -> Layout {
        Layout { root: root.trim_end_matches('/').to_string() }
    }

    pub fn dir(&self, name: &str) -> String {
        format!("{}/{name}", self.root)
    }

    /// The directories every queue has.
    pub const DIRS: [&'static str; 10] =
        ["tasks", "ready", "delayed", "claims", "running", "dead", "results", "keys", "waiters", "signal"];

    pub fn task(&self, id: &str) -> String {
        format!("{}/tasks/{id}", self.root)
    }
    pub fn claim(&self, id: &str) -> String {
        format!("{}/claims/{id}", self.root)
    }
    pub fn running(&self, id: &str) -> String {
        format!("{}/running/{id}", self.root)
    }
    pub fn dead(&self, id: &str) -> String {
        format!("{}/dead/{id}", self.root)
    }
    pub fn result(&self, id: &str) -> String {
        format!("{}/results/{id}", self.root)
    }
    pub fn key(&self, key: &str) -> String {
        format!("{}/keys/{}", self.root, escape_key(key))
    }
    pub fn signal(&self) -> String {
        format!("{}/signal", self.root)
    }
    /// `ready/p<999 - priority>`: ascending names are descending priorities. Its data is
    /// the number of the bucket producers fill now.
    pub fn priority(&self, priority: u16) -> String {
        format!("{}/ready/{}", self.root, priority_name(priority))
    }
    pub fn bucket(&self, priority: u16, bucket: u64) -> String {
        bucket_in(&self.priority(priority), bucket)
    }
    /// The prefix of a ready entry: the server appends a sequence number.
    pub fn entry_prefix(&self, priority: u16, bucket: u64, id: &str) -> String {
        format!("{}/{id}_", self.bucket(priority, bucket))
    }
    /// `delayed/h<hour>`: the seconds of one hour in which delayed tasks come due.
    pub fn delayed_hour(&self, hour: u64) -> String {
        format!("{}/delayed/h{hour:08}", self.root)
    }
    /// `delayed/h<hour>/s<second>`: a bucketed list (like a priority's) of the delayed
    /// entries due within that second.
    pub fn delayed_second(&self, second: u64) -> String {
        format!("{}/s{second:011}", self.delayed_hour(second / 3600))
    }
    /// The prefix of a delayed entry due at `not_before_ms`: the server appends a sequence.
    pub fn delayed_prefix(&self, not_before_ms: u64, priority: u16, id: &str, bucket: u64) -> String {
        let second = self.delayed_second(not_before_ms / 1000);
        format!("{}/{}_", bucket_in(&second, bucket), delayed_name(not_before_ms, priority, id))
    }
}

/// Bucket `bucket` of the bucketed list at `list`.
pub fn bucket_in(list: &str, bucket: u64) -> String {
    format!("{list}/b{bucket:010}")
}

pub fn priority_name(priority: u16) -> String {
    format!("p{:03}", MAX_PRIORITY - priority.min(MAX_PRIORITY))
}

pub fn parse_priority(name: &str) -> Option<u16> {
    let n: u16 = name.strip_prefix('p')?.parse().ok()?;
    MAX_PRIORITY.checked_sub(n)
}

pub fn parse_bucket(name: &str) -> Option<u64> {
    name.strip_prefix('b')?.parse().ok()
}

/// A ready entry `<id>_<sequence>`: its task and its place in the bucket.
pub fn parse_entry(name: &str) -> Option<(&str, u64)> {
    let (id, seq) = name.rsplit_once('_')?;
    Some((id, seq.parse().ok()?))
}

pub fn parse_hour(name: &str) -> Option<u64> {
    name.strip_prefix('h')?.parse().ok()
}

pub fn parse_second(name: &str) -> Option<u64> {
    name.strip_prefix('s')?.parse().ok()
}

/// `d<due ms>-<priority>-<id>`: sorts by due time.
pub fn delayed_name(not_before_ms: u64, priority: u16, id: &str) -> String {
    format!("d{not_before_ms:013}-{priority:03}-{id}")
}

/// A delayed entry `d<due ms>-<priority>-<id>_<sequence>`: when it is due, its priority
/// and its task.
pub fn parse_delayed(name: &str) -> Option<(u64, u16, &str)> {
    let (name, _seq) = name.rsplit_once('_')?;
    let rest = name.strip_prefix('d')?;
    let (due, rest) = rest.split_once('-')?;
    let (prio, id) = rest.split_once('-')?;
    Some((due.parse().ok()?, prio.parse().ok()?, id))
}

/// Idempotency keys become node names: `/` and anything unusual are hex-escaped.
pub fn escape_key(key: &str) -> String {
    let mut out = String::from("k");
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_as_the_queue_needs() {
        let mut prios: Vec<String> = [0u16, 5, 999, 10].iter().map(|&p| priority_name(p)).collect();
        prios.sort();
        let back: Vec<u16> = prios.iter().map(|n| parse_priority(n).unwrap()).collect();
        assert_eq!(back, [999, 10, 5, 0], "highest priority first");
        assert_eq!(parse_entry("t0193_0000000042"), Some(("t0193", 42)));
        let d = format!("{}_0000000003", delayed_name(1_700_000_000_123, 7, "tabc"));
        assert_eq!(parse_delayed(&d), Some((1_700_000_000_123, 7, "tabc")));
        let l = Layout::new("/q");
        assert_eq!(l.delayed_prefix(7_200_001_500, 2, "tx", 4), "/q/delayed/h00002000/s00007200001/b0000000004/d0007200001500-002-tx_");
        assert!(delayed_name(999, 0, "z") < delayed_name(1000, 0, "a"));
        assert_eq!(escape_key("a/b c"), "ka_2fb_20c");
        assert_ne!(escape_key("a_2f"), escape_key("a/"));
    }
}
