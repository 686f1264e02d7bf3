//! An ensemble member running Zab alone, over real connections and a real disk, with no
//! client service: `corral zab-member --config zoo.cfg`. It exists to test and watch the
//! replication layer end to end (election, discovery, sync, broadcast, failover) before the
//! client service runs on top of it (docs/zab.md, "The driver").
//!
//! The loop owns the [`Peer`], the [`ReplicaStore`] and the [`Transport`] and carries out
//! the peer's actions in order, each storage action finished before the next. As leader
//! it can propose test writes (`--writes`, one every `--write-every-ms`): creates of
//! `/zab-<epoch>-<n>`.
//!
//! It reports on stdout, one line per fact, for tests and people:
//!
//! ```text
//! role leading epoch=2 leader=3
//! sync to=1 how=diff            (or how=trunc / how=snap, with the zxid)
//! applied zxid=0x200000005 nodes=9 digest=0x5f0c...
//! ```

use crate::config::{Config, Ensemble};
use crate::quorum::{self, Inbound, Transport};
use crate::replica::{self, ReplicaDirs, ReplicaError, ReplicaStore};
use corral_tree::{encode_entry, CreateTxn, DataTree, Txn, TxnHeader};
use corral_zab::election::Timing;
use corral_zab::message::Message;
use corral_zab::peer::{Action, Peer, Role, Settings};
use corral_zab::{Voters, Zxid};
use std::collections::VecDeque;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Committed transactions a leader keeps in memory to sync learners by DIFF (ZooKeeper's
/// committedLog holds 500).
pub const HISTORY_WINDOW: usize = 500;

#[derive(Debug, Clone, Copy)]
pub struct MemberOptions {
    /// Test writes a leader proposes over this process's life.
    pub writes: u64,
    pub write_every_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn say(line: std::fmt::Arguments) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Zab's settings from the ensemble configuration.
pub fn settings(cfg: &Config, ens: &Ensemble) -> Settings {
    Settings {
        id: ens.my_id,
        voters: Voters::new(ens.voters().map(|s| s.id)),
        members: ens.servers.iter().map(|s| s.id).collect(),
        tick_ms: cfg.tick_time_ms as u64,
        init_limit: ens.init_limit,
        sync_limit: ens.sync_limit,
        election: Timing::default(),
        history_window: HISTORY_WINDOW,
    }
}

/// Runs the member until the process ends (or its disk fails).
pub async fn run(cfg: Config, opts: MemberOptions) -> Result<(), MemberError> {
    let ens = cfg.ensemble.clone().expect("zab-member needs an ensemble zoo.cfg");
    let dirs = ReplicaDirs {
        data: cfg.data_dir.clone(),
        log: crate::log_dir(&cfg),
        snapshots: crate::snapshot_dir(&cfg),
    };
    let (mut store, mut tree, disk, tail) = ReplicaStore::open(dirs, HISTORY_WINDOW)?;
    tracing::info!(zxid = format_args!("{:#x}", disk.last_zxid), accepted = disk.accepted_epoch, current = disk.current_epoch, "member starting");
    let me = ens.me();
    let bind = |port: u16| {
        let host = me.host.clone();
        async move {
            quorum::bind(&host, port).await.map_err(|source| MemberError::Bind { addr: format!("{host}:{port}"), source })
        }
    };
    let (election, quorum_l) = (bind(me.election_port).await?, bind(me.quorum_port).await?);
    let (transport, mut inbox) = Transport::start(ens.my_id, quorum::member_addrs(&ens), election, quorum_l);
    let (mut peer, actions) = Peer::new(settings(&cfg, &ens), disk, tail, now_ms());
    let mut pending: VecDeque<Action> = actions.into();
    let mut role = Role::Looking;
    let mut written = 0u64;
    let mut writes = tokio::time::interval(Duration::from_millis(opts.write_every_ms.max(1)));
    let mut reported: Option<Zxid> = None;
    let mut last_report = Instant::now();
    loop {
        while let Some(a) = pending.pop_front() {
            let more = execute(a, &mut peer, &mut store, &mut tree, &transport, &mut role)?;
            for m in more.into_iter().rev() {
                pending.push_front(m);
            }
        }
        let applied = tree.last_zxid();
        if reported != Some(applied) && last_report.elapsed() >= Duration::from_millis(100) {
            reported = Some(applied);
            last_report = Instant::now();
            let t = &tree;
            say(format_args!("applied zxid={applied:#x} nodes={} digest={:#018x}", t.node_count(), t.digest()));
        }
        let wake_in = peer.next_wakeup_ms().map_or(1000, |w| w.saturating_sub(now_ms()).min(1000));
        let leading = matches!(role, Role::Leading { .. });
        tokio::select! {
            m = inbox.recv() => match m {
                Some(Inbound::Message { from, msg }) => {
                    if is_protocol_step(&msg) {
                        tracing::debug!(from, ?msg, "received");
                    }
                    pending.extend(peer.on_message(from, msg, now_ms()))
                }
                Some(Inbound::Disconnected { peer: p }) => {
                    tracing::debug!(peer = p, "quorum link broke");
                    pending.extend(peer.disconnected(p))
                }
                None => return Ok(()),
            },
            _ = tokio::time::sleep(Duration::from_millis(wake_in.max(1))) => {
                pending.extend(peer.tick(now_ms()));
            }
            _ = writes.tick(), if leading && written < opts.writes => {
                if let (Role::Leading { epoch }, Some(zxid)) = (role, peer.next_zxid()) {
                    written += 1;
                    let hdr = TxnHeader { session: 0, cxid: written as i32, zxid, time_ms: now_ms() as i64 };
                    let txn = Txn::Create(CreateTxn {
                        path: format!("/zab-{epoch}-{written}"),
                        data: Some(format!("written by {} as leader of epoch {epoch}", ens.my_id).into_bytes()),
                        acl: corral_proto::Acl::open_unsafe(),
                        ephemeral_owner: 0,
                        parent_cversion: 0,
                    });
                    if let Ok((z, actions)) = peer.propose(encode_entry(&hdr, &txn).into()) {
                        assert_eq!(z, zxid, "the zxid the peer announced");
                        pending.extend(actions);
                    }
                }
            }
            // Re-check the report even when nothing else happens.
            _ = tokio::time::sleep(Duration::from_millis(150)), if reported != Some(tree.last_zxid()) => {}
        }
    }
}

/// Whether a message is one of the few a session's course is read from in a debug log
/// (discovery and sync), as opposed to the stream of votes, pings, proposals, acks and
/// commits, or a snapshot's bytes.
fn is_protocol_step(msg: &Message) -> bool {
    !matches!(
        msg,
        Message::Election(_)
            | Message::Ping
            | Message::Proposal { .. }
            | Message::Ack { .. }
            | Message::Commit { .. }
            | Message::Inform { .. }
            | Message::Snap { .. }
    )
}

/// Carries out one action; returns the actions it led to (to run next, first).
fn execute(
    a: Action,
    peer: &mut Peer,
    store: &mut ReplicaStore,
    tree: &mut DataTree,
    transport: &Transport,
    role: &mut Role,
) -> Result<Vec<Action>, MemberError> {
    Ok(match a {
        Action::Send { to, msg } => {
            match &msg {
                Message::Diff { .. } => say(format_args!("sync to={to} how=diff")),
                Message::Trunc { zxid } => say(format_args!("sync to={to} how=trunc zxid={zxid:#x}")),
                _ => {}
            }
            if is_protocol_step(&msg) {
                tracing::debug!(to, ?msg, "sending");
            }
            transport.send(to, msg);
            vec![]
        }
        Action::PersistAcceptedEpoch(e) => {
            store.persist_accepted(e)?;
            vec![]
        }
        Action::PersistCurrentEpoch(e) => {
            store.persist_current(e)?;
            vec![]
        }
        Action::BeginEpochUpdate => {
            store.begin_epoch_update()?;
            vec![]
        }
        Action::Append(txns) => {
            let through = store.append(&txns)?;
            peer.logged(through)
        }
        Action::Truncate(z) => {
            *tree = store.truncate(z)?;
            vec![]
        }
        Action::InstallSnapshot { zxid, snapshot } => {
            *tree = store.install_snapshot(zxid, &snapshot)?;
            vec![]
        }
        Action::SendSnapshot { to } => {
            let zxid = tree.last_zxid();
            say(format_args!("sync to={to} how=snap zxid={zxid:#x}"));
            transport.send(to, Message::Snap { zxid, snapshot: replica::snapshot_bytes(tree).into() });
            vec![]
        }
        Action::Apply(txns) => {
            replica::apply(tree, &txns, &mut Vec::new())?;
            vec![]
        }
        Action::Role(r) => {
            *role = r;
            match r {
                Role::Looking => say(format_args!("role looking")),
                Role::Leading { epoch } => say(format_args!("role leading epoch={epoch} leader={}", peer.id())),
                Role::Following { leader, epoch } => say(format_args!("role following epoch={epoch} leader={leader}")),
                Role::Observing { leader, epoch } => say(format_args!("role observing epoch={epoch} leader={leader}")),
            }
            vec![]
        }
        Action::Recover => {
            tracing::info!(why = peer.left_because(), "leaving the role; rebuilding from disk");
            let (fresh, disk, tail) = store.recover()?;
            *tree = fresh;
            peer.recovered(disk, tail, now_ms())
        }
        Action::Disconnect { peer } => {
            transport.close(peer);
            vec![]
        }
        // No client service here: nothing forwards or syncs.
        Action::Forwarded { .. } | Action::Synced { .. } => vec![],
    })
}
