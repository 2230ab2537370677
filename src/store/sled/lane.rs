//! Per-robot lanes: the sequence state and the newest alerts not yet stored as a chunk.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::*;

/// Per-robot sequence state, guarded by its own lock.
#[derive(Debug, Default)]
pub(super) struct Lane {
    pub(super) next_seq: u64,
    pub(super) cursor: u64,
    /// The newest alerts, `[next_seq - tail_count, next_seq)`, framed as in a chunk but not yet
    /// stored: they are in the write-ahead log (or its buffer). They are stored as one chunk
    /// when the tail reaches [`chunk::CHUNK_BYTES`], before anyone reads them, and at every
    /// checkpoint and clean close ([`materialize`]).
    pub(super) tail: Vec<u8>,
    pub(super) tail_count: u32,
    /// Dedup entries of the tail's alerts; written to sled right after their chunk, so a key is
    /// never durable without its alert.
    pub(super) tail_dedup: HashMap<Vec<u8>, Vec<u8>>,
}

pub(super) type Lanes = Arc<Mutex<HashMap<String, Arc<Mutex<Lane>>>>>;

/// The trees and files a lane's tail is written into.
#[derive(Clone)]
pub(super) struct Sink {
    pub(super) alerts: sled::Tree,
    pub(super) dedup: sled::Tree,
    pub(super) blobs: Arc<Blobs>,
}

impl Sink {
    /// Stores a chunk of `count` alerts under `key`: its bytes in the blob files, its
    /// reference in sled. A reference it replaces is released.
    pub(super) fn put_chunk(&self, key: &[u8], count: u32, chunk: &[u8]) -> Result<(), StoreError> {
        let r = self
            .blobs
            .put(count, chunk)
            .map_err(|e| StoreError::file("cannot write alerts to the blob files", e))?;
        let old = self.alerts.insert(key, &r.encode()[..])?;
        self.release(old.as_deref());
        Ok(())
    }

    /// A value has left the alerts tree: its blob bytes are no longer live.
    pub(super) fn release(&self, old: Option<&[u8]>) {
        if let Some(r) = old.and_then(Ref::decode) {
            self.blobs.release(&r);
        }
    }

    /// Removes a chunk (if there is one) from the alerts tree.
    pub(super) fn remove_chunk(&self, key: &[u8]) -> Result<(), StoreError> {
        let old = self.alerts.remove(key)?;
        self.release(old.as_deref());
        Ok(())
    }
}

/// How many alerts a stored value holds (a reference, or an older store's inline value).
pub(super) fn stored_count(key: &[u8], value: &[u8]) -> Result<u64, StoreError> {
    match Ref::decode(value) {
        Some(r) => Ok(u64::from(r.count)),
        None => chunk::count(value).map_err(|e| alert_error(key, e)),
    }
}

/// Writes a lane's tail as one chunk, then its dedup entries.
pub(super) fn materialize(sink: &Sink, robot: &str, lane: &mut Lane) -> Result<(), StoreError> {
    if lane.tail_count == 0 {
        return Ok(());
    }
    let first = lane.next_seq - u64::from(lane.tail_count);
    sink.put_chunk(
        &alert_key(robot, first),
        lane.tail_count,
        &chunk::seal(lane.tail_count, &lane.tail),
    )?;
    if !lane.tail_dedup.is_empty() {
        let mut batch = sled::Batch::default();
        for (k, v) in lane.tail_dedup.drain() {
            batch.insert(k, v);
        }
        sink.dedup.apply_batch(batch)?;
    }
    lane.tail.clear();
    lane.tail_count = 0;
    Ok(())
}

/// The lanes as they are now, so that each can be locked without holding the map's lock.
pub(super) fn lanes_now(lanes: &Lanes) -> Vec<(String, Arc<Mutex<Lane>>)> {
    lanes
        .lock()
        .expect("lanes lock")
        .iter()
        .map(|(r, l)| (r.clone(), l.clone()))
        .collect()
}

/// Every lane's tail written out (checkpoint, close).
pub(super) fn materialize_all(sink: &Sink, lanes: &Lanes) -> Result<(), StoreError> {
    for (robot, lane) in lanes_now(lanes) {
        materialize(sink, &robot, &mut lane.lock().expect("lane lock"))?;
    }
    Ok(())
}
