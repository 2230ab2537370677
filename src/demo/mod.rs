//! `sluice demo`: the whole story in one process, with nothing to configure.
//!
//! It starts a robot simulator on loopback ([`sim`]) with one chat group's robot per robot, on
//! the platforms `--platforms` names (DingTalk alone by default), a real sluice daemon with a
//! temporary store whose robots point at them, and a night of batch jobs ([`jobs`]) posting
//! bursts of data-quality alerts to sluice over HTTP. While it runs, a live view shows each
//! robot's queue and rate use; at the end it prints the messages as the groups saw them
//! ([`report`]) and a summary.
//!
//! Time is compressed by `--speed`: each platform's minute and second, DingTalk's 10-minute
//! lockout, sluice's window, rate periods and backoffs, and the jobs' schedule are all divided by
//! it, so the demo keeps the proportions of a real night. The simulator enforces each platform's
//! limits independently of sluice, so the summary's `throttles: 0` is the robots' word, not
//! sluice's.
//!
//! With `--cluster` ([`cluster`]) the daemon is three `sluice serve` nodes on a three-server NATS
//! JetStream cluster, child processes all, and the node owning the most robots is killed with
//! `kill -9` halfway through and started again.
//!
//! The run fails (an error from [`run`]) if any acknowledged alert is missing from the delivered
//! digests' footers, if a robot ever gave its throttle answer or refused a request, or if it does
//! not finish in time.

mod cluster;
pub mod jobs;
mod linger;
pub mod nats;
pub mod platform;
mod report;
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
pub use platform::{Platform, parse_platforms};
use report::{Group, Summary};
use sim::Simulator;
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

// Simulated durations (divided by the speed) of sluice's timing; each platform's limits are its
// own (`platform.rs` for the simulator, `ProviderKind::defaults` for sluice). The window is short
// so that on DingTalk and WeCom the rate limit, not the window, paces the digests: the demo shows
// sluice at 20 messages a minute without a single throttle.
const WINDOW: Duration = Duration::from_secs(2);
const RETRY_INITIAL: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
const BLOCKED_PROBE: Duration = Duration::from_secs(60);
/// Real time, not scaled: the simulator answers at once, a busy machine may not.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the live view asks the daemon for its status.
const POLL: Duration = Duration::from_millis(100);

/// The longest rate period of any platform, for the time limit.
const LONGEST_PERIOD: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Options {
    pub alerts: u64,
    /// Robots (chat groups) in all, dealt to the platforms in turn: at least one per platform.
    pub robots: usize,
    pub speed: f64,
    /// Distinct, in the order given; the first robot is on the first.
    pub platforms: Vec<Platform>,
    /// Three nodes on a NATS JetStream cluster, one killed mid-run ([`cluster`]).
    pub cluster: bool,
    /// `--nats-server`: the binary for `--cluster` ([`nats::find_nats_server`]).
    pub nats_server: Option<PathBuf>,
    /// How long the console stays up after the summary (single node): until Enter is pressed
    /// (`None`, only when standard input is a terminal), or for this long.
    pub linger: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            alerts: 5_000,
            robots: 2,
            speed: 10.0,
            platforms: vec![Platform::DingTalk],
            cluster: false,
            linger: Some(Duration::ZERO),
            nats_server: None,
        }
    }
}

/// `--robots` when not given: 2, or one per platform when more are named.
pub fn default_robots(platforms: &[Platform]) -> usize {
    platforms.len().max(2)
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
        let names: Vec<&str> = self.platforms.iter().map(|p| p.name()).collect();
        if let Err(e) = parse_platforms(&names.join(",")) {
            return usage("--platforms", e);
        }
        if self.robots < self.platforms.len() {
            return usage(
                "--robots",
                format!(
                    "{} cannot cover the {} platforms named by --platforms; give at least {} (one group per platform), or leave --robots out",
                    self.robots,
                    self.platforms.len(),
                    self.platforms.len()
                ),
            );
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

pub struct Robot {
    name: String,
    platform: Platform,
    /// What the simulator knows it by: DingTalk's access token, Feishu's hook id, WeCom's key,
    /// Slack's `T…/B…/…` path.
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

/// A robot as the daemon's configuration wires it to the simulator.
struct Wiring {
    name: String,
    platform: Platform,
    webhook: String,
    secret: Option<String>,
}

/// The daemon's configuration: one robot per simulated group on its platform, with that
/// platform's limits as sluice knows them ([`crate::provider::ProviderKind::defaults`]), all
/// timing scaled. The limits go in each robot's table, as `[defaults]` would give every
/// platform the same.
fn config_text(
    data_dir: &Path,
    listen: &str,
    robots: &[Wiring],
    speed: f64,
    request_timeout: Duration,
) -> String {
    let ms = |d: Duration| format!("\"{}ms\"", scale(d, speed).as_millis());
    // `$` would start a `${VAR}`; `$$` is a literal one.
    let dir = toml::Value::String(data_dir.display().to_string().replace('$', "$$"));
    let mut text = format!(
        "[server]\nlisten = \"{listen}\"\ndata_dir = {dir}\n\n\
         [defaults]\nwindow = {}\nretry_initial_backoff = {}\nretry_max_backoff = {}\n\
         blocked_probe = {}\nrequest_timeout = \"{}ms\"\n",
        ms(WINDOW),
        ms(RETRY_INITIAL),
        ms(RETRY_MAX),
        ms(BLOCKED_PROBE),
        request_timeout.as_millis(),
    );
    for r in robots {
        let d = r.platform.kind().defaults();
        text.push_str(&format!(
            "\n[robots.{}]\nprovider = \"{}\"\nwebhook = \"{}\"\n\
             rate_limit = {}\nrate_period = {}\nthrottle_backoff = {}\n",
            r.name,
            r.platform.name(),
            r.webhook,
            d.rate.0,
            ms(d.rate.1),
            ms(d.throttle_backoff),
        ));
        if let Some((limit, period)) = d.burst {
            text.push_str(&format!(
                "burst_limit = {limit}\nburst_period = {}\n",
                ms(period)
            ));
        }
        if let Some(secret) = &r.secret {
            text.push_str(&format!("secret = \"{secret}\"\n"));
        }
    }
    text
}

/// sluice, serving in this process until stopped.
struct Daemon {
    client: Arc<Client>,
    addr: std::net::SocketAddr,
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
        Ok(Daemon {
            client,
            addr,
            stop,
            task,
        })
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
    // Before anything starts: without a server there is no cluster to show.
    let nats = options
        .cluster
        .then(|| nats::find_nats_server(options.nats_server.as_deref()))
        .transpose()?;
    let dir = TempDir::create()?;
    let sim = Simulator::start()
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
            let platform = options.platforms[i % options.platforms.len()];
            Arc::new(Robot {
                name: name.to_string(),
                platform,
                token: token(platform, &mut keys),
                planned,
                received: AtomicU64::new(0),
            })
        })
        .collect();
    let mut wiring = Vec::new();
    for r in &robots {
        let secret = r
            .platform
            .signs()
            .then(|| format!("SEC{:016x}{:016x}", keys.next_u64(), keys.next_u64()));
        let limits = r.platform.limits().scaled(|d| scale(d, speed));
        sim.add_robot(r.platform, &r.token, secret.as_deref(), limits);
        wiring.push(Wiring {
            name: r.name.clone(),
            platform: r.platform,
            webhook: sim.webhook(r.platform, &r.token),
            secret,
        });
    }
    let (daemon, mut cluster, front) = if let Some(nats) = nats {
        let c = cluster::Cluster::start(nats, &dir.0, &wiring, speed).await?;
        let front = c.front();
        (None, Some(c), front)
    } else {
        let text = config_text(&dir.0, "127.0.0.1:0", &wiring, speed, REQUEST_TIMEOUT);
        let config =
            Config::parse(&text, "demo configuration", &|_| None).map_err(DemoError::Config)?;
        let daemon = Daemon::start(config).await?;
        let front = Arc::new(cluster::Front::new(vec![daemon.client.clone()]));
        (Some(daemon), None, front)
    };
    let driven = drive(&options, &plan, &robots, &sim, &front, cluster.as_mut()).await;
    let final_status = front.status().await.ok();
    let story = cluster.map(cluster::Cluster::stop);
    let groups: Vec<Group> = robots
        .iter()
        .map(|r| Group {
            robot: r.clone(),
            messages: sim.messages(&r.token),
            busiest: sim.busiest(&r.token),
            throttled: sim.throttled(&r.token),
            refused: sim.refused(&r.token),
        })
        .collect();
    let summary = match &driven {
        Ok(elapsed) => {
            report::print_digests(&options.platforms, &groups);
            let dead: u64 = final_status
                .as_ref()
                .map_or(0, |s| s.robots.iter().map(|r| r.dead).sum());
            let summary = Summary {
                options: &options,
                groups: &groups,
                dead,
                elapsed: *elapsed,
                cluster: story.as_ref(),
            };
            summary.print();
            if let Some(d) = &daemon {
                linger::linger(d.addr, options.linger).await;
            }
            Some(summary)
        }
        Err(_) => None,
    };
    let stopped = match daemon {
        Some(d) => d.stop().await,
        None => Ok(()),
    };
    sim.stop().await;
    drop(dir);
    driven?;
    stopped?;
    let Some(summary) = summary else {
        unreachable!("a summary is made whenever the run succeeded")
    };
    match summary.problems() {
        problems if problems.is_empty() => Ok(()),
        problems => Err(DemoError::Failed(problems.join("; "))),
    }
}

/// A robot's credential in its platform's shape: DingTalk's 32-hex access token, Feishu's
/// UUID-like hook id, WeCom's key, Slack's `T…/B…/…` path.
fn token(platform: Platform, keys: &mut Rng) -> String {
    let (a, b) = (keys.next_u64(), keys.next_u64());
    match platform {
        Platform::DingTalk => format!("{a:016x}{b:016x}"),
        Platform::Feishu => format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        ),
        Platform::WeCom => format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            b >> 32,
            (b >> 16) & 0xffff,
            b & 0xffff,
            a >> 48,
            a & 0xffff_ffff_ffff
        ),
        Platform::Slack => format!("T0DEMO{:04X}/B{:08X}/{a:016x}", b >> 48, b as u32),
    }
}

/// The longest the demo may take before it gives up: the jobs' schedule and a few rate periods,
/// three times over, plus time to ingest and render, plus 30 s for a busy machine.
fn time_limit(options: &Options, plan: &[JobPlan]) -> Duration {
    let last = plan.iter().map(JobPlan::end).max().unwrap_or_default();
    let simulated = last + WINDOW + LONGEST_PERIOD * 2;
    Duration::from_secs(30)
        + scale(simulated, options.speed) * 3
        + Duration::from_micros(options.alerts * 500)
}

/// Fires the batch jobs and shows progress until every acknowledged alert is delivered, sluice
/// has nothing left to send, or a robot throttled it. Returns the elapsed time.
async fn drive(
    options: &Options,
    plan: &[JobPlan],
    robots: &[Arc<Robot>],
    sim: &Simulator,
    front: &Arc<cluster::Front>,
    mut cluster: Option<&mut cluster::Cluster>,
) -> Result<Duration, DemoError> {
    let header = Header {
        alerts: options.alerts,
        jobs: JOBS.len(),
        robots: robots.len(),
        speed: options.speed,
        platforms: options.platforms.iter().map(|p| p.name()).collect(),
        nodes: if options.cluster { cluster::NODES } else { 1 },
    };
    let mut figures: Vec<RobotFigures> = robots
        .iter()
        .map(|r| {
            let main = r.platform.limits().windows[0];
            RobotFigures {
                name: r.name.clone(),
                platform: r.platform.name(),
                per: platform::per(main.period),
                planned: r.planned,
                rate_limit: main.limit as u64,
                ..RobotFigures::default()
            }
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
        let (front, day, speed) = (front.clone(), day.clone(), options.speed);
        running.spawn(async move {
            let mut rng = Rng::new(seed);
            let posts: Vec<(Duration, u64)> =
                runs.iter().flat_map(|r| r.posts(speed, &mut rng)).collect();
            for (at, n) in posts {
                tokio::time::sleep_until(start + at).await;
                let alerts = jobs::failed_checks(job, &robot.name, &day, n, &mut rng);
                let ids = front
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

    let deadline = start
        + time_limit(options, plan)
        + cluster
            .as_ref()
            .map_or(Duration::ZERO, |c| c.timing().extra_time());
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
        let status = match front.status().await {
            Ok(s) => s,
            Err(e) => break Err(DemoError::Client(e)),
        };
        for (f, r) in figures.iter_mut().zip(robots) {
            f.received = r.received.load(Ordering::Relaxed);
            f.throttles = sim.throttled(&r.token);
            f.read_status(&status);
            if cluster.is_some() {
                // The nodes count only their own sends: the group's count is the truth.
                (f.digests, f.delivered, _) = report::unique_footers(&sim.messages(&r.token));
            }
        }
        let throttles: u64 = figures.iter().map(|f| f.throttles).sum();
        let elapsed = start.elapsed();
        let mut settled = true;
        if let Some(c) = cluster.as_deref_mut() {
            let acked = figures.iter().map(|f| f.received).sum();
            match c.step(elapsed, acked, options.alerts, &status).await {
                Ok(lines) => lines.iter().for_each(|l| view.note(l)),
                Err(e) => break Err(e),
            }
            settled = c.settled();
        }
        view.update(&header, elapsed, throttles, &figures);

        let jobs_done = running.is_empty() && settled;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ProviderKind;

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
    fn robots_cover_every_platform_named() {
        let four = Options {
            platforms: Platform::ALL.to_vec(),
            robots: default_robots(&Platform::ALL),
            ..Options::default()
        };
        assert_eq!(four.robots, 4);
        assert!(four.check().is_ok());
        assert_eq!(default_robots(&[Platform::DingTalk]), 2);
        let short = Options {
            robots: 3,
            ..four.clone()
        };
        assert!(
            short
                .check()
                .unwrap_err()
                .to_string()
                .starts_with("--robots: 3 cannot cover the 4 platforms named by --platforms")
        );
        let twice = Options {
            platforms: vec![Platform::Slack, Platform::Slack],
            ..four
        };
        assert!(
            twice
                .check()
                .unwrap_err()
                .to_string()
                .starts_with("--platforms: slack is named twice")
        );
    }

    fn wiring(name: &str, platform: Platform, webhook: &str, secret: Option<&str>) -> Wiring {
        Wiring {
            name: name.into(),
            platform,
            webhook: webhook.into(),
            secret: secret.map(str::to_string),
        }
    }

    #[test]
    fn the_config_is_valid_and_scaled() {
        let robots = vec![wiring(
            "warehouse",
            Platform::DingTalk,
            "http://127.0.0.1:1/robot/send?access_token=t",
            Some("SECx"),
        )];
        let text = config_text(
            Path::new("/tmp/a$b \"c\""),
            "127.0.0.1:0",
            &robots,
            10.0,
            REQUEST_TIMEOUT,
        );
        let config = Config::parse(&text, "demo", &|_| None).unwrap();
        assert_eq!(config.server.data_dir, Path::new("/tmp/a$b \"c\""));
        let t = &config.robots["warehouse"].timing;
        assert_eq!(t.rate_period, Duration::from_secs(6));
        assert_eq!(t.rate_limit, 20);
        assert_eq!(t.window, Duration::from_millis(200));
        assert_eq!(t.throttle_backoff, Duration::from_secs(60));
        assert_eq!(t.burst, None);
        // Never below sluice's 10 ms minimum, and never rounded down.
        assert_eq!(scale(RETRY_INITIAL, MAX_SPEED), Duration::from_millis(10));
        assert_eq!(
            scale(Duration::from_secs(60), 7.0),
            Duration::from_millis(8572)
        );
    }

    #[test]
    fn each_platform_gets_its_provider_and_its_own_limits_scaled() {
        let ms = Duration::from_millis;
        let robots = vec![
            wiring(
                "a",
                Platform::Feishu,
                "http://127.0.0.1:1/open-apis/bot/v2/hook/h",
                Some("s"),
            ),
            wiring(
                "b",
                Platform::WeCom,
                "http://127.0.0.1:1/cgi-bin/webhook/send?key=k",
                None,
            ),
            wiring(
                "c",
                Platform::Slack,
                "http://127.0.0.1:1/services/T/B/X",
                None,
            ),
        ];
        let text = config_text(
            Path::new("/tmp/d"),
            "127.0.0.1:0",
            &robots,
            60.0,
            REQUEST_TIMEOUT,
        );
        let config = Config::parse(&text, "demo", &|_| None).unwrap();
        let timing = |name: &str| {
            let r = &config.robots[name];
            (
                r.provider,
                r.timing.rate_limit,
                r.timing.rate_period,
                r.timing.burst,
            )
        };
        assert_eq!(
            timing("a"),
            (ProviderKind::Feishu, 100, ms(1000), Some((5, ms(17))))
        );
        assert_eq!(timing("b"), (ProviderKind::WeCom, 20, ms(1000), None));
        assert_eq!(timing("c"), (ProviderKind::Slack, 1, ms(17), None));
        assert_eq!(config.robots["a"].timing.throttle_backoff, ms(1000));
    }

    #[test]
    fn tokens_have_their_platform_s_shape() {
        let mut keys = Rng::new(7);
        assert_eq!(token(Platform::DingTalk, &mut keys).len(), 32);
        assert_eq!(token(Platform::Feishu, &mut keys).split('-').count(), 5);
        let slack = token(Platform::Slack, &mut keys);
        assert!(
            slack.starts_with("T0DEMO") && slack.split('/').count() == 3,
            "{slack}"
        );
    }
}
