//! The durable queue: one sled database in `server.data_dir`, five trees, a write-ahead log
//! beside it ([`sled::wal`]), and the alerts' bytes in segment files under `segments/`
//! ([`sled::blob`]).
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

use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::digest::Counts;

pub mod sled;

pub use self::sled::{BLOB_DIR, CommitStats, MARKER, SledStore as Store};

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

impl From<::sled::Error> for StoreError {
    fn from(e: ::sled::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

impl From<::sled::transaction::TransactionError<()>> for StoreError {
    fn from(e: ::sled::transaction::TransactionError<()>) -> Self {
        match e {
            ::sled::transaction::TransactionError::Storage(e) => StoreError::Io(e.to_string()),
            ::sled::transaction::TransactionError::Abort(()) => {
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
