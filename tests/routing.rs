//! Routing by labels, per-alert dedup keys and Idempotency-Key, over the real HTTP API.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::daemon::{Daemon, num, run_cli};

const ROUTED: &str = r#"
default_robot = "ops"

[server]
listen = "{listen}"
data_dir = "{data_dir}"

[defaults]
window = "1h"

[robots.ops]
provider = "console"
[robots.dq]
provider = "console"
[robots.oncall]
provider = "console"

[[routes]]
match = { severity = "critical" }
robot = "oncall"
continue = true

[[routes]]
match_re = { job = "dq_.*" }
robot = "dq"
"#;

async fn post_with(d: &Daemon, body: &Value, key: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(d.url("/v1/alerts")).json(body);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_routed_by_labels_with_fan_out_and_a_default() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(ROUTED, dir.path()).await;
    let (status, body) = d
        .post(&json!([
            {"title": "critical dq", "severity": "critical", "labels": {"job": "dq_orders"}},
            {"title": "plain dq", "labels": {"job": "dq_users"}},
            {"title": "not dq", "labels": {"job": "xdq_users"}},
            {"title": "own robot wins", "robot": "dq", "severity": "critical"},
        ]))
        .await;
    assert_eq!(status, 202, "{body}");
    // The critical dq alert went to oncall (continue) and dq; the rest by first match or default.
    assert_eq!(
        body["ids"],
        json!(["oncall:0", "dq:0", "dq:1", "ops:0", "dq:2"])
    );
    assert_eq!(num(&d.robot_status("oncall").await, "pending"), 1);
    assert_eq!(num(&d.robot_status("dq").await, "pending"), 3);
    assert_eq!(num(&d.robot_status("ops").await, "pending"), 1);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_that_matches_no_route_and_names_no_robot_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&ROUTED.replace("default_robot = \"ops\"", ""), dir.path()).await;
    let (status, body) = d
        .post(&json!({"title": "orphan", "labels": {"job": "etl"}}))
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        body["error"],
        "robot: missing, and the alert matches no route and there is no default_robot (configured robots: dq, oncall, ops)"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_dedup_key_is_acknowledged_but_queued_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(ROUTED, dir.path()).await;
    let alert =
        json!({"robot": "dq", "title": "row count dropped", "dedup_key": "dq_orders/2026-11-28"});
    let (_, first) = d.post(&alert).await;
    assert_eq!(
        first,
        json!({"accepted": 1, "duplicates": 0, "ids": ["dq:0"]})
    );
    let (_, again) = d
        .post(&json!([alert, {"robot": "dq", "title": "other"}]))
        .await;
    assert_eq!(
        again,
        json!({"accepted": 2, "duplicates": 1, "ids": ["dq:0", "dq:1"]})
    );
    let s = d.robot_status("dq").await;
    assert_eq!(num(&s, "pending"), 2);
    assert_eq!(num(&s, "duplicates_dropped"), 1);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_replays_the_first_answer_and_queues_nothing_new() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(ROUTED, dir.path()).await;
    let batch = json!([{"robot": "ops", "title": "a"}, {"robot": "ops", "title": "b"}]);
    let (status, first) = post_with(&d, &batch, Some("job-42-attempt")).await;
    assert_eq!(status, 202);
    assert_eq!(first["ids"], json!(["ops:0", "ops:1"]));
    // The batch job timed out and retries the same request.
    let (status, again) = post_with(&d, &batch, Some("job-42-attempt")).await;
    assert_eq!(status, 202);
    assert_eq!(again["ids"], first["ids"]);
    assert_eq!(num(&d.robot_status("ops").await, "pending"), 2);
    // Another key is another request.
    let (_, other) = post_with(&d, &batch, Some("job-43")).await;
    assert_eq!(other["ids"], json!(["ops:2", "ops:3"]));
    // A refused request does not use up its key.
    let (status, _) = post_with(&d, &json!({"robot": "nope", "title": "x"}), Some("job-44")).await;
    assert_eq!(status, 422);
    let (status, fixed) =
        post_with(&d, &json!({"robot": "ops", "title": "x"}), Some("job-44")).await;
    assert_eq!(status, 202);
    assert_eq!(fixed["ids"], json!(["ops:4"]));
    let (status, body) = post_with(&d, &batch, Some(&"k".repeat(300))).await;
    assert_eq!(status, 400, "{body}");
    d.stop().await;
}

/// Issue 10, finding 1: a second request under a used key, with other alerts, was answered 202
/// with the first request's ids, and its alerts were never queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_idempotency_key_with_another_body_is_refused_not_swallowed() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(ROUTED, dir.path()).await;
    let first = json!({"robot": "ops", "title": "disk full on db1", "severity": "critical"});
    let (status, answer) = post_with(&d, &first, Some("K")).await;
    assert_eq!(status, 202, "{answer}");
    let other = json!([
        {"robot": "ops", "title": "orders table empty", "severity": "critical"},
        {"robot": "ops", "title": "users table empty", "severity": "critical"},
    ]);
    let (status, body) = post_with(&d, &other, Some("K")).await;
    assert_eq!(status, 422, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("Idempotency-Key") && message.contains("another request"),
        "{message}"
    );
    assert_eq!(num(&d.robot_status("ops").await, "pending"), 1);
    // The same body under the same key still gets the stored answer, and a new key is a new
    // request: nothing was lost, the client only has to pick a new key.
    let (status, again) = post_with(&d, &first, Some("K")).await;
    assert_eq!((status, &again["ids"]), (202, &answer["ids"]));
    let (status, queued) = post_with(&d, &other, Some("K2")).await;
    assert_eq!(status, 202, "{queued}");
    assert_eq!(queued["ids"], json!(["ops:1", "ops:2"]));
    assert_eq!(num(&d.robot_status("ops").await, "pending"), 3);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let batch = json!({"robot": "ops", "title": "a"});
    let d = Daemon::start(ROUTED, dir.path()).await;
    let (_, first) = post_with(&d, &batch, Some("nightly-run")).await;
    d.stop().await;
    let d = Daemon::start(ROUTED, dir.path()).await;
    let (_, again) = post_with(&d, &batch, Some("nightly-run")).await;
    assert_eq!(again["ids"], first["ids"]);
    assert_eq!(num(&d.robot_status("ops").await, "pending"), 1);
    tokio::time::sleep(Duration::from_millis(10)).await;
    d.stop().await;
}

#[test]
fn check_route_explains_where_an_alert_would_go() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routed.toml");
    std::fs::write(
        &path,
        ROUTED
            .replace("{listen}", "127.0.0.1:9")
            .replace("{data_dir}", "x"),
    )
    .unwrap();
    let cfg = path.to_str().unwrap();
    let (code, out, err) = run_cli(
        &[
            "check",
            "-c",
            cfg,
            "--route",
            "severity=critical,job=dq_orders",
        ],
        None,
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().last(), Some("robots: oncall, dq"), "{out}");
    let (code, out, _) = run_cli(&["check", "-c", cfg, "--route", "job=etl"], None, &[]);
    assert_eq!(code, 0);
    assert_eq!(
        out.lines().last(),
        Some("no route matched; default_robot: ops"),
        "{out}"
    );
    let (code, _, err) = run_cli(&["check", "-c", cfg, "--route", "job"], None, &[]);
    assert_eq!(code, 1);
    assert!(err.starts_with("sluice: --route: "), "{err}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[robots.ops]\nprovider = \"console\"\n[[routes]]\nmatch_re = { job = \"dq_(\" }\nrobot = \"ops\"\n").unwrap();
    let (code, _, err) = run_cli(&["check", "-c", bad.to_str().unwrap()], None, &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("routes[0].match_re.job: invalid regex \"dq_(\""),
        "{err}"
    );
}
