//! Load through the Feishu and WeCom front doors, as `frontdoor_load.rs` does for DingTalk's:
//! a burst from 20 concurrent clients arrives as a few digests within the robot's limits (never
//! a throttle at the fake), and nothing sluice acknowledged is lost across `kill -9`.
//!
//! The Feishu clients sign every body as Feishu's documentation says, with the fake's code (not
//! sluice's): `sign = base64(HMAC-SHA256(key = timestamp_s + "\n" + secret, msg = ""))`. WeCom
//! has no signature: the key in the query is the only proof.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use support::daemon::{ChildDaemon, Daemon, titles_of_digests};
use support::door_load::{
    Door, KILL_PAUSES, assert_none_lost, burst, post_through_kills, wait_drained,
};
use support::fake_feishu::{self, FakeFeishu, feishu_sign};
use support::fake_wecom::{self, FakeWeCom};

const BOT: &str = "3f1c2d4e-5a6b-7c8d-9e0f-loadfeishu001";
const FEISHU_SECRET: &str = "fs-load-secret-5d2e9a";
const KEY: &str = "693a91f6-7aaa-4bbb-8ccc-loadwecom0001";
const CLIENTS: usize = 20;
const EACH: usize = 20;
const KILL_SENDERS: usize = 8;

/// Feishu's windows (5 a second, 100 a minute) scaled down, the same in the fake and in
/// sluice's config.
const FEISHU_LIMITS: fake_feishu::Limits = fake_feishu::Limits {
    burst: 5,
    burst_period: Duration::from_millis(100),
    rate: 20,
    rate_period: Duration::from_secs(2),
};
/// WeCom's 20 a minute, scaled to 20 per 2 s.
const WECOM_LIMITS: fake_wecom::Limits = fake_wecom::Limits {
    limit: 20,
    period: Duration::from_secs(2),
};

fn config(window: &str, robot: &str) -> String {
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
retry_max_backoff = "300ms"
throttle_backoff = "1s"
request_timeout = "2s"

{robot}
"#
    )
}

fn feishu_config(fake: &FakeFeishu, window: &str) -> String {
    let robot = format!(
        r#"[robots.lark]
provider = "feishu"
webhook = "{}"
secret = "{FEISHU_SECRET}"
burst_limit = 5
burst_period = "100ms""#,
        fake.webhook(BOT)
    );
    config(window, &robot)
}

fn wecom_config(fake: &FakeWeCom, window: &str) -> String {
    let robot = format!(
        "[robots.wx]\nprovider = \"wecom\"\nwebhook = \"{}\"",
        fake.webhook(KEY)
    );
    config(window, &robot)
}

async fn feishu() -> FakeFeishu {
    let fake = FakeFeishu::start(FEISHU_LIMITS).await;
    fake.add_bot(BOT, Some(FEISHU_SECRET), &[]);
    fake
}

async fn wecom() -> FakeWeCom {
    let fake = FakeWeCom::start(WECOM_LIMITS).await;
    fake.add_robot(KEY);
    fake
}

/// Feishu's door: text messages, each body signed with its own timestamp (a string, as
/// Feishu's samples send it).
fn feishu_door() -> Door {
    Door {
        url: Arc::new(|addr| format!("http://{addr}/open-apis/bot/v2/hook/{BOT}")),
        body: Arc::new(|title| {
            let ts = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            json!({
                "msg_type": "text",
                "content": {"text": format!("{title}\nsent through the Feishu door")},
                "timestamp": ts.to_string(),
                "sign": feishu_sign(FEISHU_SECRET, ts),
            })
        }),
        success: json!({"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"}),
    }
}

/// WeCom's door: text messages under the robot's key.
fn wecom_door() -> Door {
    Door {
        url: Arc::new(|addr| format!("http://{addr}/cgi-bin/webhook/send?key={KEY}")),
        body: Arc::new(
            |title| json!({"msgtype": "text", "text": {"content": format!("{title}\nsent through the WeCom door")}}),
        ),
        success: json!({"errcode": 0, "errmsg": "ok"}),
    }
}

/// Merged: the burst in a handful of digests (one per window it spans, and the rest of a
/// window that does not fit one message), far from one message each.
fn assert_merged(digests: usize, messages: usize) {
    assert!(digests <= 25, "{digests} digests for {messages} messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_400_signed_feishu_messages_from_20_clients_arrives_as_a_few_digests() {
    let fake = feishu().await;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&feishu_config(&fake, "2s"), dir.path()).await;
    let started = std::time::Instant::now();
    let posted = burst(&feishu_door(), &d.addr.to_string(), CLIENTS, EACH).await;
    let total = posted.len() as u64;
    let got = fake
        .wait_for(BOT, Duration::from_secs(30), |a| {
            fake_feishu::footers_total(a) >= total
        })
        .await;
    assert_eq!(fake_feishu::footers_total(&got), total);
    assert_eq!(fake.throttled(BOT), 0, "never a throttle");
    assert!(fake.max_in_window(BOT, FEISHU_LIMITS.burst_period) <= FEISHU_LIMITS.burst);
    assert!(fake.max_in_window(BOT, FEISHU_LIMITS.rate_period) <= FEISHU_LIMITS.rate);
    assert!(fake.requests(BOT).iter().all(|r| r.code == 0));
    assert_merged(got.len(), posted.len());
    let titles = titles_of_digests(&d.url(""), got.iter().map(|a| a.text.as_str())).await;
    assert_eq!(titles.len(), posted.len(), "each message in one digest");
    assert_eq!(titles.into_iter().collect::<BTreeSet<_>>(), posted);
    eprintln!(
        "feishu: {} messages in {} digests, {} throttled, {:?}",
        posted.len(),
        got.len(),
        fake.throttled(BOT),
        started.elapsed()
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_400_wecom_messages_from_20_clients_arrives_as_a_few_digests() {
    let fake = wecom().await;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&wecom_config(&fake, "2s"), dir.path()).await;
    let started = std::time::Instant::now();
    let posted = burst(&wecom_door(), &d.addr.to_string(), CLIENTS, EACH).await;
    let total = posted.len() as u64;
    let got = fake
        .wait_for(KEY, Duration::from_secs(30), |a| {
            fake_wecom::footers_total(a) >= total
        })
        .await;
    assert_eq!(fake_wecom::footers_total(&got), total);
    assert_eq!(fake.throttled(KEY), 0, "never a throttle");
    assert!(fake.max_in_window(KEY, WECOM_LIMITS.period) <= WECOM_LIMITS.limit);
    assert!(fake.requests(KEY).iter().all(|r| r.errcode == Some(0)));
    assert_merged(got.len(), posted.len());
    let titles = titles_of_digests(&d.url(""), got.iter().map(|a| a.content.as_str())).await;
    assert_eq!(titles.len(), posted.len(), "each message in one digest");
    assert_eq!(titles.into_iter().collect::<BTreeSet<_>>(), posted);
    eprintln!(
        "wecom: {} messages in {} digests, {} throttled, {:?}",
        posted.len(),
        got.len(),
        fake.throttled(KEY),
        started.elapsed()
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_the_feishu_door_acknowledged_is_lost_across_kill9() {
    let fake = feishu().await;
    let dir = tempfile::tempdir().unwrap();
    let mut d = ChildDaemon::start(&feishu_config(&fake, "300ms"), dir.path());
    d.wait_healthy().await;
    let acked = post_through_kills(&feishu_door(), &mut d, KILL_SENDERS, &KILL_PAUSES).await;
    assert!(acked.len() > 50, "only {} acknowledged", acked.len());
    // At least once: a digest whose answer was lost in a kill may come twice.
    let total = acked.len() as u64;
    fake.wait_for(BOT, Duration::from_secs(30), |a| {
        fake_feishu::footers_total(a) >= total
    })
    .await;
    wait_drained(&d).await;
    let got = fake.accepted(BOT);
    let texts = got.iter().map(|a| a.text.as_str());
    assert_none_lost(&acked, &titles_of_digests(&d.url(""), texts).await);
    assert_eq!(fake.throttled(BOT), 0);
    assert!(fake.max_in_window(BOT, FEISHU_LIMITS.burst_period) <= FEISHU_LIMITS.burst);
    assert!(fake.max_in_window(BOT, FEISHU_LIMITS.rate_period) <= FEISHU_LIMITS.rate);
    eprintln!(
        "feishu: {} acknowledged across 4 kill -9, {} digests",
        acked.len(),
        got.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_the_wecom_door_acknowledged_is_lost_across_kill9() {
    let fake = wecom().await;
    let dir = tempfile::tempdir().unwrap();
    let mut d = ChildDaemon::start(&wecom_config(&fake, "300ms"), dir.path());
    d.wait_healthy().await;
    let acked = post_through_kills(&wecom_door(), &mut d, KILL_SENDERS, &KILL_PAUSES).await;
    assert!(acked.len() > 50, "only {} acknowledged", acked.len());
    let total = acked.len() as u64;
    fake.wait_for(KEY, Duration::from_secs(30), |a| {
        fake_wecom::footers_total(a) >= total
    })
    .await;
    wait_drained(&d).await;
    let got = fake.accepted(KEY);
    let texts = got.iter().map(|a| a.content.as_str());
    assert_none_lost(&acked, &titles_of_digests(&d.url(""), texts).await);
    assert_eq!(fake.throttled(KEY), 0);
    assert!(fake.max_in_window(KEY, WECOM_LIMITS.period) <= WECOM_LIMITS.limit);
    eprintln!(
        "wecom: {} acknowledged across 4 kill -9, {} digests",
        acked.len(),
        got.len()
    );
}
