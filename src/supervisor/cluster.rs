//! Cluster mode in the supervisor: a lane's task runs only on the node that holds its lease.
//! The ownership loop ([`crate::store::jetstream::owner`]) says when this node gains a lane
//! (start its task on what the store holds), loses it (stop the task at once, mid-send or not:
//! the send was recorded before it left, and the robot's budget counts it) or should hand it
//! to a better-placed node (stop it only between sends). Every other lane shows in status as
//! `remote`, with the node that owns it.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;

use super::{Run, Supervisor, scan};
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
