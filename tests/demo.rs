//! `sluice demo` as a user runs it: the real binary, its robot simulator, daemon and batch jobs,
//! all on 127.0.0.1, time compressed 60× (the robot's minute is one second).

use std::process::Command;
use std::time::{Duration, Instant};

/// The value after `label` on the summary line that starts with it.
fn summary_line<'a>(stdout: &'a str, label: &str) -> &'a str {
    stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label:?} line in the summary:\n{stdout}"))
}

#[test]
fn a_burst_of_300_alerts_is_delivered_whole_within_the_limit_and_never_throttled() {
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["demo", "--alerts", "300", "--robots", "2", "--speed", "60"])
        .env("TMPDIR", tmp.path())
        .env_remove("RUST_LOG")
        .output()
        .expect("run sluice demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstderr: {stderr}\nstdout:\n{stdout}",
        out.status
    );
    assert!(started.elapsed() < Duration::from_secs(30));

    // Not a terminal: plain progress lines instead of bars.
    assert!(
        stdout.starts_with("sluice demo: 300 alerts from 12 batch jobs to 2 robots at 60× speed")
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with('[') && l.contains("warehouse: ") && l.contains(" received, ")),
        "{stdout}"
    );

    // Every acknowledged alert is counted in a delivered digest's footer.
    assert_eq!(
        summary_line(&stdout, "alerts:"),
        "300 from 12 batch jobs, 300 acknowledged, 300 delivered (counted from the digests' footers), 0 lost"
    );
    // The robot's own count: no 130101, and never more than 20 in any rolling minute.
    let throttles = summary_line(&stdout, "throttles:");
    assert!(throttles.starts_with("0 ("), "{throttles}");
    for robot in ["warehouse", "business"] {
        let busiest = throttles
            .split(&format!("{robot} "))
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or_else(|| panic!("no figure for {robot} in {throttles:?}"));
        assert!(
            (1..=20).contains(&busiest),
            "{robot}: {busiest} in a minute"
        );
    }
    // Merged: far fewer messages than alerts, and every one of them printed with its header.
    let messages = summary_line(&stdout, "messages:");
    let total: usize = messages
        .rsplit("total ")
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no total in {messages:?}"));
    assert!(
        (2..=100).contains(&total),
        "{total} messages for 300 alerts"
    );
    assert_eq!(stdout.matches("sluice digest #").count(), total);
    let headers = stdout.lines().filter(|l| l.starts_with("── ")).count();
    assert_eq!(headers, total);

    // The temporary store is gone.
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn flags_out_of_range_are_usage_errors() {
    for (flag, value, says) in [
        ("--alerts", "0", "from 1 to"),
        ("--robots", "11", "from 1 to 10"),
        ("--speed", "0", "more than 0"),
        ("--speed", "1000", "at most 600"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["demo", flag, value])
            .output()
            .expect("run sluice demo");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(says),
            "{flag} {value}: {stderr}"
        );
    }
}
