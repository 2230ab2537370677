//! The live view of `sluice demo`: progress bars on a terminal, one plain line a second otherwise.
//! With one platform each robot has four bars; with several, each group has one row (and one
//! line a second), its platform beside its name, so the groups read side by side.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::digest::thousands;

/// One robot as the view shows it, read from the demo's counters and `GET /v1/status`.
#[derive(Debug, Clone, Default)]
pub struct RobotFigures {
    pub name: String,
    pub platform: &'static str,
    /// The platform's main rate period in words (`minute`, `second`).
    pub per: String,
    /// Alerts the batch jobs will send it.
    pub planned: u64,
    /// Alerts sluice acknowledged (202) so far.
    pub received: u64,
    pub pending: u64,
    /// Digests sealed and not yet delivered.
    pub outbox: u64,
    pub delivered: u64,
    pub digests: u64,
    pub sends_in_period: u64,
    pub rate_limit: u64,
    pub state: String,
    /// The simulator's throttle answers to this robot.
    pub throttles: u64,
    /// Cluster mode: the node that sends for it.
    pub owner: Option<String>,
}

impl RobotFigures {
    /// Fills in what the daemon's status says about this robot.
    pub fn read_status(&mut self, status: &crate::api::Status) {
        let Some(r) = status.robots.iter().find(|r| r.robot == self.name) else {
            return;
        };
        self.pending = r.pending.unwrap_or(0);
        self.outbox = r.outbox as u64;
        self.delivered = r.alerts_delivered;
        self.digests = r.digests_sent;
        self.sends_in_period = r.sends_in_period as u64;
        self.rate_limit = u64::from(r.rate_limit);
        self.state = r.state.clone();
        self.owner = r.owner.clone().filter(|o| !o.is_empty());
    }

    /// ` · node n2` in cluster mode.
    fn by(&self) -> String {
        self.owner
            .as_ref()
            .map_or_else(String::new, |o| format!(" · node {o}"))
    }
}

/// What the header line says.
pub struct Header {
    pub alerts: u64,
    pub jobs: usize,
    pub robots: usize,
    pub speed: f64,
    /// The platforms' names, in `--platforms` order.
    pub platforms: Vec<&'static str>,
    /// sluice nodes (1 but with `--cluster`).
    pub nodes: usize,
}

impl Header {
    fn several(&self) -> bool {
        self.platforms.len() > 1
    }

    /// ` on dingtalk, feishu, …` with several platforms; nothing for one, as before there were
    /// several.
    fn on(&self) -> String {
        let mut on = String::new();
        if self.several() {
            on = format!(" on {}", self.platforms.join(", "));
        }
        if self.nodes > 1 {
            on.push_str(&format!(" via {} sluice nodes", self.nodes));
        }
        on
    }
}

pub enum View {
    Bars {
        // Kept so the bars keep drawing together.
        multi: MultiProgress,
        header: ProgressBar,
        robots: Vec<[ProgressBar; 4]>,
    },
    /// Several platforms: one row per group.
    Rows {
        multi: MultiProgress,
        header: ProgressBar,
        groups: Vec<ProgressBar>,
    },
    Lines {
        last: Option<Instant>,
    },
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("a valid template")
        .progress_chars("█▉▊▋▌▍▎▏ ")
}

impl View {
    /// Bars when standard output is a terminal, plain lines otherwise.
    pub fn new(header: &Header, robots: &[RobotFigures]) -> View {
        if !std::io::stdout().is_terminal() {
            println!(
                "sluice demo: {} alerts from {} batch jobs to {} robots{} at {}× speed",
                thousands(header.alerts),
                header.jobs,
                header.robots,
                header.on(),
                header.speed
            );
            return View::Lines { last: None };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let top = multi.add(ProgressBar::new(0).with_style(style("{msg}")));
        if header.several() {
            return Self::rows(multi, top, robots);
        }
        let width = robots.iter().map(|r| r.name.len()).max().unwrap_or(0);
        let rows = robots
            .iter()
            .map(|r| {
                let planned = r.planned.max(1);
                let bar = |label: &str, colour: &str, tail: &str, len: u64| {
                    let template =
                        format!("{{prefix:<{width}}}  {label:<9} {{bar:32.{colour}/black}} {tail}");
                    multi.add(ProgressBar::new(len).with_style(style(&template)))
                };
                let received = bar("received", "cyan", "{human_pos:>7}/{human_len}", planned);
                received.set_prefix(r.name.clone());
                [
                    received,
                    bar("pending", "yellow", "{human_pos:>7} {msg}", planned),
                    bar("delivered", "green", "{human_pos:>7} {msg}", planned),
                    bar(
                        "sends",
                        "magenta",
                        &format!("{{human_pos:>7}}/{{len}} in the current {}", r.per),
                        r.rate_limit.max(1),
                    ),
                ]
            })
            .collect();
        View::Bars {
            multi,
            header: top,
            robots: rows,
        }
    }

    /// One row per group: `feishu   business  ███   1,234/2,000 delivered · …`.
    fn rows(multi: MultiProgress, top: ProgressBar, robots: &[RobotFigures]) -> View {
        let width = robots
            .iter()
            .map(|r| r.name.len() + r.platform.len() + 1)
            .max()
            .unwrap_or(0);
        let template = format!(
            "{{prefix:<{width}}}  {{bar:32.green/black}} {{human_pos:>7}}/{{human_len}} {{msg}}"
        );
        let groups = robots
            .iter()
            .map(|r| {
                let bar =
                    multi.add(ProgressBar::new(r.planned.max(1)).with_style(style(&template)));
                bar.set_prefix(format!("{} {}", r.platform, r.name));
                bar
            })
            .collect();
        View::Rows {
            multi,
            header: top,
            groups,
        }
    }

    /// Shows the figures now (bars), or once a second (lines).
    pub fn update(
        &mut self,
        header: &Header,
        elapsed: Duration,
        throttles: u64,
        robots: &[RobotFigures],
    ) {
        let simulated = Duration::from_secs_f64(elapsed.as_secs_f64() * header.speed);
        match self {
            View::Bars {
                header: top,
                robots: bars,
                ..
            } => {
                top.set_message(top_line(header, simulated, throttles));
                for (r, [received, pending, delivered, sends]) in robots.iter().zip(bars) {
                    received.set_position(r.received);
                    pending.set_position(r.pending);
                    pending.set_message(format!("{}{}", r.state, r.by()));
                    delivered.set_position(r.delivered);
                    delivered.set_message(format!("in {} messages", r.digests));
                    sends.set_length(r.rate_limit.max(1));
                    sends.set_position(r.sends_in_period);
                }
            }
            View::Rows {
                header: top,
                groups,
                ..
            } => {
                top.set_message(top_line(header, simulated, throttles));
                for (r, bar) in robots.iter().zip(groups) {
                    bar.set_position(r.delivered);
                    bar.set_message(format!(
                        "delivered in {} messages · {} received, {} pending · {}/{} sends this {} · {}{} · throttles {}",
                        r.digests,
                        thousands(r.received),
                        thousands(r.pending),
                        r.sends_in_period,
                        r.rate_limit,
                        r.per,
                        r.state,
                        r.by(),
                        r.throttles
                    ));
                }
            }
            View::Lines { last } if header.several() => {
                if last.is_some_and(|l| l.elapsed() < Duration::from_secs(1)) {
                    return;
                }
                *last = Some(Instant::now());
                for r in robots {
                    println!(
                        "[{:>5.1}s, simulated {}] {:<8} {}: {}/{} received, {} pending, {} delivered in {} messages, {}/{} sends this {}{} · throttles {}",
                        elapsed.as_secs_f64(),
                        clock(simulated),
                        r.platform,
                        r.name,
                        thousands(r.received),
                        thousands(r.planned),
                        thousands(r.pending),
                        thousands(r.delivered),
                        r.digests,
                        r.sends_in_period,
                        r.rate_limit,
                        r.per,
                        r.by(),
                        r.throttles
                    );
                }
            }
            View::Lines { last } => {
                if last.is_some_and(|l| l.elapsed() < Duration::from_secs(1)) {
                    return;
                }
                *last = Some(Instant::now());
                let parts: Vec<String> = robots
                    .iter()
                    .map(|r| {
                        format!(
                            "{}: {}/{} received, {} pending, {} delivered in {} messages, {}/{} sends this {}{}",
                            r.name,
                            thousands(r.received),
                            thousands(r.planned),
                            thousands(r.pending),
                            thousands(r.delivered),
                            r.digests,
                            r.sends_in_period,
                            r.rate_limit,
                            r.per,
                            r.by()
                        )
                    })
                    .collect();
                println!(
                    "[{:>5.1}s, simulated {}] {} · throttles {throttles}",
                    elapsed.as_secs_f64(),
                    clock(simulated),
                    parts.join(" · ")
                );
            }
        }
    }

    /// A line of its own above the bars (or between the plain lines): the kill, a takeover.
    pub fn note(&self, line: &str) {
        match self {
            View::Bars { multi, .. } | View::Rows { multi, .. } => {
                let _ = multi.println(line);
            }
            View::Lines { .. } => println!("{line}"),
        }
    }

    /// Leaves the last frame on screen, as it was (`finish` would fill every bar).
    pub fn finish(self) {
        match self {
            View::Bars { header, robots, .. } => {
                header.abandon();
                for bar in robots.iter().flatten() {
                    bar.abandon();
                }
            }
            View::Rows { header, groups, .. } => {
                header.abandon();
                for bar in groups {
                    bar.abandon();
                }
            }
            View::Lines { .. } => {}
        }
    }
}

/// The bars' first line.
fn top_line(header: &Header, simulated: Duration, throttles: u64) -> String {
    format!(
        "sluice demo · {} alerts from {} batch jobs → {} robots{} · {}× speed · simulated {} · throttles {throttles}",
        thousands(header.alerts),
        header.jobs,
        header.robots,
        header.on(),
        header.speed,
        clock(simulated),
    )
}

/// `m:ss`, or `h:mm:ss` from an hour on.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}
