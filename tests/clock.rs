//! Wall-clock steps across a restart, and a host clock the robot disagrees with (issue 10,
//! finding 4). sluice runs in this process on a clock given through `sluice::serve_with_clock`:
//! the machine's own boot clock and boot id, with the wall clock put off by the step, so no test
//! touches the machine's time. The fake robot runs on the real clock and records when each
//! request reached it, which is what the limit is about.

mod support;

use serde_json::{Value, json};
use support::fake_robot::{FakeRobot, Limits};

const TOKEN: &str = "clock-token";
const SECRET: &str = "SECclock0123456789";
const HOUR_MS: i64 = 3_600_000;

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
