//! Send quotas with a fallback, end to end, in-process: sluice (real sled in a temp dir) → real
//! HTTP → the fake DingTalk robot with two tokens. Robot `ops` has a quota of 5 per 4 s (a month,
//! scaled; fixed windows aligned to the Unix epoch), robot `spare` stands in for it.

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use support::daemon::{Daemon, footers_total, num};
use support::fake_robot::{FakeRobot, Limits};

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
