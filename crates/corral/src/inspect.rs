//! `corral inspect log PATH` and `corral inspect snapshot FILE`: print what a server wrote
//! and verify its checksums, without changing anything (recovery, which cuts torn tails,
//! happens only in the server).

use corral_proto::Acl;
use corral_storage::format::{
    decode_batch_header, decode_payload, SegmentHeader, BATCH_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use corral_tree::{decode_entry, Txn, TxnHeader};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The segment files named by `path`: the file itself, or a directory's `log.*` files in
/// zxid order.
fn segments(path: &Path) -> Result<Vec<PathBuf>, String> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut files: Vec<(i64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let zxid = corral_storage::format::parse_segment_file_name(&name)?;
            Some((zxid, e.path()))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("{}: no log segments (log.<zxid>) here", path.display()));
    }
    Ok(files.into_iter().map(|(_, p)| p).collect())
}

fn acl_json(acl: &[Acl]) -> Value {
    acl.iter().map(|a| json!({"perms": a.perms, "scheme": a.id.scheme, "id": a.id.id})).collect()
}

fn data_json(d: Option<&[u8]>) -> Value {
    match d {
        None => Value::Null,
        Some(d) => match std::str::from_utf8(d) {
            Ok(s) => json!({"utf8": s}),
            Err(_) => json!({"hex": d.iter().map(|b| format!("{b:02x}")).collect::<String>()}),
        },
    }
}

fn txn_json(txn: &Txn) -> Value {
    match txn {
        Txn::CreateSession { timeout_ms, .. } => json!({"type": "createSession", "timeout_ms": timeout_ms}),
        Txn::CloseSession => json!({"type": "closeSession"}),
        Txn::Create(c) => json!({
            "type": "create", "path": c.path, "data": data_json(c.data.as_deref()), "acl": acl_json(&c.acl),
            "ephemeral_owner": format!("{:#x}", c.ephemeral_owner), "parent_cversion": c.parent_cversion,
        }),
        Txn::Delete { path } => json!({"type": "delete", "path": path}),
        Txn::SetData { path, data, version } => json!({"type": "setData", "path": path, "data": data_json(data.as_deref()), "version": version}),
        Txn::SetAcl { path, acl, version } => json!({"type": "setACL", "path": path, "acl": acl_json(acl), "version": version}),
        Txn::Check { path } => json!({"type": "check", "path": path}),
        Txn::Multi(txns) => json!({"type": "multi", "ops": txns.iter().map(txn_json).collect::<Vec<_>>()}),
        Txn::Error(e) => json!({"type": "error", "code": e.code(), "name": format!("{e:?}")}),
    }
}

fn txn_text(txn: &Txn) -> String {
    let len = |d: &Option<Vec<u8>>| d.as_ref().map_or("null".to_string(), |d| format!("{}B", d.len()));
    match txn {
        Txn::CreateSession { timeout_ms, .. } => format!("createSession timeout={timeout_ms}ms"),
        Txn::CloseSession => "closeSession".into(),
        Txn::Create(c) => format!("create {} data={} owner={:#x}", c.path, len(&c.data), c.ephemeral_owner),
        Txn::Delete { path } => format!("delete {path}"),
        Txn::SetData { path, data, version } => format!("setData {path} data={} version={version}", len(data)),
        Txn::SetAcl { path, acl, version } => format!("setACL {path} entries={} aversion={version}", acl.len()),
        Txn::Check { path } => format!("check {path}"),
        Txn::Multi(txns) => format!("multi [{}]", txns.iter().map(txn_text).collect::<Vec<_>>().join("; ")),
        Txn::Error(e) => format!("error {e}"),
    }
}

fn print_record(hdr: &TxnHeader, txn: &Txn, json_out: bool) {
    if json_out {
        let v = json!({
            "zxid": format!("{:#x}", hdr.zxid), "time_ms": hdr.time_ms,
            "session": format!("{:#x}", hdr.session), "cxid": hdr.cxid, "txn": txn_json(txn),
        });
        println!("{v}");
    } else {
        println!("{:#x} t={} session={:#x} cxid={} {}", hdr.zxid, hdr.time_ms, hdr.session, hdr.cxid, txn_text(txn));
    }
}

/// Checks one segment, printing its records; returns the problems found.
fn inspect_segment(file: &Path, json_out: bool, records: &mut u64) -> Vec<String> {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => return vec![format!("{}: {e}", file.display())],
    };
    let problem = |offset: usize, what: &str| format!("{} at offset {offset}: {what}", file.display());
    let Some(head) = bytes.get(..SEGMENT_HEADER_LEN) else {
        return vec![problem(0, "shorter than a segment header")];
    };
    if let Err(e) = SegmentHeader::decode(head.try_into().expect("header length")) {
        return vec![problem(0, &format!("segment header: {e}"))];
    }
    let mut at = SEGMENT_HEADER_LEN;
    while at + BATCH_HEADER_LEN <= bytes.len() {
        let h: &[u8; BATCH_HEADER_LEN] = bytes[at..at + BATCH_HEADER_LEN].try_into().expect("length");
        if h.iter().all(|b| *b == 0) {
            // Preallocated space: the end of the data, if only zeros follow.
            if bytes[at..].iter().any(|b| *b != 0) {
                return vec![problem(at, "non-zero bytes after the end of the data")];
            }
            return vec![];
        }
        let Some(batch) = decode_batch_header(h) else {
            return vec![problem(at, "batch header checksum does not verify")];
        };
        let start = at + BATCH_HEADER_LEN;
        let Some(payload) = bytes.get(start..start + batch.payload_len as usize) else {
            return vec![problem(at, "batch runs past the end of the file")];
        };
        if crc32c::crc32c(payload) != batch.payload_crc {
            return vec![problem(at, "batch payload checksum does not verify")];
        }
        let recs = match decode_payload(payload) {
            Ok(r) => r,
            Err(e) => return vec![problem(at, &e)],
        };
        for r in recs {
            match decode_entry(&r.payload) {
                Ok((hdr, txn)) => {
                    *records += 1;
                    print_record(&hdr, &txn, json_out);
                }
                Err(e) => return vec![problem(at, &format!("record {:#x} does not decode: {e}", r.zxid))],
            }
        }
        at = start + payload.len();
    }
    vec![]
}

/// Runs the command; the exit code is 0 when every checksum verified.
pub fn log(path: &Path, json_out: bool) -> i32 {
    let files = match segments(path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("corral inspect: {e}");
            return 2;
        }
    };
    let mut records = 0;
    let mut problems = Vec::new();
    for f in &files {
        problems.extend(inspect_segment(f, json_out, &mut records));
    }
    for p in &problems {
        eprintln!("corral inspect: {p}");
    }
    eprintln!(
        "{records} records in {} segment(s); {}",
        files.len(),
        if problems.is_empty() { "all checksums verified" } else { "PROBLEMS FOUND" }
    );
    if problems.is_empty() {
        0
    } else {
        1
    }
}

/// `corral inspect snapshot FILE`: verifies the snapshot and prints its sessions and
/// nodes (parents first); the exit code is 0 when it verified and decoded.
pub fn snapshot(path: &Path, json_out: bool) -> i32 {
    let (zxid, body) = match corral_storage::snapshot::read(path) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("corral inspect: {e}");
            return 1;
        }
    };
    let tree = match corral_tree::DataTree::read_snapshot(&body) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("corral inspect: {}: does not decode: {e}", path.display());
            return 1;
        }
    };
    for (id, s) in tree.sessions() {
        if json_out {
            println!("{}", json!({"session": format!("{id:#x}"), "timeout_ms": s.timeout_ms}));
        } else {
            println!("session {id:#x} timeout={}ms", s.timeout_ms);
        }
    }
    let mut stack = vec!["/".to_string()];
    while let Some(p) = stack.pop() {
        let Some(n) = tree.get(&p) else { continue };
        let st = n.stat();
        if json_out {
            println!(
                "{}",
                json!({
                    "path": p, "data": data_json(n.data()), "acl": acl_json(n.acl()),
                    "czxid": format!("{:#x}", st.czxid), "mzxid": format!("{:#x}", st.mzxid),
                    "pzxid": format!("{:#x}", st.pzxid), "ctime": st.ctime, "mtime": st.mtime,
                    "version": st.version, "cversion": st.cversion, "aversion": st.aversion,
                    "ephemeral_owner": format!("{:#x}", st.ephemeral_owner),
                    "data_length": st.data_length, "num_children": st.num_children,
                })
            );
        } else {
            println!(
                "{p} data={}B version={} cversion={} children={} czxid={:#x} mzxid={:#x} owner={:#x}",
                st.data_length, st.version, st.cversion, st.num_children, st.czxid, st.mzxid, st.ephemeral_owner
            );
        }
        stack.extend(n.child_names().into_iter().rev().map(|c| if p == "/" { format!("/{c}") } else { format!("{p}/{c}") }));
    }
    eprintln!(
        "snapshot of zxid {zxid:#x}: {} nodes, {} sessions, digest {:#018x}; checksum verified",
        tree.node_count(),
        tree.sessions().len(),
        tree.digest()
    );
    0
}
