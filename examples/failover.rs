//! Time from an owner's death to the next send, in cluster mode: three `sluice serve` nodes on a
//! running NATS JetStream cluster, one DingTalk robot whose webhook is a receiver in this process
//! (it notes when each request arrives and answers `{"errcode":0,"errmsg":"ok"}`), alerts posted
//! steadily to the live nodes. Each round waits for the nodes to agree on a stable owner and for
//! digests to flow, `kill -9`s the owner, and measures from the kill to the next request the
//! receiver gets; then it restarts the killed node for the next round. Bounded: every wait has a
//! deadline, and a round that misses one says so and ends the run.
//!
//! ```text
//! cargo build --release --bin sluice --example failover
//! target/release/examples/failover --sluice target/release/sluice \
//!     --nats nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224 \
//!     --lease 4s --renew 500ms --clock-skew 200ms --request-timeout 1s --rounds 5
//! ```
//!
//! The lease timings default to sluice's own (`lease` 20 s, `renew` 2 s, `clock_skew` 1 s, and
//! the robot's `request_timeout` 10 s). The robot's window is `--window` (500 ms) and its budget 600 a minute, so neither the
//! digest window nor the rate guard hides the takeover for long; what is measured is the lease
//! running out, the takeover, and the new owner's first digest.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Args {
    sluice: PathBuf,
    nats: Vec<String>,
    lease: String,
    renew: String,
    clock_skew: String,
    request_timeout: String,
    window: String,
    rounds: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        sluice: PathBuf::from("target/release/sluice"),
        nats: Vec::new(),
        lease: "20s".into(),
        renew: "2s".into(),
        clock_skew: "1s".into(),
        request_timeout: "10s".into(),
        window: "500ms".into(),
        rounds: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--sluice" => a.sluice = PathBuf::from(value()?),
            "--nats" => a
                .nats
                .extend(value()?.split(',').map(|s| s.trim().to_string())),
            "--lease" => a.lease = value()?,
            "--renew" => a.renew = value()?,
            "--clock-skew" => a.clock_skew = value()?,
            "--request-timeout" => a.request_timeout = value()?,
            "--window" => a.window = value()?,
            "--rounds" => a.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            other => {
                return Err(format!(
                    "unknown flag {other}; flags: --sluice --nats --lease --renew --clock-skew --request-timeout --window --rounds"
                ));
            }
        }
    }
    a.nats.retain(|u| !u.is_empty());
    if a.nats.is_empty() {
        return Err("--nats: expected the cluster's NATS URLs, comma-separated".into());
    }
    Ok(a)
}

/// One sluice node: its config, address and process.
struct Node {
    name: String,
    addr: String,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn spawn(&mut self, sluice: &Path) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("node log");
        let child = Command::new(sluice)
            .arg("serve")
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", sluice.display()));
        self.child = Some(child);
    }

    /// `kill -9`, and reap it.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// The robot's owner as node `addr` reports it, if it answers and names one.
async fn owner_seen_by(http: &reqwest::Client, addr: &str) -> Option<String> {
    let s: Value = http
        .get(format!("http://{addr}/v1/status"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    s["robots"]
        .as_array()?
        .iter()
        .find(|r| r["robot"] == "ops")?["owner"]
        .as_str()
        .map(String::from)
}

/// The index of the node all live nodes name as owner, once that has held for 3 s (60 s bound).
async fn stable_owner(http: &reqwest::Client, nodes: &[Node]) -> Result<usize, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut since: Option<(String, Instant)> = None;
    let mut last = String::new();
    while Instant::now() < deadline {
        let mut seen = Vec::new();
        for n in nodes.iter().filter(|n| n.child.is_some()) {
            seen.push(owner_seen_by(http, &n.addr).await);
        }
        let agreed = match seen.first() {
            Some(Some(o)) if seen.iter().all(|s| s.as_deref() == Some(o)) => Some(o.clone()),
            _ => None,
        };
        last = format!("{seen:?}");
        match (agreed, &since) {
            (Some(o), Some((p, t))) if *p == o => {
                if t.elapsed() >= Duration::from_secs(3)
                    && let Some(i) = nodes.iter().position(|n| n.name == o)
                {
                    return Ok(i);
                }
            }
            (Some(o), _) => since = Some((o, Instant::now())),
            (None, _) => since = None,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!(
        "no stable owner within 60 s; the nodes said {last}"
    ))
}

async fn wait_healthy(http: &reqwest::Client, node: &Node) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = http
            .get(format!("http://{}/healthz", node.addr))
            .send()
            .await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "{} not healthy within 30 s (log: {})",
        node.name,
        node.log.display()
    ))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("failover: {e}");
            std::process::exit(2);
        }
    };

    // The receiver: every request's arrival time.
    let received: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let app = axum::Router::new().route(
        "/robot/send",
        axum::routing::post({
            let received = received.clone();
            move || {
                received.lock().unwrap().push(Instant::now());
                async { axum::Json(json!({"errcode": 0, "errmsg": "ok"})) }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the receiver");
    let receiver = listener.local_addr().expect("receiver addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().expect("tempdir");
    let servers: Vec<String> = args.nats.iter().map(|u| format!("\"{u}\"")).collect();
    let mut nodes = Vec::new();
    for i in 1..=3 {
        let name = format!("f{i}");
        let addr = format!("127.0.0.1:{}", free_port());
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                r#"[server]
listen = "{addr}"
data_dir = "{data}"

[robots.ops]
webhook = "http://{receiver}/robot/send?access_token=failover"
window = "{window}"
rate_limit = 600
rate_period = "1m"
request_timeout = "{request_timeout}"
retry_initial_backoff = "100ms"
retry_max_backoff = "500ms"

[cluster]
nats = [{servers}]
node = "{name}"
replicas = 3
lease = "{lease}"
renew = "{renew}"
clock_skew = "{clock_skew}"
"#,
                data = dir.path().join(format!("data-{name}")).display(),
                window = args.window,
                request_timeout = args.request_timeout,
                servers = servers.join(", "),
                lease = args.lease,
                renew = args.renew,
                clock_skew = args.clock_skew,
            ),
        )
        .expect("write a node's config");
        nodes.push(Node {
            log: dir.path().join(format!("{name}.log")),
            name,
            addr,
            config,
            child: None,
        });
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("http client");
    for n in &mut nodes {
        n.spawn(&args.sluice);
    }
    let result = rounds(&args, &http, &mut nodes, &received).await;
    for n in &mut nodes {
        n.kill();
    }
    match result {
        Ok(mut times) => {
            let max = times.iter().copied().fold(0.0, f64::max);
            println!(
                "failover lease {} renew {} clock_skew {} request_timeout {} window {}: kill -9 of the owner to the next send over {} rounds: median {:.2} s, max {max:.2} s",
                args.lease,
                args.renew,
                args.clock_skew,
                args.request_timeout,
                args.window,
                times.len(),
                median(&mut times),
            );
        }
        Err(e) => {
            eprintln!("failover: {e}");
            for n in &nodes {
                let text = std::fs::read_to_string(&n.log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                eprintln!("--- {}:", n.name);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
            std::process::exit(1);
        }
    }
}

async fn rounds(
    args: &Args,
    http: &reqwest::Client,
    nodes: &mut [Node],
    received: &Arc<Mutex<Vec<Instant>>>,
) -> Result<Vec<f64>, String> {
    for n in nodes.iter() {
        wait_healthy(http, n).await?;
    }
    // Alerts every 100 ms to the live nodes in turn (a failed POST is only retried later).
    let live: Arc<Mutex<Vec<String>>> =
        Arc::new(Mutex::new(nodes.iter().map(|n| n.addr.clone()).collect()));
    let poster = tokio::spawn({
        let (live, http) = (live.clone(), http.clone());
        async move {
            for i in 0u64.. {
                let addr = {
                    let l = live.lock().unwrap();
                    (!l.is_empty()).then(|| l[i as usize % l.len()].clone())
                };
                if let Some(addr) = addr {
                    let alert = json!({"robot": "ops", "title": format!("failover alert {i}"), "severity": "warning"});
                    let _ = http
                        .post(format!("http://{addr}/v1/alerts"))
                        .json(&alert)
                        .send()
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let mut times = Vec::new();
    let result = async {
        for round in 1..=args.rounds {
            let owner = stable_owner(http, nodes).await?;
            // Digests flowing: two requests since the owner became stable (30 s bound).
            let from = Instant::now();
            let deadline = from + Duration::from_secs(30);
            while received
                .lock()
                .unwrap()
                .iter()
                .filter(|t| **t > from)
                .count()
                < 2
            {
                if Instant::now() > deadline {
                    return Err(format!("round {round}: no digests within 30 s"));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            live.lock().unwrap().retain(|a| *a != nodes[owner].addr);
            nodes[owner].kill();
            let killed = Instant::now();
            // A request the dead node had already written can still arrive just after the
            // kill; no takeover is that fast (the lease must run out first).
            let after = killed + Duration::from_millis(100);
            let deadline = killed + Duration::from_secs(120);
            let next = loop {
                if let Some(t) = received.lock().unwrap().iter().find(|t| **t > after) {
                    break *t;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "round {round}: nothing sent within 120 s of killing {}",
                        nodes[owner].name
                    ));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            let took = next.duration_since(killed).as_secs_f64();
            let rest: Vec<usize> = (0..nodes.len()).filter(|&i| i != owner).collect();
            let mut new_owner = None;
            for &i in &rest {
                new_owner = owner_seen_by(http, &nodes[i].addr).await;
                if new_owner.is_some() {
                    break;
                }
            }
            println!(
                "round {round}: killed owner {}, next send after {took:.2} s (owner now {})",
                nodes[owner].name,
                new_owner.as_deref().unwrap_or("?")
            );
            times.push(took);
            nodes[owner].spawn(&args.sluice);
            wait_healthy(http, &nodes[owner]).await?;
            live.lock().unwrap().push(nodes[owner].addr.clone());
        }
        Ok(())
    }
    .await;
    poster.abort();
    result.map(|()| times)
}
