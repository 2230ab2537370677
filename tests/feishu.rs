//! End to end, in-process: sluice (real sled in a temp dir) → real HTTP on 127.0.0.1 → the fake
//! Feishu bot, which checks signatures, keywords, the IP allow-list and the body size, and holds
//! both of Feishu's rate windows, scaled down (5 per 100 ms and 100 per 2 s instead of 5 per
//! second and 100 per minute) in the fake and in the config alike.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::daemon::{Daemon, footer_of, num, run_cli};
use support::fake_feishu::{
    CODE_BAD_REQUEST, CODE_FREQUENCY, CODE_IP, CODE_KEYWORDS, CODE_SIGN, FakeFeishu, Limits,
    feishu_sign, footers_total,
};

const SECRET: &str = "feishu-test-secret";

fn limits() -> Limits {
    Limits {
        burst: 5,
        burst_period: Duration::from_millis(100),
        rate: 100,
        rate_period: Duration::from_secs(2),
    }
}

/// A Feishu robot `name` (signed with `secret`, keyword 告警) on `fake`'s bot `id`.
fn robot(fake: &FakeFeishu, name: &str, id: &str, secret: &str, extra: &str) -> String {
    format!(
        r#"
[robots.{name}]
provider = "feishu"
webhook = "{webhook}"
secret = "{secret}"
keywords = ["告警"]
{extra}
"#,
        webhook = fake.webhook(id),
    )
}

/// The server and the timing every test uses: Feishu's two windows, scaled as the fake's.
fn config(window: &str, robots: &str) -> String {
    format!(
        r#"
[server]
listen = "{{listen}}"
data_dir = "{{data_dir}}"
public_url = "https://sluice.example"

[defaults]
window = "{window}"
rate_limit = 100
rate_period = "2s"
burst_limit = 5
burst_period = "100ms"
retry_initial_backoff = "100ms"
retry_max_backoff = "400ms"
throttle_backoff = "1s"
blocked_probe = "400ms"
request_timeout = "2s"
{robots}
[owners.job]
dq_0 = ["ou_owner"]
"#
    )
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

async fn post_concurrently(d: &Daemon, robot: &str, clients: usize, each: usize) {
    let mut posts = Vec::new();
    for c in 0..clients {
        let body = alerts(robot, &format!("check c{c}"), each);
        let url = d.url("/v1/alerts");
        posts.push(tokio::spawn(async move {
            support::daemon::post_json(&reqwest::Client::new(), &url, &body).await
        }));
    }
    for p in posts {
        let (status, body) = p.await.unwrap();
        assert_eq!(status, 202, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_10000_alerts_is_fully_accounted_in_posts_and_cards_with_feishu_mentions() {
    let fake = FakeFeishu::start(limits()).await;
    fake.add_bot("post-bot", Some(SECRET), &["告警"]);
    fake.add_bot("card-bot", Some(SECRET), &["告警"]);
    let mentions = "mention_user_ids = [\"ou_lead\"]\nmention_all = true";
    let robots = robot(&fake, "fs", "post-bot", SECRET, mentions)
        + robot(
            &fake,
            "card",
            "card-bot",
            SECRET,
            &format!("msgtype = \"interactive\"\n{mentions}"),
        )
        .as_str();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config("500ms", &robots), dir.path()).await;

    post_concurrently(&d, "fs", 20, 500).await;
    post_concurrently(&d, "card", 20, 500).await;
    for (bot, robot) in [("post-bot", "fs"), ("card-bot", "card")] {
        let got = fake
            .wait_for(bot, Duration::from_secs(30), |a| footers_total(a) >= 10_000)
            .await;
        assert_eq!(
            footers_total(&got),
            10_000,
            "{robot}: every alert counted once"
        );
        assert!(
            got.len() <= 6,
            "{robot}: {} digests for one burst",
            got.len()
        );
        assert_eq!(fake.throttled(bot), 0, "{robot}");
        assert!(fake.requests(bot).iter().all(|r| r.code == 0), "{robot}");
        for a in &got {
            assert!(a.bytes <= 20_000, "{robot}: a body of {} bytes", a.bytes);
            // The robot's own, the owner of job dq_0 when the digest has its alerts, everyone.
            let m = &a.mentions;
            assert!(m.first().is_some_and(|p| p == "ou_lead"), "{robot}: {m:?}");
            assert!(m.last().is_some_and(|p| p == "all"), "{robot}: {m:?}");
            assert!(m.len() <= 3 && m.len() >= 2, "{robot}: {m:?}");
        }
        assert!(
            got.iter()
                .any(|a| a.mentions.contains(&"ou_owner".to_string()))
        );
        let s = d
            .wait_status(robot, Duration::from_secs(5), |s| {
                num(s, "alerts_delivered") == 10_000
            })
            .await;
        assert_eq!(num(&s, "dead"), 0);
    }

    // A post: the digest's title as the post's, a paragraph per line, `at` elements, the link
    // as an `a` element, the footer as the last paragraph.
    let post = &fake.accepted("post-bot")[0];
    let zh = &post.body["content"]["post"]["zh_cn"];
    assert!(
        post.title.contains("告警") && post.title.contains("fs"),
        "{}",
        post.title
    );
    assert_eq!(zh["title"], post.title.as_str());
    let paragraphs = zh["content"].as_array().unwrap();
    let (id, _) = footer_of(&post.text);
    assert!(paragraphs.contains(&json!([
        {"tag": "at", "user_id": "ou_lead"},
        {"tag": "at", "user_id": "ou_owner"},
        {"tag": "at", "user_id": "all"}
    ])));
    assert!(paragraphs.contains(&json!([{
        "tag": "a",
        "text": "full alert list",
        "href": format!("https://sluice.example/v1/digests/{id}"),
    }])));
    assert!(post.text.contains("\n【Critical · "), "{}", post.text);
    assert!(post.body["timestamp"].is_string() && post.body["sign"].is_string());

    // A card: the markdown with `<at id=…>`, the link as a button.
    let card = &fake.accepted("card-bot")[0];
    assert_eq!(card.body["msg_type"], "interactive");
    assert!(
        card.body["card"].is_object(),
        "the card is an object, not a string"
    );
    let (id, _) = footer_of(&card.text);
    assert!(
        card.text.contains(
            "\n<at id=ou_lead></at> <at id=ou_owner></at> <at id=all></at>\n\nsluice digest #"
        ),
        "{}",
        card.text
    );
    assert!(card.text.starts_with("**告警 card: "), "{}", card.text);
    let button = &card.body["card"]["elements"][1]["actions"][0];
    assert_eq!(
        button["url"],
        format!("https://sluice.example/v1/digests/{id}")
    );
    assert!(
        !card.text.contains("](https://sluice.example"),
        "{}",
        card.text
    );
    d.stop().await;
}

/// Two robots wanting digests far faster than they may send: `fs` on a bot whose two windows
/// allow the same 50 a second (5 per 100 ms, 100 per 2 s), where the pacer runs at that rate and
/// the burst window is the one that fills; `slow` on a bot that takes only 30 per 2 s, where the
/// rate window fills. Each fake holds both windows and answers 11232 past either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_rate_windows_hold_while_digests_are_wanted_faster_than_either_allows() {
    let fast = FakeFeishu::start(limits()).await;
    let slow = FakeFeishu::start(Limits {
        rate: 30,
        ..limits()
    })
    .await;
    fast.add_bot("bot", Some(SECRET), &["告警"]);
    slow.add_bot("bot", Some(SECRET), &["告警"]);
    let robots = robot(&fast, "fs", "bot", SECRET, "")
        + robot(&slow, "slow", "bot", SECRET, "rate_limit = 30").as_str();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config("5ms", &robots), dir.path()).await;

    // An alert for each every 2 ms or so wants hundreds of digests a second. Posting stops once
    // each bot has seen more than its rate window's worth (or after 8 s).
    let started = Instant::now();
    let mut posted = 0;
    for i in 0..3_000 {
        for robot in ["fs", "slow"] {
            let (status, _) = d.post(&alerts(robot, &format!("wave {i}"), 1)).await;
            assert_eq!(status, 202);
        }
        posted += 1;
        let full = fast.requests("bot").len() >= 150 && slow.requests("bot").len() >= 45;
        if full || started.elapsed() > Duration::from_secs(8) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for (fake, limit) in [(&fast, 100), (&slow, 30)] {
        let got = fake
            .wait_for("bot", Duration::from_secs(10), |a| {
                footers_total(a) >= posted
            })
            .await;
        assert_eq!(footers_total(&got), posted);
        let requests = fake.requests("bot").len();
        assert!(
            requests > limit && (posted as usize) > requests,
            "{posted} alerts in {requests} digests: more were wanted than one rate window allows"
        );
        let limits = fake.limits();
        let burst = fake.max_in_window("bot", limits.burst_period);
        let rate = fake.max_in_window("bot", limits.rate_period);
        assert!(burst <= limits.burst, "{burst} in one burst period");
        assert!(rate <= limits.rate, "{rate} in one rate period");
        assert_eq!(fake.throttled("bot"), 0);
        assert!(fake.requests("bot").iter().all(|r| r.code == 0));
    }
    // Each window was full at times: the one that binds for each bot.
    let burst = fast.max_in_window("bot", fast.limits().burst_period);
    assert!(burst >= 4, "{burst} in the fast bot's busiest burst period");
    let rate = slow.max_in_window("bot", slow.limits().rate_period);
    assert!(rate >= 27, "{rate} in the slow bot's busiest rate period");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_signature_blocks_the_robot_and_keeps_its_alerts() {
    let fake = FakeFeishu::start(limits()).await;
    fake.add_bot("bot", Some(SECRET), &["告警"]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(
        &config("50ms", &robot(&fake, "fs", "bot", "not-the-secret", "")),
        dir.path(),
    )
    .await;

    d.post(&alerts("fs", "before the fix", 10)).await;
    let s = d
        .wait_status("fs", Duration::from_secs(3), |s| s["state"] == "blocked")
        .await;
    let error = s["last_error"].as_str().unwrap();
    assert!(error.contains("code 19021"), "{s}");
    assert_eq!(num(&s, "outbox"), 1);
    d.post(&alerts("fs", "while blocked", 5)).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let s = d.robot_status("fs").await;
    assert_eq!(num(&s, "pending"), 5, "{s}");
    assert_eq!(num(&s, "dead"), 0, "a robot-level error never dead-letters");
    assert!(fake.accepted("bot").is_empty());
    assert!(fake.requests("bot").len() <= 5, "probes are rare");

    // The bot's secret is changed to the one sluice signs with: everything follows.
    fake.add_bot("bot", Some("not-the-secret"), &["告警"]);
    let got = fake
        .wait_for("bot", Duration::from_secs(5), |a| footers_total(a) >= 15)
        .await;
    assert_eq!(footers_total(&got), 15);
    d.wait_status("fs", Duration::from_secs(2), |s| s["state"] == "idle")
        .await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_a_feishu_sample_redacted_and_pings_the_bot() {
    let fake = FakeFeishu::start(limits()).await;
    fake.add_bot("6b1f3c1e-hook-id", Some(SECRET), &["告警"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    let text = format!(
        "[server]\ndata_dir = \"{}\"\n{}{}",
        dir.path().join("data").display(),
        robot(&fake, "fs", "6b1f3c1e-hook-id", SECRET, ""),
        robot(
            &fake,
            "card",
            "6b1f3c1e-hook-id",
            SECRET,
            "msgtype = \"interactive\""
        ),
    );
    std::fs::write(&path, &text).unwrap();
    let path = path.to_str().unwrap();
    let (code, out, err) = run_cli(&["check", "-c", path], None, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "robot fs: provider feishu, webhook http://{}/open-apis/bot/v2/hook/***, secret set",
            fake.webhook("x").split('/').nth(2).unwrap()
        )),
        "{out}"
    );
    assert!(!out.contains("6b1f3c1e") && !out.contains(SECRET), "{out}");
    // Each robot's sample in its own dialect, ending with the footer.
    assert!(out.contains("  | 【Critical · "), "{out}");
    assert!(out.contains("  | **【Critical · "), "{out}");
    assert!(out.contains("  | sluice digest #1 · "), "{out}");

    let (code, out, err) = run_cli(&["check", "-c", path, "--ping", "fs"], None, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "robot fs accepted the test message");
    let (code, _, err) = run_cli(&["check", "-c", path, "--ping", "card"], None, &[]);
    assert_eq!(code, 0, "{err}");
    let got = fake.accepted("6b1f3c1e-hook-id");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].title, "告警 sluice test message");
    assert_eq!(
        got[0].text,
        "sluice can reach robot fs; digests will arrive here."
    );
    assert!(
        got[1].text.contains("sluice can reach robot **card**"),
        "{}",
        got[1].text
    );

    // A Feishu bot cannot mention by mobile number: the config says what to use instead.
    let mobiles = text.replace(
        "keywords = [\"告警\"]\n",
        "keywords = [\"告警\"]\nmention_mobiles = [\"13800000000\"]\n",
    );
    std::fs::write(dir.path().join("bad.toml"), mobiles).unwrap();
    let bad = dir.path().join("bad.toml");
    let (code, _, err) = run_cli(&["check", "-c", bad.to_str().unwrap()], None, &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("robots.card.mention_mobiles: a Feishu custom bot cannot mention people by mobile number; use mention_user_ids"),
        "{err}"
    );
}

/// The fake refuses what Feishu refuses, with Feishu's codes: what the tests above lean on. Its
/// windows are long here (5 per 10 s), so that which request is over the limit does not depend
/// on how fast this machine is; each check goes to a bot of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_checks_what_feishu_checks() {
    let fake = FakeFeishu::start(Limits {
        burst: 5,
        burst_period: Duration::from_secs(10),
        rate: 100,
        rate_period: Duration::from_secs(20),
    })
    .await;
    for bot in ["bot", "bot2", "burst"] {
        fake.add_bot(bot, Some(SECRET), &["告警"]);
    }
    let http = reqwest::Client::new();
    let send = |bot: &str, body: Value| {
        let http = http.clone();
        let url = fake.webhook(bot);
        async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            let answer: Value = r.json().await.unwrap();
            (status, answer["code"].as_i64().unwrap())
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let post = |text: &str, ts: i64, secret: &str| {
        json!({
            "msg_type": "post",
            "timestamp": ts.to_string(),
            "sign": feishu_sign(secret, ts),
            "content": {"post": {"zh_cn": {"title": "t", "content": [[{"tag": "text", "text": text}]]}}},
        })
    };
    assert_eq!(send("bot", post("告警 ok", now, SECRET)).await, (200, 0));
    assert_eq!(
        send("bot", post("告警", now, "wrong")).await,
        (200, CODE_SIGN)
    );
    assert_eq!(
        send("bot", post("告警", now - 3_700, SECRET)).await,
        (200, CODE_SIGN)
    );
    assert_eq!(
        send("bot", post("no keyword", now, SECRET)).await,
        (200, CODE_KEYWORDS)
    );
    // A keyword in a link's address does not count.
    let mut href = post("x", now, SECRET);
    href["content"]["post"]["zh_cn"]["content"] =
        json!([[{"tag": "a", "text": "x", "href": "https://x/告警"}]]);
    assert_eq!(send("bot", href).await, (200, CODE_KEYWORDS));
    assert_eq!(fake.accepted("bot").len(), 1);
    assert_eq!(fake.accepted("bot")[0].text, "告警 ok");

    let big = post(&format!("告警 {}", "x".repeat(20_000)), now, SECRET);
    assert_eq!(send("bot2", big).await, (400, CODE_BAD_REQUEST));
    let image = json!({"msg_type": "image", "timestamp": now.to_string(), "sign": feishu_sign(SECRET, now)});
    assert_eq!(send("bot2", image).await, (400, CODE_BAD_REQUEST));
    fake.allow_ips("bot2", &["10.0.0.1".parse().unwrap()]);
    assert_eq!(
        send("bot2", post("告警", now, SECRET)).await,
        (200, CODE_IP)
    );

    // Six: the sixth is over the burst window, refused requests counted too.
    let mut codes = Vec::new();
    for _ in 0..6 {
        codes.push(send("burst", post("告警", now, "wrong")).await.1);
    }
    assert_eq!(
        codes,
        [
            CODE_SIGN,
            CODE_SIGN,
            CODE_SIGN,
            CODE_SIGN,
            CODE_SIGN,
            CODE_FREQUENCY
        ]
    );
    assert_eq!(fake.throttled("burst"), 1);
    assert_eq!(fake.max_in_window("burst", Duration::from_secs(10)), 6);
}
