//! Bursts, backlogs, restart and idle: the real `sluice serve` as a child process (data in a
//! temporary directory, everything on 127.0.0.1) against the test suite's fake DingTalk robot,
//! one subcommand per figure. Each prints one summary block.
//!
//! ```text
//! backlog burst   [--alerts 100000] [--batch 1000] [--clients 4] [--timeout 300]
//!     one signed robot, default timing, the robot's real limits (20 per rolling 60 s, 10 min
//!     lockout); posts the alerts as fast as it can and waits until the footers of the messages
//!     the robot accepted account for all of them.
//! backlog backlog [--sizes 10000,100000,1000000] [--cache-size 64MiB] [--no-reuse] [--batch 1000]
//!     the robot offline; per size a fresh daemon: RSS (VmRSS, VmHWM) once posting settled and
//!     again after the first digest was sealed and tried, disk (du of the data dir and
//!     size_on_disk) against the JSON posted. Then, for the last size, space reuse: the robot
//!     comes back, the backlog drains, retention (1 s) prunes it, the robot goes offline again
//!     and the same number of alerts is posted once more.
//! backlog restart [--alerts 1000000] [--stop term|kill|unsealed|all]
//!     the robot offline, the alerts posted, the first digest sealed and tried; then SIGTERM
//!     (term) or kill -9 (kill), the robot back, the daemon started again: time from spawning the
//!     process to /healthz answering and to the first request reaching the robot. `unsealed`:
//!     SIGTERM before the window closes, start once it would have closed, so the first request
//!     waits for a seal of 100 000 alerts read back from the store.
//! backlog idle    [--robots 10] [--seconds 60] [--settle 5]
//!     nothing posted; CPU time (utime + stime) over the interval, as % of one core.
//!
//! common flags: --sluice PATH (default: target/release/sluice beside this example)
//!               --daemon-env NAME=VALUE (more environment for the daemon, e.g. MALLOC_ARENA_MAX=2)
//!               --keep (keep the temporary directory: config, data, daemon.log)
//!               --strict (exit 1 when a target is not met)
//! ```
//!
//! Exit status: 0 measured (targets met or not, as printed), 1 the measurement failed (alerts
//! not accounted for in time, the daemon died, a POST failed or was still refused at the
//! deadline) or, with `--strict`, a target was not met; 2 usage or set-up error.

#[allow(dead_code)]
#[path = "../tests/support/fake_robot.rs"]
mod fake_robot;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fake_robot::{FakeRobot, Limits};
use serde_json::Value;

const USAGE: &str = "usage: backlog <burst|backlog|restart|idle> [flags]
  burst    [--alerts 100000] [--batch 1000] [--clients 4] [--timeout SECS (300)]
  backlog  [--sizes 10000,100000,1000000] [--cache-size SIZE] [--no-reuse] [--batch 1000] [--clients 4]
  restart  [--alerts 1000000] [--stop term|kill|unsealed|all (all)] [--batch 1000] [--clients 4]
  idle     [--robots 10] [--seconds 60] [--settle 5]
  common:  [--sluice PATH] [--daemon-env NAME=VALUE]... [--keep] [--strict]";

/// The one DingTalk robot of `burst`, `backlog` and `restart`.
const ROBOT: &str = "dq";
const TOKEN: &str = "bench-dq-token";
const SECRET: &str = "SECbench-dq-secret";

/// How long a daemon may take to answer `/healthz` after it was spawned.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Quiet time after the last POST before memory and disk are read.
const SETTLE: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGTERM once the first digest was sealed and its send failed: the digest is resumed.
    Term,
    /// kill -9 at the same point: the write-ahead log is replayed too.
    Kill,
    /// SIGTERM before the window closed, started again after it would have: the first request
    /// needs a seal of 100 000 alerts read back from the store.
    Unsealed,
}

impl Stop {
    fn name(self) -> &'static str {
        match self {
            Stop::Term => "SIGTERM",
            Stop::Kill => "kill -9",
            Stop::Unsealed => "SIGTERM unsealed",
        }
    }
}

enum Cmd {
    Burst {
        alerts: u64,
        timeout: Duration,
    },
    Backlog {
        sizes: Vec<u64>,
        cache_size: Option<String>,
        reuse: bool,
    },
    Restart {
        alerts: u64,
        stops: Vec<Stop>,
    },
    Idle {
        robots: usize,
        seconds: u64,
        settle: u64,
    },
}

struct Common {
    sluice: PathBuf,
    /// Extra environment for the daemon (`--daemon-env K=V`), e.g. allocator settings.
    env: Vec<(String, String)>,
    keep: bool,
    strict: bool,
    batch: u64,
    clients: u64,
}

fn parse_args() -> Result<(Cmd, Common), String> {
    let default_bin = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("sluice")))
        .unwrap_or_else(|| PathBuf::from("target/release/sluice"));
    let mut args = std::env::args().skip(1);
    let sub = args.next().ok_or(USAGE)?;
    let mut c = Common {
        sluice: default_bin,
        env: Vec::new(),
        keep: false,
        strict: false,
        batch: 1000,
        clients: 4,
    };
    let mut alerts: Option<u64> = None;
    let mut timeout = 300u64;
    let mut sizes = vec![10_000, 100_000, 1_000_000];
    let mut cache_size = None;
    let mut reuse = true;
    let mut stops = vec![Stop::Term, Stop::Kill, Stop::Unsealed];
    let (mut robots, mut seconds, mut settle) = (10usize, 60u64, 5u64);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--sluice" => c.sluice = value()?.into(),
            "--daemon-env" => {
                let kv = value()?;
                let (k, v) = kv
                    .split_once('=')
                    .ok_or(format!("--daemon-env {kv}: expected NAME=VALUE"))?;
                c.env.push((k.to_string(), v.to_string()));
            }
            "--keep" => c.keep = true,
            "--strict" => c.strict = true,
            "--batch" => c.batch = number(value()?)?,
            "--clients" => c.clients = number(value()?)?,
            "--alerts" => alerts = Some(number(value()?)?),
            "--timeout" => timeout = number(value()?)?,
            "--sizes" => {
                sizes = value()?
                    .split(',')
                    .map(|s| s.trim().replace('_', "").parse::<u64>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("--sizes: {e}"))?
            }
            "--cache-size" => cache_size = Some(value()?),
            "--no-reuse" => reuse = false,
            "--stop" => {
                stops = match value()?.as_str() {
                    "term" => vec![Stop::Term],
                    "kill" => vec![Stop::Kill],
                    "unsealed" => vec![Stop::Unsealed],
                    "all" => vec![Stop::Term, Stop::Kill, Stop::Unsealed],
                    other => {
                        return Err(format!(
                            "--stop: {other}? expected term, kill, unsealed or all"
                        ));
                    }
                }
            }
            "--robots" => robots = number(value()?)? as usize,
            "--seconds" => seconds = number(value()?)?,
            "--settle" => settle = number(value()?)?,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    if c.batch == 0 || c.clients == 0 {
        return Err("--batch and --clients must be at least 1".into());
    }
    let cmd = match sub.as_str() {
        "burst" => Cmd::Burst {
            alerts: alerts.unwrap_or(100_000),
            timeout: Duration::from_secs(timeout),
        },
        "backlog" => {
            if sizes.is_empty() || sizes.contains(&0) {
                return Err("--sizes: give positive numbers".into());
            }
            Cmd::Backlog {
                sizes,
                cache_size,
                reuse,
            }
        }
        "restart" => Cmd::Restart {
            alerts: alerts.unwrap_or(1_000_000),
            stops,
        },
        "idle" => {
            if robots == 0 || seconds == 0 {
                return Err("--robots and --seconds must be at least 1".into());
            }
            Cmd::Idle {
                robots,
                seconds,
                settle,
            }
        }
        "-h" | "--help" => return Err(USAGE.into()),
        other => return Err(format!("unknown subcommand {other}\n{USAGE}")),
    };
    if matches!(
        &cmd,
        Cmd::Burst { alerts: 0, .. } | Cmd::Restart { alerts: 0, .. }
    ) {
        return Err("--alerts must be at least 1".into());
    }
    Ok((cmd, c))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let (cmd, common) = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("backlog: {e}");
            return ExitCode::from(2);
        }
    };
    if !common.sluice.is_file() {
        eprintln!(
            "backlog: no sluice binary at {} (build it: cargo build --release --examples, or pass --sluice)",
            common.sluice.display()
        );
        return ExitCode::from(2);
    }
    let result = match cmd {
        Cmd::Burst { alerts, timeout } => burst(&common, alerts, timeout).await,
        Cmd::Backlog {
            sizes,
            cache_size,
            reuse,
        } => backlog(&common, &sizes, cache_size.as_deref(), reuse).await,
        Cmd::Restart { alerts, stops } => restart(&common, alerts, &stops).await,
        Cmd::Idle {
            robots,
            seconds,
            settle,
        } => idle(&common, robots, seconds, settle).await,
    };
    match result {
        Ok(Report { text, targets_met }) => {
            println!("{text}");
            if targets_met || !common.strict {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("backlog: FAILED: {e}");
            ExitCode::from(1)
        }
    }
}

/// A subcommand's summary block, and whether every target it checks was met.
struct Report {
    text: String,
    targets_met: bool,
}

// ---- the daemon --------------------------------------------------------------------------

/// Where a run keeps its files: a temporary directory, removed at the end unless `--keep`.
struct Work {
    dir: PathBuf,
    temp: Option<tempfile::TempDir>,
}

impl Work {
    fn new(prefix: &str) -> Result<Work, String> {
        let t = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        Ok(Work {
            dir: t.path().to_path_buf(),
            temp: Some(t),
        })
    }

    /// Keeps the directory (and says where) with `--keep`, or when `failed`.
    fn finish(mut self, keep: bool, failed: bool) -> Option<PathBuf> {
        if keep || failed {
            self.temp.take().map(tempfile::TempDir::keep)
        } else {
            None
        }
    }
}

/// The real binary as a child process on one config and data directory.
struct Daemon {
    bin: PathBuf,
    env: Vec<(String, String)>,
    config_path: PathBuf,
    log_path: PathBuf,
    data_dir: PathBuf,
    addr: SocketAddr,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Daemon {
    /// Writes `config` (with `{listen}` and `{data_dir}` filled in) to `dir/sluice.toml`.
    fn new(c: &Common, dir: &Path, config: &str) -> Result<Daemon, String> {
        let addr = free_port()?;
        let data_dir = dir.join("data");
        let config_path = dir.join("sluice.toml");
        let text = config
            .replace("{listen}", &addr.to_string())
            .replace("{data_dir}", &data_dir.display().to_string());
        std::fs::write(&config_path, text)
            .map_err(|e| format!("{}: {e}", config_path.display()))?;
        Ok(Daemon {
            bin: c.sluice.clone(),
            env: c.env.clone(),
            config_path,
            log_path: dir.join("daemon.log"),
            data_dir,
            addr,
            child: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .map_err(|e| format!("HTTP client: {e}"))?,
        })
    }

    /// Starts the process; returns the moment just before the spawn.
    fn spawn(&mut self) -> Result<Instant, String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| format!("{}: {e}", self.log_path.display()))?;
        let at = Instant::now();
        let child = Command::new(&self.bin)
            .args(["serve", "-c"])
            .arg(&self.config_path)
            .env("RUST_LOG", "sluice=info,warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        Ok(at)
    }

    fn pid(&self) -> Result<u32, String> {
        self.child
            .as_ref()
            .map(Child::id)
            .ok_or_else(|| "sluice is not running".to_string())
    }

    /// Polls `/healthz` every 5 ms; the time since `since` when it first answered 200.
    async fn wait_healthy(&mut self, since: Instant) -> Result<Duration, String> {
        loop {
            if let Ok(r) = self.http.get(self.url("/healthz")).send().await
                && r.status().is_success()
            {
                return Ok(since.elapsed());
            }
            self.check_alive()?;
            if since.elapsed() > START_TIMEOUT {
                return Err(format!("sluice not healthy within {START_TIMEOUT:?}"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// An error if the process has exited by itself.
    fn check_alive(&mut self) -> Result<(), String> {
        if let Some(c) = self.child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            self.child = None;
            return Err(format!(
                "sluice exited with {status}; its log: {}",
                self.log_path.display()
            ));
        }
        Ok(())
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then up to `timeout` for the exit: the exit code (`None` if it had to be killed)
    /// and how long it took.
    fn terminate(&mut self, timeout: Duration) -> (Option<i32>, Duration) {
        let Some(mut c) = self.child.take() else {
            return (None, Duration::ZERO);
        };
        let started = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return (status.code(), started.elapsed());
            }
            if started.elapsed() > timeout {
                let _ = c.kill();
                let _ = c.wait();
                return (None, started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        let url = self.url(path);
        let r = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if status != 200 {
            return Err(format!("GET {url}: HTTP {status} {v}"));
        }
        Ok(v)
    }

    /// `GET /v1/status`: the whole answer and the entry of `robot`.
    async fn status(&self, robot: &str) -> Result<(Value, Value), String> {
        let s = self.get("/v1/status").await?;
        let r = s["robots"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["robot"] == robot).cloned())
            .ok_or_else(|| format!("no robot {robot} in status: {s}"))?;
        Ok((s, r))
    }

    /// Polls the robot's status every 100 ms until `f` holds, for at most `limit`.
    async fn wait_robot(
        &mut self,
        robot: &str,
        limit: Duration,
        what: &str,
        f: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        let started = Instant::now();
        loop {
            let (_, r) = self.status(robot).await?;
            if f(&r) {
                return Ok(r);
            }
            self.check_alive()?;
            if started.elapsed() > limit {
                return Err(format!("{what}: not within {limit:?}; robot status: {r}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn free_port() -> Result<SocketAddr, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    l.local_addr().map_err(|e| format!("local addr: {e}"))
}

/// A config with the one signed DingTalk robot pointing at `fake`; `server` and `defaults` are
/// extra lines for those tables (empty: sluice's defaults).
fn robot_config(fake: &FakeRobot, server: &str, defaults: &str) -> String {
    format!(
        "# written by examples/backlog.rs\n[server]\nlisten = \"{{listen}}\"\ndata_dir = \"{{data_dir}}\"\n{server}\n\
         [defaults]\n{defaults}\n\
         [robots.{ROBOT}]\nwebhook = \"{}\"\nsecret = \"{SECRET}\"\n",
        fake.webhook(TOKEN)
    )
}

/// The fake robot with DingTalk's real limits and the one robot (signed) registered.
async fn start_fake() -> FakeRobot {
    let fake = FakeRobot::start(Limits::default()).await;
    fake.add_robot(TOKEN, Some(SECRET), &[]);
    fake
}

// ---- posting -----------------------------------------------------------------------------

/// What a posting run did.
struct Posted {
    alerts: u64,
    json_bytes: u64,
    requests: u64,
    /// POSTs answered something other than 202 (retried), by answer.
    refused: BTreeMap<String, u64>,
    first_post: Instant,
    elapsed: Duration,
}

/// One alert as a batch job's quality check would post it: about 110 bytes of JSON. Titles are
/// unique (so nothing merges in a digest), severities and jobs vary.
fn alert_json(out: &mut String, robot: &str, i: u64) {
    const TABLES: [&str; 6] = [
        "dw.orders_di",
        "dim.users_df",
        "ods.tracking_events_hi",
        "dw.shipments_di",
        "dw.settlement_di",
        "dw.tickets_di",
    ];
    const CHECKS: [&str; 5] = [
        "null user_id above 1%",
        "duplicate key",
        "row count below the 7-day median",
        "partition late",
        "schema changed",
    ];
    const SEVERITIES: [&str; 8] = [
        "warning", "error", "warning", "critical", "warning", "error", "info", "warning",
    ];
    let _ = write!(
        out,
        r#"{{"robot":"{robot}","title":"{}: {} #{i}","severity":"{}","labels":{{"job":"dq_{}"}}}}"#,
        TABLES[(i % 6) as usize],
        CHECKS[(i / 6 % 5) as usize],
        SEVERITIES[(i % 8) as usize],
        i % 50
    );
}

/// Posts alerts `first..first + n` for `robot`, `batch` per POST, from `clients` concurrent
/// clients. A POST answered other than 202 is retried after 200 ms (counted in `refused`); a
/// transport error or `deadline` fails the run.
async fn post_alerts(
    d: &Daemon,
    robot: &str,
    first: u64,
    n: u64,
    c: &Common,
    deadline: Duration,
) -> Result<Posted, String> {
    let url = d.url("/v1/alerts");
    let next = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let give_up = Instant::now() + deadline;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..c.clients {
        let (http, url, robot) = (d.http.clone(), url.clone(), robot.to_string());
        let (next, bytes, requests, batch) =
            (next.clone(), bytes.clone(), requests.clone(), c.batch);
        tasks.push(tokio::spawn(async move {
            let mut refused: BTreeMap<String, u64> = BTreeMap::new();
            let mut body = String::new();
            loop {
                let from = next.fetch_add(batch, Ordering::Relaxed);
                if from >= n {
                    return Ok(refused);
                }
                let to = (from + batch).min(n);
                body.clear();
                body.push('[');
                for i in first + from..first + to {
                    if i > first + from {
                        body.push(',');
                    }
                    alert_json(&mut body, &robot, i);
                }
                body.push(']');
                loop {
                    if Instant::now() > give_up {
                        return Err(format!(
                            "posting not done within {deadline:?}; refused meanwhile: {refused:?}"
                        ));
                    }
                    let r = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .map_err(|e| format!("POST {url}: {e}"))?;
                    let status = r.status().as_u16();
                    requests.fetch_add(1, Ordering::Relaxed);
                    if status == 202 {
                        bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                        break;
                    }
                    let text = r.text().await.unwrap_or_default();
                    *refused
                        .entry(format!(
                            "HTTP {status} {}",
                            text.chars().take(120).collect::<String>()
                        ))
                        .or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }));
    }
    let mut refused = BTreeMap::new();
    for t in tasks {
        let r: Result<BTreeMap<String, u64>, String> =
            t.await.map_err(|e| format!("client task: {e}"))?;
        for (k, v) in r? {
            *refused.entry(k).or_default() += v;
        }
    }
    Ok(Posted {
        alerts: n,
        json_bytes: bytes.load(Ordering::Relaxed),
        requests: requests.load(Ordering::Relaxed),
        refused,
        first_post: started,
        elapsed: started.elapsed(),
    })
}

impl Posted {
    fn line(&self) -> String {
        let mut s = format!(
            "{} alerts in {} POSTs ({} of JSON, {:.0} bytes per alert) in {:.2} s = {} alerts/s",
            thousands(self.alerts),
            thousands(self.requests),
            mib(self.json_bytes),
            self.json_bytes as f64 / self.alerts as f64,
            self.elapsed.as_secs_f64(),
            thousands((self.alerts as f64 / self.elapsed.as_secs_f64()) as u64)
        );
        if !self.refused.is_empty() {
            let _ = write!(s, "; refused and retried: {:?}", self.refused);
        }
        s
    }
}

// ---- what the kernel says ------------------------------------------------------------------

/// `(VmRSS, VmHWM)` of a process, in bytes.
fn memory(pid: u32) -> Result<(u64, u64), String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let field = |name: &str| -> Result<u64, String> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .ok_or_else(|| format!("no {name} in {path}"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// utime + stime of a process (all its threads, also those that ended), in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // The command name may hold spaces; the fields after it are plain.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| format!("{path}: unexpected format"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    let num = |i: usize| -> Result<u64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or_else(|| format!("{path}: no field {}", i + 3))
    };
    Ok(num(11)? + num(12)?)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux if that fails).
fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Each live thread of a process: its id, name and context switches so far.
fn thread_switches(pid: u32) -> BTreeMap<u64, (String, u64)> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        let text = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let mut name = String::new();
        let mut switches = 0;
        for l in text.lines() {
            if let Some(v) = l.strip_prefix("Name:") {
                name = v.trim().to_string();
            } else if let Some(v) = l
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                switches += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
        out.insert(tid, (name, switches));
    }
    out
}

/// Bytes under a directory: allocated (what `du -s --block-size=1` prints), apparent (`du -s
/// --apparent-size`), and allocated in the write-ahead log's files (`wal-*.log`).
struct Usage {
    allocated: u64,
    apparent: u64,
    wal: u64,
}

fn disk_usage(dir: &Path) -> Usage {
    use std::os::unix::fs::MetadataExt;
    let mut u = Usage {
        allocated: 0,
        apparent: 0,
        wal: 0,
    };
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                u.allocated += m.blocks() * 512;
                u.apparent += m.len();
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with("wal-") && name.ends_with(".log") {
                    u.wal += m.blocks() * 512;
                }
            }
        }
    }
    u
}

/// The daemon's memory and store at one moment.
struct Sample {
    rss: u64,
    hwm: u64,
    du: u64,
    du_apparent: u64,
    wal: u64,
    size_on_disk: u64,
    pending: u64,
    outbox: u64,
}

async fn sample(d: &Daemon) -> Result<Sample, String> {
    let (s, r) = d.status(ROBOT).await?;
    let (rss, hwm) = memory(d.pid()?)?;
    let u = disk_usage(&d.data_dir);
    Ok(Sample {
        rss,
        hwm,
        du: u.allocated,
        du_apparent: u.apparent,
        wal: u.wal,
        size_on_disk: s["store"]["size_on_disk"].as_u64().unwrap_or(0),
        pending: r["pending"].as_u64().unwrap_or(0),
        outbox: r["outbox"].as_u64().unwrap_or(0),
    })
}

// ---- formatting ----------------------------------------------------------------------------

/// `n` with spaces between thousands (the digest's grouping, read by people here too).
fn thousands(n: u64) -> String {
    sluice::digest::thousands(n).replace(',', " ")
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// `; daemon env K=V …` when `--daemon-env` was given, for the setup lines.
fn env_note(c: &Common) -> String {
    if c.env.is_empty() {
        return String::new();
    }
    let kv: Vec<String> = c.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("; daemon env {}", kv.join(" "))
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// Alerts accounted for by the footers of the messages the fake accepted for [`TOKEN`].
fn accounted(fake: &FakeRobot) -> (u64, usize) {
    let accepted = fake.accepted(TOKEN);
    let total = accepted
        .iter()
        .filter_map(|a| sluice::digest::parse_footer(&a.text))
        .map(|(_, n)| n)
        .sum();
    (total, accepted.len())
}

// ---- burst ---------------------------------------------------------------------------------

async fn burst(c: &Common, alerts: u64, timeout: Duration) -> Result<Report, String> {
    let work = Work::new("sluice-burst-")?;
    let fake = start_fake().await;
    // Default timing throughout (window 30 s, 20 per 60 s); 1 000 alerts per POST is within the
    // default max_body (1 MiB) and max_alerts_per_request (10 000).
    let mut d = Daemon::new(c, &work.dir, &robot_config(&fake, "", ""))?;
    let result = burst_run(c, &mut d, &fake, alerts, timeout).await;
    let (exit, _) = d.terminate(Duration::from_secs(10));
    // What the group saw, for whoever keeps the files.
    let messages: Vec<String> = fake.accepted(TOKEN).into_iter().map(|a| a.text).collect();
    let _ = std::fs::write(work.dir.join("messages.md"), messages.join("\n\n---\n\n"));
    let kept = work.finish(c.keep, result.is_err());
    let (mut text, targets_met) = result.map_err(|e| match &kept {
        Some(k) => format!("{e} (files kept in {})", k.display()),
        None => e,
    })?;
    let _ = writeln!(text, "stop                SIGTERM → exit {exit:?}");
    if let Some(k) = kept {
        let _ = writeln!(text, "files               {}", k.display());
    }
    Ok(Report { text, targets_met })
}

async fn burst_run(
    c: &Common,
    d: &mut Daemon,
    fake: &FakeRobot,
    alerts: u64,
    timeout: Duration,
) -> Result<(String, bool), String> {
    let spawned = d.spawn()?;
    d.wait_healthy(spawned).await?;
    let (_, r) = d.status(ROBOT).await?;
    let window = r["window"].as_str().unwrap_or("?").to_string();
    let posted = post_alerts(d, ROBOT, 0, alerts, c, timeout).await?;
    let t0 = posted.first_post;
    // Every alert accounted for by the footers of accepted messages, or give up.
    let all_in = loop {
        let (n, _) = accounted(fake);
        if n >= alerts {
            break t0.elapsed();
        }
        d.check_alive()?;
        if t0.elapsed() > timeout {
            let (_, r) = d.status(ROBOT).await.unwrap_or_default();
            return Err(format!(
                "burst: only {n} of {alerts} alerts accounted for by the robot's messages after {timeout:?}; \
                 requests {}, throttled {}; robot status {r}",
                fake.requests(TOKEN).len(),
                fake.throttled(TOKEN)
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (n, messages) = accounted(fake);
    let requests = fake.requests(TOKEN).len();
    let throttled = fake.throttled(TOKEN);
    let busiest = fake.max_in_window(TOKEN, Duration::from_secs(60));
    let biggest = fake
        .accepted(TOKEN)
        .iter()
        .map(|a| serde_json::to_vec(&a.body).map_or(0, |b| b.len()))
        .max()
        .unwrap_or(0);
    let first_at = fake
        .accepted(TOKEN)
        .first()
        .map(|a| a.at.saturating_duration_since(t0));
    let naive_minutes = alerts.div_ceil(20);
    let ok = all_in <= Duration::from_secs(60) && messages <= 20 && throttled == 0 && n == alerts;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== burst: {} alerts to one DingTalk robot ==",
        thousands(alerts)
    );
    let _ = writeln!(
        out,
        "setup               sluice default timing (window {window}, 20 per 1m); fake robot 20 per rolling 60 s, 10 min lockout; {} clients × {} alerts per POST{}",
        c.clients,
        c.batch,
        env_note(c)
    );
    let _ = writeln!(out, "posted              {}", posted.line());
    let _ = writeln!(
        out,
        "all accounted for   {:.1} s after the first POST ({} alerts by the footers; first message at {})",
        all_in.as_secs_f64(),
        thousands(n),
        first_at.map_or("-".into(), |t| format!("{:.1} s", t.as_secs_f64()))
    );
    let _ = writeln!(
        out,
        "messages            {messages} accepted of {requests} requests; largest body {biggest} bytes; busiest 60 s window {busiest}/20"
    );
    let _ = writeln!(out, "throttles (130101)  {throttled}");
    let _ = writeln!(
        out,
        "naive forwarder     one message per alert at 20/min: {} messages, {} min = {} h {} min (and the 21st message inside a minute locks the robot for 10 min)",
        thousands(alerts),
        thousands(naive_minutes),
        naive_minutes / 60,
        naive_minutes % 60
    );
    let _ = writeln!(
        out,
        "targets             all within 60 s, ≤ 20 messages, 0 throttles: {}",
        met(ok)
    );
    Ok((out, ok))
}

// ---- backlog -------------------------------------------------------------------------------

/// The backlog runs' config: the robot's defaults but retention 1 s (so delivered digests are
/// pruned at once in the reuse phase) and retries capped at 5 s (so the robot's return is noticed
/// quickly; each failed attempt uses a send permit, and 5 s leaves 8 of 20 a minute free), and
/// `max_pending` above the default million, so that `--sizes` may go beyond it.
fn backlog_config(fake: &FakeRobot, cache_size: Option<&str>) -> String {
    let server = cache_size.map_or(String::new(), |s| format!("cache_size = \"{s}\"\n"));
    robot_config(
        fake,
        &server,
        "retention = \"1s\"\nretry_max_backoff = \"5s\"\nmax_pending = 100000000\n",
    )
}

struct BacklogRow {
    n: u64,
    posted: Posted,
    settled: Sample,
    sealed: Sample,
    start_rss: u64,
}

async fn backlog(
    c: &Common,
    sizes: &[u64],
    cache_size: Option<&str>,
    reuse: bool,
) -> Result<Report, String> {
    let mut rows = Vec::new();
    let mut reuse_text = String::new();
    let mut reuse_ok = true;
    for (i, &n) in sizes.iter().enumerate() {
        let last = i + 1 == sizes.len();
        let work = Work::new("sluice-backlog-")?;
        let fake = start_fake().await;
        fake.go_offline().await;
        let mut d = Daemon::new(c, &work.dir, &backlog_config(&fake, cache_size))?;
        let result = async {
            let row = backlog_run(c, &mut d, n).await?;
            if reuse && last {
                let (text, ok) = reuse_run(c, &mut d, &fake, &row).await?;
                reuse_text = text;
                reuse_ok = ok;
            }
            Ok::<_, String>(row)
        }
        .await;
        let (exit, took) = d.terminate(Duration::from_secs(15));
        let kept = work.finish(c.keep, result.is_err());
        let row = result.map_err(|e| match &kept {
            Some(k) => format!("{e} (files kept in {})", k.display()),
            None => e,
        })?;
        eprintln!(
            "backlog: {} alerts done (SIGTERM → exit {exit:?} in {:.2} s){}",
            thousands(n),
            took.as_secs_f64(),
            kept.map_or(String::new(), |k| format!(", files in {}", k.display()))
        );
        rows.push(row);
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "== backlog: robot unreachable, alerts pile up (cache_size {}) ==",
        cache_size.unwrap_or("64MiB, the default")
    );
    let _ = writeln!(
        out,
        "setup               one DingTalk robot, fake robot offline (connection refused); window 30s, retry_max_backoff 5s, retention 1s; {} clients × {} alerts per POST{}",
        c.clients,
        c.batch,
        env_note(c)
    );
    let _ = writeln!(
        out,
        "{:>9}  {:>7} {:>8}  {:>7} {:>7} {:>7} {:>7}  {:>7} {:>7} {:>7}  {:>5} {:>5} {:>5}",
        "alerts",
        "JSON",
        "alerts/s",
        "RSS 0",
        "RSS set",
        "RSS seal",
        "HWM",
        "du",
        "WAL",
        "sled",
        "du/J",
        "-WAL",
        "sled"
    );
    let (mut rss_ok, mut rss_note) = (true, "not measured (no run of 1 000 000)".to_string());
    let (mut du_ok, mut du_notes) = (true, Vec::new());
    for r in &rows {
        let j = r.posted.json_bytes as f64;
        let m = |b: u64| format!("{:.1}M", b as f64 / 1_048_576.0);
        let _ = writeln!(
            out,
            "{:>9}  {:>7} {:>8}  {:>7} {:>7} {:>7} {:>7}  {:>7} {:>7} {:>7}  {:>5.2} {:>5.2} {:>5.2}",
            thousands(r.n),
            m(r.posted.json_bytes),
            thousands((r.n as f64 / r.posted.elapsed.as_secs_f64()) as u64),
            m(r.start_rss),
            m(r.settled.rss),
            m(r.sealed.rss),
            m(r.sealed.hwm),
            m(r.settled.du),
            m(r.settled.wal),
            m(r.settled.size_on_disk),
            r.settled.du as f64 / j,
            (r.settled.du - r.settled.wal) as f64 / j,
            r.settled.size_on_disk as f64 / j
        );
        if r.n == 1_000_000 {
            rss_ok = r.sealed.rss.max(r.settled.rss) <= 100 << 20;
            rss_note = format!(
                "{} ({} settled, {} after the seal)",
                met(rss_ok),
                mib(r.settled.rss),
                mib(r.sealed.rss)
            );
        }
        let du_met = r.settled.du as f64 <= 2.0 * j;
        du_ok &= du_met;
        du_notes.push(format!(
            "{} at {} ({:.2}×)",
            met(du_met),
            thousands(r.n),
            r.settled.du as f64 / j
        ));
        if !r.posted.refused.is_empty() {
            let _ = writeln!(
                out,
                "  {}: POSTs refused and retried: {:?}",
                thousands(r.n),
                r.posted.refused
            );
        }
    }
    let _ = writeln!(
        out,
        "(MiB; RSS 0 = healthy, nothing posted; set = {} s after the last 202; seal = after the first digest (≤ 100 000 alerts) was sealed and its send failed; HWM = VmHWM then; du = the data dir when settled, WAL = its wal-*.log files, sled = size_on_disk from /v1/status; ratios to the JSON posted: du, du without the WAL, sled)",
        SETTLE.as_secs()
    );
    out.push_str(&reuse_text);
    let _ = writeln!(
        out,
        "targets             RSS ≤ 100 MiB at 1 000 000: {rss_note}; du ≤ 2 × JSON: {}{}",
        du_notes.join(", "),
        if reuse_text.is_empty() {
            String::new()
        } else {
            format!(
                "; second backlog ≤ 1.25 × the first on disk: {}",
                met(reuse_ok)
            )
        }
    );
    Ok(Report {
        text: out,
        targets_met: rss_ok && du_ok && reuse_ok,
    })
}

async fn backlog_run(c: &Common, d: &mut Daemon, n: u64) -> Result<BacklogRow, String> {
    let spawned = d.spawn()?;
    d.wait_healthy(spawned).await?;
    let start_rss = memory(d.pid()?)?.0;
    let posted = post_alerts(d, ROBOT, 0, n, c, Duration::from_secs(300)).await?;
    tokio::time::sleep(SETTLE).await;
    let settled = sample(d).await?;
    // The window (30 s from the first alert) closes, a digest is sealed, its send fails.
    d.wait_robot(ROBOT, Duration::from_secs(90), "first digest sealed", |r| {
        r["outbox"].as_u64().unwrap_or(0) >= 1 && r["last_error"].is_string()
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sealed = sample(d).await?;
    Ok(BacklogRow {
        n,
        posted,
        settled,
        sealed,
        start_rss,
    })
}

/// The robot comes back; the backlog drains and is pruned; the robot goes away again and the
/// same number of alerts is posted once more. Disk at each step.
async fn reuse_run(
    c: &Common,
    d: &mut Daemon,
    fake: &FakeRobot,
    first: &BacklogRow,
) -> Result<(String, bool), String> {
    let n = first.n;
    let back = Instant::now();
    fake.come_online().await;
    let drained = d
        .wait_robot(ROBOT, Duration::from_secs(240), "drain", |r| {
            r["pending"] == 0 && r["outbox"] == 0
        })
        .await?;
    let drain_time = back.elapsed();
    let (delivered, messages) = accounted(fake);
    if delivered != n {
        return Err(format!(
            "reuse: the robot's messages account for {delivered} alerts, {n} were posted; status {drained}"
        ));
    }
    // Pruned: no delivered digest left to list.
    let started = Instant::now();
    loop {
        let list = d.get(&format!("/v1/digests?robot={ROBOT}")).await?;
        if list["digests"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("reuse: digests not pruned within 60 s: {list}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let prune_time = back.elapsed();
    tokio::time::sleep(SETTLE).await;
    let pruned = sample(d).await?;
    fake.go_offline().await;
    let second = post_alerts(d, ROBOT, n, n, c, Duration::from_secs(300)).await?;
    tokio::time::sleep(SETTLE).await;
    let again = sample(d).await?;
    let ok = again.du as f64 <= 1.25 * first.settled.du as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "space reuse ({} alerts): robot back → drained in {:.1} s ({messages} messages, {} alerts by the footers), pruned by {:.1} s",
        thousands(n),
        drain_time.as_secs_f64(),
        thousands(delivered),
        prune_time.as_secs_f64()
    );
    for (what, s) in [
        ("after the first backlog", &first.settled),
        ("after drain + prune", &pruned),
        ("after the second backlog", &again),
    ] {
        let _ = writeln!(
            out,
            "  {what:<26} du {:>10} (apparent {:>10}, WAL {:>9})  sled size_on_disk {:>10}  pending {:>9}  outbox {}  RSS {:>9} (HWM {})",
            mib(s.du),
            mib(s.du_apparent),
            mib(s.wal),
            mib(s.size_on_disk),
            thousands(s.pending),
            s.outbox,
            mib(s.rss),
            mib(s.hwm)
        );
    }
    let _ = writeln!(out, "  second posting: {}", second.line());
    Ok((out, ok))
}

// ---- restart -------------------------------------------------------------------------------

async fn restart(c: &Common, alerts: u64, stops: &[Stop]) -> Result<Report, String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== restart with {} alerts pending ==",
        thousands(alerts)
    );
    let _ = writeln!(
        out,
        "setup               one DingTalk robot offline while {} alerts are posted ({} × {} per POST); stopped once the first digest was sealed and its send failed (unsealed: before the window closed, started after it would have); robot back; started again{}",
        thousands(alerts),
        c.clients,
        c.batch,
        env_note(c)
    );
    let mut ok = true;
    for &stop in stops {
        let work = Work::new("sluice-restart-")?;
        let fake = start_fake().await;
        fake.go_offline().await;
        let mut d = Daemon::new(c, &work.dir, &backlog_config(&fake, None))?;
        let result = restart_run(c, &mut d, &fake, alerts, stop).await;
        d.terminate(Duration::from_secs(15));
        let kept = work.finish(c.keep, result.is_err());
        let (line, first_request) = result.map_err(|e| match &kept {
            Some(k) => format!("{e} (files kept in {})", k.display()),
            None => e,
        })?;
        ok &= first_request <= Duration::from_secs(2);
        out.push_str(&line);
    }
    let _ = writeln!(
        out,
        "targets             first request at the robot ≤ 2 s after spawning: {}",
        met(ok)
    );
    Ok(Report {
        text: out,
        targets_met: ok,
    })
}

async fn restart_run(
    c: &Common,
    d: &mut Daemon,
    fake: &FakeRobot,
    alerts: u64,
    stop: Stop,
) -> Result<(String, Duration), String> {
    let spawned = d.spawn()?;
    d.wait_healthy(spawned).await?;
    let posted = post_alerts(d, ROBOT, 0, alerts, c, Duration::from_secs(300)).await?;
    let (_, r) = d.status(ROBOT).await?;
    let window = r["window"]
        .as_str()
        .and_then(|w| humantime::parse_duration(w).ok())
        .unwrap_or(Duration::from_secs(30));
    let before = if stop == Stop::Unsealed {
        tokio::time::sleep(Duration::from_secs(1)).await;
        d.status(ROBOT).await?.1
    } else {
        let r = d
            .wait_robot(ROBOT, Duration::from_secs(90), "first digest sealed", |r| {
                r["outbox"].as_u64().unwrap_or(0) >= 1 && r["last_error"].is_string()
            })
            .await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        r
    };
    if stop == Stop::Unsealed && before["outbox"] != 0 {
        return Err(format!(
            "restart: a digest was sealed before the stop (the posting took longer than the window?): {before}"
        ));
    }
    let du = disk_usage(&d.data_dir).allocated;
    let (stop_exit, stop_took) = match stop {
        Stop::Term | Stop::Unsealed => d.terminate(Duration::from_secs(30)),
        Stop::Kill => {
            let t = Instant::now();
            d.kill9();
            (None, t.elapsed())
        }
    };
    if stop == Stop::Unsealed {
        // Down until the window of the first alert has passed: the restarted daemon seals at once.
        let ready = posted.first_post + window + Duration::from_secs(1);
        tokio::time::sleep(ready.saturating_duration_since(Instant::now())).await;
    }
    fake.come_online().await;
    let requests_before = fake.requests(TOKEN).len();
    let spawned = d.spawn()?;
    let healthy = d.wait_healthy(spawned).await?;
    let first_request = loop {
        let requests = fake.requests(TOKEN);
        if let Some(r) = requests.get(requests_before) {
            break r.at.saturating_duration_since(spawned);
        }
        d.check_alive()?;
        if spawned.elapsed() > Duration::from_secs(60) {
            return Err("restart: no request at the robot within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let first = fake
        .requests(TOKEN)
        .get(requests_before)
        .map(|r| r.errcode)
        .unwrap_or_default();
    let first_footer = fake
        .accepted(TOKEN)
        .first()
        .and_then(|a| sluice::digest::parse_footer(&a.text));
    let (_, after) = d.status(ROBOT).await?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<19} stopped in {:.2} s (exit {stop_exit:?}) with pending {} + outbox {} (data dir {}); restarted: /healthz at {:.3} s, first request at the robot at {:.3} s (errcode {first:?}, digest {first_footer:?})",
        stop.name(),
        stop_took.as_secs_f64(),
        thousands(before["pending"].as_u64().unwrap_or(0)),
        before["outbox"],
        mib(du),
        healthy.as_secs_f64(),
        first_request.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "                    after restart: state {}, pending {}, outbox {}",
        after["state"],
        thousands(after["pending"].as_u64().unwrap_or(0)),
        after["outbox"]
    );
    Ok((out, first_request))
}

// ---- idle ----------------------------------------------------------------------------------

async fn idle(c: &Common, robots: usize, seconds: u64, settle: u64) -> Result<Report, String> {
    let work = Work::new("sluice-idle-")?;
    let fake = FakeRobot::start(Limits::default()).await;
    let mut config = String::from(
        "# written by examples/backlog.rs\n[server]\nlisten = \"{listen}\"\ndata_dir = \"{data_dir}\"\n",
    );
    let mut dingtalk = 0;
    for i in 0..robots {
        if i % 2 == 0 {
            let token = format!("idle-{i}");
            let secret = format!("SECidle-{i}");
            fake.add_robot(&token, Some(&secret), &[]);
            let _ = write!(
                config,
                "\n[robots.r{i}]\nwebhook = \"{}\"\nsecret = \"{secret}\"\n",
                fake.webhook(&token)
            );
            dingtalk += 1;
        } else {
            let _ = write!(config, "\n[robots.r{i}]\nprovider = \"console\"\n");
        }
    }
    let mut d = Daemon::new(c, &work.dir, &config)?;
    let result = async {
        let spawned = d.spawn()?;
        d.wait_healthy(spawned).await?;
        tokio::time::sleep(Duration::from_secs(settle)).await;
        let pid = d.pid()?;
        let (t0, s0) = (cpu_ticks(pid)?, thread_switches(pid));
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let elapsed = started.elapsed();
        let (t1, s1) = (cpu_ticks(pid)?, thread_switches(pid));
        d.check_alive()?;
        let (rss, _) = memory(pid)?;
        // Context switches in the interval, by thread name (threads of one pool share a name).
        let mut by_name: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for (tid, (name, n)) in &s1 {
            let was = s0.get(tid).map_or(0, |(_, n)| *n);
            let e = by_name.entry(name.clone()).or_default();
            e.0 += 1;
            e.1 += n.saturating_sub(was);
        }
        Ok::<_, String>((t1 - t0, by_name, s1.len(), elapsed, rss))
    }
    .await;
    let (exit, _) = d.terminate(Duration::from_secs(10));
    let kept = work.finish(c.keep, result.is_err());
    let (ticks, by_name, threads, elapsed, rss) = result?;
    let switches: u64 = by_name.values().map(|(_, n)| n).sum();
    let mut busiest: Vec<(&String, &(u64, u64))> = by_name.iter().collect();
    busiest.sort_by_key(|(_, (_, n))| std::cmp::Reverse(*n));
    let busiest: Vec<String> = busiest
        .iter()
        .take(6)
        .map(|(name, (count, n))| {
            format!("{name} ×{count} {:.1}/s", *n as f64 / elapsed.as_secs_f64())
        })
        .collect();
    let hz = clock_ticks();
    let cpu = ticks as f64 / hz as f64;
    let pct = 100.0 * cpu / elapsed.as_secs_f64();
    let requests: usize = (0..robots)
        .step_by(2)
        .map(|i| fake.requests(&format!("idle-{i}")).len())
        .sum();
    let ok = pct < 0.5;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== idle: {robots} robots ({dingtalk} DingTalk to the fake robot, {} console), nothing posted{} ==",
        robots - dingtalk,
        env_note(c)
    );
    let _ = writeln!(
        out,
        "CPU                 {cpu:.2} s (utime+stime, {ticks} ticks at {hz}/s) over {:.1} s after a {settle} s settle = {pct:.3} % of one core",
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "wake-ups            {} context switches ({:.1}/s) over {threads} threads; RSS {}; requests to the robot {requests}",
        thousands(switches),
        switches as f64 / elapsed.as_secs_f64(),
        mib(rss)
    );
    let _ = writeln!(out, "by thread           {}", busiest.join(", "));
    let _ = writeln!(out, "stop                SIGTERM → exit {exit:?}");
    if let Some(k) = kept {
        let _ = writeln!(out, "files               {}", k.display());
    }
    let _ = writeln!(
        out,
        "targets             ~0 % (< 0.5 % of one core): {}",
        met(ok)
    );
    Ok(Report {
        text: out,
        targets_met: ok,
    })
}
