//! The trees' keys, and decoding stored records.

use serde::Deserialize;

use crate::store::StoreError;

pub(super) const WATERMARK: &str = "blobs_synced";

/// `meta` key of the next digest id. Ids come from this counter, not from sled's
/// `generate_id`, which jumps by a million after every unclean stop (users read `#10000168` as
/// ten million digests). Each seal writes the counter in the same transaction as its record, so
/// after a crash it is at least one past every stored digest; a seal that never committed leaves
/// a gap of one at most, and pruned digests' ids are never used again.
pub(super) const NEXT_DIGEST: &str = "next_digest";

pub(super) fn alert_key(robot: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(robot.len() + 9);
    k.extend_from_slice(robot.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(super) fn meta_key(kind: &str, robot: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(kind.len() + robot.len() + 1);
    k.extend_from_slice(kind.as_bytes());
    k.push(0);
    k.extend_from_slice(robot.as_bytes());
    k
}

pub(super) fn dedup_key(robot: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(robot.len() + key.len() + 1);
    k.extend_from_slice(robot.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

pub(super) fn be_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = bytes.len().min(8);
    b[8 - n..].copy_from_slice(&bytes[bytes.len() - n..]);
    u64::from_be_bytes(b)
}

/// An alerts-tree key as a person reads it: `alerts of robot ops from #1200`.
pub(super) fn describe_alert_key(key: &[u8]) -> String {
    match key.len().checked_sub(9) {
        Some(split) if key[split] == 0 => format!(
            "alerts of robot {} from #{}",
            String::from_utf8_lossy(&key[..split]),
            be_u64(&key[split + 1..])
        ),
        _ => String::from_utf8_lossy(key).into_owned(),
    }
}

/// Stored alerts under `key` could not be read.
pub(super) fn alert_error(key: &[u8], detail: String) -> StoreError {
    StoreError::Decode {
        key: describe_alert_key(key),
        detail,
    }
}

pub(super) fn decode<T: for<'de> Deserialize<'de>>(
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Decode {
        key: String::from_utf8_lossy(key).into_owned(),
        detail: e.to_string(),
    })
}
