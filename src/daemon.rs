//! The daemon: [`serve`] wires the store, the supervisor and its robots, the pruner, the
//! watchdog, SIGHUP reloads and the HTTP listener, and takes them down in order at shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::limit::Clock;
use crate::store::StoreError;
use crate::store::jetstream::JetStreamStore;
use crate::store::jetstream::owner::Owner;
use crate::supervisor::Supervisor;
use crate::{http, supervisor};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("HTTP server failed: {0}")]
    Http(#[source] std::io::Error),
    /// The store failed and cannot be reopened in this process: exit (status 75) and let the
    /// supervisor start sluice again.
    #[error("{0}")]
    MustRestart(String),
    /// `[cluster]` is configured but cluster mode cannot run (see the message).
    #[error("{0}")]
    Cluster(String),
}

/// The exit status for [`ServeError::MustRestart`] (EX_TEMPFAIL).
pub const EXIT_RESTART: i32 = 75;

/// Runs sluice on `listener` until `shutdown` resolves, then stops accepting, lets in-flight
/// requests finish, gives an in-flight send [`delivery::SHUTDOWN_GRACE`] to complete, flushes the
/// store and returns. With a config read from a file, SIGHUP reloads it (as `POST /-/reload`).
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_with_clock(config, listener, Clock::new(), shutdown).await
}

/// [`serve`] on a given clock. A test seam: a test restarts sluice on the same data with the wall
/// clock stepped (or on another boot, see [`Clock::at`]) without changing the machine's time.
pub async fn serve_with_clock(
    config: Config,
    listener: TcpListener,
    clock: Clock,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (store, cluster) = match &config.cluster {
        None => {
            let data_dir = config.server.data_dir.clone();
            let cache = config.server.cache_bytes;
            (crate::store::open(&data_dir, cache).await?, None)
        }
        Some(c) => {
            let js = JetStreamStore::open(c, clock)
                .await
                .map_err(|e| ServeError::Cluster(e.to_string()))?;
            tracing::info!(node = %c.node, servers = %c.servers_redacted(), "cluster mode: sharing queue and budgets through NATS JetStream");
            let store: Arc<dyn crate::store::Store> = js.clone();
            (store, Some(js))
        }
    };
    let data_dir = config.server.data_dir.clone();

    let addr = listener.local_addr().map_err(ServeError::Http)?;
    if !addr.ip().is_loopback() && config.server.auth_tokens.is_empty() {
        tracing::warn!(%addr, "listening beyond loopback without server.auth_tokens: anyone who can reach this port can post alerts");
    }
    match crate::fd::raise_soft_limit() {
        Some(r) if r.after > r.before => tracing::info!(
            "open files: soft limit raised from {} to {} (the hard limit)",
            r.before,
            r.after
        ),
        Some(r) if r.after < r.hard => tracing::warn!(
            "open files: cannot raise the soft limit {} to the hard limit {}",
            r.before,
            r.hard
        ),
        Some(r) => tracing::info!("open files: soft limit {} (the hard limit)", r.after),
        None => {}
    }
    let (connections, fd_limit) = http::listen::connection_budget(config.server.max_connections);
    if connections < config.server.max_connections {
        tracing::warn!(
            "server.max_connections = {} lowered to {connections}: the open-files limit is {}, and the store needs descriptors too",
            config.server.max_connections,
            fd_limit.unwrap_or(0)
        );
    }
    tracing::info!(%addr, data_dir = %data_dir.display(), robots = %config.robot_names(), max_connections = connections, "sluice is running");

    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = crate::metrics::Metrics::new();
    let reloadable = config.path.is_some();
    let (link, owner) = match &cluster {
        None => (None, None),
        Some(js) => {
            let (tx, rx) = tokio::sync::mpsc::channel(64);
            let (owner, view) = Owner::new(js.clone(), tx);
            let link = supervisor::ClusterLink {
                store: js.clone(),
                events: rx,
                view,
                held: Default::default(),
            };
            (Some(link), Some(owner))
        }
    };
    let (supervisor, live, control) =
        Supervisor::start(config, store, clock, metrics.clone(), stop_rx.clone(), link).await?;
    // The ownership loop stops once the supervisor has stopped the lanes' tasks, and releases
    // what it holds last, so that no lane is given away while its send is in flight.
    let (owner_stop, owner_stopped) = watch::channel(false);
    let owning = owner.map(|owner| {
        let live = live.clone();
        let lanes = move || {
            live.get()
                .config
                .lanes()
                .keys()
                .map(|n| n.to_string())
                .collect()
        };
        tokio::spawn(owner.run(lanes, owner_stopped))
    });
    if let Some(js) = &cluster {
        tokio::spawn(supervisor::relay_wakes(
            js.clone(),
            live.clone(),
            stop_rx.clone(),
        ));
    }
    let stop_tx = Arc::new(stop_tx);
    let faults = live.get().faults;
    let supervised = supervisor::spawn_watched(faults.clone(), "the supervisor".into(), {
        let stop_tx = stop_tx.clone();
        async move {
            let fatal = supervisor.run().await;
            if fatal.is_some() {
                let _ = stop_tx.send(true);
            }
            fatal
        }
    });
    let pruning = supervisor::spawn_watched(
        faults,
        "the pruner".into(),
        supervisor::prune_loop(live.clone(), clock, stop_rx.clone()),
    );
    watchdog(live.clone(), stop_rx.clone());
    if reloadable {
        tokio::spawn(reload_on_sighup(control.clone(), stop_rx.clone()));
    }

    let state = http::AppState::new(http::Shared {
        live: live.clone(),
        clock,
        metrics,
        control,
        local: addr,
    });
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let limits = {
        let live = live.clone();
        move || {
            let s = &live.get().config.server;
            http::listen::Limits {
                header: s.header_timeout,
                body: s.body_timeout,
                keepalive: s.keepalive_timeout,
            }
        }
    };
    http::listen::serve(
        listener,
        http::router(state),
        connections,
        limits,
        stop_rx.clone(),
    )
    .await;
    let fatal = supervised.await.ok().flatten().flatten();
    let _ = pruning.await;
    let _ = owner_stop.send(true);
    if let Some(owning) = owning {
        let _ = owning.await;
    }
    if let Some(why) = fatal {
        tracing::error!("{why}");
        return Err(ServeError::MustRestart(why));
    }
    let flushed = match live.get().store {
        Ok(store) => store.close().await,
        Err(why) => Err(StoreError::failed(why)),
    };
    tracing::info!("sluice stopped");
    flushed?;
    Ok(())
}

/// How long sluice may go without a working store before the watchdog gives up on reopening
/// it in place.
pub const STORE_DOWN_TIMEOUT: Duration = Duration::from_secs(15);

/// The last resort when the store fails. sled can block for good after an I/O error: inside a
/// write (holding a runtime thread), or while closing (keeping its lock on the directory, so it
/// cannot be reopened). A plain thread, which needs nothing from the runtime, checks that a
/// failed store is replaced by a working one within [`STORE_DOWN_TIMEOUT`]; if not, it exits
/// the process with [`EXIT_RESTART`] for the supervisor to start sluice again, which recovers
/// every acknowledged alert from the write-ahead log (or, while the disk is still full, fails
/// again and is restarted again, until the fault clears).
fn watchdog(live: supervisor::LiveCell, stop: watch::Receiver<bool>) {
    let spawned = std::thread::Builder::new()
        .name("sluice-watchdog".into())
        .spawn(move || {
            let mut down_since: Option<(std::time::Instant, String)> = None;
            while !*stop.borrow() {
                std::thread::sleep(Duration::from_millis(250));
                let why = match live.get().store {
                    Ok(store) => store.health().error(),
                    Err(why) => Some(why),
                };
                let Some(why) = why else {
                    down_since = None;
                    continue;
                };
                let (since, first) = down_since.get_or_insert((std::time::Instant::now(), why));
                if since.elapsed() > STORE_DOWN_TIMEOUT && !*stop.borrow() {
                    let line = format!(
                        "the store failed ({first}) and could not be reopened within {}s; exiting so that a supervisor restarts sluice, which recovers every acknowledged alert from the write-ahead log",
                        STORE_DOWN_TIMEOUT.as_secs()
                    );
                    tracing::error!("{line}");
                    eprintln!("sluice: {line}");
                    std::process::exit(EXIT_RESTART);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the store watchdog: {e}");
    }
}

/// SIGHUP reloads the config file, the way daemons do.
async fn reload_on_sighup(control: supervisor::Control, mut stop: watch::Receiver<bool>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload with POST /-/reload instead");
            return;
        };
        loop {
            tokio::select! {
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    tracing::info!("SIGHUP: reloading the config");
                    // The supervisor logs the outcome.
                    let _ = control.reload().await;
                }
                _ = supervisor::stopped(&mut stop) => return,
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = control;
        supervisor::stopped(&mut stop).await;
    }
}
