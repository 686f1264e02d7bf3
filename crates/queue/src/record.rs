//! What a task node holds: a line of JSON metadata, a newline, then the payload bytes as
//! given. The metadata is small and readable (`corral queue peek`, `get` in any ZooKeeper
//! shell); the payload is never escaped or copied into the JSON.

use serde::{Deserialize, Serialize};

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// In the ready index: the next take may claim it.
    Ready,
    /// In the delayed index until `not_before_ms`.
    Delayed,
    /// Claimed by a worker.
    Running,
    /// Out of attempts: in the dead letters.
    Dead,
}

/// A task's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub priority: u16,
    pub state: State,
    /// Claims so far (the attempt number of the current or last claim).
    pub attempt: u32,
    pub max_attempts: u32,
    /// Grows with every claim: a worker's writes elsewhere can carry it so that a stale
    /// worker's are refused.
    pub token: u64,
    pub created_ms: u64,
    /// Not to be taken before this time (ms since the epoch); 0 for at once.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub not_before_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Pushed by this schedule, for the firing at `fired_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fired_ms: Option<u64>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// The bytes of a task node.
pub fn encode(meta: &Meta, payload: &[u8]) -> Vec<u8> {
    let mut out = serde_json::to_vec(meta).expect("metadata serialises");
    out.push(b'\n');
    out.extend_from_slice(payload);
    out
}

/// A task node's metadata and payload.
pub fn decode(bytes: &[u8]) -> Result<(Meta, &[u8]), String> {
    let nl = bytes.iter().position(|&b| b == b'\n').ok_or("no metadata line")?;
    let meta = serde_json::from_slice(&bytes[..nl]).map_err(|e| format!("bad metadata: {e}"))?;
    Ok((meta, &bytes[nl + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_any_payload() {
        let meta = Meta {
            priority: 7,
            state: State::Ready,
            attempt: 0,
            max_attempts: 3,
            token: 0,
            created_ms: 1,
            not_before_ms: 0,
            key: Some("k\n1".into()),
            worker: None,
            last_error: None,
            schedule: None,
            fired_ms: None,
        };
        for payload in [&b""[..], b"\n\n{\"x\":1}", &[0, 255, 10, 13]] {
            let bytes = encode(&meta, payload);
            let (m, p) = decode(&bytes).unwrap();
            assert_eq!((m, p), (meta.clone(), payload));
        }
        assert!(decode(b"no newline").is_err());
        assert!(decode(b"{}\n").is_err());
    }
}
