//! The live view of `sluice demo`: progress bars on a terminal, one plain line a second otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::digest::thousands;

/// One robot as the view shows it, read from the demo's counters and `GET /v1/status`.
#[derive(Debug, Clone, Default)]
pub struct RobotFigures {
    pub name: String,
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
    }
}

/// What the header line says.
pub struct Header {
    pub alerts: u64,
    pub jobs: usize,
    pub robots: usize,
    pub speed: f64,
}

pub enum View {
    Bars {
        // Kept so the bars keep drawing together.
        _multi: MultiProgress,
        header: ProgressBar,
        robots: Vec<[ProgressBar; 4]>,
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
                "sluice demo: {} alerts from {} batch jobs to {} robots at {}× speed",
                thousands(header.alerts),
                header.jobs,
                header.robots,
                header.speed
            );
            return View::Lines { last: None };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let top = multi.add(ProgressBar::new(0).with_style(style("{msg}")));
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
                        "{human_pos:>7}/{len} in the current minute",
                        20,
                    ),
                ]
            })
            .collect();
        View::Bars {
            _multi: multi,
            header: top,
            robots: rows,
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
                top.set_message(format!(
                    "sluice demo · {} alerts from {} batch jobs → {} robots · {}× speed · simulated {} · throttles {throttles}",
                    thousands(header.alerts),
                    header.jobs,
                    header.robots,
                    header.speed,
                    clock(simulated),
                ));
                for (r, [received, pending, delivered, sends]) in robots.iter().zip(bars) {
                    received.set_position(r.received);
                    pending.set_position(r.pending);
                    pending.set_message(r.state.clone());
                    delivered.set_position(r.delivered);
                    delivered.set_message(format!("in {} messages", r.digests));
                    sends.set_length(r.rate_limit.max(1));
                    sends.set_position(r.sends_in_period);
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
                            "{}: {}/{} received, {} pending, {} delivered in {} messages, {}/{} sends this minute",
                            r.name,
                            thousands(r.received),
                            thousands(r.planned),
                            thousands(r.pending),
                            thousands(r.delivered),
                            r.digests,
                            r.sends_in_period,
                            r.rate_limit
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

    /// Leaves the last frame on screen, as it was (`finish` would fill every bar).
    pub fn finish(self) {
        if let View::Bars { header, robots, .. } = self {
            header.abandon();
            for bar in robots.iter().flatten() {
                bar.abandon();
            }
        }
    }
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
