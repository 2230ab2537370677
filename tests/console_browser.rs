//! The web console in a real browser: Debian's chromium through chromedriver
//! (tests/support/browser.rs), against an in-process daemon and the fake DingTalk robot. One
//! browser for every scenario, in sequence. Without chromium on the machine it says so loudly and
//! passes; `.ci/run` installs it, so CI always runs it. Screenshots go to target/console/.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::browser::Browser;
use support::daemon::{Daemon, num};
use support::fake_robot::{FakeRobot, Fault, Limits};

const SECRET: &str = "SECbrowser0123456789";

fn config(fake: &FakeRobot) -> String {
    format!(
        r#"
[server]
listen = "{{listen}}"
data_dir = "{{data_dir}}"

[defaults]
window = "50ms"
rate_limit = 20
rate_period = "20s"
retry_initial_backoff = "100ms"
retry_max_backoff = "400ms"
blocked_probe = "60s"
request_timeout = "2s"

[robots.ops]
webhook = "{ops}"
secret = "{SECRET}"
keywords = ["告警"]

[robots.dq]
webhook = "{dq}"
"#,
        ops = fake.webhook("ops-token"),
        dq = fake.webhook("dq-token"),
    )
}

/// Titles, texts and labels that would run script if the console let them.
fn hostile(robot: &str) -> Value {
    let xss = [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(2)>",
        "[x](javascript:alert(3))",
        "<svg onload=alert(4)>",
        "\"><script>alert(5)</script>",
    ];
    Value::Array(
        xss.iter()
            .enumerate()
            .map(|(i, x)| {
                json!({"robot": robot, "title": format!("告警 {x} {i}"), "text": format!("detail {x}"),
                       "labels": {"job": x}, "severity": "error"})
            })
            .collect(),
    )
}

/// No script of the page's content ran, and the page's own script saw no CSP violation.
async fn assert_clean(b: &Browser, page: &str) {
    assert!(!b.alerts_opened().await, "{page}: a JS dialog opened");
    let v = b
        .csp_violations()
        .await
        .unwrap_or_else(|e| panic!("{page}: {e}"));
    assert!(v.is_empty(), "{page}: CSP violations {v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_chromium() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let fake = FakeRobot::start(Limits {
        limit: 20,
        period: Duration::from_secs(20),
        lockout: Duration::from_secs(30),
    })
    .await;
    fake.add_robot("ops-token", Some(SECRET), &["告警"]);
    fake.add_robot("dq-token", None, &[]);
    fake.push_fault(
        "ops-token",
        Fault::Errcode(460101, "message too long, exceed 20000 bytes"),
    );
    fake.set_sticky(
        "dq-token",
        Some(Fault::Errcode(300001, "token is not exist")),
    );
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake), dir.path()).await;
    d.post(&hostile("ops")).await;
    d.wait_status("ops", Duration::from_secs(5), |s| num(s, "dead") == 1)
        .await;
    d.post(&hostile("ops")).await;
    d.post(&hostile("dq")).await;
    fake.wait_for("ops-token", Duration::from_secs(5), |a| !a.is_empty())
        .await;
    d.wait_status("dq", Duration::from_secs(5), |s| s["state"] == "blocked")
        .await;

    // The overview shows the blocked robot with its reason.
    b.goto(&d.url("/ui/")).await;
    assert_eq!(b.text("state-dq").await, "blocked");
    assert!(b.text("reason-dq").await.contains("300001"));
    assert_clean(&b, "overview").await;
    b.screenshot("overview").await;

    // A sent digest with hostile content: shown, nothing runs.
    let (_, list) = d.get("/v1/digests").await;
    let sent = list["digests"][0]["id"].as_u64().unwrap();
    b.goto(&d.url(&format!("/ui/digests/{sent}"))).await;
    assert!(
        b.text("message")
            .await
            .contains("<script>alert(1)</script>")
            || b.text("message")
                .await
                .contains("＜script>alert(1)＜/script>")
    );
    assert_clean(&b, "digest").await;
    b.screenshot("digest").await;
    b.goto(&d.url("/ui/digests?q=alert")).await;
    assert_clean(&b, "digests").await;
    b.screenshot("digests").await;

    // Replay the dead digest: the fake robot receives its alerts.
    let before = fake.accepted("ops-token").len();
    b.goto(&d.url("/ui/dead")).await;
    assert_clean(&b, "dead").await;
    b.click("replay-1").await;
    let flash = b.text("flash").await;
    assert!(flash.contains("replayed 5 alerts"), "{flash}");
    assert_eq!(d.get("/v1/digests/1").await.1["state"], "replayed");
    let got = fake
        .wait_for("ops-token", Duration::from_secs(5), |a| a.len() > before)
        .await;
    assert!(
        got.last().unwrap().text.contains("detail"),
        "the replayed alerts arrived"
    );
    b.screenshot("dead").await;

    // Send test message until the limit: the robot never sees a 21st in its period.
    b.goto(&d.url("/ui/robots/ops")).await;
    assert_clean(&b, "robot").await;
    let before = fake.accepted("ops-token").len();
    let mut refused = 0;
    for _ in 0..22 {
        // From a page without a flash, so the flash read is the new page's.
        b.goto(&d.url("/ui/robots/ops")).await;
        b.click("test-message").await;
        let flash = b.text("flash").await;
        if flash.contains("not sent") {
            assert!(flash.contains("permit"), "{flash}");
            refused += 1;
        }
    }
    assert!(refused >= 3, "{refused} presses refused");
    assert!(fake.max_in_window("ops-token", Duration::from_secs(20)) <= 20);
    assert_eq!(fake.throttled("ops-token"), 0, "no 130101: never a 21st");
    let s = d.robot_status("ops").await;
    assert!(num(&s, "sends_in_period") <= 20, "{s}");
    let tests = fake.accepted("ops-token").len() - before;
    assert_eq!(
        tests,
        22 - refused,
        "every press not refused reached the robot, no other"
    );
    assert_clean(&b, "robot after the test messages").await;
    b.screenshot("robot").await;

    // Auto refresh: the overview's content changes in place (the page is not reloaded: a
    // marker set on the window survives), and it pauses while a form control has the focus.
    b.goto(&d.url("/ui/?refresh=1")).await;
    b.execute("window.__marker = 42; return 0;").await;
    let first = updated(&b).await;
    let changed = wait_text_change(&b, &first, Duration::from_secs(4)).await;
    assert!(changed.is_some(), "refresh did not update the page");
    assert_eq!(
        b.execute("return window.__marker;").await,
        json!(42),
        "a full reload happened"
    );
    b.execute("document.querySelector('[data-testid=reload]').focus(); return 0;")
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let paused = updated(&b).await;
    let after = wait_text_change(&b, &paused, Duration::from_millis(2500)).await;
    assert_eq!(
        after, None,
        "refresh went on while a form control had the focus"
    );
    assert_clean(&b, "overview with refresh").await;

    b.quit().await;
    d.stop().await;
}

/// The `updated` line's text, read in the page (the element is replaced by each refresh).
async fn updated(b: &Browser) -> String {
    let v = b
        .execute("return document.querySelector('[data-testid=updated]').textContent;")
        .await;
    v.as_str().unwrap_or_default().to_string()
}

/// The `updated` line's new text, once it differs from `old`, within `limit`.
async fn wait_text_change(b: &Browser, old: &str, limit: Duration) -> Option<String> {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = updated(b).await;
        if now != old {
            return Some(now);
        }
    }
    None
}
