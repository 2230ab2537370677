//! [`Store`] for [`JetStreamStore`]: each call is one or a few JetStream requests, and returns
//! once the cluster acknowledged its writes (a quorum has them). Queue calls take the lane's
//! name (`Entry::robot` and `seal`'s robot are queues, resolved by the ingest layer); send logs
//! and quotas take a member's name and live in its lane's record ([`JetStreamStore::lane_of`]).
//! What differs from the embedded store:
//!
//! - A sequence is the alert's `SLUICE_ALERTS` stream sequence: increasing and unique per lane,
//!   not dense, and not per lane (lanes share the stream). A digest's `[first_seq, end_seq)`
//!   spans other lanes' sequences too, so it keeps how many it covers (`DigestRecord::alerts`,
//!   which `DigestRecord::count` reads).
//! - Only the node holding a lane seals it, updates its pending digests, writes its send logs
//!   and quotas, moves its queue or prunes it; elsewhere these are refused
//!   ([`StoreError::NotOwner`]). Reads and appends work on every node.
//! - A send log is kept as wall-clock ms and handed back on this node's boot clock; a
//!   reservation ([`Store::set_send_log`]) the lease could not cover is refused after it was
//!   written (the slot counts, the POST must not start).
//! - [`Store::robots`] lists lanes with messages in the stream.
//! - Digest ids are unique and increasing, dense unless a seal fails after taking its id.
//! - NATS unreachable or without quorum is [`StoreError::Unavailable`] (503 upstream); the
//!   [`Health`] cell is never failed by it, since nothing needs reopening.

use std::sync::Arc;

use futures_util::StreamExt;

use super::{JetStreamStore, control, scan, subject};
use crate::limit::StoredLog;
use crate::store::{
    AppendError, Claim, DigestRecord, Entry, Health, Moved, QuotaUsed, Render, ReplayError,
    RequestKey, Retention, Slot, Store, StoreError, StoreFuture, StoreStatus,
};

impl JetStreamStore {
    /// Messages per lane subject in the stream, by lane.
    async fn subject_counts(&self, filter: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let mut info = self
            .nats
            .alerts
            .info_with_subjects(filter)
            .await
            .map_err(|e| scan::unavailable("reading the alert stream", e))?;
        let mut out = Vec::new();
        while let Some(item) = info.next().await {
            let (subject, count) =
                item.map_err(|e| scan::unavailable("reading the alert stream", e))?;
            let lane = subject.strip_prefix("sluice.a.").and_then(control::name_of);
            if let Some(lane) = lane {
                out.push((lane, count as u64));
            }
        }
        Ok(out)
    }

    /// Messages on one lane's subject.
    pub(super) async fn subject_count(&self, subject: &str) -> Result<u64, StoreError> {
        let counts = self.subject_counts(subject).await?;
        Ok(counts.into_iter().map(|(_, n)| n).sum())
    }

    async fn pending_of(&self, lane: &str) -> Result<u64, StoreError> {
        let count = self.subject_count(&subject(lane)).await?;
        let kept = self.control_of(lane).await?.kept;
        Ok(count.saturating_sub(kept))
    }

    async fn oldest_of(&self, lane: &str) -> Result<Option<i64>, StoreError> {
        let cursor = self.control_of(lane).await?.cursor;
        let subject = subject(lane);
        let next = self
            .nats
            .alerts
            .raw_message_builder()
            .sequence(cursor.max(1))
            .next_by_subject(subject.clone())
            .send()
            .await;
        match next {
            Ok(m) => Ok(Some(
                scan::decode_alert(&subject, m.sequence, &m.payload)?.received_ms,
            )),
            Err(e)
                if e.kind()
                    == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
            {
                Ok(None)
            }
            Err(e) => Err(scan::unavailable(&format!("reading {subject}"), e)),
        }
    }

    async fn lanes_with_alerts(&self) -> Result<Vec<String>, StoreError> {
        let mut lanes: Vec<String> = self
            .subject_counts("sluice.a.*")
            .await?
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(l, _)| l)
            .collect();
        lanes.sort();
        lanes.dedup();
        Ok(lanes)
    }

    async fn stored_log(&self, robot: &str) -> Result<StoredLog, StoreError> {
        let lane = self.lane_of(robot);
        let wall = self.control_of(&lane).await?.sends.remove(robot);
        Ok(match wall {
            // On this node's boot clock now, so `limit::resume` keeps the exact wall times.
            Some(wall) if !wall.is_empty() => self.clock.stored(&wall),
            _ => StoredLog::Wall(Vec::new()),
        })
    }

    /// Records the robot's send log: the reservation before a POST. The write renews the
    /// lease; if even so it could not outlast the request, the POST must not start.
    async fn reserve(&self, robot: &str, log: &StoredLog) -> Result<(), StoreError> {
        let lane = self.lane_of(robot);
        let wall = log.wall_ms();
        let member = robot.to_string();
        let held = self
            .records
            .write(&lane, move |c| {
                c.sends.insert(member, wall);
            })
            .await
            .map_err(super::digests::write_error)?;
        let timeout = self.request_timeout(&lane);
        if !self
            .lease
            .may_send(held.renewed, tokio::time::Instant::now(), timeout)
        {
            return Err(StoreError::NotOwner(format!(
                "lane {lane}: the lease (renewed just now) would not outlast a {timeout:?} request; not sending"
            )));
        }
        Ok(())
    }

    async fn quota_of(&self, robot: &str) -> Result<Option<QuotaUsed>, StoreError> {
        let lane = self.lane_of(robot);
        Ok(self.control_of(&lane).await?.quotas.remove(robot))
    }

    async fn set_quota(&self, robot: &str, used: QuotaUsed) -> Result<(), StoreError> {
        let lane = self.lane_of(robot);
        let member = robot.to_string();
        self.records
            .write(&lane, move |c| {
                c.quotas.insert(member, used);
            })
            .await
            .map_err(super::digests::write_error)?;
        Ok(())
    }

    async fn stream_status(&self) -> Result<StoreStatus, StoreError> {
        let info = self
            .nats
            .alerts
            .get_info()
            .await
            .map_err(|e| scan::unavailable("reading the alert stream", e))?;
        let server = self.nats.client.server_info();
        Ok(StoreStatus {
            location: format!(
                "NATS JetStream at nats://{}:{} (server {}), node {}",
                server.host,
                server.port,
                server.server_name,
                self.records.node()
            ),
            bytes_on_disk: info.state.bytes,
            live_bytes: info.state.bytes,
            ..StoreStatus::default()
        })
    }
}

impl Store for JetStreamStore {
    fn append<'a>(
        &'a self,
        entries: Vec<Entry>,
        request: Option<RequestKey>,
        now_ms: i64,
        window: Retention,
    ) -> StoreFuture<'a, Vec<Slot>, AppendError> {
        Box::pin(self.append_entries(entries, request, now_ms, window))
    }

    fn claim_request<'a>(
        &'a self,
        key: &'a str,
        body: &'a str,
        now_ms: i64,
        window: std::time::Duration,
    ) -> StoreFuture<'a, Option<Vec<String>>, Claim> {
        Box::pin(self.claim(key, body, now_ms, window))
    }

    fn release_request<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(self.release(key))
    }

    fn pending<'a>(&'a self, robot: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(self.pending_of(robot))
    }

    fn oldest_pending_ms<'a>(&'a self, robot: &'a str) -> StoreFuture<'a, Option<i64>> {
        Box::pin(self.oldest_of(robot))
    }

    fn robots(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(self.lanes_with_alerts())
    }

    fn seal<'a>(
        &'a self,
        robot: &'a str,
        max_alerts: u64,
        now_ms: i64,
        render: Render<'a>,
    ) -> StoreFuture<'a, Option<DigestRecord>> {
        Box::pin(self.seal_lane(robot, max_alerts, now_ms, render))
    }

    fn update_digest<'a>(&'a self, record: &'a DigestRecord) -> StoreFuture<'a, ()> {
        Box::pin(self.update(record))
    }

    fn digest(&self, id: u64) -> StoreFuture<'_, Option<DigestRecord>> {
        Box::pin(self.digest_by_id(id))
    }

    fn digests(&self) -> StoreFuture<'_, Vec<DigestRecord>> {
        Box::pin(self.all_digests())
    }

    fn digest_alerts<'a>(
        &'a self,
        d: &'a DigestRecord,
    ) -> StoreFuture<'a, Vec<(u64, crate::alert::Alert)>> {
        Box::pin(self.alerts_of(d))
    }

    fn send_log<'a>(&'a self, robot: &'a str) -> StoreFuture<'a, StoredLog> {
        Box::pin(self.stored_log(robot))
    }

    fn set_send_log<'a>(&'a self, robot: &'a str, log: &'a StoredLog) -> StoreFuture<'a, ()> {
        Box::pin(self.reserve(robot, log))
    }

    fn quota_used<'a>(&'a self, robot: &'a str) -> StoreFuture<'a, Option<QuotaUsed>> {
        Box::pin(self.quota_of(robot))
    }

    fn set_quota_used<'a>(&'a self, robot: &'a str, used: QuotaUsed) -> StoreFuture<'a, ()> {
        Box::pin(self.set_quota(robot, used))
    }

    fn prune(&self, now_ms: i64, retention: Retention) -> StoreFuture<'_, usize> {
        Box::pin(self.prune_lanes(now_ms, retention))
    }

    fn replay<'a>(
        &'a self,
        id: u64,
        to: &'a str,
        now_ms: i64,
    ) -> StoreFuture<'a, DigestRecord, ReplayError> {
        Box::pin(self.replay_digest(id, to, now_ms))
    }

    fn redeliver<'a>(&'a self, id: u64, to: &'a str) -> StoreFuture<'a, DigestRecord, ReplayError> {
        Box::pin(self.redeliver_digest(id, to))
    }

    fn move_queue<'a>(&'a self, from: &'a str, to: &'a str, now_ms: i64) -> StoreFuture<'a, Moved> {
        Box::pin(self.move_lane(from, to, now_ms))
    }

    fn status(&self) -> StoreFuture<'_, StoreStatus> {
        Box::pin(self.stream_status())
    }

    fn health(&self) -> &Arc<Health> {
        self.health_cell()
    }

    /// A renewal period: alerts another node took are seen about as soon as an ownership change.
    fn idle_recheck(&self) -> Option<std::time::Duration> {
        Some(self.lease.renew)
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.nats
                .client
                .flush()
                .await
                .map_err(|e| scan::unavailable("flushing the NATS connection", e))
        })
    }
}
