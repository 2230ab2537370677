//! How the store keeps alerts: several consecutive alerts of one robot in one chunk (its bytes
//! in the blob files, a 21-byte reference in sled: [`super::blob`]), each alert in a compact
//! binary form.
//!
//! sled costs about 10 µs of CPU per inserted key whatever its size (measured on this machine),
//! so one key per alert made sled the ceiling of ingest. A chunk holds the alerts of one or
//! more whole requests, up to [`CHUNK_BYTES`]: a request of 100 alerts is one or two inserts,
//! and single-alert requests arriving together share one. The binary form is about a third of
//! the alert's JSON, which keeps a large backlog small on disk.
//!
//! ```text
//! chunk: 0x01 | count u32 LE | count × (len u32 LE | alert)
//! alert: flags u8 (1 text, 2 source, 4 time, 8 ends, 16 extra) | severity u8 | status u8
//!        | received i64 LE | title | fingerprint | [text] | [source] | [time i64 LE]
//!        | [ends i64 LE] | labels: count u16 LE, count × (key, value)
//!        | [extra: its JSON]                                    (strings: len u32 LE | UTF-8)
//! ```
//!
//! A value that starts with `{` is one alert in JSON: what stores written before chunks hold.

use crate::alert::{Alert, Labels, Severity, Status};

/// A chunk is closed once it holds this many bytes. Each robot keeps up to this much in memory
/// (its tail), and sled one 21-byte reference per chunk: for 1 000 000 alerts about 27 000.
pub const CHUNK_BYTES: usize = 4096;

const VERSION: u8 = 1;

/// Appends one alert, framed, to `buf` (a chunk body being built).
pub fn push(buf: &mut Vec<u8>, a: &Alert) {
    let len_at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    let start = buf.len();
    let flags = u8::from(a.text.is_some())
        | u8::from(a.source.is_some()) << 1
        | u8::from(a.time_ms.is_some()) << 2
        | u8::from(a.ends_ms.is_some()) << 3
        | u8::from(a.extra.is_some()) << 4;
    buf.push(flags);
    buf.push(a.severity.index() as u8);
    buf.push(match a.status {
        Status::Firing => 0,
        Status::Resolved => 1,
    });
    buf.extend_from_slice(&a.received_ms.to_le_bytes());
    put_str(buf, &a.title);
    put_str(buf, &a.fingerprint);
    for s in [&a.text, &a.source].into_iter().flatten() {
        put_str(buf, s);
    }
    for t in [a.time_ms, a.ends_ms].into_iter().flatten() {
        buf.extend_from_slice(&t.to_le_bytes());
    }
    buf.extend_from_slice(&(a.labels.len().min(u16::MAX as usize) as u16).to_le_bytes());
    for (k, v) in a.labels.iter().take(u16::MAX as usize) {
        put_str(buf, k);
        put_str(buf, v);
    }
    if let Some(extra) = &a.extra {
        // Rare (front-door messages with mentions or a body of their own), so JSON will do.
        put_str(
            buf,
            &serde_json::to_string(extra).expect("an Extra is plain data"),
        );
    }
    let len = (buf.len() - start) as u32;
    buf[len_at..start].copy_from_slice(&len.to_le_bytes());
}

/// A chunk value from `count` framed alerts (as [`push`] wrote them).
pub fn seal(count: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + body.len());
    v.push(VERSION);
    v.extend_from_slice(&count.to_le_bytes());
    v.extend_from_slice(body);
    v
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// How many alerts a stored value holds.
pub fn count(value: &[u8]) -> Result<u64, String> {
    match value.first() {
        Some(b'{') => Ok(1),
        Some(&VERSION) if value.len() >= 5 => Ok(u64::from(u32::from_le_bytes(
            value[1..5].try_into().expect("4 bytes"),
        ))),
        _ => Err("not a chunk of alerts".into()),
    }
}

/// The alerts of a stored value, each with its index, from index `skip` on and at most `take`
/// of them; only those are decoded.
pub fn alerts(value: &[u8], skip: u64, take: u64) -> Result<Vec<Alert>, String> {
    if value.first() == Some(&b'{') {
        if skip > 0 || take == 0 {
            return Ok(Vec::new());
        }
        return serde_json::from_slice(value)
            .map(|a| vec![a])
            .map_err(|e| e.to_string());
    }
    let n = count(value)?;
    body_alerts(&value[5..], n as u32, skip, take)
}

/// Like [`alerts`], for `count` framed alerts without the chunk header (a lane's tail).
pub fn body_alerts(body: &[u8], count: u32, skip: u64, take: u64) -> Result<Vec<Alert>, String> {
    let n = u64::from(count);
    let mut out = Vec::with_capacity(take.min(n.saturating_sub(skip)) as usize);
    let mut at = 0;
    for i in 0..n {
        if out.len() as u64 == take {
            break;
        }
        let len = read_u32(body, at)? as usize;
        let entry = body
            .get(at + 4..at + 4 + len)
            .ok_or("an alert runs past the end of its chunk")?;
        at += 4 + len;
        if i >= skip {
            out.push(decode(entry)?);
        }
    }
    Ok(out)
}

fn read_u32(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")))
        .ok_or_else(|| "a chunk ends early".to_string())
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let b: &'a [u8] = self.b;
        let s = b.get(self.at..self.at + n).ok_or("an alert ends early")?;
        self.at += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.bytes(1)?[0])
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.bytes(8)?.try_into().expect("8")))
    }

    fn str(&mut self) -> Result<&'a str, String> {
        let n = u32::from_le_bytes(self.bytes(4)?.try_into().expect("4")) as usize;
        std::str::from_utf8(self.bytes(n)?).map_err(|e| e.to_string())
    }

    fn string(&mut self) -> Result<String, String> {
        self.str().map(str::to_string)
    }
}

fn decode(entry: &[u8]) -> Result<Alert, String> {
    let mut r = Reader { b: entry, at: 0 };
    let flags = r.u8()?;
    let severity = *Severity::ALL
        .get(r.u8()? as usize)
        .ok_or("unknown severity")?;
    let status = match r.u8()? {
        0 => Status::Firing,
        1 => Status::Resolved,
        _ => return Err("unknown status".into()),
    };
    let received_ms = r.i64()?;
    let title = r.string()?;
    let fingerprint = r.string()?;
    let text = if flags & 1 != 0 {
        Some(r.string()?)
    } else {
        None
    };
    let source = if flags & 2 != 0 {
        Some(r.string()?)
    } else {
        None
    };
    let time_ms = if flags & 4 != 0 { Some(r.i64()?) } else { None };
    let ends_ms = if flags & 8 != 0 { Some(r.i64()?) } else { None };
    let n = u16::from_le_bytes(r.bytes(2)?.try_into().expect("2"));
    // Borrowed from the chunk, then copied once into the labels' one buffer.
    let mut pairs = Vec::with_capacity(n.into());
    for _ in 0..n {
        pairs.push((r.str()?, r.str()?));
    }
    let labels = Labels::from_pairs(pairs);
    let extra = if flags & 16 != 0 {
        let json = r.string()?;
        Some(Box::new(
            serde_json::from_str(&json).map_err(|e| format!("extra: {e}"))?,
        ))
    } else {
        None
    };
    Ok(Alert {
        title,
        text,
        severity,
        status,
        labels,
        fingerprint,
        source,
        time_ms,
        ends_ms,
        received_ms,
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::default_fingerprint;

    fn alert(i: i64, full: bool) -> Alert {
        let mut labels = Labels::new();
        labels.insert("job".to_string(), format!("dq_{i}"));
        labels.insert("表".to_string(), "订单".to_string());
        Alert {
            fingerprint: default_fingerprint("t", Severity::Warning, &labels),
            title: format!("alert {i}"),
            text: full.then(|| "null rate 3.2%\nsee dashboard".to_string()),
            severity: Severity::ALL[(i % 4) as usize],
            status: if i % 2 == 0 {
                Status::Firing
            } else {
                Status::Resolved
            },
            labels,
            source: full.then(|| "odps".to_string()),
            time_ms: full.then_some(-5),
            ends_ms: full.then_some(i64::MAX),
            received_ms: 1_700_000_000_000 + i,
            extra: (full && i % 2 == 0).then(|| {
                Box::new(crate::alert::Extra {
                    platform: "dingtalk".into(),
                    mobiles: vec!["13800000000".into()],
                    user_ids: vec!["ou_1".into()],
                    all: true,
                    raw: Some(
                        serde_json::json!({"msgtype": "feedCard", "feedCard": {"links": []}}),
                    ),
                })
            }),
        }
    }

    #[test]
    fn alerts_round_trip_and_can_be_read_from_any_index() {
        let all: Vec<Alert> = (0..10).map(|i| alert(i, i % 3 == 0)).collect();
        let mut body = Vec::new();
        for a in &all {
            push(&mut body, a);
        }
        let chunk = seal(10, &body);
        assert_eq!(count(&chunk).unwrap(), 10);
        assert_eq!(alerts(&chunk, 0, u64::MAX).unwrap(), all);
        assert_eq!(alerts(&chunk, 7, 2).unwrap(), all[7..9]);
        assert_eq!(alerts(&chunk, 10, 5).unwrap(), vec![]);
        let json = serde_json::to_vec(&all[0]).unwrap();
        assert!(
            body.len() / 10 < json.len(),
            "binary {} vs JSON {}",
            body.len() / 10,
            json.len()
        );
    }

    #[test]
    fn a_json_value_is_one_alert_and_damage_is_an_error() {
        let a = alert(1, true);
        let json = serde_json::to_vec(&a).unwrap();
        assert_eq!(count(&json).unwrap(), 1);
        assert_eq!(alerts(&json, 0, 1).unwrap(), vec![a.clone()]);
        let mut body = Vec::new();
        push(&mut body, &a);
        let chunk = seal(1, &body);
        for cut in 5..chunk.len() {
            assert!(alerts(&chunk[..cut], 0, 1).is_err(), "cut at {cut}");
        }
        assert!(count(b"x").is_err());
    }
}
