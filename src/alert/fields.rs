//! An alert's fields as a request gives them, before they are checked: what [`super::parse_one`]
//! validates, whichever way they were read.
//!
//! Two ways read them. The general one goes through a `serde_json::Value` ([`from_value`]): it
//! takes any JSON, so every rejection can name the exact path and what was found there. The
//! fast one ([`fast`]) reads the bytes straight into [`Fields`], borrowing every string that has
//! no escapes, and takes only the common shape: one alert object or a non-empty array of them,
//! every field known and given once, every value a string or `null`, labels an object of strings.
//! Anything else, and any body the checks then refuse, is read again the general way, which
//! decides and explains; so the fast way only ever changes how quickly a valid body is accepted.
//! Building the `Value` tree (a map per alert, a string per value, all freed again) was 40 % of
//! batched ingest (`perf`).

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{AlertError, FIELDS, kind};

/// One field's value as sent.
#[derive(Debug, Default, PartialEq)]
pub(super) enum Field<'a> {
    /// Not there, or `null`.
    #[default]
    Absent,
    Str(Cow<'a, str>),
    /// Any other JSON value, by what it is (`a number`).
    Other(&'static str),
}

impl Field<'_> {
    /// What it is, for "expected a string, found …" (a label whose value is absent is `null`).
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Field::Absent => "null",
            Field::Str(_) => "a string",
            Field::Other(k) => k,
        }
    }
}

/// The `labels` field as sent.
#[derive(Debug, Default, PartialEq)]
pub(super) enum LabelsField<'a> {
    #[default]
    Absent,
    /// Name and value of each label, in the order given.
    Map(Vec<(Cow<'a, str>, Field<'a>)>),
    Other(&'static str),
}

/// Every field an alert object may carry ([`FIELDS`]).
#[derive(Debug, Default, PartialEq)]
pub(super) struct Fields<'a> {
    pub(super) robot: Field<'a>,
    pub(super) title: Field<'a>,
    pub(super) text: Field<'a>,
    pub(super) severity: Field<'a>,
    pub(super) status: Field<'a>,
    pub(super) labels: LabelsField<'a>,
    pub(super) fingerprint: Field<'a>,
    pub(super) source: Field<'a>,
    pub(super) time: Field<'a>,
    pub(super) dedup_key: Field<'a>,
}

/// A body read the fast way: one object, or an array of them (the paths differ: `$`, `[i]`).
pub(super) struct Body<'a> {
    pub(super) alerts: Vec<Fields<'a>>,
    pub(super) array: bool,
}

/// The fields of an alert object decoded as a `Value`; an unknown field is refused first, with
/// `at` naming its path.
pub(super) fn from_value<'a>(
    map: &'a serde_json::Map<String, Value>,
    at: impl Fn(&str) -> String,
) -> Result<Fields<'a>, AlertError> {
    if let Some(key) = map.keys().find(|k| !FIELDS.split(", ").any(|f| f == *k)) {
        return Err(AlertError::invalid(
            at(key),
            format!("unknown field; expected one of {FIELDS}"),
        ));
    }
    let field = |name: &str| match map.get(name) {
        None | Some(Value::Null) => Field::Absent,
        Some(Value::String(s)) => Field::Str(Cow::Borrowed(s)),
        Some(other) => Field::Other(kind(other)),
    };
    let labels = match map.get("labels") {
        None | Some(Value::Null) => LabelsField::Absent,
        Some(Value::Object(l)) => LabelsField::Map(
            l.iter()
                .map(|(k, v)| {
                    let value = match v {
                        Value::String(s) => Field::Str(Cow::Borrowed(s)),
                        Value::Number(n) => Field::Str(Cow::Owned(n.to_string())),
                        Value::Bool(b) => {
                            Field::Str(Cow::Borrowed(if *b { "true" } else { "false" }))
                        }
                        other => Field::Other(kind(other)),
                    };
                    (Cow::Borrowed(k.as_str()), value)
                })
                .collect(),
        ),
        Some(other) => LabelsField::Other(kind(other)),
    };
    Ok(Fields {
        robot: field("robot"),
        title: field("title"),
        text: field("text"),
        severity: field("severity"),
        status: field("status"),
        labels,
        fingerprint: field("fingerprint"),
        source: field("source"),
        time: field("time"),
        dedup_key: field("dedup_key"),
    })
}

/// The body read the fast way, or `None` when it is not of the common shape (see the module
/// documentation): the caller then reads it the general way.
pub(super) fn fast(body: &[u8]) -> Option<Body<'_>> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let read = de.deserialize_any(BodyVisitor).ok()?;
    de.end().ok()?;
    (!read.alerts.is_empty()).then_some(read)
}

/// A field's name; any other name is an error (and so the general way).
#[derive(Clone, Copy, Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Name {
    Robot,
    Title,
    Text,
    Severity,
    Status,
    Labels,
    Fingerprint,
    Source,
    Time,
    DedupKey,
}

/// A JSON string, borrowed from the body when it has no escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Str<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Str(Cow::Owned(v)))
    }
}

/// `labels`: an object of strings.
struct StrMap<'a>(Vec<(Cow<'a, str>, Field<'a>)>);

impl<'de> Deserialize<'de> for StrMap<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(StrMapVisitor)
    }
}

struct StrMapVisitor;

impl<'de> Visitor<'de> for StrMapVisitor {
    type Value = StrMap<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of strings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(4));
        while let Some((k, v)) = map.next_entry::<Str, Str>()? {
            pairs.push((k.0, Field::Str(v.0)));
        }
        Ok(StrMap(pairs))
    }
}

/// One alert object.
struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an alert object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut f = Fields::default();
        let mut seen = 0u16;
        while let Some(key) = map.next_key::<Name>()? {
            let bit = 1u16 << key as u16;
            if seen & bit != 0 {
                return Err(de::Error::custom("a field given twice"));
            }
            seen |= bit;
            if let Name::Labels = key {
                f.labels = match map.next_value::<Option<StrMap>>()? {
                    None => LabelsField::Absent,
                    Some(l) => LabelsField::Map(l.0),
                };
                continue;
            }
            let value = match map.next_value::<Option<Str>>()? {
                None => Field::Absent,
                Some(s) => Field::Str(s.0),
            };
            *match key {
                Name::Robot => &mut f.robot,
                Name::Title => &mut f.title,
                Name::Text => &mut f.text,
                Name::Severity => &mut f.severity,
                Name::Status => &mut f.status,
                Name::Fingerprint => &mut f.fingerprint,
                Name::Source => &mut f.source,
                Name::Time => &mut f.time,
                Name::DedupKey => &mut f.dedup_key,
                Name::Labels => unreachable!("labels are read above"),
            } = value;
        }
        Ok(f)
    }
}

/// An element of the array.
struct Element<'a>(Fields<'a>);

impl<'de> Deserialize<'de> for Element<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FieldsVisitor).map(Element)
    }
}

struct BodyVisitor;

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = Body<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an alert object or an array of them")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Ok(Body {
            alerts: vec![FieldsVisitor.visit_map(map)?],
            array: false,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut all = Vec::with_capacity(seq.size_hint().unwrap_or(8));
        while let Some(Element(f)) = seq.next_element()? {
            all.push(f);
        }
        Ok(Body {
            alerts: all,
            array: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn general(body: &str) -> Vec<Fields<'_>> {
        // Leaked so the borrowed fields can outlive the decoded value in a test.
        let value: &'static Value = Box::leak(Box::new(serde_json::from_str(body).unwrap()));
        match value {
            Value::Array(items) => items
                .iter()
                .map(|v| from_value(v.as_object().unwrap(), str::to_string).unwrap())
                .collect(),
            Value::Object(m) => vec![from_value(m, str::to_string).unwrap()],
            _ => unreachable!(),
        }
    }

    #[test]
    fn every_listed_field_has_a_key() {
        for name in FIELDS.split(", ") {
            let body = format!("{{\"{name}\":null}}");
            assert!(fast(body.as_bytes()).is_some(), "{name}");
        }
        assert!(fast(br#"{"titel":"x"}"#).is_none());
    }

    #[test]
    fn both_ways_read_the_same_fields() {
        for body in [
            r#"{"title":"a","labels":{"x":"1","y":"2"},"severity":null}"#,
            r#"[{"title":"a\nb","text":"t"},{"robot":"r","dedup_key":"k","time":"2026-01-01T00:00:00Z"}]"#,
            r#"{"title":"caf\u00e9","labels":{"k\"q":"v\\w"},"source":"s","fingerprint":"f","status":"resolved"}"#,
        ] {
            let Some(read) = fast(body.as_bytes()) else {
                panic!("{body}")
            };
            assert_eq!(read.alerts, general(body), "{body}");
        }
    }

    #[test]
    fn anything_but_the_common_shape_goes_the_general_way() {
        for body in [
            "[]",
            "3",
            "[3]",
            r#"{"title":"a","title":"b"}"#,
            r#"{"title":1}"#,
            r#"{"title":"a","labels":{"n":1}}"#,
            r#"{"title":"a","labels":{"n":null}}"#,
            r#"{"title":"a","labels":[]}"#,
            r#"{"title":"a"} x"#,
            r#"{"title":"a""#,
        ] {
            assert!(fast(body.as_bytes()).is_none(), "{body}");
        }
    }
}
