//! sluice: alerts in, durable queue, merged markdown digests out to chat robots, never faster
//! than the robot allows.
//!
//! [`serve`] wires the parts: the [`store`] (sled), one [`robot`] task per configured robot
//! (window → permit from [`limit`] → seal → render with [`digest`] → send with a [`provider`]),
//! and the [`http`] API. The binary in `main.rs` only parses the command line.

pub mod alert;
pub mod alertmanager;

pub mod client;
pub mod config;
pub mod demo;
pub mod digest;
pub mod http;
pub mod limit;
pub mod mention;
pub mod metrics;
pub mod provider;
pub mod robot;
pub mod route;
pub mod store;
pub mod template;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::limit::Clock;
use crate::provider::Provider;
use crate::robot::{RobotHandle, RobotStatus, RobotTask};
use crate::store::{DigestRecord, DigestState, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("HTTP server failed: {0}")]
    Http(std::io::Error),
}

/// Runs sluice on `listener` until `shutdown` resolves, then stops accepting, lets in-flight
/// requests finish, gives an in-flight send [`robot::SHUTDOWN_GRACE`] to complete, flushes the
/// store and returns.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let clock = Clock::new();
    let data_dir = config.server.data_dir.clone();
    let cache = config.server.cache_bytes;
    let store = tokio::task::spawn_blocking(move || Store::open(&data_dir, cache))
        .await
        .expect("the store opener does not panic")?;
    let store = Arc::new(store);

    // What the last run left: digests sealed but not delivered, and the dead-letter count.
    let mut outboxes: HashMap<String, Vec<DigestRecord>> = HashMap::new();
    let mut dead: HashMap<String, u64> = HashMap::new();
    for d in store.digests() {
        let d = d?;
        match d.state {
            DigestState::Pending => outboxes.entry(d.robot.clone()).or_default().push(d),
            DigestState::Dead => *dead.entry(d.robot.clone()).or_default() += 1,
            DigestState::Sent | DigestState::Replayed => {}
        }
    }
    for (robot, digests) in &outboxes {
        if !config.robots.contains_key(robot) {
            tracing::warn!(robot = %robot, digests = digests.len(), "queued digests belong to a robot that is no longer configured; they stay queued until it comes back");
        }
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = crate::metrics::Metrics::new();
    let owners = Arc::new(config.owners.clone());
    let mut robots = BTreeMap::new();
    let mut tasks = Vec::new();
    for (name, rc) in &config.robots {
        let mut status = RobotStatus::new(clock.now_ms());
        status.dead = dead.get(name).copied().unwrap_or(0);
        let handle = RobotHandle::new(rc.clone(), status, metrics.robot(name));
        let task = RobotTask {
            handle: handle.clone(),
            store: store.clone(),
            provider: Provider::new(rc, config.server.public_url.as_deref()),
            clock,
            shutdown: stop_rx.clone(),
            public_url: config.server.public_url.clone(),
            owners: owners.clone(),
            outbox: outboxes.remove(name).unwrap_or_default(),
        };
        tasks.push(tokio::spawn(task.run()));
        robots.insert(name.clone(), handle);
    }
    tasks.push(tokio::spawn(prune_loop(
        store.clone(),
        config.clone(),
        clock,
        stop_rx.clone(),
    )));

    let addr = listener.local_addr().map_err(ServeError::Http)?;
    if !addr.ip().is_loopback() && config.server.auth_tokens.is_empty() {
        tracing::warn!(%addr, "listening beyond loopback without server.auth_tokens: anyone who can reach this port can post alerts");
    }
    tracing::info!(%addr, data_dir = %store.dir().display(), robots = %config.robot_names(), "sluice is running");

    let state = http::AppState {
        config: Arc::new(config),
        store: store.clone(),
        robots: Arc::new(robots),
        clock,
        metrics,
    };
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut http_stop = stop_rx.clone();
    let served = axum::serve(listener, http::router(state))
        .with_graceful_shutdown(async move {
            let _ = http_stop.wait_for(|stop| *stop).await;
        })
        .await;
    for t in tasks {
        let _ = t.await;
    }
    let flushed = store.close();
    tracing::info!("sluice stopped");
    served.map_err(ServeError::Http)?;
    flushed?;
    Ok(())
}

/// The wall clock in Unix milliseconds (0 if the clock is before 1970).
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An error and its causes on one line, each cause once (reqwest repeats them in `Display`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// Deletes delivered digests (and their alerts) once their robot's retention has passed.
async fn prune_loop(
    store: Arc<Store>,
    config: Config,
    clock: Clock,
    mut stop: watch::Receiver<bool>,
) {
    let shortest = config
        .robots
        .values()
        .map(|r| r.timing.retention)
        .min()
        .unwrap_or(Duration::from_secs(3600));
    let every = (shortest / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
    let default_retention = config::Timing::default().retention;
    let retention: Arc<HashMap<String, Duration>> = Arc::new(
        config
            .robots
            .iter()
            .map(|(n, r)| (n.clone(), r.timing.retention))
            .collect(),
    );
    loop {
        let (s, retention) = (store.clone(), retention.clone());
        let now = clock.now_ms();
        let pruned = tokio::task::spawn_blocking(move || {
            s.prune(now, |robot| {
                retention.get(robot).copied().unwrap_or(default_retention)
            })
        })
        .await;
        match pruned {
            Ok(Ok(n)) if n > 0 => {
                tracing::debug!(digests = n, "pruned delivered digests past retention")
            }
            Ok(Err(e)) => tracing::warn!("pruning failed: {e}"),
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}
