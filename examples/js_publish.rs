//! The ceiling under cluster mode's ingest: raw JetStream publishes to a replicated stream,
//! measured with async-nats directly, without sluice. Each message is about the size of one
//! alert as sluice publishes it, carries a `Nats-Msg-Id` (as sluice's do), and counts only once
//! its PubAck came back (after a quorum of the stream's replicas stored it). Bounded by
//! `--seconds`.
//!
//! ```text
//! cargo run --release --example js_publish -- --nats nats://127.0.0.1:4222,nats://127.0.0.1:4223 \
//!     --mode sync --publishers 64 --seconds 10
//! ```
//!
//! `--mode sync`: `--publishers` tasks, each awaiting every PubAck before its next publish (what
//! a single-alert POST costs sluice). `--mode async`: each task keeps up to `--inflight` /
//! `--publishers` publishes outstanding and counts acks as they come. One connection per URL
//! given, the publishers spread over them round-robin (as the load spreads over the nodes).
//! The stream (`--stream`, default `BENCH_PUBLISH`, file storage) is deleted and made afresh.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage, stream};
use bytes::Bytes;

struct Args {
    nats: Vec<String>,
    mode: Mode,
    publishers: usize,
    inflight: usize,
    size: usize,
    replicas: usize,
    seconds: u64,
    stream: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Sync,
    Async,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        nats: Vec::new(),
        mode: Mode::Sync,
        publishers: 64,
        inflight: 1000,
        size: 300,
        replicas: 3,
        seconds: 10,
        stream: "BENCH_PUBLISH".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--nats" => a
                .nats
                .extend(value()?.split(',').map(|s| s.trim().to_string())),
            "--mode" => {
                a.mode = match value()?.as_str() {
                    "sync" => Mode::Sync,
                    "async" => Mode::Async,
                    m => return Err(format!("--mode {m}: expected sync or async")),
                }
            }
            "--publishers" => a.publishers = number(value()?)?,
            "--inflight" => a.inflight = number(value()?)?,
            "--size" => a.size = number(value()?)?,
            "--replicas" => a.replicas = number(value()?)?,
            "--seconds" => a.seconds = number(value()?)? as u64,
            "--stream" => a.stream = value()?,
            other => {
                return Err(format!(
                    "unknown flag {other}; flags: --nats --mode --publishers --inflight --size --replicas --seconds --stream"
                ));
            }
        }
    }
    a.nats.retain(|u| !u.is_empty());
    if a.nats.is_empty() {
        return Err("--nats: expected one or more NATS URLs, comma-separated".into());
    }
    if a.publishers == 0 || a.inflight < a.publishers {
        return Err("--publishers must be at least 1 and --inflight at least --publishers".into());
    }
    Ok(a)
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("js_publish: {e}");
            std::process::exit(2);
        }
    };
    let mut contexts = Vec::new();
    for url in &args.nats {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(url.as_str())
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        contexts.push(
            jetstream::ContextBuilder::new()
                .timeout(Duration::from_secs(15))
                .max_ack_inflight(args.inflight.max(5_000))
                .build(client),
        );
    }
    let js = &contexts[0];
    let _ = js.delete_stream(&args.stream).await;
    let subject = format!("bench.{}", args.stream.to_lowercase());
    js.create_stream(stream::Config {
        name: args.stream.clone(),
        subjects: vec![format!("{subject}.*")],
        num_replicas: args.replicas,
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("create stream {}: {e}", args.stream));

    let payload = Bytes::from(vec![b'x'; args.size]);
    let run = nuid::next().to_string();
    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let per_task = args.inflight / args.publishers;
    let mut tasks = Vec::new();
    for p in 0..args.publishers {
        let js = contexts[p % contexts.len()].clone();
        let (payload, run, acked, failed) =
            (payload.clone(), run.clone(), acked.clone(), failed.clone());
        let subject = format!("{subject}.{}", p % 16);
        let mode = args.mode;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let limit = Arc::new(tokio::sync::Semaphore::new(per_task));
            let mut i = 0u64;
            while Instant::now() < deadline {
                let msg = PublishMessage::build()
                    .payload(payload.clone())
                    .message_id(format!("{run}:{p}:{i}"));
                i += 1;
                let t = Instant::now();
                if mode == Mode::Sync {
                    let ack = match js.send_publish(subject.clone(), msg).await {
                        Ok(ack) => ack.await.map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    if ack.is_ok() {
                        latencies.push(t.elapsed());
                        acked.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                let permit = limit.clone().acquire_owned().await.expect("not closed");
                match js.send_publish(subject.clone(), msg).await {
                    Ok(ack) => {
                        let (acked, failed) = (acked.clone(), failed.clone());
                        tokio::spawn(async move {
                            match ack.await {
                                Ok(_) => acked.fetch_add(1, Ordering::Relaxed),
                                Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                            };
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            // The acks still outstanding at the deadline: wait for them (bounded by the ack
            // timeout), so they count within the elapsed time.
            let _ =
                tokio::time::timeout(Duration::from_secs(30), limit.acquire_many(per_task as u32))
                    .await;
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("a publisher does not panic"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let acked = acked.load(Ordering::Relaxed);
    let mode = match args.mode {
        Mode::Sync => format!("sync, {} publishers", args.publishers),
        Mode::Async => format!(
            "async, {} publishers, {} acks outstanding",
            args.publishers, args.inflight
        ),
    };
    let latency = if args.mode == Mode::Sync {
        format!(
            "; publish-to-ack ms p50 {:.2} p99 {:.2}",
            pct(0.5),
            pct(0.99)
        )
    } else {
        String::new()
    };
    println!(
        "js_publish R{} {mode}, {} B, {} connections: {acked} acknowledged in {elapsed:.2} s = {:.0} msgs/s{latency}; failed {}",
        args.replicas,
        args.size,
        contexts.len(),
        acked as f64 / elapsed,
        failed.load(Ordering::Relaxed),
    );
    let _ = js.delete_stream(&args.stream).await;
}
