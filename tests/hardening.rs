//! Issue 10's findings, each as the test that failed before its fix: what an attacker or bad luck
//! did to sluice on 127.0.0.1, and what sluice does now.

mod support;

use serde_json::{Value, json};
use support::daemon::{Daemon, num};

const BIG_BODIES: &str = r#"
[server]
listen = "{listen}"
data_dir = "{data_dir}"
max_body = "32MiB"

[defaults]
window = "1h"

[robots.ops]
provider = "console"
"#;

/// Finding 2: a 10 MB request (its alerts more than one 8 MiB segment) answered 503 "chunk
/// larger than a segment", failed the store and restarted every robot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_huge_request_is_accepted_and_does_not_fail_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(BIG_BODIES, dir.path()).await;
    let text = "row 12 of dt=2026-11-30 has a null user_id; ".repeat(340);
    let alerts: Vec<Value> = (0..700)
        .map(|i| json!({"title": format!("check {i} failed"), "text": text}))
        .collect();
    let body = Value::Array(alerts);
    assert!(serde_json::to_vec(&body).unwrap().len() > 10_000_000);
    let (status, answer) = d.post(&body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["accepted"], 700);
    let (status, _) = d.get("/healthz").await;
    assert_eq!(status, 200);
    let (status, answer) = d.post(&json!({"title": "the next one"})).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(num(&d.robot_status("ops").await, "pending"), 701);
    d.stop().await;
}
