//! An alert's labels: a map from name to value, ordered by name, in one allocation.
//!
//! The layout is one buffer: the number of labels (`u32`, little-endian), then per label, by
//! name, `[name length u32][value length u32][name bytes][value bytes]`. An empty map is an
//! empty buffer (no allocation). Names are unique; every name and value is UTF-8, because the
//! buffer is only ever built from `&str`s.
//!
//! Why one buffer: sealing a digest holds up to 100 000 alerts in memory at once, and indexing
//! them looks up `alertname` in each. As a `BTreeMap` the labels cost a node of eleven entries
//! (about 540 bytes) per alert; as a sorted `Vec<(String, String)>`, three allocations for one
//! label (the `Vec`'s buffer, the name, the value), which a lookup visits one after another:
//! three dependent cache misses per alert, 42 % of rendering 100 000 alerts (`perf` on
//! `benches/digest.rs`). Here the count, the lengths, the name and the value sit side by side.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// An alert's labels, by name (see the module documentation for the layout).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(Box<[u8]>);

/// The two lengths before each label's bytes.
const HEAD: usize = 8;

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes")) as usize
}

fn len32(n: usize) -> [u8; 4] {
    u32::try_from(n)
        .expect("a label name or value is far below 4 GiB")
        .to_le_bytes()
}

/// The bytes were copied from a `&str`, so they are UTF-8; the check is kept (it is a few bytes'
/// worth of work) so that no `unsafe` is needed.
fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).expect("labels are built from str")
}

impl Labels {
    pub fn new() -> Labels {
        Labels::default()
    }

    /// From pairs in any order; a later value for the same name wins, as with a map.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Labels {
        let mut pairs: Vec<(&str, &str)> = pairs.into_iter().collect();
        // A stable sort keeps equal names in their order, so the last of each run is kept.
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        // `dedup_by` hands the later of two neighbours first; its value moves into the kept one.
        pairs.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 = later.1;
            }
            same
        });
        Labels::build(&pairs)
    }

    /// From pairs already sorted by name, names unique.
    fn build(pairs: &[(&str, &str)]) -> Labels {
        if pairs.is_empty() {
            return Labels::new();
        }
        let size = 4 + pairs
            .iter()
            .map(|(k, v)| HEAD + k.len() + v.len())
            .sum::<usize>();
        let mut b = Vec::with_capacity(size);
        b.extend_from_slice(&len32(pairs.len()));
        for (k, v) in pairs {
            b.extend_from_slice(&len32(k.len()));
            b.extend_from_slice(&len32(v.len()));
            b.extend_from_slice(k.as_bytes());
            b.extend_from_slice(v.as_bytes());
        }
        Labels(b.into_boxed_slice())
    }

    /// The buffer, for [`super::prefetch`].
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Name and value bytes of each label, by name.
    fn raw(&self) -> Raw<'_> {
        Raw {
            rest: self.0.get(4..).unwrap_or_default(),
        }
    }

    /// A scan over one buffer: alerts carry a few labels, and the scan compares lengths before
    /// bytes and stops at the first name past `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        let name = name.as_bytes();
        for (k, v) in self.raw() {
            if k == name {
                return Some(text(v));
            }
            if k > name {
                break;
            }
        }
        None
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Every label but the one named `name`, and its value if it was there.
    fn without(&self, name: &str) -> (Vec<(&str, &str)>, Option<String>) {
        let mut old = None;
        let mut rest = Vec::with_capacity(self.len());
        for (k, v) in self.iter() {
            if k == name {
                old = Some(v.to_string());
            } else {
                rest.push((k, v));
            }
        }
        (rest, old)
    }

    /// Sets a label; returns the value it replaced.
    pub fn insert(&mut self, name: String, value: String) -> Option<String> {
        let (mut pairs, old) = self.without(&name);
        let at = pairs.partition_point(|(k, _)| *k < name.as_str());
        pairs.insert(at, (&name, &value));
        *self = Labels::build(&pairs);
        old
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        let (pairs, old) = self.without(name);
        if old.is_some() {
            *self = Labels::build(&pairs);
        }
        old
    }

    pub fn len(&self) -> usize {
        if self.0.is_empty() {
            0
        } else {
            u32_at(&self.0, 0)
        }
    }

    /// Keeps the first `n` by name.
    pub fn truncate(&mut self, n: usize) {
        if n < self.len() {
            let pairs: Vec<(&str, &str)> = self.iter().take(n).collect();
            *self = Labels::build(&pairs);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// By name, as a `BTreeMap` would give them.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            raw: self.raw(),
            left: self.len(),
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|(k, _)| k)
    }
}

/// The labels' bytes, one label at a time.
#[derive(Clone)]
struct Raw<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Raw<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let (k, v) = (u32_at(self.rest, 0), u32_at(self.rest, 4));
        let (label, rest) = self.rest.split_at(HEAD + k + v);
        self.rest = rest;
        Some((&label[HEAD..HEAD + k], &label[HEAD + k..]))
    }
}

/// The labels by name, as `(name, value)`.
#[derive(Clone)]
pub struct Iter<'a> {
    raw: Raw<'a>,
    left: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let (k, v) = self.raw.next()?;
        self.left -= 1;
        Some((text(k), text(v)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a str, &'a str);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl std::ops::Index<&str> for Labels {
    type Output = str;

    /// The value of a label that must be there (panics otherwise, as a map's index does).
    fn index(&self, name: &str) -> &str {
        self.get(name)
            .unwrap_or_else(|| panic!("no label {name:?}"))
    }
}

impl FromIterator<(String, String)> for Labels {
    /// A later value for the same name wins, as with a map.
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Labels {
        let owned: Vec<(String, String)> = iter.into_iter().collect();
        Labels::from_pairs(owned.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(map: BTreeMap<String, String>) -> Labels {
        let pairs: Vec<(&str, &str)> = map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Labels::build(&pairs)
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Labels, D::Error> {
        BTreeMap::<String, String>::deserialize(d).map(Labels::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_is_a_map_by_name() {
        let mut l = Labels::from_pairs([("job", "dq"), ("alertname", "a"), ("job", "etl")]);
        assert_eq!(l.len(), 2);
        assert_eq!(
            l.iter().collect::<Vec<_>>(),
            [("alertname", "a"), ("job", "etl")]
        );
        assert_eq!(l.get("job"), Some("etl"));
        assert_eq!(l.get("jo"), None);
        assert_eq!(l.get("zzz"), None);
        assert_eq!(l.insert("表".into(), "订单".into()), None);
        assert_eq!(
            l.insert("alertname".into(), "b".into()),
            Some("a".to_string())
        );
        assert_eq!(l.keys().collect::<Vec<_>>(), ["alertname", "job", "表"]);
        assert_eq!(&l["表"], "订单");
        assert_eq!(l.remove("job"), Some("etl".to_string()));
        assert_eq!(l.remove("job"), None);
        assert_eq!(format!("{l:?}"), r#"{"alertname": "b", "表": "订单"}"#);
        l.truncate(1);
        assert_eq!(l.iter().len(), 1);
        l.truncate(0);
        assert!(l.is_empty());
        assert_eq!(l, Labels::new());
    }

    #[test]
    fn empty_names_and_values_are_labels_too() {
        let l = Labels::from_pairs([("", ""), ("a", "")]);
        assert_eq!(l.iter().collect::<Vec<_>>(), [("", ""), ("a", "")]);
        assert_eq!(l.get(""), Some(""));
        assert_eq!(l.get("a"), Some(""));
    }

    #[test]
    fn equal_maps_are_equal_buffers_however_built() {
        let a: Labels = [("b", "2"), ("a", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut b = Labels::new();
        b.insert("a".into(), "1".into());
        b.insert("b".into(), "2".into());
        let c = Labels::from(BTreeMap::from([
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), "2".to_string()),
        ]));
        assert_eq!(a, b);
        assert_eq!(b, c);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, r#"{"a":"1","b":"2"}"#);
        assert_eq!(serde_json::from_str::<Labels>(&json).unwrap(), a);
    }
}
