//! Durable ingest through the store: one durable append (group commit included), as the HTTP
//! handler does it.
//! `cargo bench --bench ingest`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice::alert::{Alert, Severity, Status, default_fingerprint};
use sluice::store::{Entry, Retention};

fn alert(i: u64) -> Alert {
    let title = format!("ods_orders: null user_id in partition {i}");
    let labels = [("job".to_string(), format!("dq_{}", i % 50))]
        .into_iter()
        .collect();
    Alert {
        fingerprint: default_fingerprint(&title, Severity::Error, &labels),
        title,
        text: Some("1,234 of 10,000 rows have a null user_id".into()),
        severity: Severity::Error,
        status: Status::Firing,
        labels,
        source: None,
        time_ms: None,
        ends_ms: None,
        received_ms: 1_700_000_000_000,
        extra: None,
    }
}

fn ingest(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt
        .block_on(sluice::store::open(dir.path(), 64 << 20))
        .unwrap();
    let window: Retention = Arc::new(|_| Duration::ZERO);
    let batch: Vec<Alert> = (0..100).map(alert).collect();
    let one = vec![alert(7)];

    let mut g = c.benchmark_group("ingest");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    // `clients` concurrent requests, each appending `per_request` alerts and awaiting the commit.
    for (clients, per_request, alerts) in
        [(1usize, 100usize, &batch), (16, 100, &batch), (64, 1, &one)]
    {
        g.throughput(Throughput::Elements((clients * per_request) as u64));
        g.bench_with_input(
            BenchmarkId::new(
                format!("{per_request}_per_request"),
                format!("{clients}_clients"),
            ),
            &clients,
            |b, &clients| {
                b.to_async(&rt).iter_custom(|iters| {
                    let (store, window) = (store.clone(), window.clone());
                    let alerts = alerts.clone();
                    async move {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let mut tasks = Vec::with_capacity(clients);
                            for _ in 0..clients {
                                let (store, window) = (store.clone(), window.clone());
                                let entries: Vec<Entry> = alerts
                                    .iter()
                                    .map(|a| Entry {
                                        robot: "bench".into(),
                                        alert: a.clone(),
                                        dedup_key: None,
                                    })
                                    .collect();
                                tasks.push(tokio::spawn(async move {
                                    store.append(entries, None, 0, window).await.unwrap();
                                }));
                            }
                            for t in tasks {
                                t.await.unwrap();
                            }
                        }
                        start.elapsed()
                    }
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
