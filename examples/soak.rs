//! Soak harness: the real `sluice` binary against the fake DingTalk robot with faults on, several
//! clients posting alerts without pause, and the daemon `kill -9`ed and restarted at random
//! moments. At the end it stops posting, lets the daemon drain, and checks what DESIGN.md
//! promises:
//!
//! 1. every alert acknowledged with 202 was delivered (its digest answered errcode 0);
//! 2. no alert was delivered more than `1 + crashes` times, and no more digests were repeated
//!    than one per robot per crash (the one in flight when the process died);
//! 3. the robot never saw more than `rate_limit` requests in any rolling `rate_period`, and its
//!    limiter never answered 130101;
//! 4. every delivered alert is one the clients posted, under the id its 202 named; alerts whose
//!    POST was cut off by a kill are reported apart and never counted as acknowledged.
//!
//! Delivered alerts are recovered the way `tests/crash.rs` does it: the footer
//! `sluice digest #<id> · <N> alerts` of each message the fake accepted names the digest, and
//! `GET /v1/digests/<id>` lists every alert it covers (also those the message only counted).
//!
//! Time is scaled 30×: 20 messages per 2 s instead of per minute, backoffs and probes to match.
//! Everything runs on 127.0.0.1 and every loop is bounded by `--seconds` plus a bounded drain.
//!
//! ```text
//! scripts/soak.sh                                  # builds, then runs 60 s
//! SOAK_SECONDS=600 scripts/soak.sh --clients 6     # ten minutes, six clients
//! target/release/examples/soak --seconds 60 --seed 42 --sluice target/release/sluice
//! ```
//!
//! Exit status: 0 all checks held, 1 a check failed (the data directory and the daemon's log are
//! kept and named), 2 usage or set-up error.

#[allow(dead_code)]
#[path = "../tests/support/fake_robot.rs"]
mod fake_robot;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fake_robot::{FakeRobot, Fault, Limits};
use serde_json::{Value, json};

/// The robots the daemon serves: one sending at the limit all the time (no window), one with a
/// window and keyword security, as most real robots are set up.
const ROBOTS: [RobotSpec; 2] = [
    RobotSpec {
        name: "ops",
        token: "soak-ops-token",
        secret: "SECsoak-ops-secret",
        window: "0s",
        keyword: None,
    },
    RobotSpec {
        name: "dq",
        token: "soak-dq-token",
        secret: "SECsoak-dq-secret",
        window: "1s",
        keyword: Some("告警"),
    },
];

/// DingTalk's 20 a minute, scaled 30× down.
const RATE_LIMIT: usize = 20;
const RATE_PERIOD: Duration = Duration::from_secs(2);

/// A POST to sluice that takes longer than this counts as not acknowledged.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// A restarted daemon that is not answering `/healthz` by then is a failure.
const START_TIMEOUT: Duration = Duration::from_secs(30);

struct RobotSpec {
    name: &'static str,
    token: &'static str,
    secret: &'static str,
    window: &'static str,
    keyword: Option<&'static str>,
}

#[derive(Clone)]
struct Args {
    seconds: u64,
    clients: usize,
    seed: u64,
    sluice: PathBuf,
    dir: Option<PathBuf>,
    kill_min: u64,
    kill_max: u64,
    drain: u64,
}

const USAGE: &str = "usage: soak [--seconds N (60)] [--clients N (4)] [--seed N] [--sluice PATH] \
                     [--dir DIR] [--kill-min SECS (5)] [--kill-max SECS (30)] [--drain SECS (120)]";

fn parse_args() -> Result<Args, String> {
    let default_bin = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("sluice")))
        .unwrap_or_else(|| PathBuf::from("target/release/sluice"));
    let mut a = Args {
        seconds: 60,
        clients: 4,
        seed: fake_robot::unix_ms() as u64,
        sluice: default_bin,
        dir: None,
        kill_min: 5,
        kill_max: 30,
        drain: 120,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--seconds" => a.seconds = number(value()?)?,
            "--clients" => a.clients = number(value()?)? as usize,
            "--seed" => a.seed = number(value()?)?,
            "--sluice" => a.sluice = value()?.into(),
            "--dir" => a.dir = Some(value()?.into()),
            "--kill-min" => a.kill_min = number(value()?)?,
            "--kill-max" => a.kill_max = number(value()?)?,
            "--drain" => a.drain = number(value()?)?,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    if a.seconds == 0 || a.clients == 0 {
        return Err("--seconds and --clients must be at least 1".into());
    }
    if a.kill_min == 0 || a.kill_max < a.kill_min {
        return Err("need 1 <= --kill-min <= --kill-max".into());
    }
    Ok(a)
}

/// splitmix64: small, seedable, good enough to pick faults and pauses.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        Rng(seed ^ stream.wrapping_mul(0xa076_1d64_78bd_642f))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A duration drawn uniformly from `lo_ms..=hi_ms`.
    fn ms(&mut self, lo_ms: u64, hi_ms: u64) -> Duration {
        Duration::from_millis(lo_ms + self.below(hi_ms - lo_ms + 1))
    }
}

/// The real binary as a child process, restarted on the same config and data directory.
struct Daemon {
    bin: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    addr: SocketAddr,
    child: Option<Child>,
}

impl Daemon {
    fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| format!("cannot open {}: {e}", self.log_path.display()))?;
        let child = Command::new(&self.bin)
            .args(["serve", "-c"])
            .arg(&self.config_path)
            .env("RUST_LOG", "sluice=info,warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    async fn wait_healthy(&mut self, http: &reqwest::Client) -> Result<Duration, String> {
        let started = Instant::now();
        loop {
            if let Ok(r) = http.get(self.url("/healthz")).send().await
                && r.status().is_success()
            {
                return Ok(started.elapsed());
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                self.child = None;
                return Err(format!("sluice exited during start-up with {status}"));
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!("sluice not healthy within {START_TIMEOUT:?}"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILL: the process gets no chance to flush or answer anything.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then up to `timeout` for the exit; the exit code, `None` if it had to be killed.
    fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            if started.elapsed() > timeout {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What one client saw: titles acknowledged (with the robot and the id the 202 gave them) and
/// titles posted without a 202 (a kill cut the request off, or it timed out).
#[derive(Default)]
struct Ledger {
    acked: HashMap<String, (&'static str, String)>,
    unacked: HashSet<String>,
    posts_ok: u64,
    posts_failed: u64,
    statuses: BTreeMap<String, u64>,
}

/// Posts alerts until `until`: single alerts and batches of 2–50, to a random robot, with short
/// random pauses. Titles are unique across the run.
async fn client(
    c: usize,
    url: String,
    until: Instant,
    mut rng: Rng,
    acked_total: Arc<AtomicU64>,
) -> Ledger {
    let http = reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .expect("HTTP client");
    let severities = ["critical", "error", "warning", "info"];
    let mut ledger = Ledger::default();
    let mut n = 0u64;
    while Instant::now() < until {
        let robot = ROBOTS[rng.below(ROBOTS.len() as u64) as usize].name;
        let batch = if rng.below(2) == 0 {
            1
        } else {
            2 + rng.below(49)
        };
        let alerts: Vec<Value> = (0..batch)
            .map(|_| {
                n += 1;
                let mut a = json!({
                    "robot": robot,
                    "title": format!("soak c{c} #{n}"),
                    "severity": severities[rng.below(4) as usize],
                    "labels": {"job": format!("job_{}", rng.below(12))},
                });
                if rng.below(4) == 0 {
                    a["text"] = json!(format!("details of c{c} #{n}: {} rows", rng.below(10_000)));
                }
                a
            })
            .collect();
        let titles: Vec<String> = alerts
            .iter()
            .map(|a| a["title"].as_str().unwrap_or_default().to_string())
            .collect();
        let body = if batch == 1 {
            alerts.into_iter().next().unwrap_or_default()
        } else {
            Value::Array(alerts)
        };
        let answer = match http.post(&url).json(&body).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                Ok((status, body))
            }
            Err(e) => Err(e),
        };
        match answer {
            Ok((202, body)) => {
                let ids: Vec<String> = body["ids"]
                    .as_array()
                    .map(|ids| {
                        ids.iter()
                            .filter_map(|i| i.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                if ids.len() == titles.len() {
                    for (t, id) in titles.into_iter().zip(ids) {
                        ledger.acked.insert(t, (robot, id));
                    }
                    acked_total.fetch_add(batch, Ordering::Relaxed);
                    ledger.posts_ok += 1;
                } else {
                    // A 202 whose ids do not match the batch is a failure of its own; keep the
                    // alerts out of the acknowledged set and say so in the summary.
                    *ledger
                        .statuses
                        .entry(format!("202 with {} ids for {batch} alerts", ids.len()))
                        .or_default() += 1;
                    ledger.unacked.extend(titles);
                    ledger.posts_failed += 1;
                }
            }
            Ok((status, _)) => {
                *ledger.statuses.entry(format!("HTTP {status}")).or_default() += 1;
                ledger.unacked.extend(titles);
                ledger.posts_failed += 1;
            }
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "cut off"
                };
                *ledger.statuses.entry(kind.to_string()).or_default() += 1;
                ledger.unacked.extend(titles);
                ledger.posts_failed += 1;
                // The daemon is down or restarting: no point hammering the port.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        tokio::time::sleep(rng.ms(10, 80)).await;
    }
    ledger
}

/// What was injected into the fake robot.
#[derive(Default, Debug)]
struct Injected {
    busy: u64,
    http5xx: u64,
    slow: u64,
    dropped: u64,
    throttle_answer: u64,
    sign_refused: u64,
    sticky_bursts: u64,
    offline: u64,
    offline_ms: u64,
}

impl Injected {
    fn total(&self) -> u64 {
        self.busy
            + self.http5xx
            + self.slow
            + self.dropped
            + self.throttle_answer
            + self.sign_refused
            + self.sticky_bursts
            + self.offline
    }
}

/// Injects faults until `until`: a one-shot fault every 0.1–1 s on a random robot, now and then
/// a sticky spell of HTTP 503 on one robot, and every 15–45 s the whole service offline for
/// 0.3–2.5 s. Slow answers stay under the request timeout, so a repeat can only come from a crash.
///
/// One-shot faults wait in the fake's queue until a request comes, so a robot that sends less
/// often than faults are drawn (one with a window, or backing off) would build up a backlog that
/// fails every request for minutes. A robot therefore gets a new fault only once it has made a
/// request since its last one.
async fn inject_faults(fake: FakeRobot, until: Instant, mut rng: Rng) -> Injected {
    let mut n = Injected::default();
    let mut next_offline = Instant::now() + rng.ms(15_000, 45_000);
    let mut requests_at_last_fault = [usize::MAX; ROBOTS.len()];
    while Instant::now() < until {
        tokio::time::sleep(rng.ms(100, 1000)).await;
        let which = rng.below(ROBOTS.len() as u64) as usize;
        let token = ROBOTS[which].token;
        let requests = fake.requests(token).len();
        if requests == requests_at_last_fault[which] {
            continue;
        }
        requests_at_last_fault[which] = requests;
        let roll = rng.below(100);
        let fault = match roll {
            0..=29 => {
                n.busy += 1;
                Fault::Errcode(-1, "系统繁忙")
            }
            30..=54 => {
                n.http5xx += 1;
                Fault::Http([500, 502, 503][rng.below(3) as usize])
            }
            55..=79 => {
                n.slow += 1;
                Fault::Slow(rng.ms(50, 600))
            }
            80..=94 => {
                n.dropped += 1;
                Fault::Drop
            }
            95..=96 => {
                n.throttle_answer += 1;
                Fault::Errcode(410100, "发送速度太快而限流")
            }
            _ => {
                n.sign_refused += 1;
                Fault::Errcode(310000, "sign not match")
            }
        };
        fake.push_fault(token, fault);

        if rng.below(40) == 0 {
            n.sticky_bursts += 1;
            fake.set_sticky(token, Some(Fault::Http(503)));
            tokio::time::sleep(rng.ms(300, 2000)).await;
            fake.set_sticky(token, None);
        }
        if Instant::now() >= next_offline && Instant::now() < until {
            let d = rng.ms(300, 2500);
            n.offline += 1;
            n.offline_ms += d.as_millis() as u64;
            fake.go_offline().await;
            tokio::time::sleep(d).await;
            fake.come_online().await;
            next_offline = Instant::now() + rng.ms(15_000, 45_000);
        }
    }
    n
}

fn config(fake: &FakeRobot, data_dir: &Path, listen: SocketAddr) -> String {
    let mut text = format!(
        r#"# written by examples/soak.rs: DingTalk's timing scaled 30x down
[server]
listen = "{listen}"
data_dir = "{data}"

[defaults]
rate_limit = {RATE_LIMIT}
rate_period = "{period}s"
retry_initial_backoff = "100ms"
retry_max_backoff = "2s"
throttle_backoff = "5s"
blocked_probe = "1s"
request_timeout = "2s"
timezone = "UTC"
"#,
        data = data_dir.display(),
        period = RATE_PERIOD.as_secs(),
    );
    for r in &ROBOTS {
        let _ = write!(
            text,
            "\n[robots.{}]\nwebhook = \"{}\"\nsecret = \"{}\"\nwindow = \"{}\"\n",
            r.name,
            fake.webhook(r.token),
            r.secret,
            r.window
        );
        if let Some(k) = r.keyword {
            let _ = writeln!(text, "keywords = [\"{k}\"]");
        }
    }
    text
}

fn free_port() -> Result<SocketAddr, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    l.local_addr().map_err(|e| format!("local addr: {e}"))
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<(u16, Value), String> {
    let r = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

/// Polls `/v1/status` until no robot has anything pending or in its outbox, for at most `limit`.
async fn drain(http: &reqwest::Client, d: &Daemon, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let mut last = Value::Null;
    while started.elapsed() < limit {
        if let Ok((200, s)) = get_json(http, &d.url("/v1/status")).await {
            let robots = s["robots"].as_array().cloned().unwrap_or_default();
            let busy = robots
                .iter()
                .any(|r| r["pending"].as_u64() != Some(0) || r["outbox"].as_u64() != Some(0));
            if !robots.is_empty() && !busy {
                return Ok(started.elapsed());
            }
            last = s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("not drained within {limit:?}; last status: {last}"))
}

/// Where the run keeps its files: `--dir`, or a fresh temporary directory.
fn work_dir(args: &Args) -> Result<(PathBuf, Option<tempfile::TempDir>), String> {
    match &args.dir {
        Some(d) => {
            if d.join("data").exists() {
                return Err(format!(
                    "{} already holds a data directory; give an empty --dir",
                    d.display()
                ));
            }
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            Ok((d.clone(), None))
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("sluice-soak-")
                .tempdir()
                .map_err(|e| format!("temp dir: {e}"))?;
            Ok((t.path().to_path_buf(), Some(t)))
        }
    }
}

/// `n` with spaces between thousands (the digest's grouping, read by people here too).
fn thousands(n: u64) -> String {
    sluice::digest::thousands(n).replace(',', " ")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::from(2)
        }
    }
}

/// The whole run; `Ok(false)` when a check failed.
async fn run(args: Args) -> Result<bool, String> {
    if !args.sluice.is_file() {
        return Err(format!(
            "no sluice binary at {} (build it: cargo build --release --bin sluice, or pass --sluice)",
            args.sluice.display()
        ));
    }
    let (dir, temp) = work_dir(&args)?;
    let fake = FakeRobot::start(Limits {
        limit: RATE_LIMIT,
        period: RATE_PERIOD,
        lockout: Duration::from_secs(20),
    })
    .await;
    for r in &ROBOTS {
        let keywords: Vec<&str> = r.keyword.into_iter().collect();
        fake.add_robot(r.token, Some(r.secret), &keywords);
    }
    let addr = free_port()?;
    let config_path = dir.join("sluice.toml");
    std::fs::write(&config_path, config(&fake, &dir.join("data"), addr))
        .map_err(|e| format!("{}: {e}", config_path.display()))?;
    let mut daemon = Daemon {
        bin: args.sluice.clone(),
        config_path,
        log_path: dir.join("daemon.log"),
        addr,
        child: None,
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    daemon.spawn()?;
    daemon.wait_healthy(&http).await?;

    println!(
        "soak: {} s, {} clients, seed {}, kill every {}–{} s; sluice {} on {addr}, fake robot on {}, files in {}",
        args.seconds,
        args.clients,
        args.seed,
        args.kill_min,
        args.kill_max,
        args.sluice.display(),
        fake.addr(),
        dir.display()
    );

    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let acked_total = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..args.clients)
        .map(|c| {
            tokio::spawn(client(
                c,
                daemon.url("/v1/alerts"),
                until,
                Rng::new(args.seed, 100 + c as u64),
                acked_total.clone(),
            ))
        })
        .collect();
    let faults = tokio::spawn(inject_faults(fake.clone(), until, Rng::new(args.seed, 1)));

    // The crash loop runs here: sleep a random while, kill -9, restart on the same data.
    let mut violations: Vec<String> = Vec::new();
    let mut rng = Rng::new(args.seed, 2);
    let mut crashes = 0u64;
    let mut restart_times = Vec::new();
    let mut next_report = started + Duration::from_secs(15);
    let mut next_kill = Instant::now() + rng.ms(args.kill_min * 1000, args.kill_max * 1000);
    while Instant::now() < until {
        let now = Instant::now();
        let wake = next_kill.min(next_report).min(until);
        tokio::time::sleep(wake.saturating_duration_since(now)).await;
        if Instant::now() >= next_report {
            let msgs: Vec<String> = ROBOTS
                .iter()
                .map(|r| {
                    format!(
                        "{} {}/{}",
                        r.name,
                        fake.accepted(r.token).len(),
                        fake.requests(r.token).len()
                    )
                })
                .collect();
            println!(
                "[{:>4} s] crashes {crashes}, alerts acknowledged {}, messages accepted/requests: {}",
                started.elapsed().as_secs(),
                thousands(acked_total.load(Ordering::Relaxed)),
                msgs.join(", ")
            );
            next_report += Duration::from_secs(15);
        }
        if Instant::now() >= next_kill && Instant::now() < until {
            daemon.kill9();
            crashes += 1;
            // Sometimes straight back, sometimes after a pause, as a supervisor would.
            if rng.below(2) == 0 {
                tokio::time::sleep(rng.ms(0, 1500)).await;
            }
            daemon.spawn()?;
            match daemon.wait_healthy(&http).await {
                Ok(t) => restart_times.push(t),
                Err(e) => {
                    violations.push(format!("restart after crash {crashes}: {e}"));
                    break;
                }
            }
            next_kill = Instant::now() + rng.ms(args.kill_min * 1000, args.kill_max * 1000);
        }
    }

    let mut ledger = Ledger::default();
    for c in clients {
        let l = c.await.map_err(|e| format!("client task: {e}"))?;
        ledger.acked.extend(l.acked);
        ledger.unacked.extend(l.unacked);
        ledger.posts_ok += l.posts_ok;
        ledger.posts_failed += l.posts_failed;
        for (k, v) in l.statuses {
            *ledger.statuses.entry(k).or_default() += v;
        }
    }
    let injected = faults.await.map_err(|e| format!("fault task: {e}"))?;
    let posting = until.duration_since(started);
    fake.come_online().await;
    for r in &ROBOTS {
        fake.set_sticky(r.token, None);
    }

    // Drain: the daemon must deliver everything still queued (with whatever faults are queued).
    let drained = if daemon.child.is_some() {
        match drain(&http, &daemon, Duration::from_secs(args.drain)).await {
            Ok(_) => Some(until.elapsed()),
            Err(e) => {
                violations.push(format!("drain: {e}"));
                None
            }
        }
    } else {
        None
    };

    // Every message the robot accepted, by digest id.
    struct Seen {
        robot: &'static str,
        times: u64,
        footer: u64,
    }
    let mut seen: BTreeMap<u64, Seen> = BTreeMap::new();
    let mut per_robot = Vec::new();
    for r in &ROBOTS {
        let accepted = fake.accepted(r.token);
        let requests = fake.requests(r.token);
        for a in &accepted {
            let Some((id, n)) = sluice::digest::parse_footer(&a.text) else {
                violations.push(format!(
                    "{}: a delivered message has no footer: {:?}",
                    r.name,
                    a.text.lines().last()
                ));
                continue;
            };
            let s = seen.entry(id).or_insert(Seen {
                robot: r.name,
                times: 0,
                footer: n,
            });
            if s.robot != r.name || s.footer != n {
                violations.push(format!(
                    "digest #{id} reached {} ({} alerts) and {} ({n} alerts)",
                    s.robot, s.footer, r.name
                ));
            }
            s.times += 1;
        }
        let mut answers: BTreeMap<String, u64> = BTreeMap::new();
        for q in &requests {
            let k = match q.errcode {
                Some(code) => format!("errcode {code}"),
                None if q.http_status == 0 => "dropped".to_string(),
                None => format!("HTTP {}", q.http_status),
            };
            *answers.entry(k).or_default() += 1;
        }
        let busiest = fake.max_in_window(r.token, RATE_PERIOD);
        let throttled = fake.throttled(r.token);
        if busiest > RATE_LIMIT {
            violations.push(format!(
                "{}: {busiest} requests in one {RATE_PERIOD:?} window (limit {RATE_LIMIT})",
                r.name
            ));
        }
        if throttled > 0 {
            violations.push(format!(
                "{}: the robot's limiter answered 130101 {throttled} times",
                r.name
            ));
        }
        per_robot.push((
            r.name,
            accepted.len(),
            requests.len(),
            busiest,
            throttled,
            answers,
        ));
    }

    // Every alert each delivered digest covers, from the daemon's digest API.
    let mut delivered: HashMap<String, u64> = HashMap::new();
    let mut repeated_digests = 0u64;
    let mut repeated_ids = Vec::new();
    let mut largest_digest = 0u64;
    if daemon.child.is_some() {
        for (id, s) in &seen {
            repeated_digests += s.times - 1;
            if s.times > 1 {
                repeated_ids.push(format!(
                    "#{id} ({}, {} alerts) ×{}",
                    s.robot, s.footer, s.times
                ));
            }
            largest_digest = largest_digest.max(s.footer);
            let d = match get_json(&http, &daemon.url(&format!("/v1/digests/{id}"))).await {
                Ok((200, d)) => d,
                Ok((status, body)) => {
                    violations.push(format!("GET /v1/digests/{id}: HTTP {status} {body}"));
                    continue;
                }
                Err(e) => {
                    violations.push(e);
                    continue;
                }
            };
            let alerts = d["alerts"].as_array().cloned().unwrap_or_default();
            if d["robot"] != s.robot
                || d["state"] != "sent"
                || d["alerts_count"].as_u64() != Some(s.footer)
                || alerts.len() as u64 != s.footer
            {
                violations.push(format!(
                    "digest #{id}: the robot got {} with a footer of {} alerts, the daemon says robot {}, state {}, {} alerts, {} listed",
                    s.robot,
                    s.footer,
                    d["robot"],
                    d["state"],
                    d["alerts_count"],
                    alerts.len()
                ));
            }
            for a in &alerts {
                let title = a["title"].as_str().unwrap_or_default().to_string();
                let id = a["id"].as_str().unwrap_or_default();
                if let Some((robot, acked_id)) = ledger.acked.get(&title)
                    && (*robot != s.robot || acked_id != id)
                {
                    violations.push(format!(
                        "{title:?} was acknowledged as {acked_id} for {robot}, delivered as {id} by {}",
                        s.robot
                    ));
                } else if !ledger.acked.contains_key(&title) && !ledger.unacked.contains(&title) {
                    violations.push(format!(
                        "digest #{} delivered {title:?}, which no client posted",
                        d["id"]
                    ));
                }
                *delivered.entry(title).or_default() += s.times;
            }
        }
        match get_json(&http, &daemon.url("/v1/dead")).await {
            Ok((200, dead)) => {
                let n = dead["dead"].as_array().map_or(0, Vec::len);
                if n > 0 {
                    violations.push(format!(
                        "{n} dead-lettered digests, though no message-level fault was injected: {dead}"
                    ));
                }
            }
            other => violations.push(format!("GET /v1/dead: {other:?}")),
        }
    }

    let missing: Vec<(&String, &(&str, String))> = ledger
        .acked
        .iter()
        .filter(|(t, _)| !delivered.contains_key(*t))
        .collect();
    if !missing.is_empty() {
        let mut sample: Vec<String> = missing
            .iter()
            .take(10)
            .map(|(t, (r, id))| format!("{t:?} ({r}, {id})"))
            .collect();
        sample.sort();
        violations.push(format!(
            "{} acknowledged alerts were never delivered, e.g. {}",
            missing.len(),
            sample.join(", ")
        ));
    }
    let most_times = delivered.values().copied().max().unwrap_or(0);
    let over: Vec<(&String, &u64)> = delivered
        .iter()
        .filter(|(_, n)| **n > 1 + crashes)
        .collect();
    if !over.is_empty() {
        violations.push(format!(
            "{} alerts delivered more than 1 + {crashes} times, e.g. {:?}",
            over.len(),
            over.iter().take(5).collect::<Vec<_>>()
        ));
    }
    let bound = crashes * ROBOTS.len() as u64;
    if repeated_digests > bound {
        violations.push(format!(
            "{repeated_digests} digests repeated, more than one per robot per crash ({bound})"
        ));
    }
    let acked_delivered = ledger
        .acked
        .keys()
        .filter(|t| delivered.contains_key(*t))
        .count();
    let acked_twice = ledger
        .acked
        .keys()
        .filter(|t| delivered.get(*t).is_some_and(|n| *n > 1))
        .count();
    let unacked_delivered = ledger
        .unacked
        .iter()
        .filter(|t| delivered.contains_key(*t))
        .count();

    let exit = daemon.terminate(Duration::from_secs(10));
    if exit != Some(0) {
        violations.push(format!("the final SIGTERM ended sluice with {exit:?}"));
    }
    let log = std::fs::read_to_string(&daemon.log_path).unwrap_or_default();
    let panics = log.matches("panicked at").count();
    if panics > 0 {
        violations.push(format!("{panics} panics in {}", daemon.log_path.display()));
    }

    // The summary.
    restart_times.sort();
    let restart_max = restart_times.last().copied().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "\n== soak summary (seed {}) ==", args.seed);
    let _ = writeln!(
        out,
        "duration            {:.0} s posting, drained {} after; {} clients",
        posting.as_secs_f64(),
        drained.map_or("never".to_string(), |d| format!("{:.1} s", d.as_secs_f64())),
        args.clients
    );
    let _ = writeln!(
        out,
        "crashes             {crashes} × kill -9 (restart to healthy: max {:.2} s)",
        restart_max.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "POSTs               {} answered 202, {} not ({})",
        thousands(ledger.posts_ok),
        thousands(ledger.posts_failed),
        ledger
            .statuses
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "alerts acknowledged {} ({:.0}/s); delivered {} ({} missing); delivered twice {}; most deliveries of one alert {most_times} (allowed {})",
        thousands(ledger.acked.len() as u64),
        ledger.acked.len() as f64 / posting.as_secs_f64(),
        thousands(acked_delivered as u64),
        thousands(missing.len() as u64),
        thousands(acked_twice as u64),
        1 + crashes
    );
    let _ = writeln!(
        out,
        "unacknowledged      {} alerts posted without a 202, {} of them delivered anyway (not counted above)",
        thousands(ledger.unacked.len() as u64),
        thousands(unacked_delivered as u64)
    );
    let _ = writeln!(
        out,
        "digests             {} delivered, largest {} alerts; repeats {repeated_digests} (allowed {bound}){}{}",
        thousands(seen.len() as u64),
        thousands(largest_digest),
        if repeated_ids.is_empty() { "" } else { ": " },
        repeated_ids.join(", ")
    );
    for (name, accepted, requests, busiest, throttled, answers) in &per_robot {
        let _ = writeln!(
            out,
            "robot {name:<13} {} messages accepted of {} requests; busiest {RATE_PERIOD:?} window {busiest}/{RATE_LIMIT}; limiter throttles {throttled}; answers: {}",
            thousands(*accepted as u64),
            thousands(*requests as u64),
            answers
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(
        out,
        "faults injected     {}: errcode -1 {}, HTTP 5xx {}, slow {}, dropped {}, errcode 410100 {}, errcode 310000 {}, sticky 503 spells {}, offline {} ({:.1} s)",
        injected.total(),
        injected.busy,
        injected.http5xx,
        injected.slow,
        injected.dropped,
        injected.throttle_answer,
        injected.sign_refused,
        injected.sticky_bursts,
        injected.offline,
        injected.offline_ms as f64 / 1000.0
    );
    if violations.is_empty() {
        let _ = writeln!(out, "result              PASS");
        println!("{out}");
        drop(temp);
        Ok(true)
    } else {
        let _ = writeln!(
            out,
            "result              FAIL ({} violations)",
            violations.len()
        );
        for v in violations.iter().take(20) {
            let _ = writeln!(out, "  - {v}");
        }
        if violations.len() > 20 {
            let _ = writeln!(out, "  - … and {} more", violations.len() - 20);
        }
        // Keep the evidence.
        let kept = match temp {
            Some(t) => t.keep(),
            None => dir,
        };
        let _ = writeln!(out, "kept {} (config, data, daemon.log)", kept.display());
        println!("{out}");
        Ok(false)
    }
}
