//! End to end, in-process: sluice (real sled in a temp dir) → real HTTP on 127.0.0.1 → the fake
//! DingTalk robot, which checks signatures and keywords and enforces the rolling limit with a
//! lockout. Durations are scaled down in the config (20 per 2 s instead of 20 per minute).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use support::daemon::{Daemon, footer_of, footers_total, num};
use support::fake_robot::{FakeRobot, Fault, Limits};

const SECRET: &str = "SECtest0123456789";

fn limits() -> Limits {
    Limits {
        limit: 20,
        period: Duration::from_secs(2),
        lockout: Duration::from_secs(3),
    }
}

/// One DingTalk robot `ops` (signed, with a keyword) plus whatever `extra` adds.
fn config(fake: &FakeRobot, window: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "{{listen}}"
data_dir = "{{data_dir}}"

[defaults]
window = "{window}"
rate_limit = 20
rate_period = "2s"
retry_initial_backoff = "100ms"
retry_max_backoff = "400ms"
throttle_backoff = "1s"
blocked_probe = "400ms"
request_timeout = "2s"

[robots.ops]
webhook = "{webhook}"
secret = "{SECRET}"
keywords = ["告警"]
{extra}
"#,
        webhook = fake.webhook("ops-token"),
    )
}

async fn fake() -> FakeRobot {
    let fake = FakeRobot::start(limits()).await;
    fake.add_robot("ops-token", Some(SECRET), &["告警"]);
    fake
}

fn alerts(robot: &str, prefix: &str, n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                let severity = ["critical", "error", "warning", "info"][i % 4];
                json!({
                    "robot": robot,
                    "title": format!("{prefix} {i}"),
                    "severity": severity,
                    "labels": {"job": format!("dq_{}", i % 7)},
                })
            })
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_batch_lists_every_title() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake, "300ms", ""), dir.path()).await;

    let (status, body) = d.post(&alerts("ops", "ods_orders null check", 5)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 5);
    assert_eq!(body["ids"].as_array().unwrap().len(), 5);

    let got = fake
        .wait_for("ops-token", Duration::from_secs(5), |a| !a.is_empty())
        .await;
    assert_eq!(got.len(), 1, "one digest for one small batch");
    let text = &got[0].text;
    for i in 0..5 {
        assert!(
            text.contains(&format!("ods_orders null check {i}")),
            "{text}"
        );
    }
    assert_eq!(footer_of(text).1, 5);
    assert!(
        got[0].title.contains("告警") && text.contains("告警"),
        "keyword in title and text"
    );
    assert!(
        got[0].title.contains("ops"),
        "title names the robot: {}",
        got[0].title
    );
    // The fake only accepts correctly signed requests, so being here proves the signature.
    assert!(
        fake.requests("ops-token")
            .iter()
            .all(|r| r.errcode == Some(0))
    );

    let s = d
        .wait_status("ops", Duration::from_secs(2), |s| s["state"] == "idle")
        .await;
    assert_eq!(num(&s, "alerts_delivered"), 5);
    assert_eq!(num(&s, "pending"), 0);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_10000_alerts_is_fully_accounted_in_a_handful_of_digests_without_throttling() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake, "500ms", ""), dir.path()).await;

    // 20 concurrent clients, 500 alerts each.
    let mut posts = Vec::new();
    for c in 0..20 {
        let body = alerts("ops", &format!("check c{c}"), 500);
        let url = d.url("/v1/alerts");
        posts.push(tokio::spawn(async move {
            support::daemon::post_json(&reqwest::Client::new(), &url, &body).await
        }));
    }
    for p in posts {
        let (status, body) = p.await.unwrap();
        assert_eq!(status, 202, "{body}");
    }

    let got = fake
        .wait_for("ops-token", Duration::from_secs(20), |a| {
            footers_total(a) >= 10_000
        })
        .await;
    assert_eq!(
        footers_total(&got),
        10_000,
        "every alert counted exactly once"
    );
    assert!(got.len() <= 6, "{} digests for one burst", got.len());
    assert_eq!(fake.throttled("ops-token"), 0);
    for a in &got {
        let body = serde_json::to_vec(&a.body).unwrap();
        assert!(body.len() <= 20_000, "body of {} bytes", body.len());
    }

    // The API lists every alert a digest covers, listed in the message or not.
    let mut seen = 0;
    for a in &got {
        let (id, n) = footer_of(&a.text);
        // The robot has the message before sluice has recorded its answer durably: give the
        // record a moment to say so.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let (status, digest) = loop {
            let (status, digest) = d.get(&format!("/v1/digests/{id}")).await;
            if digest["state"] == "sent" || std::time::Instant::now() > deadline {
                break (status, digest);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(status, 200, "{digest}");
        assert_eq!(digest["state"], "sent");
        assert_eq!(digest["alerts"].as_array().unwrap().len() as u64, n);
        seen += n;
    }
    assert_eq!(seen, 10_000);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robot_throttled_by_another_sender_is_waited_out_without_hammering_it() {
    let fake = fake().await;
    // Someone else used up the robot's budget: it answers 130101 for the next 2.5 s.
    fake.lock_out("ops-token", Duration::from_millis(2500));
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake, "50ms", ""), dir.path()).await;

    let (status, _) = d.post(&alerts("ops", "late load", 3)).await;
    assert_eq!(status, 202);
    let s = d
        .wait_status("ops", Duration::from_secs(3), |s| s["state"] == "throttled")
        .await;
    assert!(s["last_error"].as_str().unwrap().contains("130101"), "{s}");

    // More alerts while throttled join the waiting digest's successor, not new requests.
    let (status, _) = d.post(&alerts("ops", "during throttle", 4)).await;
    assert_eq!(status, 202);

    let got = fake
        .wait_for("ops-token", Duration::from_secs(8), |a| {
            footers_total(a) >= 7
        })
        .await;
    assert_eq!(footers_total(&got), 7);
    // throttle_backoff is 1 s, the lockout 2.5 s: three tries at most while locked out.
    let refused = fake
        .requests("ops-token")
        .iter()
        .filter(|r| r.errcode == Some(130101))
        .count();
    assert!(
        (1..=3).contains(&refused),
        "{refused} requests during the lockout"
    );
    assert!(got.len() <= 2, "{} digests", got.len());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_backlog_is_delivered_as_a_few_digests() {
    let fake = fake().await;
    fake.go_offline().await;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake, "50ms", ""), dir.path()).await;

    // Alerts keep coming for 1.5 s while the robot is unreachable.
    for wave in 0..15 {
        let (status, _) = d.post(&alerts("ops", &format!("wave {wave}"), 40)).await;
        assert_eq!(status, 202);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = d.robot_status("ops").await;
    assert_eq!(s["state"], "backoff", "{s}");
    assert!(
        s["last_error"].as_str().unwrap().contains("cannot connect"),
        "{s}"
    );
    assert!(
        !s.to_string().contains("ops-token"),
        "status leaks the token: {s}"
    );

    fake.come_online().await;
    let got = fake
        .wait_for("ops-token", Duration::from_secs(10), |a| {
            footers_total(a) >= 600
        })
        .await;
    assert_eq!(footers_total(&got), 600);
    assert!(got.len() <= 3, "the backlog came as {} digests", got.len());
    // The digest sealed before the outage goes out as it was; the next one says it is a catch-up.
    assert!(!got[0].text.contains("Catch-up"), "{}", got[0].text);
    assert!(
        got[1]
            .text
            .contains("⏪ Catch-up: the robot was unavailable "),
        "{}",
        got[1].text
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robot_level_error_blocks_the_robot_and_keeps_its_alerts() {
    let fake = fake().await;
    fake.set_sticky(
        "ops-token",
        Some(Fault::Errcode(300001, "token is not exist")),
    );
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake, "50ms", ""), dir.path()).await;

    d.post(&alerts("ops", "before the fix", 10)).await;
    let s = d
        .wait_status("ops", Duration::from_secs(3), |s| s["state"] == "blocked")
        .await;
    assert!(s["last_error"].as_str().unwrap().contains("300001"), "{s}");
    assert_eq!(num(&s, "outbox"), 1);
    d.post(&alerts("ops", "while blocked", 5)).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let s = d.robot_status("ops").await;
    assert_eq!(num(&s, "pending"), 5, "{s}");
    assert_eq!(num(&s, "dead"), 0, "a robot-level error never dead-letters");
    // `sluice status` says how long it has been blocked, and why.
    let (code, table, _) =
        support::daemon::run_cli(&["status", "--server", &d.addr.to_string()], None, &[]);
    assert_eq!(code, 0);
    let line = table
        .lines()
        .find(|l| l.starts_with("ops "))
        .unwrap_or_default();
    assert!(
        line.contains("blocked ") && line.contains("errcode 300001"),
        "{table}"
    );
    assert!(
        line.split_whitespace()
            .nth(2)
            .is_some_and(|d| d.ends_with('s') || d.ends_with("ms")),
        "{table}"
    );
    // Probes are rare: every 400 ms here, not a retry storm.
    let probes = fake.requests("ops-token").len();
    assert!(probes <= 5, "{probes} requests while blocked");

    // The robot is fixed; the next probe gets through and everything follows.
    fake.set_sticky("ops-token", None);
    let got = fake
        .wait_for("ops-token", Duration::from_secs(5), |a| {
            footers_total(a) >= 15
        })
        .await;
    assert_eq!(footers_total(&got), 15);
    d.wait_status("ops", Duration::from_secs(2), |s| s["state"] == "idle")
        .await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_level_error_dead_letters_one_digest_and_the_next_goes_out() {
    let fake = fake().await;
    fake.push_fault(
        "ops-token",
        Fault::Errcode(460101, "message too long, exceed 20000 bytes"),
    );
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake, "50ms", ""), dir.path()).await;

    d.post(&alerts("ops", "refused", 3)).await;
    let s = d
        .wait_status("ops", Duration::from_secs(3), |s| num(s, "dead") == 1)
        .await;
    assert!(s["last_error"].as_str().unwrap().contains("460101"), "{s}");

    d.post(&alerts("ops", "accepted", 2)).await;
    let got = fake
        .wait_for("ops-token", Duration::from_secs(3), |a| !a.is_empty())
        .await;
    assert_eq!(footers_total(&got), 2);
    assert!(got[0].text.contains("accepted 0"));

    // The dead digest keeps its alerts and says why.
    let dead_id = 1;
    let (status, digest) = d.get(&format!("/v1/digests/{dead_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(digest["state"], "dead");
    assert_eq!(digest["alerts"].as_array().unwrap().len(), 3);
    assert!(digest["last_error"].as_str().unwrap().contains("460101"));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_robots_stay_isolated() {
    let fake = fake().await;
    fake.add_robot("dq-token", None, &[]);
    fake.set_sticky("ops-token", Some(Fault::Errcode(310000, "sign not match")));
    let extra = format!(
        "\n[robots.dq]\nwebhook = \"{}\"\nwindow = \"50ms\"\n",
        fake.webhook("dq-token")
    );
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake, "50ms", &extra), dir.path()).await;

    d.post(&alerts("ops", "stuck", 5)).await;
    d.wait_status("ops", Duration::from_secs(3), |s| s["state"] == "blocked")
        .await;
    for wave in 0..3 {
        d.post(&alerts("dq", &format!("flowing {wave}"), 5)).await;
        fake.wait_for("dq-token", Duration::from_secs(3), |a| {
            footers_total(a) >= 5 * (wave + 1)
        })
        .await;
    }
    assert_eq!(d.robot_status("ops").await["state"], "blocked");
    assert!(fake.accepted("ops-token").is_empty());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resends_sealed_digests_and_seals_pending_alerts() {
    let fake = fake().await;
    fake.go_offline().await;
    let dir = tempfile::tempdir().unwrap();
    let template = config(&fake, "50ms", "");

    let d = Daemon::start(&template, dir.path()).await;
    d.post(&alerts("ops", "first", 4)).await;
    d.wait_status("ops", Duration::from_secs(3), |s| num(s, "outbox") == 1)
        .await;
    d.post(&alerts("ops", "second", 6)).await;
    d.stop().await;

    fake.come_online().await;
    let d = Daemon::start(&template, dir.path()).await;
    let got = fake
        .wait_for("ops-token", Duration::from_secs(5), |a| {
            footers_total(a) >= 10
        })
        .await;
    assert_eq!(footers_total(&got), 10);
    // The digest sealed before the restart goes first, unchanged.
    assert_eq!(footer_of(&got[0].text).1, 4);
    let titles: BTreeSet<String> = got.iter().map(|a| a.text.clone()).collect();
    assert!(titles.iter().any(|t| t.contains("second 5")));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_5xx_and_busy_answers_are_retried_until_delivered() {
    let fake = fake().await;
    fake.push_fault("ops-token", Fault::Drop);
    fake.push_fault("ops-token", Fault::Http(502));
    fake.push_fault("ops-token", Fault::Errcode(-1, "系统繁忙"));
    fake.push_fault("ops-token", Fault::Http(503));
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake, "50ms", ""), dir.path()).await;

    d.post(&alerts("ops", "flaky", 3)).await;
    let got = fake
        .wait_for("ops-token", Duration::from_secs(8), |a| !a.is_empty())
        .await;
    assert_eq!(footers_total(&got), 3);
    let answers: Vec<(Option<i64>, u16)> = fake
        .requests("ops-token")
        .iter()
        .map(|r| (r.errcode, r.http_status))
        .collect();
    assert_eq!(
        answers,
        vec![
            (None, 0),
            (None, 502),
            (Some(-1), 200),
            (None, 503),
            (Some(0), 200)
        ]
    );
    // The answer is recorded just after the robot accepted it.
    let path = format!("/v1/digests/{}", footer_of(&got[0].text).0);
    let mut digest = d.get(&path).await.1;
    for _ in 0..100 {
        if digest["state"] == "sent" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        digest = d.get(&path).await.1;
    }
    assert_eq!(digest["state"], "sent");
    assert_eq!(digest["attempts"], 5, "{digest}");
    // The same sealed digest went out each time: one digest, not five.
    assert_eq!(got.len(), 1);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mentions_reach_both_the_at_object_and_the_text() {
    let fake = fake().await;
    let extra = r#"mention_mobiles = ["13800000000"]
mention_user_ids = ["oncall-lead"]
mention_min_severity = "error"

[owners.job]
dq_orders = ["13900000001", "alice"]
"#;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake, "100ms", extra), dir.path()).await;

    // Only warnings: below mention_min_severity, nobody is mentioned.
    d.post(&json!([{"robot": "ops", "title": "calm", "severity": "warning", "labels": {"job": "dq_orders"}}]))
        .await;
    let got = fake
        .wait_for("ops-token", Duration::from_secs(5), |a| a.len() == 1)
        .await;
    assert!(got[0].body.get("at").is_none(), "{}", got[0].body);
    assert!(!got[0].text.contains('@'), "{}", got[0].text);

    d.post(&json!([
        {"robot": "ops", "title": "orders broken", "severity": "critical", "labels": {"job": "dq_orders"}},
        {"robot": "ops", "title": "paged owner", "severity": "error", "labels": {"owner_mobile": "13700000002"}},
        {"robot": "ops", "title": "again", "severity": "error", "labels": {"job": "dq_orders"}},
    ]))
    .await;
    let got = fake
        .wait_for("ops-token", Duration::from_secs(5), |a| a.len() == 2)
        .await;
    let body = &got[1].body;
    assert_eq!(
        body["at"],
        json!({
            "atMobiles": ["13800000000", "13900000001", "13700000002"],
            "atUserIds": ["oncall-lead", "alice"],
            "isAtAll": false
        })
    );
    let text = &got[1].text;
    let line = "@13800000000 @13900000001 @13700000002 @oncall-lead @alice";
    assert_eq!(text.matches(line).count(), 1, "each person once: {text}");
    // The footer stays the last line, under the mentions.
    assert_eq!(footer_of(text).1, 3);
    assert!(text.lines().rev().nth(2) == Some(line), "{text}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_time_zone_and_action_cards_shape_the_message() {
    let fake = fake().await;
    let template = r#"timezone = "Asia/Shanghai"
msgtype = "actionCard"
title_template = "告警 {{ robot }}: {{ counts.total }} checks failed"
body_template = """
## {{ counts.total }} failed checks{% if time_range %} ({{ time_range.text }}){% endif %}

{% for section in sections %}{% for group in section.groups %}{% for alert in group.alerts %}
- [{{ alert.severity }}] {{ alert.title }}
{% endfor %}{% endfor %}{% endfor %}"""
"#;
    let dir = tempfile::tempdir().unwrap();
    let config = config(&fake, "100ms", template).replace(
        "[server]\n",
        "[server]\npublic_url = \"https://sluice.example.com\"\n",
    );
    let d = Daemon::start(&config, dir.path()).await;
    d.post(&alerts("ops", "dq check", 2)).await;
    let got = fake
        .wait_for("ops-token", Duration::from_secs(5), |a| !a.is_empty())
        .await;
    let body = &got[0].body;
    assert_eq!(body["msgtype"], "actionCard", "{body}");
    let card = &body["actionCard"];
    assert_eq!(card["title"], "告警 ops: 2 checks failed");
    let (id, n) = footer_of(card["text"].as_str().unwrap());
    assert_eq!(n, 2, "sluice appends the footer after the template");
    assert_eq!(
        card["singleURL"],
        format!("https://sluice.example.com/v1/digests/{id}")
    );
    let text = card["text"].as_str().unwrap();
    // The robot's keyword was missing from the template's text, so sluice put it first.
    assert!(text.starts_with("告警\n\n## 2 failed checks ("), "{text}");
    assert!(text.contains(" CST"), "times in the robot's zone: {text}");
    assert!(
        text.contains("- [critical] dq check 0") && text.contains("- [error] dq check 1"),
        "{text}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_digests_are_listed_and_replayed_to_their_robot_or_another() {
    let fake = fake().await;
    fake.add_robot("dq-token", None, &[]);
    fake.push_fault("ops-token", Fault::Errcode(430102, "含有不合适的文本"));
    fake.push_fault("ops-token", Fault::Errcode(460101, "message too long"));
    let extra = format!(
        "\n[robots.dq]\nwebhook = \"{}\"\nwindow = \"50ms\"\n",
        fake.webhook("dq-token")
    );
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake, "50ms", &extra), dir.path()).await;

    d.post(&alerts("ops", "first refused", 3)).await;
    d.wait_status("ops", Duration::from_secs(3), |s| num(s, "dead") == 1)
        .await;
    d.post(&alerts("ops", "second refused", 2)).await;
    d.wait_status("ops", Duration::from_secs(3), |s| num(s, "dead") == 2)
        .await;

    let server = d.addr.to_string();
    let (code, out, err) =
        support::daemon::run_cli(&["dead", "list", "--server", &server], None, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("430102") && out.contains("460101"), "{out}");
    let (_, dead) = d.get("/v1/dead?robot=ops").await;
    let ids: Vec<u64> = dead["dead"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);

    // The first goes back to its own robot, which now accepts it.
    let (code, out, err) = support::daemon::run_cli(
        &[
            "dead",
            "replay",
            "--server",
            &server,
            "--id",
            &ids[0].to_string(),
        ],
        None,
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "replayed 1 dead digest: 3 alerts queued again");
    let got = fake
        .wait_for("ops-token", Duration::from_secs(5), |a| {
            footers_total(a) >= 3
        })
        .await;
    assert!(got[0].text.contains("first refused 0"), "{}", got[0].text);

    // The second goes to another robot.
    let (code, out, err) = support::daemon::run_cli(
        &[
            "dead", "replay", "--server", &server, "--robot", "ops", "--to", "dq",
        ],
        None,
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "replayed 1 dead digest: 2 alerts queued again");
    let got = fake
        .wait_for("dq-token", Duration::from_secs(5), |a| {
            footers_total(a) >= 2
        })
        .await;
    assert!(got[0].text.contains("second refused 1"), "{}", got[0].text);

    // Nothing is dead any more; replaying a replayed digest is refused.
    assert_eq!(num(&d.robot_status("ops").await, "dead"), 0);
    let (_, dead) = d.get("/v1/dead").await;
    assert_eq!(dead["dead"], json!([]));
    let (code, _, err) = support::daemon::run_cli(
        &[
            "dead",
            "replay",
            "--server",
            &server,
            "--id",
            &ids[0].to_string(),
        ],
        None,
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("HTTP 409") && err.contains("is replayed, not dead"),
        "{err}"
    );
    let (code, _, err) = support::daemon::run_cli(
        &["dead", "replay", "--server", &server, "--to", "nope"],
        None,
        &[],
    );
    assert_eq!(code, 1);
    assert!(err.contains("to: unknown robot \"nope\""), "{err}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_ping_reports_the_robots_answer_in_words() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    let text = config(&fake, "1s", "")
        .replace("{listen}", "127.0.0.1:9")
        .replace("{data_dir}", "unused");
    std::fs::write(&path, text).unwrap();
    let cfg = path.to_str().unwrap().to_string();
    let ping = move || {
        let cfg = cfg.clone();
        std::thread::spawn(move || {
            support::daemon::run_cli(&["check", "-c", &cfg, "--ping", "ops"], None, &[])
        })
        .join()
        .unwrap()
    };

    let (code, out, err) = ping();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "robot ops accepted the test message");
    // Signed, and carrying the keyword, or the fake would have refused it.
    let got = fake.accepted("ops-token");
    assert_eq!(got.len(), 1);
    assert!(got[0].title.contains("告警"));

    fake.push_fault(
        "ops-token",
        Fault::Errcode(310000, "keywords not in content"),
    );
    let (code, _, err) = ping();
    assert_eq!(code, 1);
    assert!(
        err.starts_with("sluice: robot ops refuses our messages: errcode 310000")
            && err.contains("check its access_token, secret, keywords and IP allow-list"),
        "{err}"
    );
    fake.go_offline().await;
    let (code, _, err) = ping();
    assert_eq!(code, 1);
    assert!(
        err.starts_with("sluice: cannot reach robot ops right now: cannot connect"),
        "{err}"
    );
    assert!(
        !err.contains("ops-token"),
        "the token stays out of messages: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_sends_delivered_alerts_again_to_a_new_robot() {
    let fake = fake().await;
    fake.add_robot("new-token", None, &[]);
    let extra = format!(
        "\n[robots.new]\nwebhook = \"{}\"\nwindow = \"50ms\"\n",
        fake.webhook("new-token")
    );
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake, "50ms", &extra), dir.path()).await;
    d.post(&alerts("ops", "first", 3)).await;
    fake.wait_for("ops-token", Duration::from_secs(3), |a| {
        footers_total(a) >= 3
    })
    .await;
    d.post(&alerts("ops", "second", 2)).await;
    fake.wait_for("ops-token", Duration::from_secs(3), |a| {
        footers_total(a) >= 5
    })
    .await;
    d.wait_status("ops", Duration::from_secs(2), |s| {
        num(s, "alerts_delivered") == 5
    })
    .await;

    let server = d.addr.to_string();
    let (code, out, err) = std::thread::spawn(move || {
        support::daemon::run_cli(
            &[
                "replay", "--server", &server, "--robot", "ops", "--since", "1h", "--to", "new",
            ],
            None,
            &[],
        )
    })
    .join()
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "re-delivering 5 alerts from 2 digests robot ops delivered in the last 1h, to robot new; they go out as new digests within its limits"
    );
    let got = fake
        .wait_for("new-token", Duration::from_secs(5), |a| {
            footers_total(a) >= 5
        })
        .await;
    assert_eq!(footers_total(&got), 5);
    assert!(
        got.iter().any(|a| a.text.contains("first 0"))
            && got.iter().any(|a| a.text.contains("second 1"))
    );
    // The originals are untouched, and a digest that is not delivered cannot be re-delivered.
    let (_, listed) = d.get("/v1/digests?robot=ops&since=1h").await;
    assert_eq!(listed["digests"].as_array().unwrap().len(), 2);
    let (status, body) = d.get("/v1/digests?since=soon").await;
    assert_eq!(status, 400, "{body}");
    d.stop().await;
}

/// Issue 11: a throttle answer that says when to come back (HTTP 429 with `Retry-After`) is
/// waited out for that long, not for the robot's whole `throttle_backoff`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttle_with_retry_after_is_retried_when_the_robot_says() {
    let fake = fake().await;
    fake.push_fault("ops-token", Fault::RetryAfter(1));
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(
        &config(&fake, "100ms", "throttle_backoff = \"1h\""),
        dir.path(),
    )
    .await;
    assert_eq!(d.post(&alerts("ops", "告警 disk", 3)).await.0, 202);
    let throttled = d
        .wait_status("ops", Duration::from_secs(5), |s| s["state"] == "throttled")
        .await;
    let next = throttled["next_attempt_ms"].as_i64().unwrap();
    let since = throttled["since_ms"].as_i64().unwrap();
    assert!((900..=1_500).contains(&(next - since)), "{throttled}");
    let got = fake
        .wait_for("ops-token", Duration::from_secs(5), |a| {
            footers_total(a) == 3
        })
        .await;
    assert_eq!(got.len(), 1);
    d.stop().await;
}
