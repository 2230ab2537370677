//! Load tool: posts alerts to a running sluice and reports acknowledged alerts per second and
//! request latency percentiles. Bounded: it stops after `--alerts` alerts or `--seconds`.
//!
//! ```text
//! cargo run --release --example load -- --server 127.0.0.1:9780 --robot console \
//!     --alerts 200000 --clients 16 --batch 100
//! ```
//!
//! `--server` (or `--addr`) may be repeated or given a comma list, to spread the load over the
//! nodes of a cluster: connection `c` posts to address `c mod n`, for its whole run.
//!
//! `--dingtalk TOKEN[:SECRET]` is the drop-in mode: each request is one DingTalk text message to
//! sluice's front door, `POST /robot/send?access_token=TOKEN` (signed with 加签 when a secret is
//! given, fresh per request), counted when sluice answers `{"errcode":0,"errmsg":"ok"}`; `--robot`
//! and `--batch` do not apply.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

struct Args {
    /// The addresses to post to; connection `c` uses `servers[c % servers.len()]`.
    servers: Vec<String>,
    robot: String,
    alerts: u64,
    clients: usize,
    batch: usize,
    seconds: u64,
    /// The drop-in mode: the access token and the robot's 加签 secret, if any.
    dingtalk: Option<(String, Option<String>)>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        servers: Vec::new(),
        robot: "console".into(),
        alerts: 100_000,
        clients: 16,
        batch: 100,
        seconds: 60,
        dingtalk: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--server" | "--addr" => a.servers.extend(
                value()?
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            ),
            "--robot" => a.robot = value()?,
            "--alerts" => a.alerts = value()?.parse().map_err(|e| format!("--alerts: {e}"))?,
            "--clients" => a.clients = value()?.parse().map_err(|e| format!("--clients: {e}"))?,
            "--batch" => a.batch = value()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--seconds" => a.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--dingtalk" => {
                let v = value()?;
                a.dingtalk = Some(match v.split_once(':') {
                    Some((token, secret)) => (token.to_string(), Some(secret.to_string())),
                    None => (v, None),
                });
            }
            other => {
                return Err(format!(
                    "unknown flag {other}; flags: --server (--addr) --robot --alerts --clients --batch --seconds --dingtalk"
                ));
            }
        }
    }
    if a.servers.is_empty() {
        a.servers.push("127.0.0.1:9780".into());
    }
    if a.clients == 0 || a.batch == 0 {
        return Err("--clients and --batch must be at least 1".into());
    }
    if a.dingtalk.is_some() {
        a.batch = 1;
    }
    Ok(a)
}

/// DingTalk's front-door URL for `token`, with a fresh `timestamp` and `sign` when there is a
/// secret: base64(HMAC-SHA256(key = secret, msg = timestamp_ms + "\n" + secret)), encoded once.
fn dingtalk_url(server: &str, token: &str, secret: Option<&str>) -> String {
    let mut url = format!("http://{server}/robot/send?access_token={token}");
    if let Some(secret) = secret {
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{ts}\n{secret}").as_bytes());
        let sign = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let sign = sign
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        url.push_str(&format!("&timestamp={ts}&sign={sign}"));
    }
    url
}

/// Sends one request; the number of alerts it got acknowledged, or why not.
async fn send(
    http: &reqwest::Client,
    server: &str,
    url: &str,
    args: &Args,
    c: usize,
    first: u64,
    n: u64,
) -> Result<u64, String> {
    if let Some((token, secret)) = &args.dingtalk {
        let body = json!({"msgtype": "text", "text": {"content": format!("load c{c} message {first}\ndq_{} check failed", first % 50)}});
        let r = http
            .post(dingtalk_url(server, token, secret.as_deref()))
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let answer: Value = r.json().await.map_err(|e| e.to_string())?;
        return if status == 200 && answer["errcode"] == 0 {
            Ok(1)
        } else {
            Err(format!("HTTP {status} {answer}"))
        };
    }
    let body: Vec<Value> = (first..first + n)
        .map(|i| json!({"robot": args.robot, "title": format!("load c{c} alert {i}"), "severity": "warning", "labels": {"job": format!("dq_{}", i % 50)}}))
        .collect();
    let body = if n == 1 {
        body.into_iter().next().unwrap()
    } else {
        Value::Array(body)
    };
    match http.post(url).json(&body).send().await {
        Ok(r) if r.status().as_u16() == 202 => Ok(n),
        Ok(r) => Err(format!("HTTP {}", r.status())),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("load: {e}");
            std::process::exit(2);
        }
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()
        .unwrap();
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let server = args.servers[c % args.servers.len()].clone();
        let url = format!("http://{server}/v1/alerts");
        let (http, args, next, failed) = (http.clone(), args.clone(), next.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut acked = 0u64;
            loop {
                let first = next.fetch_add(args.batch as u64, Ordering::Relaxed);
                if first >= args.alerts || Instant::now() > deadline {
                    break;
                }
                let n = (args.alerts - first).min(args.batch as u64);
                let t = Instant::now();
                match send(&http, &server, &url, &args, c, first, n).await {
                    Ok(n) => {
                        latencies.push(t.elapsed());
                        acked += n;
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("load: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            (acked, latencies)
        }));
    }
    let mut acked = 0;
    let mut latencies = Vec::new();
    for t in tasks {
        let (a, l) = t.await.unwrap();
        acked += a;
        latencies.extend(l);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{}clients {} batch {}: {acked} alerts acknowledged in {elapsed:.2} s = {:.0} alerts/s, {:.0} requests/s; latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}; failed requests {}",
        if args.dingtalk.is_some() {
            "dingtalk /robot/send, "
        } else {
            ""
        },
        args.clients,
        args.batch,
        acked as f64 / elapsed,
        latencies.len() as f64 / elapsed,
        pct(0.50),
        pct(0.90),
        pct(0.99),
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        failed.load(Ordering::Relaxed),
    );
}
