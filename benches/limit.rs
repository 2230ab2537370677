//! The rate guard: what one permit check costs, allowed and refused.
//! `cargo bench --bench limit`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use sluice::limit::{RateGuard, log_wait_ms};

fn guard(c: &mut Criterion) {
    let mut g = c.benchmark_group("rate_guard");
    // A robot at its limit: 20 sends in the last minute, so every check is refused with a wait.
    let now = 1_700_000_060_000i64;
    let full: Vec<i64> = (0..20).map(|i| now - 30_000 + i * 1_000).collect();
    let mut at_limit = RateGuard::new(20, Duration::from_secs(60), full.clone());
    g.bench_function("acquire_refused_at_the_limit", |b| {
        b.iter(|| black_box(at_limit.acquire(black_box(now))))
    });
    // The exact log check alone (the part that proves the limit).
    g.bench_function("log_wait_20_of_20", |b| {
        b.iter(|| black_box(log_wait_ms(black_box(&full), 20, 60_000, 250, now)))
    });
    // A permit granted, recorded and completed, as each send does (a limit high enough that
    // neither the log nor the pacer refuses).
    let mut open = RateGuard::new(1_000_000, Duration::from_millis(1), Vec::new());
    let mut t = now;
    g.bench_function("acquire_record_complete", |b| {
        b.iter(|| {
            t += 1;
            let _ = black_box(open.acquire(t));
            open.record(t);
            open.complete(t);
        })
    });
    g.finish();
}

criterion_group!(benches, guard);
criterion_main!(benches);
