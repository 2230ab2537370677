//! The ownership loop: one task per node that keeps its heartbeat in `sluice_node`, renews the
//! leases it holds, takes the lanes it should own ([`lease::decide`]) and tells the supervisor
//! what changed ([`Event`]), which starts or stops the lanes' tasks. Every decision rests on a
//! CAS of the lane's control record; the reads only tell when to try.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::JetStreamStore;
use super::control::WriteError;
use super::lease::{self, Facts, Step, Watch};

/// What the ownership loop tells the supervisor.
#[derive(Debug)]
pub enum Event {
    /// This node holds the lane now: start its task.
    Gained(String),
    /// This node no longer holds the lane (taken over, or its lease ran out before a renewal
    /// won): stop its task at once, whatever it is doing.
    Lost(String),
    /// Another live node should own the lane: stop its task if it is between sends and answer
    /// `true`, then the loop releases it; `false` keeps it for now.
    Release(String, oneshot::Sender<bool>),
}

/// A lane's owner as this node last saw it, for status and metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Owned {
    /// The node holding the lease; empty while none does.
    pub owner: String,
    pub epoch: u64,
}

/// The cluster as this node sees it, for status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct View {
    pub node: String,
    /// Nodes whose heartbeat is fresh, this one included once its own is written.
    pub live: Vec<String>,
    /// Lanes and their owners.
    pub lanes: BTreeMap<String, Owned>,
    /// Whether the last round could read and write NATS, and if not, why.
    pub error: Option<String>,
    /// The last round trip to NATS (a heartbeat write), in ms.
    pub rtt_ms: Option<f64>,
}

/// A node's heartbeat value.
#[derive(Debug, Serialize, Deserialize)]
struct Heartbeat {
    ms: i64,
}

pub struct Owner {
    store: Arc<JetStreamStore>,
    events: mpsc::Sender<Event>,
    view: Arc<RwLock<View>>,
}

impl Owner {
    pub fn new(
        store: Arc<JetStreamStore>,
        events: mpsc::Sender<Event>,
    ) -> (Owner, Arc<RwLock<View>>) {
        let view = Arc::new(RwLock::new(View {
            node: store.records.node().to_string(),
            ..View::default()
        }));
        let owner = Owner {
            store,
            events,
            view: view.clone(),
        };
        (owner, view)
    }

    /// Runs until `stop`, on the lanes `lanes` names at each round (so it follows reloads);
    /// then releases every lane it holds, so that the other nodes take them at once instead of
    /// waiting out the lease.
    pub async fn run(self, lanes: impl Fn() -> Vec<String>, mut stop: watch::Receiver<bool>) {
        let mut watch = Watch::default();
        let mut running: BTreeSet<String> = BTreeSet::new();
        let tick = (self.store.lease.renew / 2).max(Duration::from_millis(50));
        loop {
            self.round(&lanes(), &mut watch, &mut running).await;
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        for lane in self.store.records.held_lanes().await {
            let _ = self.store.records.release(&lane).await;
        }
        let _ = self
            .store
            .nats
            .nodes
            .delete(self.store.records.node())
            .await;
    }

    async fn round(
        &self,
        configured: &[String],
        watch: &mut Watch,
        running: &mut BTreeSet<String>,
    ) {
        let records = &self.store.records;
        let me = records.node().to_string();
        let mut error = None;
        let started = Instant::now();
        let beat = serde_json::to_vec(&Heartbeat {
            ms: self.store.clock.now_ms(),
        })
        .expect("a heartbeat encodes");
        let rtt_ms = match self.store.nats.nodes.put(&me, beat.into()).await {
            Ok(_) => Some(started.elapsed().as_secs_f64() * 1e3),
            Err(e) => {
                error = Some(format!("cannot write this node's heartbeat: {e}"));
                None
            }
        };
        let live = match self.live().await {
            Ok(live) => live,
            Err(e) => {
                error.get_or_insert(e);
                vec![me.clone()]
            }
        };
        let mut lanes = BTreeMap::new();
        for lane in configured {
            let ranked = lease::ranked(lane, &live);
            let held = records.held(lane).await;
            if held.is_none() && running.remove(lane) {
                // A write of the lane's own task lost: someone took it over.
                let _ = self.events.send(Event::Lost(lane.clone())).await;
            }
            let (owned, seen, stale) = match &held {
                Some(h) => (
                    Owned {
                        owner: me.clone(),
                        epoch: h.control.epoch,
                    },
                    None,
                    false,
                ),
                None => match records.read_leader(lane).await {
                    Ok(seen) => {
                        let revision = seen.as_ref().map_or(0, |(_, r)| *r);
                        let owned = seen.as_ref().map_or_else(Owned::default, |(c, _)| Owned {
                            owner: c.owner.clone(),
                            epoch: c.epoch,
                        });
                        let stale =
                            watch.stale(lane, revision, Instant::now(), self.store.lease.lease);
                        (owned, Some(seen), stale)
                    }
                    Err(e) => {
                        error.get_or_insert(e);
                        lanes.insert(lane.clone(), Owned::default());
                        continue;
                    }
                },
            };
            let facts = Facts {
                me: &me,
                owner: &owned.owner,
                held_since: held.as_ref().map(|h| h.renewed),
                stale,
                live: &ranked,
                idle: true,
            };
            let step = lease::decide(&facts, &self.store.lease, Instant::now());
            let owned = self.act(step, lane, seen, owned, running, &mut error).await;
            if step == Step::Take && owned.owner == me {
                watch.forget(lane);
            }
            lanes.insert(lane.clone(), owned);
        }
        // Lanes no longer configured: let them go.
        for lane in records.held_lanes().await {
            if !configured.contains(&lane) {
                if running.remove(&lane) {
                    let _ = self.events.send(Event::Lost(lane.clone())).await;
                }
                let _ = records.release(&lane).await;
            }
        }
        let mut view = self.view.write().expect("view lock");
        view.live = live;
        view.lanes = lanes;
        view.error = error;
        view.rtt_ms = rtt_ms;
    }

    /// Carries out `step` for `lane`; the owner as it stands after.
    async fn act(
        &self,
        step: Step,
        lane: &str,
        seen: Option<Option<(super::control::Control, u64)>>,
        owned: Owned,
        running: &mut BTreeSet<String>,
        error: &mut Option<String>,
    ) -> Owned {
        let records = &self.store.records;
        let me = records.node().to_string();
        match step {
            Step::Wait => owned,
            Step::Take => {
                let skew_ms = self.store.lease.clock_skew.as_millis() as i64;
                match records.take(lane, seen.flatten(), skew_ms).await {
                    Ok(h) => {
                        tracing::info!(
                            lane,
                            epoch = h.control.epoch,
                            "cluster: this node owns the lane now"
                        );
                        running.insert(lane.to_string());
                        let _ = self.events.send(Event::Gained(lane.to_string())).await;
                        Owned {
                            owner: me,
                            epoch: h.control.epoch,
                        }
                    }
                    Err(e) => {
                        if let WriteError::Unavailable { .. } = e {
                            error.get_or_insert(e.to_string());
                        }
                        owned
                    }
                }
            }
            Step::Renew => match records.write(lane, |_| {}).await {
                Ok(_) => owned,
                Err(WriteError::Lost(_)) => {
                    tracing::warn!(
                        lane,
                        "cluster: another node took the lane over; stopping it here"
                    );
                    running.remove(lane);
                    let _ = self.events.send(Event::Lost(lane.to_string())).await;
                    Owned::default()
                }
                Err(e) => {
                    // Kept until the lease runs out on our clock ([`Step::Drop`]).
                    error.get_or_insert(e.to_string());
                    owned
                }
            },
            Step::Drop => {
                tracing::warn!(
                    lane,
                    "cluster: the lease ran out before a renewal went through; stopping the lane here"
                );
                records.forget(lane).await;
                running.remove(lane);
                let _ = self.events.send(Event::Lost(lane.to_string())).await;
                Owned::default()
            }
            Step::Release => {
                let (tx, rx) = oneshot::channel();
                if self
                    .events
                    .send(Event::Release(lane.to_string(), tx))
                    .await
                    .is_err()
                    || !rx.await.unwrap_or(false)
                {
                    return owned;
                }
                running.remove(lane);
                match records.release(lane).await {
                    Ok(()) => {
                        tracing::info!(
                            lane,
                            "cluster: released the lane to the node it belongs to"
                        );
                        Owned::default()
                    }
                    Err(e) => {
                        error.get_or_insert(e.to_string());
                        owned
                    }
                }
            }
        }
    }

    /// The nodes whose heartbeat is in the bucket (its `max_age` is the lease), sorted.
    async fn live(&self) -> Result<Vec<String>, String> {
        let mut keys = self
            .store
            .nats
            .nodes
            .keys()
            .await
            .map_err(|e| format!("cannot list the live nodes: {e}"))?;
        let mut live = Vec::new();
        while let Some(k) = keys.next().await {
            match k {
                Ok(k) => live.push(k),
                Err(e) => return Err(format!("cannot list the live nodes: {e}")),
            }
        }
        live.sort();
        live.dedup();
        Ok(live)
    }
}
