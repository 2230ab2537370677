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

const ONE_CONSOLE: &str = r#"
[server]
listen = "{listen}"
data_dir = "{data_dir}"
allowed_hosts = ["sluice.internal"]

[defaults]
window = "1h"

[robots.ops]
provider = "console"
"#;

/// A raw request as a browser would make it: method, path, headers, body.
async fn browser(d: &Daemon, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(d.url(path))
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Finding 3: a plain HTML form on any web site posted a critical alert (and triggered reload,
/// replay and redeliver), and a DNS-rebinding page could read the status and digests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_page_cannot_post_alerts_trigger_actions_or_read_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(ONE_CONSOLE, dir.path()).await;
    let alert =
        r#"{"title": "pwned", "severity": "critical", "labels": {"owner_mobile": "13800000000"}}"#;
    // What a form can send without a preflight, from any site.
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let (status, body) = browser(&d, "/v1/alerts", &[("content-type", ct)], alert).await;
        assert_eq!(status, 415, "{ct}: {body}");
        assert!(body.contains("application/json"), "{body}");
    }
    let (status, body) = browser(&d, "/v1/alerts", &[], alert).await;
    assert_eq!(status, 415, "{body}");
    for path in [
        "/-/reload",
        "/v1/dead/replay",
        "/v1/digests/0/redeliver",
        "/v1/queue/move",
    ] {
        let form = [("content-type", "application/x-www-form-urlencoded")];
        let (status, body) = browser(&d, path, &form, "").await;
        assert_eq!(status, 415, "{path}: {body}");
    }
    // A page that managed to send JSON (or a fetch without a body) still names its site.
    let json = ("content-type", "application/json");
    let (status, body) = browser(
        &d,
        "/v1/alerts",
        &[json, ("origin", "https://evil.example")],
        alert,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Origin"), "{body}");
    let (status, body) = browser(&d, "/-/reload", &[("sec-fetch-site", "cross-site")], "").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(num(&d.robot_status("ops").await, "pending"), 0);
    // DNS rebinding: the page's own name resolved to 127.0.0.1, then read as same-origin.
    let rebound = reqwest::Client::new()
        .get(d.url("/v1/status"))
        .header("host", format!("rebind.evil.example:{}", d.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status().as_u16(), 403);
    let text = rebound.text().await.unwrap();
    assert!(
        text.contains("server.allowed_hosts") && !text.contains("\"robots\""),
        "{text}"
    );
    // Programs go on working: JSON from a program, the CLI, a configured name, the own origin.
    let own = format!("http://{}", d.addr);
    let (status, body) = browser(&d, "/v1/alerts", &[json, ("origin", &own)], alert).await;
    assert_eq!(status, 202, "{body}");
    let named = reqwest::Client::new()
        .get(d.url("/v1/status"))
        .header("host", format!("sluice.internal:{}", d.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(named.status().as_u16(), 200);
    let server = d.addr.to_string();
    let (code, _, err) = support::daemon::run_cli(
        &[
            "send",
            "--server",
            &server,
            "--robot",
            "ops",
            "--title",
            "from the CLI",
        ],
        None,
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = support::daemon::run_cli(&["status", "--server", &server], None, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ops"), "{out}");
    assert_eq!(num(&d.robot_status("ops").await, "pending"), 2);
    d.stop().await;
}
