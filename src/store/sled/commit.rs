//! The commit thread: group commits of the write-ahead log, and its checkpoints.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use super::*;

/// Makes sled durable, and the blob bytes its references point to before it (invariant 6):
/// the blob files are synced and the watermark recorded first.
pub(super) fn durable_flush(
    db: &sled::Db,
    meta: &sled::Tree,
    blobs: &Blobs,
) -> Result<(), WriteError> {
    let synced = blobs.sync().map_err(|e| WriteError::File {
        what: "cannot sync the blob files".into(),
        source: Arc::new(e),
    })?;
    if let Some(mark) = synced {
        meta.insert(WATERMARK, &mark.encode()[..])
            .map_err(WriteError::Flush)?;
    }
    db.flush().map_err(WriteError::Flush)?;
    Ok(())
}

pub(super) type Waiter = oneshot::Sender<Result<(), StoreError>>;

/// Group-commit figures: `requests / flushes` is the mean batch size.
#[derive(Debug, Default)]
pub struct CommitStats {
    pub flushes: std::sync::atomic::AtomicU64,
    pub requests: std::sync::atomic::AtomicU64,
    pub largest_batch: std::sync::atomic::AtomicU64,
}

/// After this long without a commit, the write-ahead log is checkpointed whatever its size.
pub(super) const IDLE_CHECKPOINT: Duration = Duration::from_secs(2);

/// How long the commit thread waits for stragglers when requests are arriving concurrently.
pub(super) const GATHER: Duration = Duration::from_micros(250);

/// The commit thread: makes the write-ahead log records gathered since its last round durable
/// with one write and one `fdatasync`, answers every caller that was waiting for them, and
/// checkpoints the log when it has grown.
pub(super) struct Committer {
    /// A checkpoint's flush is running.
    pub(super) checkpointing: Arc<std::sync::atomic::AtomicBool>,
    pub(super) sink: Sink,
    pub(super) meta: sled::Tree,
    pub(super) lanes: Lanes,
    pub(super) db: sled::Db,
    pub(super) dir: PathBuf,
    pub(super) writer: wal::Writer,
    pub(super) wal: Arc<Mutex<Vec<u8>>>,
    pub(super) stats: Arc<CommitStats>,
    pub(super) health: Arc<Health>,
}

impl Committer {
    pub(super) fn run(mut self, rx: mpsc::Receiver<Waiter>) {
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
                    .map_err(|e| StoreError::file("write-ahead log", e))
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
    /// makes sled durable and retires the older files (one stays as the spare). Every record in them was added after its
    /// change went into sled or into a lane's tail (`SledStore::log`), and the tails go into sled
    /// here first, so sled's flush covers them all.
    pub(super) fn checkpoint(&mut self) -> Result<(), String> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.checkpointing.load(SeqCst) {
            return Ok(());
        }
        let (old, used) = self
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
                let done = durable_flush(&db, &meta, &blobs).map_err(|e| e.to_string());
                let done = done.and_then(|_| {
                    wal::retire_before(&dir, old + 1, used)
                        .map_err(|e| format!("write-ahead log: cannot retire old files: {e}"))
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
