//! Cluster mode end to end: three `sluice` processes on a real three-server NATS JetStream
//! cluster (tests/support/nats.rs), one fake DingTalk robot that enforces its limit the way
//! DingTalk does, and the failures cluster mode promises to survive. The budget and the lease
//! are scaled down (5 per 10 s, lease 4 s) so that each scenario takes seconds; every assertion
//! is on what the fake robot accepted.
//!
//! Skipped, loudly, without a nats-server ≥ 2.11 (`.ci/run` installs one into target/pyenv).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::daemon::{ChildDaemon, footer_of};
use support::fake_robot::{FakeRobot, Fault, Limits};
use support::nats::{NatsCluster, nats_server_or_skip};

const TOKEN: &str = "cluster-token";
/// A second robot, `old`, whose one-hour window keeps its alerts queued until it is removed.
const OLD: &str = "cluster-old-token";
const SECRET: &str = "SECcluster-secret";
const LIMIT: usize = 5;
const PERIOD: Duration = Duration::from_secs(10);

/// A robot's budget: `limit` requests in any rolling `period`.
#[derive(Clone, Copy)]
struct Budget {
    limit: usize,
    period: Duration,
}

const BUDGET: Budget = Budget {
    limit: LIMIT,
    period: PERIOD,
};

/// Node `node`'s config on `nats`, sending to `fake` within `budget`.
fn config(fake: &FakeRobot, nats: &NatsCluster, node: &str, budget: Budget) -> String {
    let servers: Vec<String> = nats.urls().iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        r#"
[server]
listen = "{{listen}}"
data_dir = "{{data_dir}}"

[defaults]
window = "300ms"
rate_limit = {limit}
rate_period = "{period}s"
retry_initial_backoff = "100ms"
retry_max_backoff = "500ms"
throttle_backoff = "2s"
request_timeout = "1s"

[robots.ops]
webhook = "{webhook}"
secret = "{SECRET}"

[robots.old]
webhook = "{old}"
secret = "{SECRET}"
window = "1h"

[cluster]
nats = [{servers}]
node = "{node}"
replicas = 3
lease = "4s"
renew = "500ms"
clock_skew = "200ms"
"#,
        webhook = fake.webhook(TOKEN),
        old = fake.webhook(OLD),
        servers = servers.join(", "),
        limit = budget.limit,
        period = budget.period.as_secs(),
    )
}

/// One scenario at a time: each runs three NATS servers and three sluice nodes, and two cores
/// cannot carry several such clusters without their elections timing out.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Setup {
    nats: NatsCluster,
    fake: FakeRobot,
    nodes: Vec<ChildDaemon>,
    budget: Budget,
    _dirs: Vec<tempfile::TempDir>,
    /// Last: fields drop in order, so the next scenario starts once this one's processes are gone.
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

async fn setup(test: &str) -> Option<Setup> {
    setup_with(test, BUDGET).await
}

async fn setup_with(test: &str, budget: Budget) -> Option<Setup> {
    let server = nats_server_or_skip(test)?;
    let serial = SERIAL.lock().await;
    let nats = NatsCluster::start_with(server, 3).await;
    let fake = FakeRobot::start(Limits {
        limit: budget.limit,
        period: budget.period,
        lockout: Duration::from_secs(30),
    })
    .await;
    fake.add_robot(TOKEN, Some(SECRET), &[]);
    fake.add_robot(OLD, Some(SECRET), &[]);
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for i in 1..=3 {
        let dir = tempfile::tempdir().unwrap();
        nodes.push(ChildDaemon::start(
            &config(&fake, &nats, &format!("n{i}"), budget),
            dir.path(),
        ));
        dirs.push(dir);
    }
    for d in &mut nodes {
        d.wait_healthy().await;
    }
    Some(Setup {
        nats,
        fake,
        nodes,
        budget,
        _dirs: dirs,
        _serial: serial,
    })
}

/// The robot's entry in a node's status.
async fn ops(d: &ChildDaemon) -> Value {
    let s = d.status().await;
    s["robots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["robot"] == "ops")
        .cloned()
        .unwrap_or(Value::Null)
}

/// Index (0-based) of the node among `alive` that owns `ops`, once those agree on it and it has
/// stayed the same for a second and a half (a lane moves to its preferred node soon after the
/// nodes start; bounded wait).
async fn owner(nodes: &[ChildDaemon], alive: &[usize]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stable: Option<(String, Instant)> = None;
    loop {
        let mut seen = BTreeSet::new();
        for &i in alive {
            seen.insert(
                ops(&nodes[i]).await["owner"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            );
        }
        let agreed = (seen.len() == 1)
            .then(|| seen.into_iter().next().unwrap())
            // A dead node stays named until its lease runs out and another takes over.
            .filter(|o| {
                o.len() > 1
                    && alive.contains(&(o[1..].parse::<usize>().unwrap_or(0).wrapping_sub(1)))
            });
        match (&stable, agreed) {
            (Some((o, since)), Some(a)) if *o == a => {
                if since.elapsed() >= Duration::from_millis(1500) {
                    return a[1..].parse::<usize>().unwrap() - 1;
                }
            }
            (_, Some(a)) => stable = Some((a, Instant::now())),
            (_, None) => stable = None,
        }
        assert!(
            Instant::now() < deadline,
            "the nodes do not agree on an owner"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Posts single alerts to every node in turn until `stop`; the titles answered 202.
fn post_everywhere(
    addrs: Vec<String>,
    stop: Arc<AtomicBool>,
    tag: &'static str,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .unwrap();
        let mut acked = Vec::new();
        let started = Instant::now();
        for i in 0..5_000 {
            if stop.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(60) {
                break;
            }
            let addr = &addrs[i % addrs.len()];
            let title = format!("{tag} #{i}");
            let r = http
                .post(format!("http://{addr}/v1/alerts"))
                .json(&json!([{"robot": "ops", "title": title}]))
                .send()
                .await;
            match r {
                Ok(r) if r.status().as_u16() == 202 => acked.push(title),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        acked
    })
}

/// Waits until every title in `acked` is among those the fake robot's digests cover; the
/// delivered titles (with repeats).
async fn wait_delivered(
    s: &Setup,
    base: &str,
    acked: &BTreeSet<String>,
    limit: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + limit;
    loop {
        // A node may be busy (an election, a restart): ask again next round.
        let Some(delivered) = titles_now(base, &s.fake).await else {
            assert!(Instant::now() < deadline, "the digest API never answered");
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        };
        let have: BTreeSet<&String> = delivered.iter().collect();
        let missing: Vec<&String> = acked.iter().filter(|t| !have.contains(t)).collect();
        if missing.is_empty() {
            return delivered;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} acknowledged alerts never delivered, e.g. {:?}; nats:\n{}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(5)],
            s.nats.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Titles of the alerts of every digest the robot accepted, from the digest API at `base`;
/// `None` if the API did not answer one of them.
async fn titles_now(base: &str, fake: &FakeRobot) -> Option<Vec<String>> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut titles = Vec::new();
    for a in fake.accepted(TOKEN) {
        let (id, _) = footer_of(&a.text);
        let r = http
            .get(format!("{base}/v1/digests/{id}"))
            .send()
            .await
            .ok()?;
        let digest: Value = r.json().await.ok()?;
        for alert in digest["alerts"].as_array()? {
            titles.push(alert["title"].as_str()?.to_string());
        }
    }
    Some(titles)
}

/// The robot's own view: never more than its limit in any rolling period, never a throttle.
fn assert_budget_held(s: &Setup) {
    let Budget { limit, period } = s.budget;
    assert_eq!(s.fake.throttled(TOKEN), 0, "the robot throttled us");
    let most = s.fake.max_in_window(TOKEN, period);
    assert!(most <= limit, "{most} requests in one {period:?} window");
}

/// Digest ids the robot received more than once, with how often.
fn repeats(fake: &FakeRobot) -> BTreeMap<u64, usize> {
    let mut count: BTreeMap<u64, usize> = BTreeMap::new();
    for a in fake.accepted(TOKEN) {
        *count.entry(footer_of(&a.text).0).or_default() += 1;
    }
    count.retain(|_, n| *n > 1);
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_killed_mid_post_loses_nothing_and_the_budget_holds() {
    let Some(mut s) = setup("the_owner_killed_mid_post_loses_nothing_and_the_budget_holds").await
    else {
        return;
    };
    // Every answer takes 700 ms, so a send is in flight for a good part of each period.
    s.fake
        .set_sticky(TOKEN, Some(Fault::Slow(Duration::from_millis(700))));
    let addrs: Vec<String> = s.nodes.iter().map(|d| d.addr.to_string()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let posting = post_everywhere(addrs, stop.clone(), "kill");
    let first = owner(&s.nodes, &[0, 1, 2]).await;
    // Kill the owner while its POST is in flight.
    let deadline = Instant::now() + Duration::from_secs(20);
    while ops(&s.nodes[first]).await["state"] != "sending" {
        assert!(
            Instant::now() < deadline,
            "the owner never sent: {} requests; {}; {}",
            s.fake.requests(TOKEN).len(),
            s.nodes[first].status().await,
            s.nodes[first].stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.nodes[first].kill9();
    let rest: Vec<usize> = (0..3).filter(|&i| i != first).collect();
    let second = owner(&s.nodes, &rest).await;
    assert_ne!(second, first);
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.nodes[first].restart();
    s.nodes[first].wait_healthy().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let acked: BTreeSet<String> = posting.await.unwrap().into_iter().collect();
    assert!(acked.len() > 50, "only {} acknowledged", acked.len());
    s.fake.set_sticky(TOKEN, None);
    let base = format!("http://{}", s.nodes[second].addr);
    wait_delivered(&s, &base, &acked, Duration::from_secs(60)).await;
    assert_budget_held(&s);
    let repeated = repeats(&s.fake);
    assert!(
        repeated.len() <= 1 && repeated.values().all(|&n| n == 2),
        "more than one digest repeated for one kill: {repeated:?}"
    );
    eprintln!(
        "acked {}, digests {}, repeated {repeated:?}",
        acked.len(),
        s.fake.accepted(TOKEN).len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_paused_past_its_lease_does_not_send_when_it_wakes() {
    let Some(s) = setup("an_owner_paused_past_its_lease_does_not_send_when_it_wakes").await else {
        return;
    };
    let first = owner(&s.nodes, &[0, 1, 2]).await;
    let addrs: Vec<String> = s.nodes.iter().map(|d| d.addr.to_string()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let posting = post_everywhere(addrs, stop.clone(), "pause");
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.nodes[first].signal("STOP");
    // Past the lease (4 s): another node takes over and sends.
    let rest: Vec<usize> = (0..3).filter(|&i| i != first).collect();
    let second = owner(&s.nodes, &rest).await;
    assert_ne!(second, first);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = s.fake.requests(TOKEN).len();
    s.nodes[first].signal("CONT");
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let acked: BTreeSet<String> = posting.await.unwrap().into_iter().collect();
    let base = format!("http://{}", s.nodes[second].addr);
    wait_delivered(&s, &base, &acked, Duration::from_secs(60)).await;
    assert_budget_held(&s);
    // The woken node found its lease gone before sending anything (it may own the lane again
    // afterwards: it is the lane's preferred node, and takes it back as a new owner).
    let log = s.nodes[first].stderr();
    assert!(
        log.contains("the lease ran out before a renewal went through")
            || log.contains("another node took the lane over"),
        "{log}"
    );
    assert!(s.fake.requests(TOKEN).len() >= before);
    assert!(repeats(&s.fake).len() <= 1, "{:?}", repeats(&s.fake));
}

/// 2 per 45 s: the pacer spaces the two sends 22.5 s apart, so the whole cluster (three NATS
/// servers, three sluice nodes) is back well before the first send leaves its window. A node that
/// forgot the sends would send at once; one that carried them over waits for the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_cluster_restart_carries_the_budget_over() {
    let budget = Budget {
        limit: 2,
        period: Duration::from_secs(45),
    };
    let Some(mut s) = setup_with("a_whole_cluster_restart_carries_the_budget_over", budget).await
    else {
        return;
    };
    let http = reqwest::Client::new();
    // Spend the budget: an alert at a time, until both sends went out.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    while s.fake.accepted(TOKEN).len() < budget.limit {
        let addr = s.nodes[i % 3].addr;
        let r = http
            .post(format!("http://{addr}/v1/alerts"))
            .json(&json!([{"robot": "ops", "title": format!("spend #{i}")}]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        i += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(Instant::now() < deadline, "the budget was not spent");
    }
    let first = s.fake.accepted(TOKEN)[0].at;
    // Everything goes down: the sluice nodes and the NATS servers.
    for d in &mut s.nodes {
        d.kill9();
    }
    for n in 0..3 {
        s.nats.kill(n);
    }
    for n in 0..3 {
        s.nats.restart(n).await;
    }
    for d in &mut s.nodes {
        d.restart();
    }
    for d in &mut s.nodes {
        d.wait_healthy().await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = http
            .post(format!("http://{}/v1/alerts", s.nodes[0].addr))
            .json(&json!([{"robot": "ops", "title": "after the restart"}]))
            .send()
            .await;
        if r.is_ok_and(|r| r.status().as_u16() == 202) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster did not take alerts again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let back = Instant::now();
    assert!(
        back < first + budget.period - Duration::from_secs(3),
        "the restart took {:?} after the first send: too long to tell a carried budget from a forgotten one",
        back - first
    );
    let acked: BTreeSet<String> = ["after the restart".to_string()].into();
    let base = format!("http://{}", s.nodes[0].addr);
    wait_delivered(&s, &base, &acked, Duration::from_secs(60)).await;
    let third = s.fake.accepted(TOKEN)[budget.limit].at;
    assert!(
        third >= first + budget.period,
        "sent {:?} after the first, inside its window: the budget was forgotten",
        third - first
    );
    assert_budget_held(&s);
    eprintln!(
        "back {:?} after the first send; the next send {:?} after it",
        back - first,
        third - first
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_ingest_answers_503_and_resumes() {
    let Some(mut s) = setup("without_a_quorum_ingest_answers_503_and_resumes").await else {
        return;
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let post = |title: &str| {
        http.post(format!("http://{}/v1/alerts", s.nodes[0].addr))
            .json(&json!([{"robot": "ops", "title": title}]))
            .send()
    };
    assert_eq!(post("before").await.unwrap().status().as_u16(), 202);
    s.nats.kill(1);
    s.nats.kill(2);
    let r = post("no quorum").await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().get("retry-after").is_some());
    let body: Value = r.json().await.unwrap();
    assert!(body.to_string().to_lowercase().contains("nats"), "{body}");
    s.nats.restart(1).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = post("after").await;
        if r.is_ok_and(|r| r.status().as_u16() == 202) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no quorum 30 s after a server came back"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let acked: BTreeSet<String> = ["before".to_string(), "after".to_string()].into();
    let base = format!("http://{}", s.nodes[0].addr);
    wait_delivered(&s, &base, &acked, Duration::from_secs(40)).await;
    assert_budget_held(&s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_server_leading_the_control_records_killed_loses_nothing() {
    let Some(mut s) =
        setup("the_nats_server_leading_the_control_records_killed_loses_nothing").await
    else {
        return;
    };
    let addrs: Vec<String> = s.nodes.iter().map(|d| d.addr.to_string()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let posting = post_everywhere(addrs, stop.clone(), "leader");
    owner(&s.nodes, &[0, 1, 2]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let leader = s
        .nats
        .leader_of_stream("KV_sluice_robot")
        .await
        .expect("the control records have a leader");
    s.nats.kill(leader);
    tokio::time::sleep(Duration::from_secs(6)).await;
    s.nats.restart(leader).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let acked: BTreeSet<String> = posting.await.unwrap().into_iter().collect();
    assert!(acked.len() > 20, "only {} acknowledged", acked.len());
    let base = format!("http://{}", s.nodes[0].addr);
    wait_delivered(&s, &base, &acked, Duration::from_secs(60)).await;
    assert_budget_held(&s);
    assert!(repeats(&s.fake).len() <= 1, "{:?}", repeats(&s.fake));
}

/// A robot removed from every node's config leaves its queue in NATS; `sluice move` on any node
/// hands it to a configured robot, which delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_robots_queue_moves_on_any_node() {
    let Some(s) = setup("a_removed_robots_queue_moves_on_any_node").await else {
        return;
    };
    let http = reqwest::Client::new();
    let titles: Vec<String> = (0..30).map(|i| format!("old #{i}")).collect();
    for (i, t) in titles.iter().enumerate() {
        let r = http
            .post(format!("http://{}/v1/alerts", s.nodes[i % 3].addr))
            .json(&json!([{"robot": "old", "title": t}]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
    }
    // Every node drops `old` from its config and reloads.
    for d in &s.nodes {
        let text = std::fs::read_to_string(&d.config_path).unwrap();
        let cut = text.find("[robots.old]").unwrap();
        let end = text.find("[cluster]").unwrap();
        let without = format!("{}{}", &text[..cut], &text[end..]);
        std::fs::write(&d.config_path, without).unwrap();
        let r = http
            .post(format!("http://{}/-/reload", d.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    }
    // The last holder lets the lane go within a round; then any node may move it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let moved: Value = loop {
        let r = http
            .post(format!("http://{}/v1/queue/move", s.nodes[1].addr))
            .json(&json!({"robot": "old", "to": "ops"}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        if status == 200 {
            break body;
        }
        assert!(Instant::now() < deadline, "{status} {body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(moved["alerts"], 30, "{moved}");
    let acked: BTreeSet<String> = titles.into_iter().collect();
    let base = format!("http://{}", s.nodes[0].addr);
    wait_delivered(&s, &base, &acked, Duration::from_secs(40)).await;
    assert_budget_held(&s);
    assert!(s.fake.accepted(OLD).is_empty());
}

/// Alerts taken by a node that does not own the robot reach the owner at once: the ingest wakes
/// it through NATS (and an idle owner looks again every renew anyway).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_taken_by_another_node_wake_the_owner() {
    let Some(s) = setup("alerts_taken_by_another_node_wake_the_owner").await else {
        return;
    };
    let owner = owner(&s.nodes, &[0, 1, 2]).await;
    let other = (owner + 1) % 3;
    let http = reqwest::Client::new();
    // Status and metrics on every node say who sends for the robot and who is live.
    for (i, d) in s.nodes.iter().enumerate() {
        let status = d.status().await;
        assert_eq!(status["cluster"]["node"], format!("n{}", i + 1), "{status}");
        assert_eq!(
            status["cluster"]["live"],
            json!(["n1", "n2", "n3"]),
            "{status}"
        );
        assert!(status["cluster"]["error"].is_null(), "{status}");
        let r = http.get(d.url("/metrics")).send().await.unwrap();
        let metrics = r.text().await.unwrap();
        let owned = if i == owner { 1 } else { 0 };
        for line in [
            format!("sluice_cluster_lane_owned{{robot=\"ops\"}} {owned}"),
            "sluice_cluster_nodes_live 3".to_string(),
            "sluice_cluster_nats_up 1".to_string(),
        ] {
            assert!(
                metrics.lines().any(|l| l == line),
                "no {line:?} in\n{metrics}"
            );
        }
        assert!(
            metrics.contains("sluice_cluster_nats_rtt_seconds "),
            "{metrics}"
        );
    }
    let mut acked = BTreeSet::new();
    for round in 0..3 {
        let title = format!("via n{} #{round}", other + 1);
        let posted = Instant::now();
        let r = http
            .post(format!("http://{}/v1/alerts", s.nodes[other].addr))
            .json(&json!([{"robot": "ops", "title": title}]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        acked.insert(title);
        let base = format!("http://{}", s.nodes[owner].addr);
        wait_delivered(&s, &base, &acked, Duration::from_secs(15)).await;
        eprintln!(
            "round {round}: delivered {:?} after the post",
            posted.elapsed()
        );
        // The next round after the pacer's spacing (10 s / 5).
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert_budget_held(&s);
}

/// Found by `sluice demo --cluster`: only the owner's own ingest woke its idle lane, so an alert
/// taken by another node after the owner went idle stayed pending until the next alert that
/// happened to reach the owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_taken_by_another_node_wakes_the_idle_owner() {
    let Some(s) = setup("an_alert_taken_by_another_node_wakes_the_idle_owner").await else {
        return;
    };
    // The owner is asked again while waiting: right after start a lane may still move to its
    // preferred node, and the node that let it go shows it `remote`, never `idle`.
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        let first = owner(&s.nodes, &[0, 1, 2]).await;
        let state = ops(&s.nodes[first]).await["state"].clone();
        if state == "idle" {
            break first;
        }
        assert!(
            Instant::now() < deadline,
            "the owner (n{}) is never idle: {state}",
            first + 1
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let other = &s.nodes[(first + 1) % 3];
    let answer = reqwest::Client::new()
        .post(other.url("/v1/alerts"))
        .json(&json!([{"robot": "ops", "title": "taken elsewhere"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 202);
    let acked = BTreeSet::from(["taken elsewhere".to_string()]);
    // Seen within a renewal (500 ms) and a window; without the recheck, never.
    let base = format!("http://{}", s.nodes[first].addr);
    wait_delivered(&s, &base, &acked, Duration::from_secs(10)).await;
    assert_budget_held(&s);
}
