//! Robot pools end to end, in-process: sluice (real sled in a temp dir) → real HTTP → the fake
//! DingTalk robot with three tokens, each limited to 20 per 2 s (DingTalk's 20 a minute, scaled).

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::json;
use support::daemon::{ChildDaemon, Daemon, Poster, footer_of};
use support::fake_robot::{Accepted, FakeRobot, Fault, Limits, max_in_window_of};

const TOKENS: [&str; 3] = ["a-token", "b-token", "c-token"];
const PERIOD: Duration = Duration::from_secs(2);

fn config(fake: &FakeRobot) -> String {
    format!(
        r#"
[server]
listen = "{{listen}}"
data_dir = "{{data_dir}}"

[defaults]
window = "10ms"
rate_limit = 20
rate_period = "2s"
retry_initial_backoff = "100ms"
retry_max_backoff = "400ms"
throttle_backoff = "1s"
blocked_probe = "300ms"
request_timeout = "2s"

[robots.a]
webhook = "{a}"
[robots.b]
webhook = "{b}"
[robots.c]
webhook = "{c}"

[pools.oncall]
robots = ["a", "b", "c"]
"#,
        a = fake.webhook(TOKENS[0]),
        b = fake.webhook(TOKENS[1]),
        c = fake.webhook(TOKENS[2]),
    )
}

/// Posts one alert every 20 ms for `d`, to `robot`; returns how many.
async fn stream(d: &Daemon, robot: &str, prefix: &str, for_: Duration) -> u64 {
    let end = Instant::now() + for_;
    let mut n = 0;
    while Instant::now() < end {
        let (code, _) = d
            .post(&json!({"robot": robot, "title": format!("{prefix} {n}"), "severity": "warning"}))
            .await;
        assert_eq!(code, 202);
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    n
}

/// The fake DingTalk with the three members' tokens, each at 20 per [`PERIOD`].
async fn three_robots() -> FakeRobot {
    let fake = FakeRobot::start(Limits {
        limit: 20,
        period: PERIOD,
        lockout: Duration::from_secs(3),
    })
    .await;
    for t in TOKENS {
        fake.add_robot(t, None, &[]);
    }
    fake
}

fn all_accepted(fake: &FakeRobot) -> Vec<Accepted> {
    TOKENS.iter().flat_map(|t| fake.accepted(t)).collect()
}

/// The issue's pool: three DingTalk robots carry a steady stream at about three robots' worth,
/// none of them over its own limit; one blocked mid-run is skipped and nothing is lost or sent
/// twice; once it is fixed the pool uses it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_three_carries_three_limits_and_skips_a_blocked_member() {
    let fake = three_robots().await;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake), dir.path()).await;

    // 1. All three: the stream (50 alerts a second) is more than one robot's 10 digests a
    // second; alerts naming a member go to the pool's queue too.
    let mut posted = stream(&d, "oncall", "calm", Duration::from_millis(2500)).await;
    posted += stream(&d, "a", "member", Duration::from_millis(500)).await;
    let calm_times: Vec<Instant> = all_accepted(&fake).iter().map(|a| a.at).collect();
    let together = max_in_window_of(&calm_times, PERIOD);
    assert!(
        together > 35,
        "three robots carry well above one robot's 20 per period: {together}"
    );

    // 2. b is revoked: the pool carries on with a and c.
    fake.set_sticky(
        TOKENS[1],
        Some(Fault::Errcode(300001, "token is not exist")),
    );
    let blocked_at = Instant::now();
    posted += stream(&d, "oncall", "blocked", Duration::from_millis(2000)).await;
    let b = d.robot_status("b").await;
    assert_eq!(b["pool"], "oncall", "{b}");
    assert_eq!(b["state"], "blocked", "{b}");
    assert!(b["last_error"].as_str().unwrap().contains("300001"), "{b}");
    let pool = d.robot_status("oncall").await;
    assert_eq!(pool["members"], json!(["a", "b", "c"]), "{pool}");
    let during: usize = [TOKENS[0], TOKENS[2]]
        .iter()
        .map(|t| {
            fake.accepted(t)
                .iter()
                .filter(|a| a.at > blocked_at + Duration::from_millis(300))
                .count()
        })
        .sum();
    assert!(during > 20, "a and c go on while b is blocked: {during}");

    // 3. b is fixed: its next probe gets through and it carries digests again.
    fake.set_sticky(TOKENS[1], None);
    let fixed_at = Instant::now();
    posted += stream(&d, "oncall", "fixed", Duration::from_millis(1500)).await;
    fake.wait_for(TOKENS[1], Duration::from_secs(5), |got| {
        got.iter().filter(|a| a.at > fixed_at).count() >= 3
    })
    .await;

    // Every alert accounted exactly once, across members, with no digest twice.
    let deadline = Instant::now() + Duration::from_secs(10);
    let total = loop {
        let total: u64 = all_accepted(&fake)
            .iter()
            .map(|a| footer_of(&a.text).1)
            .sum();
        if total >= posted || Instant::now() > deadline {
            break total;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(total, posted, "every alert in exactly one delivered digest");
    let got = all_accepted(&fake);
    let ids: BTreeSet<u64> = got.iter().map(|a| footer_of(&a.text).0).collect();
    assert_eq!(ids.len(), got.len(), "no digest delivered twice");
    for t in TOKENS {
        let most = fake.max_in_window(t, PERIOD);
        assert!(most <= 20, "{t}: {most} requests in one period");
        assert_eq!(fake.throttled(t), 0, "{t} was never throttled");
        assert!(!fake.accepted(t).is_empty(), "{t} carried digests");
    }

    // Status and metrics show the pool and each member.
    let pool = d.robot_status("oncall").await;
    assert_eq!(pool["provider"], "dingtalk");
    assert_eq!(pool["rate_limit"], 60, "{pool}");
    assert_eq!(pool["alerts_delivered"].as_u64(), Some(posted), "{pool}");
    let (_, status) = d.get("/v1/status").await;
    let names: Vec<&str> = status["robots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["robot"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["oncall", "a", "b", "c"], "{status}");
    let members_delivered: u64 = ["a", "b", "c"]
        .iter()
        .map(|m| {
            status["robots"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["robot"] == *m)
                .unwrap()["alerts_delivered"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(members_delivered, posted);
    let metrics = reqwest::get(d.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for m in ["a", "b", "c"] {
        let line = format!("sluice_pool_member{{pool=\"oncall\",robot=\"{m}\"}} 1");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    assert!(
        metrics.contains("sluice_robot_state{robot=\"b\",state=\"idle\"}"),
        "{metrics}"
    );
    d.stop().await;
}

/// Each member's send log is its own and survives a restart: a pool restarted right after a
/// full period of sends does not send through any member again until its limit frees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_members_limit_holds_across_a_restart() {
    let fake = three_robots().await;
    let dir = tempfile::tempdir().unwrap();
    let mut posted = 0;
    for round in 0..2 {
        let d = Daemon::start(&config(&fake), dir.path()).await;
        posted += stream(
            &d,
            "oncall",
            &format!("round{round}"),
            Duration::from_millis(1500),
        )
        .await;
        d.stop().await;
    }
    let d = Daemon::start(&config(&fake), dir.path()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let total: u64 = all_accepted(&fake)
            .iter()
            .map(|a| footer_of(&a.text).1)
            .sum();
        if total >= posted {
            assert_eq!(total, posted);
            break;
        }
        assert!(Instant::now() < deadline, "{total} of {posted} delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for t in TOKENS {
        assert!(fake.max_in_window(t, PERIOD) <= 20, "{t}");
        assert_eq!(fake.throttled(t), 0, "{t}");
    }
    d.stop().await;
}

/// A reload that adds a member: the pool's task restarts with the new member, the queue and
/// every member's send log are kept, alerts naming the new member (a robot of its own until
/// then) go to the pool, and no member goes over its limit across the reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_adds_a_member_keeps_the_queue_and_every_limit() {
    let fake = three_robots().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    let two = config(&fake).replace("robots = [\"a\", \"b\", \"c\"]", "robots = [\"a\", \"b\"]");
    let d = Daemon::start_file(&two, &dir.path().join("data"), &path).await;

    // c is a robot of its own; a and b carry the pool at their limits.
    let mut posted = stream(&d, "oncall", "two", Duration::from_millis(1500)).await;
    let alone = stream(&d, "c", "alone", Duration::from_millis(200)).await;

    // c joins the pool.
    d.rewrite(&config(&fake), &path);
    let r = reqwest::Client::new()
        .post(d.url("/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    let joined_at = Instant::now();
    posted += stream(&d, "oncall", "three", Duration::from_millis(1500)).await;
    posted += stream(&d, "c", "member", Duration::from_millis(500)).await;

    // Every alert accounted once: the pool's, and c's own from before it joined.
    let want = posted + alone;
    let deadline = Instant::now() + Duration::from_secs(10);
    let total = loop {
        let total: u64 = all_accepted(&fake)
            .iter()
            .map(|a| footer_of(&a.text).1)
            .sum();
        if total >= want || Instant::now() > deadline {
            break total;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(total, want, "every alert in exactly one delivered digest");
    let got = all_accepted(&fake);
    let ids: BTreeSet<u64> = got.iter().map(|a| footer_of(&a.text).0).collect();
    assert_eq!(ids.len(), got.len(), "no digest delivered twice");
    // The pool used c once it joined.
    let c_after = fake
        .accepted(TOKENS[2])
        .iter()
        .filter(|a| a.at > joined_at && a.text.contains("three"))
        .count();
    assert!(c_after > 0, "c carries the pool's digests after the reload");
    for t in TOKENS {
        let most = fake.max_in_window(t, PERIOD);
        assert!(most <= 20, "{t}: {most} requests in one period");
        assert_eq!(fake.throttled(t), 0, "{t} was never throttled");
    }
    let pool = d.robot_status("oncall").await;
    assert_eq!(pool["members"], json!(["a", "b", "c"]), "{pool}");
    d.stop().await;
}

/// The real binary, `kill -9`ed four times while the pool sends as fast as its members allow:
/// no member goes over its own limit in any window (each one's send log was on disk before each
/// POST), the pool carried more than one robot could, and every acknowledged alert arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_member_goes_over_its_limit_across_kill9() {
    let fake = three_robots().await;
    let dir = tempfile::tempdir().unwrap();
    // No window: something is always pending, so the pool sends at its members' limits.
    let text = config(&fake).replace("window = \"10ms\"", "window = \"0s\"");
    let mut d = ChildDaemon::start(&text, dir.path());
    d.wait_healthy().await;

    let poster = Poster::start(
        d.url("/v1/alerts"),
        Duration::from_millis(3),
        |n| json!({"robot": "oncall", "title": format!("steady {n}")}),
    );
    for pause_ms in [1200u64, 500, 900, 300] {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        d.kill9();
        d.restart();
    }
    d.wait_healthy().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let acked = poster.stop().await;

    let mut busiest = 0;
    for t in TOKENS {
        assert_eq!(fake.throttled(t), 0, "{t} was pushed past its limit");
        let most = fake.max_in_window(t, PERIOD);
        assert!(most <= 20, "{most} requests to {t} in one 2 s window");
        busiest = busiest.max(most);
    }
    let all: Vec<Instant> = all_accepted(&fake).iter().map(|a| a.at).collect();
    let together = max_in_window_of(&all, PERIOD);
    assert!(
        together > 20,
        "the pool carried more than one robot may: {together} in its busiest window, {busiest} for one member"
    );
    // At least once: a digest whose answer a kill cut off may be sent again, never lost.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let total: u64 = all_accepted(&fake)
            .iter()
            .map(|a| footer_of(&a.text).1)
            .sum();
        if total >= acked {
            break;
        }
        assert!(Instant::now() < deadline, "{total} of {acked} delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(acked > 200, "{acked} alerts acknowledged");
    eprintln!(
        "pool across kill -9: {acked} acknowledged, {together} in the pool's busiest 2 s, {busiest} for the busiest member"
    );
}
