//! Alerts as clients send them, and as the store keeps them.
//!
//! Parsing checks each field by hand rather than with a derived `Deserialize`, so that every
//! rejection names the exact path (`[3].labels.job`) and what was expected there. A body of the
//! common shape is read straight from its bytes; any other, and any the checks refuse, through a
//! `serde_json::Value`, which can describe whatever was sent (`fields`). The HTTP layer turns
//! [`AlertError`] into 400 (not JSON at all) or 422 (JSON, but not a valid alert).

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

mod fields;
mod labels;
pub use labels::Labels;

use fields::{Field, Fields, LabelsField};

/// Longest accepted `title`, in bytes. Digest lines are cut much shorter; this only bounds what a
/// client can make the store hold.
pub const MAX_TITLE_BYTES: usize = 1024;
/// Longest accepted `text`, in bytes.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// Most labels on one alert.
pub const MAX_LABELS: usize = 64;

/// How bad an alert is. The derived order puts the most severe first, which is the order in which
/// digests list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Error,
    Warning,
    Info,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Critical,
        Severity::Error,
        Severity::Warning,
        Severity::Info,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Index into per-severity arrays such as [`crate::digest::Counts`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// One alert as the store keeps it. `seq` is its position in its robot's sequence; the robot itself
/// is part of the store key, not of the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub severity: Severity,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// Given by the client, or derived from title, severity and labels ([`default_fingerprint`]).
    pub fingerprint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// When the condition happened, as the client says (Unix ms); `None` if not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_ms: Option<i64>,
    /// When the condition ended (Unix ms), for resolved alerts when the sender knows it
    /// (Alertmanager's `endsAt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_ms: Option<i64>,
    /// When sluice accepted it (Unix ms).
    pub received_ms: i64,
    /// What a message that came through a front door carries beside its text; `None` for
    /// every other alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Box<Extra>>,
}

/// What a robot message taken in by a front door ([`crate::frontdoor`]) carries beside its
/// title and text: whom it asked to mention, and, for a message that cannot be merged into a
/// digest, its body as it came.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Extra {
    /// The platform whose front door took it in (`"dingtalk"`, `"feishu"`, `"wecom"`): its
    /// mentions and its raw body mean something only to robots of that platform.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub platform: String,
    /// Mobiles to mention (DingTalk `atMobiles`, WeCom `mentioned_mobile_list`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mobiles: Vec<String>,
    /// Platform user ids to mention (DingTalk `atUserIds`, Feishu `<at user_id>`, WeCom
    /// `mentioned_list`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_ids: Vec<String>,
    /// It mentioned everyone (`isAtAll`, `<at user_id="all">`, `@all`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    /// A message of a type that cannot be merged (a DingTalk feedCard, a Feishu image, a WeCom
    /// news card): its request body as it came, without the sender's signature, sent alone as
    /// its own message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<Value>,
}

impl Extra {
    /// Whether it carries nothing (then the alert keeps `extra: None`).
    pub fn is_empty(&self) -> bool {
        self.mobiles.is_empty() && self.user_ids.is_empty() && !self.all && self.raw.is_none()
    }
}

impl Alert {
    /// The label that groups alerts inside a severity: `alertname`, else `job`.
    pub fn group(&self) -> Option<&str> {
        self.labels
            .get("alertname")
            .or_else(|| self.labels.get("job"))
    }
}

/// Asks the CPU to start loading what a pass over many alerts reads of `a` beyond the struct
/// itself (its labels and its fingerprint, each in an allocation of its own), so that those
/// loads overlap with the work on the alerts before it instead of stalling it one after another.
/// A hint only: nothing is read, nothing changes if it is ignored; a no-op off x86-64.
#[inline]
pub(crate) fn prefetch(a: &Alert) {
    let labels = a.labels.bytes();
    hint(labels.as_ptr());
    // A buffer only 16-byte aligned crosses into a second cache line within its first 64 bytes
    // three times in four, and the group's label is there: ask for that line too (the same
    // line again when it does not cross, which costs nothing).
    hint(
        labels
            .as_ptr()
            .wrapping_add(labels.len().saturating_sub(1).min(63)),
    );
    hint(a.fingerprint.as_ptr());
}

/// Like [`prefetch`], for the struct's own fields that hold those pointers (a pass that visits
/// alerts out of order, where the struct is not in the cache either).
#[inline]
pub(crate) fn prefetch_struct(a: &Alert) {
    hint(std::ptr::from_ref(&a.labels).cast());
    hint(std::ptr::from_ref(&a.fingerprint).cast());
}

/// Asks the CPU to start loading the cache line at `p`; does nothing off x86-64.
#[inline]
fn hint(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch never faults and changes no memory, whatever the address; callers
        // pass pointers from live allocations (or dangling-but-aligned ones for empty buffers).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// An alert parsed from a request, with the robot it names (if any) not yet resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingAlert {
    pub robot: Option<String>,
    /// The same key within the robot's retention is acknowledged again but queued only once.
    pub dedup_key: Option<String>,
    pub alert: Alert,
}

/// Why a request body is not a list of valid alerts.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AlertError {
    /// The bytes are not JSON (or not UTF-8). Maps to HTTP 400.
    #[error("{0}")]
    Malformed(String),
    /// JSON, but a field is missing or wrong. Maps to HTTP 422.
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl AlertError {
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        AlertError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }
}

const FIELDS: &str =
    "robot, title, text, severity, status, labels, fingerprint, source, time, dedup_key";

/// Parses a request body: one alert object or an array of them. `received_ms` stamps every alert.
pub fn parse_body(body: &[u8], received_ms: i64) -> Result<Vec<IncomingAlert>, AlertError> {
    // The common shape read straight from the bytes; anything else, or anything the checks
    // refuse, the general way, which says exactly what is wrong (see `fields`).
    let Some(read) = fields::fast(body) else {
        return parse_value(decode_json(body)?, received_ms);
    };
    let fast: Result<Vec<_>, _> = if read.array {
        (read.alerts.into_iter().enumerate())
            .map(|(i, f)| parse_one(f, Item::At(i), received_ms))
            .collect()
    } else {
        (read.alerts.into_iter())
            .map(|f| parse_one(f, Item::Only, received_ms))
            .collect()
    };
    fast.or_else(|_| parse_value(decode_json(body)?, received_ms))
}

/// Decodes a request body as JSON; not UTF-8 or not JSON is [`AlertError::Malformed`] with the
/// byte, or the line and column, where it went wrong. Shared by every endpoint, so all answer alike.
pub fn decode_json(body: &[u8]) -> Result<Value, AlertError> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(AlertError::Malformed(format!(
            "body is not valid UTF-8 at byte {}",
            e.valid_up_to()
        )));
    }
    serde_json::from_slice(body).map_err(|e| {
        AlertError::Malformed(format!(
            "malformed JSON at line {} column {}: {}",
            e.line(),
            e.column(),
            strip_position(&e.to_string())
        ))
    })
}

/// Parses an already decoded JSON value: one alert object or an array of them.
pub fn parse_value(value: Value, received_ms: i64) -> Result<Vec<IncomingAlert>, AlertError> {
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(AlertError::invalid(
                    "$",
                    "empty array; send at least one alert",
                ));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| parse_one_value(&v, Item::At(i), received_ms))
                .collect()
        }
        Value::Object(_) => Ok(vec![parse_one_value(&value, Item::Only, received_ms)?]),
        other => Err(AlertError::invalid(
            "$",
            format!(
                "expected an alert object or an array of them, found {}",
                kind(&other)
            ),
        )),
    }
}

fn parse_one_value(
    value: &Value,
    item: Item,
    received_ms: i64,
) -> Result<IncomingAlert, AlertError> {
    let Value::Object(map) = value else {
        return Err(AlertError::invalid(
            item.path(),
            format!("expected an alert object, found {}", kind(value)),
        ));
    };
    parse_one(
        fields::from_value(map, |f| item.field(f))?,
        item,
        received_ms,
    )
}

/// Which alert of a body: the body's only one, or the `i`th of its array. Paths are made only
/// for an error message.
#[derive(Clone, Copy)]
enum Item {
    Only,
    At(usize),
}

impl Item {
    /// `$`, `[3]`.
    fn path(self) -> String {
        match self {
            Item::Only => "$".to_string(),
            Item::At(i) => format!("[{i}]"),
        }
    }

    /// The path of one of its fields: `title`, `[3].title`.
    fn field(self, field: &str) -> String {
        match self {
            Item::Only => field.to_string(),
            Item::At(i) => format!("[{i}].{field}"),
        }
    }
}

/// Checks an alert's fields and makes the alert.
fn parse_one<'a>(f: Fields<'a>, item: Item, received_ms: i64) -> Result<IncomingAlert, AlertError> {
    let at = |field: &str| item.field(field);
    let string =
        |value: Field<'a>, field: &str, max: usize| -> Result<Option<Cow<'a, str>>, AlertError> {
            match value {
                Field::Absent => Ok(None),
                Field::Str(s) if s.len() > max => Err(AlertError::invalid(
                    at(field),
                    format!("too long: {} bytes, at most {max}", s.len()),
                )),
                Field::Str(s) => Ok(Some(s)),
                Field::Other(found) => Err(AlertError::invalid(
                    at(field),
                    format!("expected a string, found {found}"),
                )),
            }
        };

    let title = string(f.title, "title", MAX_TITLE_BYTES)?
        .ok_or_else(|| AlertError::invalid(at("title"), "missing; every alert needs a title"))?;
    if title.trim().is_empty() {
        return Err(AlertError::invalid(
            at("title"),
            "empty; every alert needs a title",
        ));
    }
    let robot = string(f.robot, "robot", 64)?;
    let text = string(f.text, "text", MAX_TEXT_BYTES)?.filter(|t| !t.trim().is_empty());
    let severity = match string(f.severity, "severity", 32)? {
        None => Severity::Warning,
        Some(s) => Severity::parse(&s.to_ascii_lowercase()).ok_or_else(|| {
            AlertError::invalid(
                at("severity"),
                format!("unknown severity {s:?}; expected critical, error, warning or info"),
            )
        })?,
    };
    let status = match string(f.status, "status", 32)?.as_deref() {
        None | Some("firing") => Status::Firing,
        Some("resolved") => Status::Resolved,
        Some(s) => {
            return Err(AlertError::invalid(
                at("status"),
                format!("unknown status {s:?}; expected firing or resolved"),
            ));
        }
    };
    let labels = match f.labels {
        LabelsField::Absent => Labels::new(),
        LabelsField::Map(l) => {
            if l.len() > MAX_LABELS {
                return Err(AlertError::invalid(
                    at("labels"),
                    format!("{} labels, at most {MAX_LABELS}", l.len()),
                ));
            }
            for (k, v) in &l {
                let Field::Str(value) = v else {
                    return Err(AlertError::invalid(
                        format!("{}.{k}", at("labels")),
                        format!("expected a string, found {}", v.kind()),
                    ));
                };
                if k.len() > 256 || value.len() > 1024 {
                    return Err(AlertError::invalid(
                        format!("{}.{k}", at("labels")),
                        "label too long: names at most 256 bytes, values at most 1024",
                    ));
                }
            }
            Labels::from_pairs(l.iter().map(|(k, v)| match v {
                Field::Str(v) => (k.as_ref(), v.as_ref()),
                _ => unreachable!("every value was checked to be a string"),
            }))
        }
        LabelsField::Other(found) => {
            return Err(AlertError::invalid(
                at("labels"),
                format!("expected an object of string values, found {found}"),
            ));
        }
    };
    let source = string(f.source, "source", 256)?;
    let time_ms = match string(f.time, "time", 64)? {
        None => None,
        Some(t) => Some(parse_rfc3339_ms(&t).ok_or_else(|| {
            AlertError::invalid(
                at("time"),
                format!(
                    "invalid time {t:?}; expected RFC 3339, e.g. \"2026-11-28T10:00:31+08:00\""
                ),
            )
        })?),
    };
    let fingerprint = match string(f.fingerprint, "fingerprint", 256)? {
        Some(f) if !f.is_empty() => f.into_owned(),
        _ => default_fingerprint(&title, severity, &labels),
    };

    let dedup_key = string(f.dedup_key, "dedup_key", 256)?.filter(|k| !k.is_empty());
    Ok(IncomingAlert {
        robot: robot.map(Cow::into_owned),
        dedup_key: dedup_key.map(Cow::into_owned),
        alert: Alert {
            title: title.into_owned(),
            text: text.map(Cow::into_owned),
            severity,
            status,
            labels,
            fingerprint,
            source: source.map(Cow::into_owned),
            time_ms,
            ends_ms: None,
            received_ms,
            extra: None,
        },
    })
}

/// The fingerprint of an alert that brings none: equal title, severity and labels are the same
/// alert, so repeats of it merge into one digest line. FNV-1a, so the value is stable across builds.
pub fn default_fingerprint(title: &str, severity: Severity, labels: &Labels) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes.iter().chain(std::iter::once(&0xff)) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(title.as_bytes());
    feed(severity.as_str().as_bytes());
    for (k, v) in labels {
        feed(k.as_bytes());
        feed(v.as_bytes());
    }
    format!("{h:016x}")
}

/// What a JSON value is, for messages ("expected a string, found a number").
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// serde_json appends " at line L column C" to its messages; we print the position ourselves.
fn strip_position(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    }
}

/// Parses an RFC 3339 timestamp (`2026-11-28T10:00:31Z`, `…+08:00`, fractional seconds allowed)
/// into Unix milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &s[start..i.min(start + 3)];
        millis = frac.parse::<i64>().ok()? * 10i64.pow(3 - frac.len() as u32);
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let m = oh * 60 + om;
            if *sign == b'-' { -m } else { m }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_min * 60;
    Some(secs * 1000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Vec<IncomingAlert>, AlertError> {
        parse_body(s.as_bytes(), 1)
    }

    #[test]
    fn labels_behave_as_a_map_ordered_by_name() {
        let mut l = Labels::new();
        assert_eq!(l.insert("job".into(), "dq".into()), None);
        assert_eq!(l.insert("env".into(), "prod".into()), None);
        assert_eq!(l.insert("table".into(), "orders".into()), None);
        assert_eq!(l.insert("job".into(), "dq2".into()), Some("dq".into()));
        assert_eq!(l.keys().collect::<Vec<_>>(), ["env", "job", "table"]);
        assert_eq!((l.get("job").unwrap(), l.len()), ("dq2", 3));
        assert!(l.contains_key("env") && !l.contains_key("en"));
        assert_eq!(l.remove("env"), Some("prod".into()));
        assert_eq!(l.remove("env"), None);
        // As JSON, a map; and back, sorted whatever the order it came in.
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(json, r#"{"job":"dq2","table":"orders"}"#);
        let back: Labels = serde_json::from_str(r#"{"table":"orders","job":"dq2"}"#).unwrap();
        assert_eq!(back, l);
        // The same pairs as a BTreeMap, the same order and fingerprint.
        let map: std::collections::BTreeMap<String, String> = l
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(Labels::from(map.clone()), l);
        assert!(
            map.iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .eq(l.iter())
        );
        let collected: Labels = [("b", "1"), ("a", "2"), ("b", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            collected
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
            ["a=2", "b=3"]
        );
    }

    #[test]
    fn the_default_fingerprint_did_not_change_with_the_labels_type() {
        // Stored alerts and dedup keys carry fingerprints made before `Labels` replaced the
        // `BTreeMap`: the hash over the same pairs must stay the same.
        let l: Labels = [("job", "dq_12"), ("env", "prod")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            default_fingerprint("null user_id", Severity::Warning, &l),
            "0b79dd3915437c47"
        );
    }

    #[test]
    fn one_object_and_an_array_both_parse() {
        let one =
            parse(r#"{"title":"a","robot":"ops","severity":"critical","labels":{"job":"dq"}}"#)
                .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].robot.as_deref(), Some("ops"));
        assert_eq!(one[0].alert.severity, Severity::Critical);
        assert_eq!(one[0].alert.group(), Some("dq"));
        let many = parse(r#"[{"title":"a"},{"title":"b","status":"resolved"}]"#).unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(many[0].alert.severity, Severity::Warning);
        assert_eq!(many[1].alert.status, Status::Resolved);
    }

    #[test]
    fn errors_name_the_path_and_the_expectation() {
        let cases = [
            (r#"[{"title":"a"},{"text":"x"}]"#, "[1].title: missing"),
            (
                r#"{"title":"a","severity":"bad"}"#,
                "severity: unknown severity \"bad\"",
            ),
            (
                r#"[{"title":"a","labels":{"job":[1]}}]"#,
                "[0].labels.job: expected a string",
            ),
            (
                r#"{"title":"a","serverity":"x"}"#,
                "serverity: unknown field",
            ),
            (r#"{"title":"a","time":"yesterday"}"#, "time: invalid time"),
            (r#"{"title":5}"#, "title: expected a string, found a number"),
            (r#"[]"#, "$: empty array"),
            (r#""x""#, "$: expected an alert object"),
        ];
        for (body, want) in cases {
            let err = parse(body).unwrap_err();
            assert!(matches!(err, AlertError::Invalid { .. }), "{body}: {err}");
            assert!(
                err.to_string().starts_with(want),
                "{body}: got {err}, want {want}"
            );
        }
    }

    #[test]
    fn malformed_json_and_bad_utf8_give_positions() {
        let err = parse("{\"title\": \n oops}").unwrap_err();
        assert!(matches!(err, AlertError::Malformed(_)));
        assert!(err.to_string().contains("line 2 column"), "{err}");
        let err = parse_body(b"{\"title\":\"\xff\"}", 0).unwrap_err();
        assert_eq!(err.to_string(), "body is not valid UTF-8 at byte 10");
    }

    #[test]
    fn default_fingerprint_merges_equal_alerts_only() {
        let a = parse(r#"[{"title":"x","labels":{"a":"1"}},{"title":"x","labels":{"a":"1"}},{"title":"x","labels":{"a":"2"}}]"#).unwrap();
        assert_eq!(a[0].alert.fingerprint, a[1].alert.fingerprint);
        assert_ne!(a[0].alert.fingerprint, a[2].alert.fingerprint);
        let given = parse(r#"{"title":"x","fingerprint":"abc"}"#).unwrap();
        assert_eq!(given[0].alert.fingerprint, "abc");
    }

    /// A JSON value as a client might put it in field `key`: mostly what the checks take,
    /// sometimes not; strings with and without escapes, `null`, a number.
    fn value_json(key: &'static str) -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let fitting: Vec<&str> = match key {
            "severity" => vec![r#""error""#, r#""Critical""#],
            "status" => vec![r#""resolved""#, r#""firing""#],
            "time" => vec![
                r#""2026-11-28T10:00:31+08:00""#,
                r#""2026-11-28T02:00:31.5Z""#,
            ],
            _ => vec![r#""caf\u00e9 \"q\"\n""#, r#""x""#],
        };
        prop_oneof![
            4 => "[a-z ]{1,6}".prop_map(|s| format!("\"{s}\"")),
            4 => proptest::sample::select(fitting).prop_map(str::to_string),
            1 => proptest::sample::select(vec!["null", "3", "true", r#""""#]).prop_map(str::to_string),
        ]
    }

    /// An alert object, mostly with a title, whose other fields come from a list with repeats
    /// and one unknown name; `labels` is an object (names may repeat) or, now and then, not.
    fn alert_json() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let key = proptest::sample::select(vec![
            "title",
            "robot",
            "text",
            "severity",
            "status",
            "labels",
            "labels",
            "labels",
            "fingerprint",
            "source",
            "time",
            "dedup_key",
            "extra",
        ]);
        let field = key.prop_flat_map(|k| {
            let label = ("[a-c]", value_json("label")).prop_map(|(n, v)| format!("\"{n}\":{v}"));
            let value = if k == "labels" {
                prop_oneof![
                    6 => proptest::collection::vec(label, 0..4)
                        .prop_map(|l| format!("{{{}}}", l.join(","))),
                    1 => value_json(k),
                ]
                .boxed()
            } else {
                value_json(k).boxed()
            };
            value.prop_map(move |v| format!("\"{k}\":{v}"))
        });
        let title = prop_oneof![
            4 => "[a-z]{1,5}".prop_map(|t| vec![format!("\"title\":\"{t}\"")]),
            1 => Just(Vec::new()),
        ];
        (title, proptest::collection::vec(field, 0..5)).prop_map(|(mut fields, more)| {
            fields.extend(more);
            format!("{{{}}}", fields.join(","))
        })
    }

    proptest::proptest! {
        /// Whatever the bytes, parsing answers: alerts that satisfy the limits, or an error.
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            if let Ok(alerts) = parse_body(&body, 0) {
                for a in alerts {
                    proptest::prop_assert!(!a.alert.title.trim().is_empty());
                    proptest::prop_assert!(a.alert.title.len() <= MAX_TITLE_BYTES);
                }
            }
        }

        /// The fast way (`fields::fast`) and the general way accept the same bodies as the same
        /// alerts, and refuse the others alike: repeated and unknown fields, numbers and nulls,
        /// escapes, label objects with repeated names, one object or an array.
        #[test]
        fn fast_and_general_ways_agree(
            alerts in proptest::collection::vec(alert_json(), 1..4),
            array in proptest::bool::ANY,
        ) {
            let body = if array || alerts.len() > 1 {
                format!("[{}]", alerts.join(","))
            } else {
                alerts[0].clone()
            };
            let general = decode_json(body.as_bytes()).and_then(|v| parse_value(v, 7));
            proptest::prop_assert_eq!(parse_body(body.as_bytes(), 7), general, "{}", body);
        }

        /// Any text, ASCII or not, near the RFC 3339 shape or far from it.
        #[test]
        fn any_time_text_parses_or_is_refused(t in "(\\PC|[0-9T:+Z.-]){0,40}") {
            let _ = parse_rfc3339_ms(&t);
        }

        /// JSON-shaped input with arbitrary field values: never a panic, and every error names a path.
        #[test]
        fn alert_shaped_json_never_panics(
            title in proptest::option::of(".{0,40}"),
            severity in proptest::option::of("[a-z]{0,9}"),
            time in proptest::option::of("[0-9T:+Z.-]{0,30}"),
            label in "[a-z]{0,5}",
            value in ".{0,10}",
        ) {
            let mut m = serde_json::Map::new();
            if let Some(t) = title { m.insert("title".into(), t.into()); }
            if let Some(s) = severity { m.insert("severity".into(), s.into()); }
            if let Some(t) = time { m.insert("time".into(), t.into()); }
            m.insert("labels".into(), serde_json::json!({ label: value }));
            match parse_value(serde_json::Value::Object(m), 0) {
                Ok(a) => proptest::prop_assert_eq!(a.len(), 1),
                Err(AlertError::Invalid { path, .. }) => proptest::prop_assert!(!path.is_empty()),
                Err(AlertError::Malformed(m)) => proptest::prop_assert!(false, "decoded JSON called malformed: {}", m),
            }
        }
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2023-11-15T06:13:20.5+08:00"),
            Some(1_700_000_000_500)
        );
        assert_eq!(
            parse_rfc3339_ms("2024-02-29T00:00:00-01:30"),
            Some(1_709_170_200_000)
        );
        assert_eq!(parse_rfc3339_ms("2023-02-29T00:00:00Z"), None);
        assert_eq!(parse_rfc3339_ms("2023-11-14 22:13:20"), None);
        assert_eq!(parse_rfc3339_ms("2023-11-14T22:13:20+0800"), None);
    }
}
