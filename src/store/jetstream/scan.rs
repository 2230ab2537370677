//! Reads that cover many messages: a lane's alerts over a range of the stream, and every key of
//! a bucket. Each goes through one short-lived pull consumer (memory storage, one replica, no
//! acks, created at the stream leader), so 10 000 alerts are one request and a few batches, not
//! 10 000 round trips; and a consumer reads from the leader, so what was acknowledged is there.
//! Also the single-key leader read every read-modify-write of a bucket starts from (a direct
//! get may be served by a follower that lags, CLUSTER.md §2.3.2).

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::alert::Alert;
use crate::store::StoreError;

/// Messages fetched per pull request.
const BATCH: usize = 5_000;

/// A transient failure to reach the cluster (a 503 upstream, never a failed [`Health`]).
///
/// [`Health`]: crate::store::Health
pub fn unavailable(what: &str, why: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{what}: {why}"))
}

/// A short-lived reader of `filter` from `policy` on: no acks, in memory, on one server, gone
/// by itself after 30 s idle.
fn reader(filter: &str, policy: DeliverPolicy) -> pull::Config {
    pull::Config {
        filter_subject: filter.to_string(),
        deliver_policy: policy,
        ack_policy: AckPolicy::None,
        inactive_threshold: Duration::from_secs(30),
        memory_storage: true,
        num_replicas: 1,
        ..Default::default()
    }
}

/// Messages of `stream` on `filter` from `policy` on, in stream order: at most `max`, and none
/// whose sequence is `end` or more.
pub async fn messages(
    stream: &stream::Stream,
    filter: &str,
    policy: DeliverPolicy,
    end: u64,
    max: usize,
) -> Result<Vec<jetstream::Message>, StoreError> {
    let what = || format!("reading {filter}");
    let consumer = stream
        .create_consumer(reader(filter, policy))
        .await
        .map_err(|e| unavailable(&what(), e))?;
    let name = consumer.cached_info().name.clone();
    let want = (consumer.cached_info().num_pending as usize).min(max);
    let mut out = Vec::with_capacity(want);
    let filled = fill(&consumer, want, end, &mut out).await;
    // Gone by itself after `inactive_threshold` anyway; nobody waits for this.
    let stream = stream.clone();
    tokio::spawn(async move { stream.delete_consumer(&name).await });
    filled.map_err(|e| unavailable(&what(), e))?;
    Ok(out)
}

/// How many messages on `subject` have a sequence of `seq` or more (one consumer's pending
/// count at creation).
pub async fn count_from(
    stream: &stream::Stream,
    subject: &str,
    seq: u64,
) -> Result<u64, StoreError> {
    let from = DeliverPolicy::ByStartSequence {
        start_sequence: seq.max(1),
    };
    let consumer = stream
        .create_consumer(reader(subject, from))
        .await
        .map_err(|e| unavailable(&format!("counting {subject}"), e))?;
    let info = consumer.cached_info();
    let (name, pending) = (info.name.clone(), info.num_pending);
    let stream = stream.clone();
    tokio::spawn(async move { stream.delete_consumer(&name).await });
    Ok(pending)
}

async fn fill(
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    want: usize,
    end: u64,
    out: &mut Vec<jetstream::Message>,
) -> Result<(), String> {
    while out.len() < want {
        let mut batch = consumer
            .fetch()
            .max_messages((want - out.len()).min(BATCH))
            .messages()
            .await
            .map_err(|e| e.to_string())?;
        let before = out.len();
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| e.to_string())?;
            let seq = m.info().map_err(|e| e.to_string())?.stream_sequence;
            if seq >= end {
                return Ok(());
            }
            out.push(m);
            if out.len() == want {
                return Ok(());
            }
        }
        if out.len() == before {
            return Ok(());
        }
    }
    Ok(())
}

/// A lane's alerts on `subject` with sequences in `[first, end)`, at most `max`.
pub async fn alerts(
    stream: &stream::Stream,
    subject: &str,
    first: u64,
    end: u64,
    max: usize,
) -> Result<Vec<(u64, Alert)>, StoreError> {
    if first >= end || max == 0 {
        return Ok(Vec::new());
    }
    let policy = DeliverPolicy::ByStartSequence {
        start_sequence: first.max(1),
    };
    let mut out = Vec::new();
    for m in messages(stream, subject, policy, end, max).await? {
        let seq = m
            .info()
            .map_err(|e| unavailable(subject, e))?
            .stream_sequence;
        out.push((seq, decode_alert(subject, seq, &m.payload)?));
    }
    Ok(out)
}

pub fn decode_alert(subject: &str, seq: u64, payload: &[u8]) -> Result<Alert, StoreError> {
    serde_json::from_slice(payload).map_err(|e| StoreError::Decode {
        key: format!("{subject} #{seq}"),
        detail: e.to_string(),
    })
}

fn is_deletion(headers: Option<&async_nats::HeaderMap>) -> bool {
    headers
        .and_then(|h| h.get("KV-Operation"))
        .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"))
}

/// Every live key of `kv` starting with `prefix`, with its value (the newest of each).
pub async fn bucket(kv: &kv::Store, prefix: &str) -> Result<Vec<(String, Bytes)>, StoreError> {
    let head = format!("$KV.{}.", kv.name);
    let filter = format!("{head}{prefix}>");
    let found = messages(
        &kv.stream,
        &filter,
        DeliverPolicy::LastPerSubject,
        u64::MAX,
        usize::MAX,
    )
    .await?;
    Ok(found
        .into_iter()
        .filter(|m| !is_deletion(m.headers.as_ref()))
        .map(|m| {
            let key = m.subject.as_str().trim_start_matches(&head).to_string();
            (key, m.payload.clone())
        })
        .collect())
}

/// `key` of `kv` as the stream leader has it, with its revision; `None` if absent or deleted.
pub async fn leader_get(kv: &kv::Store, key: &str) -> Result<Option<(Bytes, u64)>, StoreError> {
    let subject = format!("$KV.{}.{key}", kv.name);
    match kv.stream.get_last_raw_message_by_subject(&subject).await {
        Ok(m) if is_deletion(Some(&m.headers)) => Ok(None),
        Ok(m) => Ok(Some((m.payload, m.sequence))),
        Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(unavailable(&format!("reading {subject}"), e)),
    }
}

/// `key` of `kv` from the leader, decoded.
pub async fn leader_json<T: serde::de::DeserializeOwned>(
    kv: &kv::Store,
    key: &str,
) -> Result<Option<(T, u64)>, StoreError> {
    match leader_get(kv, key).await? {
        None => Ok(None),
        Some((bytes, revision)) => serde_json::from_slice(&bytes)
            .map(|v| Some((v, revision)))
            .map_err(|e| StoreError::Decode {
                key: format!("{}/{key}", kv.name),
                detail: e.to_string(),
            }),
    }
}

/// The SHA-256 of `s` in hex, truncated to `len` characters: a KV key for any string.
pub fn hash(s: &str, len: usize) -> String {
    let mut hex = crate::store::request_fingerprint(s.as_bytes());
    hex.truncate(len);
    hex
}
