//! Digests on the cluster backend. A digest sealed and not yet delivered lives in its lane's
//! control record (`outbox`), so a seal is one CAS that also moves the cursor: atomic, and only
//! by the node that holds the lane. Once delivered, dead or replayed it moves to
//! `sluice_digest` under `d.<id>` (written first, then dropped from the outbox by one write: a
//! crash between leaves a stale outbox copy, and wherever both exist the `d.<id>` one wins).
//! Ids come from the counter `next` in the same bucket, raised by CAS: unique, and dense unless a
//! node dies (or loses a lease) between taking an id and sealing with it.

use std::collections::BTreeMap;

use super::control::{self, Control};
use super::queue::{self, Outgoing};
use super::scan::{self, unavailable};
use super::{JetStreamStore, subject};
use crate::alert::Alert;
use crate::store::{DigestRecord, DigestState, Moved, Render, ReplayError, Retention, StoreError};

/// The key of a delivered, dead or replayed digest in `sluice_digest`.
pub(super) fn digest_key(id: u64) -> String {
    format!("d.{id}")
}

const NEXT: &str = "next";

/// A control write that did not happen, as the store reports it.
pub(super) fn write_error(e: control::WriteError) -> StoreError {
    match e {
        control::WriteError::Lost(_) => StoreError::NotOwner(e.to_string()),
        control::WriteError::Unavailable { .. } => StoreError::Unavailable(e.to_string()),
    }
}

fn json<T: serde::Serialize>(value: &T) -> bytes::Bytes {
    serde_json::to_vec(value)
        .expect("a record of plain fields encodes")
        .into()
}

impl JetStreamStore {
    /// What this node holds of `lane`, or why it may not `what`.
    pub(super) async fn must_hold(
        &self,
        lane: &str,
        what: &str,
    ) -> Result<control::Held, StoreError> {
        self.records.held(lane).await.ok_or_else(|| {
            StoreError::NotOwner(format!(
                "lane {lane} is held by another node (or by none yet), not by {}: cannot {what} here",
                self.records.node()
            ))
        })
    }

    /// `lane`'s control record: this node's copy if it holds it, else the leader's (a default
    /// one if the lane never had a record).
    pub(super) async fn control_of(&self, lane: &str) -> Result<Control, StoreError> {
        if let Some(h) = self.records.held(lane).await {
            return Ok(h.control);
        }
        match self.records.read_leader(lane).await {
            Ok(c) => Ok(c.map(|(c, _)| c).unwrap_or_default()),
            Err(e) => Err(StoreError::Unavailable(e)),
        }
    }

    /// Every lane's control record, as the leader has them.
    async fn controls(&self) -> Result<Vec<(String, Control)>, StoreError> {
        let mut out = Vec::new();
        for (key, bytes) in scan::bucket(&self.nats.robots, "").await? {
            let Some(lane) = control::name_of(&key) else {
                continue;
            };
            let c: Control = serde_json::from_slice(&bytes).map_err(|e| StoreError::Decode {
                key: format!("{}/{key}", control::BUCKET),
                detail: e.to_string(),
            })?;
            out.push((lane, c));
        }
        Ok(out)
    }

    /// Every digest in `sluice_digest`.
    async fn stored_digests(&self) -> Result<Vec<DigestRecord>, StoreError> {
        let mut out = Vec::new();
        for (key, bytes) in scan::bucket(&self.nats.digests, "d.").await? {
            out.push(
                serde_json::from_slice(&bytes).map_err(|e| StoreError::Decode {
                    key: format!("sluice_digest/{key}"),
                    detail: e.to_string(),
                })?,
            );
        }
        Ok(out)
    }

    /// The next digest id.
    async fn take_digest_id(&self) -> Result<u64, StoreError> {
        let kv = &self.nats.digests;
        for attempt in 0..50 {
            if attempt > 0 {
                // Lost to another seal (any node's): back off a little, then read again.
                tokio::time::sleep(std::time::Duration::from_millis(attempt)).await;
            }
            match scan::leader_json::<u64>(kv, NEXT).await? {
                None if kv.create(NEXT, json(&2u64)).await.is_ok() => return Ok(1),
                Some((next, revision))
                    if kv.update(NEXT, json(&(next + 1)), revision).await.is_ok() =>
                {
                    return Ok(next);
                }
                _ => {}
            }
        }
        Err(unavailable(
            "taking a digest id",
            "no write of the counter won after 50 tries",
        ))
    }

    pub(super) async fn seal_lane(
        &self,
        lane: &str,
        max_alerts: u64,
        now_ms: i64,
        render: Render<'_>,
    ) -> Result<Option<DigestRecord>, StoreError> {
        let held = self.must_hold(lane, "seal a digest").await?;
        let first = held.control.cursor;
        let max = usize::try_from(max_alerts).unwrap_or(usize::MAX);
        let read = scan::alerts(&self.nats.alerts, &subject(lane), first, u64::MAX, max).await?;
        if read.is_empty() {
            return Ok(None);
        }
        let id = self.take_digest_id().await?;
        let (seqs, alerts): (Vec<u64>, Vec<Alert>) = read.into_iter().unzip();
        let sealed = render(id, &alerts);
        let n = sealed.end(0, alerts.len()) as usize;
        let end = seqs[n - 1] + 1;
        let oldest = alerts[..n]
            .iter()
            .map(|a| a.received_ms)
            .min()
            .unwrap_or(now_ms);
        let mut record = DigestRecord::sealed(id, lane, (first, end), sealed, now_ms, oldest);
        record.alerts = Some(n as u64);
        let outboxed = record.clone();
        self.records
            .write(lane, move |c| {
                c.cursor = end;
                c.kept += n as u64;
                c.outbox.push(outboxed);
            })
            .await
            .map_err(write_error)?;
        Ok(Some(record))
    }

    pub(super) async fn update(&self, record: &DigestRecord) -> Result<(), StoreError> {
        let lane = record.robot.as_str();
        let id = record.id;
        if record.state == DigestState::Pending {
            let r = record.clone();
            self.records
                .write(lane, move |c| {
                    match c.outbox.iter_mut().find(|d| d.id == id) {
                        Some(d) => *d = r,
                        None => {
                            c.outbox.push(r);
                            c.outbox.sort_by_key(|d| d.id);
                        }
                    }
                })
                .await
                .map_err(write_error)?;
            return Ok(());
        }
        self.nats
            .digests
            .put(digest_key(id), json(record))
            .await
            .map_err(|e| unavailable(&format!("writing digest #{id}"), e))?;
        let in_outbox = |c: &Control| c.outbox.iter().any(|d| d.id == id);
        match self.records.held(lane).await {
            Some(h) if in_outbox(&h.control) => {
                self.records
                    .write(lane, move |c| c.outbox.retain(|d| d.id != id))
                    .await
                    .map_err(write_error)?;
            }
            Some(_) => {}
            // Stored already, and `d.<id>` wins; the owner's next update drops its copy.
            None => {}
        }
        Ok(())
    }

    /// Digest `id`, and its revision in `sluice_digest` if it is there (not in an outbox).
    async fn find(&self, id: u64) -> Result<Option<(DigestRecord, Option<u64>)>, StoreError> {
        if let Some((d, revision)) =
            scan::leader_json::<DigestRecord>(&self.nats.digests, &digest_key(id)).await?
        {
            return Ok(Some((d, Some(revision))));
        }
        for (_, c) in self.controls().await? {
            if let Some(d) = c.outbox.into_iter().find(|d| d.id == id) {
                return Ok(Some((d, None)));
            }
        }
        Ok(None)
    }

    pub(super) async fn digest_by_id(&self, id: u64) -> Result<Option<DigestRecord>, StoreError> {
        Ok(self.find(id).await?.map(|(d, _)| d))
    }

    pub(super) async fn all_digests(&self) -> Result<Vec<DigestRecord>, StoreError> {
        let mut by_id = BTreeMap::new();
        for (_, c) in self.controls().await? {
            by_id.extend(c.outbox.into_iter().map(|d| (d.id, d)));
        }
        by_id.extend(self.stored_digests().await?.into_iter().map(|d| (d.id, d)));
        Ok(by_id.into_values().collect())
    }

    pub(super) async fn alerts_of(
        &self,
        d: &DigestRecord,
    ) -> Result<Vec<(u64, Alert)>, StoreError> {
        let subject = subject(&d.robot);
        scan::alerts(
            &self.nats.alerts,
            &subject,
            d.first_seq,
            d.end_seq,
            usize::MAX,
        )
        .await
    }

    /// Publishes `alerts` to `to`'s subject under ids `<prefix>:<i>`.
    async fn queue_again(
        &self,
        alerts: &[(u64, Alert)],
        to: &str,
        prefix: &str,
    ) -> Result<(), (usize, StoreError)> {
        let mut out = Vec::with_capacity(alerts.len());
        for (i, (_, a)) in alerts.iter().enumerate() {
            out.push(Outgoing {
                subject: subject(to),
                id: format!("{prefix}:{i}"),
                payload: json(a),
            });
        }
        self.publish_all(&out).await.map(|_| ())
    }

    pub(super) async fn replay_digest(
        &self,
        id: u64,
        to: &str,
        now_ms: i64,
    ) -> Result<DigestRecord, ReplayError> {
        let Some((mut d, revision)) = self.find(id).await.map_err(ReplayError::Store)? else {
            return Err(ReplayError::NotFound(id));
        };
        if d.state != DigestState::Dead {
            return Err(ReplayError::NotDead(id, d.state));
        }
        let alerts = self.alerts_of(&d).await.map_err(ReplayError::Store)?;
        // A retry of this replay publishes the same ids: queued once.
        self.queue_again(&alerts, to, &format!("replay:{id}"))
            .await
            .map_err(|(acked, e)| match acked {
                0 => ReplayError::Store(e),
                _ => ReplayError::NotDurable(e),
            })?;
        d.state = DigestState::Replayed;
        d.replayed_to = Some(to.to_string());
        d.replayed_ms = Some(now_ms);
        let key = digest_key(id);
        let marked = match revision {
            Some(r) => self
                .nats
                .digests
                .update(&key, json(&d), r)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => self
                .nats
                .digests
                .create(&key, json(&d))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
        marked.map_err(|e| {
            ReplayError::NotDurable(unavailable(&format!("marking digest #{id} replayed"), e))
        })?;
        Ok(d)
    }

    pub(super) async fn redeliver_digest(
        &self,
        id: u64,
        to: &str,
    ) -> Result<DigestRecord, ReplayError> {
        let Some((d, _)) = self.find(id).await.map_err(ReplayError::Store)? else {
            return Err(ReplayError::NotFound(id));
        };
        if d.state != DigestState::Sent {
            return Err(ReplayError::NotSent(id, d.state));
        }
        let alerts = self.alerts_of(&d).await.map_err(ReplayError::Store)?;
        // Each re-delivery is asked for on purpose: its own ids.
        let prefix = format!("redeliver:{id}:{}", nuid::next());
        self.queue_again(&alerts, to, &prefix)
            .await
            .map_err(|(acked, e)| match acked {
                0 => ReplayError::Store(e),
                _ => ReplayError::NotDurable(e),
            })?;
        Ok(d)
    }

    pub(super) async fn move_lane(
        &self,
        from: &str,
        to: &str,
        now_ms: i64,
    ) -> Result<Moved, StoreError> {
        let held = self.must_hold(from, "move its queue").await?;
        let mut moved = Moved::default();
        let mut out = Vec::new();
        let mut marked = Vec::new();
        for d in &held.control.outbox {
            let stored = scan::leader_json::<DigestRecord>(&self.nats.digests, &digest_key(d.id))
                .await?
                .map(|(s, _)| s);
            let d = stored.unwrap_or_else(|| d.clone());
            if d.state != DigestState::Pending {
                continue;
            }
            let alerts = self.alerts_of(&d).await?;
            for (i, (_, a)) in alerts.iter().enumerate() {
                out.push(Outgoing {
                    subject: subject(to),
                    id: format!("move:{}:{i}", d.id),
                    payload: json(a),
                });
            }
            moved.alerts += alerts.len() as u64;
            moved.digests += 1;
            marked.push(d);
        }
        let subject_from = subject(from);
        let cursor = held.control.cursor;
        let pending = scan::alerts(
            &self.nats.alerts,
            &subject_from,
            cursor,
            u64::MAX,
            usize::MAX,
        )
        .await?;
        for (seq, a) in &pending {
            out.push(Outgoing {
                subject: subject(to),
                id: format!("move:{}:{seq}", control::key(from)),
                payload: json(a),
            });
        }
        moved.alerts += pending.len() as u64;
        self.publish_all(&out).await.map_err(|(_, e)| e)?;
        for d in &mut marked {
            d.state = DigestState::Replayed;
            d.replayed_to = Some(to.to_string());
            d.replayed_ms = Some(now_ms);
            self.nats
                .digests
                .put(digest_key(d.id), json(d))
                .await
                .map_err(|e| unavailable(&format!("writing digest #{}", d.id), e))?;
        }
        let end = pending.last().map_or(cursor, |(seq, _)| seq + 1);
        let n = pending.len() as u64;
        self.records
            .write(from, move |c| {
                c.outbox.clear();
                c.cursor = c.cursor.max(end);
                c.kept += n;
            })
            .await
            .map_err(write_error)?;
        Ok(moved)
    }

    pub(super) async fn prune_lanes(
        &self,
        now_ms: i64,
        retention: Retention,
    ) -> Result<usize, StoreError> {
        let expired = |ms: i64, keep: std::time::Duration| ms + keep.as_millis() as i64 <= now_ms;
        let held = self.records.held_lanes().await;
        // The records before the stored digests: a digest `update` moves from the outbox to
        // `sluice_digest` (stored first) is then seen in one or the other, never in neither.
        let mut records = Vec::with_capacity(held.len());
        for lane in &held {
            if let Some(h) = self.records.held(lane).await {
                records.push((lane, h));
            }
        }
        let stored = self.stored_digests().await?;
        let mut deleted = 0;
        for (lane, h) in records {
            self.recount_kept(lane).await?;
            let (doomed, kept): (Vec<&DigestRecord>, Vec<&DigestRecord>) =
                stored.iter().filter(|d| &d.robot == lane).partition(|d| {
                    let done = match d.state {
                        DigestState::Sent => d.sent_ms,
                        DigestState::Replayed => d.replayed_ms,
                        DigestState::Pending | DigestState::Dead => None,
                    };
                    done.is_some_and(|done| expired(done, retention(lane)))
                });
            // Outbox copies of digests stored since (a crash between the two writes of
            // `update`) are stale: dropped with this lane's write below.
            let stale: Vec<u64> = h
                .control
                .outbox
                .iter()
                .filter(|o| stored.iter().any(|d| d.id == o.id))
                .map(|o| o.id)
                .collect();
            if doomed.is_empty() && stale.is_empty() {
                continue;
            }
            let floor = kept
                .iter()
                .map(|d| d.first_seq)
                .chain(
                    h.control
                        .outbox
                        .iter()
                        .filter(|o| !stale.contains(&o.id))
                        .map(|d| d.first_seq),
                )
                .fold(h.control.cursor, u64::min);
            let subject = subject(lane);
            let mut removed = 0u64;
            if floor > 1 && !doomed.is_empty() {
                let purged = self
                    .nats
                    .alerts
                    .purge()
                    .filter(&subject)
                    .sequence(floor)
                    .await
                    .map_err(|e| unavailable(&format!("purging {subject}"), e))?;
                removed += purged.purged;
            }
            // Above the floor, a pruned digest's alerts go one by one (a kept one sits below).
            for d in doomed.iter().filter(|d| d.end_seq > floor) {
                let first = d.first_seq.max(floor);
                let alerts =
                    scan::alerts(&self.nats.alerts, &subject, first, d.end_seq, usize::MAX).await?;
                for (seq, _) in alerts {
                    if self.nats.alerts.delete_message(seq).await.is_ok() {
                        removed += 1;
                    }
                }
            }
            if removed > 0 || !stale.is_empty() {
                self.records
                    .write(lane, move |c| {
                        c.kept = c.kept.saturating_sub(removed);
                        c.outbox.retain(|d| !stale.contains(&d.id));
                    })
                    .await
                    .map_err(write_error)?;
            }
            for d in doomed {
                self.nats
                    .digests
                    .purge(digest_key(d.id))
                    .await
                    .map_err(|e| unavailable(&format!("deleting digest #{}", d.id), e))?;
                deleted += 1;
            }
        }
        self.expire_keys(now_ms, &retention, &held).await?;
        Ok(deleted)
    }

    /// Sets `lane`'s `kept` to the messages of its subject below the cursor, as the stream has
    /// them now: a crash between a purge and the write that subtracts it, or a keyed repeat
    /// deleted after a seal covered it, leaves it too high (and `pending` too low) until then.
    /// Counted between two reads of the total that agree, so no append falls in between.
    async fn recount_kept(&self, lane: &str) -> Result<(), StoreError> {
        let Some(h) = self.records.held(lane).await else {
            return Ok(());
        };
        let cursor = h.control.cursor;
        let subject = subject(lane);
        for _ in 0..3 {
            let before = self.subject_count(&subject).await?;
            let from_cursor = scan::count_from(&self.nats.alerts, &subject, cursor).await?;
            if self.subject_count(&subject).await? != before {
                continue;
            }
            let kept = before.saturating_sub(from_cursor);
            if kept != h.control.kept {
                tracing::info!(lane, was = h.control.kept, kept, "cluster: recounted");
                self.records
                    .write(lane, move |c| {
                        // A seal since moved the cursor: counted for another one.
                        if c.cursor == cursor {
                            c.kept = kept;
                        }
                    })
                    .await
                    .map_err(write_error)?;
            }
            return Ok(());
        }
        Ok(())
    }

    /// Drops dedup keys past their lane's retention and request answers past the longest one.
    async fn expire_keys(
        &self,
        now_ms: i64,
        retention: &Retention,
        held: &[String],
    ) -> Result<(), StoreError> {
        let expired = |ms: i64, keep: std::time::Duration| ms + keep.as_millis() as i64 <= now_ms;
        let markers = scan::bucket(&self.nats.dedup, "").await?;
        let mut lanes: Vec<String> = held.to_vec();
        for (key, bytes) in &markers {
            let Some(lane) = queue::marker_lane(key) else {
                continue;
            };
            #[derive(serde::Deserialize)]
            struct At {
                ms: i64,
            }
            let Ok(at) = serde_json::from_slice::<At>(bytes) else {
                continue;
            };
            if expired(at.ms, retention(&lane)) {
                let _ = self.nats.dedup.purge(key).await;
            }
            lanes.push(lane);
        }
        let longest = lanes
            .iter()
            .map(|l| retention(l))
            .max()
            .unwrap_or(std::time::Duration::from_secs(7 * 86_400));
        for (key, bytes) in scan::bucket(&self.nats.requests, "").await? {
            let Ok(a) = serde_json::from_slice::<queue::Answer>(&bytes) else {
                continue;
            };
            if expired(a.ms, longest) {
                let _ = self.nats.requests.purge(&key).await;
            }
        }
        Ok(())
    }
}
