//! The front doors when the store cannot write: a full disk. Each door answers HTTP 503 with
//! `Retry-After` and a body in its platform's shape with a non-zero code (many senders count any
//! HTTP 200 as delivered), everything it acknowledged before stays queued, and once there is
//! room again it takes messages again.
//!
//! Needs a tiny filesystem, so each test mounts a 2 MiB tmpfs as the data directory (root only,
//! as in CI: skipped otherwise, as tests/crash.rs's full-disk test is) and grows it afterwards.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::daemon::{ChildDaemon, Tmpfs, door_answer};

/// A DingTalk, a Feishu and a WeCom robot whose webhooks nobody answers: with a one-hour
/// window nothing is sent while the test runs, so what the doors take stays queued.
const CONFIG: &str = r#"
[server]
listen = "{listen}"
data_dir = "{data_dir}"
cache_size = "1MiB"

[defaults]
window = "1h"

[robots.dt]
webhook = "http://127.0.0.1:9/robot/send?access_token=store-dt"

[robots.fs]
provider = "feishu"
webhook = "http://127.0.0.1:9/open-apis/bot/v2/hook/store-fs"

[robots.wx]
provider = "wecom"
webhook = "http://127.0.0.1:9/cgi-bin/webhook/send?key=store-wx"
"#;

/// One platform's door: where it is, how a message of about 4 KB looks, and what it answers.
struct Door {
    robot: &'static str,
    path: &'static str,
    /// The code a refusal carries in the platform's shape, and the field it is in.
    code_field: &'static str,
    message_field: &'static str,
    success: Value,
}

fn dingtalk() -> Door {
    Door {
        robot: "dt",
        path: "/robot/send?access_token=store-dt",
        code_field: "errcode",
        message_field: "errmsg",
        success: json!({"errcode": 0, "errmsg": "ok"}),
    }
}

fn feishu() -> Door {
    Door {
        robot: "fs",
        path: "/open-apis/bot/v2/hook/store-fs",
        code_field: "code",
        message_field: "msg",
        success: json!({"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"}),
    }
}

fn wecom() -> Door {
    Door {
        robot: "wx",
        path: "/cgi-bin/webhook/send?key=store-wx",
        code_field: "errcode",
        message_field: "errmsg",
        success: json!({"errcode": 0, "errmsg": "ok"}),
    }
}

impl Door {
    /// Message `i`: distinct text of about 3.5 KB, within every platform's body limit.
    fn message(&self, i: usize) -> Value {
        let text = format!("check {i} failed\n{}", "dirty row; ".repeat(320));
        match self.robot {
            "fs" => json!({"msg_type": "text", "content": {"text": text}}),
            _ => json!({"msgtype": "text", "text": {"content": text}}),
        }
    }
}

async fn full_disk(door: Door) {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(dir.path(), "2m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let mut d = ChildDaemon::start(CONFIG, dir.path());
    d.wait_healthy().await;
    let http = reqwest::Client::new();
    let url = d.url(door.path);

    // Fill the disk through the door until it refuses.
    let mut acknowledged = 0u64;
    let mut refusal = None;
    for i in 0..2_000 {
        let r = http.post(&url).json(&door.message(i)).send().await.unwrap();
        let (status, retry_after, body) = door_answer(r).await;
        if (status, &body) == (200, &door.success) {
            acknowledged += 1;
            continue;
        }
        refusal = Some((status, retry_after, body));
        break;
    }
    let (status, retry_after, body) = refusal.expect("2 MiB never filled up");
    assert!(acknowledged > 0);
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry_after.as_deref(), Some("5"), "{body}");
    let code = body[door.code_field].as_i64().expect("a numeric code");
    assert_ne!(code, 0, "{body}");
    let message = body[door.message_field].as_str().unwrap();
    assert!(
        message.contains("sluice: not stored, retry later"),
        "{message}"
    );
    assert!(
        !message.contains("store-dt")
            && !message.contains("store-fs")
            && !message.contains("store-wx"),
        "a token in the answer: {message}"
    );

    // Room again: the door takes messages again, in place or after the restart a supervisor
    // gives sluice when it exits with 75.
    disk.grow("64m");
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        if let Some(code) = d.exited() {
            assert_eq!(code, Some(75), "{}", d.stderr());
            d.restart();
            d.wait_healthy().await;
        }
        if let Ok(r) = http.post(&url).json(&door.message(9_999)).send().await
            && door_answer(r).await.2 == door.success
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still refused 45 s after the disk grew: {}",
            d.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Everything acknowledged is queued, plus the message just taken. The refused one may be
    // queued too when the disk filled during its flush rather than its write (at least once:
    // the sender's retry may repeat it).
    // The status says `null` for a moment while the store is being reopened.
    let deadline = Instant::now() + Duration::from_secs(10);
    let pending = loop {
        let s = d.status().await;
        let robot = s["robots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["robot"] == door.robot)
            .unwrap()
            .clone();
        if let Some(n) = robot["pending"].as_u64() {
            break n;
        }
        assert!(Instant::now() < deadline, "pending unknown for 10 s: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        (acknowledged + 1..=acknowledged + 2).contains(&pending),
        "{pending} pending, {acknowledged} + 1 acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dingtalk_door_answers_503_in_its_shape_when_the_disk_is_full() {
    full_disk(dingtalk()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feishu_door_answers_503_in_its_shape_when_the_disk_is_full() {
    full_disk(feishu()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wecom_door_answers_503_in_its_shape_when_the_disk_is_full() {
    full_disk(wecom()).await;
}
