//! End to end with the real Prometheus Alertmanager: Alertmanager → its webhook → sluice's
//! `POST /v1/alertmanager` (in-process, real sled in a temp dir) → the fake DingTalk robot.
//!
//! Alertmanager re-posts every firing group each `repeat_interval`, and every post repeats alerts
//! sluice already has. The test fires alerts, lets Alertmanager repeat them while they are still
//! pending and again after they were delivered, resolves two, and checks that the digests list
//! every occurrence exactly once (each firing alert once, each resolution once), that sluice
//! answered every post with success, and that the robot's rate limit was never approached.
//!
//! Needs `/usr/bin/prometheus-alertmanager` (Debian: `apt-get install -y prometheus-alertmanager`,
//! version 0.25); without it the test says so and passes, so that a machine without the package
//! can still run the rest of the suite.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::daemon::{Daemon, footer_of, footers_total, free_port, num};
use support::fake_robot::{Accepted, FakeRobot, Limits};

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
const SECRET: &str = "SECtest0123456789";
const TOKEN: &str = "ops-token";

/// Alertmanager's route timing. Measured on 0.25: a group's first notification goes out
/// `group_wait` after its first alert; from then on the group is looked at every
/// `group_interval`, and re-sent when something changed or when `repeat_interval` has passed since
/// the last successful send. The last send is stamped just after a tick, so a `repeat_interval`
/// of exactly two ticks passes on the second tick only sometimes; 1.5 ticks makes repeats come on
/// every second tick, i.e. every 2 s, like clockwork. Resolutions go out on the next tick.
const ROUTE_TIMING: &str = "group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1500ms";

/// sluice's window: longer than the 2 s between repeats, so the first repeat arrives while the
/// first alerts are still pending and the second after they were delivered; both must be dropped.
const WINDOW: &str = "3s";

/// One alert the test fires: each has its own `alertname`, so each is its own Alertmanager group
/// and its own webhook post.
struct Spec {
    name: &'static str,
    severity: Option<&'static str>,
    summary: Option<&'static str>,
    /// The sluice severity it must get.
    want: &'static str,
    /// Resolved in the second half of the test.
    resolve: bool,
}

impl Spec {
    /// The title sluice must give it: the summary, else the alertname.
    fn title(&self) -> &'static str {
        self.summary.unwrap_or(self.name)
    }

    /// The alert as posted to Alertmanager's API. Without `endsAt` it fires until resolved;
    /// without `startsAt` Alertmanager stamps its arrival, and keeps that start when the same
    /// labels are posted again.
    fn am_alert(&self, ends_at: Option<&str>) -> Value {
        let mut labels = json!({
            "alertname": self.name,
            "instance": format!("{}.example:9100", self.name.to_lowercase()),
            "job": "sluice-e2e",
        });
        if let Some(s) = self.severity {
            labels["severity"] = json!(s);
        }
        let mut annotations =
            json!({"description": format!("{} fired in the e2e test", self.name)});
        if let Some(s) = self.summary {
            annotations["summary"] = json!(s);
        }
        let mut alert = json!({"labels": labels, "annotations": annotations});
        if let Some(t) = ends_at {
            alert["endsAt"] = json!(t);
        }
        alert
    }
}

const SPECS: [Spec; 6] = [
    Spec {
        name: "SluiceE2eDiskFull",
        severity: Some("critical"),
        summary: Some("Disk full on db1"),
        want: "critical",
        resolve: true,
    },
    Spec {
        name: "SluiceE2eReplicationLag",
        severity: Some("error"),
        summary: None,
        want: "error",
        resolve: true,
    },
    Spec {
        name: "SluiceE2eHighLatency",
        severity: Some("warning"),
        summary: Some("p99 latency above 2 s on api"),
        want: "warning",
        resolve: false,
    },
    Spec {
        name: "SluiceE2eCertExpiry",
        severity: Some("info"),
        summary: None,
        want: "info",
        resolve: false,
    },
    Spec {
        name: "SluiceE2eQueueBacklog",
        // Severity labels are matched without regard to case.
        severity: Some("CRITICAL"),
        summary: Some("orders queue backlog above 10k"),
        want: "critical",
        resolve: false,
    },
    Spec {
        name: "SluiceE2eNoSeverity",
        severity: None,
        summary: None,
        want: "warning",
        resolve: false,
    },
];

fn limits() -> Limits {
    Limits {
        limit: 20,
        period: Duration::from_secs(2),
        lockout: Duration::from_secs(3),
    }
}

/// One signed DingTalk robot `ops` with a keyword, durations scaled as in `pipeline.rs`.
fn sluice_config(fake: &FakeRobot) -> String {
    format!(
        r#"
[server]
listen = "{{listen}}"
data_dir = "{{data_dir}}"

[defaults]
window = "{WINDOW}"
rate_limit = 20
rate_period = "2s"
retry_initial_backoff = "100ms"
retry_max_backoff = "400ms"
throttle_backoff = "1s"
blocked_probe = "400ms"
request_timeout = "2s"

[robots.ops]
webhook = "{webhook}"
secret = "{SECRET}"
keywords = ["告警"]
"#,
        webhook = fake.webhook(TOKEN),
    )
}

/// A real Alertmanager on 127.0.0.1, killed when dropped.
struct Alertmanager {
    child: Child,
    base: String,
    log: PathBuf,
    http: reqwest::Client,
}

impl Alertmanager {
    /// Starts it with its config, storage and log in `dir`, posting every group to `webhook`.
    fn start(dir: &Path, webhook: &str) -> Alertmanager {
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: sluice\n  group_by: ['alertname']\n  {ROUTE_TIMING}\n\
                 receivers:\n  - name: sluice\n    webhook_configs:\n      - url: '{webhook}'\n        \
                 send_resolved: true\n        max_alerts: 0\n"
            ),
        )
        .expect("write alertmanager.yml");
        let addr = free_port();
        let log = dir.join("alertmanager.log");
        let out = std::fs::File::create(&log).expect("alertmanager log");
        let child = Command::new(ALERTMANAGER)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg(format!("--web.external-url=http://{addr}"))
            // Empty: no cluster (gossip) listener, so nothing but the web port is opened and
            // there is no peer settling to wait for.
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone log handle"))
            .stderr(out)
            .spawn()
            .expect("spawn prometheus-alertmanager");
        Alertmanager {
            child,
            base: format!("http://{addr}"),
            log,
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("HTTP client"),
        }
    }

    /// Waits for `/-/ready` (panics after 10 s, or if the process exits).
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(r) = self.http.get(format!("{}/-/ready", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("alertmanager exited with {status}: {}", self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "alertmanager did not become ready: {}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `POST /api/v2/alerts`, as Prometheus does.
    async fn post_alerts(&self, alerts: Vec<Value>) {
        let r = self
            .http
            .post(format!("{}/api/v2/alerts", self.base))
            .json(&Value::Array(alerts))
            .send()
            .await
            .expect("POST /api/v2/alerts");
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "alertmanager answered {status}: {body}"
        );
    }

    /// A counter of the webhook integration from `/metrics`.
    async fn webhook_counter(&self, name: &str) -> u64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text");
        let prefix = format!("{name}{{integration=\"webhook\"}} ");
        let line = text
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in alertmanager's metrics"));
        line[prefix.len()..]
            .trim()
            .parse::<f64>()
            .unwrap_or_else(|e| panic!("{line}: {e}")) as u64
    }

    /// The end of its log: failed notifications are logged there with sluice's answer.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Now as RFC 3339 UTC with milliseconds (what Alertmanager's API takes for `endsAt`).
fn rfc3339_now() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let s = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    );
    // sluice's own parser is the reference.
    assert_eq!(sluice::alert::parse_rfc3339_ms(&s), Some(ms), "{s}");
    s
}

/// Polls the fake robot until `f` holds; on timeout panics with what the robot, sluice and
/// Alertmanager each have to say (Alertmanager logs sluice's answer to a failed post).
async fn wait_digests(
    fake: &FakeRobot,
    d: &Daemon,
    am: &Alertmanager,
    timeout: Duration,
    what: &str,
    f: impl Fn(&[Accepted]) -> bool,
) -> Vec<Accepted> {
    let deadline = Instant::now() + timeout;
    loop {
        let accepted = fake.accepted(TOKEN);
        if f(&accepted) {
            return accepted;
        }
        if Instant::now() >= deadline {
            let texts: Vec<&str> = accepted.iter().map(|a| a.text.as_str()).collect();
            panic!(
                "{what}: not within {timeout:?}\ndigests: {texts:#?}\nsluice: {}\nalertmanager log:\n{}",
                d.robot_status("ops").await,
                am.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_repeats_are_deduplicated_and_resolutions_delivered() {
    if !Path::new(ALERTMANAGER).exists() {
        eprintln!(
            "SKIPPED alertmanager_repeats_are_deduplicated_and_resolutions_delivered: {ALERTMANAGER} \
             is not installed (apt-get install -y prometheus-alertmanager)"
        );
        return;
    }
    let started = Instant::now();
    let fake = FakeRobot::start(limits()).await;
    fake.add_robot(TOKEN, Some(SECRET), &["告警"]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&sluice_config(&fake), dir.path()).await;
    let am_dir = tempfile::tempdir().unwrap();
    let mut am = Alertmanager::start(am_dir.path(), &d.url("/v1/alertmanager?robot=ops"));
    am.wait_ready().await;

    // Fire: one group per alert, so each is posted (and repeated) on its own.
    am.post_alerts(SPECS.iter().map(|s| s.am_alert(None)).collect())
        .await;
    // First notifications ~1 s later, the digest a window after that. A repeat round comes
    // meanwhile (alerts still pending) and keeps coming every 2 s.
    wait_digests(
        &fake,
        &d,
        &am,
        Duration::from_secs(15),
        "a digest of the fired alerts",
        |a| footers_total(a) >= SPECS.len() as u64,
    )
    .await;

    // Resolve two. The rest keep firing and keep being repeated, now after delivery.
    let now = rfc3339_now();
    am.post_alerts(
        SPECS
            .iter()
            .filter(|s| s.resolve)
            .map(|s| s.am_alert(Some(&now)))
            .collect(),
    )
    .await;
    let resolved = SPECS.iter().filter(|s| s.resolve).count() as u64;
    let total = SPECS.len() as u64 + resolved;
    wait_digests(
        &fake,
        &d,
        &am,
        Duration::from_secs(15),
        "a digest of the resolutions",
        |a| footers_total(a) >= total,
    )
    .await;

    // One more repeat round of every alert still firing must be dropped, and leave nothing
    // pending that a later digest would carry.
    let still_firing = SPECS.len() as u64 - resolved;
    let before = num(&d.robot_status("ops").await, "duplicates_dropped");
    let deadline = Instant::now() + Duration::from_secs(10);
    let s = loop {
        let s = d.robot_status("ops").await;
        if num(&s, "duplicates_dropped") >= before + still_firing {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the next repeat round of the {still_firing} firing alerts was not dropped as \
             duplicates (from {before}): {s}\nalertmanager log:\n{}",
            am.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(num(&s, "pending"), 0, "a repeat was queued again: {s}");
    assert_eq!(num(&s, "outbox"), 0, "{s}");
    assert!(
        num(&s, "duplicates_dropped") >= SPECS.len() as u64 + still_firing,
        "Alertmanager's repeats did not all reach sluice: {s}"
    );

    let got = fake.accepted(TOKEN);
    assert_eq!(
        footers_total(&got),
        total,
        "each firing alert once, each resolution once"
    );

    // Every alert of every digest, from the API (a digest may summarize what it does not list).
    let mut listed: Vec<Value> = Vec::new();
    for a in &got {
        let (id, n) = footer_of(&a.text);
        let (status, digest) = d.get(&format!("/v1/digests/{id}")).await;
        assert_eq!(status, 200, "{digest}");
        let alerts = digest["alerts"].as_array().expect("alerts").clone();
        assert_eq!(alerts.len() as u64, n, "{digest}");
        listed.extend(alerts);
    }
    for spec in &SPECS {
        let of = |status: &str| -> Vec<&Value> {
            listed
                .iter()
                .filter(|a| a["labels"]["alertname"] == spec.name && a["status"] == status)
                .collect()
        };
        let firing = of("firing");
        assert_eq!(firing.len(), 1, "{} firing: {firing:#?}", spec.name);
        let a = firing[0];
        assert_eq!(a["title"], spec.title(), "{a}");
        assert_eq!(a["severity"], spec.want, "{a}");
        assert_eq!(a["source"], "alertmanager", "{a}");
        let fingerprint = a["fingerprint"].as_str().expect("fingerprint");
        assert!(
            fingerprint.len() == 16 && fingerprint.bytes().all(|b| b.is_ascii_hexdigit()),
            "Alertmanager's fingerprint is kept: {a}"
        );
        assert!(
            got.iter().any(|g| g.text.contains(spec.title())),
            "{} in no digest text",
            spec.title()
        );

        let resolutions = of("resolved");
        if spec.resolve {
            assert_eq!(
                resolutions.len(),
                1,
                "{} resolved: {resolutions:#?}",
                spec.name
            );
            assert_eq!(resolutions[0]["fingerprint"], fingerprint);
            // Shown in a digest's resolved section, below its heading.
            assert!(
                got.iter().any(|g| g
                    .text
                    .split_once("#### ✅ Resolved")
                    .is_some_and(|(_, resolved)| resolved.contains(spec.title()))),
                "the resolution of {} is in no digest's resolved section",
                spec.title()
            );
        } else {
            assert!(resolutions.is_empty(), "{resolutions:#?}");
        }
    }

    // sluice answered every post with success, duplicates included: Alertmanager counts a
    // failed post here (and would retry it).
    assert_eq!(
        am.webhook_counter("alertmanager_notifications_failed_total")
            .await,
        0,
        "{}",
        am.log_tail()
    );
    let limits = fake.limits();
    assert_eq!(fake.throttled(TOKEN), 0);
    assert!(fake.max_in_window(TOKEN, limits.period) <= limits.limit);
    eprintln!(
        "alertmanager e2e: {} digests, {} alerts, {} repeats dropped, {:?}",
        got.len(),
        total,
        num(&d.robot_status("ops").await, "duplicates_dropped"),
        started.elapsed()
    );
    drop(am);
    d.stop().await;
}
