//! `sluice demo --cluster`: the same night on three sluice nodes that share one queue and one
//! budget per robot through a three-server NATS JetStream cluster, all on 127.0.0.1, and the node
//! that owns the most robots killed with `kill -9` halfway through.
//!
//! - The nats-servers and the nodes (`sluice serve -c FILE`, this very executable) are child
//!   processes with their configs, stores and logs in the demo's temporary directory. Each
//!   [`Process`] is killed and reaped when dropped, so an error or Ctrl-C leaves none behind.
//! - The batch jobs post to the nodes in turn, as a load balancer would spread them ([`Front`]).
//!   A POST that fails on a dead node goes to the next one under the same `Idempotency-Key`, so
//!   it is queued once; only a 202 counts as acknowledged.
//! - Delivery is at least once: the digest in flight when its owner died may reach its group
//!   twice. The summary counts each digest id once and says how many came again.
//! - There is no single-node fallback: without a nats-server ≥ 2.11 the demo stops and says how
//!   to get one.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::nats::{NatsBinary, version_text};
use super::{DemoError, Wiring, config_text, scale};
use crate::api::Status;
use crate::client::{Client, ClientError, Spool};
use crate::config::Config;
use crate::digest::thousands;

/// nats-servers, and sluice nodes.
pub const NODES: usize = 3;

/// The nodes' lease timing: sluice's defaults (lease 20 s, renew 2 s, clock skew 1 s) scaled
/// like everything else, but the lease never shorter than config validation allows:
/// `request_timeout + 2 × clock_skew + renew`, with a floor under each so that a busy 2-core
/// machine does not look like a dead node.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub request_timeout: Duration,
    pub renew: Duration,
    pub clock_skew: Duration,
    pub lease: Duration,
}

impl Timing {
    pub fn new(speed: f64) -> Timing {
        let request_timeout = scale(Duration::from_secs(5), speed).max(Duration::from_secs(1));
        let renew = scale(Duration::from_secs(2), speed).max(Duration::from_millis(300));
        let clock_skew = scale(Duration::from_secs(1), speed).max(Duration::from_millis(200));
        let lease = scale(Duration::from_secs(20), speed)
            .max(request_timeout + clock_skew * 2 + renew)
            .max(renew * 3);
        Timing {
            request_timeout,
            renew,
            clock_skew,
            lease,
        }
    }

    /// How long after the kill the node is started again (systemd's `RestartSec`): once its
    /// lease ran out, so the others have taken its robots over by then.
    fn restart_after(&self) -> Duration {
        self.lease + Duration::from_secs(1)
    }

    /// What the demo's time limit gets on top for the kill: the restart, a takeover, slack.
    pub fn extra_time(&self) -> Duration {
        self.restart_after() + self.lease * 2 + Duration::from_secs(30)
    }
}

/// A child process, its output appended to `log`; killed and reaped when dropped.
struct Process {
    program: PathBuf,
    args: Vec<OsString>,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    fn new(program: &Path, args: &[&std::ffi::OsStr], log: PathBuf) -> Process {
        Process {
            program: program.to_path_buf(),
            args: args.iter().map(|a| a.to_os_string()).collect(),
            log,
            child: None,
        }
    }

    fn spawn(&mut self) -> Result<(), DemoError> {
        let io = |what: String| move |source| DemoError::SetupIo { what, source };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io(format!("cannot open {}", self.log.display())))?;
        let out = log
            .try_clone()
            .map_err(io(format!("cannot open {}", self.log.display())))?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log)
            .spawn()
            .map_err(io(format!("cannot start {}", self.program.display())))?;
        self.child = Some(child);
        Ok(())
    }

    /// `kill -9` and reap; the pid it had.
    fn kill9(&mut self) -> Option<u32> {
        let mut c = self.child.take()?;
        let pid = c.id();
        let _ = c.kill();
        let _ = c.wait();
        Some(pid)
    }

    /// How it ended, if it did on its own.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The last lines of its log, for an error.
    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(15).collect();
        let lines: Vec<&str> = lines.into_iter().rev().collect();
        format!("{}:\n{}", self.log.display(), lines.join("\n"))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `n` distinct free ports on 127.0.0.1 (all bound at once, then released).
fn free_ports(n: usize) -> Result<Vec<u16>, DemoError> {
    let held = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| DemoError::SetupIo {
            what: "cannot find a free port on 127.0.0.1".into(),
            source,
        })?;
    Ok(held
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.port())
        .collect())
}

/// Where the batch jobs and the live view reach sluice: one daemon, or every node in turn.
pub struct Front {
    clients: Vec<Arc<Client>>,
    next: AtomicUsize,
    /// Held (shared) by every POST while it is in flight, and (exclusive) by the kill, so that
    /// the kill falls between two of the jobs' POSTs. A node killed while answering one leaves
    /// that request's Idempotency-Key claimed, and the retry elsewhere is answered 409 until
    /// the claim is a minute old (`ABANDONED_CLAIM_MS`): nothing lost, but a minute of the
    /// demo spent waiting.
    gate: tokio::sync::RwLock<()>,
}

impl Front {
    pub fn new(clients: Vec<Arc<Client>>) -> Front {
        Front {
            clients,
            next: AtomicUsize::new(0),
            gate: tokio::sync::RwLock::new(()),
        }
    }

    /// Posts `alerts`; with several nodes, to the next in turn, and to the one after it (same
    /// key, so nothing is queued twice) while a node cannot take it, for up to 75 s (longer
    /// than an abandoned claim holds a key).
    pub async fn send(&self, alerts: Vec<Value>) -> Result<Vec<String>, ClientError> {
        if let [one] = self.clients.as_slice() {
            return one.send(alerts).await;
        }
        let key = Spool::new_key();
        let deadline = Instant::now() + Duration::from_secs(75);
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
            let answer = {
                let _in_flight = self.gate.read().await;
                self.clients[i].send_keyed(alerts.clone(), Some(&key)).await
            };
            match answer {
                Ok(ids) => return Ok(ids),
                Err(e) if retryable(&e) && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The daemon's status; with several nodes, every robot as its owner reports it (its state,
    /// outbox and sends are the owner's own), the queue as any live node reads it.
    pub async fn status(&self) -> Result<Status, ClientError> {
        if let [one] = self.clients.as_slice() {
            return one.status().await;
        }
        let mut answers = Vec::new();
        let mut last = None;
        for c in &self.clients {
            match c.status().await {
                Ok(s) => answers.push(s),
                Err(e) => last = Some(e),
            }
        }
        match (answers.is_empty(), last) {
            (true, Some(e)) => Err(e),
            _ => Ok(merge(answers)),
        }
    }
}

fn retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Unreachable { .. } => true,
        ClientError::Refused { status, .. } => *status == 409 || *status == 429 || *status >= 500,
        _ => false,
    }
}

/// One status out of the live nodes': each robot's entry from the node that owns it, if that
/// node answered.
fn merge(answers: Vec<Status>) -> Status {
    let mut merged = answers.first().cloned().unwrap_or_default();
    for r in &mut merged.robots {
        let from_owner = answers
            .iter()
            .filter(|s| s.cluster.as_ref().map(|c| &c.node) == r.owner.as_ref())
            .flat_map(|s| &s.robots)
            .find(|e| e.robot == r.robot);
        if let Some(e) = from_owner {
            *r = e.clone();
        }
    }
    merged
}

/// A node: its name, process and address.
struct Node {
    name: String,
    process: Process,
    client: Arc<Client>,
}

/// The kill and what followed, as the summary tells it.
#[derive(Debug, Clone)]
pub struct Kill {
    pub node: String,
    pub pid: u32,
    pub at: Duration,
    /// The robots it owned then.
    pub owned: Vec<String>,
    pub acknowledged: u64,
    pub planned: u64,
    pub restarted: Option<Duration>,
    /// When it answered again after the restart.
    pub back: Option<Duration>,
}

/// What the summary says about the cluster.
pub struct Story {
    pub version: (u32, u32, u32),
    pub nodes: Vec<String>,
    pub timing: Timing,
    pub kill: Option<Kill>,
    /// Each robot's owners from the kill on, in order.
    pub owners: Vec<(String, Vec<String>)>,
}

/// Three nats-servers and three sluice nodes, running.
pub struct Cluster {
    version: (u32, u32, u32),
    timing: Timing,
    // Dropped (killed) before the servers they talk to.
    nodes: Vec<Node>,
    nats: Vec<Process>,
    http: reqwest::Client,
    front: Arc<Front>,
    kill: Option<Kill>,
    owners: Vec<(String, Vec<String>)>,
}

impl Cluster {
    /// Starts the servers and waits until JetStream has a leader, then the nodes, each with the
    /// robots of `wiring`, and waits until every robot has an owner.
    pub async fn start(
        nats: NatsBinary,
        dir: &Path,
        wiring: &[Wiring],
        speed: f64,
    ) -> Result<Cluster, DemoError> {
        let timing = Timing::new(speed);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| DemoError::Setup(format!("an HTTP client: {e}")))?;
        let ports = free_ports(NODES * 4)?;
        let (client_ports, rest) = ports.split_at(NODES);
        let (http_ports, rest) = rest.split_at(NODES);
        let (route_ports, listen_ports) = rest.split_at(NODES);
        let routes: Vec<String> = route_ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect();
        let mut cluster = Cluster {
            version: nats.version,
            timing,
            nodes: Vec::new(),
            nats: Vec::new(),
            http,
            front: Arc::new(Front::new(Vec::new())),
            kill: None,
            owners: Vec::new(),
        };
        for i in 0..NODES {
            let name = format!("nats{}", i + 1);
            let store = toml::Value::String(dir.join(&name).display().to_string());
            let text = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{}\nhttp: 127.0.0.1:{}\n\
                 jetstream {{\n  store_dir: {store}\n  max_memory_store: 64MB\n  max_file_store: 1GB\n}}\n\
                 cluster {{\n  name: sluice-demo\n  listen: 127.0.0.1:{}\n  routes: [ {} ]\n}}\n",
                client_ports[i],
                http_ports[i],
                route_ports[i],
                routes.join(", "),
            );
            let config = write(dir, &format!("{name}.conf"), &text)?;
            let mut p = Process::new(
                &nats.path,
                &["-c".as_ref(), config.as_os_str()],
                dir.join(format!("{name}.log")),
            );
            p.spawn()?;
            cluster.nats.push(p);
        }
        cluster.wait_jetstream(http_ports).await?;

        let urls: Vec<String> = client_ports
            .iter()
            .map(|p| format!("\"nats://127.0.0.1:{p}\""))
            .collect();
        let exe = std::env::current_exe().map_err(|source| DemoError::SetupIo {
            what: "cannot find this executable to start the nodes".into(),
            source,
        })?;
        for (i, port) in listen_ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let data = dir.join(&name);
            let listen = format!("127.0.0.1:{port}");
            let text = format!(
                "{}\n[cluster]\nnats = [{}]\nnode = \"{name}\"\nreplicas = {NODES}\n\
                 lease = \"{}ms\"\nrenew = \"{}ms\"\nclock_skew = \"{}ms\"\n",
                config_text(&data, &listen, wiring, speed, timing.request_timeout),
                urls.join(", "),
                timing.lease.as_millis(),
                timing.renew.as_millis(),
                timing.clock_skew.as_millis(),
            );
            // Refused here, with the reason, rather than by a child that exits.
            Config::parse(&text, &format!("node {name}'s configuration"), &|_| None)
                .map_err(DemoError::Config)?;
            let config = write(dir, &format!("{name}.toml"), &text)?;
            let mut process = Process::new(
                &exe,
                &["serve".as_ref(), "-c".as_ref(), config.as_os_str()],
                dir.join(format!("{name}.log")),
            );
            process.spawn()?;
            cluster.nodes.push(Node {
                name,
                process,
                client: Arc::new(Client::new(&listen, None)),
            });
        }
        cluster.front = Arc::new(Front::new(
            cluster.nodes.iter().map(|n| n.client.clone()).collect(),
        ));
        for i in 0..NODES {
            cluster.wait_node(i).await?;
        }
        cluster.wait_owners(wiring.len()).await?;
        Ok(cluster)
    }

    /// Waits until every server's `/jsz` names the same meta leader of all of them (30 s).
    async fn wait_jetstream(&mut self, http_ports: &[u16]) -> Result<(), DemoError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::from("no answer yet");
        loop {
            let mut leaders = Vec::new();
            for port in http_ports {
                let url = format!("http://127.0.0.1:{port}/jsz");
                let answer = match self.http.get(&url).send().await {
                    Ok(r) => r.json::<Value>().await.ok(),
                    Err(e) => {
                        last = format!("{url}: {e}");
                        None
                    }
                };
                let meta = answer.map(|v| v["meta_cluster"].clone());
                if let Some(meta) = meta
                    && meta["cluster_size"].as_u64() == Some(NODES as u64)
                    && let Some(l) = meta["leader"].as_str().filter(|l| !l.is_empty())
                {
                    leaders.push(l.to_string());
                }
            }
            if leaders.len() == NODES && leaders.iter().all(|l| *l == leaders[0]) {
                return Ok(());
            }
            for p in &mut self.nats {
                if let Some(status) = p.exited() {
                    return Err(DemoError::Setup(format!(
                        "a nats-server exited ({status}); {}",
                        p.tail()
                    )));
                }
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self.nats.iter().map(Process::tail).collect();
                return Err(DemoError::Setup(format!(
                    "the nats-servers elected no JetStream leader within 30 s ({last})\n{}",
                    logs.join("\n")
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until node `i` answers its status (30 s: it connects to NATS first).
    async fn wait_node(&mut self, i: usize) -> Result<(), DemoError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let node = &mut self.nodes[i];
        while node.client.status().await.is_err() {
            if let Some(status) = node.process.exited() {
                return Err(DemoError::Daemon(format!(
                    "node {} exited ({status}); {}",
                    node.name,
                    node.process.tail()
                )));
            }
            if Instant::now() > deadline {
                return Err(DemoError::Daemon(format!(
                    "node {} did not answer within 30 s; {}",
                    node.name,
                    node.process.tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Waits until all `robots` have an owner (30 s).
    async fn wait_owners(&mut self, robots: usize) -> Result<(), DemoError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let front = self.front();
        loop {
            if let Ok(s) = front.status().await {
                let owned = s
                    .robots
                    .iter()
                    .filter(|r| r.owner.as_deref().is_some_and(|o| !o.is_empty()))
                    .count();
                if owned == robots {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(DemoError::Daemon(
                    "the nodes did not agree on an owner for every robot within 30 s".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn front(&self) -> Arc<Front> {
        self.front.clone()
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// One poll of the live view: kills the busiest owner once half the alerts are
    /// acknowledged, starts it again [`Timing::restart_after`] later, and notes who takes the
    /// robots over. The lines to print; an error if a process died that was not killed.
    pub async fn step(
        &mut self,
        elapsed: Duration,
        acknowledged: u64,
        planned: u64,
        status: &Status,
    ) -> Result<Vec<String>, DemoError> {
        let mut lines = Vec::new();
        let secs = elapsed.as_secs_f64();
        let killed = self.kill.as_ref().map(|k| k.node.clone());
        for p in &mut self.nats {
            if let Some(s) = p.exited() {
                return Err(DemoError::Daemon(format!(
                    "a nats-server exited ({s}); {}",
                    p.tail()
                )));
            }
        }
        for n in &mut self.nodes {
            if Some(&n.name) != killed.as_ref()
                && let Some(s) = n.process.exited()
            {
                return Err(DemoError::Daemon(format!(
                    "node {} exited ({s}); {}",
                    n.name,
                    n.process.tail()
                )));
            }
        }
        // Owner changes from the kill on.
        if self.kill.is_some() {
            for (robot, owners) in &mut self.owners {
                let now = status
                    .robots
                    .iter()
                    .find(|r| r.robot == *robot)
                    .and_then(|r| r.owner.clone())
                    .filter(|o| !o.is_empty());
                if let Some(now) = now
                    && owners.last() != Some(&now)
                {
                    lines.push(format!(
                        "[{secs:>5.1}s] robot {robot}: now sent by node {now} (was {})",
                        owners.last().map_or("none", String::as_str)
                    ));
                    owners.push(now);
                }
            }
        }
        match &mut self.kill {
            None if acknowledged * 2 >= planned => {
                let owned = |n: &str| -> Vec<String> {
                    status
                        .robots
                        .iter()
                        .filter(|r| r.owner.as_deref() == Some(n))
                        .map(|r| r.robot.clone())
                        .collect()
                };
                let Some(i) = (0..self.nodes.len())
                    .max_by_key(|&i| (owned(&self.nodes[i].name).len(), std::cmp::Reverse(i)))
                else {
                    return Ok(lines);
                };
                let node = &mut self.nodes[i];
                let owns = owned(&node.name);
                let pid = {
                    let _between_posts = self.front.gate.write().await;
                    node.process.kill9().unwrap_or(0)
                };
                lines.push(format!(
                    "[{secs:>5.1}s] kill -9 node {} (pid {pid}), owner of {}, with {} of {} alerts acknowledged; it restarts in {}",
                    node.name,
                    if owns.is_empty() { "no robot".into() } else { owns.join(", ") },
                    thousands(acknowledged),
                    thousands(planned),
                    humantime::format_duration(self.timing.restart_after())
                ));
                self.owners = status
                    .robots
                    .iter()
                    .map(|r| (r.robot.clone(), r.owner.clone().into_iter().collect()))
                    .collect();
                self.kill = Some(Kill {
                    node: node.name.clone(),
                    pid,
                    at: elapsed,
                    owned: owns,
                    acknowledged,
                    planned,
                    restarted: None,
                    back: None,
                });
            }
            Some(k) if k.restarted.is_none() && elapsed >= k.at + self.timing.restart_after() => {
                let node = self
                    .nodes
                    .iter_mut()
                    .find(|n| n.name == k.node)
                    .expect("the killed node is one of the nodes");
                node.process.spawn()?;
                k.restarted = Some(elapsed);
                lines.push(format!(
                    "[{secs:>5.1}s] node {} started again (as systemd would)",
                    k.node
                ));
            }
            Some(k) if k.restarted.is_some() && k.back.is_none() => {
                let node = self
                    .nodes
                    .iter_mut()
                    .find(|n| n.name == k.node)
                    .expect("the killed node is one of the nodes");
                if let Some(s) = node.process.exited() {
                    return Err(DemoError::Daemon(format!(
                        "node {} exited after its restart ({s}); {}",
                        node.name,
                        node.process.tail()
                    )));
                }
                let url = format!("{}/healthz", node.client.base());
                if self.http.get(&url).send().await.is_ok() {
                    k.back = Some(elapsed);
                    lines.push(format!(
                        "[{secs:>5.1}s] node {} is back in the cluster",
                        k.node
                    ));
                }
            }
            _ => {}
        }
        Ok(lines)
    }

    /// Whether the kill is over: the node was killed, started again and answers.
    pub fn settled(&self) -> bool {
        self.kill.as_ref().is_some_and(|k| k.back.is_some())
    }

    /// Stops every process (kill, as the temporary directory goes next) and tells the story.
    pub fn stop(self) -> Story {
        Story {
            version: self.version,
            nodes: self.nodes.iter().map(|n| n.name.clone()).collect(),
            timing: self.timing,
            kill: self.kill.clone(),
            owners: self.owners.clone(),
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf, DemoError> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|source| DemoError::SetupIo {
        what: format!("cannot write {}", path.display()),
        source,
    })?;
    Ok(path)
}

impl Story {
    /// The summary's cluster lines.
    pub fn lines(&self) -> Vec<String> {
        let t = &self.timing;
        let ms =
            |d: Duration| humantime::format_duration(Duration::from_millis(d.as_millis() as u64));
        let mut lines = vec![format!(
            "nodes:        {} sluice nodes ({}) on {} nats-server {} (JetStream, replicas {}), lease {}, renew {}",
            self.nodes.len(),
            self.nodes.join(", "),
            NODES,
            version_text(self.version),
            NODES,
            ms(t.lease),
            ms(t.renew),
        )];
        match &self.kill {
            None => lines.push("kill:         no node was killed (the run ended first)".into()),
            Some(k) => {
                let after = match (k.restarted, k.back) {
                    (Some(r), Some(b)) => format!(
                        "; started again {:.1} s later, back at {:.1} s",
                        (r - k.at).as_secs_f64(),
                        b.as_secs_f64()
                    ),
                    (Some(r), None) => format!(
                        "; started again {:.1} s later, not back when the demo ended",
                        (r - k.at).as_secs_f64()
                    ),
                    _ => "; not started again before the demo ended".into(),
                };
                lines.push(format!(
                    "kill:         node {} (pid {}) killed -9 at {:.1} s, owner of {}, with {} of {} alerts acknowledged{after}",
                    k.node,
                    k.pid,
                    k.at.as_secs_f64(),
                    if k.owned.is_empty() { "no robot".into() } else { k.owned.join(", ") },
                    thousands(k.acknowledged),
                    thousands(k.planned),
                ));
                let owners: Vec<String> = self
                    .owners
                    .iter()
                    .map(|(robot, o)| format!("{robot} {}", o.join(" → ")))
                    .collect();
                lines.push(format!(
                    "owners:       {} (from the kill to the end)",
                    owners.join(", ")
                ));
            }
        }
        lines
    }

    pub fn problems(&self) -> Vec<String> {
        match &self.kill {
            None => vec!["no node was killed: the run ended before half the alerts were in".into()],
            Some(k) if k.back.is_none() => {
                vec![format!(
                    "node {} did not come back after its restart",
                    k.node
                )]
            }
            Some(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_outlasts_a_send_at_every_speed() {
        for speed in [1.0, 10.0, 60.0, 600.0] {
            let t = Timing::new(speed);
            assert!(
                t.lease >= t.request_timeout + t.clock_skew * 2 + t.renew && t.renew * 3 <= t.lease,
                "{speed}: {t:?}"
            );
        }
        assert_eq!(Timing::new(1.0).lease, Duration::from_secs(20));
    }

    #[test]
    fn a_robot_is_shown_as_its_owner_reports_it() {
        let entry = |robot: &str, owner: &str, state: &str| crate::api::RobotEntry {
            robot: robot.into(),
            owner: Some(owner.into()),
            state: state.into(),
            ..Default::default()
        };
        let node = |name: &str, robots| Status {
            robots,
            cluster: Some(crate::api::ClusterEntry {
                node: name.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let merged = merge(vec![
            node(
                "n1",
                vec![entry("a", "n1", "idle"), entry("b", "n2", "remote")],
            ),
            node(
                "n2",
                vec![entry("a", "n1", "remote"), entry("b", "n2", "sending")],
            ),
        ]);
        let states: Vec<&str> = merged.robots.iter().map(|r| r.state.as_str()).collect();
        assert_eq!(states, ["idle", "sending"]);
    }
}
