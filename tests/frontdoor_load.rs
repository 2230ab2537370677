//! Load through the DingTalk front door (`POST /robot/send?access_token=…&timestamp=…&sign=…`):
//! a burst from concurrent signing clients arrives as a few digests within the robot's limit, and
//! nothing sluice acknowledged with errcode 0 is lost across `kill -9`.
//!
//! The clients sign as DingTalk's documentation says, with their own code (not sluice's, not the
//! fake robot's): sign = base64(HMAC-SHA256(key = secret, msg = timestamp_ms + "\n" + secret)),
//! percent-encoded once in the query.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use support::daemon::{ChildDaemon, Daemon, delivered_titles, footers_total};
use support::door_load::{
    Door, KILL_PAUSES, assert_none_lost, burst, post_through_kills, wait_drained,
};
use support::fake_robot::{FakeRobot, Limits};

const SECRET: &str = "SECload-frontdoor-secret-7f3a";
const TOKEN: &str = "fd-load-token";

/// DingTalk's 加签 query for `secret` now: `&timestamp=…&sign=…`.
fn signed_query(secret: &str) -> String {
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}\n{secret}").as_bytes());
    let sign = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let sign: String = sign
        .chars()
        .map(|c| match c {
            '+' => "%2B".to_string(),
            '/' => "%2F".to_string(),
            '=' => "%3D".to_string(),
            c => c.to_string(),
        })
        .collect();
    format!("&timestamp={ts}&sign={sign}")
}

/// DingTalk's door, signed in the query for every request; text messages.
fn door() -> Door {
    Door {
        url: Arc::new(|addr| {
            format!(
                "http://{addr}/robot/send?access_token={TOKEN}{}",
                signed_query(SECRET)
            )
        }),
        body: Arc::new(
            |title| json!({"msgtype": "text", "text": {"content": format!("{title}\nsent through the front door")}}),
        ),
        success: json!({"errcode": 0, "errmsg": "ok"}),
    }
}

fn config(fake: &FakeRobot, window: &str) -> String {
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

[robots.ops]
webhook = "{webhook}"
secret = "{SECRET}"
"#,
        webhook = fake.webhook(TOKEN),
    )
}

async fn fake() -> FakeRobot {
    let fake = FakeRobot::start(Limits {
        limit: 20,
        period: Duration::from_secs(2),
        lockout: Duration::from_secs(5),
    })
    .await;
    fake.add_robot(TOKEN, Some(SECRET), &[]);
    fake
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_500_messages_from_20_clients_arrives_as_a_few_digests() {
    const CLIENTS: usize = 20;
    const EACH: usize = 25;
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake, "2s"), dir.path()).await;
    let addr = d.addr.to_string();

    let posted = burst(&door(), &addr, CLIENTS, EACH).await;

    let got = fake
        .wait_for(TOKEN, Duration::from_secs(30), |a| {
            footers_total(a) >= posted.len() as u64
        })
        .await;
    assert_eq!(footers_total(&got), posted.len() as u64);
    assert_eq!(fake.throttled(TOKEN), 0, "never a throttle");
    // Merged: 500 messages in a handful of digests (one per window the burst spans, and the
    // rest of a window that does not fit one message), far from one message each.
    assert!(
        got.len() <= 25,
        "{} digests for {} messages",
        got.len(),
        posted.len()
    );
    assert_eq!(
        delivered_titles(&d.url(""), &got)
            .await
            .into_iter()
            .collect::<BTreeSet<_>>(),
        posted
    );
    eprintln!("{} messages in {} digests", posted.len(), got.len());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_across_kill9() {
    const SENDERS: usize = 8;
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let mut d = ChildDaemon::start(&config(&fake, "300ms"), dir.path());
    d.wait_healthy().await;
    // kill -9 at uneven moments while they send, restarting at once each time.
    let acked = post_through_kills(&door(), &mut d, SENDERS, &KILL_PAUSES).await;
    assert!(acked.len() > 50, "only {} acknowledged", acked.len());

    // Everything acknowledged reaches the robot (a digest whose answer was lost in a kill may
    // come twice: at least once).
    fake.wait_for(TOKEN, Duration::from_secs(30), |a| {
        footers_total(a) >= acked.len() as u64
    })
    .await;
    wait_drained(&d).await;
    let got = fake.accepted(TOKEN);
    assert_none_lost(&acked, &delivered_titles(&d.url(""), &got).await);
    assert!(footers_total(&fake.accepted(TOKEN)) >= acked.len() as u64);
    assert_eq!(fake.throttled(TOKEN), 0);
    eprintln!(
        "{} acknowledged across 4 kill -9, {} digests",
        acked.len(),
        fake.accepted(TOKEN).len()
    );
}
