//! The realistic mix of alerts that issue 12's figures use, shared by `benches/digest.rs` and
//! `examples/fill.rs` (each includes this file with `#[path]`).

use sluice::alert::{Alert, Labels, Severity, Status};

/// `n` alerts over 50 alert names; severities critical 1/6, error 2/6, warning 3/6; one in
/// twenty resolved; each with its own instance, on one of four racks. A fixed xorshift seed.
pub fn mix(n: usize) -> Vec<Alert> {
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
                extra: None,
            }
        })
        .collect()
}
