//! Appending, Idempotency-Key claims, sealing, digests and send logs.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sled::Transactional;

use super::*;

/// The answer kept for an Idempotency-Key; `ids: None` while the request is being processed.
/// `body` is the request's fingerprint ([`request_fingerprint`]): only a request with the same
/// body gets the stored answer. Records written before fingerprints existed have none and are
/// taken as matching, as they were then.
#[derive(Serialize, Deserialize)]
pub(super) struct Answered {
    pub(super) ids: Option<Vec<String>>,
    pub(super) ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) body: Option<String>,
}

impl SledStore {
    pub(super) fn lane(&self, robot: &str) -> Result<Arc<Mutex<Lane>>, StoreError> {
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
    /// [`SledStore::commit`] returns.
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

    pub(super) fn try_append_keyed(
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
                .map_err(StoreError::encode)?;
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
        .map_err(|e| Claim::Store(StoreError::encode(e)))?;
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
        .map_err(StoreError::encode)?;
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
            return Err(StoreError::Write(WriteError::Closed));
        }
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Write(WriteError::CommitStopped)))
    }

    /// Flushes synchronously (shutdown, and the send log before a POST), the blob files first.
    pub fn flush(&self) -> Result<(), StoreError> {
        if let Some(e) = self.health.error() {
            return Err(StoreError::failed(e));
        }
        let mut failure = None;
        let flushed = self.flushes.flush(|| {
            durable_flush(&self.db, &self.meta, &self.sink.blobs).map_err(|e| {
                let text = e.to_string();
                self.health.fail(&text);
                failure = Some(e);
                text
            })
        });
        match (flushed, failure) {
            (Ok(()), _) => Ok(()),
            // This caller ran the flush that failed: its error, with its source.
            (Err(_), Some(e)) => Err(StoreError::Write(e)),
            // Another caller's flush failed, and failed the store.
            (Err(why), None) => Err(StoreError::failed(why)),
        }
    }

    /// A stored value's chunk bytes: read from the blob files for a reference, the value itself
    /// for an older store's inline chunk.
    pub(super) fn load<'v>(
        &self,
        key: &[u8],
        value: &'v [u8],
    ) -> Result<Cow<'v, [u8]>, StoreError> {
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
    pub(super) fn chunk_covering(
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
    pub(super) fn read_range(
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
        render: impl FnOnce(u64, &[Alert]) -> Sealed,
    ) -> Result<Option<DigestRecord>, StoreError> {
        self.checked(self.try_seal(robot, max_alerts, now_ms, render))
    }

    pub(super) fn try_seal(
        &self,
        robot: &str,
        max_alerts: u64,
        now_ms: i64,
        render: impl FnOnce(u64, &[Alert]) -> Sealed,
    ) -> Result<Option<DigestRecord>, StoreError> {
        let Some(sealing) = self.to_seal(robot, max_alerts)? else {
            return Ok(None);
        };
        let sealed = render(sealing.id, &sealing.alerts);
        self.write_seal(robot, now_ms, sealing, sealed).map(Some)
    }

    /// The first half of a seal: the range to seal, its alerts and the digest's id.
    pub(super) fn to_seal(
        &self,
        robot: &str,
        max_alerts: u64,
    ) -> Result<Option<Sealing>, StoreError> {
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
        Ok(Some(Sealing {
            id,
            first,
            end,
            alerts,
        }))
    }

    /// The second half of a seal, once rendered: the record and the cursor move in one
    /// transaction (invariant 3).
    pub(super) fn write_seal(
        &self,
        robot: &str,
        now_ms: i64,
        sealing: Sealing,
        sealed: Sealed,
    ) -> Result<DigestRecord, StoreError> {
        let Sealing {
            id,
            first,
            end,
            alerts,
        } = sealing;
        // The renderer may cover only the first of the alerts offered (a passthrough message).
        let end = sealed.end(first, alerts.len()).min(end);
        let covered = &alerts[..(end - first) as usize];
        let oldest = covered
            .iter()
            .map(|a| a.received_ms)
            .min()
            .unwrap_or(now_ms);
        let record = DigestRecord::sealed(id, robot, (first, end), sealed, now_ms, oldest);
        let bytes = serde_json::to_vec(&record).map_err(StoreError::encode)?;
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
        self.lane(robot)?.lock().expect("lane lock").cursor = end;
        Ok(record)
    }

    /// Writes back a digest's changed state (attempts, errors, sent or dead).
    pub fn update_digest(&self, record: &DigestRecord) -> Result<(), StoreError> {
        self.write_digest(record, false)
    }

    /// Writes a digest record; `logged`: also to the write-ahead log, so that the next commit
    /// makes it durable together with the alerts it queued (replay, queue moves).
    pub(super) fn write_digest(
        &self,
        record: &DigestRecord,
        logged: bool,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(StoreError::encode)?;
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
    /// read its clock (see [`SledStore::stamped_send_log`] for what they mean after a restart).
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
        .map_err(StoreError::encode)?;
        let written = self.meta.insert(meta_key("sends", robot), bytes);
        self.checked(written.map_err(StoreError::from))?;
        if durable {
            self.flush()?;
        }
        Ok(())
    }
}

impl SledStore {
    /// The robot's quota count (`meta "quota" + robot`), if ever written.
    pub fn quota_used(&self, robot: &str) -> Result<Option<crate::store::QuotaUsed>, StoreError> {
        let key = meta_key("quota", robot);
        match self.meta.get(&key)? {
            None => Ok(None),
            Some(v) => Ok(Some(decode(&key, &v)?)),
        }
    }

    /// Replaces the robot's quota count and flushes before returning.
    pub fn set_quota_used(
        &self,
        robot: &str,
        used: crate::store::QuotaUsed,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(&used).map_err(StoreError::encode)?;
        let written = self.meta.insert(meta_key("quota", robot), bytes);
        self.checked(written.map_err(StoreError::from))?;
        self.flush()
    }
}

/// A seal between its two halves ([`SledStore::to_seal`], [`SledStore::write_seal`]).
pub struct Sealing {
    pub(super) id: u64,
    pub(super) first: u64,
    pub(super) end: u64,
    pub(super) alerts: Vec<Alert>,
}
