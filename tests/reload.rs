//! Hot reload: robots added, changed and removed while alerts are queued and the rate limit is
//! in use; an invalid config refused; SIGHUP on the real binary; a removed robot's queue kept,
//! then delivered when it comes back or moved to another robot.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::daemon::{ChildDaemon, Daemon, footers_total, num, run_cli};
use support::fake_robot::{FakeRobot, Limits};

const SECRET: &str = "SECreload0123456789";

/// Robot `a` at 4 sends per 3 s (the fake robot enforces the same and locks out for 5 s), with
/// `a_window` as its window, and robot `b` if `with_b`; `a` is left out when `a_window` is None.
fn config(fake: &FakeRobot, a_window: Option<&str>, with_b: bool) -> String {
    let mut text = String::from(
        r#"
[server]
listen = "{listen}"
data_dir = "{data_dir}"

[defaults]
rate_limit = 4
rate_period = "3s"
retry_initial_backoff = "100ms"
retry_max_backoff = "400ms"
throttle_backoff = "1s"
request_timeout = "2s"
"#,
    );
    if let Some(window) = a_window {
        text.push_str(&format!(
            "\n[robots.a]\nwebhook = \"{}\"\nsecret = \"{SECRET}\"\nwindow = \"{window}\"\n",
            fake.webhook("a-token")
        ));
    }
    if with_b {
        text.push_str(&format!(
            "\n[robots.b]\nwebhook = \"{}\"\nsecret = \"{SECRET}\"\nwindow = \"50ms\"\n",
            fake.webhook("b-token")
        ));
    }
    text
}

async fn fake() -> FakeRobot {
    let fake = FakeRobot::start(Limits {
        limit: 4,
        period: Duration::from_secs(3),
        lockout: Duration::from_secs(5),
    })
    .await;
    fake.add_robot("a-token", Some(SECRET), &[]);
    fake.add_robot("b-token", Some(SECRET), &[]);
    fake
}

fn alerts(robot: &str, prefix: &str, n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"robot": robot, "title": format!("{prefix} {i}"), "severity": "error"}))
            .collect(),
    )
}

async fn wait_for_footers(fake: &FakeRobot, token: &str, total: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = footers_total(&fake.accepted(token));
        if got >= total {
            assert_eq!(got, total, "{token} received more alerts than were sent");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{token}: {got} of {total} alerts delivered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn names(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

async fn unconfigured(d: &Daemon) -> Value {
    d.get("/v1/status").await.1["unconfigured"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_changes_robots_keeping_queues_and_rate_history() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    let d = Daemon::start_file(
        &config(&fake, Some("50ms"), false),
        &dir.path().join("data"),
        &path,
    )
    .await;

    // Use up a's limit: 4 digests, one alert each.
    for i in 0..4u64 {
        assert_eq!(d.post(&alerts("a", &format!("burst {i}"), 1)).await.0, 202);
        wait_for_footers(&fake, "a-token", i + 1, Duration::from_secs(3)).await;
    }

    // Change a, add b. The new task for a must remember the 4 sends it cannot repeat yet.
    d.rewrite(&config(&fake, Some("60ms"), true), &path);
    let (status, r) = d.reload().await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(names(&r["added"]), ["b"]);
    assert_eq!(names(&r["changed"]), ["a"]);
    assert!(names(&r["removed"]).is_empty());
    assert_eq!(d.post(&alerts("a", "after reload", 1)).await.0, 202);
    assert_eq!(d.post(&alerts("b", "new robot", 2)).await.0, 202);
    wait_for_footers(&fake, "b-token", 2, Duration::from_secs(3)).await;
    wait_for_footers(&fake, "a-token", 5, Duration::from_secs(6)).await;
    assert_eq!(fake.throttled("a-token"), 0, "the rate history was lost");
    assert!(fake.max_in_window("a-token", Duration::from_secs(3)) <= 4);
    // The counters carried over the change.
    d.wait_status("a", Duration::from_secs(2), |s| {
        num(s, "alerts_delivered") == 5
    })
    .await;

    // Queue 3 alerts for a (long window), then remove it: they stay, visible.
    d.rewrite(&config(&fake, Some("1h"), true), &path);
    assert_eq!(d.reload().await.0, 200);
    assert_eq!(d.post(&alerts("a", "queued", 3)).await.0, 202);
    d.rewrite(&config(&fake, None, true), &path);
    let (status, r) = d.reload().await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(names(&r["removed"]), ["a"]);
    assert_eq!(names(&r["unchanged"]), ["b"]);
    let left = unconfigured(&d).await;
    assert_eq!(left[0]["robot"], "a", "{left}");
    assert_eq!(left[0]["pending"], 3, "{left}");
    let (status, body) = d.post(&alerts("a", "too late", 1)).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unknown robot \"a\"")
    );

    // a comes back: its queue goes out.
    d.rewrite(&config(&fake, Some("60ms"), true), &path);
    let (status, r) = d.reload().await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(names(&r["added"]), ["a"]);
    wait_for_footers(&fake, "a-token", 8, Duration::from_secs(6)).await;
    assert_eq!(unconfigured(&d).await, json!([]));

    // Queue 2 more, remove a again, and move its queue to b with the CLI.
    d.rewrite(&config(&fake, Some("1h"), true), &path);
    assert_eq!(d.reload().await.0, 200);
    assert_eq!(d.post(&alerts("a", "orphaned", 2)).await.0, 202);
    d.rewrite(&config(&fake, None, true), &path);
    let (code, out, err) = run_cli(&["reload", "--server", &d.url("")], None, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("removed a;"), "{out}");
    let r = reqwest::Client::new()
        .post(d.url("/v1/queue/move"))
        .header("content-type", "application/json")
        .body(r#"{"robot": "a"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let body = r.text().await.unwrap();
    assert!(body.contains("missing field `to`"), "{body}");
    let (code, _, err) = run_cli(
        &["move", "--server", &d.url(""), "--robot", "b", "--to", "b"],
        None,
        &[],
    );
    assert_eq!(code, 1);
    assert!(err.contains("robot \"b\" is configured"), "{err}");
    let (code, out, err) = run_cli(
        &["move", "--server", &d.url(""), "--robot", "a", "--to", "b"],
        None,
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("moved 2 alerts from a to b"), "{out}");
    wait_for_footers(&fake, "b-token", 4, Duration::from_secs(3)).await;
    assert_eq!(unconfigured(&d).await, json!([]));
    let (code, _, err) = run_cli(
        &["move", "--server", &d.url(""), "--robot", "a", "--to", "b"],
        None,
        &[],
    );
    assert_eq!(code, 1);
    assert!(err.contains("robot \"a\" has nothing queued"), "{err}");

    assert_eq!(fake.throttled("a-token") + fake.throttled("b-token"), 0);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_is_refused_and_the_running_one_kept() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    let good = config(&fake, Some("50ms"), true);
    let d = Daemon::start_file(&good, &dir.path().join("data"), &path).await;

    for (bad, expected) in [
        (
            good.replace("window = \"50ms\"", "window = \"soon\""),
            "robots.a.window: invalid duration \"soon\"",
        ),
        (good.replace("[robots.b]", "[robots.b"), "sluice.toml:"),
        (
            good.replace("rate_limit = 4", "rate_limit = 4\ncolour = \"red\""),
            "colour",
        ),
    ] {
        d.rewrite(&bad, &path);
        let (status, body) = d.reload().await;
        assert_eq!(status, 422, "{body}");
        let e = body["error"].as_str().unwrap();
        assert!(e.contains("the running one stays"), "{e}");
        assert!(e.contains(expected), "{e} lacks {expected}");
    }
    // Both robots still run on the old config.
    assert_eq!(d.post(&alerts("a", "still here", 1)).await.0, 202);
    assert_eq!(d.post(&alerts("b", "still here", 1)).await.0, 202);
    wait_for_footers(&fake, "a-token", 1, Duration::from_secs(3)).await;
    wait_for_footers(&fake, "b-token", 1, Duration::from_secs(3)).await;

    // A key that needs a restart is reported, and its running value kept.
    d.rewrite(
        &good.replace("listen = \"{listen}\"", "listen = \"127.0.0.1:1\""),
        &path,
    );
    let (status, r) = d.reload().await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(names(&r["needs_restart"]), ["server.listen"]);
    assert_eq!(d.get("/healthz").await.0, 200);
    d.stop().await;
}

#[tokio::test]
async fn without_a_config_file_there_is_nothing_to_reload() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(
        "[server]\nlisten = \"{listen}\"\ndata_dir = \"{data_dir}\"\n[robots.ops]\nprovider = \"console\"\n",
        dir.path(),
    )
    .await;
    let (status, body) = d.reload().await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("-c"), "{body}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let one = "[server]\nlisten = \"{listen}\"\ndata_dir = \"{data_dir}\"\n[robots.ops]\nprovider = \"console\"\n";
    let mut d = ChildDaemon::start(one, dir.path());
    d.wait_healthy().await;
    let two = format!("{one}[robots.dq]\nprovider = \"console\"\n");
    std::fs::write(
        &d.config_path,
        support::daemon::render_config(&two, &dir.path().join("data"), d.addr),
    )
    .unwrap();
    d.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = d.status().await;
        let robots: Vec<&str> = s["robots"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["robot"].as_str())
            .collect();
        if robots == ["dq", "ops"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not add dq: {robots:?}\n{}",
            d.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(d.stderr().contains("config reloaded"), "{}", d.stderr());
    let (code, _) = d.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", d.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_a_runaway_template_is_refused_and_the_daemon_goes_on() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    let good = config(&fake, Some("50ms"), false);
    let d = Daemon::start_file(&good, &dir.path().join("data"), &path).await;

    // 10^10 loop steps: loading it used to hold the reload (and every later one) forever.
    let runaway = good.replace(
        "window = \"50ms\"",
        "window = \"50ms\"\nbody_template = '''{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}'''",
    );
    assert_ne!(runaway, good);
    d.rewrite(&runaway, &path);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let started = Instant::now();
    let r = http
        .post(d.url("/-/reload"))
        .send()
        .await
        .expect("the reload answers within 10 s");
    assert_eq!(r.status().as_u16(), 422);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let e = r.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(e.contains("the running one stays"), "{e}");
    assert!(
        e.contains("robots.a.body_template: line 1: uses more than 5,000,000 steps"),
        "{e}"
    );

    // The running config still delivers, and the next reload is taken.
    assert_eq!(d.post(&alerts("a", "still here", 1)).await.0, 202);
    wait_for_footers(&fake, "a-token", 1, Duration::from_secs(3)).await;
    d.rewrite(&config(&fake, Some("50ms"), true), &path);
    let (status, r) = d.reload().await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(names(&r["added"]), ["b"]);
    assert_eq!(d.post(&alerts("b", "new robot", 1)).await.0, 202);
    wait_for_footers(&fake, "b-token", 1, Duration::from_secs(3)).await;
    d.stop().await;
}
