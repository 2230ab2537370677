//! [`SledStore`] as a [`Store`]. Calls that read files, sync or scan (seal, digest reads,
//! flushes, prune, replay, queue moves, close) run on tokio's blocking pool; the ingest path's
//! calls (append, pending, claims) only touch sled's in-memory trees and the log's buffer, and
//! run where they are called, as they did before the store was a trait: a hop to the blocking
//! pool per request cost 40 % of single-alert ingest (BENCHMARKS.md, issue 11). Every call returns
//! once durable: appends, replays and queue moves through the write-ahead log's group commit
//! (its own thread), the robot tasks' writes (seal, digest updates, send logs) and pruning
//! through a flush of sled.

use std::sync::Arc;

use super::*;
use crate::limit::StoredLog;
use crate::store::{
    AppendError, Entry, QuotaUsed, Render, RequestKey, Retention, Store, StoreFuture, StoreStatus,
    answer_ids, append_by_robot,
};

/// The embedded backend behind `Arc<dyn Store>`.
pub struct SledBackend(Arc<SledStore>);

impl SledBackend {
    pub fn new(store: SledStore) -> SledBackend {
        SledBackend(Arc::new(store))
    }

    /// The synchronous store underneath (tests, tools).
    pub fn inner(&self) -> &Arc<SledStore> {
        &self.0
    }

    /// Runs `f` here: for calls that only touch memory (sled's trees, the log's buffer).
    fn inline<T>(&self, f: impl FnOnce(&SledStore) -> T) -> std::future::Ready<T> {
        std::future::ready(f(&self.0))
    }

    /// Runs `f` on the blocking pool.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SledStore) -> T + Send + 'static,
    ) -> impl Future<Output = T> + Send + 'static {
        let store = self.0.clone();
        async move {
            match tokio::task::spawn_blocking(move || f(&store)).await {
                Ok(v) => v,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => panic!("a store call was cancelled: the runtime is shutting down"),
            }
        }
    }
}

use std::future::Future;

impl SledStore {
    /// Appends an ingest request's alerts, robot by robot, and records its Idempotency-Key's
    /// answer; durable with the next commit.
    pub fn append_entries(
        &self,
        entries: &[Entry],
        request: Option<&RequestKey>,
        now_ms: i64,
        window: &(dyn Fn(&str) -> Duration + Send + Sync),
    ) -> Result<Vec<Slot>, StoreError> {
        let slots = append_by_robot(entries, |robot, keyed| {
            self.append_keyed(robot, keyed, now_ms, window(robot))
        })?;
        if let Some(r) = request {
            let ids = answer_ids(entries, &slots);
            if let Err(e) = self.finish_request(&r.key, &r.body, &ids, now_ms) {
                // The alerts are queued either way; a retry would then be processed again.
                tracing::warn!("cannot record the Idempotency-Key answer: {e}");
            }
        }
        Ok(slots)
    }
}

impl Store for SledBackend {
    fn append<'a>(
        &'a self,
        entries: Vec<Entry>,
        request: Option<RequestKey>,
        now_ms: i64,
        window: Retention,
    ) -> StoreFuture<'a, Vec<Slot>, AppendError> {
        let appended =
            self.inline(move |s| s.append_entries(&entries, request.as_ref(), now_ms, &*window));
        Box::pin(async move {
            let slots = appended.await.map_err(AppendError::Write)?;
            self.0.commit().await.map_err(AppendError::NotDurable)?;
            Ok(slots)
        })
    }

    fn claim_request<'a>(
        &'a self,
        key: &'a str,
        body: &'a str,
        now_ms: i64,
        window: Duration,
    ) -> StoreFuture<'a, Option<Vec<String>>, Claim> {
        Box::pin(self.inline(move |s| s.claim_request(key, body, now_ms, window)))
    }

    fn release_request<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(self.inline(move |s| {
            s.release_request(key);
            Ok(())
        }))
    }

    fn pending<'a>(&'a self, robot: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(self.inline(move |s| s.pending(robot)))
    }

    fn oldest_pending_ms<'a>(&'a self, robot: &'a str) -> StoreFuture<'a, Option<i64>> {
        let robot = robot.to_string();
        Box::pin(self.run(move |s| s.oldest_pending_ms(&robot)))
    }

    fn robots(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(self.run(|s| s.robots()))
    }

    fn seal<'a>(
        &'a self,
        robot: &'a str,
        max_alerts: u64,
        now_ms: i64,
        render: Render<'a>,
    ) -> StoreFuture<'a, Option<DigestRecord>> {
        Box::pin(async move {
            let r = robot.to_string();
            let sealing = self.run(move |s| s.checked(s.to_seal(&r, max_alerts)));
            let Some(sealing) = sealing.await? else {
                return Ok(None);
            };
            // Rendered here, on the robot's task, as before the store was a trait.
            let sealed = render(sealing.id, &sealing.alerts);
            let r = robot.to_string();
            let record = self.run(move |s| {
                let record = s.checked(s.write_seal(&r, now_ms, sealing, sealed))?;
                s.flush()?;
                Ok(record)
            });
            record.await.map(Some)
        })
    }

    fn update_digest<'a>(&'a self, record: &'a DigestRecord) -> StoreFuture<'a, ()> {
        let record = record.clone();
        Box::pin(self.run(move |s| {
            s.update_digest(&record)?;
            s.flush()
        }))
    }

    fn digest(&self, id: u64) -> StoreFuture<'_, Option<DigestRecord>> {
        Box::pin(self.run(move |s| s.digest(id)))
    }

    fn digests(&self) -> StoreFuture<'_, Vec<DigestRecord>> {
        Box::pin(self.run(|s| s.digests().collect()))
    }

    fn digest_alerts<'a>(&'a self, d: &'a DigestRecord) -> StoreFuture<'a, Vec<(u64, Alert)>> {
        let (robot, first, end) = (d.robot.clone(), d.first_seq, d.end_seq);
        Box::pin(self.run(move |s| s.read_range(&robot, first, end)))
    }

    fn send_log<'a>(&'a self, robot: &'a str) -> StoreFuture<'a, StoredLog> {
        let robot = robot.to_string();
        Box::pin(self.run(move |s| s.stamped_send_log(&robot)))
    }

    fn set_send_log<'a>(&'a self, robot: &'a str, log: &'a StoredLog) -> StoreFuture<'a, ()> {
        let (robot, log) = (robot.to_string(), log.clone());
        Box::pin(self.run(move |s| s.set_stamped_send_log(&robot, &log, true)))
    }

    fn quota_used<'a>(&'a self, robot: &'a str) -> StoreFuture<'a, Option<QuotaUsed>> {
        let robot = robot.to_string();
        Box::pin(self.run(move |s| s.quota_used(&robot)))
    }

    fn set_quota_used<'a>(&'a self, robot: &'a str, used: QuotaUsed) -> StoreFuture<'a, ()> {
        let robot = robot.to_string();
        Box::pin(self.run(move |s| s.set_quota_used(&robot, used)))
    }

    fn prune(&self, now_ms: i64, retention: Retention) -> StoreFuture<'_, usize> {
        Box::pin(self.run(move |s| {
            let gone = s.prune(now_ms, |robot| retention(robot))?;
            s.flush()?;
            Ok(gone)
        }))
    }

    fn replay<'a>(
        &'a self,
        id: u64,
        to: &'a str,
        now_ms: i64,
    ) -> StoreFuture<'a, DigestRecord, ReplayError> {
        let target = to.to_string();
        let replayed = self.run(move |s| s.replay(id, &target, now_ms));
        Box::pin(async move {
            let d = replayed.await?;
            self.0.commit().await.map_err(ReplayError::NotDurable)?;
            Ok(d)
        })
    }

    fn redeliver<'a>(&'a self, id: u64, to: &'a str) -> StoreFuture<'a, DigestRecord, ReplayError> {
        let target = to.to_string();
        let queued = self.run(move |s| s.redeliver(id, &target));
        Box::pin(async move {
            let d = queued.await?;
            self.0.commit().await.map_err(ReplayError::NotDurable)?;
            Ok(d)
        })
    }

    fn move_queue<'a>(&'a self, from: &'a str, to: &'a str, now_ms: i64) -> StoreFuture<'a, Moved> {
        let (from, to) = (from.to_string(), to.to_string());
        let moved = self.run(move |s| s.move_queue(&from, &to, now_ms));
        Box::pin(async move {
            let moved = moved.await?;
            self.0.commit().await?;
            Ok(moved)
        })
    }

    fn status(&self) -> StoreFuture<'_, StoreStatus> {
        Box::pin(self.run(|s| {
            use std::sync::atomic::Ordering::Relaxed;
            let stats = s.commit_stats();
            Ok(StoreStatus {
                location: s.dir().display().to_string(),
                bytes_on_disk: s.size_on_disk(),
                live_bytes: s.blob_usage().live_bytes,
                commits: stats.flushes.load(Relaxed),
                commit_requests: stats.requests.load(Relaxed),
                largest_commit_batch: stats.largest_batch.load(Relaxed),
            })
        }))
    }

    fn health(&self) -> &Arc<Health> {
        self.0.health()
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.run(|s| s.close()))
    }
}
