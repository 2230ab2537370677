//! Keeps the robots' tasks and the store they share running: starts them, changes them on a
//! reload, and reopens the store and restarts them when the store fails.
//!
//! Everything that changes a robot's task goes through the one [`Supervisor`] task, one command
//! at a time, so a reload and a queue move can never both touch the same robot (store
//! invariant 4: only a robot's own task moves its queue). The API sees the result as a [`Live`]
//! snapshot, replaced whole, never edited: a request works against one consistent view.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::{Config, ConfigError};
use crate::delivery::{PoolMember, PoolTask, RobotHandle, RobotStatus, RobotTask, Run};
use crate::limit::Clock;
use crate::metrics::Metrics;
use crate::provider::Provider;
use crate::store::{DigestRecord, DigestState, Moved, Store, StoreError};

mod cluster;
mod reload;
mod reopen;

pub use cluster::{ClusterLink, lanes_of, relay_wakes};

/// What the running sluice looks like right now.
#[derive(Clone)]
pub struct Live {
    pub config: Arc<Config>,
    /// Every lane (a robot in no pool, or a pool), by name: what has a queue and a task.
    pub robots: Arc<BTreeMap<String, RobotHandle>>,
    /// The robots in pools, by name: their status, written by their pool's task.
    pub members: Arc<BTreeMap<String, RobotHandle>>,
    /// `Err(why)` while a failed store is being reopened.
    pub store: Result<Arc<dyn Store>, String>,
    /// Robots no longer configured whose alerts are still queued.
    pub orphans: Arc<BTreeMap<String, Orphan>>,
    /// What is wrong with the process besides the store; the same for every snapshot.
    pub faults: Arc<Faults>,
    /// Cluster mode: the cluster as the ownership loop last saw it.
    pub cluster: Option<Arc<RwLock<crate::store::jetstream::owner::View>>>,
}

/// Troubles of the process that are not the store's: a task that panicked, robots that cannot
/// be started. Each is kept under a key until what caused it is replaced; `/healthz` answers
/// 503 and `/v1/status` lists them while any is present, so a broken sluice never looks
/// healthy while it delivers nothing.
#[derive(Debug, Default)]
pub struct Faults(Mutex<BTreeMap<String, String>>);

impl Faults {
    pub fn set(&self, key: &str, why: String) {
        self.0
            .lock()
            .expect("faults lock")
            .insert(key.to_string(), why);
    }

    pub fn clear(&self, key: &str) {
        self.0.lock().expect("faults lock").remove(key);
    }

    /// The faults' descriptions, by key.
    pub fn list(&self) -> Vec<String> {
        self.0
            .lock()
            .expect("faults lock")
            .values()
            .cloned()
            .collect()
    }
}

/// What a panic said, from its payload.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p.downcast_ref::<&str>().map_or_else(
            || "a panic without a message".to_string(),
            |s| s.to_string(),
        ),
    }
}

/// Runs `task` and, should it panic, records that in `faults` under `key` (and the log)
/// instead of letting it end in silence. The handle resolves to `None` after a panic.
pub fn spawn_watched<T: Send + 'static>(
    faults: Arc<Faults>,
    key: String,
    task: impl Future<Output = T> + Send + 'static,
) -> JoinHandle<Option<T>> {
    spawn_abortable(faults, key, task).0
}

/// [`spawn_watched`], with a handle that stops the task itself at once (aborting the returned
/// join handle would stop only the watcher).
pub fn spawn_abortable<T: Send + 'static>(
    faults: Arc<Faults>,
    key: String,
    task: impl Future<Output = T> + Send + 'static,
) -> (JoinHandle<Option<T>>, tokio::task::AbortHandle) {
    let inner = tokio::spawn(task);
    let abort = inner.abort_handle();
    let watcher = tokio::spawn(async move {
        match inner.await {
            Ok(v) => Some(v),
            Err(e) if e.is_panic() => {
                let why = format!(
                    "{key} panicked ({}); it is stopped until sluice is restarted (or, for a robot, until a reload changes it)",
                    panic_message(e.into_panic())
                );
                tracing::error!("{why}");
                faults.set(&key, why);
                None
            }
            Err(_) => None,
        }
    });
    (watcher, abort)
}

/// The queue a robot left behind when it was removed from the config: it stays until the robot
/// comes back or it is moved to another robot.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Orphan {
    /// Alerts not yet in a digest.
    pub pending: u64,
    /// Digests sealed but not delivered, and the alerts they cover.
    pub digests: u64,
    pub digest_alerts: u64,
}

/// The shared, swappable [`Live`].
#[derive(Clone)]
pub struct LiveCell(Arc<RwLock<Live>>);

impl LiveCell {
    pub fn get(&self) -> Live {
        self.0.read().expect("live lock").clone()
    }

    /// The running config alone (what every request's checks read): one `Arc` cloned rather
    /// than the whole snapshot.
    pub fn config(&self) -> Arc<Config> {
        self.0.read().expect("live lock").config.clone()
    }

    fn update(&self, f: impl FnOnce(&mut Live)) {
        f(&mut self.0.write().expect("live lock"));
    }
}

/// What a reload changed (the answer to `POST /-/reload`).
pub use crate::api::Reloaded;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(
        "sluice was started without a config file (-c), so there is nothing to reload; restart it with -c FILE"
    )]
    NoFile,
    #[error("the new config is invalid, the running one stays: {0}")]
    Invalid(#[source] ConfigError),
    #[error("{0}")]
    Busy(String),
}

#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error(
        "robot {0:?} is configured, so its own task owns its queue; remove it from the config (and reload) before moving its queue"
    )]
    Configured(String),
    #[error("to: unknown robot {0:?}; configured robots: {1}")]
    UnknownTarget(String, String),
    #[error("robot {0:?} has nothing queued")]
    NothingQueued(String),
    #[error("{0}")]
    Busy(String),
    #[error("the store cannot move the queue right now: {0}")]
    Store(#[source] StoreError),
}

enum Command {
    Reload(oneshot::Sender<Result<Reloaded, ReloadError>>),
    Move {
        from: String,
        to: String,
        reply: oneshot::Sender<Result<Moved, MoveError>>,
    },
}

/// Asks the supervisor for changes; cheap to clone.
#[derive(Clone)]
pub struct Control(mpsc::Sender<Command>);

impl Control {
    /// Reads the config file again and applies it.
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let (tx, rx) = oneshot::channel();
        let stopping = || ReloadError::Busy("sluice is shutting down".into());
        self.0
            .send(Command::Reload(tx))
            .await
            .map_err(|_| stopping())?;
        rx.await.map_err(|_| stopping())?
    }

    /// Moves an unconfigured robot's queue to a configured one.
    pub async fn move_queue(&self, from: &str, to: &str) -> Result<Moved, MoveError> {
        let (tx, rx) = oneshot::channel();
        let stopping = || MoveError::Busy("sluice is shutting down".into());
        let command = Command::Move {
            from: from.to_string(),
            to: to.to_string(),
            reply: tx,
        };
        self.0.send(command).await.map_err(|_| stopping())?;
        rx.await.map_err(|_| stopping())?
    }
}

/// What woke the supervisor.
enum Event {
    Command(Command),
    StoreFailed,
    RetryClient,
    Owner(crate::store::jetstream::owner::Event),
}

struct Running {
    run: watch::Sender<Run>,
    join: JoinHandle<Option<()>>,
    /// Stops the task where it stands (cluster mode, when the lease is lost).
    abort: tokio::task::AbortHandle,
}

pub struct Supervisor {
    live: LiveCell,
    clock: Clock,
    metrics: Arc<Metrics>,
    tasks: BTreeMap<String, Running>,
    commands: mpsc::Receiver<Command>,
    stop: watch::Receiver<bool>,
    /// When the store was last reopened, and the wait before the next try.
    reopened: Option<std::time::Instant>,
    reopen_delay: Duration,
    /// The robots' HTTP client ([`crate::provider::http_client`]), or why it cannot be built.
    client: Result<reqwest::Client, String>,
    /// Configured robots not started because they need the client; retried after `client_delay`.
    unstarted: Vec<String>,
    client_delay: Duration,
    /// Cluster mode: the ownership loop's events and the lanes this node holds.
    cluster: Option<ClusterLink>,
}

/// First wait before building the HTTP client again after it failed; doubles up to a minute.
const CLIENT_FIRST_DELAY: Duration = Duration::from_secs(1);
const CLIENT_MAX_DELAY: Duration = Duration::from_secs(60);

/// What the store holds for the robots' tasks at start.
#[derive(Default)]
struct Scan {
    outboxes: HashMap<String, Vec<DigestRecord>>,
    dead: HashMap<String, u64>,
    orphans: BTreeMap<String, Orphan>,
}

async fn scan(store: &dyn Store, config: &Config) -> Result<Scan, StoreError> {
    let mut outboxes: HashMap<String, Vec<DigestRecord>> = HashMap::new();
    let mut dead: HashMap<String, u64> = HashMap::new();
    let mut orphans: BTreeMap<String, Orphan> = BTreeMap::new();
    for d in store.digests().await? {
        match d.state {
            DigestState::Pending if config.is_lane(&d.robot) => {
                outboxes.entry(d.robot.clone()).or_default().push(d)
            }
            DigestState::Pending => {
                let o = orphans.entry(d.robot.clone()).or_default();
                o.digests += 1;
                o.digest_alerts += d.count();
            }
            DigestState::Dead => *dead.entry(d.robot.clone()).or_default() += 1,
            DigestState::Sent | DigestState::Replayed => {}
        }
    }
    for robot in store.robots().await? {
        if config.is_lane(&robot) {
            continue;
        }
        let pending = store.pending(&robot).await?;
        if pending > 0 {
            orphans.entry(robot).or_default().pending = pending;
        }
    }
    Ok(Scan {
        outboxes,
        dead,
        orphans,
    })
}

impl Supervisor {
    /// Starts every configured robot's task on `store`. Run the result with [`Supervisor::run`].
    pub async fn start(
        config: Config,
        store: Arc<dyn Store>,
        clock: Clock,
        metrics: Arc<Metrics>,
        stop: watch::Receiver<bool>,
        cluster: Option<ClusterLink>,
    ) -> Result<(Supervisor, LiveCell, Control), StoreError> {
        if let Some(c) = &cluster {
            c.store.set_lanes(cluster::lanes_of(&config));
        }
        let scan = match scan(&*store, &config).await {
            Ok(scan) => scan,
            // In a cluster no lane starts before it is gained, and each gain reads the store
            // again; NATS may still be electing its leaders when the nodes start together.
            Err(e) if cluster.is_some() => {
                tracing::warn!(
                    "cluster: cannot read the queues yet ({e}); each robot's is read when this node takes it"
                );
                Scan::default()
            }
            Err(e) => return Err(e),
        };
        let live = LiveCell(Arc::new(RwLock::new(Live {
            config: Arc::new(config),
            robots: Arc::new(BTreeMap::new()),
            members: Arc::new(BTreeMap::new()),
            store: Ok(store.clone()),
            orphans: Arc::new(BTreeMap::new()),
            faults: Arc::new(Faults::default()),
            cluster: cluster.as_ref().map(|c| c.view.clone()),
        })));
        let (tx, rx) = mpsc::channel(16);
        let mut s = Supervisor {
            live: live.clone(),
            clock,
            metrics,
            tasks: BTreeMap::new(),
            commands: rx,
            stop,
            reopened: None,
            reopen_delay: reopen::REOPEN_FIRST_DELAY,
            client: crate::provider::http_client(),
            unstarted: Vec::new(),
            client_delay: CLIENT_FIRST_DELAY,
            cluster,
        };
        s.start_robots(&store, scan, None);
        Ok((s, live, Control(tx)))
    }

    /// Serves commands and watches the store until shutdown; then stops every robot's task.
    /// Returns why sluice must exit instead, if a failed store cannot be let go of (see
    /// [`Supervisor::reopen_store`]).
    pub async fn run(mut self) -> Option<String> {
        loop {
            let health = self.live.get().store.ok().map(|s| s.health().clone());
            let failed = async {
                match &health {
                    Some(h) => h.failed().await,
                    None => std::future::pending().await,
                }
            };
            let waiting = !self.unstarted.is_empty();
            let retry = tokio::time::sleep(self.client_delay);
            let event = tokio::select! {
                Some(c) = self.commands.recv() => Event::Command(c),
                _ = failed => Event::StoreFailed,
                _ = retry, if waiting => Event::RetryClient,
                Some(e) = cluster::next_event(&mut self.cluster) => Event::Owner(e),
                _ = stopped(&mut self.stop) => break,
            };
            match event {
                Event::Command(command) => self.serve(command).await,
                Event::StoreFailed => {
                    if let Err(fatal) = self.reopen_store().await {
                        return Some(fatal);
                    }
                }
                Event::RetryClient => self.retry_client().await,
                Event::Owner(e) => self.on_owner_event(e).await,
            }
        }
        let names: Vec<String> = self.tasks.keys().cloned().collect();
        self.retire(&names, Run::Shutdown).await;
        None
    }

    /// Builds the HTTP client again and, once it works, starts the robots that waited for it.
    async fn retry_client(&mut self) {
        self.client = crate::provider::http_client();
        if self.client.is_err() {
            self.client_delay = (self.client_delay * 2).min(CLIENT_MAX_DELAY);
            self.note_unstarted();
            return;
        }
        self.client_delay = CLIENT_FIRST_DELAY;
        let live = self.live.get();
        let Ok(store) = live.store.clone() else {
            return; // the store's reopen starts every robot
        };
        let waiting = std::mem::take(&mut self.unstarted);
        match scan(&*store, &live.config).await {
            Ok(scan) => {
                tracing::info!(robots = ?waiting, "the HTTP client works now; starting the robots that waited for it");
                self.start_robots(&store, scan, Some(&waiting));
            }
            Err(e) => {
                tracing::error!("cannot read the store to start the robots ({e})");
                self.unstarted = waiting;
            }
        }
    }

    /// Keeps the "http client" fault in step with the robots that wait for the client.
    fn note_unstarted(&self) {
        let faults = self.live.get().faults;
        match (&self.client, self.unstarted.is_empty()) {
            (Err(why), false) => faults.set(
                "http client",
                format!(
                    "{why}; robots not started: {}; sluice tries again every {} at most",
                    self.unstarted.join(", "),
                    humantime::format_duration(CLIENT_MAX_DELAY)
                ),
            ),
            _ => faults.clear("http client"),
        }
    }

    async fn serve(&mut self, command: Command) {
        match command {
            Command::Reload(reply) => {
                let result = self.reload().await;
                match &result {
                    Ok(r) => tracing::info!(
                        added = ?r.added, removed = ?r.removed, changed = ?r.changed,
                        needs_restart = ?r.needs_restart, "config reloaded"
                    ),
                    Err(e) => tracing::error!("reload refused: {e}"),
                }
                let _ = reply.send(result);
            }
            Command::Move { from, to, reply } => {
                let _ = reply.send(self.move_queue(&from, &to).await);
            }
        }
    }

    /// Starts tasks for the configured robots (`only` these, if given), each with its sealed
    /// digests from `scan`. A robot that ran before keeps its status and counters.
    fn start_robots(&mut self, store: &Arc<dyn Store>, mut scan: Scan, only: Option<&[String]>) {
        let live = self.live.get();
        let config = live.config.clone();
        let owners = Arc::new(config.owners.clone());
        let mut robots = (*live.robots).clone();
        let mut members = (*live.members).clone();
        for (name, rc) in config.lanes() {
            let name = &name.to_string();
            if only.is_some_and(|o| !o.contains(name)) || !self.may_run(name) {
                continue;
            }
            let dead = scan.dead.get(name).copied().unwrap_or(0);
            let handle = match robots.get(name) {
                Some(h) => h.reconfigured(rc.clone()),
                None => RobotHandle::new(
                    rc.clone(),
                    RobotStatus::new(self.clock.now_ms()),
                    self.metrics.robot(name),
                ),
            };
            handle.set_dead(dead);
            self.unstarted.retain(|n| n != name);
            let client = self.client.as_ref().map_err(String::as_str);
            let public_url = config.server.public_url.as_deref();
            // A pool's members, each with its provider; a robot is its own only one.
            let pool = config.pools.get(name);
            let robots_of: Vec<&crate::config::Robot> = match pool {
                Some(p) => p.members.iter().map(|m| &config.robots[m]).collect(),
                None => vec![rc],
            };
            let providers: Result<Vec<Provider>, String> = robots_of
                .iter()
                .map(|r| {
                    Provider::new(&r.target(), public_url, client)
                        .map_err(|why| format!("{}: {why}", r.name))
                })
                .collect();
            let mut providers = match providers {
                Ok(p) => p,
                Err(why) => {
                    tracing::error!(robot = %name, "cannot start the robot: {why}");
                    handle.cannot_start(why, self.clock.now_ms());
                    self.unstarted.push(name.clone());
                    robots.insert(name.clone(), handle);
                    continue;
                }
            };
            let (run, rx) = watch::channel(Run::Go);
            let outbox = scan.outboxes.remove(name).unwrap_or_default();
            let key = format!("robot {name}");
            live.faults.clear(&key);
            let join = match pool {
                None => {
                    let task = RobotTask {
                        handle: handle.clone(),
                        store: store.clone(),
                        provider: providers.remove(0),
                        clock: self.clock,
                        run: rx,
                        public_url: config.server.public_url.clone(),
                        owners: owners.clone(),
                        outbox,
                        lanes: {
                            let cell = self.live.clone();
                            Arc::new(move |n: &str| cell.get().robots.get(n).cloned())
                        },
                    };
                    spawn_abortable(live.faults.clone(), key, task.run())
                }
                Some(_) => {
                    let pool_members = robots_of
                        .iter()
                        .zip(providers)
                        .map(|(r, provider)| {
                            let handle = match members.get(&r.name) {
                                Some(h) => h.reconfigured((*r).clone()),
                                None => RobotHandle::new(
                                    (*r).clone(),
                                    RobotStatus::new(self.clock.now_ms()),
                                    self.metrics.robot(&r.name),
                                ),
                            };
                            members.insert(r.name.clone(), handle.clone());
                            PoolMember { handle, provider }
                        })
                        .collect();
                    let task = PoolTask {
                        handle: handle.clone(),
                        members: pool_members,
                        store: store.clone(),
                        clock: self.clock,
                        run: rx,
                        public_url: config.server.public_url.clone(),
                        owners: owners.clone(),
                        outbox,
                    };
                    spawn_abortable(live.faults.clone(), key, task.run())
                }
            };
            let (join, abort) = join;
            self.tasks
                .insert(name.clone(), Running { run, join, abort });
            robots.insert(name.clone(), handle);
        }
        robots.retain(|name, _| config.is_lane(name));
        members.retain(|name, _| config.pool_of(name).is_some());
        self.unstarted.retain(|n| config.is_lane(n));
        self.note_unstarted();
        for (robot, o) in &scan.orphans {
            tracing::warn!(robot = %robot, pending = o.pending, digests = o.digests, "alerts are queued for a robot that is not configured; they stay queued until it comes back or `sluice move` sends them elsewhere");
        }
        self.live.update(|l| {
            l.robots = Arc::new(robots);
            l.members = Arc::new(members);
            l.orphans = Arc::new(scan.orphans);
        });
        if self.cluster.is_some() {
            self.show_remote();
        }
    }

    /// Stops these robots' tasks and waits for them.
    async fn retire(&mut self, names: &[String], how: Run) {
        let mut joins = Vec::new();
        for name in names {
            if let Some(r) = self.tasks.remove(name) {
                let _ = r.run.send(how);
                joins.push((r.join, r.run));
            }
        }
        for (join, _run) in joins {
            let _ = join.await;
        }
    }
}

/// Deletes delivered digests (and their alerts) once their robot's retention has passed. Reads
/// the live config and store at every round, so it follows reloads and store restarts.
pub async fn prune_loop(live: LiveCell, clock: Clock, mut stop: watch::Receiver<bool>) {
    let default_retention = crate::config::Timing::default().retention;
    loop {
        let Live { config, store, .. } = live.get();
        let shortest = config
            .lanes()
            .into_values()
            .map(|r| r.timing.retention)
            .min()
            .unwrap_or(default_retention);
        let every = (shortest / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
        if let Ok(store) = store {
            let retention: HashMap<String, Duration> = config
                .lanes()
                .into_iter()
                .map(|(n, r)| (n.to_string(), r.timing.retention))
                .collect();
            let now = clock.now_ms();
            let retention: crate::store::Retention = Arc::new(move |robot: &str| {
                retention.get(robot).copied().unwrap_or(default_retention)
            });
            let pruned = store.prune(now, retention).await;
            match pruned {
                Ok(n) if n > 0 => {
                    tracing::debug!(digests = n, "pruned delivered digests past retention")
                }
                Err(e) => tracing::warn!("pruning failed: {e}"),
                _ => {}
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopped(&mut stop) => break,
        }
    }
}

/// Resolves once `stop` says so (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 10, finding 7: a task that panicked ended in silence.
    #[tokio::test]
    async fn a_task_that_panics_is_recorded_as_a_fault() {
        let faults = Arc::new(Faults::default());
        let fine = spawn_watched(faults.clone(), "robot a".into(), async { 7 });
        assert_eq!(fine.await.unwrap(), Some(7));
        assert!(faults.list().is_empty());
        let broken = spawn_watched(faults.clone(), "robot b".into(), async {
            if faults_are_real() {
                panic!("index out of bounds: the len is 0");
            }
        });
        assert_eq!(broken.await.unwrap(), None);
        let listed = faults.list();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert!(
            listed[0].starts_with("robot b panicked (index out of bounds: the len is 0)"),
            "{listed:?}"
        );
        faults.clear("robot b");
        assert!(faults.list().is_empty());
    }

    /// Keeps the compiler from seeing the panic above as unconditional.
    fn faults_are_real() -> bool {
        std::hint::black_box(true)
    }
}
