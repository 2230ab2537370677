//! Conformance: one set of tests, written against `Arc<dyn Store>`, run on every backend.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::alert::{Severity, Status, default_fingerprint};

pub(super) fn alert(title: &str, received_ms: i64) -> Alert {
    let labels = Default::default();
    Alert {
        fingerprint: default_fingerprint(title, Severity::Error, &labels),
        title: title.to_string(),
        text: None,
        severity: Severity::Error,
        status: Status::Firing,
        labels,
        source: None,
        time_ms: None,
        ends_ms: None,
        received_ms,
        extra: None,
    }
}

pub(super) fn entry(robot: &str, title: &str, key: Option<&str>) -> Entry {
    Entry {
        robot: robot.into(),
        alert: alert(title, 10),
        dedup_key: key.map(str::to_string),
    }
}

pub(super) fn window(ms: u64) -> Retention {
    Arc::new(move |_| Duration::from_millis(ms))
}

/// Appends one unkeyed alert per title for `robot`; their sequence numbers.
pub(super) async fn add(store: &dyn Store, robot: &str, titles: &[&str]) -> Vec<u64> {
    let entries = titles.iter().map(|t| entry(robot, t, None)).collect();
    let slots = store.append(entries, None, 0, window(0)).await.unwrap();
    slots.into_iter().map(Slot::seq).collect()
}

pub(super) fn render() -> Render<'static> {
    Box::new(|_, alerts: &[Alert]| {
        let r = Rendered {
            title: "t".into(),
            text: format!("{} alerts", alerts.len()),
            total: alerts.len(),
            listed: alerts.len(),
            summarized: 0,
            counts: Counts::of(alerts),
            level: 1,
        };
        Sealed::from(r)
    })
}

pub(super) async fn seal(store: &dyn Store, robot: &str, max: u64) -> Option<DigestRecord> {
    store.seal(robot, max, 100, render()).await.unwrap()
}

pub(super) async fn titles(store: &dyn Store, d: &DigestRecord) -> Vec<String> {
    let alerts = store.digest_alerts(d).await.unwrap();
    alerts.into_iter().map(|(_, a)| a.title).collect()
}

/// Marks a digest `state`, done at `ms`.
pub(super) async fn mark(store: &dyn Store, d: &DigestRecord, state: DigestState, ms: i64) {
    let mut d = d.clone();
    d.state = state;
    d.sent_ms = (state == DigestState::Sent).then_some(ms);
    store.update_digest(&d).await.unwrap();
}

async fn sequences_digests_and_ids(store: Arc<dyn Store>) {
    let s = &*store;
    assert_eq!(add(s, "ops", &["a", "b", "c"]).await, [0, 1, 2]);
    assert_eq!(
        add(s, "dq", &["x"]).await,
        [0],
        "each robot has its own sequence"
    );
    assert_eq!(s.pending("ops").await.unwrap(), 3);
    assert_eq!(s.oldest_pending_ms("ops").await.unwrap(), Some(10));
    assert_eq!(s.robots().await.unwrap(), ["dq", "ops"]);

    let d = seal(s, "ops", 2).await.unwrap();
    assert_eq!(
        (d.first_seq, d.end_seq, d.state),
        (0, 2, DigestState::Pending)
    );
    assert_eq!(titles(s, &d).await, ["a", "b"]);
    assert_eq!(s.pending("ops").await.unwrap(), 1);
    let e = seal(s, "ops", 100).await.unwrap();
    assert_eq!((e.first_seq, e.end_seq), (2, 3));
    assert_eq!(e.id, d.id + 1, "digest ids are dense");
    assert!(seal(s, "ops", 100).await.is_none());
    assert_eq!(s.oldest_pending_ms("ops").await.unwrap(), None);
    assert_eq!(s.digest(d.id).await.unwrap(), Some(d.clone()));
    let ids: Vec<u64> = s.digests().await.unwrap().iter().map(|d| d.id).collect();
    assert_eq!(ids, [d.id, e.id]);

    mark(s, &d, DigestState::Dead, 0).await;
    assert_eq!(
        s.digest(d.id).await.unwrap().unwrap().state,
        DigestState::Dead
    );
    assert!(s.digest(999).await.unwrap().is_none());
}

async fn a_duplicate_returns_the_first_sequence_number(store: Arc<dyn Store>) {
    let s = &*store;
    let entries = vec![
        entry("ops", "a", Some("k1")),
        entry("ops", "b", None),
        entry("ops", "a again", Some("k1")),
    ];
    let slots = s.append(entries, None, 1_000, window(500)).await.unwrap();
    assert_eq!(slots, [Slot::New(0), Slot::New(1), Slot::Duplicate(0)]);
    let again = vec![entry("ops", "a", Some("k1")), entry("dq", "a", Some("k1"))];
    let slots = s.append(again, None, 1_500, window(500)).await.unwrap();
    assert_eq!(
        slots,
        [Slot::Duplicate(0), Slot::New(0)],
        "within the window, per robot"
    );
    let late = vec![entry("ops", "a", Some("k1"))];
    let slots = s.append(late, None, 1_501, window(500)).await.unwrap();
    assert_eq!(slots, [Slot::New(2)], "past the window it is queued again");
    assert_eq!(s.pending("ops").await.unwrap(), 3);
}

async fn an_idempotency_key_answers_only_the_same_body(store: Arc<dyn Store>) {
    let s = &*store;
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
    s.append(entries, Some(request), 2, window(0))
        .await
        .unwrap();
    let ids = s.claim_request("key", "body1", 3, w).await.unwrap();
    assert_eq!(ids, Some(vec!["ops:0".to_string(), "dq:0".to_string()]));
    match s.claim_request("key", "body2", 4, w).await {
        Err(e @ Claim::Reused) => assert_eq!(
            e.to_string(),
            "Idempotency-Key header: this key was already used for another request (a different body) within the retention window; use a new key for a new request"
        ),
        other => panic!("not refused: {other:?}"),
    }
    // Past the window the key is free again, for any body.
    assert!(
        s.claim_request("key", "body2", 20_000, w)
            .await
            .unwrap()
            .is_none()
    );
    // A released claim can be taken at once.
    assert!(s.claim_request("other", "b", 0, w).await.unwrap().is_none());
    s.release_request("other").await.unwrap();
    assert!(s.claim_request("other", "b", 1, w).await.unwrap().is_none());
}

async fn replay_and_redeliver_check_the_state(store: Arc<dyn Store>) {
    let s = &*store;
    add(s, "ops", &["a", "b"]).await;
    let d = seal(s, "ops", 100).await.unwrap();
    match s.replay(d.id, "ops", 5).await {
        Err(e @ ReplayError::NotDead(..)) => assert_eq!(
            e.to_string(),
            format!(
                "digest #{} is pending, not dead; only dead digests can be replayed",
                d.id
            )
        ),
        other => panic!("replayed a pending digest: {other:?}"),
    }
    match s.redeliver(d.id, "ops").await {
        Err(e @ ReplayError::NotSent(..)) => assert_eq!(
            e.to_string(),
            format!(
                "digest #{} is pending, not sent; only delivered digests can be re-delivered",
                d.id
            )
        ),
        other => panic!("re-delivered a pending digest: {other:?}"),
    }
    match s.replay(999, "ops", 5).await {
        Err(e @ ReplayError::NotFound(_)) => assert_eq!(e.to_string(), "no digest #999"),
        other => panic!("{other:?}"),
    }
    mark(s, &d, DigestState::Dead, 0).await;
    let r = s.replay(d.id, "dq", 5).await.unwrap();
    assert_eq!(r.state, DigestState::Replayed);
    assert_eq!(
        (r.replayed_to.as_deref(), r.replayed_ms),
        (Some("dq"), Some(5))
    );
    assert_eq!(s.digest(d.id).await.unwrap(), Some(r));
    assert_eq!(s.pending("dq").await.unwrap(), 2);
    assert!(matches!(
        s.replay(d.id, "dq", 6).await,
        Err(ReplayError::NotDead(..))
    ));

    let again = seal(s, "dq", 100).await.unwrap();
    assert_eq!(titles(s, &again).await, ["a", "b"]);
    mark(s, &again, DigestState::Sent, 7).await;
    let same = s.redeliver(again.id, "ops").await.unwrap();
    assert_eq!(same.state, DigestState::Sent, "the digest stays as it was");
    assert_eq!(s.pending("ops").await.unwrap(), 2);
}

async fn prune_keeps_unsent_and_recent_digests(store: Arc<dyn Store>) {
    let s = &*store;
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
    s.append(keyed, None, 9_000, window(1_000)).await.unwrap();
    let retention = window(1_000);
    assert_eq!(
        s.prune(10_000, retention.clone()).await.unwrap(),
        0,
        "sent 0.5 s ago"
    );
    assert_eq!(s.prune(11_000, retention).await.unwrap(), 1);
    assert!(s.digest(digests[0].id).await.unwrap().is_some());
    assert!(s.digest(digests[1].id).await.unwrap().is_some());
    assert!(s.digest(digests[2].id).await.unwrap().is_none());
    assert_eq!(titles(s, &digests[0]).await, ["a0"], "kept with its digest");
    assert!(titles(s, &digests[2]).await.is_empty());
    assert_eq!(s.pending("ops").await.unwrap(), 1, "a pending alert stays");
    // The dedup key's window (the retention) has passed: the same key is queued anew.
    let keyed = vec![entry("ops", "k", Some("key"))];
    let slots = s.append(keyed, None, 11_000, window(1_000)).await.unwrap();
    assert_eq!(slots, [Slot::New(4)]);
}

async fn a_removed_robots_queue_moves_whole(store: Arc<dyn Store>) {
    let s = &*store;
    add(s, "old", &["o0", "o1"]).await;
    let sealed = seal(s, "old", 100).await.unwrap();
    add(s, "old", &["o2", "o3", "o4"]).await;
    add(s, "new", &["n0"]).await;
    let moved = s.move_queue("old", "new", 99).await.unwrap();
    assert_eq!(
        moved,
        Moved {
            alerts: 5,
            digests: 1
        }
    );
    assert_eq!(s.pending("old").await.unwrap(), 0);
    assert_eq!(s.pending("new").await.unwrap(), 6);
    let d = s.digest(sealed.id).await.unwrap().unwrap();
    assert_eq!(d.state, DigestState::Replayed);
    assert_eq!(d.replayed_to.as_deref(), Some("new"));
    let all = seal(s, "new", 100).await.unwrap();
    assert_eq!(titles(s, &all).await, ["n0", "o0", "o1", "o2", "o3", "o4"]);
}

async fn send_logs_are_kept_per_robot(store: Arc<dyn Store>) {
    let s = &*store;
    assert_eq!(
        s.send_log("ops").await.unwrap(),
        StoredLog::Wall(Vec::new())
    );
    s.set_send_log("ops", &StoredLog::Wall(vec![1, 2, 3]))
        .await
        .unwrap();
    assert_eq!(
        s.send_log("ops").await.unwrap(),
        StoredLog::Wall(vec![1, 2, 3])
    );
    assert_eq!(s.send_log("dq").await.unwrap(), StoredLog::Wall(Vec::new()));
    assert_eq!(s.health().error(), None);
    s.close().await.unwrap();
}

async fn quota_counts_are_kept_per_robot(store: Arc<dyn Store>) {
    let s = &*store;
    assert_eq!(s.quota_used("ops").await.unwrap(), None);
    let used = crate::store::QuotaUsed {
        period_start_ms: 1_000,
        used: 4,
        warned: true,
    };
    s.set_quota_used("ops", used).await.unwrap();
    assert_eq!(s.quota_used("ops").await.unwrap(), Some(used));
    // A count written before the 80 % line was kept reads as not warned yet.
    let old: crate::store::QuotaUsed =
        serde_json::from_str(r#"{"period_start_ms":1000,"used":4}"#).unwrap();
    assert!(!old.warned);
    assert_eq!(s.quota_used("dq").await.unwrap(), None);
    s.close().await.unwrap();
}

/// A renderer that covers only the first `n` of the alerts it is offered, marking a digest of
/// one a passthrough message.
pub(super) fn covering(n: u64) -> Render<'static> {
    Box::new(move |id, alerts: &[Alert]| {
        let covered = &alerts[..(n as usize).clamp(1, alerts.len())];
        let mut sealed = (render())(id, covered);
        sealed.covers = Some(n);
        sealed.passthrough = n == 1;
        sealed
    })
}

async fn a_seal_covers_what_the_renderer_says(store: Arc<dyn Store>) {
    let s = &*store;
    add(s, "ops", &["a", "b", "c", "d", "e", "f"]).await;
    let first = s.seal("ops", 100, 100, covering(2)).await.unwrap().unwrap();
    assert_eq!((first.first_seq, first.end_seq), (0, 2));
    assert_eq!(titles(s, &first).await, ["a", "b"]);
    assert_eq!(first.text, "2 alerts");
    assert!(!first.passthrough);
    assert_eq!(s.pending("ops").await.unwrap(), 4);
    // One alone, then what follows it: dense ids, no gap in the sequence.
    let alone = s.seal("ops", 100, 100, covering(1)).await.unwrap().unwrap();
    assert_eq!(
        (alone.id, alone.first_seq, alone.end_seq),
        (first.id + 1, 2, 3)
    );
    assert!(alone.passthrough);
    assert_eq!(titles(s, &alone).await, ["c"]);
    // A renderer cannot cover nothing, nor more than it was offered.
    let none = s.seal("ops", 100, 100, covering(0)).await.unwrap().unwrap();
    assert_eq!((none.first_seq, none.end_seq), (3, 4));
    let capped = s.seal("ops", 2, 100, covering(100)).await.unwrap().unwrap();
    assert_eq!((capped.first_seq, capped.end_seq), (4, 6));
    assert_eq!(s.pending("ops").await.unwrap(), 0);
    assert!(seal(s, "ops", 100).await.is_none());
    // As recorded, and as the digest list has them.
    assert_eq!(s.digest(alone.id).await.unwrap().as_ref(), Some(&alone));
    let ranges: Vec<(u64, u64)> = s
        .digests()
        .await
        .unwrap()
        .iter()
        .map(|d| (d.first_seq, d.end_seq))
        .collect();
    assert_eq!(ranges, [(0, 2), (2, 3), (3, 4), (4, 6)]);
    s.close().await.unwrap();
}

/// Each test, once per backend: `store::tests::on_sled::…`, `store::tests::on_memory::…` and
/// `store::tests::on_jetstream::…` (a fresh single nats-server per test; skipped without one).
/// The tests after `dense:` assert dense per-robot sequences, which the cluster backend does
/// not have (its sequences are stream sequences): they run on sled and memory only, and
/// `jetstream/tests.rs` holds their variants with increasing sequences.
macro_rules! conformance {
    (all: [$($name:ident),* $(,)?], dense: [$($dense:ident),* $(,)?] $(,)?) => {
        mod on_sled {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = crate::store::open(dir.path(), 8 << 20).await.unwrap();
                    super::$name(store).await;
                }
            )*
            $(
                #[tokio::test]
                async fn $dense() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = crate::store::open(dir.path(), 8 << 20).await.unwrap();
                    super::$dense(store).await;
                }
            )*
        }
        mod on_memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(std::sync::Arc::new(crate::store::MemoryStore::new())).await;
                }
            )*
            $(
                #[tokio::test]
                async fn $dense() {
                    super::$dense(std::sync::Arc::new(crate::store::MemoryStore::new())).await;
                }
            )*
        }
        mod on_jetstream {
            $(
                #[tokio::test]
                async fn $name() {
                    use crate::store::jetstream::testserver;
                    let Some(server) = testserver::TestServer::start(stringify!($name)).await
                    else {
                        return;
                    };
                    let store = testserver::store(&server, "n1", testserver::LANES).await;
                    super::$name(store).await;
                }
            )*
        }
    };
}

conformance!(
    all: [
        replay_and_redeliver_check_the_state,
        a_removed_robots_queue_moves_whole,
        quota_counts_are_kept_per_robot,
    ],
    dense: [
        sequences_digests_and_ids,
        a_duplicate_returns_the_first_sequence_number,
        an_idempotency_key_answers_only_the_same_body,
        prune_keeps_unsent_and_recent_digests,
        send_logs_are_kept_per_robot,
        a_seal_covers_what_the_renderer_says,
    ],
);

#[test]
fn the_attempt_log_keeps_the_last_tries_and_cuts_long_answers() {
    let sealed = Sealed {
        message: Prepared::default(),
        counts: Counts::default(),
        listed: 0,
        covers: None,
        passthrough: false,
    };
    let mut d = DigestRecord::sealed(1, "ops", (0, 1), sealed, 1_000, 1_000);
    for i in 0..TRIES_KEPT as i64 + 5 {
        d.note_try(Attempt {
            at_ms: i,
            outcome: "transient".into(),
            said: Some("系".repeat(200)),
            ..Attempt::default()
        });
    }
    assert_eq!(d.tries.len(), TRIES_KEPT);
    assert_eq!(d.tries[0].at_ms, 5, "the oldest went first");
    assert_eq!(d.tries[TRIES_KEPT - 1].at_ms, TRIES_KEPT as i64 + 4);
    let said = d.tries[0].said.as_deref().unwrap();
    assert!(said.len() <= SAID_MAX + '…'.len_utf8(), "{}", said.len());
    assert!(said.ends_with('…') && said.starts_with('系'));
    // On disk and back, and a record from before the log reads with an empty one.
    let back: DigestRecord = serde_json::from_slice(&serde_json::to_vec(&d).unwrap()).unwrap();
    assert_eq!(back, d);
    let mut old = serde_json::to_value(&d).unwrap();
    old.as_object_mut().unwrap().remove("tries");
    let old: DigestRecord = serde_json::from_value(old).unwrap();
    assert!(old.tries.is_empty());
}
