//! Prometheus Alertmanager webhook notifications (payload version 4) turned into sluice alerts.
//!
//! Alertmanager posts one notification per alert group and keeps re-posting the group every
//! `repeat_interval` while it fires, so most of what arrives is a repeat of something already
//! queued. Each alert therefore gets a [`AmAlert::dedup_key`] built from what identifies one
//! occurrence of it (fingerprint, status, `startsAt`): the store drops an alert whose key it has
//! already seen, and a digest lists every occurrence once, however often Alertmanager repeats it.
//!
//! Parsing follows [`crate::alert`]: by hand over `serde_json::Value`, so every rejection names
//! the exact path (`alerts[3].startsAt`), and errors are [`AlertError`]s, so the HTTP layer answers
//! 400 or 422 exactly as it does for `/v1/alerts`. Two things differ on purpose:
//!
//! * unknown fields are ignored, at the top level and per alert, because Alertmanager adds fields
//!   over versions and a sluice upgrade must not be needed to keep receiving them;
//! * content that comes from alerting rules (summaries, descriptions, labels) is cut to
//!   [`crate::alert`]'s limits instead of rejected: Alertmanager cannot fix a notification, it
//!   would only retry the same one, and the alert would be lost.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::alert::{
    Alert, AlertError, Labels, MAX_LABELS, MAX_TEXT_BYTES, MAX_TITLE_BYTES, Severity, Status,
    default_fingerprint, kind, parse_rfc3339_ms,
};
use crate::digest::cut_utf8;

/// `source` of every alert that came from Alertmanager.
pub const SOURCE: &str = "alertmanager";

/// The only webhook payload version this module understands (Alertmanager 0.x sends "4").
pub const VERSION: &str = "4";

/// Longest label name kept, in bytes (as [`crate::alert`] accepts); longer ones are dropped,
/// because a cut name could collide with another label.
const MAX_LABEL_NAME_BYTES: usize = 256;
/// Longest label value kept, in bytes (as [`crate::alert`] accepts); longer ones are cut.
const MAX_LABEL_VALUE_BYTES: usize = 1024;
/// Longest accepted fingerprint, in bytes. Alertmanager's are 16 hex digits, so a longer one is
/// not from Alertmanager and is rejected rather than cut (a cut one could merge distinct alerts).
const MAX_FINGERPRINT_BYTES: usize = 256;
/// Longest accepted `startsAt`; it goes verbatim into the dedup key, so it is bounded.
const MAX_TIME_BYTES: usize = 64;

/// Severity label values understood without configuration, lowercase. Deliberately few: anything
/// else is either mapped in the config or becomes [`Severity::Warning`].
const BUILTIN_SEVERITIES: [(&str, Severity); 8] = [
    ("critical", Severity::Critical),
    ("crit", Severity::Critical),
    ("error", Severity::Error),
    ("err", Severity::Error),
    ("warning", Severity::Warning),
    ("warn", Severity::Warning),
    ("info", Severity::Info),
    ("information", Severity::Info),
];

/// One webhook notification: one alert group as Alertmanager sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The group's alerts in payload order, then (when `truncated > 0`) one note saying how many
    /// Alertmanager left out.
    pub alerts: Vec<AmAlert>,
    pub group_key: String,
    /// `truncatedAlerts`: alerts of the group not in this notification (webhook `max_alerts`).
    pub truncated: u64,
    /// `externalURL`, the link back to Alertmanager; `None` when absent or empty.
    pub external_url: Option<String>,
}

/// One alert of a notification, with the key that identifies this occurrence of it.
#[derive(Debug, Clone, PartialEq)]
pub struct AmAlert {
    pub alert: Alert,
    /// `am:{fingerprint}:{status}:{startsAt}`: a repeat of an alert already queued has the same
    /// key; resolving it, or firing it again later (a new `startsAt`), makes a new one.
    pub dedup_key: String,
}

/// Maps a `severity` label value to a sluice severity, ignoring case and surrounding blanks.
///
/// `map` comes from the config (e.g. `{"p1": Critical, "page": Critical}`) and is consulted first,
/// so it can also re-map a built-in name. Built-in names: `critical`/`crit`, `error`/`err`,
/// `warning`/`warn`, `info`/`information`. Anything else, and a missing or blank label, is
/// [`Severity::Warning`]: an alert with an odd label is still worth seeing, not worth rejecting.
pub fn map_severity(value: Option<&str>, map: &BTreeMap<String, Severity>) -> Severity {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Severity::Warning;
    };
    let value = value.to_lowercase();
    if let Some(&s) = map.get(&value) {
        return s;
    }
    // Config keys written in another case still match; the map is small, so a scan is fine.
    if let Some((_, &s)) = map.iter().find(|(k, _)| k.trim().to_lowercase() == value) {
        return s;
    }
    BUILTIN_SEVERITIES
        .iter()
        .find(|(name, _)| *name == value)
        .map_or(Severity::Warning, |&(_, s)| s)
}

/// Parses an Alertmanager webhook request body. `received_ms` stamps every alert.
///
/// Errors: [`AlertError::Malformed`] when the body is not UTF-8 or not JSON (with the line and
/// column), [`AlertError::Invalid`] with the path of the first wrong field otherwise, including a
/// `version` other than `"4"`.
pub fn parse_notification(
    body: &[u8],
    received_ms: i64,
    severity_map: &BTreeMap<String, Severity>,
) -> Result<Notification, AlertError> {
    let value = crate::alert::decode_json(body)?;
    parse_notification_value(&value, received_ms, severity_map)
}

/// Parses an already decoded notification; see [`parse_notification`].
pub fn parse_notification_value(
    value: &Value,
    received_ms: i64,
    severity_map: &BTreeMap<String, Severity>,
) -> Result<Notification, AlertError> {
    let Value::Object(map) = value else {
        return Err(AlertError::invalid(
            "$",
            format!(
                "expected an Alertmanager webhook notification object, found {}",
                kind(value)
            ),
        ));
    };
    match map.get("version") {
        Some(Value::String(v)) if v == VERSION => {}
        Some(Value::String(v)) => {
            return Err(AlertError::invalid(
                "version",
                format!(
                    "unsupported Alertmanager webhook version {v:?}; sluice understands version \"{VERSION}\""
                ),
            ));
        }
        None | Some(Value::Null) => {
            // Most likely sluice's own alert format posted to the wrong endpoint: say so.
            return Err(AlertError::invalid(
                "version",
                format!(
                    "missing; an Alertmanager webhook notification has \"version\": \"{VERSION}\" (sluice's own alert format goes to /v1/alerts)"
                ),
            ));
        }
        Some(other) => {
            return Err(AlertError::invalid(
                "version",
                format!("expected the string \"{VERSION}\", found {}", kind(other)),
            ));
        }
    }

    let group_key = optional_string(map, "groupKey", "groupKey")?
        .unwrap_or_default()
        .to_string();
    let external_url = optional_string(map, "externalURL", "externalURL")?
        .filter(|u| !u.trim().is_empty())
        .map(str::to_string);
    let truncated = match map.get("truncatedAlerts") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) if n.is_u64() => n.as_u64().unwrap_or_default(),
        Some(other) => {
            return Err(AlertError::invalid(
                "truncatedAlerts",
                format!("expected a non-negative integer, found {}", describe(other)),
            ));
        }
    };
    let group_labels = match map.get("groupLabels") {
        None | Some(Value::Null) => Labels::new(),
        Some(v) => labels(v, "groupLabels")?,
    };
    let items = match map.get("alerts") {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => {
            return Err(AlertError::invalid(
                "alerts",
                "missing; an Alertmanager notification carries an array of alerts",
            ));
        }
        Some(other) => {
            return Err(AlertError::invalid(
                "alerts",
                format!("expected an array of alerts, found {}", kind(other)),
            ));
        }
    };

    let mut alerts = items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_alert(item, &format!("alerts[{i}]"), received_ms, severity_map))
        .collect::<Result<Vec<_>, _>>()?;

    if truncated > 0 {
        let note = truncation_note(
            &alerts,
            truncated,
            &group_key,
            group_labels,
            external_url.as_deref(),
            received_ms,
        );
        alerts.push(note);
    }
    Ok(Notification {
        alerts,
        group_key,
        truncated,
        external_url,
    })
}

fn parse_alert(
    value: &Value,
    path: &str,
    received_ms: i64,
    severity_map: &BTreeMap<String, Severity>,
) -> Result<AmAlert, AlertError> {
    let Value::Object(map) = value else {
        return Err(AlertError::invalid(
            path,
            format!("expected an alert object, found {}", kind(value)),
        ));
    };
    let at = |field: &str| format!("{path}.{field}");

    let status = match optional_string(map, "status", &at("status"))? {
        Some("firing") => Status::Firing,
        Some("resolved") => Status::Resolved,
        Some(s) => {
            return Err(AlertError::invalid(
                at("status"),
                format!("unknown status {s:?}; expected firing or resolved"),
            ));
        }
        None => {
            return Err(AlertError::invalid(
                at("status"),
                "missing; expected firing or resolved",
            ));
        }
    };
    let labels = match map.get("labels") {
        None | Some(Value::Null) => Labels::new(),
        Some(v) => labels(v, &at("labels"))?,
    };
    let empty = Map::new();
    let annotations = match map.get("annotations") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(a)) => a,
        Some(other) => {
            return Err(AlertError::invalid(
                at("annotations"),
                format!("expected an object of string values, found {}", kind(other)),
            ));
        }
    };
    let annotations_path = at("annotations");
    let annotation = |name: &str| -> Result<Option<&str>, AlertError> {
        Ok(
            optional_string(annotations, name, &format!("{annotations_path}.{name}"))?
                .map(str::trim)
                .filter(|s| !s.is_empty()),
        )
    };

    // startsAt is the occurrence's identity (dedup key) and its time. Go's zero time is what
    // Alertmanager writes for "unset", so it counts as missing.
    let starts_at = optional_string(map, "startsAt", &at("startsAt"))?.unwrap_or_default();
    if starts_at.len() > MAX_TIME_BYTES {
        return Err(AlertError::invalid(
            at("startsAt"),
            format!(
                "too long: {} bytes, at most {MAX_TIME_BYTES}",
                starts_at.len()
            ),
        ));
    }
    let time_ms = if starts_at.is_empty() || is_zero_time(starts_at) {
        if status == Status::Firing {
            return Err(AlertError::invalid(
                at("startsAt"),
                "missing or unset; a firing alert needs its RFC 3339 start time",
            ));
        }
        None
    } else {
        Some(parse_rfc3339_ms(starts_at).ok_or_else(|| {
            AlertError::invalid(
                at("startsAt"),
                format!(
                    "invalid time {starts_at:?}; expected RFC 3339, e.g. \"2026-11-28T10:00:31.123Z\""
                ),
            )
        })?)
    };

    // endsAt is when a resolved alert stopped; for a firing one it is only Alertmanager's
    // expiry guess, so it is kept for resolved alerts alone. An unreadable one is not fatal.
    let ends_ms = match status {
        Status::Resolved => optional_string(map, "endsAt", &at("endsAt"))?
            .filter(|e| !is_zero_time(e))
            .and_then(parse_rfc3339_ms),
        Status::Firing => None,
    };

    let given_fingerprint =
        optional_string(map, "fingerprint", &at("fingerprint"))?.unwrap_or_default();
    if given_fingerprint.len() > MAX_FINGERPRINT_BYTES {
        return Err(AlertError::invalid(
            at("fingerprint"),
            format!(
                "too long: {} bytes, at most {MAX_FINGERPRINT_BYTES}",
                given_fingerprint.len()
            ),
        ));
    }

    let severity = map_severity(labels.get("severity"), severity_map);
    let named = match annotation("summary")? {
        Some(s) => Some(s),
        None => labels
            .get("alertname")
            .map(|s| s.trim())
            .filter(|s| !s.is_empty()),
    };
    let fingerprint = if given_fingerprint.is_empty() {
        // Hashed over what names the alert (or nothing), so that a fallback title below can be
        // made from the fingerprint without going in a circle.
        default_fingerprint(named.unwrap_or_default(), severity, &labels)
    } else {
        given_fingerprint.to_string()
    };
    let title = match named {
        Some(t) => cut_utf8(t, MAX_TITLE_BYTES).to_string(),
        None => format!("alert {fingerprint}"),
    };
    let text = match annotation("description")? {
        Some(t) => Some(t),
        None => annotation("message")?,
    }
    .map(|t| cut_utf8(t, MAX_TEXT_BYTES).to_string());

    let dedup_key = format!("am:{fingerprint}:{}:{starts_at}", status.as_str());
    Ok(AmAlert {
        alert: Alert {
            title,
            text,
            severity,
            status,
            labels,
            fingerprint,
            source: Some(SOURCE.to_string()),
            time_ms,
            ends_ms,
            received_ms,
            extra: None,
        },
        dedup_key,
    })
}

/// The extra alert for a notification Alertmanager cut short (`max_alerts`): the left-out alerts
/// are never sent to sluice, so this is the only trace of them a reader gets.
fn truncation_note(
    alerts: &[AmAlert],
    truncated: u64,
    group_key: &str,
    group_labels: Labels,
    external_url: Option<&str>,
    received_ms: i64,
) -> AmAlert {
    // The derived order puts the most severe first.
    let severity = alerts
        .iter()
        .map(|a| a.alert.severity)
        .min()
        .unwrap_or(Severity::Warning);
    let group = if group_labels.is_empty() {
        group_key.to_string()
    } else {
        group_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let noun = if truncated == 1 { "alert" } else { "alerts" };
    let title = format!("Alertmanager left out {truncated} more {noun} of group {group}");
    let mut text = String::from("the webhook's max_alerts kept them out of this notification");
    if let Some(url) = external_url {
        text.push_str("; see ");
        text.push_str(url);
    }
    // Independent of the count and of the severity, so every note about one group is one
    // fingerprint and notes in one digest merge into one line.
    let fingerprint = default_fingerprint(
        &format!("{group_key}\u{0}truncated"),
        Severity::Warning,
        &Labels::new(),
    );
    AmAlert {
        alert: Alert {
            title: cut_utf8(&title, MAX_TITLE_BYTES).to_string(),
            text: Some(cut_utf8(&text, MAX_TEXT_BYTES).to_string()),
            severity,
            status: Status::Firing,
            labels: group_labels,
            fingerprint,
            source: Some(SOURCE.to_string()),
            time_ms: None,
            ends_ms: None,
            received_ms,
            extra: None,
        },
        // Keyed by arrival, so each truncated notification is shown, repeats included: the
        // left-out alerts may differ from one notification to the next.
        dedup_key: format!("am-truncated:{group_key}:{received_ms}"),
    }
}

/// A label set: string values (numbers and booleans are written out, as `/v1/alerts` does), names
/// over [`MAX_LABEL_NAME_BYTES`] dropped, values cut to [`MAX_LABEL_VALUE_BYTES`], and at most
/// [`MAX_LABELS`] labels, the first in key order.
fn labels(value: &Value, path: &str) -> Result<Labels, AlertError> {
    let Value::Object(map) = value else {
        return Err(AlertError::invalid(
            path,
            format!("expected an object of string values, found {}", kind(value)),
        ));
    };
    let mut out = Labels::new();
    for (k, v) in map {
        let v = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(AlertError::invalid(
                    format!("{path}.{k}"),
                    format!("expected a string, found {}", kind(other)),
                ));
            }
        };
        if k.len() <= MAX_LABEL_NAME_BYTES {
            let v = match cut_utf8(&v, MAX_LABEL_VALUE_BYTES) {
                cut if cut.len() < v.len() => cut.to_string(),
                _ => v,
            };
            out.insert(k.clone(), v);
        }
    }
    // serde_json's map may keep insertion order (feature `preserve_order`); `Labels` is sorted
    // either way, so "the first in key order" does not depend on how the crate was built.
    out.truncate(MAX_LABELS);
    Ok(out)
}

/// The string at `map[field]`, `None` when absent or null; anything else is an error at `path`.
fn optional_string<'a>(
    map: &'a Map<String, Value>,
    field: &str,
    path: &str,
) -> Result<Option<&'a str>, AlertError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(AlertError::invalid(
            path,
            format!("expected a string, found {}", kind(other)),
        )),
    }
}

/// Go's zero `time.Time`, which Alertmanager writes for an unset time.
fn is_zero_time(s: &str) -> bool {
    s.starts_with("0001-01-01T00:00:00")
}

/// Like [`kind`], but a number is shown, since for a count its value is what is wrong.
fn describe(v: &Value) -> String {
    match v {
        Value::Number(n) => format!("{n}"),
        other => kind(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RECEIVED: i64 = 1_790_000_000_000;

    fn no_map() -> BTreeMap<String, Severity> {
        BTreeMap::new()
    }

    fn parse(v: &Value) -> Result<Notification, AlertError> {
        parse_notification(v.to_string().as_bytes(), RECEIVED, &no_map())
    }

    /// A notification as Alertmanager 0.25 posts it (captured from a real one), two alerts of
    /// group `alertname="DiskFull"`, the second already resolved.
    fn realistic() -> Value {
        json!({
            "receiver": "sluice",
            "status": "firing",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {
                        "alertname": "DiskFull",
                        "instance": "db1:9100",
                        "job": "node",
                        "severity": "critical"
                    },
                    "annotations": {
                        "description": "/ on db1 is 99% full\nfree: 1.2 GiB",
                        "summary": "Disk full on db1"
                    },
                    "startsAt": "2026-11-28T15:50:30.264519555Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prometheus:9090/graph?g0.expr=disk_free+%3C+0.01",
                    "fingerprint": "e94c744ae3d44df8"
                },
                {
                    "status": "resolved",
                    "labels": {
                        "alertname": "DiskFull",
                        "instance": "db2:9100",
                        "job": "node",
                        "severity": "critical"
                    },
                    "annotations": {"summary": "Disk full on db2"},
                    "startsAt": "2026-11-28T15:40:00Z",
                    "endsAt": "2026-11-28T15:50:48.601037Z",
                    "generatorURL": "http://prometheus:9090/graph?g0.expr=disk_free+%3C+0.01",
                    "fingerprint": "d6e4a7191f9d099c"
                }
            ],
            "groupLabels": {"alertname": "DiskFull"},
            "commonLabels": {"alertname": "DiskFull", "job": "node", "severity": "critical"},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093",
            "version": "4",
            "groupKey": "{}:{alertname=\"DiskFull\"}",
            "truncatedAlerts": 0
        })
    }

    /// A minimal firing alert, for tests that change one thing about it.
    fn one(alert: Value) -> Value {
        json!({"version": "4", "groupKey": "{}:{}", "alerts": [alert]})
    }

    fn firing(labels: Value, annotations: Value) -> Value {
        json!({
            "status": "firing",
            "labels": labels,
            "annotations": annotations,
            "startsAt": "2026-11-28T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": "00000000000000aa"
        })
    }

    fn first(v: &Value) -> Alert {
        parse(v).unwrap().alerts.remove(0).alert
    }

    fn invalid(v: &Value) -> String {
        match parse(v) {
            Err(e @ AlertError::Invalid { .. }) => e.to_string(),
            other => panic!("expected Invalid for {v}, got {other:?}"),
        }
    }

    #[test]
    fn realistic_payload_maps_every_field() {
        let n = parse(&realistic()).unwrap();
        assert_eq!(n.group_key, "{}:{alertname=\"DiskFull\"}");
        assert_eq!(n.truncated, 0);
        assert_eq!(n.external_url.as_deref(), Some("http://alertmanager:9093"));
        assert_eq!(n.alerts.len(), 2);

        let a = &n.alerts[0];
        assert_eq!(
            a.alert,
            Alert {
                title: "Disk full on db1".into(),
                text: Some("/ on db1 is 99% full\nfree: 1.2 GiB".into()),
                severity: Severity::Critical,
                status: Status::Firing,
                labels: [
                    ("alertname", "DiskFull"),
                    ("instance", "db1:9100"),
                    ("job", "node"),
                    ("severity", "critical"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
                fingerprint: "e94c744ae3d44df8".into(),
                source: Some("alertmanager".into()),
                // Nanoseconds are cut to milliseconds.
                time_ms: parse_rfc3339_ms("2026-11-28T15:50:30.264Z"),
                ends_ms: None,
                received_ms: RECEIVED,
                extra: None,
            }
        );
        assert_eq!(
            a.dedup_key,
            "am:e94c744ae3d44df8:firing:2026-11-28T15:50:30.264519555Z"
        );
        assert_eq!(a.alert.group(), Some("DiskFull"));

        let r = &n.alerts[1];
        assert_eq!(r.alert.status, Status::Resolved);
        assert_eq!(r.alert.title, "Disk full on db2");
        assert_eq!(r.alert.text, None);
        assert_eq!(r.alert.time_ms, parse_rfc3339_ms("2026-11-28T15:40:00Z"));
        assert_eq!(
            r.dedup_key,
            "am:d6e4a7191f9d099c:resolved:2026-11-28T15:40:00Z"
        );
    }

    #[test]
    fn unknown_fields_are_ignored_everywhere() {
        let mut v = realistic();
        v["someFutureField"] = json!({"x": [1, 2]});
        v["alerts"][0]["silencedBy"] = json!(["abc"]);
        v["alerts"][0]["generatorURL"] = json!(42);
        v["commonLabels"] = json!("not even an object");
        assert_eq!(parse(&v).unwrap(), parse(&realistic()).unwrap());
    }

    #[test]
    fn title_falls_back_from_summary_to_alertname_to_fingerprint() {
        let with_summary = firing(
            json!({"alertname": "A"}),
            json!({"summary": "  the summary  "}),
        );
        assert_eq!(first(&one(with_summary)).title, "the summary");

        let blank_summary = firing(json!({"alertname": "A"}), json!({"summary": " \n"}));
        assert_eq!(first(&one(blank_summary)).title, "A");

        let nameless = firing(json!({"job": "x"}), json!({}));
        assert_eq!(first(&one(nameless)).title, "alert 00000000000000aa");
    }

    #[test]
    fn text_is_description_else_message() {
        let both = firing(
            json!({}),
            json!({"description": "d", "message": "m", "summary": "s"}),
        );
        assert_eq!(first(&one(both)).text.as_deref(), Some("d"));
        let message = firing(json!({}), json!({"message": "m"}));
        assert_eq!(first(&one(message)).text.as_deref(), Some("m"));
        let neither = firing(json!({}), json!({"runbook_url": "http://x"}));
        assert_eq!(first(&one(neither)).text, None);
    }

    #[test]
    fn missing_fingerprint_is_derived_and_stable() {
        let mut a = firing(json!({"alertname": "A", "job": "j"}), json!({}));
        a["fingerprint"] = json!("");
        let x = first(&one(a.clone()));
        assert_eq!(x.fingerprint.len(), 16);
        assert_eq!(first(&one(a.clone())).fingerprint, x.fingerprint);
        a["labels"]["job"] = json!("other");
        assert_ne!(first(&one(a.clone())).fingerprint, x.fingerprint);

        // Nothing names it: the title is made from the derived fingerprint.
        let mut nameless = firing(json!({"job": "j"}), json!({}));
        nameless.as_object_mut().unwrap().remove("fingerprint");
        let y = first(&one(nameless));
        assert_eq!(y.title, format!("alert {}", y.fingerprint));
    }

    #[test]
    fn severity_mapping() {
        let mut map = BTreeMap::new();
        map.insert("p1".to_string(), Severity::Critical);
        map.insert("Page".to_string(), Severity::Critical);
        map.insert("warning".to_string(), Severity::Error);
        let cases = [
            (Some("critical"), Severity::Critical),
            (Some("CRITICAL"), Severity::Critical),
            (Some(" crit "), Severity::Critical),
            (Some("error"), Severity::Error),
            (Some("err"), Severity::Error),
            (Some("warn"), Severity::Warning),
            (Some("info"), Severity::Info),
            (Some("Information"), Severity::Info),
            (Some("p1"), Severity::Critical),
            (Some("P1"), Severity::Critical),
            (Some("page"), Severity::Critical),
            // The config is consulted before the built-in names.
            (Some("warning"), Severity::Error),
            (Some("none"), Severity::Warning),
            (Some("p5"), Severity::Warning),
            (Some(""), Severity::Warning),
            (None, Severity::Warning),
        ];
        for (value, want) in cases {
            assert_eq!(map_severity(value, &map), want, "{value:?}");
        }
        assert_eq!(map_severity(Some("warning"), &no_map()), Severity::Warning);

        let a = firing(json!({"severity": "p1"}), json!({}));
        let n = parse_notification(one(a).to_string().as_bytes(), 0, &map).unwrap();
        assert_eq!(n.alerts[0].alert.severity, Severity::Critical);
        let b = firing(json!({"alertname": "no severity label"}), json!({}));
        assert_eq!(first(&one(b)).severity, Severity::Warning);
    }

    #[test]
    fn dedup_keys_match_for_a_repeat_only() {
        let key = |a: &Value| parse(&one(a.clone())).unwrap().alerts[0].dedup_key.clone();
        let a = firing(json!({"alertname": "A"}), json!({"summary": "s"}));
        // A repeat: same alert, later notification, even with changed annotations.
        let mut repeat = a.clone();
        repeat["annotations"]["summary"] = json!("value now 93%");
        let r1 = parse_notification(one(a.clone()).to_string().as_bytes(), 1, &no_map()).unwrap();
        let r2 = parse_notification(one(repeat).to_string().as_bytes(), 2, &no_map()).unwrap();
        assert_eq!(r1.alerts[0].dedup_key, r2.alerts[0].dedup_key);

        let mut resolved = a.clone();
        resolved["status"] = json!("resolved");
        resolved["endsAt"] = json!("2026-11-28T10:05:00Z");
        assert_ne!(key(&resolved), key(&a));
        assert_eq!(
            parse(&one(resolved)).unwrap().alerts[0].alert.status,
            Status::Resolved
        );

        let mut refired = a.clone();
        refired["startsAt"] = json!("2026-11-28T11:00:00Z");
        assert_ne!(key(&refired), key(&a));

        let mut other = a.clone();
        other["fingerprint"] = json!("00000000000000bb");
        assert_ne!(key(&other), key(&a));
    }

    #[test]
    fn resolved_alert_may_lack_a_start_time_but_firing_may_not() {
        let mut r = firing(json!({"alertname": "A"}), json!({}));
        r["status"] = json!("resolved");
        r["startsAt"] = json!("0001-01-01T00:00:00Z");
        let n = parse(&one(r)).unwrap();
        assert_eq!(n.alerts[0].alert.time_ms, None);
        assert_eq!(
            n.alerts[0].dedup_key,
            "am:00000000000000aa:resolved:0001-01-01T00:00:00Z"
        );

        let mut f = firing(json!({"alertname": "A"}), json!({}));
        f.as_object_mut().unwrap().remove("startsAt");
        assert!(
            invalid(&one(f)).starts_with("alerts[0].startsAt: missing"),
            "firing without startsAt"
        );
    }

    #[test]
    fn truncated_notification_gets_one_note_alert() {
        let mut v = realistic();
        v["truncatedAlerts"] = json!(7);
        v["alerts"][0]["labels"]["severity"] = json!("warning");
        v["alerts"][1]["labels"]["severity"] = json!("error");
        let n = parse(&v).unwrap();
        assert_eq!(n.truncated, 7);
        assert_eq!(n.alerts.len(), 3);
        let note = &n.alerts[2];
        assert_eq!(
            note.alert.title,
            "Alertmanager left out 7 more alerts of group alertname=DiskFull"
        );
        assert_eq!(note.alert.severity, Severity::Error, "the most severe");
        assert_eq!(note.alert.status, Status::Firing);
        assert_eq!(note.alert.labels.get("alertname").unwrap(), "DiskFull");
        assert_eq!(note.alert.group(), Some("DiskFull"));
        assert!(
            note.alert
                .text
                .as_deref()
                .unwrap()
                .contains("http://alertmanager:9093")
        );
        assert_eq!(
            note.dedup_key,
            format!("am-truncated:{{}}:{{alertname=\"DiskFull\"}}:{RECEIVED}")
        );

        // Every truncated notification of the group: a new key, the same fingerprint.
        let later = parse_notification(v.to_string().as_bytes(), RECEIVED + 1, &no_map()).unwrap();
        assert_ne!(later.alerts[2].dedup_key, note.dedup_key);
        assert_eq!(later.alerts[2].alert.fingerprint, note.alert.fingerprint);

        // Without group labels the group key names the group; one left out is "alert".
        let bare = json!({"version": "4", "groupKey": "{}:{}", "truncatedAlerts": 1, "alerts": []});
        let n = parse(&bare).unwrap();
        assert_eq!(n.alerts.len(), 1);
        assert_eq!(
            n.alerts[0].alert.title,
            "Alertmanager left out 1 more alert of group {}:{}"
        );
        assert_eq!(n.alerts[0].alert.severity, Severity::Warning);
        assert_eq!(n.external_url, None);

        v["truncatedAlerts"] = json!(0);
        assert_eq!(parse(&v).unwrap().alerts.len(), 2);
    }

    #[test]
    fn malformed_bodies_give_positions() {
        let err = parse_notification(b"{\"version\": \"4\",\n \"alerts\": [oops]}", 0, &no_map())
            .unwrap_err();
        assert!(matches!(err, AlertError::Malformed(_)), "{err}");
        assert!(err.to_string().contains("line 2 column"), "{err}");
        let err = parse_notification(b"", 0, &no_map()).unwrap_err();
        assert!(matches!(err, AlertError::Malformed(_)), "{err}");
        let err = parse_notification(b"{\"version\":\"\xff\"}", 0, &no_map()).unwrap_err();
        assert_eq!(err.to_string(), "body is not valid UTF-8 at byte 12");
    }

    #[test]
    fn invalid_notifications_name_the_path() {
        let a = firing(json!({"alertname": "A"}), json!({}));
        let with = |f: &dyn Fn(&mut Value)| {
            let mut v = one(a.clone());
            f(&mut v);
            v
        };
        let cases: Vec<(Value, &str)> = vec![
            (
                json!([]),
                "$: expected an Alertmanager webhook notification object",
            ),
            (json!({"title": "x"}), "version: missing"),
            (
                with(&|v| v["version"] = json!("3")),
                "version: unsupported Alertmanager webhook version \"3\"",
            ),
            (
                with(&|v| v["version"] = json!(4)),
                "version: expected the string \"4\", found a number",
            ),
            (
                with(&|v| {
                    v.as_object_mut().unwrap().remove("alerts");
                }),
                "alerts: missing",
            ),
            (
                with(&|v| v["alerts"] = json!({})),
                "alerts: expected an array of alerts, found an object",
            ),
            (
                with(&|v| v["alerts"][0] = json!("x")),
                "alerts[0]: expected an alert object, found a string",
            ),
            (
                with(&|v| v["groupKey"] = json!(1)),
                "groupKey: expected a string",
            ),
            (
                with(&|v| v["truncatedAlerts"] = json!(-1)),
                "truncatedAlerts: expected a non-negative integer, found -1",
            ),
            (
                with(&|v| v["truncatedAlerts"] = json!("2")),
                "truncatedAlerts: expected a non-negative integer, found a string",
            ),
            (
                with(&|v| v["groupLabels"] = json!({"a": []})),
                "groupLabels.a: expected a string, found an array",
            ),
            (
                with(&|v| v["alerts"][0]["status"] = json!("pending")),
                "alerts[0].status: unknown status \"pending\"",
            ),
            (
                with(&|v| {
                    v["alerts"][0].as_object_mut().unwrap().remove("status");
                }),
                "alerts[0].status: missing",
            ),
            (
                with(&|v| v["alerts"][0]["labels"] = json!([])),
                "alerts[0].labels: expected an object",
            ),
            (
                with(&|v| v["alerts"][0]["labels"]["job"] = json!(null)),
                "alerts[0].labels.job: expected a string, found null",
            ),
            (
                with(&|v| v["alerts"][0]["annotations"] = json!("x")),
                "alerts[0].annotations: expected an object",
            ),
            (
                with(&|v| v["alerts"][0]["annotations"]["summary"] = json!(5)),
                "alerts[0].annotations.summary: expected a string, found a number",
            ),
            (
                with(&|v| v["alerts"][0]["startsAt"] = json!("yesterday")),
                "alerts[0].startsAt: invalid time \"yesterday\"",
            ),
            (
                with(&|v| v["alerts"][0]["startsAt"] = json!(1_700_000_000)),
                "alerts[0].startsAt: expected a string, found a number",
            ),
            (
                with(&|v| v["alerts"][0]["fingerprint"] = json!("f".repeat(300))),
                "alerts[0].fingerprint: too long",
            ),
        ];
        for (body, want) in cases {
            let got = invalid(&body);
            assert!(got.starts_with(want), "{body}: got {got}, want {want}");
        }

        // The path counts alerts from 0 and names the first bad one.
        let mut v = realistic();
        let mut bad = v["alerts"][0].clone();
        bad["startsAt"] = json!("2026-13-01T00:00:00Z");
        v["alerts"]
            .as_array_mut()
            .unwrap()
            .extend([bad.clone(), bad]);
        assert!(invalid(&v).starts_with("alerts[2].startsAt: invalid time"));
    }

    #[test]
    fn long_content_is_cut_on_char_boundaries_not_rejected() {
        // 3-byte characters, so MAX_TITLE_BYTES (1024) falls inside one.
        let summary = "磁".repeat(MAX_TITLE_BYTES);
        let description = "é".repeat(MAX_TEXT_BYTES);
        let a = firing(
            json!({"alertname": "A", "long": "v".repeat(5000), "x".repeat(300): "dropped"}),
            json!({"summary": summary, "description": description}),
        );
        let got = first(&one(a));
        assert!(got.title.len() <= MAX_TITLE_BYTES);
        assert_eq!(got.title.len(), MAX_TITLE_BYTES / 3 * 3);
        assert!(summary.starts_with(&got.title));
        let text = got.text.unwrap();
        assert!(text.len() <= MAX_TEXT_BYTES && description.starts_with(&text));
        assert_eq!(got.labels["long"].len(), MAX_LABEL_VALUE_BYTES);
        assert_eq!(got.labels.len(), 2, "the over-long label name is dropped");
    }

    #[test]
    fn labels_beyond_the_limit_keep_the_first_in_key_order() {
        let labels: Map<String, Value> = (0..MAX_LABELS + 10)
            .map(|i| (format!("l{i:03}"), json!(i.to_string())))
            .collect();
        let got = first(&one(firing(Value::Object(labels), json!({}))));
        assert_eq!(got.labels.len(), MAX_LABELS);
        assert!(got.labels.contains_key("l000"));
        assert!(got.labels.contains_key(&format!("l{:03}", MAX_LABELS - 1)));
        assert!(!got.labels.contains_key(&format!("l{:03}", MAX_LABELS)));
    }

    #[test]
    fn empty_alert_list_is_an_empty_notification() {
        let n = parse(&json!({"version": "4", "alerts": []})).unwrap();
        assert!(n.alerts.is_empty());
        assert_eq!(n.group_key, "");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Any JSON value, small.
        fn any_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|n| json!(n)),
                any::<f64>().prop_map(|f| json!(f)),
                ".{0,40}".prop_map(Value::String),
                Just(json!("4")),
                Just(json!("firing")),
                Just(json!("resolved")),
                Just(json!("2026-11-28T10:00:00.123456789Z")),
                Just(json!("0001-01-01T00:00:00Z")),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map(
                        prop_oneof![
                            Just("summary".to_string()),
                            Just("severity".to_string()),
                            Just("alertname".to_string()),
                            ".{0,8}"
                        ],
                        inner,
                        0..4
                    )
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// Mostly a well-formed value from `valid`, sometimes any JSON value at all.
        fn mostly(valid: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Value> {
            prop_oneof![4 => valid, 1 => any_json()].boxed()
        }

        /// String maps with the names this module looks at, values up to ~1.5 KB.
        fn string_map(names: &'static [&'static str]) -> impl Strategy<Value = Value> {
            let name = prop_oneof![
                prop::sample::select(names).prop_map(str::to_string),
                ".{0,12}"
            ];
            let value = prop_oneof![".{0,24}", ".{0,400}".prop_map(|s| s.repeat(4))];
            prop::collection::btree_map(name, value, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k, json!(v))).collect()))
        }

        /// A notification whose fields are mostly well-formed and sometimes anything.
        fn notification_shaped() -> impl Strategy<Value = Value> {
            let alert = (
                mostly(prop::sample::select(vec!["firing", "resolved"]).prop_map(|s| json!(s))),
                mostly(string_map(&["alertname", "severity", "job"])),
                mostly(string_map(&["summary", "description", "message"])),
                mostly(
                    prop::sample::select(vec![
                        "2026-11-28T10:00:00.123456789Z",
                        "2026-11-28T18:00:00+08:00",
                        "0001-01-01T00:00:00Z",
                    ])
                    .prop_map(|s| json!(s)),
                ),
                mostly(prop_oneof!["[0-9a-f]{16}", Just(String::new())].prop_map(Value::String)),
            )
                .prop_map(|(status, labels, annotations, starts, fp)| {
                    json!({
                        "status": status,
                        "labels": labels,
                        "annotations": annotations,
                        "startsAt": starts,
                        "fingerprint": fp,
                    })
                });
            (
                mostly(".{0,30}".prop_map(Value::String)),
                mostly((0u64..5).prop_map(|n| json!(n))),
                mostly(string_map(&["alertname", "job"])),
                prop::collection::vec(alert, 0..4),
            )
                .prop_map(|(key, truncated, group_labels, alerts)| {
                    json!({
                        "version": "4",
                        "groupKey": key,
                        "truncatedAlerts": truncated,
                        "groupLabels": group_labels,
                        "alerts": alerts,
                    })
                })
        }

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
                let _ = parse_notification(&body, 0, &BTreeMap::new());
            }

            #[test]
            fn arbitrary_json_never_panics(v in any_json()) {
                let _ = parse_notification(v.to_string().as_bytes(), 0, &BTreeMap::new());
            }

            #[test]
            fn notification_shaped_json_never_panics_and_keeps_limits(
                mut v in notification_shaped(),
                version in mostly(Just(json!("4"))),
            ) {
                v["version"] = version;
                if let Ok(n) = parse_notification(v.to_string().as_bytes(), 5, &BTreeMap::new()) {
                    let given = v["alerts"].as_array().map_or(0, Vec::len);
                    prop_assert_eq!(n.alerts.len(), given + usize::from(n.truncated > 0));
                    for a in &n.alerts {
                        prop_assert!(!a.alert.title.trim().is_empty());
                        prop_assert!(a.alert.title.len() <= MAX_TITLE_BYTES);
                        prop_assert!(a.alert.text.as_ref().is_none_or(|t| t.len() <= MAX_TEXT_BYTES));
                        prop_assert!(a.alert.labels.len() <= MAX_LABELS);
                        prop_assert!(!a.alert.fingerprint.is_empty());
                        prop_assert_eq!(a.alert.received_ms, 5);
                        prop_assert_eq!(a.alert.source.as_deref(), Some(SOURCE));
                        let own_key = format!("am:{}:{}:", a.alert.fingerprint, a.alert.status.as_str());
                        prop_assert!(
                            a.dedup_key.starts_with(&own_key) || a.dedup_key.starts_with("am-truncated:"),
                            "{}", a.dedup_key
                        );
                    }
                }
            }

            #[test]
            fn any_summary_becomes_a_title_prefix_within_the_limit(summary in ".{1,600}", pad in 0usize..3) {
                // Up to ~2400 bytes of arbitrary characters, so cuts land inside characters.
                let long = format!("{}{}", "x".repeat(pad), summary.repeat(4));
                let a = firing(json!({"alertname": "A"}), json!({"summary": long}));
                let got = parse(&one(a)).unwrap().alerts.remove(0).alert;
                prop_assert!(got.title.len() <= MAX_TITLE_BYTES);
                let trimmed = long.trim();
                if trimmed.is_empty() {
                    prop_assert_eq!(got.title, "A");
                } else {
                    prop_assert!(trimmed.starts_with(&got.title));
                }
            }
        }
    }
}
