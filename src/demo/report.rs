//! What `sluice demo` prints at the end: the digests as the groups saw them, and the summary
//! that proves, from the simulator's own records, that nothing was lost or throttled.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::cluster::Story;
use super::jobs::JOBS;
use super::platform::{Platform, per};
use super::sim::Message;
use super::{Options, Robot};
use crate::digest::thousands;

/// A digest shown for a platform (among several) keeps at most this many lines of its text and
/// this many bytes, then its footer: enough to see the platform's form, bounded on a terminal.
const SHOWN_LINES: usize = 30;
const SHOWN_BYTES: usize = 2_500;

/// A chat group at the end of the demo: its robot, and what the simulator kept and counted.
pub struct Group {
    pub robot: Arc<Robot>,
    pub messages: Vec<Message>,
    /// The most messages in any rolling period, for each of the platform's windows.
    pub busiest: Vec<usize>,
    pub throttled: u64,
    pub refused: u64,
}

impl Group {
    fn acknowledged(&self) -> u64 {
        self.robot.received.load(Ordering::Relaxed)
    }

    /// The alerts the delivered digests' footers count, each digest once.
    fn in_footers(&self) -> u64 {
        unique_footers(&self.messages).1
    }

    /// Messages that repeated a digest the group already had.
    fn repeated(&self) -> u64 {
        unique_footers(&self.messages).2
    }

    /// `18/20 a minute`, and `5/5 a second` after it for a second window.
    fn busiest_text(&self) -> String {
        let windows = self.robot.platform.limits().windows;
        let parts: Vec<String> = windows
            .iter()
            .zip(&self.busiest)
            .map(|(w, n)| format!("{n}/{} a {}", w.limit, per(w.period)))
            .collect();
        parts.join(" and ")
    }
}

/// The distinct digests among `messages` (by the id in their footers), the alerts they count,
/// and how many messages repeated one already there: delivery is at least once, and a digest
/// in flight when its sender died is sent again by the next.
pub fn unique_footers(messages: &[Message]) -> (u64, u64, u64) {
    let mut seen = std::collections::HashSet::new();
    let (mut alerts, mut repeated) = (0, 0);
    for (id, n) in messages
        .iter()
        .filter_map(|m| crate::digest::parse_footer(&m.text))
    {
        if seen.insert(id) {
            alerts += n;
        } else {
            repeated += 1;
        }
    }
    (seen.len() as u64, alerts, repeated)
}

/// The number in a digest's last line, `sluice digest #12 · 1,234 alerts`.
pub fn footer_count(text: &str) -> Option<u64> {
    crate::digest::parse_footer(text).map(|(_, n)| n)
}

fn local_time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(
        |_| ms.to_string(),
        |t| {
            jiff::tz::TimeZone::system()
                .to_datetime(t)
                .strftime("%H:%M:%S%.3f")
                .to_string()
        },
    )
}

fn plural(n: usize, one: &str) -> String {
    format!("{n} {one}{}", if n == 1 { "" } else { "s" })
}

/// A message as its group reads it: a Feishu post's title above its paragraphs; on the other
/// platforms the title is in the text already (or, on DingTalk, only in the notification).
fn readable(platform: Platform, m: &Message) -> String {
    match platform {
        Platform::Feishu if !m.title.is_empty() => format!("{}\n\n{}", m.title, m.text),
        _ => m.text.clone(),
    }
}

/// With one platform, every message, group by group, as the chat would show them (the markdown
/// source). With several, one digest per platform: the one that carried the most alerts, in
/// that platform's form, cut short if long.
pub fn print_digests(platforms: &[Platform], groups: &[Group]) {
    if let [_] = platforms {
        for g in groups {
            print_group(g);
        }
        return;
    }
    for &platform in platforms {
        let biggest = groups
            .iter()
            .filter(|g| g.robot.platform == platform)
            .flat_map(|g| g.messages.iter().enumerate().map(move |(i, m)| (g, i, m)))
            .max_by_key(|(_, i, m)| (footer_count(&m.text), std::cmp::Reverse(*i)));
        println!();
        let Some((g, i, m)) = biggest else {
            println!("══ {} · no message was delivered ══", platform.name());
            continue;
        };
        let text = readable(platform, m);
        println!(
            "══ {} · group {} · {}; the one with the most alerts, as the group saw it ({}) ══",
            platform.name(),
            g.robot.name,
            plural(g.messages.len(), "message"),
            platform.form(),
        );
        println!();
        println!(
            "── {} · {} · {} · message {} of {} · {} bytes ──",
            g.robot.name,
            platform.name(),
            local_time(m.at_ms),
            i + 1,
            g.messages.len(),
            thousands(text.len() as u64),
        );
        println!("{}", shortened(&text));
    }
}

fn print_group(g: &Group) {
    let messages = &g.messages;
    println!();
    println!(
        "══ group {} · {} from its robot ══",
        g.robot.name,
        plural(messages.len(), "message")
    );
    for (i, m) in messages.iter().enumerate() {
        println!();
        println!(
            "── {} · {} · message {} of {} ──",
            g.robot.name,
            local_time(m.at_ms),
            i + 1,
            messages.len(),
        );
        println!("{}", m.text.trim_end());
    }
}

/// `text` within [`SHOWN_LINES`] and [`SHOWN_BYTES`], with a note of what was left out and its
/// last line (the footer) kept.
fn shortened(text: &str) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let (body, last) = match lines.split_last() {
        Some((last, body)) => (body, *last),
        None => return String::new(),
    };
    let mut shown = Vec::new();
    let mut bytes = 0;
    for line in body {
        if shown.len() == SHOWN_LINES || bytes + line.len() > SHOWN_BYTES {
            break;
        }
        bytes += line.len() + 1;
        shown.push(*line);
    }
    let left = body.len() - shown.len();
    if left > 0 {
        shown.push("");
        let note = format!(
            "[… {} not shown here; the message holds {} bytes]",
            plural(left, "more line"),
            thousands(text.len() as u64)
        );
        return format!("{}\n{note}\n{last}", shown.join("\n"));
    }
    shown.push(last);
    shown.join("\n")
}

pub struct Summary<'a> {
    pub options: &'a Options,
    pub groups: &'a [Group],
    pub dead: u64,
    pub elapsed: Duration,
    pub cluster: Option<&'a Story>,
}

impl Summary<'_> {
    fn acknowledged(&self) -> u64 {
        self.groups.iter().map(Group::acknowledged).sum()
    }

    fn delivered(&self) -> u64 {
        self.groups.iter().map(Group::in_footers).sum()
    }

    fn messages(&self) -> usize {
        self.groups.iter().map(|g| g.messages.len()).sum()
    }

    fn throttles(&self) -> u64 {
        self.groups.iter().map(|g| g.throttled).sum()
    }

    pub fn print(&self) {
        let (planned, acked, delivered) =
            (self.options.alerts, self.acknowledged(), self.delivered());
        let messages = self.messages();
        let per_robot: Vec<String> = self
            .groups
            .iter()
            .map(|g| format!("{} {}", g.robot.name, g.messages.len()))
            .collect();
        let busiest: Vec<String> = self
            .groups
            .iter()
            .map(|g| format!("{} {}", g.robot.name, g.busiest_text()))
            .collect();
        let simulated = self.elapsed.mul_f64(self.options.speed);
        println!();
        println!("══ summary ══");
        for g in self.groups {
            println!(
                "group {} · {}: {} alerts sent, {} acknowledged, {} in the footers of {} · busiest {} · {} throttle answers ({})",
                g.robot.name,
                g.robot.platform.name(),
                thousands(g.robot.planned),
                thousands(g.acknowledged()),
                thousands(g.in_footers()),
                plural(g.messages.len(), "message"),
                g.busiest_text(),
                g.throttled,
                g.robot.platform.throttle_answer(),
            );
        }
        // The demo stops at the first throttle: what is missing then may still be queued.
        let missing = if self.throttles() > 0 {
            "not delivered when the demo stopped"
        } else {
            "lost"
        };
        println!(
            "alerts:       {} from {} batch jobs, {} acknowledged, {} delivered (counted from the digests' footers), {} {missing}",
            thousands(planned),
            JOBS.len(),
            thousands(acked),
            thousands(delivered),
            thousands(acked.saturating_sub(delivered))
        );
        println!("messages:     {}, total {messages}", per_robot.join(", "));
        println!(
            "compression:  {:.1} alerts per message",
            delivered as f64 / messages.max(1) as f64
        );
        println!(
            "throttles:    {} (most messages a robot took in any rolling window: {})",
            self.throttles(),
            busiest.join(", ")
        );
        if let Some(story) = self.cluster {
            for line in story.lines() {
                println!("{line}");
            }
        }
        let repeated: u64 = self.groups.iter().map(Group::repeated).sum();
        if repeated > 0 || self.cluster.is_some() {
            println!(
                "repeated:     {} (a digest in flight when its sender died reaches its group again: at least once; counted once above)",
                plural(repeated as usize, "message")
            );
        }
        println!(
            "elapsed:      {} ({} of simulated time at {}× speed)",
            human(self.elapsed),
            human(simulated),
            self.options.speed
        );
        println!(
            "without sluice: one message per alert {} would take {} (robots in parallel)",
            self.pace(),
            human(self.one_by_one())
        );
    }

    /// `at 20 a minute` for one platform; each platform's own pace for several.
    fn pace(&self) -> String {
        match self.options.platforms.as_slice() {
            [p] => {
                let w = p.limits().windows[0];
                format!("at {} a {}", w.limit, per(w.period))
            }
            _ => "at each platform's limit".into(),
        }
    }

    /// Without digests: one message per alert, each robot at its platform's main limit, robots
    /// in parallel.
    fn one_by_one(&self) -> Duration {
        self.groups
            .iter()
            .map(|g| {
                let w = g.robot.platform.limits().windows[0];
                w.period.mul_f64(g.acknowledged() as f64 / w.limit as f64)
            })
            .max()
            .unwrap_or_default()
    }

    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for g in self.groups {
            let (acked, shown) = (g.acknowledged(), g.in_footers());
            if acked != shown {
                problems.push(format!(
                    "robot {}: {} alerts acknowledged but {} delivered",
                    g.robot.name,
                    thousands(acked),
                    thousands(shown)
                ));
            }
            let platform = g.robot.platform;
            if g.throttled > 0 {
                problems.push(format!(
                    "the {} robot of group {} answered {} (too fast) {}",
                    platform.name(),
                    g.robot.name,
                    platform.throttle_answer(),
                    plural(g.throttled as usize, "time")
                ));
            }
            if g.refused > 0 {
                problems.push(format!(
                    "the {} robot of group {} refused {} (signature, timestamp or body)",
                    platform.name(),
                    g.robot.name,
                    plural(g.refused as usize, "request")
                ));
            }
        }
        if self.acknowledged() != self.options.alerts {
            let when = if self.throttles() > 0 {
                "the demo stopped at the first throttle with"
            } else {
                "the batch jobs had"
            };
            problems.push(format!(
                "{when} {} of {} alerts acknowledged",
                thousands(self.acknowledged()),
                thousands(self.options.alerts)
            ));
        }
        if self.dead > 0 {
            problems.push(format!("{} digests were dead-lettered", self.dead));
        }
        if let Some(story) = self.cluster {
            problems.extend(story.problems());
        }
        problems
    }
}

/// `14.2 s`, `3 min 12 s`, `4 h 10 min`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{:.1} s", d.as_secs_f64())
    } else if s < 3600 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{} h {} min", s / 3600, s / 60 % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footers_are_counted() {
        assert_eq!(
            footer_count("### t\n\n- x\n\nsluice digest #12 · 1,234 alerts\n"),
            Some(1234)
        );
        assert_eq!(footer_count("sluice digest #1 · 1 alert"), Some(1));
        assert_eq!(footer_count("no footer"), None);
    }

    #[test]
    fn a_long_digest_is_cut_with_a_note_and_keeps_its_footer() {
        let short = "### t\n\n- x\n\nsluice digest #1 · 1 alert";
        assert_eq!(shortened(short), short);
        let lines: Vec<String> = (0..100).map(|i| format!("- line {i}")).collect();
        let long = format!("{}\n\nsluice digest #2 · 100 alerts\n", lines.join("\n"));
        let cut = shortened(&long);
        assert_eq!(cut.lines().count(), SHOWN_LINES + 3);
        assert!(
            cut.contains("[… 71 more lines not shown here; the message holds"),
            "{cut}"
        );
        assert_eq!(footer_count(&cut), Some(100));
        let wide = format!(
            "{}\nsluice digest #3 · 1 alert",
            "x".repeat(SHOWN_BYTES * 2)
        );
        assert!(shortened(&wide).len() < SHOWN_BYTES);
    }
}
