//! Ingest on the cluster backend: alerts published to their lane's subject, dedup keys and
//! Idempotency-Key answers in their buckets. Each is checked and recorded by `create` (the
//! first writer wins) or by a CAS over what the leader has, so they hold across nodes for their
//! whole window, not only JetStream's duplicate window.
//!
//! - Every alert of a request is published under `Nats-Msg-Id = <request id>:<index>`, the
//!   request id being a hash of its Idempotency-Key and body fingerprint (else a fresh id).
//!   A publish without an answer (an election, no responders) is sent again under the same id
//!   until [`PUBLISH_DEADLINE`]: JetStream keeps it once. A client's retry of a request whose
//!   answer was lost publishes the same ids, so within [`super::DUPLICATE_WINDOW`] it queues
//!   nothing twice.
//! - A keyed alert is published first, then its marker `{seq, ms}` created; a marker already
//!   there within the window makes it a duplicate: the message just published is deleted again.
//!   (A seal in between may have covered it: the repeat is then in a digest, never a loss, and
//!   the lane's `kept` is one too high until the next prune recounts it.)

use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot0;
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{kv, stream};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::scan::{self, unavailable};
use super::{JetStreamStore, control, subject};
use crate::store::{
    ABANDONED_CLAIM_MS, AppendError, Claim, Entry, RequestKey, Retention, Slot, StoreError,
    answer_ids,
};

/// How long a publish is retried under its id before the request fails (503).
pub const PUBLISH_DEADLINE: Duration = Duration::from_secs(15);

/// A dedup key's first alert.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    seq: u64,
    ms: i64,
}

/// An Idempotency-Key's claim (`ids: None`) or answer, with the body's fingerprint; `op` tells
/// our own claim, whose answer was lost, from another's.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Answer {
    pub ids: Option<Vec<String>>,
    pub ms: i64,
    pub body: String,
    #[serde(default)]
    pub op: String,
}

/// A message to publish.
pub(super) struct Outgoing {
    pub subject: String,
    pub id: String,
    pub payload: Bytes,
}

/// The key of an Idempotency-Key in `sluice_req`.
pub(super) fn request_key(key: &str) -> String {
    scan::hash(key, 64)
}

/// The key of a lane's dedup key in `sluice_dedup`.
fn marker_key(lane: &str, dedup_key: &str) -> String {
    format!("{}.{}", control::key(lane), scan::hash(dedup_key, 32))
}

/// The lane a `sluice_dedup` key belongs to.
pub(super) fn marker_lane(key: &str) -> Option<String> {
    control::name_of(key.split('.').next()?)
}

fn json<T: Serialize>(value: &T) -> Bytes {
    serde_json::to_vec(value)
        .expect("a record of plain fields encodes")
        .into()
}

/// Whether a publish that failed may have failed for a while only (no responders during an
/// election, a timeout, a full stream that may drain): sent again under the same id.
fn retryable(kind: PublishErrorKind) -> bool {
    !matches!(
        kind,
        PublishErrorKind::MaxPayloadExceeded
            | PublishErrorKind::WrongLastMessageId
            | PublishErrorKind::WrongLastSequence
    )
}

impl JetStreamStore {
    /// Tells the nodes that own the lanes `out` went to that they have new alerts: a core NATS
    /// message on `sluice.wake.<lane key>` (at most once; an idle owner also looks every `renew`).
    async fn wake_owners(&self, out: &[Outgoing]) {
        let mut lanes: Vec<&str> = out
            .iter()
            .filter_map(|o| o.subject.strip_prefix("sluice.a."))
            .collect();
        lanes.sort_unstable();
        lanes.dedup();
        for key in lanes {
            let _ = self
                .nats
                .client
                .publish(format!("{}{key}", super::WAKE_PREFIX), Bytes::new())
                .await;
        }
    }

    /// Publishes `out` concurrently, each under its own id, and waits for every
    /// acknowledgement; their sequences, in order. On failure, how many were acknowledged.
    pub(super) async fn publish_all(
        &self,
        out: &[Outgoing],
    ) -> Result<Vec<u64>, (usize, StoreError)> {
        let deadline = Instant::now() + PUBLISH_DEADLINE;
        let mut seqs = vec![0u64; out.len()];
        let mut todo: Vec<usize> = (0..out.len()).collect();
        let mut acked = 0;
        loop {
            // Each acknowledgement is awaited by its own task at once: an ack future holds one
            // of the context's in-flight permits until awaited, so holding them all while
            // sending more would stall every request once the permits run out.
            let mut waiting = Vec::with_capacity(todo.len());
            for &i in &todo {
                let o = &out[i];
                let p = PublishMessage::build()
                    .payload(o.payload.clone())
                    .message_id(&o.id);
                let sent = self.nats.js.send_publish(o.subject.clone(), p).await;
                waiting.push((i, sent.map(|ack| tokio::spawn(ack.into_future()))));
            }
            let mut again = Vec::new();
            let mut why = String::new();
            for (i, sent) in waiting {
                let outcome = match sent {
                    Ok(ack) => ack.await.expect("an acknowledgement's task does not panic"),
                    Err(e) => Err(e),
                };
                match outcome {
                    // An id JetStream remembers for a message it no longer has (CLUSTER.md §1).
                    Ok(ack) if ack.duplicate && ack.sequence == 0 => {
                        why = "taken for a duplicate of a message not stored".into();
                        again.push(i);
                    }
                    Ok(ack) => {
                        seqs[i] = ack.sequence;
                        acked += 1;
                    }
                    Err(e) if retryable(e.kind()) && Instant::now() < deadline => {
                        why = e.to_string();
                        again.push(i);
                    }
                    Err(e) => return Err((acked, unavailable("publishing alerts", e))),
                }
            }
            if again.is_empty() {
                self.wake_owners(out).await;
                return Ok(seqs);
            }
            if Instant::now() >= deadline {
                let why = format!(
                    "{} of {} not acknowledged within {PUBLISH_DEADLINE:?}: {why}",
                    again.len(),
                    out.len()
                );
                return Err((acked, unavailable("publishing alerts", why)));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            todo = again;
        }
    }

    pub(super) async fn append_entries(
        &self,
        entries: Vec<Entry>,
        request: Option<RequestKey>,
        now_ms: i64,
        window: Retention,
    ) -> Result<Vec<Slot>, AppendError> {
        let request_id = match &request {
            Some(r) => scan::hash(&format!("{}\0{}", r.key, r.body), 32),
            None => nuid::next().to_string(),
        };
        // A key repeated within the request is a duplicate of its first use: not published.
        let mut first_use: HashMap<(&str, &str), usize> = HashMap::new();
        let mut repeat_of = vec![None; entries.len()];
        for (i, e) in entries.iter().enumerate() {
            if let Some(k) = &e.dedup_key {
                match first_use.entry((e.robot.as_str(), k.as_str())) {
                    Slot0::Occupied(o) => repeat_of[i] = Some(*o.get()),
                    Slot0::Vacant(v) => {
                        v.insert(i);
                    }
                }
            }
        }
        let published: Vec<usize> = (0..entries.len())
            .filter(|&i| repeat_of[i].is_none())
            .collect();
        let mut out = Vec::with_capacity(published.len());
        for &i in &published {
            let payload = serde_json::to_vec(&entries[i].alert)
                .map_err(|e| AppendError::Write(StoreError::encode(e)))?;
            out.push(Outgoing {
                subject: subject(&entries[i].robot),
                id: format!("{request_id}:{i}"),
                payload: payload.into(),
            });
        }
        let seqs = self.publish_all(&out).await.map_err(|(acked, e)| {
            if acked == 0 {
                AppendError::Write(e)
            } else {
                AppendError::NotDurable(e)
            }
        })?;
        let mut slots = vec![Slot::New(0); entries.len()];
        let mut keyed = tokio::task::JoinSet::new();
        for (&i, &seq) in published.iter().zip(&seqs) {
            slots[i] = Slot::New(seq);
            let e = &entries[i];
            if let Some(k) = &e.dedup_key {
                let (dedup, alerts) = (self.nats.dedup.clone(), self.nats.alerts.clone());
                let key = marker_key(&e.robot, k);
                let window = window(&e.robot);
                keyed.spawn(async move {
                    let slot = settle_key(&dedup, &alerts, &key, seq, now_ms, window).await;
                    (i, slot)
                });
            }
        }
        while let Some(done) = keyed.join_next().await {
            let (i, slot) = done.expect("a dedup check does not panic");
            slots[i] = slot.map_err(AppendError::NotDurable)?;
        }
        for (i, first) in repeat_of.iter().enumerate() {
            if let Some(&first) = first.as_ref() {
                slots[i] = Slot::Duplicate(slots[first].seq());
            }
        }
        if let Some(r) = request {
            let answer = Answer {
                ids: Some(answer_ids(&entries, &slots)),
                ms: now_ms,
                body: r.body,
                op: String::new(),
            };
            self.nats
                .requests
                .put(request_key(&r.key), json(&answer))
                .await
                .map_err(|e| AppendError::NotDurable(unavailable("recording the answer", e)))?;
        }
        Ok(slots)
    }

    pub(super) async fn claim(
        &self,
        key: &str,
        body: &str,
        now_ms: i64,
        window: Duration,
    ) -> Result<Option<Vec<String>>, Claim> {
        let kv = &self.nats.requests;
        let k = request_key(key);
        let op = nuid::next().to_string();
        let ours = json(&Answer {
            ids: None,
            ms: now_ms,
            body: body.to_string(),
            op: op.clone(),
        });
        for _ in 0..5 {
            if kv.create(&k, ours.clone()).await.is_ok() {
                return Ok(None);
            }
            let read = scan::leader_json::<Answer>(kv, &k).await;
            // Released or expired meanwhile: create again.
            let Some((prior, revision)) = read.map_err(Claim::Store)? else {
                continue;
            };
            if prior.op == op {
                return Ok(None);
            }
            let age = now_ms - prior.ms;
            let live = match prior.ids {
                Some(_) => age <= window.as_millis() as i64,
                None => age < ABANDONED_CLAIM_MS,
            };
            if live && prior.body != body {
                return Err(Claim::Reused);
            }
            match prior.ids {
                Some(ids) if live => return Ok(Some(ids)),
                None if live => return Err(Claim::InFlight),
                _ => {}
            }
            if kv.update(&k, ours.clone(), revision).await.is_ok() {
                return Ok(None);
            }
        }
        Err(Claim::Store(unavailable(
            "claiming an Idempotency-Key",
            "no write of the claim won after 5 tries",
        )))
    }

    pub(super) async fn release(&self, key: &str) -> Result<(), StoreError> {
        self.nats
            .requests
            .delete(request_key(key))
            .await
            .map_err(|e| unavailable("releasing an Idempotency-Key", e))
    }
}

/// Checks and records a keyed alert published at `seq`: `New(seq)` if its key is new (or ours,
/// from a retry, or past its window), else `Duplicate(first)` after deleting the repeat.
async fn settle_key(
    dedup: &kv::Store,
    alerts: &stream::Stream,
    key: &str,
    seq: u64,
    now_ms: i64,
    window: Duration,
) -> Result<Slot, StoreError> {
    let ours = json(&Marker { seq, ms: now_ms });
    for _ in 0..5 {
        if dedup.create(key, ours.clone()).await.is_ok() {
            return Ok(Slot::New(seq));
        }
        let Some((first, revision)) = scan::leader_json::<Marker>(dedup, key).await? else {
            continue;
        };
        if first.seq == seq {
            return Ok(Slot::New(seq));
        }
        if now_ms - first.ms <= window.as_millis() as i64 {
            // Already gone after a retry's first attempt; a failure leaves a repeat, not a loss.
            if let Err(e) = alerts.delete_message(seq).await {
                tracing::debug!("cluster: deleting duplicate alert #{seq}: {e}");
            }
            return Ok(Slot::Duplicate(first.seq));
        }
        if dedup.update(key, ours.clone(), revision).await.is_ok() {
            return Ok(Slot::New(seq));
        }
    }
    Err(unavailable(
        "recording a dedup key",
        "no write of the marker won after 5 tries",
    ))
}
