//! The durable queue: the [`Store`] trait the rest of sluice holds as `Arc<dyn Store>`, the
//! types every backend shares, and [`open`], which picks the backend. **Every call returns once
//! its effect is durable** (an ingest's alerts, dedup keys and Idempotency-Key answer are one
//! call). Backends:
//!
//! - [`sled`]: the embedded one, and the only durable one so far: one sled database in
//!   `server.data_dir`, five trees, a write-ahead log beside it ([`sled::wal`]), and the
//!   alerts' bytes in segment files under `segments/` ([`sled::blob`]). Its files:
//!   `mod.rs` (open, recovery, the marker), `keys.rs`, `lane.rs` (per-robot sequences and the
//!   newest alerts), `queue.rs` (append, claims, seal, digests, send logs), `prune.rs`
//!   (retention, compaction, replay, queue moves), `commit.rs` (the commit thread) and
//!   `backend.rs` (the trait, on tokio's blocking pool).
//! - [`memory`]: the same semantics without durability, for tests.
//!
//! `tests.rs` holds the conformance tests, written once against `Arc<dyn Store>` and run on
//! every backend. The sled backend's layout:
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
//! What the store guarantees, and what would break it (the sled backend's mechanisms named):
//! 1. **Acknowledged means durable.** [`Store::append`] writes into sled's memory and adds the
//!    same change to the write-ahead log's buffer, then waits for the commit thread
//!    ([`SledStore::commit`]): only then is it on disk, in the log, and only then does it
//!    return. The HTTP layer acknowledges after `append` returns. Commits are grouped: one
//!    thread serves every caller that arrived while the previous round ran, with one write and one
//!    `fdatasync`, so a thousand concurrent requests cost a few syncs, not a thousand. sled
//!    flushes itself in the background; at open, the log's records that sled had not yet flushed
//!    are applied. Changes the robot tasks make (seals, answers, send logs) and pruning are not
//!    logged: each such call flushes sled before it returns (the send log before each POST).
//!    Replays, re-deliveries and queue moves go through the log and its commit, like appends.
//! 2. **A robot's sequence has no holes below its `next_seq`.** Sequence numbers are allocated and
//!    written under the robot's lane lock, and sealing reads `next_seq` under the same lock, so a
//!    digest can never skip an alert that a slower request is still writing.
//! 3. **Sealing is one atomic step.** The digest record and the cursor move are one sled
//!    transaction: after a crash either both happened or neither did. A digest covers the half-open
//!    range `[first_seq, end_seq)` of one robot's sequence; alerts are never copied. The range
//!    starts at the cursor and is what the renderer says it covers (a prefix of what it was
//!    offered: a passthrough message is sealed alone), so the sequence has no gap between
//!    digests either.
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

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::api::Attempt;
use crate::digest::{Counts, Rendered};
use crate::limit::StoredLog;
use crate::message::Prepared;

pub mod jetstream;
pub mod memory;
pub mod sled;
#[cfg(test)]
mod tests;

pub use self::memory::MemoryStore;
pub use self::sled::{BLOB_DIR, MARKER, SledBackend, SledStore};

/// What every [`Store`] call returns: a boxed future, so that the trait stays object-safe and
/// the crate holds an `Arc<dyn Store>`.
pub type StoreFuture<'a, T, E = StoreError> =
    Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'a>>;

/// How long a robot's dedup keys keep a repeat out (its `retention`), by robot name; also a
/// robot's retention for [`Store::prune`].
pub type Retention = Arc<dyn Fn(&str) -> Duration + Send + Sync>;

/// Renders the digest being sealed from its id and the alerts offered to it ([`Store::seal`]);
/// it may cover only the first of them ([`Sealed::covers`]).
pub type Render<'a> = Box<dyn FnOnce(u64, &[Alert]) -> Sealed + Send + 'a>;

/// What sealing a digest produced: its message, prepared by the robot's provider, and how it
/// accounts for the alerts.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub message: Prepared,
    pub counts: Counts,
    /// Alerts shown on their own lines; the rest are summarized as counts.
    pub listed: u64,
    /// How many of the offered alerts the digest covers, from the first: `None` for all of
    /// them. A message that cannot be merged is sealed alone, and the alerts before it without
    /// it; the rest stay pending for the next digest. At least one, at most all.
    pub covers: Option<u64>,
    /// A message sent as it came, alone ([`DigestRecord::passthrough`]).
    pub passthrough: bool,
}

impl Sealed {
    /// The end of the range a digest sealed from `offered` alerts from `first` on covers.
    pub(crate) fn end(&self, first: u64, offered: usize) -> u64 {
        let offered = offered as u64;
        first + self.covers.map_or(offered, |n| n.clamp(1, offered.max(1)))
    }
}

/// A rendering with no request body (tests, and providers that post nothing).
impl From<Rendered> for Sealed {
    fn from(r: Rendered) -> Sealed {
        Sealed {
            listed: r.listed as u64,
            counts: r.counts,
            covers: None,
            passthrough: false,
            message: Prepared {
                title: r.title,
                text: r.text,
                body: serde_json::Value::Null,
            },
        }
    }
}

/// One alert of an ingest request, for [`Store::append`].
#[derive(Debug, Clone)]
pub struct Entry {
    pub robot: String,
    pub alert: Alert,
    /// The alert's dedup key, if it has one: a repeat within the robot's window is not queued.
    pub dedup_key: Option<String>,
}

/// An ingest request's Idempotency-Key and its body's fingerprint ([`request_fingerprint`]),
/// claimed with [`Store::claim_request`]; [`Store::append`] records the answer.
#[derive(Debug, Clone)]
pub struct RequestKey {
    pub key: String,
    pub body: String,
}

/// The id an alert is known by in answers: `<robot>:<seq>`.
pub fn alert_id(robot: &str, seq: u64) -> String {
    format!("{robot}:{seq}")
}

/// Appends `entries` robot by robot with `append(robot, alerts with their dedup keys)`, which
/// gives one slot per alert; returns the slots in request order. How a backend appends one
/// robot's alerts is its own; this order of work is the same for every backend.
pub(crate) fn append_by_robot<E>(
    entries: &[Entry],
    mut append: impl FnMut(&str, &[(&Alert, Option<&str>)]) -> Result<Vec<Slot>, E>,
) -> Result<Vec<Slot>, E> {
    let mut by_robot: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
    for (i, e) in entries.iter().enumerate() {
        by_robot.entry(e.robot.as_str()).or_default().push(i);
    }
    let mut slots = vec![Slot::New(0); entries.len()];
    for (robot, positions) in &by_robot {
        let keyed: Vec<(&Alert, Option<&str>)> = positions
            .iter()
            .map(|&i| (&entries[i].alert, entries[i].dedup_key.as_deref()))
            .collect();
        for (&i, slot) in positions.iter().zip(append(robot, &keyed)?) {
            slots[i] = slot;
        }
    }
    Ok(slots)
}

/// The answer an Idempotency-Key keeps: each entry's [`alert_id`].
pub(crate) fn answer_ids(entries: &[Entry], slots: &[Slot]) -> Vec<String> {
    entries
        .iter()
        .zip(slots)
        .map(|(e, s)| alert_id(&e.robot, s.seq()))
        .collect()
}

/// Where an append failed: before anything was promised, or while making it durable.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    Write(StoreError),
    #[error(transparent)]
    NotDurable(StoreError),
}

/// What a backend reports about itself for `/v1/status` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStatus {
    /// Where the data is, as a person reads it (the data directory).
    pub location: String,
    /// Bytes the store takes on disk.
    pub bytes_on_disk: u64,
    /// Bytes of alerts still referenced (the rest is garbage awaiting compaction).
    pub live_bytes: u64,
    /// Group commits (each one write and one sync), the calls they served, the largest batch.
    pub commits: u64,
    pub commit_requests: u64,
    pub largest_commit_batch: u64,
}

/// The durable queue, as every part of sluice sees it. **Each call returns once its effect is
/// durable** (a crash after the return loses nothing of it); a backend groups concurrent
/// callers' syncs as it likes. Only a robot's own task seals, updates its digests and writes
/// its send log (invariant 4).
pub trait Store: Send + Sync {
    /// Queues an ingest request's alerts (`entries`, in request order) and, with `request`, the
    /// Idempotency-Key's answer (their [`alert_id`]s), in one durable step. An alert whose dedup
    /// key the robot saw within `window(robot)` ms of `now_ms` is not queued again:
    /// [`Slot::Duplicate`] with the first one's sequence number. Returns a slot per entry.
    fn append<'a>(
        &'a self,
        entries: Vec<Entry>,
        request: Option<RequestKey>,
        now_ms: i64,
        window: Retention,
    ) -> StoreFuture<'a, Vec<Slot>, AppendError>;

    /// Claims an Idempotency-Key for a request with body fingerprint `body`. `Ok(None)`: it is
    /// ours: [`append`](Self::append) with it, or [`release_request`](Self::release_request).
    /// `Ok(Some(ids))`: the same request was answered within `window`. `Err(InFlight)`: the same
    /// request is being processed. `Err(Reused)`: the key belongs to another body. The one call
    /// of the trait that is not durable on return, on purpose: a claim only guards a request
    /// while it runs, and one left by a process that died counts as abandoned after
    /// `ABANDONED_CLAIM_MS`, so the client's retry is processed then.
    fn claim_request<'a>(
        &'a self,
        key: &'a str,
        body: &'a str,
        now_ms: i64,
        window: Duration,
    ) -> StoreFuture<'a, Option<Vec<String>>, Claim>;

    /// Gives a claim back after a failure, so the client's retry is processed anew (not durable
    /// either: a claim a crash left behind is abandoned after `ABANDONED_CLAIM_MS`).
    fn release_request<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()>;

    /// Alerts waiting for a robot's next digest.
    fn pending<'a>(&'a self, robot: &'a str) -> StoreFuture<'a, u64>;

    /// `received_ms` of the robot's oldest pending alert, if any.
    fn oldest_pending_ms<'a>(&'a self, robot: &'a str) -> StoreFuture<'a, Option<i64>>;

    /// Every robot with alerts in the store (pending or covered by a kept digest).
    fn robots(&self) -> StoreFuture<'_, Vec<String>>;

    /// Seals up to `max_alerts` of the robot's pending alerts into a new digest (ids are dense
    /// and never reused), rendered by `render(id, alerts)`, which may cover only the first of
    /// them ([`Sealed::covers`]: the cursor moves past those only); the record and the cursor
    /// move are one atomic step. `None` when nothing is pending.
    fn seal<'a>(
        &'a self,
        robot: &'a str,
        max_alerts: u64,
        now_ms: i64,
        render: Render<'a>,
    ) -> StoreFuture<'a, Option<DigestRecord>>;

    /// Writes back a digest's changed state (attempts, errors, sent or dead).
    fn update_digest<'a>(&'a self, record: &'a DigestRecord) -> StoreFuture<'a, ()>;

    fn digest(&self, id: u64) -> StoreFuture<'_, Option<DigestRecord>>;

    /// Every digest, oldest first.
    fn digests(&self) -> StoreFuture<'_, Vec<DigestRecord>>;

    /// The alerts a digest covers, with their sequence numbers. Empty once pruned.
    fn digest_alerts<'a>(&'a self, d: &'a DigestRecord) -> StoreFuture<'a, Vec<(u64, Alert)>>;

    /// The robot's recent sends as stored ([`crate::limit::resume`] brings them into the
    /// running clock).
    fn send_log<'a>(&'a self, robot: &'a str) -> StoreFuture<'a, StoredLog>;

    /// Replaces the robot's send log: a send recorded this way counts against the limit even
    /// if the process dies during the POST.
    fn set_send_log<'a>(&'a self, robot: &'a str, log: &'a StoredLog) -> StoreFuture<'a, ()>;

    /// The robot's quota count as last written ([`QuotaUsed`]); `None` if never written.
    fn quota_used<'a>(&'a self, robot: &'a str) -> StoreFuture<'a, Option<QuotaUsed>>;

    /// Replaces the robot's quota count, durable on return: a send counted this way counts
    /// against the quota even if the process dies during the POST.
    fn set_quota_used<'a>(&'a self, robot: &'a str, used: QuotaUsed) -> StoreFuture<'a, ()>;

    /// Deletes sent and replayed digests, with the alerts only they cover, once `retention`
    /// of their robot has passed, and dedup keys and request answers as old. Pending and dead
    /// digests stay. Returns how many digests went.
    fn prune(&self, now_ms: i64, retention: Retention) -> StoreFuture<'_, usize>;

    /// Queues a dead digest's alerts again for robot `to` and marks it replayed.
    fn replay<'a>(
        &'a self,
        id: u64,
        to: &'a str,
        now_ms: i64,
    ) -> StoreFuture<'a, DigestRecord, ReplayError>;

    /// Queues a delivered digest's alerts again for robot `to`; the digest stays as it was.
    fn redeliver<'a>(&'a self, id: u64, to: &'a str) -> StoreFuture<'a, DigestRecord, ReplayError>;

    /// Moves everything still queued for robot `from` (digests not yet delivered, pending
    /// alerts) to robot `to`, oldest first. Only while no task runs for `from`.
    fn move_queue<'a>(&'a self, from: &'a str, to: &'a str, now_ms: i64) -> StoreFuture<'a, Moved>;

    /// Sizes and commit figures for status and metrics.
    fn status(&self) -> StoreFuture<'_, StoreStatus>;

    /// Whether the store can still write; [`Health::failed`] wakes whoever reopens it.
    fn health(&self) -> &Arc<Health>;

    /// How often an idle lane looks for alerts that no wake-up announced: `None` where every
    /// alert is taken in this process (its ingest wakes the lane); in cluster mode any node takes
    /// alerts, and only the owner's own ingest wakes its lane.
    fn idle_recheck(&self) -> Option<std::time::Duration> {
        None
    }

    /// Clean shutdown.
    fn close(&self) -> StoreFuture<'_, ()>;
}

/// Opens the store configured for `dir` (the embedded sled backend), off the async workers.
pub async fn open(dir: &Path, cache_bytes: u64) -> Result<Arc<dyn Store>, StoreError> {
    let dir = dir.to_path_buf();
    let store = tokio::task::spawn_blocking(move || SledStore::open(&dir, cache_bytes))
        .await
        .expect("the store opener does not panic")?;
    Ok(Arc::new(SledBackend::new(store)))
}

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
    /// A write failed; sled keeps such an error, so the store is marked failed
    /// ([`Health`]) with the [`WriteError`]'s text.
    #[error("store write failed: {0}")]
    Write(#[source] WriteError),
    #[error("stored record {key} is unreadable: {detail}")]
    Decode { key: String, detail: String },
    /// Cluster mode: NATS did not answer, or has no quorum. Transient: the ingest layer answers
    /// 503 with `Retry-After`, and [`Health`] is not marked failed (nothing is reopened).
    #[error(
        "the NATS cluster is unavailable (no quorum, or no server reachable); retry later: {0}"
    )]
    Unavailable(String),
    /// Cluster mode: the lane is held by another node (or by none), so this node may not seal,
    /// reserve a send or move its queue.
    #[error("cluster: {0}")]
    NotOwner(String),
}

/// What made a write fail. Its text is what [`Health::error`] keeps.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("{0}")]
    Sled(#[source] ::sled::Error),
    #[error("transaction aborted")]
    Aborted,
    #[error("flush failed: {0}")]
    Flush(#[source] ::sled::Error),
    /// A file of the store: `what` names it and the step (`write-ahead log`, `cannot write
    /// sluice-store.json`).
    #[error("{what}: {source}")]
    File {
        what: String,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("{0}")]
    Encode(#[source] Arc<serde_json::Error>),
    #[error("the store is closed")]
    Closed,
    #[error("the commit thread stopped")]
    CommitStopped,
    /// The store failed earlier, for this reason ([`Health::error`]); nothing is written until
    /// it is reopened.
    #[error("{0}")]
    Failed(String),
}

impl StoreError {
    /// A failed write of a file of the store.
    pub fn file(what: impl Into<String>, source: std::io::Error) -> StoreError {
        StoreError::Write(WriteError::File {
            what: what.into(),
            source: Arc::new(source),
        })
    }

    /// A record that could not be encoded.
    pub fn encode(source: serde_json::Error) -> StoreError {
        StoreError::Write(WriteError::Encode(Arc::new(source)))
    }

    /// The store failed earlier for `why`.
    pub fn failed(why: impl Into<String>) -> StoreError {
        StoreError::Write(WriteError::Failed(why.into()))
    }
}

impl From<::sled::Error> for StoreError {
    fn from(e: ::sled::Error) -> Self {
        StoreError::Write(WriteError::Sled(e))
    }
}

impl From<::sled::transaction::TransactionError<()>> for StoreError {
    fn from(e: ::sled::transaction::TransactionError<()>) -> Self {
        match e {
            ::sled::transaction::TransactionError::Storage(e) => e.into(),
            ::sled::transaction::TransactionError::Abort(()) => {
                StoreError::Write(WriteError::Aborted)
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
    /// Done, but making it durable failed.
    #[error(transparent)]
    NotDurable(StoreError),
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

/// How many tries a digest's attempt log keeps (the last ones), and how much of each answer.
pub const TRIES_KEPT: usize = 20;
pub const SAID_MAX: usize = 300;

/// A sealed digest. Its message is prepared once, at sealing, so every retry sends the same
/// bytes (each try adds only its own timestamp and signature).
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
    /// The last [`TRIES_KEPT`] tries with the robot's answers ([`DigestRecord::note_try`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tries: Vec<Attempt>,
    pub title: String,
    /// The text as people read it, kept until the digest's `retention` ends (the console
    /// shows a sent digest as the group saw it; re-rendering it later could differ).
    #[serde(default)]
    pub text: String,
    /// The request body ([`Prepared::body`]); dropped once sent.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub body: serde_json::Value,
    /// Records sealed before messages were prepared at sealing have no body, but whom the
    /// message mentions, in their provider's terms: it prepares their body when they are sent.
    #[serde(default, rename = "mentions", skip_serializing_if = "Option::is_none")]
    pub unprepared: Option<serde_json::Value>,
    /// For a replayed dead digest: the robot its alerts were queued for again, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed_ms: Option<i64>,
    /// A message taken in by a front door that cannot be merged (a DingTalk feedCard, a Feishu
    /// image, a WeCom news card), sent alone with its body as it came: one alert, and no
    /// footer in its text.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub passthrough: bool,
    /// How many alerts it covers, where the range does not say: in cluster mode a lane's
    /// sequence is the stream's, with other lanes' messages between its own. `None`: the range
    /// is dense (`end_seq − first_seq`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<u64>,
}

impl DigestRecord {
    /// A new pending digest of `robot` covering `[first_seq, end_seq)`.
    pub fn sealed(
        id: u64,
        robot: &str,
        (first_seq, end_seq): (u64, u64),
        sealed: Sealed,
        now_ms: i64,
        oldest_ms: i64,
    ) -> DigestRecord {
        DigestRecord {
            id,
            robot: robot.to_string(),
            first_seq,
            end_seq,
            counts: sealed.counts,
            listed: sealed.listed,
            state: DigestState::Pending,
            attempts: 0,
            sealed_ms: now_ms,
            oldest_ms,
            sent_ms: None,
            last_error: None,
            tries: Vec::new(),
            title: sealed.message.title,
            text: sealed.message.text,
            body: sealed.message.body,
            unprepared: None,
            replayed_to: None,
            replayed_ms: None,
            passthrough: sealed.passthrough,
            alerts: None,
        }
    }

    /// Logs a try: the oldest goes once [`TRIES_KEPT`] are kept, and what the robot said is
    /// cut to [`SAID_MAX`] bytes, so a digest retried for days stays small on disk.
    pub fn note_try(&mut self, mut attempt: Attempt) {
        if let Some(said) = &mut attempt.said
            && said.len() > SAID_MAX
        {
            let mut end = SAID_MAX;
            while !said.is_char_boundary(end) {
                end -= 1;
            }
            said.truncate(end);
            said.push('…');
        }
        if self.tries.len() >= TRIES_KEPT {
            self.tries.drain(..=self.tries.len() - TRIES_KEPT);
        }
        self.tries.push(attempt);
    }

    /// How many alerts the digest covers.
    pub fn count(&self) -> u64 {
        self.alerts.unwrap_or(self.end_seq - self.first_seq)
    }

    /// The message to send.
    pub fn message(&self) -> Prepared {
        Prepared {
            title: self.title.clone(),
            text: self.text.clone(),
            body: self.body.clone(),
        }
    }
}

/// A robot's sends in one quota period ([`crate::quota`]): the period's start (Unix ms), how
/// many requests left in it, counted before each POST, and whether a digest sent in it carried
/// the 80 % line (so a restart does not give it twice).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaUsed {
    pub period_start_ms: i64,
    pub used: u64,
    #[serde(default)]
    pub warned: bool,
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

/// What identifies a request's content under its Idempotency-Key: the SHA-256 of its body, in hex.
pub fn request_fingerprint(body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A claim older than this (ms) belongs to a request that died with its process.
pub(crate) const ABANDONED_CLAIM_MS: i64 = 60_000;

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
