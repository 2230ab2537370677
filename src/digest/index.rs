//! The batch indexed for rendering, in one backward pass: alerts by section and group, merged
//! by fingerprint when first listed, a firing alert folded into the resolved section when its
//! resolution comes later in the batch, the counts, and the alerts' times.

use std::cell::OnceCell;
use std::collections::hash_map::Entry;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use super::Counts;
use super::plan::{RESOLVED, SECTIONS};
use super::text::is_blank;
use crate::alert::{Alert, Status};

pub(crate) struct Group<'a> {
    /// `None` is shown as `other`.
    pub(crate) name: Option<&'a str>,
    pub(crate) total: u64,
}

/// One digest line: alerts of one group (in one section) with equal fingerprint.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    /// The first such alert, whose title and text the line shows.
    pub(crate) first: usize,
    /// Alerts merged into the line.
    pub(crate) count: u64,
    /// Of which firing.
    pub(crate) firing: u64,
    /// Earliest time a member fired: firing members' `time_ms.unwrap_or(received_ms)`, and
    /// resolved members' `time_ms` when the sender gave it.
    pub(crate) fired: Option<i64>,
    /// Latest time a resolved member resolved (`ends_ms.unwrap_or(received_ms)`).
    pub(crate) resolved: Option<i64>,
}

impl Line {
    /// How often the line's problem occurred: its alerts in a firing section; in the resolved
    /// section a problem that fired and resolved is one occurrence, so the larger of its firing
    /// and resolved alerts.
    pub(crate) fn occurrences(&self, s: usize) -> u64 {
        if s == RESOLVED {
            self.firing.max(self.count - self.firing)
        } else {
            self.count
        }
    }
}

/// The alerts' times: the digest's range and when they arrived.
#[derive(Clone, Copy)]
pub(crate) struct Times {
    pub(crate) from: i64,
    pub(crate) to: i64,
    pub(crate) arrived: (i64, i64),
}

fn fired_ms(a: &Alert) -> i64 {
    a.time_ms.unwrap_or(a.received_ms)
}

fn resolved_ms(a: &Alert) -> i64 {
    a.ends_ms.unwrap_or(a.received_ms)
}

/// A blank label (spaces, or characters that are not shown) would render as an empty bold
/// heading; it groups with the unlabelled.
pub(crate) fn group_of(a: &Alert) -> Option<&str> {
    a.group().filter(|g| !g.trim_matches(is_blank).is_empty())
}

/// How many alerts ahead of the one being indexed a pass asks for the next alerts' labels and
/// fingerprints ([`crate::alert::prefetch`]): far enough for the loads to arrive in time.
pub(crate) const PREFETCH_AHEAD: usize = 16;

/// Alerts by section and group. Lines are not merged here: a digest lists a few hundred lines at
/// most, so fingerprints are only merged for the groups that listing reaches (once each); the
/// rest of a large batch costs a group lookup per alert.
pub(crate) struct Index<'a> {
    pub(crate) groups: Vec<Group<'a>>,
    /// Alert indices grouped by group, in arrival order inside each group.
    pub(crate) members: Vec<usize>,
    /// Where each group's alerts start in `members`; one more entry than `groups`.
    pub(crate) starts: Vec<usize>,
    /// Per section, group indices in order of first appearance, `other` last.
    pub(crate) sections: [Vec<usize>; SECTIONS],
    pub(crate) section_total: [u64; SECTIONS],
    /// Alerts of the resolved section by severity, for the count block.
    pub(crate) resolved_by_severity: [u64; 4],
    /// Merged lines of each group, computed when first needed.
    pub(crate) lines: Vec<OnceCell<Lines>>,
}

/// A group's merged lines, and the alerts of each (for summarizing the lines not listed).
pub(crate) struct Lines {
    pub(crate) lines: Vec<Line>,
    /// Alert indices by line, in arrival order inside each line.
    members: Vec<usize>,
    /// Where each line's alerts start in `members`; one more entry than `lines`.
    starts: Vec<usize>,
}

impl<'a> Index<'a> {
    /// One pass over the alerts, backwards: a firing alert belongs to the resolved section when
    /// a resolution of its (group, fingerprint) comes later, which a backward pass has already
    /// seen. The same pass counts the alerts and finds their times: on a large batch each pass
    /// is a trip through memory, and the labels behind `Alert::group` are its dearest part.
    pub(crate) fn build(alerts: &'a [Alert]) -> (Index<'a>, Counts, Option<Times>) {
        let mut counts = Counts::default();
        let mut times: Option<Times> = None;
        // Each group name is hashed once, to a small id (0 for no name) that keys the rest. Keys
        // borrow from the alerts: 100 000 alerts must not mean 100 000 allocations.
        let mut name_ids: HashMap<&'a str, usize> = HashMap::new();
        let mut names: Vec<Option<&'a str>> = vec![None];
        // The group of each name in each section.
        let mut slots: Vec<[Option<usize>; SECTIONS]> = vec![[None; SECTIONS]];
        let mut resolved_later: HashSet<(usize, &'a str)> = HashSet::new();
        let mut groups: Vec<Group<'a>> = Vec::new();
        // The first alert of each group, which orders the groups of a section.
        let mut first: Vec<usize> = Vec::new();
        let mut section_total = [0u64; SECTIONS];
        let mut resolved_by_severity = [0u64; 4];
        let mut group_ids: Vec<usize> = vec![0; alerts.len()];
        for (i, a) in alerts.iter().enumerate().rev() {
            if let Some(ahead) = i.checked_sub(PREFETCH_AHEAD) {
                crate::alert::prefetch(&alerts[ahead]);
            }
            counts.add(a);
            let fired = fired_ms(a);
            let end = match a.status {
                Status::Firing => fired,
                Status::Resolved => fired.max(resolved_ms(a)),
            };
            let t = times.get_or_insert(Times {
                from: fired,
                to: end,
                arrived: (a.received_ms, a.received_ms),
            });
            t.from = t.from.min(fired);
            t.to = t.to.max(end);
            t.arrived = (
                t.arrived.0.min(a.received_ms),
                t.arrived.1.max(a.received_ms),
            );

            let id = match group_of(a) {
                None => 0,
                Some(name) => *name_ids.entry(name).or_insert_with(|| {
                    names.push(Some(name));
                    slots.push([None; SECTIONS]);
                    names.len() - 1
                }),
            };
            let resolved = match a.status {
                Status::Resolved => {
                    resolved_later.insert((id, a.fingerprint.as_str()));
                    true
                }
                Status::Firing => {
                    !resolved_later.is_empty()
                        && resolved_later.contains(&(id, a.fingerprint.as_str()))
                }
            };
            let si = if resolved {
                resolved_by_severity[a.severity.index()] += 1;
                RESOLVED
            } else {
                a.severity.index()
            };
            section_total[si] += 1;
            let g = *slots[id][si].get_or_insert_with(|| {
                groups.push(Group {
                    name: names[id],
                    total: 0,
                });
                first.push(i);
                groups.len() - 1
            });
            groups[g].total += 1;
            first[g] = i;
            group_ids[i] = g;
        }
        // Groups in order of first appearance, `other` last.
        let mut sections: [Vec<usize>; SECTIONS] = Default::default();
        for (si, section) in sections.iter_mut().enumerate() {
            section.extend(slots[1..].iter().filter_map(|s| s[si]));
            section.sort_unstable_by_key(|&g| first[g]);
            section.extend(slots[0][si]);
        }
        // Counting sort by group keeps arrival order inside each group.
        let mut starts = Vec::with_capacity(groups.len() + 1);
        let mut at = 0;
        for g in &groups {
            starts.push(at);
            at += g.total as usize;
        }
        starts.push(at);
        let mut next = starts.clone();
        let mut members = vec![0; alerts.len()];
        for (i, &g) in group_ids.iter().enumerate() {
            members[next[g]] = i;
            next[g] += 1;
        }
        let index = Index {
            lines: (0..groups.len()).map(|_| OnceCell::new()).collect(),
            groups,
            members,
            starts,
            sections,
            section_total,
            resolved_by_severity,
        };
        (index, counts, times)
    }

    /// The merged lines of group `g`, in order of first appearance.
    pub(crate) fn lines(&self, g: usize, alerts: &[Alert]) -> &[Line] {
        &self.merged(g, alerts).lines
    }

    /// The alerts of group `g`, in arrival order.
    pub(crate) fn group_members(&self, g: usize) -> &[usize] {
        &self.members[self.starts[g]..self.starts[g + 1]]
    }

    /// The alerts merged into line `j` of group `g`.
    pub(crate) fn line_members(&self, g: usize, j: usize, alerts: &[Alert]) -> &[usize] {
        let m = self.merged(g, alerts);
        &m.members[m.starts[j]..m.starts[j + 1]]
    }

    fn merged(&self, g: usize, alerts: &[Alert]) -> &Lines {
        self.lines[g].get_or_init(|| {
            let members = self.group_members(g);
            let mut by_fp: HashMap<&str, usize> = HashMap::new();
            let mut lines: Vec<Line> = Vec::new();
            let mut line_of: Vec<usize> = Vec::with_capacity(members.len());
            for &i in members {
                let a = &alerts[i];
                let j = match by_fp.entry(a.fingerprint.as_str()) {
                    Entry::Occupied(e) => *e.get(),
                    Entry::Vacant(e) => {
                        e.insert(lines.len());
                        lines.push(Line {
                            first: i,
                            count: 0,
                            firing: 0,
                            fired: None,
                            resolved: None,
                        });
                        lines.len() - 1
                    }
                };
                line_of.push(j);
                let l = &mut lines[j];
                l.count += 1;
                let fired = match a.status {
                    Status::Firing => {
                        l.firing += 1;
                        Some(fired_ms(a))
                    }
                    Status::Resolved => {
                        let r = resolved_ms(a);
                        l.resolved = Some(l.resolved.map_or(r, |x| x.max(r)));
                        a.time_ms
                    }
                };
                if let Some(f) = fired {
                    l.fired = Some(l.fired.map_or(f, |x| x.min(f)));
                }
            }
            // Counting sort by line keeps arrival order inside each line.
            let mut starts = Vec::with_capacity(lines.len() + 1);
            let mut at = 0;
            for l in &lines {
                starts.push(at);
                at += l.count as usize;
            }
            starts.push(at);
            let mut next = starts.clone();
            let mut by_line = vec![0; members.len()];
            for (&i, &j) in members.iter().zip(&line_of) {
                by_line[next[j]] = i;
                next[j] += 1;
            }
            Lines {
                lines,
                members: by_line,
                starts,
            }
        })
    }
}
