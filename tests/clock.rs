//! Wall-clock steps across a restart, and a host clock the robot disagrees with (issue 10,
//! finding 4). sluice runs in this process on a clock given through `sluice::serve_with_clock`:
//! the machine's own boot clock and boot id, with the wall clock put off by the step, so no test
//! touches the machine's time. The fake robot runs on the real clock and records when each
//! request reached it, which is what the limit is about.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice::limit::{Boot, BootId, Clock, Reading, StoredLog};
use sluice::store::SledStore as Store;
use support::daemon::{Daemon, footers_total, run_cli};
use support::fake_robot::{FakeRobot, Limits};

const TOKEN: &str = "clock-token";
const SECRET: &str = "SECclock0123456789";
const HOUR_MS: i64 = 3_600_000;
/// DingTalk's shape, scaled: 3 requests in any 3 s. The pacer then spaces sends 1 s apart, so a
/// restart is quicker than the next pacer slot and a burst, if sluice allowed one, shows.
const LIMIT: usize = 3;
const PERIOD: Duration = Duration::from_secs(3);
/// sluice's margin for a 3 s period (period / 50).
const MARGIN: Duration = Duration::from_millis(60);
/// Scheduling and request latency on a shared test machine.
const SLACK: Duration = Duration::from_millis(750);

fn config(fake: &FakeRobot, window: &str) -> String {
    format!(
        r#"
[server]
listen = "{{listen}}"
data_dir = "{{data_dir}}"

[defaults]
window = "{window}"
rate_limit = {LIMIT}
rate_period = "3s"
retry_initial_backoff = "100ms"
retry_max_backoff = "300ms"
throttle_backoff = "1s"
blocked_probe = "300ms"
request_timeout = "1s"

[robots.ops]
webhook = "{webhook}"
secret = "{SECRET}"
"#,
        webhook = fake.webhook(TOKEN),
    )
}

async fn fake() -> FakeRobot {
    let fake = FakeRobot::start(Limits {
        limit: LIMIT,
        period: PERIOD,
        lockout: Duration::from_secs(5),
    })
    .await;
    fake.add_robot(TOKEN, Some(SECRET), &[]);
    fake
}

/// Posts one error alert and expects it acknowledged.
async fn post(d: &Daemon, title: &str) {
    let (status, answer) = d.post(&json!({"title": title, "severity": "error"})).await;
    assert_eq!(status, 202, "{answer}");
}

/// The machine's clock with the wall clock `step_ms` off: what sluice would read after the wall
/// clock stepped, on the same boot.
fn stepped(step_ms: i64) -> Clock {
    let host = Clock::new().reading();
    assert!(
        host.boot.is_some(),
        "this test needs the kernel's boot clock"
    );
    Clock::at(Reading {
        wall_ms: host.wall_ms + step_ms,
        ..host
    })
}

/// What the robot saw after a full send log (the limit just used) was inherited by a restart on
/// the clock `clock` makes at the restart, with alerts arriving all along.
struct AfterRestart {
    restarted: Instant,
    /// Arrival times of the requests made after the restart.
    sends: Vec<Instant>,
    most_in_a_period: usize,
    throttled: usize,
}

async fn restart_with_a_full_send_log(clock: impl FnOnce() -> Clock) -> AfterRestart {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let template = config(&fake, "0s");
    let first = Daemon::start_with_clock(&template, dir.path(), Clock::new()).await;
    for i in 0..LIMIT {
        post(&first, &format!("before the restart #{i}")).await;
        fake.wait_for(TOKEN, Duration::from_secs(5), |a| a.len() > i)
            .await;
    }
    first.stop().await;

    let restarted = Instant::now();
    let second = Daemon::start_with_clock(&template, dir.path(), clock()).await;
    let mut n = 0;
    while restarted.elapsed() < 2 * PERIOD + SLACK {
        post(&second, &format!("after the restart #{n}")).await;
        n += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    second.stop().await;
    let sends = fake
        .requests(TOKEN)
        .iter()
        .map(|r| r.at)
        .filter(|&at| at > restarted)
        .collect();
    AfterRestart {
        restarted,
        sends,
        most_in_a_period: fake.max_in_window(TOKEN, PERIOD),
        throttled: fake.throttled(TOKEN),
    }
}

impl AfterRestart {
    /// Within one period the robot has its next send, and then more at its pace.
    fn assert_no_stall(&self) {
        let first = self.sends.first().unwrap_or_else(|| {
            panic!(
                "no send in the {:?} after the restart",
                self.restarted.elapsed()
            )
        });
        let waited = first.duration_since(self.restarted);
        assert!(
            waited <= PERIOD + MARGIN + SLACK,
            "the first send came {waited:?} after the restart"
        );
        assert!(
            self.sends.len() >= 2,
            "{} sends after the restart",
            self.sends.len()
        );
    }

    /// The robot never saw more than its limit in one period, and never throttled.
    fn assert_no_burst(&self) {
        assert!(
            self.most_in_a_period <= LIMIT,
            "the robot saw {} requests in one period of {PERIOD:?} (limit {LIMIT})",
            self.most_in_a_period
        );
        assert_eq!(self.throttled, 0, "the robot answered 130101");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_stepped_back_an_hour_across_a_restart_does_not_stall_the_robot() {
    let after = restart_with_a_full_send_log(|| stepped(-HOUR_MS)).await;
    after.assert_no_stall();
    after.assert_no_burst();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_stepped_forward_an_hour_across_a_restart_does_not_burst() {
    let after = restart_with_a_full_send_log(|| stepped(HOUR_MS)).await;
    after.assert_no_burst();
    after.assert_no_stall();
}

/// After a reboot the boot clock starts again and proves nothing about the old sends but that
/// they came before the boot. Here the "reboot" began just before the restart (a fresh boot id,
/// 50 ms of boot time, less than the restart took), with the wall clock an hour ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_stepped_forward_across_a_reboot_does_not_burst() {
    let rebooted = || {
        let host = Clock::new().reading();
        let host_boot = host.boot.expect("this test needs the kernel's boot clock");
        Clock::at(Reading {
            wall_ms: host.wall_ms + HOUR_MS,
            boot: Some(Boot {
                id: BootId(!host_boot.id.0),
                ms: 50,
            }),
        })
    };
    let after = restart_with_a_full_send_log(rebooted).await;
    after.assert_no_burst();
    after.assert_no_stall();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_received_while_the_clock_was_ahead_wait_no_longer_than_the_window() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let window = Duration::from_secs(2);
    let template = config(&fake, "2s");
    // Alerts in, and a restart before their window closes; the wall clock then steps back.
    let first = Daemon::start_with_clock(&template, dir.path(), Clock::new()).await;
    for i in 0..5 {
        post(&first, &format!("while the clock was ahead #{i}")).await;
    }
    first.stop().await;
    assert!(fake.requests(TOKEN).is_empty(), "sent before the restart");

    let restarted = Instant::now();
    let second = Daemon::start_with_clock(&template, dir.path(), stepped(-HOUR_MS)).await;
    let got = fake
        .wait_for(TOKEN, window + SLACK + Duration::from_secs(1), |a| {
            footers_total(a) >= 5
        })
        .await;
    let waited = got[0].at.duration_since(restarted);
    assert!(
        waited <= window + SLACK,
        "the digest came {waited:?} after the restart (window {window:?})"
    );
    assert_eq!(footers_total(&got), 5);
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_timestamp_answer_says_how_far_the_host_clock_is_off() {
    let fake = fake().await;
    // The robot's clock is two hours ahead of the host's: our signatures are two hours old to it.
    fake.set_clock_skew(2 * HOUR_MS);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with_clock(&config(&fake, "0s"), dir.path(), Clock::new()).await;
    post(&d, "signed with the host's clock").await;

    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        let s = d.robot_status("ops").await;
        if s["state"] == "blocked" {
            break s;
        }
        assert!(Instant::now() < deadline, "never blocked: {s}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let error = status["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("invalid timestamp")
            && error.contains("the host clock is 2h 0m behind the robot's (its Date header: "),
        "{status}"
    );
    // `sluice status` shows it as well.
    let (code, table, _) = run_cli(&["status", "--server", &d.addr.to_string()], None, &[]);
    assert_eq!(code, 0);
    assert!(table.contains("the host clock is 2h 0m behind"), "{table}");
    d.stop().await;
    assert!(fake.accepted(TOKEN).is_empty());
}

/// The fake robot's skewed clock, on its own: it refuses a host-signed timestamp as DingTalk
/// would, accepts one signed on its clock, and dates every answer from it.
#[tokio::test]
async fn the_fake_robots_skewed_clock_refuses_host_timestamps_and_dates_its_answers() {
    use support::fake_robot::{ERR_OK, ERR_SECURITY, unix_ms};
    let fake = FakeRobot::start(Limits::default()).await;
    fake.add_robot(TOKEN, Some(SECRET), &[]);
    let http = reqwest::Client::new();
    let body = json!({"msgtype": "markdown", "markdown": {"title": "t", "text": "x"}});
    let send = |ts: i64| {
        http.post(fake.signed_webhook(TOKEN, SECRET, ts))
            .json(&body)
            .send()
    };
    for skew in [2 * HOUR_MS, -2 * HOUR_MS] {
        fake.set_clock_skew(skew);
        let r = send(unix_ms()).await.unwrap();
        let date = r.headers()["date"].to_str().unwrap().to_string();
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["errcode"], ERR_SECURITY, "{answer}");
        assert_eq!(answer["errmsg"], "invalid timestamp");
        let dated = jiff::fmt::rfc2822::DateTimeParser::new()
            .parse_timestamp(&date)
            .unwrap()
            .as_millisecond();
        assert!((dated - (unix_ms() + skew)).abs() < 5_000, "Date: {date}");
        let r = send(unix_ms() + skew).await.unwrap();
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["errcode"], ERR_OK, "{answer}");
    }
}

/// A store written by the release before boot stamps opens, and its send log still counts.
#[test]
fn a_send_log_written_before_boot_stamps_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), 8 << 20).unwrap();
        store.set_send_log("ops", &[1_000, 2_000], true).unwrap();
        let clock = Clock::new();
        store
            .set_stamped_send_log("dq", &clock.stored(&[5_000]), true)
            .unwrap();
    }
    let store = Store::open(dir.path(), 8 << 20).unwrap();
    assert_eq!(
        store.stamped_send_log("ops").unwrap(),
        StoredLog::Wall(vec![1_000, 2_000])
    );
    assert_eq!(store.send_log("dq").unwrap(), vec![5_000]);
    match store.stamped_send_log("dq").unwrap() {
        StoredLog::Boot(b) => assert_eq!(b.sends.len(), 1),
        StoredLog::Wall(w) => assert!(
            sluice::limit::host_boot().is_none(),
            "a host with a boot clock wrote wall times alone: {w:?}"
        ),
    }
    assert_eq!(
        store.stamped_send_log("none").unwrap(),
        StoredLog::Wall(Vec::new())
    );
}
