//! A lane's control record: one key in the `sluice_robot` bucket per lane (a robot, or a pool),
//! changed **only by compare-and-swap**, and only by the node that holds its lease. It carries
//! everything whose loss or double use would break a promise: the owner and its epoch, the
//! cursor (the first sequence of the lane's subject not yet sealed), the digests sealed and not
//! yet delivered, every member's send log and quota count.
//!
//! Why one key: JetStream orders the writes to one subject, so on NATS ≥ 2.11 at most one write
//! per revision wins (CLUSTER.md §1). A send is recorded in this key by a CAS before its POST,
//! and a takeover is a CAS too, so an old owner's every later write fails: the record is its own
//! fence, and no slot of a robot's budget can be spent twice, whoever holds the lease.
//!
//! [`Records`] keeps, per lane this node holds, the value and revision of its own last winning
//! write (a KV read may be served by a follower and lag, CLUSTER.md §2.3.2; a decision is never
//! taken on one), and the monotonic instant that write was sent: the lease runs from there.
//! A write whose outcome is unknown (a timeout, an election's 503) is settled by a read from the
//! stream leader: our own `op` id there means it went through.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::store::{DigestRecord, QuotaUsed};

/// The KV bucket of the control records.
pub const BUCKET: &str = "sluice_robot";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Control {
    /// The node that holds the lease; empty while nobody does.
    pub owner: String,
    /// Raised by every takeover.
    pub epoch: u64,
    /// A fresh id per write: tells a write of ours whose answer was lost from someone else's.
    pub op: String,
    /// The first sequence of the lane's subject not yet in a digest.
    pub cursor: u64,
    /// Messages of the lane's subject below the cursor still in the stream (covered by kept
    /// digests): its pending count is the subject's count minus these.
    pub kept: u64,
    /// Digests sealed and not yet delivered, oldest first. Sealing is one CAS that moves the
    /// cursor and adds the record here, so it is one atomic step, as on one node.
    pub outbox: Vec<DigestRecord>,
    /// Each member's recent sends, in wall-clock ms of the node that made them, oldest first.
    pub sends: BTreeMap<String, Vec<i64>>,
    pub quotas: BTreeMap<String, QuotaUsed>,
}

/// `name` as a KV key: letters, digits, `-` and `_` stay; every other byte is `=XX`.
pub fn key(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => out.push(b as char),
            _ => out.push_str(&format!("={b:02X}")),
        }
    }
    out
}

/// The name a [`key`] was made from; `None` for a key `key` never makes.
pub fn name_of(key: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(key.len());
    let mut rest = key.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => {
                bytes.push(b);
                rest = tail;
            }
            b'=' if tail.len() >= 2 => {
                let hex = std::str::from_utf8(&tail[..2]).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &tail[2..];
            }
            _ => return None,
        }
    }
    String::from_utf8(bytes).ok()
}

/// What this node holds of one lane.
#[derive(Debug, Clone)]
pub struct Held {
    pub control: Control,
    pub revision: u64,
    /// When the write that made `revision` was sent: the lease runs from here.
    pub renewed: Instant,
}

/// Why a write did not happen.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteError {
    /// Another node's write came first (a takeover), or this node never held the lane: it is
    /// not ours, and whoever runs it here must stop at once.
    #[error("lane {0}: this node does not hold its lease (another node took it over)")]
    Lost(String),
    /// The cluster did not answer (no quorum, an election): nothing is known to have changed.
    #[error("lane {lane}: NATS did not take the write: {why}")]
    Unavailable { lane: String, why: String },
}

/// The control records this node holds, each behind its own lock, so that one lane's writes
/// (its task's and its renewals) are one sequence.
pub struct Records {
    kv: kv::Store,
    node: String,
    held: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Held>>>>>,
    /// How long a write may take before its outcome is settled by a leader read.
    timeout: Duration,
}

impl Records {
    pub fn new(kv: kv::Store, node: String, timeout: Duration) -> Records {
        Records {
            kv,
            node,
            held: Mutex::new(HashMap::new()),
            timeout,
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    fn slot(&self, lane: &str) -> Arc<tokio::sync::Mutex<Option<Held>>> {
        self.held
            .lock()
            .expect("records lock")
            .entry(lane.to_string())
            .or_default()
            .clone()
    }

    /// What this node holds of `lane`, if it holds it.
    pub async fn held(&self, lane: &str) -> Option<Held> {
        self.slot(lane).lock().await.clone()
    }

    /// Lanes this node holds.
    pub async fn held_lanes(&self) -> Vec<String> {
        let slots: Vec<(String, Arc<tokio::sync::Mutex<Option<Held>>>)> = self
            .held
            .lock()
            .expect("records lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut out = Vec::new();
        for (lane, slot) in slots {
            if slot.lock().await.is_some() {
                out.push(lane);
            }
        }
        out.sort();
        out
    }

    /// The record as the stream's leader has it now (a direct get may lag; this does not),
    /// with its revision; `None` if the lane never had one.
    pub async fn read_leader(&self, lane: &str) -> Result<Option<(Control, u64)>, String> {
        let subject = format!("$KV.{BUCKET}.{}", key(lane));
        match self
            .kv
            .stream
            .get_last_raw_message_by_subject(&subject)
            .await
        {
            Ok(m) => {
                let deleted = m
                    .headers
                    .get("KV-Operation")
                    .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"));
                if deleted {
                    return Ok(None);
                }
                let control: Control = serde_json::from_slice(&m.payload).map_err(|e| {
                    format!("the control record of lane {lane} is not readable: {e}")
                })?;
                Ok(Some((control, m.sequence)))
            }
            Err(e)
                if e.kind()
                    == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
            {
                Ok(None)
            }
            Err(e) => Err(format!(
                "cannot read the control record of lane {lane}: {e}"
            )),
        }
    }

    /// Changes `lane`'s record with `change`, by CAS on the revision this node last wrote; the
    /// new value on success. A write that lost to another (or was never ours) lets the lane go.
    pub async fn write(
        &self,
        lane: &str,
        change: impl FnOnce(&mut Control),
    ) -> Result<Held, WriteError> {
        let slot = self.slot(lane);
        let mut held = slot.lock().await;
        let Some(current) = held.clone() else {
            return Err(WriteError::Lost(lane.to_string()));
        };
        let mut next = current.control.clone();
        change(&mut next);
        match self.cas(lane, next, current.revision).await {
            Ok(h) => {
                *held = Some(h.clone());
                Ok(h)
            }
            Err(e @ WriteError::Lost(_)) => {
                *held = None;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Takes `lane` over: its record as last seen at `revision` (`None`: it has none yet) with
    /// this node as owner and the epoch raised. Every send its log shows counts `skew_ms` later
    /// (the old owner's clock may be behind ours), and the newest `in_flight_ms` later still
    /// (its answer may never have been recorded).
    pub async fn take(
        &self,
        lane: &str,
        seen: Option<(Control, u64)>,
        skew_ms: i64,
    ) -> Result<Held, WriteError> {
        let slot = self.slot(lane);
        let mut held = slot.lock().await;
        let (mut next, revision) = seen.unwrap_or_default();
        if revision > 0 {
            for log in next.sends.values_mut() {
                for t in log.iter_mut() {
                    *t += skew_ms;
                }
            }
        }
        next.owner = self.node.clone();
        next.epoch += 1;
        let result = if revision == 0 {
            self.create(lane, next).await
        } else {
            self.cas(lane, next, revision).await
        };
        if let Ok(h) = &result {
            *held = Some(h.clone());
        }
        result
    }

    /// Gives `lane` up: owner cleared by CAS, so the preferred node takes it at once instead of
    /// waiting out the lease. The lane's task must have stopped.
    pub async fn release(&self, lane: &str) -> Result<(), WriteError> {
        let slot = self.slot(lane);
        let mut held = slot.lock().await;
        let Some(current) = held.take() else {
            return Ok(());
        };
        let mut next = current.control.clone();
        next.owner.clear();
        self.cas(lane, next, current.revision).await.map(|_| ())
    }

    /// Forgets `lane` without writing (its lease ran out on this node's clock).
    pub async fn forget(&self, lane: &str) {
        *self.slot(lane).lock().await = None;
    }

    async fn create(&self, lane: &str, mut next: Control) -> Result<Held, WriteError> {
        next.op = nuid::next().to_string();
        let bytes = serde_json::to_vec(&next).expect("a control record encodes");
        let sent = Instant::now();
        match tokio::time::timeout(self.timeout, self.kv.create(key(lane), bytes.into())).await {
            Ok(Ok(revision)) => Ok(Held {
                control: next,
                revision,
                renewed: sent,
            }),
            Ok(Err(e)) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                Err(WriteError::Lost(lane.to_string()))
            }
            outcome => self.settle(lane, next, sent, describe(outcome)).await,
        }
    }

    async fn cas(&self, lane: &str, mut next: Control, revision: u64) -> Result<Held, WriteError> {
        next.op = nuid::next().to_string();
        let bytes = serde_json::to_vec(&next).expect("a control record encodes");
        let sent = Instant::now();
        let update = self.kv.update(key(lane), bytes.into(), revision);
        match tokio::time::timeout(self.timeout, update).await {
            Ok(Ok(revision)) => Ok(Held {
                control: next,
                revision,
                renewed: sent,
            }),
            Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                Err(WriteError::Lost(lane.to_string()))
            }
            outcome => self.settle(lane, next, sent, describe(outcome)).await,
        }
    }

    /// A write's answer was lost or unclear (servers ≥ 2.11 also refuse a lost CAS with codes
    /// the client does not map, CLUSTER.md §2.3.1): the leader's record says what happened.
    async fn settle(
        &self,
        lane: &str,
        next: Control,
        sent: Instant,
        why: String,
    ) -> Result<Held, WriteError> {
        match self.read_leader(lane).await {
            Ok(Some((now, revision))) if now.op == next.op => Ok(Held {
                control: next,
                revision,
                renewed: sent,
            }),
            Ok(Some((now, _))) if now.owner != self.node || now.epoch != next.epoch => {
                Err(WriteError::Lost(lane.to_string()))
            }
            // Not applied (or not readable): nothing changed; the caller may try again.
            _ => Err(WriteError::Unavailable {
                lane: lane.to_string(),
                why,
            }),
        }
    }
}

fn describe<T, E: std::fmt::Display>(
    outcome: Result<Result<T, E>, tokio::time::error::Elapsed>,
) -> String {
    match outcome {
        Ok(Ok(_)) => "no error".into(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer in time".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_plain_names_and_escape_the_rest() {
        assert_eq!(key("ops-dq_1"), "ops-dq_1");
        assert_eq!(key("a.b c"), "a=2Eb=20c");
        assert_eq!(key("值"), "=E5=80=BC");
        // Distinct names never share a key.
        assert_ne!(key("a=2E"), key("a."));
    }

    #[test]
    fn a_key_gives_back_its_name() {
        for name in ["ops-dq_1", "a.b c", "值", "a=2E", "", "x=", "*>"] {
            assert_eq!(name_of(&key(name)).as_deref(), Some(name), "{name}");
        }
        assert_eq!(name_of("a.b"), None);
        assert_eq!(name_of("=4"), None);
        assert_eq!(name_of("=ZZ"), None);
    }

    #[test]
    fn a_record_reads_back_and_old_records_get_defaults() {
        let c = Control {
            owner: "n1".into(),
            epoch: 3,
            cursor: 17,
            ..Control::default()
        };
        let back: Control = serde_json::from_slice(&serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let partial: Control = serde_json::from_str(r#"{"owner":"n2"}"#).unwrap();
        assert_eq!((partial.owner.as_str(), partial.cursor), ("n2", 0));
    }
}
