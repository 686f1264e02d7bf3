//! Scripted scenarios, one per ZooKeeper bug listed in ZAB.md where the core decides the
//! outcome: a peer is fed exact messages and the actions it returns are checked, in order.

use super::*;

fn settings(id: ServerId) -> Settings {
    Settings {
        id,
        voters: Voters::new([1, 2, 3]),
        members: vec![1, 2, 3],
        tick_ms: 100,
        init_limit: 10,
        sync_limit: 5,
        election: Timing { finalize_wait_ms: 50, resend_min_ms: 50, resend_max_ms: 1000 },
        history_window: 100,
    }
}

fn disk(accepted: u32, current: u32, last_zxid: Zxid) -> DiskState {
    DiskState { accepted_epoch: accepted, current_epoch: current, last_zxid, snapshot_zxid: 0, trusted: true }
}

fn txn(s: &str) -> Txn {
    s.as_bytes().into()
}

fn sends(actions: &[Action]) -> Vec<(ServerId, Message)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { to, msg } if !matches!(msg, Message::Election(_)) => Some((*to, msg.clone())),
            _ => None,
        })
        .collect()
}

fn settled(from: ServerId, state: PeerState, leader: ServerId, peer_epoch: u32) -> Message {
    Message::Election(Notification { from, state, vote: Vote { leader, zxid: 0, round: 1, peer_epoch } })
}

/// A follower of leader 3 that has sent its LearnerInfo.
fn follower(d: DiskState) -> Peer {
    let (mut p, _) = Peer::new(settings(1), d, LogTail::default(), 0);
    p.on_message(2, settled(2, PeerState::Following, 3, 1), 1);
    let out = p.on_message(3, settled(3, PeerState::Leading, 3, 1), 2);
    assert!(matches!(sends(&out)[..], [(3, Message::LearnerInfo { .. })]), "{out:?}");
    p
}

/// A leader (3) elected by 1 and 2, with LearnerInfo from both and the epoch chosen.
fn leader(d: DiskState, tail: LogTail, learner_last: [Zxid; 2]) -> (Peer, Vec<Action>) {
    let (mut p, _) = Peer::new(settings(3), d, tail, 0);
    for from in [1, 2] {
        let vote = Vote { leader: 3, zxid: d.last_zxid, round: 1, peer_epoch: d.current_epoch };
        p.on_message(from, Message::Election(Notification { from, state: PeerState::Looking, vote }), 1);
    }
    p.tick(100);
    assert!(matches!(p.state, State::Leading(_)), "{:?}", p.state);
    let mut out = Vec::new();
    for (from, last) in [1, 2].into_iter().zip(learner_last) {
        let info = Message::LearnerInfo { accepted_epoch: 1, last_zxid: last, snapshot_zxid: 0, observer: false };
        out.extend(p.on_message(from, info, 110));
    }
    (p, out)
}

/// Leader 3 of epoch 2, established with learners 1 and 2 synced (all at (1,5)).
fn established_leader() -> Peer {
    let (mut p, _) = leader(disk(1, 1, make_zxid(1, 5)), LogTail::default(), [make_zxid(1, 5); 2]);
    for from in [1, 2] {
        p.on_message(from, Message::AckEpoch { current_epoch: 1, last_zxid: make_zxid(1, 5), fresh: true }, 120);
        p.on_message(from, Message::Ack { zxid: make_zxid(2, 0) }, 121);
    }
    assert_eq!(p.role(), Role::Leading { epoch: 2 });
    p
}

/// ZOOKEEPER-335: the new epoch comes from the persisted acceptedEpochs, not from zxids,
/// and it is on disk before anyone hears of it.
#[test]
fn epoch_choice_persists_before_leaderinfo() {
    let (mut p, _) = Peer::new(settings(3), disk(2, 1, make_zxid(1, 5)), LogTail::default(), 0);
    for from in [1, 2] {
        let vote = Vote { leader: 3, zxid: make_zxid(1, 5), round: 1, peer_epoch: 1 };
        p.on_message(from, Message::Election(Notification { from, state: PeerState::Looking, vote }), 1);
    }
    p.tick(100);
    let info = Message::LearnerInfo { accepted_epoch: 7, last_zxid: make_zxid(1, 5), snapshot_zxid: 0, observer: false };
    let out = p.on_message(2, info, 110);
    // With 2's info we are a quorum: epoch 8, on disk before anyone hears of it.
    assert_eq!(out[0], Action::PersistAcceptedEpoch(8));
    assert_eq!(sends(&out), vec![(2, Message::LeaderInfo { epoch: 8 })]);
}

/// ZOOKEEPER-3911 / 4646 / 4643: a follower ACKs NEWLEADER only once everything the sync
/// brought is durable, and raises currentEpoch in between.
#[test]
fn newleader_ack_waits_for_the_synced_history_and_follows_current_epoch() {
    let mut p = follower(disk(1, 1, make_zxid(1, 2)));
    let out = p.on_message(3, Message::LeaderInfo { epoch: 2 }, 10);
    assert_eq!(out[0], Action::PersistAcceptedEpoch(2));
    assert_eq!(sends(&out), vec![(3, Message::AckEpoch { current_epoch: 1, last_zxid: make_zxid(1, 2), fresh: true })]);
    // ZOOKEEPER-1653: before any synced history is written, the update is marked, so a
    // crash before currentEpoch is raised is repaired at startup.
    assert_eq!(p.on_message(3, Message::Diff { last_zxid: make_zxid(1, 4) }, 11), vec![Action::BeginEpochUpdate]);
    for c in 3..=4 {
        let out = p.on_message(3, Message::Proposal { zxid: make_zxid(1, c), txn: txn("t") }, 12);
        assert_eq!(out, vec![Action::Append(vec![(make_zxid(1, c), txn("t"))])]);
        p.on_message(3, Message::Commit { zxid: make_zxid(1, c) }, 12);
    }
    // NEWLEADER before the appends are durable: nothing yet.
    assert!(p.on_message(3, Message::NewLeader { epoch: 2 }, 13).is_empty());
    // A new proposal after NEWLEADER is logged but acked only after NEWLEADER's ACK.
    let out = p.on_message(3, Message::Proposal { zxid: make_zxid(2, 1), txn: txn("n") }, 14);
    assert_eq!(out.len(), 1);
    // Durable through the first synced one only: still nothing.
    assert!(p.logged(make_zxid(1, 3)).is_empty());
    // Durable through the end of the sync: currentEpoch, then the NEWLEADER ACK first.
    let out = p.logged(make_zxid(1, 4));
    assert_eq!(
        out,
        vec![Action::PersistCurrentEpoch(2), Action::Send { to: 3, msg: Message::Ack { zxid: make_zxid(2, 0) } }]
    );
    // The post-NEWLEADER proposal is acked once durable.
    assert_eq!(sends(&p.logged(make_zxid(2, 1))), vec![(3, Message::Ack { zxid: make_zxid(2, 1) })]);
}

/// ZOOKEEPER-3642: a snapshot is installed (durably, by the driver) before anything else,
/// and the NEWLEADER ACK comes after it.
#[test]
fn snapshot_is_installed_before_the_ack() {
    let mut p = follower(disk(1, 1, make_zxid(1, 2)));
    p.on_message(3, Message::LeaderInfo { epoch: 2 }, 10);
    let snap: Snapshot = vec![1, 2, 3].into();
    let out = p.on_message(3, Message::Snap { zxid: make_zxid(1, 9), snapshot: snap.clone() }, 11);
    assert_eq!(out, vec![Action::BeginEpochUpdate, Action::InstallSnapshot { zxid: make_zxid(1, 9), snapshot: snap }]);
    let out = p.on_message(3, Message::NewLeader { epoch: 2 }, 12);
    assert_eq!(
        out,
        vec![Action::PersistCurrentEpoch(2), Action::Send { to: 3, msg: Message::Ack { zxid: make_zxid(2, 0) } }]
    );
}

/// ZOOKEEPER-4685: the first ACK on a syncing learner's connection must be NEWLEADER's;
/// a learner that sends another first is dropped, not counted.
#[test]
fn an_ack_before_the_newleader_ack_drops_the_learner() {
    let (mut p, _) = leader(disk(1, 1, make_zxid(1, 5)), LogTail::default(), [make_zxid(1, 5); 2]);
    for from in [1, 2] {
        p.on_message(from, Message::AckEpoch { current_epoch: 1, last_zxid: make_zxid(1, 5), fresh: true }, 120);
    }
    let State::Leading(l) = &p.state else { panic!() };
    assert!(l.learners.values().all(|x| x.phase == LearnerPhase::Syncing));
    p.on_message(1, Message::Ack { zxid: make_zxid(1, 5) }, 130);
    let State::Leading(l) = &p.state else { panic!() };
    assert!(!l.learners.contains_key(&1), "learner 1 broke the protocol");
    // 2 acks properly: with us that is a quorum, and the leader is established.
    let out = p.on_message(2, Message::Ack { zxid: make_zxid(2, 0) }, 131);
    assert!(out.contains(&Action::Role(Role::Leading { epoch: 2 })), "{out:?}");
    assert_eq!(sends(&out), vec![(2, Message::UpToDate)]);
}

/// ZOOKEEPER-1154 / 2832: a learner holding transactions the leader lacks (never
/// committed) is told to cut them, and then gets the leader's history after the cut.
#[test]
fn uncommitted_tail_is_truncated() {
    let tail = LogTail {
        base: make_zxid(1, 2),
        txns: vec![(make_zxid(1, 3), txn("a")), (make_zxid(2, 1), txn("b"))],
    };
    let (mut p, _) = leader(disk(2, 2, make_zxid(2, 1)), tail, [make_zxid(1, 4), make_zxid(2, 1)]);
    // Learner 1 has (1,4), which only a deposed leader of epoch 1 ever proposed. With us
    // it is a quorum of epoch acks: we take the epoch, then sync it.
    let out = p.on_message(1, Message::AckEpoch { current_epoch: 1, last_zxid: make_zxid(1, 4), fresh: true }, 120);
    assert_eq!(out[0], Action::PersistCurrentEpoch(3));
    assert_eq!(
        sends(&out),
        vec![
            (1, Message::Trunc { zxid: make_zxid(1, 3) }),
            (1, Message::Proposal { zxid: make_zxid(2, 1), txn: txn("b") }),
            (1, Message::Commit { zxid: make_zxid(2, 1) }),
            (1, Message::NewLeader { epoch: 3 }),
        ]
    );
    // Learner 2 holds exactly our history: an empty DIFF.
    let out = p.on_message(2, Message::AckEpoch { current_epoch: 2, last_zxid: make_zxid(2, 1), fresh: true }, 121);
    assert_eq!(
        sends(&out),
        vec![(2, Message::Diff { last_zxid: make_zxid(2, 1) }), (2, Message::NewLeader { epoch: 3 })]
    );
}

/// A learner further behind than the in-memory window gets a snapshot; one whose needed
/// cut falls inside its own snapshot does too.
#[test]
fn far_behind_or_uncuttable_learners_get_a_snapshot() {
    let tail = LogTail { base: make_zxid(1, 10), txns: vec![(make_zxid(1, 11), txn("a"))] };
    let (mut p, _) = leader(disk(1, 1, make_zxid(1, 11)), tail, [make_zxid(1, 3), make_zxid(1, 11)]);
    p.on_message(2, Message::AckEpoch { current_epoch: 1, last_zxid: make_zxid(1, 11), fresh: true }, 120);
    let out = p.on_message(1, Message::AckEpoch { current_epoch: 1, last_zxid: make_zxid(1, 3), fresh: true }, 121);
    assert!(out.contains(&Action::SendSnapshot { to: 1 }), "{out:?}");
}

/// A leader whose follower holds a more recent history must not lead (discovery step 4).
#[test]
fn a_follower_ahead_of_the_leader_makes_it_step_down() {
    let (mut p, _) = leader(disk(1, 1, make_zxid(1, 5)), LogTail::default(), [make_zxid(1, 5); 2]);
    let out = p.on_message(1, Message::AckEpoch { current_epoch: 1, last_zxid: make_zxid(1, 9), fresh: true }, 120);
    assert!(out.contains(&Action::Recover), "{out:?}");
    assert!(!out.iter().any(|a| matches!(a, Action::PersistCurrentEpoch(_))));
}

/// ZOOKEEPER-2845 / 4712: leaving a role asks the driver to rebuild memory from disk, and
/// no vote goes out until it says it has.
#[test]
fn no_vote_before_memory_is_rebuilt() {
    let mut p = follower(disk(1, 1, make_zxid(1, 2)));
    let out = p.disconnected(3);
    assert_eq!(out, vec![Action::Disconnect { peer: 3 }, Action::Role(Role::Looking), Action::Recover]);
    // Notifications and time change nothing until recovered.
    let n = Notification { from: 2, state: PeerState::Looking, vote: Vote { leader: 2, zxid: 0, round: 5, peer_epoch: 0 } };
    assert!(p.on_message(2, Message::Election(n), 10).is_empty());
    assert!(p.tick(10_000).is_empty());
    // The disk had more than memory knew (an append that finished): the vote says so.
    let out = p.recovered(disk(1, 1, make_zxid(1, 3)), LogTail::default(), 10_001);
    let votes: Vec<Vote> = out
        .iter()
        .filter_map(|a| match a {
            Action::Send { msg: Message::Election(n), .. } => Some(n.vote),
            _ => None,
        })
        .collect();
    assert!(!votes.is_empty() && votes.iter().all(|v| v.zxid == make_zxid(1, 3)), "{votes:?}");
}

/// ZOOKEEPER-4394: a COMMIT arriving after NEWLEADER for a proposal received during sync
/// is applied, not treated as an error.
#[test]
fn commit_after_newleader_for_a_synced_proposal() {
    let mut p = follower(disk(1, 1, make_zxid(1, 2)));
    p.on_message(3, Message::LeaderInfo { epoch: 2 }, 10);
    p.on_message(3, Message::Diff { last_zxid: make_zxid(1, 3) }, 11);
    p.on_message(3, Message::Proposal { zxid: make_zxid(1, 3), txn: txn("x") }, 11);
    p.on_message(3, Message::NewLeader { epoch: 2 }, 12);
    p.logged(make_zxid(1, 3));
    let out = p.on_message(3, Message::Commit { zxid: make_zxid(1, 3) }, 13);
    assert_eq!(out, vec![Action::Apply(vec![(make_zxid(1, 3), txn("x"))])]);
}

/// ZOOKEEPER-4925: a proposal that would leave a hole in the log is refused.
#[test]
fn a_gap_in_proposals_is_refused() {
    let mut p = follower(disk(1, 1, make_zxid(1, 2)));
    p.on_message(3, Message::LeaderInfo { epoch: 2 }, 10);
    p.on_message(3, Message::Diff { last_zxid: make_zxid(1, 5) }, 11);
    let out = p.on_message(3, Message::Proposal { zxid: make_zxid(1, 4), txn: txn("x") }, 11);
    assert!(out.contains(&Action::Recover), "(1,3) is missing: {out:?}");
    // The first of a new epoch may follow anything older.
    assert!(follows(make_zxid(1, 7), make_zxid(2, 1)));
    assert!(!follows(make_zxid(1, 7), make_zxid(2, 2)));
}

/// The leader steps down when the followers it heard from lately are not a quorum.
#[test]
fn leader_steps_down_without_a_quorum() {
    let mut p = established_leader();
    assert_eq!(p.role(), Role::Leading { epoch: 2 });
    // Follower 1 keeps answering pings; 2 falls silent. Still a quorum (1 + us).
    let mut now = 121;
    while now < 2_000 {
        now += 50;
        p.tick(now);
        p.on_message(1, Message::Ping, now);
    }
    assert_eq!(p.role(), Role::Leading { epoch: 2 });
    // Now 1 is silent too: after syncLimit (5 ticks) the leader gives up.
    let mut out = Vec::new();
    while now < 3_000 && !out.contains(&Action::Recover) {
        now += 50;
        out = p.tick(now);
    }
    assert!(out.contains(&Action::Recover), "still leading at {now}");
    assert!(now - 2_000 <= 5 * 100 + 100, "stepped down after {} ms", now - 2_000);
}

/// A write is committed only with a quorum durable, the leader's own fsync counting only
/// once it happened, and commits go out in order.
#[test]
fn commit_needs_a_durable_quorum() {
    let mut p = established_leader();
    let (z1, out) = p.propose(txn("a")).unwrap();
    assert_eq!(z1, make_zxid(2, 1));
    assert_eq!(out[0], Action::Append(vec![(z1, txn("a"))]));
    let (z2, _) = p.propose(txn("b")).unwrap();
    // Follower 1 acks both; we have not synced our own log: 1 of 3 is not a quorum.
    assert!(p.on_message(1, Message::Ack { zxid: z2 }, 130).is_empty());
    // Our log is durable through z1 only: z1 commits, z2 waits.
    let out = p.logged(z1);
    assert!(out.contains(&Action::Apply(vec![(z1, txn("a"))])), "{out:?}");
    assert!(sends(&out).contains(&(1, Message::Commit { zxid: z1 })));
    let out = p.logged(z2);
    assert!(out.contains(&Action::Apply(vec![(z2, txn("b"))])), "{out:?}");
    // Not the leader: no proposals.
    let mut f = follower(disk(1, 1, 0));
    assert_eq!(f.propose(txn("x")).unwrap_err(), ProposeError::NotLeader);
}

/// Found by the simulation (seed 87507): once settled, leader and followers answer LOOKING
/// servers with the epoch they now share, or a joiner never sees a quorum agree (the
/// followers' votes were from an older election than the leader's).
#[test]
fn settled_members_advertise_the_epoch_they_share() {
    let looking = Message::Election(Notification {
        from: 2,
        state: PeerState::Looking,
        vote: Vote { leader: 2, zxid: 0, round: 9, peer_epoch: 0 },
    });
    let answer = |out: Vec<Action>| match &out[..] {
        [Action::Send { msg: Message::Election(n), .. }] => (n.state, n.vote.leader, n.vote.peer_epoch),
        other => panic!("{other:?}"),
    };
    let mut l = established_leader();
    assert_eq!(answer(l.on_message(2, looking.clone(), 130)), (PeerState::Leading, 3, 2));

    let mut f = follower(disk(1, 1, make_zxid(1, 2)));
    f.on_message(3, Message::LeaderInfo { epoch: 2 }, 10);
    f.on_message(3, Message::Diff { last_zxid: make_zxid(1, 2) }, 11);
    f.on_message(3, Message::NewLeader { epoch: 2 }, 12);
    f.on_message(3, Message::UpToDate, 13);
    assert_eq!(f.role(), Role::Following { leader: 3, epoch: 2 });
    assert_eq!(answer(f.on_message(2, looking, 14)), (PeerState::Following, 3, 2));
}

/// A learner's `sync` is answered by the leader only once everything it had proposed when
/// the sync arrived is committed, after those COMMITs on the same link; forwarded writes
/// reach the leader's driver only from synced learners.
#[test]
fn sync_waits_for_what_was_proposed_before_it() {
    let mut p = established_leader();
    let out = p.on_message(1, Message::Request { body: txn("w") }, 122);
    assert_eq!(out, vec![Action::Forwarded { from: 1, body: txn("w") }]);
    let (z, _) = p.propose(txn("w")).unwrap();
    // Learner 1 syncs while z is in flight: no answer yet.
    assert!(p.on_message(1, Message::Sync { id: 9, zxid: 0 }, 123).is_empty());
    // A local client's sync waits too.
    assert!(p.sync(10).unwrap().is_empty());
    p.on_message(2, Message::Ack { zxid: z }, 124);
    let out = p.logged(z);
    let tail: Vec<&Action> = out.iter().skip_while(|a| !matches!(a, Action::Apply(_))).collect();
    assert_eq!(
        tail,
        vec![
            &Action::Apply(vec![(z, txn("w"))]),
            &Action::Send { to: 1, msg: Message::Sync { id: 9, zxid: z } },
            &Action::Synced { id: 10 },
        ]
    );
    // With nothing in flight, a sync is answered at once.
    assert_eq!(p.sync(11).unwrap(), vec![Action::Synced { id: 11 }]);
    // A learner that is not synced cannot forward.
    assert!(p.on_message(7, Message::Request { body: txn("x") }, 125).is_empty());
}

/// Epoch rollover: when the zxid counter of an epoch runs out, the leader refuses more
/// proposals and steps down, so that a new election starts a new epoch.
#[test]
fn leader_steps_down_when_the_zxid_counter_runs_out() {
    let mut p = established_leader();
    let State::Leading(l) = &mut p.state else { panic!() };
    l.next_counter = u32::MAX - 1;
    let (z, _) = p.propose(txn("last")).unwrap();
    assert_eq!(z, make_zxid(2, u32::MAX - 1));
    assert_eq!(p.propose(txn("one too many")).unwrap_err(), ProposeError::NotLeader);
    let out = p.tick(200);
    assert!(out.contains(&Action::Recover), "{out:?}");
    assert_eq!(p.role(), Role::Looking);
}

// ---------------------------------------------------------------------------------------
// Found by review (helper scenario tests, kept as regressions).

fn acks(out: &[Action]) -> Vec<Zxid> {
    sends(out).into_iter().filter_map(|(_, m)| if let Message::Ack { zxid } = m { Some(zxid) } else { None }).collect()
}

/// A proposal received after NEWLEADER and made durable in the same group commit as the
/// synced history is acked too, after NEWLEADER's ACK.
#[test]
fn a_proposal_durable_with_the_sync_is_acked_after_newleader() {
    let mut p = follower(disk(1, 1, make_zxid(1, 2)));
    p.on_message(3, Message::LeaderInfo { epoch: 2 }, 10);
    p.on_message(3, Message::Diff { last_zxid: make_zxid(1, 3) }, 11);
    p.on_message(3, Message::Proposal { zxid: make_zxid(1, 3), txn: txn("x") }, 11);
    p.on_message(3, Message::Commit { zxid: make_zxid(1, 3) }, 11);
    assert!(p.on_message(3, Message::NewLeader { epoch: 2 }, 12).is_empty());
    p.on_message(3, Message::Proposal { zxid: make_zxid(2, 1), txn: txn("n") }, 13);
    let out = p.logged(make_zxid(2, 1));
    assert_eq!(acks(&out), vec![make_zxid(2, 0), make_zxid(2, 1)], "{out:?}");
}

/// A NEWLEADER ACK that completes the quorum of a pending proposal commits it.
#[test]
fn a_newleader_ack_completing_a_quorum_commits() {
    let (mut l, _) = leader(disk(1, 1, make_zxid(1, 5)), LogTail::default(), [make_zxid(1, 5); 2]);
    l.on_message(2, Message::AckEpoch { current_epoch: 1, last_zxid: make_zxid(1, 5), fresh: true }, 120);
    l.on_message(2, Message::Ack { zxid: make_zxid(2, 0) }, 121);
    assert_eq!(l.role(), Role::Leading { epoch: 2 });
    let (z, _) = l.propose(txn("w")).unwrap();
    l.logged(z);
    l.disconnected(2); // 2 dies before acking z
    // 1 (re)joins: z travels in its sync, covered by the NEWLEADER ACK.
    l.on_message(1, Message::LearnerInfo { accepted_epoch: 2, last_zxid: make_zxid(1, 5), snapshot_zxid: 0, observer: false }, 130);
    let out = l.on_message(1, Message::AckEpoch { current_epoch: 1, last_zxid: make_zxid(1, 5), fresh: false }, 131);
    assert!(sends(&out).contains(&(1, Message::Proposal { zxid: z, txn: txn("w") })), "{out:?}");
    let out = l.on_message(1, Message::Ack { zxid: make_zxid(2, 0) }, 132);
    assert!(out.contains(&Action::Apply(vec![(z, txn("w"))])), "{out:?}");
}

/// A one-voter ensemble establishes its leader by itself.
#[test]
fn a_single_voter_leads_alone() {
    let mut s = settings(1);
    s.voters = Voters::new([1]);
    s.members = vec![1];
    let (mut p, _) = Peer::new(s, disk(0, 0, 0), LogTail::default(), 0);
    // It votes for itself, waits the finalize time, and leads at once.
    let out = p.tick(100);
    assert!(out.contains(&Action::PersistAcceptedEpoch(1)) && out.contains(&Action::PersistCurrentEpoch(1)), "{out:?}");
    assert_eq!(p.role(), Role::Leading { epoch: 1 });
}

/// A leader established when its last learner acked NEWLEADER long after the first does
/// not take the first for silent: syncLimit counts from the establishment. Learners
/// answer pings from their NEWLEADER ACK on.
#[test]
fn no_step_down_right_after_establishment() {
    let mut s = settings(5);
    s.voters = Voters::new([1, 2, 3, 4, 5]);
    s.members = vec![1, 2, 3, 4, 5];
    let d = disk(1, 1, make_zxid(1, 5));
    let (mut p, _) = Peer::new(s, d, LogTail::default(), 0);
    for from in [1, 2] {
        let vote = Vote { leader: 5, zxid: d.last_zxid, round: 1, peer_epoch: 1 };
        p.on_message(from, Message::Election(Notification { from, state: PeerState::Looking, vote }), 1);
    }
    p.tick(100);
    for from in [1, 2] {
        p.on_message(from, Message::LearnerInfo { accepted_epoch: 1, last_zxid: make_zxid(1, 5), snapshot_zxid: 0, observer: false }, 110);
    }
    for from in [1, 2] {
        p.on_message(from, Message::AckEpoch { current_epoch: 1, last_zxid: make_zxid(1, 5), fresh: true }, 115);
    }
    // 1 syncs fast; 2 slowly (a big snapshot): 700 ms, within initLimit.
    p.on_message(1, Message::Ack { zxid: make_zxid(2, 0) }, 120);
    let mut now = 120;
    while now < 700 {
        now += 50;
        p.tick(now);
    }
    p.on_message(2, Message::Ack { zxid: make_zxid(2, 0) }, 700);
    assert_eq!(p.role(), Role::Leading { epoch: 2 });
    assert!(!p.tick(770).contains(&Action::Recover), "stepped down 70 ms after being established");
    // And a learner that acked NEWLEADER answers pings before UPTODATE.
    let mut f = follower(disk(1, 1, make_zxid(1, 2)));
    f.on_message(3, Message::LeaderInfo { epoch: 2 }, 10);
    f.on_message(3, Message::Diff { last_zxid: make_zxid(1, 2) }, 11);
    f.on_message(3, Message::NewLeader { epoch: 2 }, 12);
    assert_eq!(sends(&f.on_message(3, Message::Ping, 13)), vec![(3, Message::Ping)]);
}

/// A sync answer meant for a learner's earlier session neither reaches nor upsets its new
/// one.
#[test]
fn a_stale_sync_answer_does_not_upset_a_new_session() {
    let mut l = established_leader();
    let (z, _) = l.propose(txn("w")).unwrap();
    l.on_message(1, Message::Sync { id: 7, zxid: 0 }, 122);
    // 1 registers again (a new session on a new connection).
    l.on_message(1, Message::LearnerInfo { accepted_epoch: 2, last_zxid: make_zxid(1, 5), snapshot_zxid: 0, observer: false }, 123);
    l.logged(z);
    let out = l.on_message(2, Message::Ack { zxid: z }, 124);
    assert!(!sends(&out).iter().any(|(to, m)| *to == 1 && matches!(m, Message::Sync { .. })), "{out:?}");
    // And a learner ignores a Sync outside broadcast.
    let mut f = follower(disk(2, 2, make_zxid(1, 5)));
    f.on_message(3, Message::LeaderInfo { epoch: 2 }, 10);
    assert!(!f.on_message(3, Message::Sync { id: 7, zxid: z }, 11).contains(&Action::Recover));
}

impl Peer {
    /// A test hook: an arbitrary (possibly wrong) election outcome.
    fn force_decide(&mut self, leader: ServerId, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        if !matches!(self.state, State::Looking(_)) {
            return out;
        }
        self.vote = Vote { leader, zxid: self.disk.last_zxid, round: self.round, peer_epoch: self.disk.current_epoch };
        if leader == self.s.id {
            self.lead(now_ms, &mut out)
        } else {
            self.follow(leader, now_ms, &mut out)
        }
        out
    }
}

/// Two members both decide to lead (election is only a heuristic) and pick the same
/// epoch; a learner that promised it to one and then joins the other must not let both be
/// established in it: a non-fresh ACKEPOCH does not count.
#[test]
fn two_leaders_cannot_both_be_established_in_one_epoch() {
    let new = |id| Peer::new(settings(id), disk(0, 0, 0), LogTail::default(), 0).0;
    let (mut p1, mut p3) = (new(1), new(3));
    p1.force_decide(1, 0);
    p3.force_decide(3, 0);
    let info = |acc| Message::LearnerInfo { accepted_epoch: acc, last_zxid: 0, snapshot_zxid: 0, observer: false };
    // 2 registers with 3 (which picks epoch 1), but loses it before LEADERINFO arrives.
    assert_eq!(p3.on_message(2, info(0), 1)[0], Action::PersistAcceptedEpoch(1));
    p3.disconnected(2);
    // 2 joins 1, which picks epoch 1 too; 2 promises it (fresh) and 1 syncs it.
    assert_eq!(p1.on_message(2, info(0), 2)[0], Action::PersistAcceptedEpoch(1));
    let mut f = new(2);
    f.force_decide(1, 2);
    let ack = f.on_message(1, Message::LeaderInfo { epoch: 1 }, 3);
    assert!(sends(&ack).contains(&(1, Message::AckEpoch { current_epoch: 0, last_zxid: 0, fresh: true })));
    p1.on_message(2, Message::AckEpoch { current_epoch: 0, last_zxid: 0, fresh: true }, 4);
    // Before NEWLEADER reaches it, 2 goes back to 3, having promised epoch 1 already.
    p1.disconnected(2);
    p3.on_message(2, info(1), 5);
    let out = p3.on_message(2, Message::AckEpoch { current_epoch: 0, last_zxid: 0, fresh: false }, 6);
    assert!(!out.iter().any(|a| matches!(a, Action::PersistCurrentEpoch(_))), "{out:?}");
    assert!(sends(&out).is_empty(), "3 must not sync anyone on a promise made to 1: {out:?}");
    p3.on_message(2, Message::Ack { zxid: make_zxid(1, 0) }, 7);
    assert_eq!(p3.role(), Role::Looking, "3 must not be established in epoch 1");
}

/// Found by the real-process test: a learner may decide to follow us before we decide to
/// lead; its LearnerInfo must not be lost (ZooKeeper's leader accepts the learners'
/// queued connections once it leads).
#[test]
fn a_learner_info_that_comes_before_we_lead_is_taken_up() {
    let (mut p, _) = Peer::new(settings(3), disk(1, 1, make_zxid(1, 5)), LogTail::default(), 0);
    let info = Message::LearnerInfo { accepted_epoch: 1, last_zxid: make_zxid(1, 5), snapshot_zxid: 0, observer: false };
    assert!(p.on_message(1, info, 1).is_empty(), "still LOOKING");
    for from in [1, 2] {
        let vote = Vote { leader: 3, zxid: make_zxid(1, 5), round: 1, peer_epoch: 1 };
        p.on_message(from, Message::Election(Notification { from, state: PeerState::Looking, vote }), 2);
    }
    let out = p.tick(100);
    // Leading now, with 1's early info: a quorum of infos, so the epoch is chosen at once.
    assert!(out.contains(&Action::PersistAcceptedEpoch(2)), "{out:?}");
    assert!(sends(&out).contains(&(1, Message::LeaderInfo { epoch: 2 })), "{out:?}");
}
