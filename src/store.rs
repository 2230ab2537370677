//! The durable queue: one sled database in `server.data_dir`, five trees, a write-ahead log
//! beside it ([`crate::wal`]), and the alerts' bytes in segment files under `segments/`
//! ([`crate::blob`]).
//!
//! ```text
//! alerts   <robot> 0x00 <first seq u64 BE> → blob::Ref      a chunk of consecutive alerts
//!                                                           (older stores: the chunk, or one
//!                                                           alert as JSON, inline)
//! digests  <id u64 BE>                → DigestRecord (JSON)
//! meta     "cursor" 0x00 <robot>      → u64 BE            first seq not yet in a digest
//!          "sends"  0x00 <robot>      → limit::BootLog    recent sends on the wall and boot
//!                                                         clocks, and the boot id (JSON;
//!                                                         older stores: [wall ms])
//!          "blobs_synced"             → blob::Watermark   blob bytes durable up to here
//!          "next_digest"              → u64 BE            the next digest id
//! dedup    <robot> 0x00 <dedup key>   → {seq, ms} (JSON)  a keyed alert already queued
//! requests <Idempotency-Key>          → {ids, ms} (JSON)  the answer to a keyed request
//! ```
//!
//! What this module guarantees, and what would break it:
//! 1. **Acknowledged means durable.** [`Store::append`] writes into sled's memory and adds the
//!    same change to the write-ahead log's buffer; only after [`Store::commit`] returns is it on
//!    disk, in the log. The HTTP layer acknowledges after `commit`. Commits are grouped: one
//!    thread serves every caller that arrived while the previous round ran, with one write and one
//!    `fdatasync`, so a thousand concurrent requests cost a few syncs, not a thousand. sled
//!    flushes itself in the background; at open, the log's records that sled had not yet flushed
//!    are applied. Changes the robot tasks make (seals, answers, send logs) are not logged: the
//!    send log is flushed through sled before each POST, which also makes the seal durable.
//! 2. **A robot's sequence has no holes below its `next_seq`.** Sequence numbers are allocated and
//!    written under the robot's lane lock, and sealing reads `next_seq` under the same lock, so a
//!    digest can never skip an alert that a slower request is still writing.
//! 3. **Sealing is one atomic step.** The digest record and the cursor move are one sled
//!    transaction: after a crash either both happened or neither did. A digest covers the half-open
//!    range `[first_seq, end_seq)` of one robot's sequence; alerts are never copied.
//! 4. **Only the robot's own task moves its cursor or changes its digests' state**, so those
//!    read-modify-write steps need no locks. The pruner only deletes digests already sent.
//! 5. **A damaged store is refused, not emptied.** sled treats a damaged log tail as a torn write
//!    and silently drops it, even down to an empty database. So the store keeps a marker file
//!    beside sled's ([`MARKER`]): the store's id (also kept inside sled) and, written at every
//!    clean shutdown, each robot's next sequence number. At open, a missing id or a sequence that
//!    went backwards means records were lost, and sluice refuses to start.
//! 6. **A chunk's reference is never trusted beyond what is known durable.** Chunks go to the
//!    blob files without a sync; every sled flush this module asks for syncs them first and
//!    records the watermark ([`durable_flush`]). A reference sled flushed on its own beyond the
//!    watermark is checked at open, and dropped if its bytes are not all there: its alerts are
//!    still in the write-ahead log, which puts them back.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sled::Transactional;
use tokio::sync::oneshot;

use crate::alert::Alert;
use crate::blob::{self, Blobs, Ref, Watermark};
use crate::digest::{Counts, Rendered};
use crate::{chunk, wal};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error(
        "data directory {dir} is in use by another sluice process (sled holds an exclusive lock on it); stop that process or set another server.data_dir"
    )]
    Locked { dir: PathBuf },
    #[error(
        "data directory {dir} is unreadable or corrupted ({detail}); sluice will not start empty over it: move it aside (mv {dir} {dir}.broken) and start again, or restore it from a backup"
    )]
    Corrupt { dir: PathBuf, detail: String },
    #[error("cannot open data directory {dir}: {detail}")]
    Open { dir: PathBuf, detail: String },
    #[error("store write failed: {0}")]
    Io(String),
    #[error("stored record {key} is unreadable: {detail}")]
    Decode { key: String, detail: String },
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

impl From<sled::transaction::TransactionError<()>> for StoreError {
    fn from(e: sled::transaction::TransactionError<()>) -> Self {
        match e {
            sled::transaction::TransactionError::Storage(e) => StoreError::Io(e.to_string()),
            sled::transaction::TransactionError::Abort(()) => {
                StoreError::Io("transaction aborted".into())
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no digest #{0}")]
    NotFound(u64),
    #[error("digest #{0} is {state}, not dead; only dead digests can be replayed", state = .1.as_str())]
    NotDead(u64, DigestState),
    #[error("digest #{0} is {state}, not sent; only delivered digests can be re-delivered", state = .1.as_str())]
    NotSent(u64, DigestState),
    #[error(transparent)]
    Store(StoreError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestState {
    /// Sealed, not yet accepted by the robot.
    Pending,
    /// The robot answered ok.
    Sent,
    /// The robot refused this message for good (message-level error); replayable.
    Dead,
    /// A dead digest whose alerts were queued again (`replayed_to`); kept until retention.
    Replayed,
}

impl DigestState {
    pub fn as_str(self) -> &'static str {
        match self {
            DigestState::Pending => "pending",
            DigestState::Sent => "sent",
            DigestState::Dead => "dead",
            DigestState::Replayed => "replayed",
        }
    }
}

/// A sealed digest. `title` and `text` are rendered once, at sealing, so every retry sends the
/// same bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigestRecord {
    pub id: u64,
    pub robot: String,
    pub first_seq: u64,
    pub end_seq: u64,
    pub counts: Counts,
    /// Alerts shown on their own lines; the rest are summarized as counts.
    pub listed: u64,
    pub state: DigestState,
    pub attempts: u32,
    pub sealed_ms: i64,
    /// `received_ms` of the oldest alert covered, for latency figures.
    pub oldest_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub title: String,
    /// The markdown body; dropped once sent (the alerts stay until `retention` for the API).
    #[serde(default)]
    pub text: String,
    /// Whom the message @-mentions (already written into `text`).
    #[serde(default)]
    pub mentions: crate::mention::Mention,
    /// For a replayed dead digest: the robot its alerts were queued for again, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed_ms: Option<i64>,
}

impl DigestRecord {
    /// How many alerts the digest covers.
    pub fn count(&self) -> u64 {
        self.end_seq - self.first_seq
    }
}

/// What [`Store::move_queue`] moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Moved {
    pub alerts: u64,
    pub digests: u64,
}

/// Where an appended alert went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Queued under this sequence number.
    New(u64),
    /// Its dedup key was already queued, under this sequence number; nothing was added.
    Duplicate(u64),
}

impl Slot {
    pub fn seq(self) -> u64 {
        match self {
            Slot::New(s) | Slot::Duplicate(s) => s,
        }
    }
}

/// The answer kept for an Idempotency-Key; `ids: None` while the request is being processed.
/// `body` is the request's fingerprint ([`request_fingerprint`]): only a request with the same
/// body gets the stored answer. Records written before fingerprints existed have none and are
/// taken as matching, as they were then.
#[derive(Serialize, Deserialize)]
struct Answered {
    ids: Option<Vec<String>>,
    ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
}

/// What identifies a request's content under its Idempotency-Key: the SHA-256 of its body, in hex.
pub fn request_fingerprint(body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A claim older than this (ms) belongs to a request that died with its process.
const ABANDONED_CLAIM_MS: i64 = 60_000;

#[derive(Debug, thiserror::Error)]
pub enum Claim {
    #[error("a request with this Idempotency-Key is being processed; retry in a moment")]
    InFlight,
    /// The key was used for a request with another body (IETF draft-ietf-httpapi-idempotency-key-header:
    /// a key identifies one request; reusing it for another is the client's mistake).
    #[error(
        "Idempotency-Key header: this key was already used for another request (a different body) within the retention window; use a new key for a new request"
    )]
    Reused,
    #[error(transparent)]
    Store(StoreError),
}

/// Per-robot sequence state, guarded by its own lock.
#[derive(Debug, Default)]
struct Lane {
    next_seq: u64,
    cursor: u64,
    /// The newest alerts, `[next_seq - tail_count, next_seq)`, framed as in a chunk but not yet
    /// stored: they are in the write-ahead log (or its buffer). They are stored as one chunk
    /// when the tail reaches [`chunk::CHUNK_BYTES`], before anyone reads them, and at every
    /// checkpoint and clean close ([`materialize`]).
    tail: Vec<u8>,
    tail_count: u32,
    /// Dedup entries of the tail's alerts; written to sled right after their chunk, so a key is
    /// never durable without its alert.
    tail_dedup: HashMap<Vec<u8>, Vec<u8>>,
}

type Lanes = Arc<Mutex<HashMap<String, Arc<Mutex<Lane>>>>>;

/// The trees and files a lane's tail is written into.
#[derive(Clone)]
struct Sink {
    alerts: sled::Tree,
    dedup: sled::Tree,
    blobs: Arc<Blobs>,
}

impl Sink {
    /// Stores a chunk of `count` alerts under `key`: its bytes in the blob files, its
    /// reference in sled. A reference it replaces is released.
    fn put_chunk(&self, key: &[u8], count: u32, chunk: &[u8]) -> Result<(), StoreError> {
        let r = self
            .blobs
            .put(count, chunk)
            .map_err(|e| StoreError::Io(format!("cannot write alerts to the blob files: {e}")))?;
        let old = self.alerts.insert(key, &r.encode()[..])?;
        self.release(old.as_deref());
        Ok(())
    }

    /// A value has left the alerts tree: its blob bytes are no longer live.
    fn release(&self, old: Option<&[u8]>) {
        if let Some(r) = old.and_then(Ref::decode) {
            self.blobs.release(&r);
        }
    }

    /// Removes a chunk (if there is one) from the alerts tree.
    fn remove_chunk(&self, key: &[u8]) -> Result<(), StoreError> {
        let old = self.alerts.remove(key)?;
        self.release(old.as_deref());
        Ok(())
    }
}

/// How many alerts a stored value holds (a reference, or an older store's inline value).
fn stored_count(key: &[u8], value: &[u8]) -> Result<u64, StoreError> {
    match Ref::decode(value) {
        Some(r) => Ok(u64::from(r.count)),
        None => chunk::count(value).map_err(|e| alert_error(key, e)),
    }
}

const WATERMARK: &str = "blobs_synced";

/// Makes sled durable, and the blob bytes its references point to before it (invariant 6):
/// the blob files are synced and the watermark recorded first.
fn durable_flush(db: &sled::Db, meta: &sled::Tree, blobs: &Blobs) -> Result<(), String> {
    if let Some(mark) = blobs
        .sync()
        .map_err(|e| format!("cannot sync the blob files: {e}"))?
    {
        meta.insert(WATERMARK, &mark.encode()[..])
            .map_err(|e| format!("flush failed: {e}"))?;
    }
    db.flush().map_err(|e| format!("flush failed: {e}"))?;
    Ok(())
}

/// Writes a lane's tail as one chunk, then its dedup entries.
fn materialize(sink: &Sink, robot: &str, lane: &mut Lane) -> Result<(), StoreError> {
    if lane.tail_count == 0 {
        return Ok(());
    }
    let first = lane.next_seq - u64::from(lane.tail_count);
    sink.put_chunk(
        &alert_key(robot, first),
        lane.tail_count,
        &chunk::seal(lane.tail_count, &lane.tail),
    )?;
    if !lane.tail_dedup.is_empty() {
        let mut batch = sled::Batch::default();
        for (k, v) in lane.tail_dedup.drain() {
            batch.insert(k, v);
        }
        sink.dedup.apply_batch(batch)?;
    }
    lane.tail.clear();
    lane.tail_count = 0;
    Ok(())
}

/// The lanes as they are now, so that each can be locked without holding the map's lock.
fn lanes_now(lanes: &Lanes) -> Vec<(String, Arc<Mutex<Lane>>)> {
    lanes
        .lock()
        .expect("lanes lock")
        .iter()
        .map(|(r, l)| (r.clone(), l.clone()))
        .collect()
}

/// Every lane's tail written out (checkpoint, close).
fn materialize_all(sink: &Sink, lanes: &Lanes) -> Result<(), StoreError> {
    for (robot, lane) in lanes_now(lanes) {
        materialize(sink, &robot, &mut lane.lock().expect("lane lock"))?;
    }
    Ok(())
}

type Waiter = oneshot::Sender<Result<(), StoreError>>;

/// The marker file in the data directory (invariant 5).
pub const MARKER: &str = "sluice-store.json";

/// The blob files' directory inside the data directory (sled uses `blobs/` itself).
pub const BLOB_DIR: &str = "segments";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Marker {
    store_id: String,
    /// Each robot's `next_seq` at the last clean shutdown: a lower bound for the next open.
    #[serde(default)]
    next_seq: std::collections::BTreeMap<String, u64>,
}

pub struct Store {
    dir: PathBuf,
    db: sled::Db,
    digests: sled::Tree,
    meta: sled::Tree,
    requests: sled::Tree,
    /// The alerts and dedup trees, with the blob files.
    sink: Sink,
    lanes: Lanes,
    flusher: Mutex<Option<mpsc::Sender<Waiter>>>,
    stats: Arc<CommitStats>,
    health: Arc<Health>,
    /// Write-ahead log records written since the last commit took them (see [`crate::wal`]).
    wal: Arc<Mutex<Vec<u8>>>,
    /// The next digest id: dense, and never one that was used before (see [`NEXT_DIGEST`]).
    next_digest: std::sync::atomic::AtomicU64,
}

/// `meta` key of the next digest id. Ids come from this counter, not from sled's
/// `generate_id`, which jumps by a million after every unclean stop (users read `#10000168` as
/// ten million digests). Each seal writes the counter in the same transaction as its record, so
/// after a crash it is at least one past every stored digest; a seal that never committed leaves
/// a gap of one at most, and pruned digests' ids are never used again.
const NEXT_DIGEST: &str = "next_digest";

/// Whether the store can still write. sled keeps an I/O error once it has hit one (a full disk
/// stays "full" to it even after space is freed), so the first failed flush marks the store
/// failed for good, and whoever owns it reopens it ([`Health::failed`] wakes them).
#[derive(Debug, Default)]
pub struct Health {
    error: Mutex<Option<String>>,
    wake: tokio::sync::Notify,
}

impl Health {
    /// The error that failed the store, if it has failed.
    pub fn error(&self) -> Option<String> {
        self.error.lock().expect("health lock").clone()
    }

    /// Marks the store failed (the first error is kept).
    pub fn fail(&self, e: &str) {
        let mut error = self.error.lock().expect("health lock");
        if error.is_none() {
            *error = Some(e.to_string());
            self.wake.notify_one();
        }
    }

    /// Resolves once the store has failed.
    pub async fn failed(&self) {
        loop {
            let notified = self.wake.notified();
            if self.error().is_some() {
                return;
            }
            notified.await;
        }
    }
}

/// Group-commit figures: `requests / flushes` is the mean batch size.
#[derive(Debug, Default)]
pub struct CommitStats {
    pub flushes: std::sync::atomic::AtomicU64,
    pub requests: std::sync::atomic::AtomicU64,
    pub largest_batch: std::sync::atomic::AtomicU64,
}

fn alert_key(robot: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(robot.len() + 9);
    k.extend_from_slice(robot.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn meta_key(kind: &str, robot: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(kind.len() + robot.len() + 1);
    k.extend_from_slice(kind.as_bytes());
    k.push(0);
    k.extend_from_slice(robot.as_bytes());
    k
}

fn dedup_key(robot: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(robot.len() + key.len() + 1);
    k.extend_from_slice(robot.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = bytes.len().min(8);
    b[8 - n..].copy_from_slice(&bytes[bytes.len() - n..]);
    u64::from_be_bytes(b)
}

/// An alerts-tree key as a person reads it: `alerts of robot ops from #1200`.
fn describe_alert_key(key: &[u8]) -> String {
    match key.len().checked_sub(9) {
        Some(split) if key[split] == 0 => format!(
            "alerts of robot {} from #{}",
            String::from_utf8_lossy(&key[..split]),
            be_u64(&key[split + 1..])
        ),
        _ => String::from_utf8_lossy(key).into_owned(),
    }
}

/// Stored alerts under `key` could not be read.
fn alert_error(key: &[u8], detail: String) -> StoreError {
    StoreError::Decode {
        key: describe_alert_key(key),
        detail,
    }
}

fn decode<T: for<'de> Deserialize<'de>>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Decode {
        key: String::from_utf8_lossy(key).into_owned(),
        detail: e.to_string(),
    })
}

impl Store {
    /// Opens (or creates) the database in `dir`. A locked or corrupted directory is an error that
    /// says what to do; a broken store is never replaced by an empty one.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        Store::open_with_segments(dir, cache_bytes, blob::SEGMENT_BYTES)
    }

    /// [`open`](Self::open) with blob segments of `segment_bytes` instead of
    /// [`blob::SEGMENT_BYTES`] (tests of compaction use small ones).
    pub fn open_with_segments(
        dir: &Path,
        cache_bytes: u64,
        segment_bytes: u64,
    ) -> Result<Store, StoreError> {
        let dir = dir.to_path_buf();
        // A sluice that has just stopped may still be releasing the directory's lock (sled's
        // flusher thread lets go of it up to a second later), so a quick restart waits briefly.
        let give_up = std::time::Instant::now() + Duration::from_secs(3);
        let db = loop {
            let opened = sled::Config::new()
                .path(&dir)
                .cache_capacity(cache_bytes)
                // We flush on every commit ourselves; sled's timer flush only adds background writes.
                .flush_every_ms(Some(1000))
                .open()
                .map_err(|e| classify_open_error(&dir, e));
            match opened {
                Err(StoreError::Locked { .. }) if std::time::Instant::now() < give_up => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => break other?,
            }
        };
        let open_tree = |name: &str| db.open_tree(name).map_err(|e| classify_open_error(&dir, e));
        let (alerts, meta, dedup) = (
            open_tree("alerts")?,
            open_tree("meta")?,
            open_tree("dedup")?,
        );
        let watermark = meta
            .get(WATERMARK)
            .map_err(|e| classify_open_error(&dir, e))?
            .and_then(|v| Watermark::decode(&v))
            .unwrap_or_default();
        let blobs =
            Blobs::open(&dir.join(BLOB_DIR), watermark.seg, segment_bytes).map_err(|e| {
                StoreError::Open {
                    dir: dir.clone(),
                    detail: format!("cannot open {BLOB_DIR}/: {e}"),
                }
            })?;
        let store = Store {
            sink: Sink {
                alerts,
                dedup,
                blobs: Arc::new(blobs),
            },
            digests: open_tree("digests")?,
            meta,
            requests: open_tree("requests")?,
            dir,
            db,
            lanes: Arc::new(Mutex::new(HashMap::new())),
            flusher: Mutex::new(None),
            stats: Arc::new(CommitStats::default()),
            health: Arc::new(Health::default()),
            wal: Arc::new(Mutex::new(Vec::new())),
            next_digest: std::sync::atomic::AtomicU64::new(1),
        };
        // sled alone must pass the damage checks (what it flushed is never lost); only then may
        // the write-ahead log add what came after its last flush.
        store.adopt_blobs(watermark)?;
        store.check_readable()?;
        store.check_marker()?;
        let generation = store.recover_wal()?;
        store.lanes.lock().expect("lanes lock").clear();
        let stored = store.meta.get(NEXT_DIGEST)?.map_or(1, |v| be_u64(&v));
        let newest = store
            .digests
            .last()?
            .map_or(0, |(k, _)| be_u64(&k))
            .saturating_add(1);
        store
            .next_digest
            .store(stored.max(newest), std::sync::atomic::Ordering::Relaxed);
        store.start_flusher(generation)?;
        Ok(store)
    }

    /// Applies what the write-ahead log holds beyond sled's last flush, flushes sled, and deletes
    /// the log. Returns the generation for the next log file.
    fn recover_wal(&self) -> Result<u64, StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt {
            dir: self.dir.clone(),
            detail,
        };
        let files = wal::files(&self.dir).map_err(|e| corrupt(e.to_string()))?;
        let next = files.last().map_or(1, |(g, _)| g + 1);
        let ops = wal::read_all(&self.dir).map_err(corrupt)?;
        let mut applied = 0usize;
        // Per robot, the ranges of the digests in the store, read only if needed.
        let mut digested: Option<HashMap<String, Vec<(u64, u64)>>> = None;
        for op in &ops {
            let tree = match op.tree {
                wal::Tree::Alerts => &self.sink.alerts,
                wal::Tree::Digests => &self.digests,
                wal::Tree::Meta => &self.meta,
                wal::Tree::Dedup => &self.sink.dedup,
                wal::Tree::Requests => &self.requests,
            };
            match &op.value {
                Some(v) => {
                    if op.tree == wal::Tree::Alerts {
                        // A logged chunk holds one whole request, and stored chunks hold whole
                        // requests too: if the store has the first alert, it has them all. One
                        // below its robot's cursor is in a digest; unless that digest is still
                        // kept, it was delivered and pruned since: never queue it again.
                        let Some(split) = op.key.iter().position(|&b| b == 0) else {
                            continue;
                        };
                        let robot = String::from_utf8_lossy(&op.key[..split]).into_owned();
                        let first = be_u64(&op.key[split + 1..]);
                        if self.chunk_covering(&robot, first)?.is_some() {
                            continue;
                        }
                        let cursor = self
                            .meta
                            .get(meta_key("cursor", &robot))?
                            .map_or(0, |c| be_u64(&c));
                        if first < cursor {
                            let ranges = match &digested {
                                Some(d) => d,
                                None => digested.insert(self.digest_ranges()?),
                            };
                            let kept = ranges
                                .get(&robot)
                                .is_some_and(|r| r.iter().any(|&(a, b)| a <= first && first < b));
                            if !kept {
                                continue;
                            }
                        }
                        let count = chunk::count(v).map_err(|e| corrupt(e.to_string()))?;
                        self.sink.put_chunk(&op.key, count as u32, v)?;
                        applied += 1;
                        continue;
                    }
                    tree.insert(op.key.as_slice(), v.as_slice())?;
                }
                None if op.tree == wal::Tree::Alerts => {
                    self.sink.remove_chunk(&op.key)?;
                }
                None => {
                    tree.remove(op.key.as_slice())?;
                }
            }
            applied += 1;
        }
        self.flush()?;
        wal::remove_before(&self.dir, next).map_err(|e| corrupt(e.to_string()))?;
        // What nothing points to any more (after that flush) can go.
        self.sink
            .blobs
            .delete(&self.sink.blobs.empty())
            .map_err(|e| corrupt(format!("cannot delete unused blob files: {e}")))?;
        if !ops.is_empty() {
            tracing::info!(
                records = ops.len(),
                applied,
                "write-ahead log applied after an unclean stop"
            );
        }
        Ok(next)
    }

    /// Counts the stored references as live in the blob files. One beyond `watermark` may point
    /// at bytes that never reached the disk (invariant 6): it is read back, and dropped if
    /// damaged; the write-ahead log still holds its alerts. One below it must be there.
    fn adopt_blobs(&self, watermark: Watermark) -> Result<(), StoreError> {
        let blobs = &self.sink.blobs;
        let mut torn = Vec::new();
        for item in self.sink.alerts.iter() {
            let (k, v) = item.map_err(|e| StoreError::Corrupt {
                dir: self.dir.clone(),
                detail: e.to_string(),
            })?;
            let Some(r) = Ref::decode(&v) else {
                continue;
            };
            if watermark.below(&r) {
                if let Err(e) = blobs.get(&r) {
                    if torn.is_empty() {
                        tracing::info!(
                            key = %describe_alert_key(&k),
                            "a chunk written just before an unclean stop is incomplete ({e}); the write-ahead log restores it"
                        );
                    }
                    torn.push(k);
                    continue;
                }
            } else if !blobs.holds(&r) {
                return Err(StoreError::Corrupt {
                    dir: self.dir.clone(),
                    detail: format!(
                        "{} point to bytes {}..{} of {}/{}, which is missing or shorter",
                        describe_alert_key(&k),
                        r.off,
                        u64::from(r.off) + u64::from(r.len),
                        BLOB_DIR,
                        blob::file_name(r.seg)
                    ),
                });
            }
            blobs.adopt(&r);
        }
        if !torn.is_empty() {
            tracing::info!(chunks = torn.len(), "incomplete chunks dropped");
        }
        for k in torn {
            self.sink.alerts.remove(k)?;
        }
        Ok(())
    }

    /// Per robot, the sequence ranges of every digest in the store.
    fn digest_ranges(&self) -> Result<HashMap<String, Vec<(u64, u64)>>, StoreError> {
        let mut out: HashMap<String, Vec<(u64, u64)>> = HashMap::new();
        for d in self.digests() {
            let d = d?;
            out.entry(d.robot)
                .or_default()
                .push((d.first_seq, d.end_seq));
        }
        Ok(out)
    }

    /// Adds write-ahead log records; the next [`commit`](Self::commit) makes them durable. Call it
    /// after the same change went into sled (the checkpoint relies on that order).
    fn log(&self, records: &[u8]) {
        if !records.is_empty() {
            self.wal
                .lock()
                .expect("wal lock")
                .extend_from_slice(records);
        }
    }

    /// Invariant 5: the marker and sled must agree, or records were lost.
    fn check_marker(&self) -> Result<(), StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt {
            dir: self.dir.clone(),
            detail,
        };
        let path = self.dir.join(MARKER);
        let marker: Option<Marker> = match std::fs::read(&path) {
            Ok(bytes) => Some(
                serde_json::from_slice(&bytes)
                    .map_err(|e| corrupt(format!("{MARKER} is unreadable: {e}")))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(corrupt(format!("cannot read {MARKER}: {e}"))),
        };
        let stored_id = self
            .meta
            .get("store_id")?
            .map(|v| String::from_utf8_lossy(&v).into_owned());
        match (&marker, stored_id) {
            (Some(m), None) => {
                return Err(corrupt(format!(
                    "{MARKER} names store {} but the database has no records of it (sled dropped its log)",
                    m.store_id
                )));
            }
            (Some(m), Some(id)) if m.store_id != id => {
                return Err(corrupt(format!(
                    "{MARKER} names store {} but the database is store {id}",
                    m.store_id
                )));
            }
            (Some(m), Some(_)) => {
                for (robot, &expected) in &m.next_seq {
                    let found = self.lane(robot)?.lock().expect("lane lock").next_seq;
                    if found < expected {
                        return Err(corrupt(format!(
                            "robot {robot}: alerts up to #{expected} were stored at the last clean shutdown, the database now ends at #{found}"
                        )));
                    }
                }
            }
            (None, stored) => {
                // A new store, or one whose marker was lost: (re)write it.
                let id = match stored {
                    Some(id) => id,
                    None => {
                        let id = new_store_id();
                        self.meta.insert("store_id", id.as_bytes())?;
                        self.db.flush()?;
                        id
                    }
                };
                self.write_marker(&Marker {
                    store_id: id,
                    next_seq: Default::default(),
                })?;
            }
        }
        Ok(())
    }

    fn write_marker(&self, marker: &Marker) -> Result<(), StoreError> {
        let io = |e: std::io::Error| StoreError::Io(format!("cannot write {MARKER}: {e}"));
        let tmp = self.dir.join(format!("{MARKER}.tmp"));
        let bytes = serde_json::to_vec_pretty(marker).map_err(|e| StoreError::Io(e.to_string()))?;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        std::io::Write::write_all(&mut f, &bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, self.dir.join(MARKER)).map_err(io)?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }

    /// Clean shutdown: flushes, then records each robot's sequence in the marker (invariant 5).
    pub fn close(&self) -> Result<(), StoreError> {
        if let Some(e) = self.health.error() {
            return Err(StoreError::Io(e));
        }
        materialize_all(&self.sink, &self.lanes)?;
        self.flush()?;
        let Some(id) = self.meta.get("store_id")? else {
            return Ok(());
        };
        let mut next_seq = std::collections::BTreeMap::new();
        for (robot, lane) in self.lanes.lock().expect("lanes lock").iter() {
            next_seq.insert(robot.clone(), lane.lock().expect("lane lock").next_seq);
        }
        self.write_marker(&Marker {
            store_id: String::from_utf8_lossy(&id).into_owned(),
            next_seq,
        })
    }

    /// Decodes the last record of every tree once, so that a store whose records cannot be read
    /// is refused at start-up instead of failing later on a robot's first seal.
    fn check_readable(&self) -> Result<(), StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt {
            dir: self.dir.clone(),
            detail,
        };
        if let Some(item) = self.digests.last().map_err(|e| corrupt(e.to_string()))? {
            decode::<DigestRecord>(&item.0, &item.1).map_err(|e| corrupt(e.to_string()))?;
        }
        if let Some((k, v)) = self
            .sink
            .alerts
            .last()
            .map_err(|e| corrupt(e.to_string()))?
        {
            let bytes = self.load(&k, &v).map_err(|e| corrupt(e.to_string()))?;
            chunk::alerts(&bytes, 0, u64::MAX)
                .map_err(|e| corrupt(format!("{} are unreadable: {e}", describe_alert_key(&k))))?;
        }
        Ok(())
    }

    fn start_flusher(&self, generation: u64) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::channel::<Waiter>();
        let writer = wal::Writer::create(&self.dir, generation).map_err(|e| StoreError::Open {
            dir: self.dir.clone(),
            detail: format!("cannot create the write-ahead log: {e}"),
        })?;
        let committer = Committer {
            checkpointing: Default::default(),
            sink: self.sink.clone(),
            meta: self.meta.clone(),
            lanes: self.lanes.clone(),
            db: self.db.clone(),
            dir: self.dir.clone(),
            writer,
            wal: self.wal.clone(),
            stats: self.stats.clone(),
            health: self.health.clone(),
        };
        std::thread::Builder::new()
            .name("sluice-commit".into())
            .spawn(move || committer.run(rx))
            .expect("spawn the commit thread");
        *self.flusher.lock().expect("flusher lock") = Some(tx);
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn commit_stats(&self) -> &CommitStats {
        &self.stats
    }

    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// Passes `result` through; an I/O error from sled marks the store failed (sled keeps such
    /// an error for good, so only a reopen clears it).
    fn checked<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Io(e)) = &result {
            self.health.fail(e);
        }
        result
    }

    fn lane(&self, robot: &str) -> Result<Arc<Mutex<Lane>>, StoreError> {
        let mut lanes = self.lanes.lock().expect("lanes lock");
        if let Some(l) = lanes.get(robot) {
            return Ok(l.clone());
        }
        // After a restart the sequence resumes above both the newest stored alert and the cursor
        // (alerts of delivered digests may already be pruned).
        let cursor = self
            .meta
            .get(meta_key("cursor", robot))?
            .map_or(0, |v| be_u64(&v));
        let last = match self
            .sink
            .alerts
            .range(alert_key(robot, 0)..=alert_key(robot, u64::MAX))
            .next_back()
            .transpose()?
        {
            Some((k, v)) => be_u64(&k) + stored_count(&k, &v)?,
            None => 0,
        };
        let lane = Arc::new(Mutex::new(Lane {
            next_seq: last.max(cursor),
            cursor,
            ..Lane::default()
        }));
        lanes.insert(robot.to_string(), lane.clone());
        Ok(lane)
    }

    /// Adds alerts to a robot's pending set and returns their sequence numbers. Not durable until
    /// [`Store::commit`] returns.
    pub fn append(&self, robot: &str, alerts: &[Alert]) -> Result<Vec<u64>, StoreError> {
        let keyed: Vec<(&Alert, Option<&str>)> = alerts.iter().map(|a| (a, None)).collect();
        Ok(self
            .append_keyed(robot, &keyed, 0, Duration::ZERO)?
            .into_iter()
            .map(Slot::seq)
            .collect())
    }

    /// Like [`append`](Self::append), but an alert whose dedup key was already seen for this
    /// robot within `window` (ms of `now_ms`) is not queued again: its slot is
    /// [`Slot::Duplicate`] with the original sequence number. Checking and recording happen under
    /// the robot's lane lock, so two concurrent repeats cannot both get in.
    pub fn append_keyed(
        &self,
        robot: &str,
        alerts: &[(&Alert, Option<&str>)],
        now_ms: i64,
        window: Duration,
    ) -> Result<Vec<Slot>, StoreError> {
        self.checked(self.try_append_keyed(robot, alerts, now_ms, window))
    }

    fn try_append_keyed(
        &self,
        robot: &str,
        alerts: &[(&Alert, Option<&str>)],
        now_ms: i64,
        window: Duration,
    ) -> Result<Vec<Slot>, StoreError> {
        #[derive(Serialize, Deserialize)]
        struct Seen {
            seq: u64,
            ms: i64,
        }
        let lane = self.lane(robot)?;
        let mut lane = lane.lock().expect("lane lock");
        let first = lane.next_seq;
        let mut next = first;
        let mut body = Vec::with_capacity(alerts.len() * 96);
        let mut in_batch: HashMap<&str, u64> = HashMap::new();
        let mut new_keys = Vec::new();
        let mut slots = Vec::with_capacity(alerts.len());
        for (a, key) in alerts {
            if let Some(key) = key {
                if let Some(&seq) = in_batch.get(key) {
                    slots.push(Slot::Duplicate(seq));
                    continue;
                }
                let dkey = dedup_key(robot, key);
                let prior = match lane.tail_dedup.get(&dkey) {
                    Some(v) => Some(decode::<Seen>(&dkey, v)?),
                    None => match self.sink.dedup.get(&dkey)? {
                        Some(v) => Some(decode::<Seen>(&dkey, &v)?),
                        None => None,
                    },
                };
                if let Some(prior) = prior
                    && now_ms - prior.ms <= window.as_millis() as i64
                {
                    slots.push(Slot::Duplicate(prior.seq));
                    continue;
                }
                let entry = serde_json::to_vec(&Seen {
                    seq: next,
                    ms: now_ms,
                })
                .map_err(|e| StoreError::Io(e.to_string()))?;
                new_keys.push((dkey, entry));
                in_batch.insert(key, next);
            }
            chunk::push(&mut body, a);
            slots.push(Slot::New(next));
            next += 1;
        }
        // The request's alerts as one chunk in the log; in memory until the tail is written.
        let count = (next - first) as u32;
        let mut records = Vec::with_capacity(body.len() + 64);
        if count > 0 {
            let value = chunk::seal(count, &body);
            wal::encode(
                &mut records,
                wal::Tree::Alerts,
                &alert_key(robot, first),
                Some(&value),
            );
            lane.tail.extend_from_slice(&body);
            lane.tail_count += count;
        }
        for (k, v) in new_keys {
            wal::encode(&mut records, wal::Tree::Dedup, &k, Some(&v));
            lane.tail_dedup.insert(k, v);
        }
        lane.next_seq = next;
        self.log(&records);
        if lane.tail.len() >= chunk::CHUNK_BYTES {
            materialize(&self.sink, robot, &mut lane)?;
        }
        Ok(slots)
    }

    /// Claims an Idempotency-Key for a request with body fingerprint `body` (see
    /// [`request_fingerprint`]). `Ok(None)`: it is ours, go on and
    /// [`finish_request`](Self::finish_request) or [`release_request`](Self::release_request) it.
    /// `Ok(Some(ids))`: the same request was answered within `window`, here are the ids.
    /// `Err(InFlight)`: the same request is being processed right now. `Err(Reused)`: the key
    /// belongs to a request with another body (answered within `window`, or in flight), which
    /// must never be taken for this one: its alerts would be acknowledged and never queued.
    pub fn claim_request(
        &self,
        key: &str,
        body: &str,
        now_ms: i64,
        window: Duration,
    ) -> Result<Option<Vec<String>>, Claim> {
        let claim = serde_json::to_vec(&Answered {
            ids: None,
            ms: now_ms,
            body: Some(body.to_string()),
        })
        .map_err(|e| Claim::Store(StoreError::Io(e.to_string())))?;
        loop {
            let current = self.requests.get(key).map_err(|e| Claim::Store(e.into()))?;
            if let Some(v) = &current {
                let prior: Answered = decode(key.as_bytes(), v).map_err(Claim::Store)?;
                let age = now_ms - prior.ms;
                let live = match prior.ids {
                    Some(_) => age <= window.as_millis() as i64,
                    None => age < ABANDONED_CLAIM_MS,
                };
                if live && prior.body.as_deref().is_some_and(|b| b != body) {
                    return Err(Claim::Reused);
                }
                match prior.ids {
                    Some(ids) if age <= window.as_millis() as i64 => return Ok(Some(ids)),
                    // A claim older than this was abandoned by a crash: take it over.
                    None if age < ABANDONED_CLAIM_MS => return Err(Claim::InFlight),
                    _ => {}
                }
            }
            match self
                .requests
                .compare_and_swap(key, current, Some(claim.clone()))
                .map_err(|e| Claim::Store(e.into()))?
            {
                Ok(()) => return Ok(None),
                Err(_) => continue,
            }
        }
    }

    /// Records the answer to a claimed request (made durable by the next commit).
    pub fn finish_request(
        &self,
        key: &str,
        body: &str,
        ids: &[String],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(&Answered {
            ids: Some(ids.to_vec()),
            ms: now_ms,
            body: Some(body.to_string()),
        })
        .map_err(|e| StoreError::Io(e.to_string()))?;
        let written = self.requests.insert(key, bytes.as_slice());
        self.checked(written.map(|_| ()).map_err(StoreError::from))?;
        let mut record = Vec::new();
        wal::encode(
            &mut record,
            wal::Tree::Requests,
            key.as_bytes(),
            Some(&bytes),
        );
        self.log(&record);
        Ok(())
    }

    /// Gives a claim back after a failure, so the client's retry is processed anew.
    pub fn release_request(&self, key: &str) {
        let _ = self.requests.remove(key);
    }

    /// Waits until everything written before the call is on disk. Concurrent callers share flushes.
    pub async fn commit(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        let sent = match self.flusher.lock().expect("flusher lock").as_ref() {
            Some(f) => f.send(tx).is_ok(),
            None => false,
        };
        if !sent {
            return Err(StoreError::Io("the store is closed".into()));
        }
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Io("the commit thread stopped".into())))
    }

    /// Flushes synchronously (shutdown, and the send log before a POST), the blob files first.
    pub fn flush(&self) -> Result<(), StoreError> {
        if let Some(e) = self.health.error() {
            return Err(StoreError::Io(e));
        }
        durable_flush(&self.db, &self.meta, &self.sink.blobs).map_err(|e| {
            self.health.fail(&e);
            StoreError::Io(e)
        })
    }

    /// A stored value's chunk bytes: read from the blob files for a reference, the value itself
    /// for an older store's inline chunk.
    fn load<'v>(&self, key: &[u8], value: &'v [u8]) -> Result<Cow<'v, [u8]>, StoreError> {
        match Ref::decode(value) {
            Some(r) => self
                .sink
                .blobs
                .get(&r)
                .map(Cow::Owned)
                .map_err(|e| alert_error(key, e)),
            None => Ok(Cow::Borrowed(value)),
        }
    }

    /// Alerts waiting for a robot's next digest.
    pub fn pending(&self, robot: &str) -> Result<u64, StoreError> {
        let lane = self.lane(robot)?;
        let lane = lane.lock().expect("lane lock");
        Ok(lane.next_seq - lane.cursor)
    }

    /// `received_ms` of the oldest pending alert, if any.
    pub fn oldest_pending_ms(&self, robot: &str) -> Result<Option<i64>, StoreError> {
        let lane = self.lane(robot)?;
        let lane = lane.lock().expect("lane lock");
        if lane.cursor == lane.next_seq {
            return Ok(None);
        }
        let tail_first = lane.next_seq - u64::from(lane.tail_count);
        let oldest = if lane.cursor >= tail_first {
            chunk::body_alerts(&lane.tail, lane.tail_count, lane.cursor - tail_first, 1).map_err(
                |detail| StoreError::Decode {
                    key: format!("newest alerts of robot {robot}"),
                    detail,
                },
            )?
        } else {
            match self.chunk_covering(robot, lane.cursor)? {
                Some((first, v)) => {
                    let key = alert_key(robot, first);
                    chunk::alerts(&self.load(&key, &v)?, lane.cursor - first, 1)
                        .map_err(|e| alert_error(&key, e))?
                }
                None => Vec::new(),
            }
        };
        Ok(oldest.first().map(|a| a.received_ms))
    }

    /// The stored chunk of `robot` that holds `seq`: its first sequence number and value.
    fn chunk_covering(
        &self,
        robot: &str,
        seq: u64,
    ) -> Result<Option<(u64, sled::IVec)>, StoreError> {
        let Some((k, v)) = self
            .sink
            .alerts
            .range(alert_key(robot, 0)..=alert_key(robot, seq))
            .next_back()
            .transpose()?
        else {
            return Ok(None);
        };
        let first = be_u64(&k);
        let n = stored_count(&k, &v)?;
        Ok((first + n > seq).then_some((first, v)))
    }

    /// The stored alerts of `robot` in `[first, end)`, with their sequence numbers (fewer where
    /// pruned). The range must not reach into the lane's tail.
    fn read_range(
        &self,
        robot: &str,
        first: u64,
        end: u64,
    ) -> Result<Vec<(u64, Alert)>, StoreError> {
        let mut out = Vec::with_capacity(end.saturating_sub(first).min(1 << 20) as usize);
        let mut take = |chunk_first: u64, k: &[u8], v: &[u8]| -> Result<(), StoreError> {
            let skip = first.saturating_sub(chunk_first);
            let bytes = self.load(k, v)?;
            let alerts = chunk::alerts(&bytes, skip, end.saturating_sub(chunk_first + skip))
                .map_err(|e| alert_error(k, e))?;
            let from = chunk_first + skip;
            out.extend((from..).zip(alerts));
            Ok(())
        };
        if let Some((chunk_first, v)) = self.chunk_covering(robot, first)?
            && chunk_first < first
        {
            take(chunk_first, &alert_key(robot, chunk_first), &v)?;
        }
        for item in self
            .sink
            .alerts
            .range(alert_key(robot, first)..alert_key(robot, end))
        {
            let (k, v) = item?;
            take(be_u64(&k), &k, &v)?;
        }
        Ok(out)
    }

    /// Seals up to `max_alerts` of the robot's pending alerts into a new digest, rendered by
    /// `render(id, alerts)`. Returns `None` when nothing is pending.
    pub fn seal(
        &self,
        robot: &str,
        max_alerts: u64,
        now_ms: i64,
        render: impl FnOnce(u64, &[Alert]) -> (Rendered, crate::mention::Mention),
    ) -> Result<Option<DigestRecord>, StoreError> {
        self.checked(self.try_seal(robot, max_alerts, now_ms, render))
    }

    fn try_seal(
        &self,
        robot: &str,
        max_alerts: u64,
        now_ms: i64,
        render: impl FnOnce(u64, &[Alert]) -> (Rendered, crate::mention::Mention),
    ) -> Result<Option<DigestRecord>, StoreError> {
        let lane = self.lane(robot)?;
        let (first, end) = {
            let mut lane = lane.lock().expect("lane lock");
            materialize(&self.sink, robot, &mut lane)?;
            (lane.cursor, lane.next_seq.min(lane.cursor + max_alerts))
        };
        if first == end {
            return Ok(None);
        }
        let alerts: Vec<Alert> = self
            .read_range(robot, first, end)?
            .into_iter()
            .map(|(_, a)| a)
            .collect();
        if alerts.len() as u64 != end - first {
            return Err(StoreError::Corrupt {
                dir: self.dir.clone(),
                detail: format!(
                    "robot {robot}: expected alerts {first}..{end}, found {}",
                    alerts.len()
                ),
            });
        }
        let id = self
            .next_digest
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (rendered, mentions) = render(id, &alerts);
        let record = DigestRecord {
            id,
            robot: robot.to_string(),
            first_seq: first,
            end_seq: end,
            counts: rendered.counts,
            listed: rendered.listed as u64,
            state: DigestState::Pending,
            attempts: 0,
            sealed_ms: now_ms,
            oldest_ms: alerts.iter().map(|a| a.received_ms).min().unwrap_or(now_ms),
            sent_ms: None,
            last_error: None,
            title: rendered.title,
            text: rendered.text,
            mentions,
            replayed_to: None,
            replayed_ms: None,
        };
        let bytes = serde_json::to_vec(&record).map_err(|e| StoreError::Io(e.to_string()))?;
        let cursor_key = meta_key("cursor", robot);
        (&self.digests, &self.meta).transaction(|(d, m)| {
            d.insert(&id.to_be_bytes(), bytes.as_slice())?;
            m.insert(cursor_key.as_slice(), &end.to_be_bytes())?;
            // Seals of several robots commit in any order: the counter only moves up.
            let stored = m.get(NEXT_DIGEST)?.map_or(0, |v| be_u64(&v));
            if stored <= id {
                m.insert(NEXT_DIGEST, &(id + 1).to_be_bytes())?;
            }
            Ok(())
        })?;
        lane.lock().expect("lane lock").cursor = end;
        Ok(Some(record))
    }

    /// Writes back a digest's changed state (attempts, errors, sent or dead).
    pub fn update_digest(&self, record: &DigestRecord) -> Result<(), StoreError> {
        self.write_digest(record, false)
    }

    /// Writes a digest record; `logged`: also to the write-ahead log, so that the next commit
    /// makes it durable together with the alerts it queued (replay, queue moves).
    fn write_digest(&self, record: &DigestRecord, logged: bool) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(|e| StoreError::Io(e.to_string()))?;
        let key = record.id.to_be_bytes();
        let written = self.digests.insert(key, bytes.as_slice());
        self.checked(written.map(|_| ()).map_err(StoreError::from))?;
        if logged {
            let mut r = Vec::new();
            wal::encode(&mut r, wal::Tree::Digests, &key, Some(&bytes));
            self.log(&r);
        }
        Ok(())
    }

    pub fn digest(&self, id: u64) -> Result<Option<DigestRecord>, StoreError> {
        let key = id.to_be_bytes();
        match self.digests.get(key)? {
            Some(v) => Ok(Some(decode(&key, &v)?)),
            None => Ok(None),
        }
    }

    /// The alerts a digest covers, with their sequence numbers. Empty once pruned.
    pub fn digest_alerts(&self, d: &DigestRecord) -> Result<Vec<(u64, Alert)>, StoreError> {
        self.read_range(&d.robot, d.first_seq, d.end_seq)
    }

    /// Every digest, oldest first (start-up recovery, pruning and counts).
    pub fn digests(&self) -> impl Iterator<Item = Result<DigestRecord, StoreError>> + '_ {
        self.digests.iter().map(|item| {
            let (k, v) = item?;
            decode(&k, &v)
        })
    }

    /// Wall-clock ms of the robot's recent sends, oldest first, as the process that wrote them
    /// read its clock (see [`Store::stamped_send_log`] for what they mean after a restart).
    pub fn send_log(&self, robot: &str) -> Result<Vec<i64>, StoreError> {
        Ok(self.stamped_send_log(robot)?.wall_ms())
    }

    /// The robot's recent sends as stored: with the boot clock and boot id since boot stamps,
    /// wall-clock ms alone in stores of earlier releases. [`crate::limit::resume`] brings either
    /// into the running clock.
    pub fn stamped_send_log(&self, robot: &str) -> Result<crate::limit::StoredLog, StoreError> {
        let key = meta_key("sends", robot);
        let Some(v) = self.meta.get(&key)? else {
            return Ok(crate::limit::StoredLog::Wall(Vec::new()));
        };
        // Earlier releases wrote a bare list; a list is never valid as the newer object.
        if v.trim_ascii_start().starts_with(b"[") {
            Ok(crate::limit::StoredLog::Wall(decode(&key, &v)?))
        } else {
            Ok(crate::limit::StoredLog::Boot(decode(&key, &v)?))
        }
    }

    /// Replaces the robot's send log with wall-clock ms alone (the format of earlier releases):
    /// after a restart its sends count as just made.
    pub fn set_send_log(&self, robot: &str, log: &[i64], durable: bool) -> Result<(), StoreError> {
        self.set_stamped_send_log(robot, &crate::limit::StoredLog::Wall(log.to_vec()), durable)
    }

    /// Replaces the robot's send log and, if `durable`, flushes before returning: a send recorded
    /// this way counts against the limit even if the process dies during the POST.
    pub fn set_stamped_send_log(
        &self,
        robot: &str,
        log: &crate::limit::StoredLog,
        durable: bool,
    ) -> Result<(), StoreError> {
        let bytes = match log {
            crate::limit::StoredLog::Wall(w) => serde_json::to_vec(w),
            crate::limit::StoredLog::Boot(b) => serde_json::to_vec(b),
        }
        .map_err(|e| StoreError::Io(e.to_string()))?;
        let written = self.meta.insert(meta_key("sends", robot), bytes);
        self.checked(written.map_err(StoreError::from))?;
        if durable {
            self.flush()?;
        }
        Ok(())
    }

    /// Deletes sent digests, and the alerts they cover, whose `sent_ms` is older than the robot's
    /// retention. Returns how many digests went. A chunk of alerts goes once no digest that
    /// stays, and no pending alert, shares it.
    pub fn prune(
        &self,
        now_ms: i64,
        retention: impl Fn(&str) -> Duration,
    ) -> Result<usize, StoreError> {
        let mut doomed = Vec::new();
        let mut kept: HashMap<String, Vec<(u64, u64)>> = HashMap::new();
        for d in self.digests() {
            let d = d?;
            // Delivered and replayed digests expire with retention; pending and dead ones stay.
            let done = match d.state {
                DigestState::Sent => d.sent_ms,
                DigestState::Replayed => d.replayed_ms,
                DigestState::Pending | DigestState::Dead => None,
            };
            match done {
                Some(done) if done + retention(&d.robot).as_millis() as i64 <= now_ms => {
                    doomed.push(d)
                }
                _ => kept
                    .entry(d.robot.clone())
                    .or_default()
                    .push((d.first_seq, d.end_seq)),
            }
        }
        let gone = doomed.len();
        for d in doomed {
            let cursor = self.lane(&d.robot)?.lock().expect("lane lock").cursor;
            let keep = kept.get(&d.robot).map_or(&[][..], Vec::as_slice);
            let shared = |a: u64, b: u64| b > cursor || keep.iter().any(|&(x, y)| x < b && a < y);
            let mut unshared = Vec::new();
            let mut consider = |k: &[u8], v: &[u8]| -> Result<(), StoreError> {
                let first = be_u64(k);
                let n = stored_count(k, v)?;
                if !shared(first, first + n) {
                    unshared.push(k.to_vec());
                }
                Ok(())
            };
            if let Some((first, v)) = self.chunk_covering(&d.robot, d.first_seq)? {
                consider(&alert_key(&d.robot, first), &v)?;
            }
            for item in self
                .sink
                .alerts
                .range(alert_key(&d.robot, d.first_seq + 1)..alert_key(&d.robot, d.end_seq))
            {
                let (k, v) = item?;
                consider(&k, &v)?;
            }
            for k in unshared {
                self.sink.remove_chunk(&k)?;
            }
            self.digests.remove(d.id.to_be_bytes())?;
        }
        // Dedup keys and request answers expire with their robot's (or the longest) retention.
        let longest = self
            .lanes
            .lock()
            .expect("lanes lock")
            .keys()
            .map(|r| retention(r))
            .max()
            .unwrap_or(Duration::from_secs(7 * 86_400));
        let expired = |ms: i64, keep: Duration| ms + keep.as_millis() as i64 <= now_ms;
        for item in self.sink.dedup.iter() {
            let (k, v) = item?;
            let robot = k.split(|&b| b == 0).next().unwrap_or_default();
            let keep = retention(&String::from_utf8_lossy(robot));
            #[derive(Deserialize)]
            struct Seen {
                ms: i64,
            }
            if decode::<Seen>(&k, &v).map_or(true, |s| expired(s.ms, keep)) {
                self.sink.dedup.remove(k)?;
            }
        }
        for item in self.requests.iter() {
            let (k, v) = item?;
            if decode::<Answered>(&k, &v).map_or(true, |a| expired(a.ms, longest)) {
                self.requests.remove(k)?;
            }
        }
        self.compact()?;
        self.reclaim()?;
        Ok(gone)
    }

    /// Copies the live chunks of mostly freed blob segments into the active one (a slow robot's
    /// chunks pinning a segment among a faster robot's pruned ones), so that [`reclaim`] can
    /// delete the old files. Returns how many chunks moved.
    fn compact(&self) -> Result<usize, StoreError> {
        /// At most this many segments per round, so a round stays short.
        const SEGMENTS_PER_ROUND: usize = 4;
        let blobs = &self.sink.blobs;
        let sparse = blobs.sparse(SEGMENTS_PER_ROUND);
        if sparse.is_empty() {
            return Ok(0);
        }
        let io = |e: std::io::Error| StoreError::Io(format!("blob compaction: {e}"));
        let mut copies = Vec::new();
        for item in self.sink.alerts.iter() {
            let (k, v) = item?;
            if let Some(old) = Ref::decode(&v).filter(|r| sparse.contains(&r.seg)) {
                let bytes = blobs.get(&old).map_err(|e| alert_error(&k, e))?;
                copies.push((k, old, blobs.put(old.count, &bytes).map_err(io)?));
            }
        }
        // The copies are durable before sled can hold a reference to them (invariant 6).
        blobs.sync().map_err(io)?;
        let mut moved = 0;
        for (k, old, new) in copies {
            match self.sink.alerts.compare_and_swap(
                &k,
                Some(&old.encode()[..]),
                Some(&new.encode()[..]),
            )? {
                Ok(()) => {
                    blobs.release(&old);
                    moved += 1;
                }
                // Pruned or moved meanwhile: the copy is garbage.
                Err(_) => blobs.release(&new),
            }
        }
        tracing::debug!(chunks = moved, segments = ?sparse, "compacted blob segments");
        Ok(moved)
    }

    /// Deletes the blob segments nothing points to any more, once a flush has made that durable
    /// (invariant 2 of [`crate::blob`]). Returns the bytes freed.
    fn reclaim(&self) -> Result<u64, StoreError> {
        let empty = self.sink.blobs.empty();
        if empty.is_empty() {
            return Ok(0);
        }
        self.flush()?;
        self.sink
            .blobs
            .delete(&empty)
            .map_err(|e| StoreError::Io(format!("cannot delete blob files: {e}")))
    }

    /// Queues a dead digest's alerts again for robot `to` (its own robot or another) and marks
    /// it replayed. Not durable until [`Store::commit`]. Alerts are queued before the digest is
    /// marked, so a crash in between can replay them twice, never lose them.
    pub fn replay(&self, id: u64, to: &str, now_ms: i64) -> Result<DigestRecord, ReplayError> {
        let mut d = self
            .digest(id)
            .map_err(ReplayError::Store)?
            .ok_or(ReplayError::NotFound(id))?;
        if d.state != DigestState::Dead {
            return Err(ReplayError::NotDead(id, d.state));
        }
        self.queue_again(&d, to)?;
        d.state = DigestState::Replayed;
        d.replayed_to = Some(to.to_string());
        d.replayed_ms = Some(now_ms);
        self.write_digest(&d, true).map_err(ReplayError::Store)?;
        Ok(d)
    }

    /// Queues a delivered digest's alerts again for robot `to` (re-delivery after a group was
    /// dissolved, or to a new robot). The digest stays as it was. Not durable until
    /// [`Store::commit`]. Returns the digest and how many alerts were queued.
    pub fn redeliver(&self, id: u64, to: &str) -> Result<DigestRecord, ReplayError> {
        let d = self
            .digest(id)
            .map_err(ReplayError::Store)?
            .ok_or(ReplayError::NotFound(id))?;
        if d.state != DigestState::Sent {
            return Err(ReplayError::NotSent(id, d.state));
        }
        self.queue_again(&d, to)?;
        Ok(d)
    }

    fn queue_again(&self, d: &DigestRecord, to: &str) -> Result<(), ReplayError> {
        let alerts: Vec<Alert> = self
            .digest_alerts(d)
            .map_err(ReplayError::Store)?
            .into_iter()
            .map(|(_, a)| a)
            .collect();
        self.append(to, &alerts).map_err(ReplayError::Store)?;
        Ok(())
    }

    /// Every robot that has alerts in the store (pending or covered by a kept digest), found
    /// with one seek per robot rather than a scan, plus those whose newest alerts are still in
    /// memory only.
    pub fn robots(&self) -> Result<Vec<String>, StoreError> {
        let mut out = std::collections::BTreeSet::new();
        let mut from = Vec::new();
        while let Some((k, _)) = self
            .sink
            .alerts
            .range(from.as_slice()..)
            .next()
            .transpose()?
        {
            let name = k.split(|&b| b == 0).next().unwrap_or_default();
            out.insert(String::from_utf8_lossy(name).into_owned());
            from = name.to_vec();
            from.push(1);
        }
        for (robot, lane) in lanes_now(&self.lanes) {
            if lane.lock().expect("lane lock").tail_count > 0 {
                out.insert(robot);
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Moves everything still queued for robot `from`, sealed digests not yet delivered and
    /// pending alerts, to robot `to`, oldest first: the way out for the queue of a robot that
    /// was removed from the config. Only while no task runs for `from` (invariant 4). Not
    /// durable until [`Store::commit`]. Alerts are queued for `to` before they leave `from`, so
    /// a crash in between can deliver some twice, never lose them.
    pub fn move_queue(&self, from: &str, to: &str, now_ms: i64) -> Result<Moved, StoreError> {
        let mut moved = Moved::default();
        let sealed: Vec<DigestRecord> = self
            .digests()
            .filter(|d| {
                d.as_ref()
                    .map_or(true, |d| d.robot == from && d.state == DigestState::Pending)
            })
            .collect::<Result<_, _>>()?;
        for mut d in sealed {
            self.queue_again(&d, to).map_err(|e| match e {
                ReplayError::Store(e) => e,
                other => StoreError::Io(other.to_string()),
            })?;
            moved.alerts += d.count();
            moved.digests += 1;
            d.state = DigestState::Replayed;
            d.replayed_to = Some(to.to_string());
            d.replayed_ms = Some(now_ms);
            self.write_digest(&d, true)?;
        }
        // Pending alerts, a bounded number at a time so a large backlog does not sit in memory.
        const PIECE: u64 = 10_000;
        let lane = self.lane(from)?;
        let mut lane = lane.lock().expect("lane lock");
        materialize(&self.sink, from, &mut lane)?;
        let start = lane.cursor;
        let cursor_key = meta_key("cursor", from);
        while lane.cursor < lane.next_seq {
            let (first, end) = (lane.cursor, lane.next_seq.min(lane.cursor + PIECE));
            let alerts: Vec<Alert> = self
                .read_range(from, first, end)?
                .into_iter()
                .map(|(_, a)| a)
                .collect();
            self.append(to, &alerts)?;
            self.meta
                .insert(cursor_key.as_slice(), &end.to_be_bytes())?;
            let mut record = Vec::new();
            wal::encode(
                &mut record,
                wal::Tree::Meta,
                &cursor_key,
                Some(&end.to_be_bytes()),
            );
            self.log(&record);
            lane.cursor = end;
            moved.alerts += alerts.len() as u64;
        }
        // The chunks that held only pending alerts go; one that also holds sealed alerts stays
        // for its digest.
        let mut records = Vec::new();
        for k in self
            .sink
            .alerts
            .range(alert_key(from, start)..=alert_key(from, u64::MAX))
            .keys()
        {
            let k = k?;
            self.sink.remove_chunk(&k)?;
            wal::encode(&mut records, wal::Tree::Alerts, &k, None);
        }
        self.log(&records);
        Ok(moved)
    }

    /// sled's files and the blob files.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0) + self.sink.blobs.usage().file_bytes
    }

    /// The blob files' totals (status, tests).
    pub fn blob_usage(&self) -> blob::Usage {
        self.sink.blobs.usage()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Closing the channel ends the commit thread after it has served what is queued.
        self.flusher.lock().map(|mut f| f.take()).ok();
        // A failed sled can wait forever in flush (an I/O error on its background write may not
        // wake the flusher); what matters is in the write-ahead log anyway.
        if self.health.error().is_none() {
            let _ = self.db.flush();
        }
    }
}

fn new_store_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}-{:x}", nanos, std::process::id())
}

/// After this long without a commit, the write-ahead log is checkpointed whatever its size.
const IDLE_CHECKPOINT: Duration = Duration::from_secs(2);

/// How long the commit thread waits for stragglers when requests are arriving concurrently.
const GATHER: Duration = Duration::from_micros(250);

/// The commit thread: makes the write-ahead log records gathered since its last round durable
/// with one write and one `fdatasync`, answers every caller that was waiting for them, and
/// checkpoints the log when it has grown.
struct Committer {
    /// A checkpoint's flush is running.
    checkpointing: Arc<std::sync::atomic::AtomicBool>,
    sink: Sink,
    meta: sled::Tree,
    lanes: Lanes,
    db: sled::Db,
    dir: PathBuf,
    writer: wal::Writer,
    wal: Arc<Mutex<Vec<u8>>>,
    stats: Arc<CommitStats>,
    health: Arc<Health>,
}

impl Committer {
    fn run(mut self, rx: mpsc::Receiver<Waiter>) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut last_batch = 0usize;
        let mut spare = Vec::new();
        loop {
            // An idle log is checkpointed too, so that a quiet store does not keep a second
            // copy of its recent alerts in the log.
            let first = match rx.recv_timeout(IDLE_CHECKPOINT) {
                Ok(w) => w,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if self.writer.size() > 0
                        && let Err(e) = self.checkpoint()
                    {
                        self.health.fail(&e);
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            // Everyone who queued up while the previous round ran rides on this one. When the
            // last round served several callers, others are likely a few microseconds behind:
            // waiting for them a moment turns many small syncs into a few large ones. A lone
            // caller (the last batch was 1) never waits.
            let mut batch = vec![first];
            if last_batch > 1 {
                std::thread::sleep(GATHER);
            }
            batch.extend(rx.try_iter());
            last_batch = batch.len();
            // Take the records (callers added theirs before asking), leaving an empty buffer
            // with capacity behind.
            std::mem::swap(&mut spare, &mut *self.wal.lock().expect("wal lock"));
            let result = if spare.is_empty() {
                // Whatever these callers wrote went out with an earlier round, already synced.
                Ok(())
            } else {
                self.writer
                    .append(&spare)
                    .map_err(|e| StoreError::Io(format!("write-ahead log: {e}")))
            };
            spare.clear();
            if let Err(e) = &result {
                self.health.fail(&e.to_string());
            }
            self.stats.flushes.fetch_add(1, Relaxed);
            self.stats.requests.fetch_add(batch.len() as u64, Relaxed);
            self.stats
                .largest_batch
                .fetch_max(batch.len() as u64, Relaxed);
            for w in batch {
                let _ = w.send(result.clone());
            }
            if result.is_ok()
                && self.writer.size() >= wal::CHECKPOINT_BYTES
                && let Err(e) = self.checkpoint()
            {
                self.health.fail(&e);
            }
        }
    }

    /// Starts a new log file, then, on a thread of its own so that commits go on meanwhile,
    /// makes sled durable and deletes the older files. Every record in them was added after its
    /// change went into sled or into a lane's tail (`Store::log`), and the tails go into sled
    /// here first, so sled's flush covers them all.
    fn checkpoint(&mut self) -> Result<(), String> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.checkpointing.load(SeqCst) {
            return Ok(());
        }
        let old = self
            .writer
            .rotate()
            .map_err(|e| format!("write-ahead log: cannot start a new file: {e}"))?;
        materialize_all(&self.sink, &self.lanes).map_err(|e| e.to_string())?;
        self.checkpointing.store(true, SeqCst);
        let (db, meta, blobs, dir, health, busy) = (
            self.db.clone(),
            self.meta.clone(),
            self.sink.blobs.clone(),
            self.dir.clone(),
            self.health.clone(),
            self.checkpointing.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("sluice-checkpoint".into())
            .spawn(move || {
                let done = durable_flush(&db, &meta, &blobs).and_then(|_| {
                    wal::remove_before(&dir, old + 1)
                        .map_err(|e| format!("write-ahead log: cannot delete old files: {e}"))
                });
                if let Err(e) = done {
                    health.fail(&e);
                }
                busy.store(false, SeqCst);
            });
        if let Err(e) = spawned {
            self.checkpointing.store(false, SeqCst);
            return Err(format!("cannot start the checkpoint thread: {e}"));
        }
        Ok(())
    }
}

fn classify_open_error(dir: &Path, e: sled::Error) -> StoreError {
    let detail = e.to_string();
    match e {
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => StoreError::Locked {
            dir: dir.to_path_buf(),
        },
        sled::Error::Io(io) if detail.contains("could not acquire lock") => {
            let _ = io;
            StoreError::Locked {
                dir: dir.to_path_buf(),
            }
        }
        sled::Error::Corruption { .. }
        | sled::Error::Unsupported(_)
        | sled::Error::ReportableBug(_) => StoreError::Corrupt {
            dir: dir.to_path_buf(),
            detail,
        },
        _ => StoreError::Open {
            dir: dir.to_path_buf(),
            detail,
        },
    }
}
