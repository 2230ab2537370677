//! Real DingTalk clients through sluice's front door: the DingtalkChatbot library (PyPI 1.5.7) and
//! a pyodps data-quality job's urllib script (`tests/clients/`), each with only the host of its
//! webhook changed to sluice's, post to `/robot/send?access_token=…&timestamp=…&sign=…` of an
//! in-process sluice whose robot is the fake DingTalk robot with the same token and secret.
//! Every answer must be DingTalk's own success body, and the digests the fake robot accepts must
//! carry every message, their footers counting each one.
//!
//! Needs the Python virtual environment `.ci/run` installs (`$CARGO_TARGET_DIR/pyenv`, default
//! `target/pyenv`, from `tests/clients/requirements.txt`); without it the test says so and passes,
//! as tests/alertmanager.rs does without Alertmanager.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::daemon::{Daemon, footers_total};
use support::fake_robot::{Accepted, FakeRobot, Limits};

const SECRET: &str = "SECfrontdoor0123456789abcdef";
const TOKEN: &str = "fd-clients-token";

/// The virtual environment's python, where `.ci/run` puts it.
fn pyenv_python() -> Option<PathBuf> {
    let mut targets = Vec::new();
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        targets.push(PathBuf::from(t));
    }
    // This test runs as <target>/debug/deps/frontdoor_clients-<hash>.
    if let Ok(exe) = std::env::current_exe()
        && let Some(t) = exe.ancestors().nth(3)
    {
        targets.push(t.to_path_buf());
    }
    targets.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    targets
        .into_iter()
        .map(|t| t.join("pyenv/bin/python"))
        .find(|p| p.exists())
}

/// Runs `tests/clients/<script>` with `args`; returns its stdout, or panics with its output
/// when it fails or takes over 60 s.
fn run_client(python: &Path, script: &str, args: &[&str]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let mut cmd = Command::new(python);
    cmd.arg(&path)
        .args(args)
        // 127.0.0.1 only, whatever proxy the environment names.
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONIOENCODING", "utf-8")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
    ] {
        cmd.env_remove(var);
    }
    let child = cmd.spawn().expect("spawn python");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.expect("wait for python"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{script} did not finish within 60 s");
        }
    };
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "{script} failed ({}): {stdout}{stderr}",
        out.status
    );
    stdout
}

fn config(fake: &FakeRobot) -> String {
    format!(
        r#"
[server]
listen = "{{listen}}"
data_dir = "{{data_dir}}"

[defaults]
window = "1s"
rate_limit = 20
rate_period = "2s"
retry_initial_backoff = "100ms"
retry_max_backoff = "300ms"
request_timeout = "2s"

[robots.ops]
webhook = "{webhook}"
secret = "{SECRET}"
"#,
        webhook = fake.webhook(TOKEN),
    )
}

/// The text and title of every digest the fake accepted, for `contains` checks.
fn all_text(accepted: &[Accepted]) -> String {
    accepted
        .iter()
        .map(|a| format!("{}\n{}\n", a.title, a.text))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dingtalkchatbot_and_a_pyodps_job_change_only_the_host() {
    let Some(python) = pyenv_python() else {
        eprintln!(
            "SKIPPED dingtalkchatbot_and_a_pyodps_job_change_only_the_host: no Python virtual \
             environment with DingtalkChatbot at $CARGO_TARGET_DIR/pyenv (default target/pyenv); \
             run .ci/run to install it"
        );
        return;
    };
    let fake = FakeRobot::start(Limits {
        limit: 20,
        period: Duration::from_secs(2),
        lockout: Duration::from_secs(5),
    })
    .await;
    fake.add_robot(TOKEN, Some(SECRET), &[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake), dir.path()).await;

    // DingtalkChatbot: the webhook a user has, with sluice's host; the library signs it.
    let webhook = d.url(&format!("/robot/send?access_token={TOKEN}"));
    let python2 = python.clone();
    let out = tokio::task::spawn_blocking(move || {
        run_client(&python2, "dingtalkchatbot_send.py", &[&webhook, SECRET])
    })
    .await
    .unwrap();
    let answers: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let types: Vec<&str> = answers
        .iter()
        .map(|a| a["msgtype"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["text", "markdown", "actionCard", "feedCard"],
        "{out}"
    );
    for a in &answers {
        assert_eq!(
            a["answer"],
            json!({"errcode": 0, "errmsg": "ok"}),
            "{}",
            a["msgtype"]
        );
    }

    // The pyodps job: host:port, token and secret on the command line; it signs with hmac.
    let host = d.addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        run_client(&python, "pyodps_job.py", &[&host, TOKEN, SECRET])
    })
    .await
    .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).unwrap(),
        json!({"errcode": 0, "errmsg": "ok"}),
        "{out}"
    );

    // Four mergeable messages (text, markdown, actionCard, the job's text) in digests.
    fake.wait_for(TOKEN, Duration::from_secs(20), |a| {
        let text = all_text(a);
        MERGED.iter().all(|t| text.contains(t))
    })
    .await;
    assert_eq!(fake.throttled(TOKEN), 0);

    // All five are stored: delivered or still pending (the feedCard may wait for its own send).
    let s = d
        .wait_status("ops", Duration::from_secs(20), |s| {
            s["pending"].as_u64().unwrap_or(0) + s["alerts_delivered"].as_u64().unwrap_or(0) == 5
        })
        .await;
    eprintln!("status after the clients: {s}");

    // The feedCard cannot be merged: delivery sends its body alone (when it does; before that it
    // is only stored, checked above). Every other message is counted by a digest's footer.
    let got = fake.accepted(TOKEN);
    let alone: Vec<&Accepted> = got
        .iter()
        .filter(|a| a.body["msgtype"] == "feedCard")
        .collect();
    let digests: Vec<Accepted> = got
        .iter()
        .filter(|a| a.body["msgtype"] != "feedCard")
        .cloned()
        .collect();
    let merged_feedcards = usize::from(all_text(&digests).contains("weekly report: sluice"));
    if let Some(feed) = alone.first() {
        let titles: Vec<&str> = feed.body["feedCard"]["links"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["title"].as_str().unwrap())
            .collect();
        assert_eq!(titles, ["weekly report: sluice", "weekly report: ingest"]);
    }
    assert!(alone.len() + merged_feedcards <= 1, "{got:?}");
    assert_eq!(
        footers_total(&digests),
        (MERGED.len() + merged_feedcards) as u64,
        "{}",
        all_text(&digests)
    );
    d.stop().await;
}

/// What the digests must show of the four mergeable messages: their titles.
const MERGED: [&str; 4] = [
    "dq_orders 行数为 0",
    "nightly ETL failed",
    "deploy api v2.3.1 失败",
    "数据质量告警: ods_user_login ds=20261201 行数 0",
];
