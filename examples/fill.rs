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
use sluice::digest::{DigestSpec, json_escaped_len, render};

#[path = "../benches/support/fill_mix.rs"]
mod fill_mix;
use fill_mix::mix;

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
