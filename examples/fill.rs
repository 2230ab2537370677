//! How much of its budget a digest uses, and what share of its alerts it lists by name, for a
//! realistic mix (50 alert names, 3 severities, some resolved, `instance` and `rack` labels)
//! of 1 000, 10 000 and 100 000 alerts at DingTalk's budget. Issue 12's figures in
//! BENCHMARKS.md come from it:
//!
//! ```sh
//! cargo run --release --offline --example fill
//! ```

use std::time::Instant;

use jiff::tz::TimeZone;
use sluice::alert::{Alert, Labels, Severity, Status};
use sluice::digest::{DigestSpec, json_escaped_len, render};

/// `n` alerts over 50 alert names; severities critical 1/6, error 2/6, warning 3/6; one in
/// twenty resolved; each with its own instance, on one of four racks. A fixed xorshift seed.
fn mix(n: usize) -> Vec<Alert> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let r = next();
            let name = format!("Check{}", r % 50);
            let instance = format!("10.{}.{}.{}:9100", i / 65_536, i / 256 % 256, i % 256);
            let severity = [
                Severity::Critical,
                Severity::Error,
                Severity::Error,
                Severity::Warning,
                Severity::Warning,
                Severity::Warning,
            ][((r >> 8) % 6) as usize];
            let mut labels = Labels::new();
            labels.insert("alertname".into(), name.clone());
            labels.insert("instance".into(), instance.clone());
            labels.insert("job".into(), "node".into());
            labels.insert("rack".into(), format!("r{}", (r >> 16) % 4 + 1));
            Alert {
                title: format!("{name} on {instance}"),
                text: (i % 2 == 0).then(|| format!("value {}% over 90%", 90 + (r >> 24) % 10)),
                severity,
                status: if (r >> 32) % 20 == 0 {
                    Status::Resolved
                } else {
                    Status::Firing
                },
                labels,
                fingerprint: format!("{name}/{instance}"),
                source: None,
                time_ms: None,
                ends_ms: None,
                received_ms: 1_795_831_231_000 + i as i64,
            }
        })
        .collect()
}

fn main() {
    let tz = TimeZone::UTC;
    let spec = DigestSpec {
        robot: "ops",
        id: 1,
        keyword: None,
        link: None,
        max_bytes: 19_000,
        tz: &tz,
        catch_up: None,
        templates: None,
    };
    println!("| alerts | bytes used of 19 000 | listed by name | render (median of 21) |");
    println!("|---|---|---|---|");
    for n in [1_000, 10_000, 100_000] {
        let alerts = mix(n);
        let mut times = Vec::new();
        let mut r = render(&spec, &alerts);
        for _ in 0..21 {
            let t = Instant::now();
            r = render(&spec, &alerts);
            times.push(t.elapsed());
        }
        times.sort();
        let used = json_escaped_len(&r.title) + json_escaped_len(&r.text);
        println!(
            "| {n} | {used} ({:.1} %) | {} ({:.2} %) | {:.2} ms |",
            100.0 * used as f64 / 19_000.0,
            r.listed,
            100.0 * r.listed as f64 / n as f64,
            times[10].as_secs_f64() * 1e3,
        );
        if std::env::args().any(|a| a == "--print") {
            println!("{}\n", r.text);
        }
    }
}
