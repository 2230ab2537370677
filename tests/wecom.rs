//! End to end, in-process: sluice (real sled in a temp dir) → real HTTP on 127.0.0.1 → the fake
//! WeCom group robot, which counts content in raw UTF-8 bytes and enforces the per-key rolling
//! limit. Durations are scaled down in the config (20 per 2 s instead of 20 per minute).

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::daemon::{ChildDaemon, Daemon, footer_of, num, post_json, run_cli};
use support::fake_wecom::{Accepted, FakeWeCom, Fault, Limits};

const KEY: &str = "693a91f6-7aaa-4bbb-8ccc-wecomkey0001";

fn limits() -> Limits {
    Limits {
        limit: 20,
        period: Duration::from_secs(2),
    }
}

/// One WeCom robot `wx` on `key`, mentioning `zhangsan`, plus whatever `extra` adds; the
/// owners of `job = dq_0` are a userid and a mobile number.
fn config(fake: &FakeWeCom, key: &str, window: &str, extra: &str) -> String {
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

[owners.job]
dq_0 = ["lisi", "13900000001"]

[robots.wx]
provider = "wecom"
webhook = "{webhook}"
{extra}
"#,
        webhook = fake.webhook(key),
    )
}

const MENTIONS: &str = "mention_user_ids = [\"zhangsan\"]";

async fn fake() -> FakeWeCom {
    let fake = FakeWeCom::start(limits()).await;
    fake.add_robot(KEY);
    fake
}

/// `n` alerts with Chinese titles and texts, over four severities and seven jobs.
fn alerts(prefix: &str, n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                let severity = ["critical", "error", "warning", "info"][i % 4];
                json!({
                    "robot": "wx",
                    "title": format!("{prefix} 第{i}号分区 订单表空值率过高"),
                    "text": format!("数据质量检查失败：user_id 为空的行占 12%\n分区 {i}，负责人：数据平台组"),
                    "severity": severity,
                    "labels": {"job": format!("dq_{}", i % 7)},
                })
            })
            .collect(),
    )
}

/// How many alerts the accepted digests cover, by their footers.
fn footers(accepted: &[Accepted]) -> u64 {
    accepted.iter().map(|a| footer_of(&a.content).1).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_10000_chinese_alerts_is_fully_accounted_within_the_4096_byte_cap() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake, KEY, "500ms", MENTIONS), dir.path()).await;

    // 20 concurrent clients, 500 alerts each.
    let mut posts = Vec::new();
    for c in 0..20 {
        let body = alerts(&format!("客户端{c}"), 500);
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
        .wait_for(KEY, Duration::from_secs(20), |a| footers(a) >= 10_000)
        .await;
    assert_eq!(footers(&got), 10_000, "every alert counted exactly once");
    assert!(got.len() <= 6, "{} digests for one burst", got.len());
    assert_eq!(fake.throttled(KEY), 0);
    assert!(fake.requests(KEY).iter().all(|r| r.errcode == Some(0)));
    for a in &got {
        assert_eq!(a.msgtype, "markdown");
        assert!(a.content.len() <= 4096, "{} content bytes", a.content.len());
        assert!(a.content.starts_with("### wx: "), "{}", a.content);
        // The robot's own person, then the owners of the alerts' jobs; a mobile number shows
        // on the line but is no mention (WeCom notifies mobiles in text messages only).
        assert_eq!(a.mentions, ["zhangsan", "lisi"], "{}", a.content);
        let lines: Vec<&str> = a.content.lines().collect();
        assert_eq!(lines[lines.len() - 3], "<@zhangsan> <@lisi> @13900000001");
    }
    assert!(
        got.iter().any(|a| a
            .content
            .contains("第0号分区 订单表空值率过高 — 数据质量检查失败")),
        "{}",
        got[0].content
    );

    let s = d
        .wait_status("wx", Duration::from_secs(5), |s| {
            s["state"] == "idle" && num(s, "alerts_delivered") == 10_000
        })
        .await;
    // The key is the robot's only credential: the status never shows it.
    let webhook = s["webhook"].as_str().unwrap();
    assert!(
        webhook.ends_with("/cgi-bin/webhook/send?key=***") && !s.to_string().contains(KEY),
        "{s}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_holds_at_20_per_period_while_more_alerts_wait() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    // No window: something is always pending, so sluice sends as fast as the limit lets it.
    let d = Daemon::start(&config(&fake, KEY, "0s", ""), dir.path()).await;

    let started = Instant::now();
    let (mut posted, mut most_pending, mut i) = (0u64, 0u64, 0usize);
    while started.elapsed() < Duration::from_millis(4500) {
        let (status, _) = d.post(&alerts(&format!("稳定流{i}"), 3)).await;
        assert_eq!(status, 202);
        posted += 3;
        i += 1;
        let s = d.robot_status("wx").await;
        most_pending = most_pending.max(num(&s, "pending"));
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let got = fake
        .wait_for(KEY, Duration::from_secs(10), |a| footers(a) >= posted)
        .await;
    assert_eq!(footers(&got), posted);
    assert_eq!(
        fake.throttled(KEY),
        0,
        "the robot was pushed past its limit"
    );
    let busiest = fake.max_in_window(KEY, limits().period);
    assert!(busiest <= 20, "{busiest} requests in one 2 s window");
    // It means something only if sluice ran at the limit with alerts left waiting.
    assert!(busiest >= 15, "only {busiest} in the busiest window");
    assert!(most_pending > 0, "nothing ever waited");
    assert!(got.iter().all(|a| a.content.len() <= 4096));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_webhook_url_blocks_the_robot_and_keeps_its_alerts() {
    let fake = FakeWeCom::start(limits()).await;
    // The key names no robot (removed from its group, or mistyped): 93000.
    let gone = "removed-robot-key";
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake, gone, "50ms", ""), dir.path()).await;

    d.post(&alerts("修复前", 10)).await;
    let s = d
        .wait_status("wx", Duration::from_secs(3), |s| s["state"] == "blocked")
        .await;
    let error = s["last_error"].as_str().unwrap();
    assert!(error.contains("errcode 93000 (invalid webhook url"), "{s}");
    assert!(!s.to_string().contains(gone), "{s}");
    assert_eq!(num(&s, "outbox"), 1);
    d.post(&alerts("封锁期间", 5)).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let s = d.robot_status("wx").await;
    assert_eq!(num(&s, "pending"), 5, "{s}");
    assert_eq!(num(&s, "dead"), 0, "a robot-level error never dead-letters");
    // Probes are rare: every 400 ms here, not a retry storm.
    let probes = fake.requests(gone).len();
    assert!(probes <= 5, "{probes} requests while blocked");

    // The robot is back; the next probe gets through and everything follows.
    fake.add_robot(gone);
    let got = fake
        .wait_for(gone, Duration::from_secs(5), |a| footers(a) >= 15)
        .await;
    assert_eq!(footers(&got), 15);
    d.wait_status("wx", Duration::from_secs(2), |s| s["state"] == "idle")
        .await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robot_another_sender_throttled_is_waited_out_and_busy_answers_retried() {
    let fake = fake().await;
    // Someone else used up this minute (scaled: 2 s) of the robot, straight at its webhook.
    let http = reqwest::Client::new();
    for n in 0..20 {
        let body = json!({"msgtype": "text", "text": {"content": format!("别的发送者 {n}")}});
        let r = http
            .post(fake.webhook(KEY))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake, KEY, "50ms", ""), dir.path()).await;
    d.post(&alerts("限流中", 3)).await;
    let s = d
        .wait_status("wx", Duration::from_secs(3), |s| s["state"] == "throttled")
        .await;
    assert!(
        s["last_error"].as_str().unwrap().contains("errcode 45009"),
        "{s}"
    );
    // Then a gateway hiccup and a busy answer: each retried after its backoff.
    fake.push_fault(KEY, Fault::Http(502));
    fake.push_fault(KEY, Fault::Errcode(-1, "system busy"));
    let got = fake
        .wait_for(KEY, Duration::from_secs(6), |a| {
            a.iter().any(|a| a.msgtype == "markdown")
        })
        .await;
    let digests: Vec<Accepted> = got
        .into_iter()
        .filter(|a| a.msgtype == "markdown")
        .collect();
    assert_eq!(footers(&digests), 3);
    // Each throttle answer was waited out (throttle_backoff 1 s), not hammered.
    let requests = fake.requests(KEY);
    assert!(fake.throttled(KEY) >= 1);
    for pair in requests[20..].windows(2) {
        if pair[0].errcode == Some(45009) {
            let waited = pair[1].at.duration_since(pair[0].at);
            assert!(
                waited >= Duration::from_millis(900),
                "retried after {waited:?}"
            );
        }
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markdown_v2_digests_list_their_entries_as_list_items() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = "msgtype = \"markdown_v2\"";
    let d = Daemon::start(&config(&fake, KEY, "300ms", extra), dir.path()).await;

    let (status, _) = d.post(&alerts("新版", 6)).await;
    assert_eq!(status, 202);
    let got = fake
        .wait_for(KEY, Duration::from_secs(5), |a| !a.is_empty())
        .await;
    assert_eq!(got.len(), 1);
    let a = &got[0];
    assert_eq!(a.msgtype, "markdown_v2");
    assert_eq!(a.body["markdown_v2"]["content"], a.content.as_str());
    for i in 0..6 {
        let item = format!("\n- 新版 第{i}号分区 订单表空值率过高");
        assert!(a.content.contains(&item), "{item:?} in\n{}", a.content);
    }
    assert!(a.content.contains("\n#### Critical · 2\n"), "{}", a.content);
    // No colour and no @ in markdown_v2: the owners of dq_0 are written, not mentioned.
    assert!(
        !a.content.contains("<font") && a.mentions.is_empty(),
        "{}",
        a.content
    );
    let lines: Vec<&str> = a.content.lines().collect();
    assert_eq!(lines[lines.len() - 3], "@lisi @13900000001");
    assert_eq!(footer_of(&a.content).1, 6);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_a_wecom_sample_with_the_key_redacted_and_pings_the_robot() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    let text = config(&fake, KEY, "1s", MENTIONS)
        .replace("{listen}", "127.0.0.1:9")
        .replace("{data_dir}", "unused");
    std::fs::write(&path, text).unwrap();
    let cfg = path.to_str().unwrap().to_string();
    let cli = move |args: &'static [&'static str]| {
        let cfg = cfg.clone();
        std::thread::spawn(move || {
            let mut all = vec!["check", "-c", cfg.as_str()];
            all.extend_from_slice(args);
            run_cli(&all, None, &[])
        })
        .join()
        .unwrap()
    };

    let (code, out, err) = cli(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "robot wx: provider wecom, webhook http://{}/cgi-bin/webhook/send?key=***, secret none",
            fake.addr()
        )),
        "{out}"
    );
    assert!(!out.contains(KEY), "the key stays out of the output: {out}");
    for want in [
        "  sample digest (host time, wx: ",
        "  | ### wx: ",
        "  | #### <font color=\"warning\">Critical · ",
        "  | • ",
        "  | <@zhangsan>",
        "  | sluice digest #1 · ",
    ] {
        assert!(out.contains(want), "{want:?} not in\n{out}");
    }

    let (code, out, err) = cli(&["--ping", "wx"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "robot wx accepted the test message");
    let got = fake.accepted(KEY);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].content,
        "### sluice test message\n\nsluice can reach robot **wx**; digests will arrive here."
    );

    fake.push_fault(KEY, Fault::Errcode(93000, "invalid webhook url"));
    let (code, _, err) = cli(&["--ping", "wx"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("sluice: robot wx refuses our messages: errcode 93000")
            && err.contains("check the key in its webhook URL"),
        "{err}"
    );
    assert!(!err.contains(KEY), "{err}");
}

/// The key is a WeCom robot's only credential: the real binary's log (at debug), its status,
/// `sluice status` and `sluice check` never show it, through a refusal, a connection that
/// fails and a delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_keys_never_reach_logs_or_status() {
    let fake = FakeWeCom::start(limits()).await;
    let (refused, unreachable) = ("refused-key-0001", "unreachable-key-0002");
    let extra = format!(
        "[robots.down]\nprovider = \"wecom\"\nwebhook = \"http://127.0.0.1:9/cgi-bin/webhook/send?key={unreachable}\"\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut d = ChildDaemon::start(&config(&fake, refused, "50ms", &extra), dir.path());
    d.wait_healthy().await;
    let http = reqwest::Client::new();
    for robot in ["wx", "down"] {
        let (status, _) = post_json(
            &http,
            &d.url("/v1/alerts"),
            &json!({"robot": robot, "title": "密钥测试"}),
        )
        .await;
        assert_eq!(status, 202);
    }
    // 93000 first, then the robot is back and the digest is delivered.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !fake
        .requests(refused)
        .iter()
        .any(|r| r.errcode == Some(93000))
    {
        assert!(Instant::now() < deadline, "no request reached the fake");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fake.add_robot(refused);
    fake.wait_for(refused, Duration::from_secs(5), |a| !a.is_empty())
        .await;

    let status = http
        .get(d.url("/v1/status"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (_, check_out, _) = run_cli(&["check", "-c", d.config_path.to_str().unwrap()], None, &[]);
    let (_, table, _) = run_cli(&["status", "--server", &d.addr.to_string()], None, &[]);
    let (code, _) = d.terminate(Duration::from_secs(5));
    assert_eq!(code, Some(0));
    let log = d.stderr();
    assert!(log.contains("93000"), "the refusal is logged: {log}");
    assert!(
        log.contains("cannot connect"),
        "the failed connection is logged: {log}"
    );
    for (what, text) in [
        ("log", &log),
        ("status", &status),
        ("check", &check_out),
        ("status table", &table),
    ] {
        for key in [refused, unreachable] {
            assert!(!text.contains(key), "{what} leaks a key: {text}");
        }
    }
    assert_eq!(
        check_out.matches("/cgi-bin/webhook/send?key=***").count(),
        2,
        "{check_out}"
    );
}

/// The fake holds what the tests lean on, on its own: the cap in raw UTF-8 bytes, the window,
/// unknown keys and message types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_counts_raw_bytes_keys_and_its_window() {
    let fake = fake().await;
    let http = reqwest::Client::new();
    let send = |key: &'static str, body: Value| {
        let (http, url) = (http.clone(), fake.webhook(key));
        async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()["errcode"]
                .as_i64()
                .unwrap()
        }
    };
    let markdown =
        |content: String| json!({"msgtype": "markdown", "markdown": {"content": content}});
    // 1 365 CJK characters and one ASCII byte: 4 096 bytes; one more byte is over.
    let full = format!("{}x", "告".repeat(1365));
    assert_eq!(full.len(), 4096);
    assert_eq!(send(KEY, markdown(full.clone())).await, 0);
    assert_eq!(send(KEY, markdown(format!("{full}y"))).await, 40058);
    assert_eq!(
        send(KEY, json!({"msgtype": "card", "card": {}})).await,
        40008
    );
    assert_eq!(send("nobody", markdown("hi <@a>".into())).await, 93000);
    for _ in 0..17 {
        assert_eq!(send(KEY, markdown("<@a> hi <@b>".into())).await, 0);
    }
    // The 21st in the window, refused ones counted.
    assert_eq!(send(KEY, markdown("late".into())).await, 45009);
    assert_eq!(fake.throttled(KEY), 1);
    let got = fake.accepted(KEY);
    assert_eq!(got.len(), 18);
    assert_eq!(got[1].mentions, ["a", "b"]);
    assert_eq!(fake.requests("nobody").len(), 1);
}
