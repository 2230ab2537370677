//! The cluster backend on a real nats-server (one, R1, per test; skipped without a binary):
//! the conformance tests that assert dense sequences, restated for stream sequences (the same
//! behaviour, increasing instead of dense), and what only a cluster has: lanes held by one node.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::JetStreamStore;
use super::testserver::{self, LANES, TestServer};
use crate::limit::StoredLog;
use crate::store::tests::{add, alert, covering, entry, mark, seal, titles, window};
use crate::store::{Claim, DigestState, Entry, RequestKey, Slot, Store, StoreError, alert_id};

async fn start(test: &str) -> Option<(TestServer, Arc<JetStreamStore>)> {
    let server = TestServer::start(test).await?;
    let store = testserver::store(&server, "n1", LANES).await;
    Some((server, store))
}

fn increasing(seqs: &[u64]) -> bool {
    seqs.windows(2).all(|w| w[0] < w[1])
}

#[tokio::test]
async fn sequences_digests_and_ids() {
    let Some((_server, store)) = start("sequences_digests_and_ids").await else {
        return;
    };
    let s: &dyn Store = &*store;
    let ops = add(s, "ops", &["a", "b", "c"]).await;
    assert!(increasing(&ops), "{ops:?}");
    let dq = add(s, "dq", &["x"]).await;
    assert!(
        dq[0] > ops[2],
        "one stream: a sequence is unique across lanes"
    );
    assert_eq!(s.pending("ops").await.unwrap(), 3);
    assert_eq!(s.pending("dq").await.unwrap(), 1);
    assert_eq!(s.oldest_pending_ms("ops").await.unwrap(), Some(10));
    assert_eq!(s.robots().await.unwrap(), ["dq", "ops"]);

    let d = seal(s, "ops", 2).await.unwrap();
    assert!(d.first_seq <= ops[0] && d.end_seq == ops[1] + 1, "{d:?}");
    assert_eq!(d.state, DigestState::Pending);
    assert_eq!(titles(s, &d).await, ["a", "b"]);
    assert_eq!(s.pending("ops").await.unwrap(), 1);
    let e = seal(s, "ops", 100).await.unwrap();
    assert_eq!((e.first_seq, e.end_seq), (d.end_seq, ops[2] + 1));
    assert_eq!(e.id, d.id + 1, "digest ids are dense");
    assert!(seal(s, "ops", 100).await.is_none());
    assert_eq!(
        (d.count(), e.count()),
        (2, 1),
        "counts are the alerts covered"
    );
    // Interleaved lanes: the range spans the other lane's messages, the count does not.
    add(s, "ops", &["p"]).await;
    add(s, "dq", &["y", "z"]).await;
    add(s, "ops", &["q"]).await;
    let f = seal(s, "ops", 100).await.unwrap();
    assert!(f.end_seq - f.first_seq >= 4 && f.count() == 2, "{f:?}");
    assert_eq!(titles(s, &f).await, ["p", "q"]);
    assert_eq!(s.oldest_pending_ms("ops").await.unwrap(), None);
    assert_eq!(s.digest(d.id).await.unwrap(), Some(d.clone()));
    let ids: Vec<u64> = s.digests().await.unwrap().iter().map(|d| d.id).collect();
    assert_eq!(ids, [d.id, e.id, f.id]);

    mark(s, &d, DigestState::Dead, 0).await;
    assert_eq!(
        s.digest(d.id).await.unwrap().unwrap().state,
        DigestState::Dead
    );
    let ids: Vec<u64> = s.digests().await.unwrap().iter().map(|d| d.id).collect();
    assert_eq!(
        ids,
        [d.id, e.id, f.id],
        "a digest moved out of the outbox is listed once"
    );
    assert!(s.digest(999).await.unwrap().is_none());
}

#[tokio::test]
async fn a_duplicate_returns_the_first_sequence_number() {
    let Some((_server, store)) = start("a_duplicate_returns_the_first_sequence_number").await
    else {
        return;
    };
    let s: &dyn Store = &*store;
    let entries = vec![
        entry("ops", "a", Some("k1")),
        entry("ops", "b", None),
        entry("ops", "a again", Some("k1")),
    ];
    let slots = s.append(entries, None, 1_000, window(500)).await.unwrap();
    let (a, b) = (slots[0].seq(), slots[1].seq());
    assert!(a < b);
    assert_eq!(slots, [Slot::New(a), Slot::New(b), Slot::Duplicate(a)]);
    let again = vec![entry("ops", "a", Some("k1")), entry("dq", "a", Some("k1"))];
    let slots = s.append(again, None, 1_500, window(500)).await.unwrap();
    assert_eq!(slots[0], Slot::Duplicate(a), "within the window");
    assert!(
        matches!(slots[1], Slot::New(n) if n > b),
        "per robot: {slots:?}"
    );
    let late = vec![entry("ops", "a", Some("k1"))];
    let slots = s.append(late, None, 1_501, window(500)).await.unwrap();
    assert!(
        matches!(slots[0], Slot::New(n) if n > b),
        "past the window: {slots:?}"
    );
    assert_eq!(
        s.pending("ops").await.unwrap(),
        3,
        "the repeat was taken back"
    );
    let d = seal(s, "ops", 100).await.unwrap();
    assert_eq!(titles(s, &d).await, ["a", "b", "a"]);
}

#[tokio::test]
async fn an_idempotency_key_answers_only_the_same_body() {
    let Some((_server, store)) = start("an_idempotency_key_answers_only_the_same_body").await
    else {
        return;
    };
    let s: &dyn Store = &*store;
    let w = Duration::from_secs(10);
    assert!(
        s.claim_request("key", "body1", 0, w)
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        s.claim_request("key", "body1", 1, w).await,
        Err(Claim::InFlight)
    ));
    let request = RequestKey {
        key: "key".into(),
        body: "body1".into(),
    };
    let entries = vec![entry("ops", "a", None), entry("dq", "b", None)];
    let slots = s
        .append(entries, Some(request), 2, window(0))
        .await
        .unwrap();
    let ids = s.claim_request("key", "body1", 3, w).await.unwrap();
    let expected = vec![
        alert_id("ops", slots[0].seq()),
        alert_id("dq", slots[1].seq()),
    ];
    assert_eq!(ids, Some(expected));
    assert!(matches!(
        s.claim_request("key", "body2", 4, w).await,
        Err(Claim::Reused)
    ));
    assert!(
        s.claim_request("key", "body2", 20_000, w)
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.claim_request("other", "b", 0, w).await.unwrap().is_none());
    s.release_request("other").await.unwrap();
    assert!(s.claim_request("other", "b", 1, w).await.unwrap().is_none());
    // An abandoned claim is taken over.
    assert!(s.claim_request("gone", "b", 0, w).await.unwrap().is_none());
    assert!(
        s.claim_request("gone", "b", 60_000, w)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn prune_keeps_unsent_and_recent_digests() {
    let Some((_server, store)) = start("prune_keeps_unsent_and_recent_digests").await else {
        return;
    };
    let s: &dyn Store = &*store;
    let mut digests = Vec::new();
    for (i, state) in [DigestState::Pending, DigestState::Dead, DigestState::Sent]
        .into_iter()
        .enumerate()
    {
        add(s, "ops", &[&format!("a{i}")]).await;
        let d = seal(s, "ops", 100).await.unwrap();
        mark(s, &d, state, 9_500).await;
        digests.push(d);
    }
    let keyed = vec![entry("ops", "k", Some("key"))];
    let first = s.append(keyed, None, 9_000, window(1_000)).await.unwrap();
    let retention = window(1_000);
    assert_eq!(s.prune(10_000, retention.clone()).await.unwrap(), 0);
    assert_eq!(s.prune(11_000, retention).await.unwrap(), 1);
    assert!(s.digest(digests[0].id).await.unwrap().is_some());
    assert!(s.digest(digests[1].id).await.unwrap().is_some());
    assert!(s.digest(digests[2].id).await.unwrap().is_none());
    assert_eq!(titles(s, &digests[0]).await, ["a0"], "kept with its digest");
    assert_eq!(titles(s, &digests[1]).await, ["a1"], "kept with its digest");
    assert!(titles(s, &digests[2]).await.is_empty());
    assert_eq!(s.pending("ops").await.unwrap(), 1, "a pending alert stays");
    let keyed = vec![entry("ops", "k", Some("key"))];
    let slots = s.append(keyed, None, 11_000, window(1_000)).await.unwrap();
    assert!(
        matches!(slots[0], Slot::New(n) if n > first[0].seq()),
        "{slots:?}"
    );
    assert_eq!(s.pending("ops").await.unwrap(), 2);
}

#[tokio::test]
async fn a_pruned_prefix_is_purged_and_pending_stays_right() {
    let Some((_server, store)) = start("a_pruned_prefix_is_purged_and_pending_stays_right").await
    else {
        return;
    };
    let s: &dyn Store = &*store;
    add(s, "ops", &["a", "b"]).await;
    let d = seal(s, "ops", 100).await.unwrap();
    add(s, "dq", &["x"]).await;
    add(s, "ops", &["c"]).await;
    mark(s, &d, DigestState::Sent, 0).await;
    assert_eq!(s.prune(10_000, window(1_000)).await.unwrap(), 1);
    assert!(titles(s, &d).await.is_empty());
    assert_eq!(s.pending("ops").await.unwrap(), 1);
    assert_eq!(
        s.pending("dq").await.unwrap(),
        1,
        "another lane's alerts stay"
    );
    let e = seal(s, "ops", 100).await.unwrap();
    assert_eq!(titles(s, &e).await, ["c"]);
    assert_eq!(s.pending("ops").await.unwrap(), 0);
}

#[tokio::test]
async fn send_logs_are_kept_per_robot() {
    let Some((_server, store)) = start("send_logs_are_kept_per_robot").await else {
        return;
    };
    let s: &dyn Store = &*store;
    assert_eq!(
        s.send_log("ops").await.unwrap(),
        StoredLog::Wall(Vec::new())
    );
    s.set_send_log("ops", &StoredLog::Wall(vec![1, 2, 3]))
        .await
        .unwrap();
    // Handed back on this node's boot clock (where it has one), with the same wall times.
    let back = s.send_log("ops").await.unwrap();
    assert_eq!(back.wall_ms(), [1, 2, 3]);
    let now = store.clock.reading();
    assert_eq!(crate::limit::resume(&back, now, 0), [1, 2, 3]);
    assert_eq!(s.send_log("dq").await.unwrap(), StoredLog::Wall(Vec::new()));
    assert_eq!(s.health().error(), None);
    s.close().await.unwrap();
}

#[tokio::test]
async fn a_seal_covers_what_the_renderer_says() {
    let Some((_server, store)) = start("a_seal_covers_what_the_renderer_says").await else {
        return;
    };
    let s: &dyn Store = &*store;
    let seqs = add(s, "ops", &["a", "b", "c", "d", "e", "f"]).await;
    let first = s.seal("ops", 100, 100, covering(2)).await.unwrap().unwrap();
    assert_eq!(first.end_seq, seqs[1] + 1);
    assert_eq!(titles(s, &first).await, ["a", "b"]);
    assert_eq!(first.text, "2 alerts");
    assert_eq!(s.pending("ops").await.unwrap(), 4);
    let alone = s.seal("ops", 100, 100, covering(1)).await.unwrap().unwrap();
    assert_eq!(
        (alone.id, alone.first_seq, alone.end_seq),
        (first.id + 1, first.end_seq, seqs[2] + 1)
    );
    assert!(alone.passthrough);
    assert_eq!(titles(s, &alone).await, ["c"]);
    let none = s.seal("ops", 100, 100, covering(0)).await.unwrap().unwrap();
    assert_eq!((none.first_seq, none.end_seq), (seqs[2] + 1, seqs[3] + 1));
    let capped = s.seal("ops", 2, 100, covering(100)).await.unwrap().unwrap();
    assert_eq!(capped.end_seq, seqs[5] + 1);
    assert_eq!(titles(s, &capped).await, ["e", "f"]);
    assert_eq!(s.pending("ops").await.unwrap(), 0);
    assert!(seal(s, "ops", 100).await.is_none());
    assert_eq!(s.digest(alone.id).await.unwrap().as_ref(), Some(&alone));
    let ranges: Vec<(u64, u64)> = s
        .digests()
        .await
        .unwrap()
        .iter()
        .map(|d| (d.first_seq, d.end_seq))
        .collect();
    assert_eq!(ranges.len(), 4);
    assert!(
        ranges.windows(2).all(|w| w[0].1 == w[1].0),
        "no gap between digests: {ranges:?}"
    );
}

#[tokio::test]
async fn only_the_node_holding_a_lane_seals_and_reserves_sends() {
    let Some(server) =
        TestServer::start("only_the_node_holding_a_lane_seals_and_reserves_sends").await
    else {
        return;
    };
    let a = testserver::store(&server, "a", &["ops"]).await;
    let b = testserver::store(&server, "b", &[]).await;
    // Any node takes alerts.
    add(&*b, "ops", &["x", "y"]).await;
    assert_eq!(b.pending("ops").await.unwrap(), 2);
    let refused = b.seal("ops", 100, 100, crate::store::tests::render()).await;
    match refused {
        Err(e @ StoreError::NotOwner(_)) => assert!(e.to_string().contains("not by b"), "{e}"),
        other => panic!("node b sealed a lane node a holds: {other:?}"),
    }
    assert!(matches!(
        b.set_send_log("ops", &StoredLog::Wall(vec![5])).await,
        Err(StoreError::NotOwner(_))
    ));
    let d = seal(&*a, "ops", 1).await.unwrap();
    assert_eq!(titles(&*a, &d).await, ["x"]);
    // b sees a's seal through the record.
    assert_eq!(b.pending("ops").await.unwrap(), 1);
    assert_eq!(b.digest(d.id).await.unwrap(), Some(d.clone()));

    // b takes the lane over from what it read: a's next write is refused, and a lets it go.
    testserver::take(&b, &["ops"]).await;
    match a.set_send_log("ops", &StoredLog::Wall(vec![7])).await {
        Err(StoreError::NotOwner(e)) => assert!(e.contains("another node took it over"), "{e}"),
        other => panic!("the old owner still wrote: {other:?}"),
    }
    assert!(a.records.held("ops").await.is_none());
    assert!(matches!(
        a.seal("ops", 100, 100, crate::store::tests::render()).await,
        Err(StoreError::NotOwner(_))
    ));
    // The new owner carries on from the cursor, with the pending digest in its outbox.
    let held = b.records.held("ops").await.unwrap();
    assert_eq!(held.control.outbox, std::slice::from_ref(&d));
    let e = seal(&*b, "ops", 100).await.unwrap();
    assert_eq!((e.first_seq, e.id), (d.end_seq, d.id + 1));
    assert_eq!(titles(&*b, &e).await, ["y"]);
    b.set_send_log("ops", &StoredLog::Wall(vec![9]))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_send_is_refused_when_the_lease_cannot_cover_the_request() {
    let Some((_server, store)) =
        start("a_send_is_refused_when_the_lease_cannot_cover_the_request").await
    else {
        return;
    };
    let s: &dyn Store = &*store;
    // The test lease is 30 s with 1 s of skew: a 10 s request fits, a 29 s one does not.
    s.set_send_log("ops", &StoredLog::Wall(vec![1]))
        .await
        .unwrap();
    store.set_lanes(super::Lanes {
        request_timeout: [("ops".to_string(), Duration::from_secs(29))].into(),
        ..Default::default()
    });
    match s.set_send_log("ops", &StoredLog::Wall(vec![1, 2])).await {
        Err(e @ StoreError::NotOwner(_)) => {
            assert!(e.to_string().contains("would not outlast"), "{e}")
        }
        other => panic!("a send the lease cannot cover was allowed: {other:?}"),
    }
    // The reservation stands (it was written): the slot counts, the POST does not happen.
    assert_eq!(s.send_log("ops").await.unwrap().wall_ms(), [1, 2]);
}

#[tokio::test]
async fn a_retried_append_with_the_same_idempotency_key_queues_once() {
    let Some((_server, store)) =
        start("a_retried_append_with_the_same_idempotency_key_queues_once").await
    else {
        return;
    };
    let s: &dyn Store = &*store;
    let w = Duration::from_secs(10);
    let request = RequestKey {
        key: "retry-me".into(),
        body: "fingerprint".into(),
    };
    let entries = || -> Vec<Entry> {
        vec![
            entry("ops", "a", Some("k")),
            entry("ops", "b", None),
            entry("dq", "c", None),
        ]
    };
    assert!(
        s.claim_request("retry-me", "fingerprint", 0, w)
            .await
            .unwrap()
            .is_none()
    );
    let first = s
        .append(entries(), Some(request.clone()), 0, window(1_000))
        .await
        .unwrap();
    // The answer was lost (the client saw a 503) and the claim given back: the retry claims
    // again and appends the same request.
    s.release_request("retry-me").await.unwrap();
    assert!(
        s.claim_request("retry-me", "fingerprint", 5, w)
            .await
            .unwrap()
            .is_none()
    );
    let again = s
        .append(entries(), Some(request), 5, window(1_000))
        .await
        .unwrap();
    assert_eq!(again, first, "the same alerts, under the same sequences");
    assert_eq!(s.pending("ops").await.unwrap(), 2);
    assert_eq!(s.pending("dq").await.unwrap(), 1);
    let ids = s
        .claim_request("retry-me", "fingerprint", 6, w)
        .await
        .unwrap();
    assert_eq!(ids.unwrap()[0], alert_id("ops", first[0].seq()));
}

fn batch(robot: &str, name: &str, n: usize) -> Vec<Entry> {
    (0..n)
        .map(|i| Entry {
            robot: robot.into(),
            alert: alert(&format!("{name}-{i}"), 10),
            dedup_key: None,
        })
        .collect()
}

/// Also a regression test: acknowledgements held unawaited while sending more stalled every
/// request once the client's 5 000 in-flight permits were taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_alerts_append_and_seal_quickly() {
    let Some((_server, store)) = start("ten_thousand_alerts_append_and_seal_quickly").await else {
        return;
    };
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..50 {
        let store = store.clone();
        clients.spawn(async move {
            for r in 0..2 {
                let entries = batch("ops", &format!("c{c}r{r}"), 100);
                store.append(entries, None, 0, window(0)).await.unwrap();
            }
        });
    }
    clients.join_all().await;
    let appended = started.elapsed();
    let s: &dyn Store = &*store;
    let started = Instant::now();
    let d = seal(s, "ops", 10_000).await.unwrap();
    let sealed = started.elapsed();
    let started = Instant::now();
    let one = tokio::time::timeout(
        Duration::from_secs(30),
        s.append(batch("dq", "big", 6_000), None, 0, window(0)),
    )
    .await
    .expect("a request of 6 000 alerts does not stall")
    .unwrap();
    let big = started.elapsed();
    eprintln!(
        "10 000 alerts from 50 clients, 100 per request: appended in {appended:?} ({:.0}/s); \
         sealed in {sealed:?}; one request of 6 000 in {big:?}",
        10_000.0 / appended.as_secs_f64()
    );
    assert_eq!(one.len(), 6_000);
    assert_eq!(s.digest_alerts(&d).await.unwrap().len(), 10_000);
    assert_eq!(s.pending("ops").await.unwrap(), 0);
    assert_eq!(s.pending("dq").await.unwrap(), 6_000);
    assert!(sealed < Duration::from_secs(5), "sealing took {sealed:?}");
}

/// A crash between `update_digest`'s two writes leaves the digest both in `sluice_digest` and
/// in the outbox: every read takes the stored one, and prune drops the stale copy.
#[tokio::test]
async fn a_stored_digest_wins_over_a_stale_outbox_copy() {
    let Some((_server, store)) = start("a_stored_digest_wins_over_a_stale_outbox_copy").await
    else {
        return;
    };
    let s: &dyn Store = &*store;
    add(s, "ops", &["a"]).await;
    let d = seal(s, "ops", 100).await.unwrap();
    let mut sent = d.clone();
    sent.state = DigestState::Sent;
    sent.sent_ms = Some(50);
    // The first write of the update only, as if the node died before the second.
    let bytes = serde_json::to_vec(&sent).unwrap();
    let key = super::digests::digest_key(d.id);
    store.nats.digests.put(key, bytes.into()).await.unwrap();
    let outbox = store.records.held("ops").await.unwrap().control.outbox;
    assert_eq!(outbox, std::slice::from_ref(&d));
    assert_eq!(s.digest(d.id).await.unwrap(), Some(sent.clone()));
    assert_eq!(s.digests().await.unwrap(), [sent.clone()]);
    assert_eq!(
        s.prune(60, window(1_000)).await.unwrap(),
        0,
        "not yet past retention"
    );
    assert!(
        store
            .records
            .held("ops")
            .await
            .unwrap()
            .control
            .outbox
            .is_empty()
    );
    assert_eq!(s.digests().await.unwrap(), [sent]);
    assert_eq!(s.prune(2_000, window(1_000)).await.unwrap(), 1);
    assert!(s.digests().await.unwrap().is_empty());
    assert!(titles(s, &d).await.is_empty());
    assert_eq!(s.pending("ops").await.unwrap(), 0);
}

/// `kept` too high (a crash between a purge and its write, or a keyed repeat deleted after a
/// seal covered it) hides pending alerts; the next prune counts it again from the stream.
#[tokio::test]
async fn prune_recounts_what_the_cursor_keeps() {
    let Some((_server, store)) = start("prune_recounts_what_the_cursor_keeps").await else {
        return;
    };
    let s: &dyn Store = &*store;
    add(s, "ops", &["a", "b"]).await;
    seal(s, "ops", 1).await.unwrap();
    add(s, "ops", &["c"]).await;
    assert_eq!(s.pending("ops").await.unwrap(), 2);
    store.records.write("ops", |c| c.kept += 5).await.unwrap();
    assert_eq!(s.pending("ops").await.unwrap(), 0, "hidden");
    assert_eq!(s.prune(0, window(1_000)).await.unwrap(), 0);
    assert_eq!(s.pending("ops").await.unwrap(), 2);
    assert_eq!(store.records.held("ops").await.unwrap().control.kept, 1);
}

#[tokio::test]
async fn a_changed_lease_reaches_the_heartbeat_bucket() {
    let Some(server) = TestServer::start("a_changed_lease_reaches_the_heartbeat_bucket").await
    else {
        return;
    };
    let first = super::connect(&server.cluster("n1")).await.unwrap();
    let max_age = |n: &super::Nats| {
        let nodes = n.nodes.clone();
        async move { nodes.status().await.unwrap().max_age() }
    };
    assert_eq!(max_age(&first).await, Duration::from_secs(30));
    let mut shorter = server.cluster("n2");
    shorter.lease = Duration::from_secs(4);
    let second = super::connect(&shorter).await.unwrap();
    assert_eq!(max_age(&second).await, Duration::from_secs(4));
}
