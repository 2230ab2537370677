//! `sluice demo`: the whole story in one process, with nothing to configure.
//!
//! It starts a DingTalk robot simulator on loopback ([`sim`]), a real sluice daemon with a
//! temporary store whose robots point at it, and a night of batch jobs ([`jobs`]) posting bursts
//! of data-quality alerts to sluice over HTTP. While it runs, a live view shows each robot's
//! queue and rate use; at the end it prints every message as the group saw it and a summary.
//!
//! Time is compressed by `--speed`: the robot's minute, its 10-minute lockout, sluice's window,
//! rate period and backoffs, and the jobs' schedule are all divided by it, so the demo keeps the
//! proportions of a real night. The simulator enforces the limit independently of sluice, so the
//! summary's `throttles: 0` is the robot's word, not sluice's.
//!
//! The run fails (an error from [`run`]) if any acknowledged alert is missing from the delivered
//! digests' footers, if the robot ever answered 130101 or refused a request, or if it does not
//! finish in time.

pub mod jobs;
pub mod sim;
mod view;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::Client;
use crate::config::Config;
use crate::digest::thousands;
use jobs::{JOBS, JobPlan, Rng};
use sim::{Limits, Message, Simulator};
use view::{Header, RobotFigures, View};

pub const MAX_ROBOTS: usize = 10;
pub const MAX_ALERTS: u64 = 1_000_000;
/// Above this the robot's period drops under 100 ms, where the limiter's margin (a fiftieth of
/// the period) is down to a couple of milliseconds.
pub const MAX_SPEED: f64 = 600.0;

/// Chat groups, one robot each.
const ROBOT_NAMES: [&str; MAX_ROBOTS] = [
    "warehouse",
    "business",
    "growth",
    "platform",
    "risk",
    "search",
    "supply",
    "finance",
    "logistics",
    "service",
];

// Simulated durations (divided by the speed): DingTalk's limit and lockout, and sluice's timing.
// The window is short so that the rate limit, not the window, paces the digests: the demo shows
// sluice at 20 messages a minute without a single throttle.
const RATE_LIMIT: usize = 20;
const RATE_PERIOD: Duration = Duration::from_secs(60);
const LOCKOUT: Duration = Duration::from_secs(600);
const WINDOW: Duration = Duration::from_secs(2);
const RETRY_INITIAL: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
const BLOCKED_PROBE: Duration = Duration::from_secs(60);

/// How often the live view asks the daemon for its status.
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub alerts: u64,
    pub robots: usize,
    pub speed: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            alerts: 5_000,
            robots: 2,
            speed: 10.0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot set up the demo: {0}")]
    Setup(String),
    /// Setting up failed on an I/O error: `what` was being done.
    #[error("cannot set up the demo: {what}: {source}")]
    SetupIo {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up the demo: {0}")]
    Config(#[source] crate::config::ConfigError),
    #[error("the sluice daemon failed: {0}")]
    Daemon(String),
    #[error("the sluice daemon failed: {0}")]
    Serve(#[source] crate::ServeError),
    #[error("the sluice daemon failed: {0}")]
    Task(#[source] tokio::task::JoinError),
    #[error("the sluice daemon failed: {0}")]
    Client(#[source] crate::client::ClientError),
    #[error("{0}")]
    Job(String),
    #[error("the demo did not finish within {}: {detail}", humantime::format_duration(*.after))]
    Timeout { after: Duration, detail: String },
    #[error("interrupted")]
    Interrupted,
    #[error("{0}")]
    Failed(String),
}

/// `--alerts`: 1 to [`MAX_ALERTS`].
pub fn parse_alerts(s: &str) -> Result<u64, String> {
    match s.trim().replace('_', "").parse::<u64>() {
        Ok(n) if (1..=MAX_ALERTS).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a number of alerts from 1 to {MAX_ALERTS}"
        )),
    }
}

/// `--robots`: 1 to [`MAX_ROBOTS`].
pub fn parse_robots(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_ROBOTS).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a number of robots from 1 to {MAX_ROBOTS}"
        )),
    }
}

/// `--speed`: more than 0, at most [`MAX_SPEED`] (1 is real time).
pub fn parse_speed(s: &str) -> Result<f64, String> {
    match s.trim().trim_end_matches(['x', '×']).parse::<f64>() {
        Ok(x) if x > 0.0 && x <= MAX_SPEED => Ok(x),
        _ => Err(format!(
            "expected a speed-up factor more than 0 and at most {MAX_SPEED} (1 = real time, 10 = a minute in 6 s)"
        )),
    }
}

impl Options {
    pub fn check(&self) -> Result<(), DemoError> {
        let usage = |flag: &str, e: String| Err(DemoError::Usage(format!("{flag}: {e}")));
        if let Err(e) = parse_alerts(&self.alerts.to_string()) {
            return usage("--alerts", e);
        }
        if let Err(e) = parse_robots(&self.robots.to_string()) {
            return usage("--robots", e);
        }
        if !(self.speed > 0.0 && self.speed <= MAX_SPEED) {
            return usage("--speed", parse_speed("0").unwrap_err());
        }
        Ok(())
    }
}

/// A simulated duration in real time: divided by the speed, rounded up to whole milliseconds, at
/// least 10 ms (sluice's smallest). The simulator and sluice get the very same values.
fn scale(d: Duration, speed: f64) -> Duration {
    let ms = (d.as_secs_f64() * 1000.0 / speed).ceil().max(10.0);
    Duration::from_millis(ms as u64)
}

struct Robot {
    name: String,
    token: String,
    planned: u64,
    /// Acknowledged by sluice so far, counted from the ids in its answers.
    received: AtomicU64,
}

/// The data directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn create() -> Result<TempDir, DemoError> {
        let path = std::env::temp_dir().join(format!(
            "sluice-demo-{}-{}",
            std::process::id(),
            crate::unix_ms()
        ));
        std::fs::create_dir(&path).map_err(|source| DemoError::SetupIo {
            what: format!("cannot create {}", path.display()),
            source,
        })?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The daemon's configuration: one DingTalk robot per simulated group, timing scaled.
fn config_text(data_dir: &Path, robots: &[(String, String, String)], speed: f64) -> String {
    let ms = |d: Duration| format!("\"{}ms\"", scale(d, speed).as_millis());
    // `$` would start a `${VAR}`; `$$` is a literal one.
    let dir = toml::Value::String(data_dir.display().to_string().replace('$', "$$"));
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = {dir}\n\n\
         [defaults]\nwindow = {}\nrate_limit = {RATE_LIMIT}\nrate_period = {}\n\
         retry_initial_backoff = {}\nretry_max_backoff = {}\nthrottle_backoff = {}\n\
         blocked_probe = {}\nrequest_timeout = \"5s\"\n",
        ms(WINDOW),
        ms(RATE_PERIOD),
        ms(RETRY_INITIAL),
        ms(RETRY_MAX),
        ms(LOCKOUT),
        ms(BLOCKED_PROBE),
    );
    for (name, webhook, secret) in robots {
        text.push_str(&format!(
            "\n[robots.{name}]\nprovider = \"dingtalk\"\nwebhook = \"{webhook}\"\nsecret = \"{secret}\"\n"
        ));
    }
    text
}

/// sluice, serving in this process until stopped.
struct Daemon {
    client: Arc<Client>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), crate::ServeError>>,
}

impl Daemon {
    async fn start(config: Config) -> Result<Daemon, DemoError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|source| DemoError::SetupIo {
                what: "cannot listen on 127.0.0.1".into(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| DemoError::SetupIo {
            what: "cannot read the listening address".into(),
            source,
        })?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(crate::serve(config, listener, async move {
            let _ = stopped.await;
        }));
        let client = Arc::new(Client::new(&addr.to_string(), None));
        let deadline = Instant::now() + Duration::from_secs(10);
        while client.status().await.is_err() {
            if task.is_finished() {
                let why = match task.await {
                    Ok(Err(e)) => e.to_string(),
                    Ok(Ok(())) => "it stopped during start-up".into(),
                    Err(e) => e.to_string(),
                };
                return Err(DemoError::Daemon(why));
            }
            if Instant::now() > deadline {
                return Err(DemoError::Daemon("it did not answer within 10 s".into()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Daemon { client, stop, task })
    }

    /// Shuts down (flushing the store) and waits for it.
    async fn stop(self) -> Result<(), DemoError> {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(DemoError::Serve(e)),
            Err(e) => Err(DemoError::Task(e)),
        }
    }
}

/// Runs the demo and prints its story to standard output. `Err` if anything was lost or
/// throttled, after the summary says what.
pub async fn run(options: Options) -> Result<(), DemoError> {
    options.check()?;
    let speed = options.speed;
    let dir = TempDir::create()?;
    let limits = Limits {
        limit: RATE_LIMIT,
        period: scale(RATE_PERIOD, speed),
        lockout: scale(LOCKOUT, speed),
    };
    let sim = Simulator::start(limits)
        .await
        .map_err(|source| DemoError::SetupIo {
            what: "cannot start the robot simulator".into(),
            source,
        })?;

    let plan = jobs::plan(options.alerts, options.robots);
    let mut keys = Rng::new(crate::unix_ms() as u64);
    let robots: Vec<Arc<Robot>> = ROBOT_NAMES[..options.robots]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let planned = plan
                .iter()
                .filter(|p| p.robot == i)
                .flat_map(|p| &p.runs)
                .map(|r| r.alerts)
                .sum();
            Arc::new(Robot {
                name: name.to_string(),
                token: format!("{:016x}{:016x}", keys.next_u64(), keys.next_u64()),
                planned,
                received: AtomicU64::new(0),
            })
        })
        .collect();
    let mut wiring = Vec::new();
    for r in &robots {
        let secret = format!("SEC{:016x}{:016x}", keys.next_u64(), keys.next_u64());
        sim.add_robot(&r.token, Some(&secret));
        wiring.push((r.name.clone(), sim.webhook(&r.token), secret));
    }
    let config = Config::parse(
        &config_text(&dir.0, &wiring, speed),
        "demo configuration",
        &|_| None,
    )
    .map_err(DemoError::Config)?;

    let daemon = Daemon::start(config).await?;
    let driven = drive(&options, &plan, &robots, &sim, &daemon.client).await;
    let final_status = daemon.client.status().await.ok();
    let stopped = daemon.stop().await;
    let groups: Vec<(Arc<Robot>, Vec<Message>)> = robots
        .iter()
        .map(|r| (r.clone(), sim.messages(&r.token)))
        .collect();
    let throttles: u64 = robots.iter().map(|r| sim.throttled(&r.token)).sum();
    let refused: u64 = robots.iter().map(|r| sim.refused(&r.token)).sum();
    let busiest: Vec<usize> = robots
        .iter()
        .map(|r| sim.busiest_period(&r.token))
        .collect();
    sim.stop().await;
    drop(dir);
    let elapsed = driven?;
    stopped?;

    print_digests(&groups);
    let dead: u64 = final_status
        .as_ref()
        .map_or(0, |s| s.robots.iter().map(|r| r.dead).sum());
    let summary = Summary {
        options,
        groups: &groups,
        busiest: &busiest,
        throttles,
        refused,
        dead,
        elapsed,
    };
    summary.print();
    match summary.problems() {
        problems if problems.is_empty() => Ok(()),
        problems => Err(DemoError::Failed(problems.join("; "))),
    }
}

/// The longest the demo may take before it gives up: the jobs' schedule and a few rate periods,
/// three times over, plus time to ingest and render, plus 30 s for a busy machine.
fn time_limit(options: &Options, plan: &[JobPlan]) -> Duration {
    let last = plan.iter().map(JobPlan::end).max().unwrap_or_default();
    let simulated = last + WINDOW + RATE_PERIOD * 2;
    Duration::from_secs(30)
        + scale(simulated, options.speed) * 3
        + Duration::from_micros(options.alerts * 500)
}

/// Fires the batch jobs and shows progress until every acknowledged alert is delivered, sluice
/// has nothing left to send, or the robot throttled it. Returns the elapsed time.
async fn drive(
    options: &Options,
    plan: &[JobPlan],
    robots: &[Arc<Robot>],
    sim: &Simulator,
    client: &Arc<Client>,
) -> Result<Duration, DemoError> {
    let header = Header {
        alerts: options.alerts,
        jobs: JOBS.len(),
        robots: robots.len(),
        speed: options.speed,
    };
    let mut figures: Vec<RobotFigures> = robots
        .iter()
        .map(|r| RobotFigures {
            name: r.name.clone(),
            planned: r.planned,
            rate_limit: RATE_LIMIT as u64,
            ..RobotFigures::default()
        })
        .collect();
    let mut view = View::new(&header, &figures);
    // The batch jobs run "last night": their partitions are yesterday's.
    let today = jiff::tz::TimeZone::system().to_datetime(jiff::Timestamp::now());
    let day = today
        .date()
        .yesterday()
        .map_or_else(|_| today.date().to_string(), |d| d.to_string());

    let start = Instant::now();
    let mut running = JoinSet::new();
    for p in plan {
        let robot = robots[p.robot].clone();
        let (job, runs, seed) = (p.job, p.runs.clone(), p.seed);
        let (client, day, speed) = (client.clone(), day.clone(), options.speed);
        running.spawn(async move {
            let mut rng = Rng::new(seed);
            let posts: Vec<(Duration, u64)> =
                runs.iter().flat_map(|r| r.posts(speed, &mut rng)).collect();
            for (at, n) in posts {
                tokio::time::sleep_until(start + at).await;
                let alerts = jobs::failed_checks(job, &robot.name, &day, n, &mut rng);
                let ids = client
                    .send(alerts)
                    .await
                    .map_err(|e| format!("batch job {}: {e}", job.name))?;
                robot
                    .received
                    .fetch_add(ids.len() as u64, Ordering::Relaxed);
            }
            Ok::<(), String>(())
        });
    }

    let deadline = start + time_limit(options, plan);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut tick = tokio::time::interval(POLL);
    let mut settled_polls = 0;
    let outcome = loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut ctrl_c => break Err(DemoError::Interrupted),
            Some(done) = running.join_next(), if !running.is_empty() => {
                match done {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => break Err(DemoError::Job(e)),
                    Err(e) => break Err(DemoError::Job(format!("a batch job failed: {e}"))),
                }
            }
        }
        let status = match client.status().await {
            Ok(s) => s,
            Err(e) => break Err(DemoError::Client(e)),
        };
        for (f, r) in figures.iter_mut().zip(robots) {
            f.received = r.received.load(Ordering::Relaxed);
            f.read_status(&status);
        }
        let throttles: u64 = robots.iter().map(|r| sim.throttled(&r.token)).sum();
        let elapsed = start.elapsed();
        view.update(&header, elapsed, throttles, &figures);

        let jobs_done = running.is_empty();
        let delivered = figures
            .iter()
            .all(|f| f.pending == 0 && f.delivered >= f.received);
        // Nothing left to send, yet not all delivered: the summary will say what is missing.
        // (A robot reads idle for a moment between sealing a digest and sending it, hence the
        // outbox, and three polls in a row.)
        let idle = figures
            .iter()
            .all(|f| f.pending == 0 && f.outbox == 0 && f.state == "idle");
        settled_polls = if jobs_done && idle {
            settled_polls + 1
        } else {
            0
        };
        if (jobs_done && delivered) || settled_polls >= 3 || throttles > 0 {
            break Ok(elapsed);
        }
        if Instant::now() > deadline {
            let detail: Vec<String> = figures
                .iter()
                .map(|f| {
                    format!(
                        "robot {} is {} with {} of {} alerts delivered and {} pending",
                        f.name,
                        f.state,
                        thousands(f.delivered),
                        thousands(f.received),
                        thousands(f.pending)
                    )
                })
                .collect();
            break Err(DemoError::Timeout {
                after: deadline - start,
                detail: detail.join("; "),
            });
        }
    };
    view.finish();
    running.abort_all();
    outcome
}

/// The number in a digest's last line, `sluice digest #12 · 1,234 alerts`.
fn footer_count(text: &str) -> Option<u64> {
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

/// Every message, group by group, as the chat would show them (the markdown source).
fn print_digests(groups: &[(Arc<Robot>, Vec<Message>)]) {
    for (robot, messages) in groups {
        println!();
        println!(
            "══ group {} · {} message{} from its robot ══",
            robot.name,
            messages.len(),
            if messages.len() == 1 { "" } else { "s" }
        );
        for (i, m) in messages.iter().enumerate() {
            println!();
            println!(
                "── {} · {} · message {} of {} ──",
                robot.name,
                local_time(m.at_ms),
                i + 1,
                messages.len(),
            );
            println!("{}", m.text.trim_end());
        }
    }
}

struct Summary<'a> {
    options: Options,
    groups: &'a [(Arc<Robot>, Vec<Message>)],
    busiest: &'a [usize],
    throttles: u64,
    refused: u64,
    dead: u64,
    elapsed: Duration,
}

impl Summary<'_> {
    fn acknowledged(&self) -> u64 {
        self.groups
            .iter()
            .map(|(r, _)| r.received.load(Ordering::Relaxed))
            .sum()
    }

    fn in_footers(messages: &[Message]) -> u64 {
        messages.iter().filter_map(|m| footer_count(&m.text)).sum()
    }

    fn delivered(&self) -> u64 {
        self.groups.iter().map(|(_, m)| Self::in_footers(m)).sum()
    }

    fn messages(&self) -> usize {
        self.groups.iter().map(|(_, m)| m.len()).sum()
    }

    fn print(&self) {
        let (planned, acked, delivered) =
            (self.options.alerts, self.acknowledged(), self.delivered());
        let messages = self.messages();
        let per_robot: Vec<String> = self
            .groups
            .iter()
            .map(|(r, m)| format!("{} {}", r.name, m.len()))
            .collect();
        let busiest: Vec<String> = self
            .groups
            .iter()
            .zip(self.busiest)
            .map(|((r, _), n)| format!("{} {n}/{RATE_LIMIT}", r.name))
            .collect();
        let simulated = self.elapsed.mul_f64(self.options.speed);
        // Without digests: one message per alert, each robot at 20 a minute, robots in parallel.
        let most = self
            .groups
            .iter()
            .map(|(r, _)| r.received.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        let one_by_one = Duration::from_secs(most * 60 / RATE_LIMIT as u64);
        println!();
        println!("══ summary ══");
        // The demo stops at the first throttle: what is missing then may still be queued.
        let missing = if self.throttles > 0 {
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
            "throttles:    {} (most messages a robot took in any rolling minute: {})",
            self.throttles,
            busiest.join(", ")
        );
        println!(
            "elapsed:      {} ({} of simulated time at {}× speed)",
            human(self.elapsed),
            human(simulated),
            self.options.speed
        );
        println!(
            "without sluice: one message per alert at {RATE_LIMIT} a minute would take {} (robots in parallel)",
            human(one_by_one)
        );
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (r, messages) in self.groups {
            let (acked, shown) = (
                r.received.load(Ordering::Relaxed),
                Self::in_footers(messages),
            );
            if acked != shown {
                problems.push(format!(
                    "robot {}: {} alerts acknowledged but {} delivered",
                    r.name,
                    thousands(acked),
                    thousands(shown)
                ));
            }
        }
        if self.acknowledged() != self.options.alerts {
            let when = if self.throttles > 0 {
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
        if self.throttles > 0 {
            problems.push(format!(
                "the robot answered 130101 (too fast) {} time{}",
                self.throttles,
                if self.throttles == 1 { "" } else { "s" }
            ));
        }
        if self.refused > 0 {
            problems.push(format!(
                "the robot refused {} requests (signature, timestamp or body)",
                self.refused
            ));
        }
        if self.dead > 0 {
            problems.push(format!("{} digests were dead-lettered", self.dead));
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
    fn flags_out_of_range_are_refused_with_the_range() {
        assert_eq!(parse_alerts("5_000"), Ok(5_000));
        assert!(parse_alerts("0").unwrap_err().contains("from 1 to"));
        assert!(parse_robots("11").unwrap_err().contains("from 1 to 10"));
        assert_eq!(parse_speed("60x"), Ok(60.0));
        assert!(parse_speed("0").is_err());
        assert!(parse_speed("-1").is_err());
        assert!(parse_speed("NaN").is_err());
        assert!(parse_speed("601").is_err());
        let bad = Options {
            robots: 0,
            ..Options::default()
        };
        assert!(
            bad.check()
                .unwrap_err()
                .to_string()
                .starts_with("--robots: ")
        );
    }

    #[test]
    fn the_config_is_valid_and_scaled() {
        let robots = vec![(
            "warehouse".to_string(),
            "http://127.0.0.1:1/robot/send?access_token=t".to_string(),
            "SECx".to_string(),
        )];
        let text = config_text(Path::new("/tmp/a$b \"c\""), &robots, 10.0);
        let config = Config::parse(&text, "demo", &|_| None).unwrap();
        assert_eq!(config.server.data_dir, Path::new("/tmp/a$b \"c\""));
        let t = &config.robots["warehouse"].timing;
        assert_eq!(t.rate_period, Duration::from_secs(6));
        assert_eq!(t.rate_limit, 20);
        assert_eq!(t.window, Duration::from_millis(200));
        assert_eq!(t.throttle_backoff, Duration::from_secs(60));
        // Never below sluice's 10 ms minimum, and never rounded down.
        assert_eq!(scale(RETRY_INITIAL, MAX_SPEED), Duration::from_millis(10));
        assert_eq!(scale(RATE_PERIOD, 7.0), Duration::from_millis(8572));
    }

    #[test]
    fn footers_are_counted() {
        assert_eq!(
            footer_count("### t\n\n- x\n\nsluice digest #12 · 1,234 alerts\n"),
            Some(1234)
        );
        assert_eq!(footer_count("sluice digest #1 · 1 alert"), Some(1));
        assert_eq!(footer_count("no footer"), None);
    }
}
