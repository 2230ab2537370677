//! The DingTalk front door, end to end in-process: a sender posts to sluice's
//! `/robot/send?access_token=…` exactly as it would to DingTalk (real HTTP on 127.0.0.1), sluice
//! answers as DingTalk does once the message is durable, and the digest reaches the fake
//! DingTalk robot. Also: what is refused and how, severity rules, labels, mentions, and that
//! tokens, secrets and signs never reach logs or status.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::daemon::{ChildDaemon, Daemon, footer_of, footers_total, run_cli};
use support::fake_robot::{Accepted, FakeRobot, Limits, encode_query_value, sign, unix_ms};

const TOKEN: &str = "d1f0e5c2a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2";
const OPEN: &str = "0pen0pen0pen0pen0pen0pen0pen0pen0pen0pen0pen0pen0pen0pen0pen0pen";
const LOOSE: &str = "100se100se100se100se100se100se100se100se100se100se100se100se100s";
const ALIASED: &str = "a11a5a11a5a11a5a11a5a11a5a11a5a11a5a11a5a11a5a11a5a11a5a11a5a11";
const FULL: &str = "fu11fu11fu11fu11fu11fu11fu11fu11fu11fu11fu11fu11fu11fu11fu11fu11";
const PICS: &str = "p1c5p1c5p1c5p1c5p1c5p1c5p1c5p1c5p1c5p1c5p1c5p1c5p1c5p1c5p1c5p1c5";
const INGRESS: &str = "sluice-door-7Hq2vX9k";
const SECRET: &str = "SEC0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab";

fn limits() -> Limits {
    Limits {
        limit: 20,
        period: Duration::from_secs(2),
        lockout: Duration::from_secs(3),
    }
}

async fn fake() -> FakeRobot {
    let fake = FakeRobot::start(limits()).await;
    fake.add_robot(TOKEN, Some(SECRET), &[]);
    for t in [OPEN, LOOSE, ALIASED, FULL, PICS] {
        fake.add_robot(t, Some(SECRET), &[]);
    }
    fake
}

/// `dd` (signed, rules), `open` (no secret), `loose` (secret, require_sign = false), `aliased`
/// (ingress_token), `full` (max_pending = 1, a long window).
fn config(fake: &FakeRobot) -> String {
    format!(
        r#"
[server]
listen = "{{listen}}"
data_dir = "{{data_dir}}"

[defaults]
window = "150ms"
rate_limit = 20
rate_period = "2s"
retry_initial_backoff = "100ms"
retry_max_backoff = "400ms"
request_timeout = "2s"

[robots.dd]
webhook = "{dd}"
secret = "{SECRET}"
ingress_severity = "info"
[[robots.dd.ingress_rules]]
match = '^\[RESOLVED\]'
resolved = true
[[robots.dd.ingress_rules]]
match = '^\[FIRING:\d+\]'
severity = "error"
[[robots.dd.ingress_rules]]
match = '(^|\s)失败(\s|$)'
severity = "critical"

[robots.open]
webhook = "{open}"

[robots.loose]
webhook = "{loose}"
secret = "{SECRET}"
require_sign = false

[robots.aliased]
webhook = "{aliased}"
secret = "{SECRET}"
require_sign = false
ingress_token = "{INGRESS}"

[robots.full]
webhook = "{full}"
secret = "{SECRET}"
max_pending = 1
window = "1h"

[robots.pics]
webhook = "{pics}"
window = "1h"
"#,
        pics = fake.webhook(PICS),
        dd = fake.webhook(TOKEN),
        open = fake.webhook(OPEN),
        loose = fake.webhook(LOOSE),
        aliased = fake.webhook(ALIASED),
        full = fake.webhook(FULL),
    )
}

/// What a door answered: status, `Retry-After`, `Content-Type`, body.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    content_type: String,
    body: Value,
}

async fn post_raw(url: &str, body: Vec<u8>, ua: Option<&str>) -> Answer {
    let mut r = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json; charset=utf-8")
        .body(body);
    if let Some(ua) = ua {
        r = r.header("user-agent", ua);
    }
    let r = r.send().await.expect("POST");
    let header = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_string());
    let (retry_after, content_type) = (header("retry-after"), header("content-type"));
    Answer {
        status: r.status().as_u16(),
        retry_after,
        content_type: content_type.unwrap_or_default(),
        body: r.json().await.unwrap_or(Value::Null),
    }
}

/// Posts `body` to the door with `query` (`access_token=…&…`), signed for `secret` when given.
async fn send(d: &Daemon, query: &str, secret: Option<&str>, body: &Value) -> Answer {
    let mut url = d.url(&format!("/robot/send?{query}"));
    if let Some(secret) = secret {
        let ts = unix_ms();
        url.push_str(&format!(
            "&timestamp={ts}&sign={}",
            encode_query_value(&sign(secret, ts))
        ));
    }
    post_raw(&url, serde_json::to_vec(body).unwrap(), None).await
}

fn ok() -> Value {
    json!({"errcode": 0, "errmsg": "ok"})
}

fn text(content: &str) -> Value {
    json!({"msgtype": "text", "text": {"content": content}})
}

fn markdown(title: &str, text: &str) -> Value {
    json!({"msgtype": "markdown", "markdown": {"title": title, "text": text}})
}

/// Every alert the digests accepted so far cover, from the digest API.
async fn stored_alerts(d: &Daemon, accepted: &[Accepted]) -> Vec<Value> {
    let mut out = Vec::new();
    for a in accepted {
        let (id, _) = footer_of(&a.text);
        let (status, digest) = d.get(&format!("/v1/digests/{id}")).await;
        assert_eq!(status, 200, "{digest}");
        out.extend(digest["alerts"].as_array().unwrap().iter().cloned());
    }
    out
}

fn has(accepted: &[Accepted], needle: &str) -> bool {
    accepted.iter().any(|a| a.text.contains(needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_type_is_taken_and_the_mergeable_ones_reach_the_robot() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake), dir.path()).await;
    let q = format!("access_token={TOKEN}");
    let bodies = [
        text("disk full on db1\nused 99%"),
        markdown("[DOWN] api", "### [DOWN] api\nno answer"),
        json!({"msgtype": "link", "link": {"title": "weekly report", "text": "is ready",
            "messageUrl": "https://r.example/1", "picUrl": ""}}),
        json!({"msgtype": "actionCard", "actionCard": {"title": "etl #7 失败", "text": "see the log",
            "btns": [{"title": "控制台", "actionURL": "https://j.example/7/console"}]}}),
    ];
    for b in &bodies {
        let a = send(&d, &q, Some(SECRET), b).await;
        assert_eq!((a.status, &a.body), (200, &ok()), "{b}");
        assert_eq!(a.content_type, "application/json");
    }
    let accepted = fake
        .wait_for(TOKEN, Duration::from_secs(10), |a| footers_total(a) >= 4)
        .await;
    let alerts = stored_alerts(&d, &accepted).await;
    let by_title = |t: &str| {
        alerts
            .iter()
            .find(|a| a["title"] == t)
            .unwrap_or_else(|| panic!("no alert {t:?} in {alerts:?}"))
            .clone()
    };
    let link = by_title("weekly report");
    assert_eq!(link["text"], "is ready\n\n[open](https://r.example/1)");
    assert_eq!(link["labels"]["msgtype"], "link");
    assert_eq!(link["source"], "dingtalk:dd");
    let card = by_title("etl #7 失败");
    assert_eq!(card["severity"], "critical", "the 失败 rule: {card}");
    assert!(
        card["text"]
            .as_str()
            .unwrap()
            .contains("[控制台](https://j.example/7/console)")
    );
    assert_eq!(
        by_title("disk full on db1")["severity"],
        "info",
        "ingress_severity"
    );

    // feedCard and image cannot merge: stored (with their body) to be sent alone.
    let feed = json!({"msgtype": "feedCard", "feedCard": {"links": [
        {"title": "release notes", "messageURL": "https://n.example", "picURL": "https://p.example/1.png"}]}});
    let image = json!({"msgtype": "image", "image": {"picURL": "https://p.example/2.png"}});
    for b in [&feed, &image] {
        let a = send(&d, &format!("access_token={PICS}"), None, b).await;
        assert_eq!((a.status, &a.body), (200, &ok()));
    }
    let s = d.robot_status("pics").await;
    let taken = s["pending"].as_u64().unwrap_or(0) + s["alerts_delivered"].as_u64().unwrap();
    assert_eq!(taken, 2, "the feedCard and the image are stored: {s}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signs_are_checked_as_dingtalk_checks_them() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake), dir.path()).await;
    let q = format!("access_token={TOKEN}");
    let body = text("signed");
    let errmsg = |a: &Answer| a.body["errmsg"].as_str().unwrap_or_default().to_string();

    // Unsigned, to a robot with a secret: refused.
    let a = send(&d, &q, None, &body).await;
    assert_eq!((a.status, a.body["errcode"].as_i64()), (200, Some(310000)));
    assert!(
        errmsg(&a).starts_with("invalid timestamp (sluice:"),
        "{}",
        errmsg(&a)
    );
    // Signed with another secret.
    let a = send(&d, &q, Some("SECnot-the-secret"), &body).await;
    assert_eq!(a.body["errcode"], 310000);
    assert!(
        errmsg(&a).starts_with("sign not match (sluice: expected"),
        "{}",
        errmsg(&a)
    );
    assert!(!errmsg(&a).contains(SECRET));
    // Two hours old.
    let ts = unix_ms() - 7_200_000;
    let url = d.url(&format!(
        "/robot/send?{q}&timestamp={ts}&sign={}",
        encode_query_value(&sign(SECRET, ts))
    ));
    let a = post_raw(&url, serde_json::to_vec(&body).unwrap(), None).await;
    assert_eq!(a.body["errcode"], 310000);
    assert!(errmsg(&a).starts_with("invalid timestamp"));
    // A '+' sent unencoded arrives as a space: refused, as on DingTalk.
    let mut ts = unix_ms();
    while !sign(SECRET, ts).contains('+') {
        ts += 1;
    }
    let raw_sign = sign(SECRET, ts).replace('/', "%2F").replace('=', "%3D");
    let url = d.url(&format!("/robot/send?{q}&timestamp={ts}&sign={raw_sign}"));
    let a = post_raw(&url, serde_json::to_vec(&body).unwrap(), None).await;
    assert_eq!(a.body["errcode"], 310000, "{:?}", a.body);
    // Encoded once, the same sign goes through.
    let url = d.url(&format!(
        "/robot/send?{q}&timestamp={ts}&sign={}",
        encode_query_value(&sign(SECRET, ts))
    ));
    let a = post_raw(&url, serde_json::to_vec(&body).unwrap(), None).await;
    assert_eq!(a.body, ok());

    // No secret: no sign needed. require_sign = false: none needed, but a wrong one fails.
    assert_eq!(
        send(&d, &format!("access_token={OPEN}"), None, &body)
            .await
            .body,
        ok()
    );
    let loose = format!("access_token={LOOSE}");
    assert_eq!(send(&d, &loose, None, &body).await.body, ok());
    assert_eq!(send(&d, &loose, Some(SECRET), &body).await.body, ok());
    assert_eq!(
        send(&d, &loose, Some("SECwrong"), &body).await.body["errcode"],
        310000
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tokens_bad_bodies_and_full_queues_get_dingtalks_answers() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake), dir.path()).await;
    let body = text("x");
    // Two unknown tokens, and none: the same answer, naming no token.
    let a1 = send(&d, "access_token=nope", None, &body).await;
    let a2 = send(&d, &format!("access_token={}", "f".repeat(64)), None, &body).await;
    let a3 = send(&d, "", None, &body).await;
    assert_eq!(
        (a1.status, a1.body["errcode"].as_i64()),
        (200, Some(300005))
    );
    assert_eq!(a1.body, a2.body);
    assert_eq!(a1.body, a3.body);
    let msg = a1.body["errmsg"].as_str().unwrap();
    assert!(msg.starts_with("token is not exist (sluice:"), "{msg}");
    for t in [TOKEN, OPEN, ALIASED, INGRESS] {
        assert!(!msg.contains(t));
    }
    // ingress_token selects its robot; its real token no longer does.
    assert_eq!(
        send(&d, &format!("access_token={INGRESS}"), None, &body)
            .await
            .body,
        ok()
    );
    assert_eq!(
        send(&d, &format!("access_token={ALIASED}"), None, &body)
            .await
            .body["errcode"],
        300005
    );

    let q = format!("access_token={OPEN}");
    let url = d.url(&format!("/robot/send?{q}"));
    let a = post_raw(&url, b"{not json".to_vec(), None).await;
    assert_eq!(a.body["errcode"], 40035);
    assert!(a.body["errmsg"].as_str().unwrap().contains("not JSON"));
    let a = send(&d, &q, None, &json!({"msgtype": "video", "video": {}})).await;
    assert_eq!(a.body["errcode"], 400105);
    assert!(a.body["errmsg"].as_str().unwrap().contains("\"video\""));
    let a = send(&d, &q, None, &json!({"msgtype": "text", "text": {}})).await;
    assert_eq!(a.body["errcode"], 40035);
    assert!(
        a.body["errmsg"]
            .as_str()
            .unwrap()
            .contains("text.content: missing")
    );
    let big = text(&"x".repeat(20_001));
    let a = send(&d, &q, None, &big).await;
    assert_eq!((a.status, a.body["errcode"].as_i64()), (200, Some(460101)));
    // Just under DingTalk's limit is taken, its text cut to sluice's with a marker.
    let near = text(&format!("long one\n{}", "y".repeat(19_900)));
    assert_eq!(send(&d, &q, None, &near).await.body, ok());

    // max_pending reached: not stored, 503, Retry-After, DingTalk's "busy".
    let full = format!("access_token={FULL}");
    assert_eq!(
        send(&d, &full, Some(SECRET), &text("first")).await.body,
        ok()
    );
    let a = send(&d, &full, Some(SECRET), &text("second")).await;
    assert_eq!(a.status, 503);
    assert!(a.retry_after.is_some());
    assert_eq!(a.body["errcode"], -1);
    assert!(
        a.body["errmsg"]
            .as_str()
            .unwrap()
            .starts_with("系统繁忙 (sluice: not stored, retry later")
    );
    assert_eq!(
        d.robot_status("full").await["pending"],
        1,
        "the refused one was not queued"
    );

    // A browser's cross-site request is refused, as on every route.
    let r = reqwest::Client::new()
        .post(d.url(&format!("/robot/send?{q}")))
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "text/plain")
        .body(serde_json::to_vec(&text("csrf")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolved_folds_with_firing_and_labels_and_mentions_are_kept() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake), dir.path()).await;
    let q = format!("access_token={TOKEN}&job=grafana");
    let firing = markdown("[FIRING:1] disk full", "db1 at 99%");
    let resolved = markdown("[RESOLVED] disk full", "db1 at 40%");
    assert_eq!(send(&d, &q, Some(SECRET), &firing).await.body, ok());
    assert_eq!(send(&d, &q, Some(SECRET), &resolved).await.body, ok());
    // DingtalkChatbot's text with a mention: `\n@mobile` echoed in the text.
    let ts = unix_ms();
    let url = d.url(&format!(
        "/robot/send?access_token={TOKEN}&timestamp={ts}&sign={}",
        encode_query_value(&sign(SECRET, ts))
    ));
    let chatbot = json!({"msgtype": "text", "text": {"content": "backup done\n@13800000000"},
        "at": {"atMobiles": ["13800000000"], "atUserIds": ["u42"], "isAtAll": true}});
    let a = post_raw(
        &url,
        serde_json::to_vec(&chatbot).unwrap(),
        Some("python-requests/2.31.0"),
    )
    .await;
    assert_eq!(a.body, ok());
    let accepted = fake
        .wait_for(TOKEN, Duration::from_secs(10), |a| {
            has(a, "disk full") && has(a, "backup done")
        })
        .await;
    let mut alerts = stored_alerts(&d, &accepted).await;
    while alerts.len() < 3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let accepted = fake.accepted(TOKEN);
        alerts = stored_alerts(&d, &accepted).await;
    }
    let find = |t: &str| alerts.iter().find(|a| a["title"] == t).unwrap().clone();
    let (f, r) = (find("[FIRING:1] disk full"), find("[RESOLVED] disk full"));
    assert_eq!(f["status"], "firing");
    assert_eq!(f["severity"], "error");
    assert_eq!(r["status"], "resolved");
    assert_eq!(f["fingerprint"], r["fingerprint"], "one group: {f} {r}");
    assert_eq!(f["labels"]["job"], "grafana");
    let c = find("backup done");
    assert_eq!(c["labels"]["job"], "python-requests");
    assert!(c.get("text").is_none(), "the echoed @mobile is gone: {c}");
    assert_eq!(c["extra"]["platform"], "dingtalk");
    assert_eq!(c["extra"]["mobiles"], json!(["13800000000"]));
    assert_eq!(c["extra"]["user_ids"], json!(["u42"]));
    assert_eq!(c["extra"]["all"], true);
    assert!(f.get("extra").is_none(), "no mentions, no extra: {f}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_secrets_and_signs_never_reach_logs_or_status() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let mut d = ChildDaemon::start(&config(&fake), dir.path());
    d.wait_healthy().await;
    let ts = unix_ms();
    let the_sign = sign(SECRET, ts);
    let signed = d.url(&format!(
        "/robot/send?access_token={TOKEN}&timestamp={ts}&sign={}",
        encode_query_value(&the_sign)
    ));
    let a = post_raw(&signed, serde_json::to_vec(&text("logged?")).unwrap(), None).await;
    assert_eq!(a.body, ok());
    let bad = d.url(&format!(
        "/robot/send?access_token={TOKEN}&timestamp={ts}&sign=wrong"
    ));
    post_raw(&bad, serde_json::to_vec(&text("x")).unwrap(), None).await;
    let guessed = d.url("/robot/send?access_token=guessed-token-1234");
    post_raw(&guessed, serde_json::to_vec(&text("x")).unwrap(), None).await;
    let aliased = d.url(&format!("/robot/send?access_token={INGRESS}"));
    post_raw(&aliased, serde_json::to_vec(&text("y")).unwrap(), None).await;
    fake.wait_for(TOKEN, Duration::from_secs(10), |a| has(a, "logged?"))
        .await;
    let status = reqwest::get(d.url("/v1/status"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (_, check_out, _) = run_cli(&["check", "-c", d.config_path.to_str().unwrap()], None, &[]);
    let (code, _) = d.terminate(Duration::from_secs(5));
    assert_eq!(code, Some(0));
    let log = d.stderr();
    assert!(!log.is_empty());
    for (what, text) in [("log", &log), ("status", &status), ("check", &check_out)] {
        for secret in [
            TOKEN,
            SECRET,
            INGRESS,
            the_sign.as_str(),
            "guessed-token-1234",
        ] {
            assert!(!text.contains(secret), "{what} leaks {secret}: {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_members_token_queues_for_its_pool() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let template = format!(
        r#"
[server]
listen = "{{listen}}"
data_dir = "{{data_dir}}"
[defaults]
window = "100ms"
rate_limit = 20
rate_period = "2s"
request_timeout = "2s"
[robots.a]
webhook = "{a}"
secret = "{SECRET}"
[robots.b]
webhook = "{b}"
secret = "{SECRET}"
[pools.oncall]
robots = ["a", "b"]
"#,
        a = fake.webhook(TOKEN),
        b = fake.webhook(OPEN),
    );
    let d = Daemon::start(&template, dir.path()).await;
    let a = send(
        &d,
        &format!("access_token={OPEN}"),
        Some(SECRET),
        &text("via b"),
    )
    .await;
    assert_eq!(a.body, ok());
    let s = d
        .wait_status("oncall", Duration::from_secs(10), |s| {
            s["alerts_delivered"].as_u64() >= Some(1)
        })
        .await;
    assert_eq!(s["alerts_delivered"], 1, "{s}");
    let delivered: Vec<Accepted> = [TOKEN, OPEN]
        .iter()
        .flat_map(|t| fake.accepted(t))
        .collect();
    assert_eq!(footers_total(&delivered), 1);
    d.stop().await;
}

/// The doors work out each robot's token once per config: a reload that changes a robot's
/// `ingress_token` (or drops it, or drops the robot) changes which token selects it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_which_token_selects_a_robot() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    let first = config(&fake);
    let d = Daemon::start_file(&first, &dir.path().join("data"), &path).await;
    let body = text("the token may change");
    let code = |a: Answer| a.body["errcode"].as_i64();
    let post = |token: String| {
        let d = &d;
        let body = &body;
        async move { send(d, &format!("access_token={token}"), None, body).await }
    };
    assert_eq!(code(post(INGRESS.to_string()).await), Some(0));
    assert_eq!(code(post(ALIASED.to_string()).await), Some(300005));

    // ingress_token replaced: the new one selects the robot, the old one nothing.
    let renamed = "sluice-door-2Kp8wQ4m";
    d.rewrite(&first.replace(INGRESS, renamed), &path);
    let (status, answer) = d.reload().await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(code(post(renamed.to_string()).await), Some(0));
    assert_eq!(code(post(INGRESS.to_string()).await), Some(300005));

    // ingress_token dropped: the webhook's own token selects the robot again.
    let line = format!("ingress_token = \"{INGRESS}\"\n");
    assert!(first.contains(&line));
    d.rewrite(&first.replace(&line, ""), &path);
    let (status, answer) = d.reload().await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(code(post(ALIASED.to_string()).await), Some(0));
    assert_eq!(code(post(renamed.to_string()).await), Some(300005));
}
