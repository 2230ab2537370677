//! The store on a real sled database in a temp directory.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sluice::alert::{Alert, Severity, Status, default_fingerprint};
use sluice::digest::{Counts, Rendered};
use sluice::store::{DigestState, Sealed, SledStore as Store, StoreError};

fn alert(title: &str, received_ms: i64) -> Alert {
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

/// The titles of the alerts a digest covers, read back from the store.
fn titles(store: &Store, d: &sluice::store::DigestRecord) -> Vec<String> {
    store
        .digest_alerts(d)
        .unwrap()
        .into_iter()
        .map(|(_, a)| a.title)
        .collect()
}

fn rendered(alerts: &[Alert]) -> Sealed {
    let r = Rendered {
        title: "t".into(),
        text: format!("{} alerts", alerts.len()),
        total: alerts.len(),
        listed: alerts.len(),
        summarized: 0,
        counts: Counts::of(alerts),
        level: 1,
    };
    r.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_share_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), 8 << 20).unwrap());
    let mut tasks = Vec::new();
    for i in 0..64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.append("ops", &[alert(&format!("a{i}"), 1)]).unwrap();
            store.commit().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = store.commit_stats();
    let (flushes, requests) = (
        stats.flushes.load(Ordering::Relaxed),
        stats.requests.load(Ordering::Relaxed),
    );
    assert_eq!(requests, 64);
    assert!(flushes < 32, "{flushes} flushes for 64 concurrent commits");
    assert_eq!(store.pending("ops").unwrap(), 64);
}

#[test]
fn sealing_covers_a_contiguous_range_and_moves_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 8 << 20).unwrap();
    let seqs = store
        .append("ops", &[alert("a", 10), alert("b", 11), alert("c", 12)])
        .unwrap();
    assert_eq!(seqs, vec![0, 1, 2]);
    assert_eq!(store.oldest_pending_ms("ops").unwrap(), Some(10));

    // At most two per digest.
    let d = store
        .seal("ops", 2, 100, |_, a| rendered(a))
        .unwrap()
        .unwrap();
    assert_eq!((d.first_seq, d.end_seq, d.count()), (0, 2, 2));
    assert_eq!(d.state, DigestState::Pending);
    assert_eq!(d.oldest_ms, 10);
    assert_eq!(store.pending("ops").unwrap(), 1);
    assert_eq!(store.oldest_pending_ms("ops").unwrap(), Some(12));
    let titles = titles(&store, &d);
    assert_eq!(titles, ["a", "b"]);

    let e = store
        .seal("ops", 100, 101, |_, a| rendered(a))
        .unwrap()
        .unwrap();
    assert_eq!((e.first_seq, e.end_seq), (2, 3));
    assert!(e.id > d.id);
    assert!(
        store
            .seal("ops", 100, 102, |_, a| rendered(a))
            .unwrap()
            .is_none()
    );
    // Other robots have their own sequence.
    assert_eq!(store.append("dq", &[alert("x", 1)]).unwrap(), vec![0]);
}

#[test]
fn a_reopened_store_resumes_sequences_above_pruned_alerts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), 8 << 20).unwrap();
        store
            .append("ops", &[alert("a", 1), alert("b", 2)])
            .unwrap();
        let mut d = store
            .seal("ops", 100, 3, |_, a| rendered(a))
            .unwrap()
            .unwrap();
        d.state = DigestState::Sent;
        d.sent_ms = Some(1_000);
        store.update_digest(&d).unwrap();
        // Retention 1 s, now 10 s: the digest and its alerts go.
        assert_eq!(store.prune(10_000, |_| Duration::from_secs(1)).unwrap(), 1);
        assert!(store.digest(d.id).unwrap().is_none());
        store.close().unwrap();
    }
    let store = Store::open(dir.path(), 8 << 20).unwrap();
    assert_eq!(store.pending("ops").unwrap(), 0);
    assert_eq!(
        store.append("ops", &[alert("c", 4)]).unwrap(),
        vec![2],
        "ids are never reused"
    );
}

#[test]
fn prune_keeps_pending_dead_and_recent_digests() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 8 << 20).unwrap();
    let mut ids = Vec::new();
    for (i, state) in [DigestState::Pending, DigestState::Dead, DigestState::Sent]
        .into_iter()
        .enumerate()
    {
        store.append("ops", &[alert(&format!("a{i}"), 1)]).unwrap();
        let mut d = store
            .seal("ops", 100, 2, |_, a| rendered(a))
            .unwrap()
            .unwrap();
        d.state = state;
        d.sent_ms = (state == DigestState::Sent).then_some(9_500);
        store.update_digest(&d).unwrap();
        ids.push(d.id);
    }
    assert_eq!(
        store.prune(10_000, |_| Duration::from_secs(1)).unwrap(),
        0,
        "sent 0.5 s ago is kept"
    );
    assert_eq!(store.prune(11_000, |_| Duration::from_secs(1)).unwrap(), 1);
    assert!(store.digest(ids[0]).unwrap().is_some());
    assert!(store.digest(ids[1]).unwrap().is_some());
    assert!(store.digest(ids[2]).unwrap().is_none());
}

#[test]
fn a_store_whose_records_vanished_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), 8 << 20).unwrap();
        store.append("ops", &[alert("a", 1)]).unwrap();
        store.close().unwrap();
    }
    // Replace the database with an empty one, keeping the marker: what sled does when it drops
    // a damaged log.
    let marker = std::fs::read(dir.path().join(sluice::store::MARKER)).unwrap();
    std::fs::remove_dir_all(dir.path()).unwrap();
    std::fs::create_dir(dir.path()).unwrap();
    std::fs::write(dir.path().join(sluice::store::MARKER), marker).unwrap();
    match Store::open(dir.path(), 8 << 20) {
        Err(StoreError::Corrupt { detail, .. }) => {
            assert!(detail.contains("sled dropped its log"), "{detail}")
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("opened a store that lost its records"),
    }
}

#[test]
fn send_log_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), 8 << 20).unwrap();
        store.set_send_log("ops", &[1, 2, 3], true).unwrap();
    }
    let store = Store::open(dir.path(), 8 << 20).unwrap();
    assert_eq!(store.send_log("ops").unwrap(), vec![1, 2, 3]);
    assert!(store.send_log("dq").unwrap().is_empty());
}

#[tokio::test]
async fn a_removed_robots_queue_moves_whole_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), 8 << 20).unwrap();
        let titles: Vec<Alert> = (0..25_000).map(|i| alert(&format!("old {i}"), i)).collect();
        store.append("old", &titles[..5]).unwrap();
        // Five sealed into a digest that was never delivered, the rest pending.
        let sealed = store
            .seal("old", 5, 10, |_, a| rendered(a))
            .unwrap()
            .unwrap();
        store.append("old", &titles[5..]).unwrap();
        store.append("new", &[alert("new 0", 1)]).unwrap();
        assert_eq!(store.robots().unwrap(), ["new", "old"]);
        assert_eq!(store.pending("old").unwrap(), 24_995);

        let moved = store.move_queue("old", "new", 99).unwrap();
        assert_eq!((moved.alerts, moved.digests), (25_000, 1));
        store.commit().await.unwrap();
        assert_eq!(store.pending("old").unwrap(), 0);
        assert_eq!(store.pending("new").unwrap(), 25_001);
        let d = store.digest(sealed.id).unwrap().unwrap();
        assert_eq!(d.state, DigestState::Replayed);
        assert_eq!(d.replayed_to.as_deref(), Some("new"));
        store.close().unwrap();
    }
    // After a restart: nothing pending for the old robot, all of it for the new one, in order.
    let store = Store::open(dir.path(), 8 << 20).unwrap();
    assert_eq!(store.pending("old").unwrap(), 0);
    assert_eq!(store.pending("new").unwrap(), 25_001);
    let d = store
        .seal("new", 100_000, 100, |_, a| rendered(a))
        .unwrap()
        .unwrap();
    let titles = titles(&store, &d);
    assert_eq!(titles[0], "new 0");
    assert_eq!(titles[1], "old 0");
    assert_eq!(titles[6], "old 5");
    assert_eq!(titles[25_000], "old 24999");
}

/// The child half of the test below: acknowledge alerts, then die without any chance to flush.
#[tokio::test]
#[ignore = "run by acknowledged_alerts_survive_an_abort_through_the_write_ahead_log"]
async fn child_acknowledges_then_aborts() {
    let Ok(dir) = std::env::var("SLUICE_TEST_ABORT_DIR") else {
        return;
    };
    let store = Store::open(std::path::Path::new(&dir), 8 << 20).unwrap();
    for batch in 0..10 {
        let alerts: Vec<Alert> = (0..100)
            .map(|i| alert(&format!("a{batch}-{i}"), 1))
            .collect();
        store.append("ops", &alerts).unwrap();
        store.commit().await.unwrap();
    }
    println!("ACKNOWLEDGED 1000");
    // Optionally give sled's background flush (every second) time to persist the chunks'
    // references, never their bytes: only the store's own flushes sync the blob files. A commit
    // every 100 ms keeps the idle checkpoint (after 2 s without one), which would sync them,
    // from running.
    if let Ok(ms) = std::env::var("SLUICE_TEST_ABORT_AFTER_MS") {
        let until = std::time::Instant::now() + Duration::from_millis(ms.parse().unwrap());
        while std::time::Instant::now() < until {
            store.append("tick", &[alert("tick", 1)]).unwrap();
            store.commit().await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    std::process::abort();
}

fn run_aborting_child(dir: &std::path::Path, wait_ms: u64) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_acknowledges_then_aborts",
            "--ignored",
            "--nocapture",
        ])
        .env("SLUICE_TEST_ABORT_DIR", dir)
        .env("SLUICE_TEST_ABORT_AFTER_MS", wait_ms.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ACKNOWLEDGED 1000"), "{stdout}");
    assert!(!out.status.success(), "the child was meant to abort");
}

fn segment_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join(sluice::store::BLOB_DIR))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// Every alert of `robot` still pending, sealed into one digest and read back.
fn pending_titles(store: &Store, robot: &str) -> Vec<String> {
    let d = store
        .seal(robot, u64::MAX, 1, |_, a| rendered(a))
        .unwrap()
        .unwrap();
    titles(store, &d)
}

#[test]
fn chunks_whose_bytes_never_reached_the_disk_come_back_from_the_write_ahead_log() {
    let dir = tempfile::tempdir().unwrap();
    run_aborting_child(dir.path(), 2500);
    // sled flushed the chunks' references on its own before the abort...
    {
        let db = sled::open(dir.path()).unwrap();
        let refs = db
            .open_tree("alerts")
            .unwrap()
            .iter()
            .filter(|kv| sluice::store::sled::blob::Ref::decode(&kv.as_ref().unwrap().1).is_some())
            .count();
        assert!(
            refs > 0,
            "sled holds no references yet: the test would prove nothing"
        );
    }
    // ...but the bytes they point to were never synced: say the machine lost them.
    let segments = segment_files(dir.path());
    assert!(!segments.is_empty());
    for f in &segments {
        std::fs::OpenOptions::new()
            .write(true)
            .open(f)
            .unwrap()
            .set_len(0)
            .unwrap();
    }
    let store = Store::open(dir.path(), 8 << 20).unwrap();
    assert_eq!(store.pending("ops").unwrap(), 1000);
    let titles = pending_titles(&store, "ops");
    let expected: Vec<String> = (0..10)
        .flat_map(|b| (0..100).map(move |i| format!("a{b}-{i}")))
        .collect();
    assert_eq!(titles, expected);
    // The emptied files went once nothing pointed into them.
    for f in &segments {
        assert!(!f.exists(), "{} is still there", f.display());
    }
}

#[test]
fn a_missing_or_cut_segment_file_below_the_watermark_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), 8 << 20).unwrap();
        let alerts: Vec<Alert> = (0..500).map(|i| alert(&format!("a{i}"), 1)).collect();
        store.append("ops", &alerts).unwrap();
        store.close().unwrap();
    }
    let refused = |what: &str| match Store::open(dir.path(), 8 << 20) {
        Err(StoreError::Corrupt { detail, .. }) => {
            assert!(
                detail.contains("alerts of robot ops from #0 point to bytes 0..")
                    && detail.contains("which is missing or shorter"),
                "{what}: {detail}"
            )
        }
        Err(other) => panic!("{what}: wrong error: {other}"),
        Ok(_) => panic!("{what}: opened a store whose alerts are gone"),
    };
    let files = segment_files(dir.path());
    let size = std::fs::metadata(&files[0]).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&files[0])
        .unwrap();
    f.set_len(size - 1).unwrap();
    refused("cut one byte short");
    for f in files {
        std::fs::remove_file(f).unwrap();
    }
    refused("deleted");
}

#[test]
fn pruned_segments_are_deleted_and_sparse_ones_compacted() {
    const SEGMENT: u64 = 64 << 10;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with_segments(dir.path(), 8 << 20, SEGMENT).unwrap();
    // A fast robot's large alerts interleaved with a slow robot's small ones, so every segment
    // holds both: pruning the fast robot's leaves each mostly empty but not empty.
    let padding = "x".repeat(400);
    for i in 0..600 {
        store
            .append("fast", &[alert(&format!("fast {i} {padding}"), 1)])
            .unwrap();
        store
            .append("slow", &[alert(&format!("slow {i}"), 1)])
            .unwrap();
    }
    let before = store.blob_usage();
    assert!(before.files >= 4, "{before:?}");
    let mut d = store
        .seal("fast", u64::MAX, 2, |_, a| rendered(a))
        .unwrap()
        .unwrap();
    d.state = DigestState::Sent;
    d.sent_ms = Some(3);
    store.update_digest(&d).unwrap();
    // Each round compacts at most 4 segments; a few rounds settle it.
    for _ in 0..(before.files / 4 + 2) {
        store.prune(10_000, |_| Duration::from_secs(1)).unwrap();
    }
    let after = store.blob_usage();
    assert!(
        after.file_bytes <= 2 * after.live_bytes + SEGMENT,
        "{before:?} → {after:?}"
    );
    assert!(after.files < before.files / 2, "{before:?} → {after:?}");
    assert_eq!(segment_files(dir.path()).len() as u64, after.files);
    let expected: Vec<String> = (0..600).map(|i| format!("slow {i}")).collect();
    store.close().unwrap();
    drop(store);
    // The compacted references are durable, and point at the right bytes.
    let store = Store::open_with_segments(dir.path(), 8 << 20, SEGMENT).unwrap();
    assert_eq!(pending_titles(&store, "slow"), expected);

    // Delivered and pruned too: nothing is left but (at most) the segment being written.
    let mut d = store.digests().last().unwrap().unwrap();
    d.state = DigestState::Sent;
    d.sent_ms = Some(3);
    store.update_digest(&d).unwrap();
    store.prune(10_000, |_| Duration::from_secs(1)).unwrap();
    assert!(store.blob_usage().files <= 1, "{:?}", store.blob_usage());
    store.close().unwrap();
    drop(store);
    let _store = Store::open_with_segments(dir.path(), 8 << 20, SEGMENT).unwrap();
    assert!(segment_files(dir.path()).is_empty());
}

/// Issue 10, finding 2: one request whose alerts encoded to more than a segment answered 503
/// "chunk larger than a segment" and failed the whole store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_a_segment_is_stored_without_failing_the_store() {
    const SEGMENT: u64 = 64 << 10;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with_segments(dir.path(), 8 << 20, SEGMENT).unwrap();
    let padding = "x".repeat(400);
    store.append("ops", &[alert("before", 1)]).unwrap();
    let big: Vec<Alert> = (0..400)
        .map(|i| alert(&format!("big {i} {padding}"), 1))
        .collect();
    store.append("ops", &big).unwrap();
    store.commit().await.unwrap();
    store.append("ops", &[alert("after", 1)]).unwrap();
    store.commit().await.unwrap();
    assert_eq!(store.health().error(), None);
    let usage = store.blob_usage();
    assert!(usage.file_bytes > 2 * SEGMENT, "{usage:?}");
    let mut expected = vec!["before".to_string()];
    expected.extend((0..400).map(|i| format!("big {i} {padding}")));
    expected.push("after".to_string());
    store.close().unwrap();
    drop(store);
    let store = Store::open_with_segments(dir.path(), 8 << 20, SEGMENT).unwrap();
    assert_eq!(pending_titles(&store, "ops"), expected);
}

#[test]
fn acknowledged_alerts_survive_an_abort_through_the_write_ahead_log() {
    let dir = tempfile::tempdir().unwrap();
    run_aborting_child(dir.path(), 0);

    // The log holds every acknowledged alert; a torn record at its end (a write the crash cut
    // short, never acknowledged) is ignored.
    let logged: u64 = sluice::store::sled::wal::read_all(dir.path())
        .unwrap()
        .iter()
        .filter(|op| op.tree == sluice::store::sled::wal::Tree::Alerts)
        .map(|op| sluice::store::sled::chunk::count(op.value.as_deref().unwrap()).unwrap())
        .sum();
    assert_eq!(logged, 1000);
    let (_, newest) = sluice::store::sled::wal::files(dir.path())
        .unwrap()
        .pop()
        .unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .unwrap();
    std::io::Write::write_all(&mut f, &[200, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(f);

    let store = Store::open(dir.path(), 8 << 20).unwrap();
    assert_eq!(store.pending("ops").unwrap(), 1000);
    // Applied and checkpointed: the old log is gone, and a second open finds the same.
    drop(store);
    assert!(
        sluice::store::sled::wal::read_all(dir.path())
            .unwrap()
            .is_empty()
    );
    let store = Store::open(dir.path(), 8 << 20).unwrap();
    assert_eq!(store.pending("ops").unwrap(), 1000);
}
