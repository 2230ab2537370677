//! End to end with a generic webhook robot: sluice → real HTTP on 127.0.0.1 → a fake
//! Mattermost-like receiver with a bearer token, a body cap and a rolling limit. The body is the
//! robot's `body_template`.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::daemon::{Daemon, footer_of, num};
use support::fake_receiver::{Accepted, FakeReceiver, Limits};

const TOKEN: &str = "tok-5f2b9c";

fn limits() -> Limits {
    Limits {
        limit: 5,
        period: Duration::from_millis(500),
        max_body: 6_000,
    }
}

/// One webhook robot `mm` posting Mattermost's `{"text": …}` with a bearer token.
fn config(fake: &FakeReceiver, window: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "{{listen}}"
data_dir = "{{data_dir}}"

[robots.mm]
provider = "webhook"
webhook = "{url}"
headers = {{ Authorization = "Bearer {TOKEN}" }}
body_template = '{{"text": {{{{ (title ~ "\n\n" ~ text)|json }}}}, "username": "sluice"}}'
max_bytes = "5KiB"
window = "{window}"
rate_limit = 5
rate_period = "500ms"
retry_initial_backoff = "100ms"
retry_max_backoff = "400ms"
blocked_probe = "400ms"
request_timeout = "2s"
{extra}
"#,
        url = fake.url("town-square"),
    )
}

async fn fake() -> FakeReceiver {
    let fake = FakeReceiver::start(limits()).await;
    fake.add_hook("town-square", TOKEN);
    fake
}

fn alerts(prefix: &str, n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                let severity = ["critical", "error", "warning", "info"][i % 4];
                json!({
                    "robot": "mm",
                    "title": format!("{prefix} {i} \"quoted\" \\ </script>"),
                    "severity": severity,
                    "labels": {"job": format!("dq_{}", i % 7)},
                })
            })
            .collect(),
    )
}

fn text(a: &Accepted) -> &str {
    a.body["text"].as_str().expect("a text")
}

fn total(accepted: &[Accepted]) -> u64 {
    accepted.iter().map(|a| footer_of(text(a)).1).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_10000_alerts_reaches_the_receiver_in_its_own_json_within_its_cap() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake, "300ms", ""), dir.path()).await;
    for c in 0..10 {
        let (status, body) = d.post(&alerts(&format!("check c{c}"), 1_000)).await;
        assert_eq!(status, 202, "{body}");
    }
    fake.wait_for("town-square", Duration::from_secs(15), |a| {
        total(a) >= 10_000
    })
    .await;
    let got = fake.accepted("town-square");
    assert_eq!(total(&got), 10_000, "every alert counted exactly once");
    assert!(got.len() <= 6, "{} messages for one burst", got.len());
    assert!(
        fake.refused("town-square").is_empty(),
        "{:?}",
        fake.refused("town-square")
    );
    for a in &got {
        assert!(a.bytes <= 5 * 1024, "a body of {} bytes", a.bytes);
        assert_eq!(a.body["username"], "sluice");
        // The title and the text, as the template put them; alert content stayed inside its
        // JSON string.
        assert!(text(a).starts_with("mm: "), "{}", text(a));
        assert!(text(a).contains("\"quoted\" \\"), "{}", text(a));
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_blocks_and_a_refused_body_is_dead_lettered() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    // 401: the credential is wrong; nothing is dead-lettered while it is.
    fake.force("town-square", &[401, 401]);
    let d = Daemon::start(&config(&fake, "50ms", ""), dir.path()).await;
    d.post(&alerts("first", 3)).await;
    let s = d
        .wait_status("mm", Duration::from_secs(3), |s| s["state"] == "blocked")
        .await;
    assert!(
        s["last_error"].as_str().unwrap().contains("HTTP 401"),
        "{s}"
    );
    assert_eq!(num(&s, "dead"), 0);
    fake.wait_for("town-square", Duration::from_secs(5), |a| total(a) >= 3)
        .await;
    // 422: this message is refused; it is dead-lettered and the next goes out.
    fake.force("town-square", &[422]);
    d.post(&alerts("refused", 2)).await;
    let s = d
        .wait_status("mm", Duration::from_secs(3), |s| num(s, "dead") == 1)
        .await;
    assert!(
        s["last_error"].as_str().unwrap().contains("HTTP 422"),
        "{s}"
    );
    d.post(&alerts("after", 4)).await;
    fake.wait_for("town-square", Duration::from_secs(5), |a| total(a) >= 7)
        .await;
    d.stop().await;
}

#[test]
fn a_webhook_config_is_checked_and_its_headers_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    let write = |robot: &str| {
        std::fs::write(
            &path,
            format!(
                "[server]\nlisten = \"127.0.0.1:9\"\ndata_dir = \"{}\"\n\n[robots.mm]\n{robot}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
    };
    let check = || support::daemon::run_cli(&["check", "-c", path.to_str().unwrap()], None, &[]);
    write(
        "provider = \"webhook\"\nwebhook = \"https://chat.example.com/hooks/x\"\nheaders = { Authorization = \"Bearer s3cr3t-token\" }\n",
    );
    let (code, out, err) = check();
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("s3cr3t"), "{out}");
    assert!(out.contains("provider webhook"), "{out}");
    assert!(out.contains("  | sluice digest #1 · "), "{out}");

    let cases = [
        (
            "provider = \"webhook\"\nwebhook = \"https://c.example/h\"\nbody_template = '{\"text\": \"{{ text }}\"}'\n",
            "robots.mm.body_template: does not write JSON for a sample digest",
        ),
        (
            "provider = \"webhook\"\nwebhook = \"https://c.example/h\"\nmax_bytes = 100\n",
            "robots.mm.max_bytes: 100 is out of range; expected 2KiB to 16MiB",
        ),
        (
            "provider = \"webhook\"\nwebhook = \"https://c.example/h\"\nheaders = { \"bad name\" = \"x\" }\n",
            "robots.mm.headers: \"bad name\" is not an HTTP header name",
        ),
        (
            "provider = \"dingtalk\"\nwebhook = \"https://oapi.dingtalk.com/robot/send?access_token=t\"\nheaders = { A = \"b\" }\n",
            "robots.mm: headers and max_bytes are for provider \"webhook\" robots",
        ),
        (
            "provider = \"webhook\"\nwebhook = \"https://c.example/h\"\nsecret = \"x\"\n",
            "robots.mm.secret: a webhook robot signs nothing",
        ),
    ];
    for (robot, want) in cases {
        write(robot);
        let (code, out, err) = check();
        assert_ne!(code, 0, "{robot}: {out}");
        assert!(err.contains(want), "{robot}: {err}");
    }
}
