//! One robot's delivery lane run in-process over the in-memory store, for tests that put
//! alerts into the store directly (ones a front door would take in: with their
//! [`sluice::alert::Extra`]) and watch what the fake platform receives over real HTTP.

use std::sync::Arc;
use std::time::Duration;

use sluice::alert::{Alert, Extra, Severity, Status, default_fingerprint};
use sluice::config::Config;
use sluice::delivery::{RobotHandle, RobotStatus, RobotTask, Run};
use sluice::limit::Clock;
use sluice::provider::Provider;
use sluice::store::{Entry, MemoryStore, Store};
use tokio::sync::watch;

/// A running lane for robot `robot` of `config`; stopped when dropped.
pub struct Lane {
    pub store: Arc<MemoryStore>,
    pub handle: RobotHandle,
    run: watch::Sender<Run>,
    robot: String,
}

impl Lane {
    /// Starts the lane of `robot`, configured by the TOML text `config`.
    pub fn start(config: &str, robot: &str) -> Lane {
        let config = Config::parse(config, "test config", &|_| None).expect("a valid config");
        let r = config.robots[robot].clone();
        let clock = Clock::new();
        let metrics = sluice::metrics::Metrics::new().robot(robot);
        let handle = RobotHandle::new(r.clone(), RobotStatus::new(clock.now_ms()), metrics);
        let client = sluice::provider::http_client().expect("an HTTP client");
        let public_url = config.server.public_url.clone();
        let provider =
            Provider::new(&r.target(), public_url.as_deref(), Ok(&client)).expect("a provider");
        let store = Arc::new(MemoryStore::new());
        let (run, rx) = watch::channel(Run::Go);
        let task = RobotTask {
            handle: handle.clone(),
            store: store.clone(),
            provider,
            clock,
            run: rx,
            public_url,
            owners: Arc::new(config.owners.clone()),
            outbox: Vec::new(),
            lanes: Arc::new(|_: &str| None),
        };
        tokio::spawn(task.run());
        Lane {
            store,
            handle,
            run,
            robot: robot.to_string(),
        }
    }

    /// Queues `alerts` for the lane's robot, in order, as one ingest, and wakes the lane.
    pub async fn push(&self, alerts: Vec<Alert>) {
        let entries = alerts
            .into_iter()
            .map(|alert| Entry {
                robot: self.robot.clone(),
                alert,
                dedup_key: None,
            })
            .collect();
        let window = Arc::new(|_: &str| Duration::from_secs(60));
        self.store
            .append(entries, None, sluice::unix_ms(), window)
            .await
            .expect("appended");
        self.handle.wake.notify_one();
    }

    /// The robot's digests as the store has them, oldest first.
    pub async fn digests(&self) -> Vec<sluice::store::DigestRecord> {
        let all = self.store.digests().await.expect("digests");
        all.into_iter().filter(|d| d.robot == self.robot).collect()
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        let _ = self.run.send(Run::Shutdown);
    }
}

/// A firing alert titled `title`, received now, with `extra` if given.
pub fn alert(title: &str, severity: Severity, extra: Option<Extra>) -> Alert {
    let labels = sluice::alert::Labels::new();
    Alert {
        fingerprint: default_fingerprint(title, severity, &labels),
        title: title.into(),
        text: None,
        severity,
        status: Status::Firing,
        labels,
        source: None,
        time_ms: None,
        ends_ms: None,
        received_ms: sluice::unix_ms(),
        extra: extra.map(Box::new),
    }
}
