//! Pruning by retention, blob compaction, replay, re-delivery and queue moves.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

use super::*;

impl SledStore {
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
    pub(super) fn compact(&self) -> Result<usize, StoreError> {
        /// At most this many segments per round, so a round stays short.
        const SEGMENTS_PER_ROUND: usize = 4;
        let blobs = &self.sink.blobs;
        let sparse = blobs.sparse(SEGMENTS_PER_ROUND);
        if sparse.is_empty() {
            return Ok(0);
        }
        let io = |e: std::io::Error| StoreError::file("blob compaction", e);
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
    /// (invariant 2 of [`super::blob`]). Returns the bytes freed.
    pub(super) fn reclaim(&self) -> Result<u64, StoreError> {
        let empty = self.sink.blobs.empty();
        if empty.is_empty() {
            return Ok(0);
        }
        self.flush()?;
        self.sink
            .blobs
            .delete(&empty)
            .map_err(|e| StoreError::file("cannot delete blob files", e))
    }

    /// Queues a dead digest's alerts again for robot `to` (its own robot or another) and marks
    /// it replayed. Not durable until [`SledStore::commit`]. Alerts are queued before the digest is
    /// marked, so a crash in between can replay them twice, never lose them.
    pub fn replay(&self, id: u64, to: &str, now_ms: i64) -> Result<DigestRecord, ReplayError> {
        let mut d = self
            .digest(id)
            .map_err(ReplayError::Store)?
            .ok_or(ReplayError::NotFound(id))?;
        if d.state != DigestState::Dead {
            return Err(ReplayError::NotDead(id, d.state));
        }
        self.queue_again(&d, to).map_err(ReplayError::Store)?;
        d.state = DigestState::Replayed;
        d.replayed_to = Some(to.to_string());
        d.replayed_ms = Some(now_ms);
        self.write_digest(&d, true).map_err(ReplayError::Store)?;
        Ok(d)
    }

    /// Queues a delivered digest's alerts again for robot `to` (re-delivery after a group was
    /// dissolved, or to a new robot). The digest stays as it was. Not durable until
    /// [`SledStore::commit`]. Returns the digest and how many alerts were queued.
    pub fn redeliver(&self, id: u64, to: &str) -> Result<DigestRecord, ReplayError> {
        let d = self
            .digest(id)
            .map_err(ReplayError::Store)?
            .ok_or(ReplayError::NotFound(id))?;
        if d.state != DigestState::Sent {
            return Err(ReplayError::NotSent(id, d.state));
        }
        self.queue_again(&d, to).map_err(ReplayError::Store)?;
        Ok(d)
    }

    pub(super) fn queue_again(&self, d: &DigestRecord, to: &str) -> Result<(), StoreError> {
        let alerts: Vec<Alert> = self.digest_alerts(d)?.into_iter().map(|(_, a)| a).collect();
        self.append(to, &alerts)?;
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
    /// durable until [`SledStore::commit`]. Alerts are queued for `to` before they leave `from`, so
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
            self.queue_again(&d, to)?;
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
