//! Send quotas and fallbacks, end to end, in-process: sluice (real sled in a temp dir) → real
//! HTTP → the fake DingTalk robot with two tokens. Robot `ops` has a quota of 5 per 4 s (a month,
//! scaled; fixed windows aligned to the Unix epoch), or refuses our messages for longer than its
//! `fallback_after`; robot `spare` stands in for it.

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use support::daemon::{Daemon, footers_total, num};
use support::fake_robot::{Accepted, FakeRobot, Fault, Limits};

const PERIOD_MS: u64 = 4_000;

fn config(fake: &FakeRobot) -> String {
    format!(
        r#"
[server]
listen = "{{listen}}"
data_dir = "{{data_dir}}"

[defaults]
window = "10ms"
rate_limit = 20
rate_period = "2s"
request_timeout = "2s"

[robots.ops]
webhook = "{ops}"
quota = "5/4s"
fallback = "spare"

[robots.spare]
webhook = "{spare}"
"#,
        ops = fake.webhook("ops-token"),
        spare = fake.webhook("spare-token"),
    )
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Posts one alert to `ops` every 50 ms for `d`; returns how many.
async fn stream(d: &Daemon, prefix: &str, for_: Duration) -> u64 {
    let end = Instant::now() + for_;
    let mut n = 0;
    while Instant::now() < end {
        let (code, _) = d
            .post(&json!({"robot": "ops", "title": format!("{prefix} {n}"), "severity": "warning"}))
            .await;
        assert_eq!(code, 202);
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    n
}

/// Exactly five sends in the period, the fourth saying 80 % is used, then the fallback carries
/// the rest marked as standing in; in the next period `ops` is used again; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_quota_hands_over_to_the_fallback_until_the_period_rolls_over() {
    let fake = FakeRobot::start(Limits {
        limit: 20,
        period: Duration::from_secs(2),
        lockout: Duration::from_secs(3),
    })
    .await;
    fake.add_robot("ops-token", None, &[]);
    fake.add_robot("spare-token", None, &[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake), dir.path()).await;

    // Start just after a period begins, so the whole first stream falls in one period.
    let into = unix_ms() % PERIOD_MS;
    tokio::time::sleep(Duration::from_millis(PERIOD_MS - into + 50)).await;
    let period_end = Instant::now() + Duration::from_millis(PERIOD_MS - 50);
    let mut posted = stream(&d, "first", Duration::from_millis(2500)).await;

    let ops = fake.accepted("ops-token");
    assert_eq!(
        ops.len(),
        5,
        "exactly the quota: {:?}",
        ops.iter().map(|a| &a.text).collect::<Vec<_>>()
    );
    let warned: Vec<_> = ops.iter().filter(|a| a.text.contains("⚠")).collect();
    assert_eq!(warned.len(), 1, "one warning line a period");
    assert!(
        warned[0].text.contains("⚠ 4 of this 4s's 5 sends used"),
        "{}",
        warned[0].text
    );
    let status = d.robot_status("ops").await;
    assert_eq!(status["state"], "quota", "{status}");
    assert_eq!(num(&status, "quota_used"), 5, "{status}");
    assert_eq!(num(&status, "quota_limit"), 5, "{status}");
    assert_eq!(status["fallback"], "spare", "{status}");
    let metrics = reqwest::get(d.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"sluice_quota_used{robot="ops"} 5"#,
        r#"sluice_quota_limit{robot="ops"} 5"#,
        r#"sluice_robot_state{robot="ops",state="quota"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from /metrics");
    }
    assert!(
        metrics.contains(r#"sluice_quota_period_ends_seconds{robot="ops"}"#),
        "the period's end in /metrics"
    );
    let spare = fake.accepted("spare-token");
    assert!(!spare.is_empty(), "the fallback takes over");
    assert!(
        spare[0]
            .text
            .contains("Standing in for robot ops: its per-4s quota of 5 is spent."),
        "{}",
        spare[0].text
    );

    // The period rolls over: ops is used again.
    tokio::time::sleep(
        period_end.saturating_duration_since(Instant::now()) + Duration::from_millis(200),
    )
    .await;
    let before = fake.accepted("ops-token").len();
    posted += stream(&d, "second", Duration::from_millis(600)).await;
    fake.wait_for("ops-token", Duration::from_secs(3), |got| {
        got.len() > before
    })
    .await;
    assert!(
        fake.accepted("ops-token").len() <= 10,
        "at most the quota again"
    );

    // Every alert delivered, through one robot or the other.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let total = footers_total(&fake.accepted("ops-token"))
            + footers_total(&fake.accepted("spare-token"));
        if total == posted {
            break;
        }
        assert!(Instant::now() < deadline, "delivered {total} of {posted}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.stop().await;
}

fn blocked_config(fake: &FakeRobot) -> String {
    format!(
        r#"
[server]
listen = "{{listen}}"
data_dir = "{{data_dir}}"

[defaults]
window = "10ms"
rate_limit = 20
rate_period = "2s"
request_timeout = "2s"
blocked_probe = "400ms"

[robots.ops]
webhook = "{ops}"
fallback = "spare"
fallback_after = "1500ms"

[robots.spare]
webhook = "{spare}"
"#,
        ops = fake.webhook("ops-token"),
        spare = fake.webhook("spare-token"),
    )
}

/// The digests among what a robot accepted (not sluice's probes).
fn digests(accepted: Vec<Accepted>) -> Vec<Accepted> {
    accepted
        .into_iter()
        .filter(|a| !a.title.contains("sluice probe"))
        .collect()
}

/// A robot that refuses our messages keeps its queue for `fallback_after` (probing with its
/// digest), then hands it to the fallback, marked with why; probes find it back and its digests
/// go to it again; every alert is delivered once, through one robot or the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robot_blocked_past_fallback_after_hands_over_until_a_probe_finds_it_back() {
    let fake = FakeRobot::start(Limits {
        limit: 20,
        period: Duration::from_secs(2),
        lockout: Duration::from_secs(3),
    })
    .await;
    fake.add_robot("ops-token", None, &[]);
    fake.add_robot("spare-token", None, &[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&blocked_config(&fake), dir.path()).await;

    let mut posted = stream(&d, "before", Duration::from_millis(300)).await;
    fake.wait_for("ops-token", Duration::from_secs(3), |got| !got.is_empty())
        .await;
    let blocked_at = Instant::now();
    fake.set_sticky(
        "ops-token",
        Some(Fault::Errcode(300001, "token is not exist")),
    );
    posted += stream(&d, "blocked", Duration::from_millis(2500)).await;

    let spare = fake.accepted("spare-token");
    assert!(!spare.is_empty(), "the fallback takes over");
    assert!(
        spare[0].at >= blocked_at + Duration::from_millis(1500),
        "not before fallback_after: {:?} after the block",
        spare[0].at - blocked_at
    );
    assert!(
        spare[0].text.contains(
            "Standing in for robot ops: it has refused our messages for more than 1s 500ms"
        ) && spare[0].text.contains("300001"),
        "{}",
        spare[0].text
    );
    let status = d.robot_status("ops").await;
    // Blocked, or sending a probe at this moment.
    assert!(
        status["state"] == "blocked" || status["state"] == "sending",
        "{status}"
    );
    assert_eq!(
        num(&status, "outbox"),
        0,
        "its queue went to spare: {status}"
    );
    // While blocked, ops is probed with notices, no more often than blocked_probe.
    let refused = fake.requests("ops-token").len();
    assert!(
        refused >= 4,
        "probes go on while it is stood down: {refused}"
    );

    // ops takes messages again: a probe finds it, and its digests go to it again.
    fake.set_sticky("ops-token", None);
    let back = fake.accepted("ops-token").len();
    fake.wait_for("ops-token", Duration::from_secs(3), |got| got.len() > back)
        .await;
    let probe = &fake.accepted("ops-token")[back];
    assert!(
        probe.title.contains("sluice probe") && probe.text.contains("again"),
        "{probe:?}"
    );
    let spare_before = fake.accepted("spare-token").len();
    posted += stream(&d, "after", Duration::from_millis(300)).await;

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let total = footers_total(&digests(fake.accepted("ops-token")))
            + footers_total(&fake.accepted("spare-token"));
        if total == posted {
            break;
        }
        assert!(
            total < posted,
            "an alert delivered twice: {total} of {posted}"
        );
        assert!(Instant::now() < deadline, "delivered {total} of {posted}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after: Vec<_> = digests(fake.accepted("ops-token"))
        .into_iter()
        .filter(|a| a.text.contains("after 0"))
        .collect();
    assert!(!after.is_empty(), "ops carries its own digests again");
    assert_eq!(
        fake.accepted("spare-token").len(),
        spare_before,
        "nothing more for spare once ops is back"
    );
    d.stop().await;
}
