//! What a partly listed section says about the alerts it does not list: how many, and what
//! tells them apart (`- … and 322 more: rack r2 108, rack r3 107, rack r1 107`).
//!
//! **The label rule.** Among the labels that every unlisted alert of the section carries, other
//! than the grouping labels `alertname` and `job`, the one with the fewest distinct values splits
//! them, provided it has at least two values and fewer values than alerts (ties: the label name
//! first in byte order). Its values are named by count, largest first (ties by value), five at
//! most, then `k other values n`. Without such a label, or when that line would cost more than
//! [`REST_LINE_BYTES`], the rest is split by group, as the overflow line always did.
//!
//! [`RestStats`] keeps the counts the rule needs for the alerts not listed, and is updated one
//! listed entry at a time, so finding where a listing must stop costs the entries tried, not the
//! batch.

use std::cmp::Reverse;

use foldhash::{HashMap, HashMapExt};

use super::dialect::Dialect;
use super::index::PREFETCH_AHEAD;
use super::plan::{Cut, OTHER_GROUP, Overflow, Plan};
use crate::alert::Alert;

/// Labels that name a group; the groups already tell those apart.
pub(crate) const GROUPING_LABELS: [&str; 2] = ["alertname", "job"];
/// Values (or groups) a rest line names; the rest are folded into `<k> other values <n>`.
pub(crate) const REST_ITEMS: usize = 5;
/// A rest line split by a label is used only up to this cost in the dialect's measure (label
/// names and values are cut to 40 bytes of what they show, so only content that costs several
/// times its bytes once escaped reaches it); beyond it the rest is split by group, whose line
/// has a bound of its own. This is what lets a rest line be reserved before it is known.
pub(crate) const REST_LINE_BYTES: usize = 600;

/// What a rest line says: the alerts not listed, split by a label's values (`by`) or by group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rest<'a> {
    pub(crate) count: u64,
    /// The label whose values name the parts; `None`: the parts are groups.
    pub(crate) by: Option<&'a str>,
    /// The largest parts (at most [`REST_ITEMS`]), by name, largest first.
    pub(crate) top: Vec<(&'a str, u64)>,
    /// Parts beyond `top`, and their alerts.
    pub(crate) others: u64,
    pub(crate) others_count: u64,
}

struct KeyStats<'a> {
    name: &'a str,
    /// Unlisted alerts that carry the label.
    carried: u64,
    values: HashMap<&'a str, u64>,
    /// Values with at least one unlisted alert.
    distinct: u64,
}

/// Counts of the alerts of one section that are not listed: in all, by group (by the group's
/// position in the section) and by label value.
pub(crate) struct RestStats<'a> {
    total: u64,
    groups: Vec<u64>,
    /// By first appearance; alerts carry a few labels, so a scan finds one faster than a hash.
    keys: Vec<KeyStats<'a>>,
}

impl<'a> RestStats<'a> {
    /// Empty, for a section of `groups` groups.
    pub(crate) fn new(groups: usize) -> Self {
        RestStats {
            total: 0,
            groups: vec![0; groups],
            keys: Vec::new(),
        }
    }

    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Where label `name` is counted, trying position `hint` first: the alerts of a section
    /// mostly carry the same labels, so it is usually the label's own position among them.
    fn key(&self, hint: usize, name: &str) -> Option<usize> {
        match self.keys.get(hint) {
            Some(x) if x.name == name => Some(hint),
            _ => self.keys.iter().position(|x| x.name == name),
        }
    }

    /// One more unlisted alert, of the group at position `pos`.
    pub(crate) fn add(&mut self, a: &'a Alert, pos: usize) {
        self.total += 1;
        self.groups[pos] += 1;
        for (j, (k, v)) in counted(a).enumerate() {
            let key = match self.key(j, k) {
                Some(id) => &mut self.keys[id],
                None => {
                    self.keys.push(KeyStats {
                        name: k,
                        carried: 0,
                        values: HashMap::new(),
                        distinct: 0,
                    });
                    self.keys.last_mut().expect("just pushed")
                }
            };
            key.carried += 1;
            let n = key.values.entry(v).or_insert(0);
            if *n == 0 {
                key.distinct += 1;
            }
            *n += 1;
        }
    }

    /// An alert counted by [`RestStats::add`] is listed after all.
    pub(crate) fn remove(&mut self, a: &'a Alert, pos: usize) {
        self.total -= 1;
        self.groups[pos] -= 1;
        for (j, (k, v)) in counted(a).enumerate() {
            let Some(key) = self.key(j, k).map(|id| &mut self.keys[id]) else {
                continue;
            };
            key.carried -= 1;
            if let Some(n) = key.values.get_mut(v) {
                *n -= 1;
                if *n == 0 {
                    key.distinct -= 1;
                }
            }
        }
    }

    /// The split by the label the rule picks (see the module documentation), if one qualifies.
    pub(crate) fn by_label(&self) -> Option<Rest<'a>> {
        let key = self
            .keys
            .iter()
            .filter(|k| k.carried == self.total && k.distinct >= 2 && k.distinct < self.total)
            .min_by_key(|k| (k.distinct, k.name))?;
        // The largest values, without sorting them all: this runs once per entry tried near
        // the end of a listing, and a label may have thousands of values.
        fn order((v, n): (&str, u64)) -> (Reverse<u64>, &str) {
            (Reverse(n), v)
        }
        let mut top: Vec<(&'a str, u64)> = Vec::with_capacity(REST_ITEMS + 1);
        for (&v, &n) in &key.values {
            if n == 0 || (top.len() == REST_ITEMS && order((v, n)) >= order(top[REST_ITEMS - 1])) {
                continue;
            }
            let at = top.partition_point(|&t| order(t) < order((v, n)));
            top.insert(at, (v, n));
            top.truncate(REST_ITEMS);
        }
        let shown: u64 = top.iter().map(|t| t.1).sum();
        Some(Rest {
            count: self.total,
            by: Some(key.name),
            others: key.distinct - top.len() as u64,
            others_count: self.total - shown,
            top,
        })
    }

    /// The split by group: `names[pos]` is the name of the group at position `pos`; groups in
    /// order of size, largest first, ties in the section's order.
    pub(crate) fn by_group(&self, names: &[&'a str]) -> Rest<'a> {
        let mut parts: Vec<(&'a str, u64)> = self
            .groups
            .iter()
            .zip(names)
            .filter(|&(&n, _)| n > 0)
            .map(|(&n, &name)| (name, n))
            .collect();
        parts.sort_by_key(|&(_, n)| Reverse(n));
        split(self.total, None, parts)
    }
}

/// The labels of `a` the rule may split by: all but the grouping ones.
fn counted(a: &Alert) -> impl Iterator<Item = (&str, &str)> {
    a.labels
        .iter()
        .filter(|(k, _)| !GROUPING_LABELS.contains(k))
}

fn split<'a>(count: u64, by: Option<&'a str>, mut parts: Vec<(&'a str, u64)>) -> Rest<'a> {
    let shown = parts.len().min(REST_ITEMS);
    let rest = parts.split_off(shown);
    Rest {
        count,
        by,
        top: parts,
        others: rest.len() as u64,
        others_count: rest.iter().map(|p| p.1).sum(),
    }
}

/// The rest line's part of a [`Plan`]: which alerts it summarizes and what it says of them.
impl<'a, D: Dialect> Plan<'a, D> {
    /// The alerts of section `s` at `level` from `cut` on: what its rest line summarizes.
    pub(crate) fn rest_stats(&self, s: usize, level: u8, cut: &Cut) -> RestStats<'a> {
        let (alerts, groups) = (self.alerts, &self.index.sections[s]);
        let mut stats = RestStats::new(groups.len());
        let mut from = cut.group;
        if level < 2 && cut.line > 0 {
            let g = groups[cut.group];
            for j in cut.line..self.index.lines(g, self.alerts).len() {
                for &i in self.index.line_members(g, j, alerts) {
                    stats.add(&alerts[i], cut.group);
                }
            }
            from += 1;
        }
        for (pos, &g) in groups.iter().enumerate().skip(from) {
            let members = self.index.group_members(g);
            for (k, &i) in members.iter().enumerate() {
                // A group's alerts are spread over the batch: ask for an alert's struct early,
                // then, once it has arrived, for what it points to.
                if let Some(&far) = members.get(k + 2 * PREFETCH_AHEAD) {
                    crate::alert::prefetch_struct(&alerts[far]);
                }
                if let Some(&near) = members.get(k + PREFETCH_AHEAD) {
                    crate::alert::prefetch(&alerts[near]);
                }
                stats.add(&alerts[i], pos);
            }
        }
        stats
    }

    /// The names of section `s`'s groups, by position.
    pub(crate) fn group_names(&self, s: usize) -> Vec<&'a str> {
        self.index.sections[s]
            .iter()
            .map(|&g| self.index.groups[g].name.unwrap_or(OTHER_GROUP))
            .collect()
    }

    /// What the rest line of `stats` says: split by the label the rule picks, unless that line
    /// would cost more than [`REST_LINE_BYTES`](super::rest::REST_LINE_BYTES); else by group.
    pub(crate) fn rest_of(&self, s: usize, stats: &RestStats<'a>) -> Rest<'a> {
        if let Some(rest) = stats.by_label() {
            let mut line = String::new();
            self.push_rest(&mut line, &rest);
            if self.dialect.size(&line).get() <= super::rest::REST_LINE_BYTES {
                return rest;
            }
        }
        stats.by_group(&self.group_names(s))
    }

    /// Writes a rest line (without the break before it).
    pub(crate) fn push_rest(&self, out: &mut String, rest: &Rest) {
        self.dialect.write_overflow(
            out,
            &Overflow {
                count: rest.count,
                by: rest.by,
                groups: &rest.top,
                other_groups: rest.others,
                other_count: rest.others_count,
            },
        );
    }
}
