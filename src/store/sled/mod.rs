//! The embedded backend: sled, its write-ahead log, and the blob files (see the invariants in
//! [`crate::store`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use self::blob::{Blobs, Ref, Watermark};
use crate::alert::Alert;
use crate::store::{
    ABANDONED_CLAIM_MS, Claim, DigestRecord, DigestState, Health, Moved, ReplayError, Sealed, Slot,
    StoreError, WriteError,
};

mod backend;
pub mod blob;
pub mod chunk;
mod commit;
mod flush;
mod keys;
mod lane;
mod prune;
mod queue;
pub mod wal;

pub use self::backend::SledBackend;
pub use self::commit::CommitStats;
use self::commit::*;
use self::keys::*;
use self::lane::*;
use self::queue::Answered;
pub use self::queue::Sealing;
use tokio::sync::oneshot;

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

pub struct SledStore {
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
    /// Write-ahead log records written since the last commit took them (see [`wal`]).
    wal: Arc<Mutex<Vec<u8>>>,
    /// The next digest id: dense, and never one that was used before (see [`NEXT_DIGEST`]).
    next_digest: std::sync::atomic::AtomicU64,
    /// Concurrent [`SledStore::flush`] calls share flushes.
    flushes: flush::FlushGroup,
}

impl SledStore {
    /// Opens (or creates) the database in `dir`. A locked or corrupted directory is an error that
    /// says what to do; a broken store is never replaced by an empty one.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<SledStore, StoreError> {
        SledStore::open_with_segments(dir, cache_bytes, blob::SEGMENT_BYTES)
    }

    /// [`open`](Self::open) with blob segments of `segment_bytes` instead of
    /// [`blob::SEGMENT_BYTES`] (tests of compaction use small ones).
    pub fn open_with_segments(
        dir: &Path,
        cache_bytes: u64,
        segment_bytes: u64,
    ) -> Result<SledStore, StoreError> {
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
        let store = SledStore {
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
            flushes: flush::FlushGroup::default(),
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

    /// Applies what the write-ahead log holds beyond sled's last flush, flushes sled, and retires
    /// the log's files. Returns the generation for the next log file.
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
        wal::retire_before(&self.dir, next, 0).map_err(|e| corrupt(e.to_string()))?;
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
        let io = |e: std::io::Error| StoreError::file(format!("cannot write {MARKER}"), e);
        let tmp = self.dir.join(format!("{MARKER}.tmp"));
        let bytes = serde_json::to_vec_pretty(marker).map_err(StoreError::encode)?;
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
            return Err(StoreError::failed(e));
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
        if let Err(StoreError::Write(e)) = &result {
            self.health.fail(&e.to_string());
        }
        result
    }
}

impl Drop for SledStore {
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
