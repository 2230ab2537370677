//! Cluster mode in the supervisor: a lane's task runs only on the node that holds its lease.
//! The ownership loop ([`crate::store::jetstream::owner`]) says when this node gains a lane
//! (start its task on what the store holds), loses it (stop the task at once, mid-send or not:
//! the send was recorded before it left, and the robot's budget counts it) or should hand it
//! to a better-placed node (stop it only between sends). Every other lane shows in status as
//! `remote`, with the node that owns it.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;

use super::{MoveError, Run, Supervisor, scan};
use crate::config::Config;
use crate::delivery::{RobotHandle, RobotStatus, State};
use crate::store::jetstream::owner::{Event, View};
use crate::store::jetstream::{JetStreamStore, Lanes};

/// What the supervisor keeps of the cluster.
pub struct ClusterLink {
    pub store: Arc<JetStreamStore>,
    pub events: mpsc::Receiver<Event>,
    pub view: Arc<RwLock<View>>,
    /// Lanes this node holds, per the ownership loop's last word.
    pub held: BTreeSet<String>,
}

/// The lanes of `config` as the cluster store needs them.
pub fn lanes_of(config: &Config) -> Lanes {
    let mut lanes = Lanes::default();
    for (name, robot) in config.lanes() {
        let members: Vec<&crate::config::Robot> = match config.pools.get(name) {
            Some(p) => p.members.iter().map(|m| &config.robots[m]).collect(),
            None => vec![robot],
        };
        for m in &members {
            lanes.lane_of.insert(m.name.clone(), name.to_string());
        }
        let longest = members
            .iter()
            .map(|m| m.timing.request_timeout)
            .max()
            .unwrap_or_default();
        lanes.request_timeout.insert(name.to_string(), longest);
    }
    lanes
}

/// Makes this node hold `lane` (a removed robot's queue) so that its queue can be moved: taken
/// when nobody holds it (the ownership loop lets removed lanes go) or its holder is dead. `true` when taken here (to
/// release after), `false` when this node held it already.
pub(super) async fn hold_for_move(store: &JetStreamStore, lane: &str) -> Result<bool, MoveError> {
    let records = &store.records;
    if records.held(lane).await.is_some() {
        return Ok(false);
    }
    let busy = |why: String| MoveError::Busy(format!("cluster: {why}"));
    let seen = records.read_leader(lane).await.map_err(busy)?;
    if let Some((c, _)) = &seen
        && !c.owner.is_empty()
    {
        // A node that still runs has its heartbeat in the bucket; one that died without letting
        // the lane go does not, and its writes would fail once we take it (the record fences).
        let alive = store
            .nats
            .nodes
            .get(c.owner.as_str())
            .await
            .map_err(|e| busy(format!("cannot read node {}'s heartbeat: {e}", c.owner)))?
            .is_some();
        if alive {
            return Err(busy(format!(
                "node {} holds robot {lane:?}'s queue (its config still has the robot?); remove the robot from that node's config and reload it, then move the queue",
                c.owner
            )));
        }
    }
    let skew_ms = store.lease.clock_skew.as_millis() as i64;
    records
        .take(lane, seen, skew_ms)
        .await
        .map_err(|e| busy(e.to_string()))?;
    Ok(true)
}

/// Wakes this node's lanes when another node queued alerts for them (`sluice.wake.*`), until
/// `stop`. The wake-ups are core NATS, at most once: an idle lane also looks again every
/// `renew` ([`crate::store::Store::idle_recheck`]).
pub async fn relay_wakes(
    store: Arc<JetStreamStore>,
    live: super::LiveCell,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use futures_util::StreamExt;
    let subject = format!("{}*", crate::store::jetstream::WAKE_PREFIX);
    let mut subscription = match store.nats.client.subscribe(subject).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(
                "cluster: cannot subscribe to wake-ups ({e}); idle lanes look every renew instead"
            );
            None
        }
    };
    loop {
        let woken = async {
            match subscription.as_mut() {
                Some(s) => s.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            m = woken => {
                let Some(m) = m else {
                    subscription = None;
                    continue;
                };
                let key = m.subject.as_str().trim_start_matches(crate::store::jetstream::WAKE_PREFIX);
                if let Some(lane) = crate::store::jetstream::control::name_of(key)
                    && let Some(h) = live.get().robots.get(&lane)
                {
                    h.wake.notify_one();
                }
            }
            _ = super::stopped(&mut stop) => return,
        }
    }
}

/// The next event of the ownership loop; never, on one node.
pub(super) async fn next_event(cluster: &mut Option<ClusterLink>) -> Option<Event> {
    match cluster {
        Some(c) => c.events.recv().await,
        None => std::future::pending().await,
    }
}

impl Supervisor {
    /// Whether this node may run `lane`'s task: always on one node; in a cluster, while it
    /// holds the lane's lease.
    pub(super) fn may_run(&self, lane: &str) -> bool {
        self.cluster.as_ref().is_none_or(|c| c.held.contains(lane))
    }

    /// Shows the configured lanes this node does not run as `remote`.
    pub(super) fn show_remote(&mut self) {
        let live = self.live.get();
        let mut robots = (*live.robots).clone();
        for (name, rc) in live.config.lanes() {
            if self.tasks.contains_key(name) {
                continue;
            }
            let handle = robots.entry(name.to_string()).or_insert_with(|| {
                RobotHandle::new(
                    rc.clone(),
                    RobotStatus::new(self.clock.now_ms()),
                    self.metrics.robot(name),
                )
            });
            handle.remote(self.clock.now_ms());
        }
        self.live.update(|l| l.robots = Arc::new(robots));
    }

    /// Lets go of lanes this node holds but could not start (the store could not be read):
    /// held without a task, nobody would send for them. Released, they are taken again (here
    /// or elsewhere) and started on a fresh read.
    pub(super) async fn give_back(&mut self, lanes: &[String]) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        for lane in lanes {
            // When not even the release goes through, it is no longer renewed, so its lease
            // runs out.
            if cluster.held.remove(lane)
                && !self.tasks.contains_key(lane)
                && cluster.store.records.release(lane).await.is_err()
            {
                cluster.store.records.forget(lane).await;
            }
        }
    }

    pub(super) async fn on_owner_event(&mut self, event: Event) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        match event {
            Event::Gained(lane) => {
                cluster.held.insert(lane.clone());
                let live = self.live.get();
                if !live.config.is_lane(&lane) {
                    return;
                }
                let Ok(store) = live.store.clone() else {
                    return;
                };
                match scan(&*store, &live.config).await {
                    Ok(scan) => self.start_robots(&store, scan, Some(std::slice::from_ref(&lane))),
                    Err(e) => {
                        // The lane stays held and idle here; its lease is renewed, and the next
                        // gain (after a reload or a restart) starts it. Say so loudly.
                        tracing::error!(
                            lane,
                            "cluster: cannot read the lane's digests to start it ({e})"
                        );
                    }
                }
            }
            Event::Lost(lane) => {
                cluster.held.remove(&lane);
                if let Some(r) = self.tasks.remove(&lane) {
                    r.abort.abort();
                    let _ = r.run.send(Run::Shutdown);
                    r.join.abort();
                }
                self.show_remote();
            }
            Event::Release(lane, reply) => {
                let live = self.live.get();
                let sending = live
                    .robots
                    .get(&lane)
                    .is_some_and(|h| h.status().state == State::Sending);
                if sending {
                    let _ = reply.send(false);
                    return;
                }
                cluster.held.remove(&lane);
                self.retire(std::slice::from_ref(&lane), Run::Shutdown)
                    .await;
                self.show_remote();
                let _ = reply.send(true);
            }
        }
    }
}
