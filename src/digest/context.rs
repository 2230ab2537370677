//! The template context of a configuration ([`crate::digest::template`] documents every
//! field): only what that configuration shows, built from the same plan the renderer writes.

use jiff::tz::TimeZone;
use serde::Serialize;

use super::DigestSpec;
use super::dialect::Dialect;
use super::dingtalk::DingTalk;
use super::index::Line;
use super::plan::{
    ALL_EXTRAS, Choice, GROUP_TITLES, Levels, OTHER_GROUP, Plan, RESOLVED, SECTION_NAMES, Summary,
};
use super::rest::Rest;
use crate::alert::Severity;

impl<D: Dialect> Plan<'_, D> {
    /// The template context of `choice`: only what that configuration shows.
    pub(crate) fn context(&self, choice: &Choice) -> minijinja::Value {
        let levels = &choice.levels;
        let bare = choice.bare;
        // Handed out in section order, as the renderer does (sections are built in order).
        let titles = std::cell::Cell::new(choice.titles);
        let ctx_group = |s: usize, g: usize, level: u8, limit: Option<usize>| {
            let mut left = titles.get();
            let group = self.ctx_group(s, g, level, limit, &mut left);
            titles.set(left);
            group
        };
        let section = |s: usize| -> Option<CtxSection<'_>> {
            if !self.nonempty(s) {
                return None;
            }
            let level = if bare { 3 } else { levels[s] };
            let all = &self.index.sections[s];
            let mut groups: Vec<CtxGroup> = Vec::new();
            let (mut overflow, mut rest) = (None, None);
            match choice.partial {
                Some((p, n)) if p == s && level < 3 => {
                    let cut = self.cut(s, level, n);
                    groups.extend(
                        all[..cut.group]
                            .iter()
                            .map(|&g| ctx_group(s, g, level, None)),
                    );
                    if cut.line > 0 {
                        groups.push(ctx_group(s, all[cut.group], level, Some(cut.line)));
                    }
                    let stats = self.rest_stats(s, level, &cut);
                    if stats.total() > 0 {
                        let by_group = stats.by_group(&self.group_names(s));
                        overflow = Some(CtxOverflow {
                            count: by_group.count,
                            groups: named(&by_group),
                            other_groups: by_group.others,
                            other_count: by_group.others_count,
                        });
                        let r = self.rest_of(s, &stats);
                        rest = Some(CtxRest {
                            count: r.count,
                            by: r.by,
                            top: named(&r),
                            others: r.others,
                            others_count: r.others_count,
                        });
                    }
                }
                _ if level < 3 => {
                    groups.extend(all.iter().map(|&g| ctx_group(s, g, level, None)));
                }
                _ => {}
            }
            let mut by_severity = CtxSeverities::default();
            for sev in Severity::ALL {
                let n = if s == RESOLVED {
                    self.index.resolved_by_severity[sev.index()]
                } else if s == sev.index() {
                    self.index.section_total[s]
                } else {
                    0
                };
                match sev {
                    Severity::Critical => by_severity.critical = n,
                    Severity::Error => by_severity.error = n,
                    Severity::Warning => by_severity.warning = n,
                    Severity::Info => by_severity.info = n,
                }
            }
            Some(CtxSection {
                name: SECTION_NAMES[s],
                severity: (s != RESOLVED).then(|| Severity::ALL[s].as_str()),
                status: if s == RESOLVED { "resolved" } else { "firing" },
                count: self.index.section_total[s],
                level,
                by_severity,
                groups,
                overflow,
                rest,
            })
        };
        let total = &self.index.section_total;
        let safe = |s: &str| minijinja::Value::from_safe_string(s.to_string());
        let ctx = Context {
            robot: safe(self.spec.robot),
            id: self.spec.id,
            title: safe(&self.title),
            keyword: self.spec.keyword.map(safe),
            link: self
                .link
                .as_deref()
                .filter(|_| choice.extras.link && !bare)
                .map(safe),
            // The title's split, not the records' (`Rendered::counts`): each alert once.
            counts: CtxCounts {
                critical: total[Severity::Critical.index()],
                error: total[Severity::Error.index()],
                warning: total[Severity::Warning.index()],
                info: total[Severity::Info.index()],
                firing: total[..RESOLVED].iter().sum(),
                resolved: total[RESOLVED],
                total: self.alerts.len() as u64,
            },
            time_range: self
                .range
                .filter(|_| choice.extras.range && !bare)
                .map(|(from, to)| CtxRange {
                    from: self.clock.full(from),
                    to: self.clock.full(to),
                    text: self.range_text.clone().unwrap_or_default(),
                }),
            from_ms: self.range.map(|r| r.0),
            to_ms: self.range.map(|r| r.1),
            catch_up: self
                .spec
                .catch_up
                .filter(|_| choice.extras.catch_up && !bare)
                .map(|(since, until)| CtxCatchUp {
                    since: self.clock.full_minutes(since),
                    until: self.clock.full_minutes(until),
                    since_ms: since,
                    until_ms: until,
                    text: self.catch_up_text.clone().unwrap_or_default(),
                }),
            level: if bare { 3 } else { self.level(levels) },
            sections: (0..RESOLVED).filter_map(section).collect(),
            resolved: section(RESOLVED),
            summary: if bare { None } else { self.summary(levels) },
        };
        minijinja::Value::from(minijinja::value::Serde(&ctx))
    }

    /// Group `g` of section `s` at `level`, with its first `limit` lines when only they are
    /// listed; at level 2 the lines its group line names, with as many more titles as `titles`
    /// has left, which it uses up.
    fn ctx_group(
        &self,
        s: usize,
        g: usize,
        level: u8,
        limit: Option<usize>,
        titles: &mut usize,
    ) -> CtxGroup<'_> {
        let group = &self.index.groups[g];
        let all = self.index.lines(g, self.alerts);
        let lines = if level == 2 {
            self.group_line_titles(g, titles)
        } else {
            all
        };
        // The first few alone when that is all a group line names: a flood converts 3 per group.
        let few = lines.len() <= GROUP_TITLES && all.len() > GROUP_TITLES;
        let values = self.entry_values[g][usize::from(few)].get_or_init(|| {
            let convert = if few { lines } else { all };
            convert
                .iter()
                .map(|l| minijinja::Value::from(minijinja::value::Serde(self.ctx_alert(s, l))))
                .collect()
        });
        let lines = &lines[..limit.unwrap_or(lines.len()).min(lines.len())];
        let alerts = minijinja::Value::from(values[..lines.len()].to_vec());
        let shown: u64 = lines.iter().map(|l| l.count).sum();
        CtxGroup {
            name: group.name.unwrap_or(OTHER_GROUP),
            count: group.total,
            alerts,
            more: group.total - shown,
        }
    }

    fn ctx_alert(&self, s: usize, line: &Line) -> CtxAlert<'_> {
        let a = &self.alerts[line.first];
        let (fired, resolved) = self.entry_times(s, line);
        CtxAlert {
            title: &a.title,
            text: a.text.as_deref(),
            severity: a.severity.as_str(),
            status: if s == RESOLVED { "resolved" } else { "firing" },
            labels: &a.labels,
            fingerprint: &a.fingerprint,
            source: a.source.as_deref(),
            count: line.count,
            occurrences: line.occurrences(s),
            fired,
            resolved,
            fired_ms: line.fired,
            resolved_ms: if s == RESOLVED { line.resolved } else { None },
            time_ms: a.time_ms,
            ends_ms: a.ends_ms,
            received_ms: a.received_ms,
        }
    }
}

/// The template context; every field is documented in [`crate::digest::template`].
#[derive(Serialize)]
struct Context<'a> {
    // What sluice or the configuration wrote goes out as it is, even printed without a filter
    // (a value that is not safe is written as plain text; see `crate::template`).
    robot: minijinja::Value,
    id: u64,
    title: minijinja::Value,
    keyword: Option<minijinja::Value>,
    link: Option<minijinja::Value>,
    counts: CtxCounts,
    time_range: Option<CtxRange>,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    catch_up: Option<CtxCatchUp>,
    level: u8,
    sections: Vec<CtxSection<'a>>,
    resolved: Option<CtxSection<'a>>,
    summary: Option<Summary>,
}

#[derive(Serialize)]
struct CtxCounts {
    critical: u64,
    error: u64,
    warning: u64,
    info: u64,
    firing: u64,
    resolved: u64,
    total: u64,
}

#[derive(Serialize, Default)]
struct CtxSeverities {
    critical: u64,
    error: u64,
    warning: u64,
    info: u64,
}

#[derive(Serialize)]
struct CtxRange {
    from: String,
    to: String,
    text: String,
}

#[derive(Serialize)]
struct CtxCatchUp {
    since: String,
    until: String,
    since_ms: i64,
    until_ms: i64,
    text: String,
}

#[derive(Serialize)]
struct CtxSection<'a> {
    name: &'static str,
    severity: Option<&'static str>,
    status: &'static str,
    count: u64,
    level: u8,
    by_severity: CtxSeverities,
    groups: Vec<CtxGroup<'a>>,
    overflow: Option<CtxOverflow<'a>>,
    rest: Option<CtxRest<'a>>,
}

#[derive(Serialize)]
struct CtxGroup<'a> {
    name: &'a str,
    count: u64,
    /// A list of [`CtxAlert`], converted once per group.
    alerts: minijinja::Value,
    more: u64,
}

#[derive(Serialize)]
struct CtxAlert<'a> {
    title: &'a str,
    text: Option<&'a str>,
    severity: &'static str,
    status: &'static str,
    labels: &'a crate::alert::Labels,
    fingerprint: &'a str,
    source: Option<&'a str>,
    count: u64,
    occurrences: u64,
    fired: Option<String>,
    resolved: Option<String>,
    fired_ms: Option<i64>,
    resolved_ms: Option<i64>,
    time_ms: Option<i64>,
    ends_ms: Option<i64>,
    received_ms: i64,
}

#[derive(Serialize)]
struct CtxOverflow<'a> {
    count: u64,
    groups: Vec<CtxNamed<'a>>,
    other_groups: u64,
    other_count: u64,
}

#[derive(Serialize)]
struct CtxRest<'a> {
    count: u64,
    by: Option<&'a str>,
    top: Vec<CtxNamed<'a>>,
    others: u64,
    others_count: u64,
}

#[derive(Serialize)]
struct CtxNamed<'a> {
    name: &'a str,
    count: u64,
}

fn named<'a>(rest: &Rest<'a>) -> Vec<CtxNamed<'a>> {
    rest.top
        .iter()
        .map(|&(name, count)| CtxNamed { name, count })
        .collect()
}

/// Contexts that take a template down every branch it can have, for
/// [`Templates::compile`](crate::digest::template::Templates::compile): the sample alerts at every
/// configuration of the degradation order, each partly listed one with a rest line, bare, and a
/// digest of no alerts with every optional value none.
pub(crate) fn sample_contexts() -> Vec<minijinja::Value> {
    /// 2026-11-28 10:05:02 in Shanghai.
    const NOW: i64 = 1_795_831_502_000;
    const MIN: i64 = 60_000;
    let tz = TimeZone::UTC;
    let alerts = crate::digest::template::sample_alerts(NOW);
    let spec = DigestSpec {
        robot: "sample",
        id: 1,
        keyword: Some("alert"),
        link: Some("https://sluice.example/v1/digests/1"),
        max_bytes: 20_000,
        tz: &tz,
        catch_up: Some((NOW - 45 * MIN, NOW - 2 * MIN)),
        templates: None,
    };
    let plan = Plan::new(&DingTalk, &spec, &alerts);
    let seq = plan.sequence();
    let full = |levels: &Levels| Choice {
        levels: *levels,
        partial: None,
        titles: 0,
        extras: ALL_EXTRAS,
        bare: false,
    };
    let mut contexts: Vec<minijinja::Value> = seq.iter().map(|l| plan.context(&full(l))).collect();
    // Every partly listed configuration, listing one entry, with its rest line.
    for (levels, partial) in plan.order() {
        if let Some(s) = partial {
            contexts.push(plan.context(&Choice {
                partial: Some((s, 1)),
                ..full(&levels)
            }));
        }
    }
    contexts.push(plan.context(&Choice {
        bare: true,
        ..plan.counted_only()
    }));
    let none = DigestSpec {
        keyword: None,
        link: None,
        catch_up: None,
        ..spec
    };
    let plan = Plan::new(&DingTalk, &none, &[]);
    contexts.push(plan.context(&plan.counted_only()));
    contexts
}
