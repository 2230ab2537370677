//! The renderer's tests, by theme; helpers shared by them (and by `template`'s tests) here.

mod budget;
mod contract;
mod feishu;
mod fill;
mod layout;
mod levels;
pub(crate) mod model;
mod safety;
mod text;
mod wecom;

use proptest::prelude::*;

use super::dialect::Size;
use super::dingtalk::{LINK_PREFIX, escape_link};
use super::index::group_of;
use super::plan::*;
use super::text::*;
use super::*;
use crate::alert::Status;

/// DingTalk's measure as a number, as the tests were written against it.
pub(crate) fn cost(s: &str) -> usize {
    json_escaped_len(s)
}

/// The longest prefix of `s` within `max` JSON-escaped bytes.
pub(crate) fn cut_cost(s: &str, max: usize) -> &str {
    DingTalk.cut(s, Size::new(max))
}

pub(crate) static UTC: TimeZone = TimeZone::UTC;
/// 2026-11-28 10:00:31 in Shanghai, 02:00:31 UTC.
pub(crate) const T0: i64 = 1_795_831_231_000;
const MIN: i64 = 60_000;

pub(crate) fn shanghai() -> TimeZone {
    TimeZone::get("Asia/Shanghai").expect("bundled tzdb")
}

pub(crate) fn alert(
    title: &str,
    severity: Severity,
    group: Option<&str>,
    fingerprint: &str,
) -> Alert {
    let mut labels = crate::alert::Labels::new();
    if let Some(g) = group {
        labels.insert("alertname".to_string(), g.to_string());
    }
    Alert {
        title: title.to_string(),
        text: None,
        severity,
        status: Status::Firing,
        labels,
        fingerprint: fingerprint.to_string(),
        source: None,
        time_ms: None,
        ends_ms: None,
        received_ms: T0,
        extra: None,
    }
}

fn resolved(mut a: Alert, at: i64) -> Alert {
    a.status = Status::Resolved;
    a.received_ms = at;
    a
}

pub(crate) fn spec(max_bytes: usize) -> DigestSpec<'static> {
    DigestSpec {
        robot: "ops",
        id: 42,
        keyword: None,
        link: None,
        max_bytes,
        tz: &UTC,
        catch_up: None,
        templates: None,
    }
}

pub(crate) fn size(r: &Rendered) -> usize {
    json_escaped_len(&r.title) + json_escaped_len(&r.text)
}

/// Lines that show alerts (not headings, group, overflow or count lines).
fn alert_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with("- ") && !l.starts_with("- … and "))
        .collect()
}

/// The text of `levels`, every section fully listed.
fn render_at(spec: &DigestSpec, alerts: &[Alert], levels: Levels) -> String {
    let plan = Plan::new(&DingTalk, spec, alerts);
    let (_, out, _) = plan
        .write(&levels, None, ALL_EXTRAS)
        .expect("the configuration fits");
    out.text
}

/// The configuration `render` chose.
pub(crate) fn chosen(spec: &DigestSpec, alerts: &[Alert]) -> Choice {
    Plan::new(&DingTalk, spec, alerts).choose().0
}

/// The text of `levels` with section `s` listing exactly its first `n` entries (alert lines at
/// levels 0 and 1, group lines at level 2), then its rest line, whatever the budget.
pub(crate) fn render_partly(
    spec: &DigestSpec,
    alerts: &[Alert],
    levels: Levels,
    s: usize,
    n: usize,
) -> String {
    let unlimited = DigestSpec {
        max_bytes: usize::MAX,
        ..*spec
    };
    let plan = Plan::new(&DingTalk, &unlimited, alerts);
    let (_, out, _) = plan
        .write(&levels, Some((s, Some(n))), ALL_EXTRAS)
        .expect("an unlimited budget");
    out.text
}

/// The text of `choice` exactly (its partly listed section listing exactly its entries, its
/// group lines naming exactly its titles), whatever the budget.
pub(crate) fn render_choice(spec: &DigestSpec, alerts: &[Alert], choice: &Choice) -> String {
    let unlimited = DigestSpec {
        max_bytes: usize::MAX,
        ..*spec
    };
    let plan = Plan::new(&DingTalk, &unlimited, alerts);
    let partial = choice.partial.map(|(s, n)| (s, Some(n)));
    let (written, out, _) = plan
        .write_titled(&choice.levels, partial, choice.extras, choice.titles)
        .expect("an unlimited budget");
    assert_eq!(written.titles, choice.titles, "titles to hand out");
    out.text
}

/// Group lines name titles beyond their first three while they fit: when some are left
/// unnamed, naming one more would not fit.
pub(crate) fn check_titles(
    spec: &DigestSpec,
    alerts: &[Alert],
    plan: &Plan<DingTalk>,
    choice: &Choice,
    text: &str,
) -> Result<(), String> {
    if choice.bare {
        return Ok(());
    }
    let want = render_choice(spec, alerts, choice);
    if want != text {
        return Err(format!("{choice:?} written as\n{text}\nnot as\n{want}"));
    }
    if plan.unnamed_titles(choice) > choice.titles {
        let more = Choice {
            titles: choice.titles + 1,
            ..*choice
        };
        let next = render_choice(spec, alerts, &more);
        if cost(&plan.title) + cost(&next) <= spec.max_bytes {
            return Err(format!("one more title fits: {choice:?}\n{next}"));
        }
    }
    Ok(())
}

/// The chosen configuration is the first of the order that fits (fully listed ones as they
/// are, partly listed ones when their first entry fits, or at the floor their rest line alone),
/// then, while fully listed and some listed section lost a level, refilled: the next less
/// severe section comes back at the poorest level of those before it or poorer, fully or partly
/// listed. A partly listed choice lists entries as long as they fit, so listing the next one too
/// (with the rest line of what then remains) would not fit; counting everything comes after
/// every configuration of the order did not fit. Every fit is measured on the whole text written
/// without a budget: independent of the measuring that choosing does.
fn check_richest(
    spec: &DigestSpec,
    alerts: &[Alert],
    plan: &Plan<DingTalk>,
    choice: &Choice,
    text: &str,
) -> Result<(), String> {
    let unlimited = DigestSpec {
        max_bytes: usize::MAX,
        ..*spec
    };
    let fits = |text: &str| cost(&plan.title) + cost(text) <= spec.max_bytes;
    let fits_full = |levels: &Levels| fits(&render_at(&unlimited, alerts, *levels));
    let fits_partly =
        |levels: &Levels, s: usize, n: usize| fits(&render_partly(spec, alerts, *levels, s, n));
    if choice.bare {
        return Ok(());
    }
    let least = |levels: &Levels, s: usize| usize::from(!plan.may_list_none(levels, s));
    let mut expected = plan
        .order()
        .into_iter()
        .find(|(levels, partial)| match *partial {
            None => fits_full(levels),
            Some(s) => fits_partly(levels, s, least(levels, s)),
        });
    // Refill, from the rule.
    while let Some((levels, None)) = expected {
        let Some(a) = (0..SECTIONS)
            .rev()
            .find(|&s| plan.nonempty(s) && levels[s] < 3)
        else {
            break;
        };
        let poorest = (0..=a)
            .filter(|&s| plan.nonempty(s))
            .map(|s| levels[s])
            .max();
        let Some(t) = (a + 1..SECTIONS).find(|&t| plan.nonempty(t)) else {
            break;
        };
        let Some(poorest) = poorest.filter(|&l| l > 0) else {
            break;
        };
        let mut found = None;
        for l in poorest..=2 {
            let mut next = levels;
            next[t] = l;
            if fits_full(&next) {
                found = Some((next, None));
                break;
            }
            if fits_partly(&next, t, 1) {
                found = Some((next, Some(t)));
                break;
            }
        }
        match found {
            Some(f) => expected = Some(f),
            None => break,
        }
    }
    let Some((levels, partial)) = expected else {
        if choice.levels != *plan.sequence().last().expect("never empty")
            || choice.partial.is_some()
        {
            return Err(format!("{choice:?} chosen, not counted only"));
        }
        if choice.extras != ALL_EXTRAS && fits_full(&choice.levels) {
            return Err("extras given up though they fit".into());
        }
        return Ok(());
    };
    if (choice.levels, choice.partial.map(|p| p.0)) != (levels, partial) {
        return Err(format!("{choice:?} chosen, not {levels:?} {partial:?}"));
    }
    if let Some((s, n)) = choice.partial {
        let level = choice.levels[s];
        if !matches!(level, 1 | 2) || n < least(&levels, s) || n >= plan.entry_count(s, level) {
            return Err(format!("a partial listing out of bounds: {choice:?}"));
        }
        // Greedy: the next entry would not have fitted.
        if fits_partly(&choice.levels, s, n + 1) {
            return Err(format!("one more entry fits: {choice:?}"));
        }
        if choice.titles == 0 {
            let want = render_partly(spec, alerts, choice.levels, s, n);
            if want != text {
                return Err(format!("{choice:?} written as\n{text}\nnot as\n{want}"));
            }
        }
    }
    check_titles(spec, alerts, plan, choice, text)
}

/// Whether a line reads as a footer to a reader: the footer's words and `#`, whatever the
/// case, spacing, emphasis markers or invisible characters between them.
fn reads_as_footer(line: &str) -> bool {
    let seen: String = line
        .chars()
        .filter(|&c| !is_invisible(c) && !matches!(c, '*' | '_' | '~' | '`'))
        .flat_map(char::to_lowercase)
        .collect();
    let words: Vec<&str> = seen.split_whitespace().collect();
    let seen = words.join(" ");
    [
        "sluice digest #",
        "sluice digest＃",
        "sluice digest ＃",
        "sluice digest#",
    ]
    .iter()
    .any(|f| seen.contains(f))
}

/// Checks that only the last line of `r` is a footer, to `parse_footer` and to a reader,
/// and that it counts every alert under the digest's id.
fn only_the_last_line_is_a_footer(r: &Rendered, id: u64, n: usize) -> Result<(), String> {
    let lines: Vec<&str> = r.text.lines().collect();
    let (last, rest) = lines.split_last().ok_or("no lines")?;
    if let Some(l) = rest
        .iter()
        .find(|l| parse_footer(l).is_some() || reads_as_footer(l))
    {
        return Err(format!("{l:?} reads as a footer in\n{}", r.text));
    }
    if parse_footer(last) != Some((id, n as u64)) || parse_footer(&r.text) != Some((id, n as u64)) {
        return Err(format!(
            "the last line {last:?} is not the footer of #{id} · {n}"
        ));
    }
    Ok(())
}

/// A body template that writes alert content at the start of lines in every way it can:
/// raw values, filtered ones, labels.
fn exposing_template() -> Templates {
    Templates::compile(
        None,
        Some((
            "exposing.md.j2",
            "{% for s in sections + ([resolved] if resolved else []) %}\n\
             {% for g in s.groups %}\n\
             {{ g.name }}\n{{ g.name|line }}\n\
             {% for a in g.alerts %}\n\
             {{ a.title }}\n{{ a.title|line }}\n{{ a.text|excerpt }}\n{{ a.text|quote }}\n\
             {% if a.text %}{{ a.text }}{% endif +%}\n\
             {% for k, v in a.labels|items %}{{ k }}={{ v }}\n{{ v }}\n{% endfor %}\n\
             {% endfor %}\n\
             {% endfor %}\n\
             {% endfor %}",
        )),
    )
    .expect("compiles")
}

pub(crate) fn parse_num(s: &str) -> u64 {
    s.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {s:?}"))
}

fn nasty_string(max: usize) -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        3 => any::<char>(),
        3 => prop::char::range('a', 'z'),
        2 => prop::char::range('\u{4e00}', '\u{9fa5}'),
        2 => prop::sample::select(vec![
            '"', '\\', '\n', '\r', '\t', '\u{0}', '\u{1b}', '\u{7f}', '\u{85}', '\u{2028}',
            '#', '>', '*', ' ', '…', '×',
        ]),
    ];
    prop::collection::vec(ch, 0..max).prop_map(|v| v.into_iter().collect())
}
