//! Running sluice for a test: in-process (fast, via `sluice::serve`) or as a child process of the
//! real binary (for `kill -9`, signals and start-up failures). Both listen on 127.0.0.1 only and
//! keep their data in a temporary directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Replaces `{data_dir}` and `{listen}` in a config template.
pub fn render_config(template: &str, data_dir: &Path, listen: SocketAddr) -> String {
    template
        .replace("{data_dir}", &data_dir.display().to_string())
        .replace("{listen}", &listen.to_string())
}

/// A free port on 127.0.0.1 (bound, then released).
pub fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr")
}

pub struct Daemon {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), sluice::ServeError>>>,
    http: reqwest::Client,
}

impl Daemon {
    /// Starts sluice in this process with a config template (see [`render_config`]).
    pub async fn start(template: &str, data_dir: &Path) -> Daemon {
        Daemon::start_with_clock(template, data_dir, sluice::limit::Clock::new()).await
    }

    /// Like [`start`](Self::start), on `clock` (a wall clock stepped, say).
    pub async fn start_with_clock(
        template: &str,
        data_dir: &Path,
        clock: sluice::limit::Clock,
    ) -> Daemon {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let text = render_config(template, data_dir, addr);
        let config = sluice::config::Config::parse(&text, "test config", &|_| None)
            .unwrap_or_else(|e| panic!("test config is invalid: {e}"));
        Daemon::launch(config, listener, data_dir, clock).await
    }

    async fn launch(
        config: sluice::config::Config,
        listener: tokio::net::TcpListener,
        data_dir: &Path,
        clock: sluice::limit::Clock,
    ) -> Daemon {
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(sluice::serve_with_clock(
            config,
            listener,
            clock,
            async move {
                let _ = rx.await;
            },
        ));
        let mut d = Daemon {
            addr,
            data_dir: data_dir.to_path_buf(),
            stop: Some(tx),
            task: Some(task),
            http: reqwest::Client::new(),
        };
        d.wait_healthy().await;
        d
    }

    /// Like [`start`](Self::start), but the config is written to `config_path` and loaded from
    /// there, so the daemon can reload it (SIGHUP, `POST /-/reload`). Rewrite it with
    /// [`Daemon::rewrite`].
    pub async fn start_file(template: &str, data_dir: &Path, config_path: &Path) -> Daemon {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::fs::write(config_path, render_config(template, data_dir, addr)).expect("write config");
        let config = sluice::config::Config::load(config_path)
            .unwrap_or_else(|e| panic!("test config is invalid: {e}"));
        Daemon::launch(config, listener, data_dir, sluice::limit::Clock::new()).await
    }

    /// Writes a new config template to `config_path` for this daemon's address and data dir.
    pub fn rewrite(&self, template: &str, config_path: &Path) {
        std::fs::write(
            config_path,
            render_config(template, &self.data_dir, self.addr),
        )
        .expect("rewrite config");
    }

    async fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(r) = self.http.get(self.url("/healthz")).send().await
                && r.status().is_success()
            {
                return;
            }
            if self.task.as_ref().is_some_and(|t| t.is_finished()) {
                let result = self.task.take().expect("task").await;
                panic!("sluice stopped during start-up: {result:?}");
            }
            assert!(Instant::now() < deadline, "sluice did not become healthy");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Posts a JSON value to `/v1/alerts`; returns status and body.
    pub async fn post(&self, body: &Value) -> (u16, Value) {
        post_json(&self.http, &self.url("/v1/alerts"), body).await
    }

    /// `POST /-/reload`: status and body.
    pub async fn reload(&self) -> (u16, Value) {
        let r = self
            .http
            .post(self.url("/-/reload"))
            .send()
            .await
            .expect("POST /-/reload");
        answer(r).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().await.expect("GET");
        answer(r).await
    }

    /// The status entry of one robot.
    pub async fn robot_status(&self, robot: &str) -> Value {
        let (_, s) = self.get("/v1/status").await;
        s["robots"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["robot"] == robot).cloned())
            .unwrap_or_else(|| panic!("no robot {robot} in status: {s}"))
    }

    /// Polls the robot's status until `f` holds.
    pub async fn wait_status(
        &self,
        robot: &str,
        timeout: Duration,
        f: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.robot_status(robot).await;
            if f(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "robot {robot} status never matched; last: {s}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Stops it the way SIGTERM would, and waits for it to finish.
    pub async fn stop(self) {
        self.stop_with_result().await.expect("serve returns Ok");
    }

    /// Stops it and returns what `serve` returned.
    pub async fn stop_with_result(mut self) -> Result<(), sluice::ServeError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await.expect("serve task"),
            None => Ok(()),
        }
    }
}

pub async fn post_json(http: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let r = http.post(url).json(body).send().await.expect("POST");
    answer(r).await
}

/// An answer's status and JSON body (`Null` when the body is not JSON).
async fn answer(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The real `sluice` binary, run as a child process.
pub struct ChildDaemon {
    pub addr: SocketAddr,
    pub config_path: PathBuf,
    pub stderr_path: PathBuf,
    child: Option<Child>,
    /// Applied to the command before every spawn (limits, environment).
    configure: Box<dyn Fn(&mut Command) + Send + Sync>,
}

impl ChildDaemon {
    /// Writes the config into `dir/sluice.toml` (data in `dir/data`) and starts the binary.
    pub fn start(template: &str, dir: &Path) -> ChildDaemon {
        ChildDaemon::start_with(template, dir, |_| {})
    }

    /// Like [`start`](Self::start), with `configure` applied to the command before each spawn.
    pub fn start_with(
        template: &str,
        dir: &Path,
        configure: impl Fn(&mut Command) + Send + Sync + 'static,
    ) -> ChildDaemon {
        let addr = free_port();
        let config_path = dir.join("sluice.toml");
        std::fs::write(
            &config_path,
            render_config(template, &dir.join("data"), addr),
        )
        .expect("write config");
        let mut d = ChildDaemon {
            addr,
            config_path,
            stderr_path: dir.join("stderr.log"),
            child: None,
            configure: Box::new(configure),
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_path)
            .expect("stderr log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.args(["serve", "-c"])
            .arg(&self.config_path)
            .env("RUST_LOG", "sluice=debug,info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        (self.configure)(&mut cmd);
        let child = cmd.spawn().expect("spawn sluice");
        self.child = Some(child);
    }

    /// Waits until `/healthz` answers (panics after 10 s, or if the process exits).
    pub async fn wait_healthy(&mut self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(r) = http
                .get(format!("http://{}/healthz", self.addr))
                .send()
                .await
                && r.status().is_success()
            {
                return;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("sluice exited early with {status}: {}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "sluice did not become healthy: {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Value {
        reqwest::Client::new()
            .get(self.url("/v1/status"))
            .send()
            .await
            .expect("GET /v1/status")
            .json()
            .await
            .expect("status JSON")
    }

    /// The process id of the running process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal by name ("HUP", "TERM") to the running process.
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let sent = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{name} failed");
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            c.wait().expect("reap");
        }
    }

    /// SIGTERM, then waits up to `timeout` for the exit; returns the exit code and how long it took.
    pub fn terminate(&mut self, timeout: Duration) -> (Option<i32>, Duration) {
        let mut c = self.child.take().expect("running");
        let started = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        loop {
            if let Some(status) = c.try_wait().expect("wait") {
                return (status.code(), started.elapsed());
            }
            if started.elapsed() > timeout {
                let _ = c.kill();
                let _ = c.wait();
                return (None, started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The exit code if the process has ended by itself (it is then reaped).
    pub fn exited(&mut self) -> Option<Option<i32>> {
        let c = self.child.as_mut()?;
        let status = c.try_wait().expect("wait")?;
        self.child = None;
        Some(status.code())
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart after kill9 or terminate");
        self.spawn();
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for ChildDaemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs the binary to completion with arguments; returns (exit code, stdout, stderr).
pub fn run_cli(args: &[&str], stdin: Option<&str>, envs: &[(&str, &str)]) -> (i32, String, String) {
    use std::io::Write;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    // Each call gets its own cache dir, so the spool of one command never leaks into another
    // (or into the user's real ~/.cache).
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let cache = std::env::temp_dir().join(format!(
        "sluice-test-cache-{}-{}",
        std::process::id(),
        CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    cmd.args(args)
        .env("XDG_CACHE_HOME", cache)
        .env_remove("SLUICE_SERVER")
        .env_remove("SLUICE_TOKEN")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn sluice");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    // A command that should end but does not (a daemon that started when it should have refused)
    // fails the test instead of hanging it.
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("`sluice {}` did not finish within 20 s", args.join(" "));
        }
    };
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Parses the footer of a digest text: `(id, alerts)`.
pub fn footer_of(text: &str) -> (u64, u64) {
    sluice::digest::parse_footer(text)
        .unwrap_or_else(|| panic!("no footer in the last line of {text:?}"))
}

/// How many alerts the accepted messages cover, by their footers; a passthrough message (a
/// feedCard sent alone as it came) has none and is one alert.
pub fn footers_total(accepted: &[super::fake_robot::Accepted]) -> u64 {
    accepted
        .iter()
        .map(|a| match a.body["msgtype"].as_str() {
            Some("feedCard") => 1,
            _ => footer_of(&a.text).1,
        })
        .sum()
}

/// The value at `v[key]` as u64 (status fields).
pub fn num(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

/// A client posting one alert after another to `url` (the body of the `n`-th from `body`),
/// `pause` apart, for at most 30 s, through crashes and restarts: it counts the alerts answered
/// 202, the ones sluice acknowledged.
pub struct Poster {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: JoinHandle<u64>,
}

impl Poster {
    pub fn start(
        url: String,
        pause: Duration,
        body: impl Fn(u64) -> Value + Send + 'static,
    ) -> Poster {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_millis(500))
                .build()
                .unwrap();
            let mut n = 0u64;
            let started = Instant::now();
            while !flag.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(30) {
                if let Ok(r) = http.post(&url).json(&body(n)).send().await
                    && r.status().as_u16() == 202
                {
                    n += 1;
                }
                tokio::time::sleep(pause).await;
            }
            n
        });
        Poster { stop, task }
    }

    /// Stops posting; how many were acknowledged.
    pub async fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// Titles of every alert the `accepted` digests cover, in order, from the digest API of the
/// sluice at `base` (its URL without a path).
pub async fn delivered_titles(base: &str, accepted: &[super::fake_robot::Accepted]) -> Vec<String> {
    titles_of_digests(base, accepted.iter().map(|a| a.text.as_str())).await
}

/// Titles of every alert the digests whose texts (footer last) are `texts` cover, in order,
/// from the digest API of the sluice at `base`: [`delivered_titles`] for any platform.
pub async fn titles_of_digests<'a>(
    base: &str,
    texts: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let http = reqwest::Client::new();
    let mut titles = Vec::new();
    for text in texts {
        let (id, _) = footer_of(text);
        let digest: Value = http
            .get(format!("{base}/v1/digests/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for alert in digest["alerts"].as_array().expect("alerts") {
            titles.push(alert["title"].as_str().unwrap().to_string());
        }
    }
    titles
}

/// A front door's answer: its status, its `Retry-After` if any, and its JSON body (`Null` if
/// the body is not JSON).
pub async fn door_answer(r: reqwest::Response) -> (u16, Option<String>, Value) {
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (
        r.status().as_u16(),
        retry,
        r.json().await.unwrap_or(Value::Null),
    )
}

/// A tmpfs mounted on a directory (a filesystem tests can fill), unmounted when dropped.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "2m") on `dir`; `None` where that is not allowed (it needs
    /// root, as in CI).
    pub fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        mounted.then(|| Tmpfs(dir.to_path_buf()))
    }

    /// Gives it `size` in all, in place (room again after a full disk).
    pub fn grow(&self, size: &str) {
        let grown = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(grown.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
