//! Taking alerts in: the one path every front door uses (`POST /v1/alerts`, Alertmanager's
//! webhook, and the platforms' own webhook protocols to come).
//!
//! [`Ingest::accept`] does, in this order, everything that decides whether a batch is taken:
//! each alert's robots are resolved (its own, the request's, the routes, else the only robot),
//! so a batch is accepted whole or not at all; the Idempotency-Key is claimed, so a retry gets
//! the first answer and a reused key with another body is refused; every robot's pending cap
//! is checked before anything is written; then the alerts are queued with their dedup keys
//! (within each robot's retention) and the call returns only once they are durable. Its errors
//! say which field or limit refused the batch; `http/` turns them into answers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::alert::Alert;
use crate::api::Accepted;
use crate::config::Config;
use crate::delivery::RobotHandle;
use crate::limit::Clock;
use crate::route::Subject;
use crate::store::{
    AppendError, Claim, Entry, RequestKey, Retention, Slot, Store, StoreError, alert_id,
};

/// One alert as a front door read it.
pub struct Item {
    /// The robot the alert names, or the request names for it; `None`: route it.
    pub robot: Option<String>,
    pub alert: Alert,
    /// The same key within the robot's retention is acknowledged again but queued only once.
    pub dedup_key: Option<String>,
    /// What names this alert's robot in an error (`[3].robot`, `alerts[3]`).
    pub path: String,
}

/// A request's Idempotency-Key and the fingerprint of its body
/// ([`crate::store::request_fingerprint`]).
pub struct Keyed {
    pub key: String,
    pub fingerprint: String,
}

/// Why a batch was not taken. Nothing of it was queued.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{path}: unknown robot {name:?}; configured robots: {configured}")]
    UnknownRobot {
        path: String,
        name: String,
        configured: String,
    },
    #[error("{path}: {why} (configured robots: {configured})")]
    Unroutable {
        path: String,
        why: &'static str,
        configured: String,
    },
    #[error(
        "robot {robot} already has {pending} alerts pending (max_pending = {cap}); retry later"
    )]
    Full {
        robot: String,
        pending: u64,
        cap: u64,
    },
    /// The Idempotency-Key is in flight, or was used for another body.
    #[error(transparent)]
    Claim(Claim),
    #[error("the store cannot accept alerts right now: {0}")]
    Store(#[source] StoreError),
    #[error("the store cannot make alerts durable right now: {0}")]
    NotDurable(#[source] StoreError),
}

impl IngestError {
    /// Whether the same request may succeed later (the store, a full queue, a key in flight);
    /// otherwise the request itself must change.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            IngestError::Full { .. }
                | IngestError::Store(_)
                | IngestError::NotDurable(_)
                | IngestError::Claim(Claim::InFlight | Claim::Store(_))
        )
    }
}

/// One alert bound for one robot (an alert routed to several robots becomes several).
struct Bound {
    robot: String,
    alert: Alert,
    dedup_key: Option<String>,
}

/// The service over one consistent view of the config, the robots and the store.
pub struct Ingest<'a> {
    pub config: &'a Config,
    pub robots: &'a BTreeMap<String, RobotHandle>,
    pub store: &'a Arc<dyn Store>,
    pub clock: Clock,
}

impl Ingest<'_> {
    /// Takes `items` whole or not at all, and answers once they are durable: one id per alert
    /// and robot, in order (a duplicate gets the id it was first queued under). With `keyed`, a
    /// request already answered gets its first answer again and queues nothing.
    pub async fn accept(
        &self,
        items: Vec<Item>,
        keyed: Option<Keyed>,
    ) -> Result<Accepted, IngestError> {
        let n = items.len();
        let bound = self.bind(items)?;
        if let Some(k) = &keyed {
            let window = self
                .robots
                .values()
                .map(|h| h.config.timing.retention)
                .max()
                .unwrap_or_default();
            let now = self.clock.now_ms();
            match self
                .store
                .claim_request(&k.key, &k.fingerprint, now, window)
                .await
            {
                Ok(None) => {}
                Ok(Some(ids)) => {
                    return Ok(Accepted {
                        accepted: n,
                        duplicates: ids.len(),
                        ids,
                    });
                }
                Err(Claim::Store(e)) => return Err(IngestError::Store(e)),
                Err(e) => return Err(IngestError::Claim(e)),
            }
        }
        let request = keyed.as_ref().map(|k| RequestKey {
            key: k.key.clone(),
            body: k.fingerprint.clone(),
        });
        match self.enqueue(bound, request).await {
            Ok((ids, duplicates)) => Ok(Accepted {
                accepted: n,
                duplicates,
                ids,
            }),
            Err(e) => {
                if let Some(k) = &keyed
                    && let Err(e) = self.store.release_request(&k.key).await
                {
                    // Left claimed, the key is taken over once the claim counts as abandoned.
                    tracing::warn!("cannot release the Idempotency-Key: {e}");
                }
                Err(e)
            }
        }
    }

    /// Every alert's robots, before anything is written.
    fn bind(&self, items: Vec<Item>) -> Result<Vec<Bound>, IngestError> {
        let mut bound = Vec::with_capacity(items.len());
        for item in items {
            let robots = self.resolve(item.robot.as_deref(), &item.alert, &item.path)?;
            let last = robots.len() - 1;
            let mut alert = Some(item.alert);
            for (j, robot) in robots.into_iter().enumerate() {
                let alert = if j == last {
                    alert.take().expect("moved once, at the last robot")
                } else {
                    alert.clone().expect("still here before the last robot")
                };
                bound.push(Bound {
                    robot,
                    alert,
                    dedup_key: item.dedup_key.clone(),
                });
            }
        }
        Ok(bound)
    }

    /// The robots an alert goes to: its own `robot` (or the request's), else the routes, else
    /// the only configured robot. `path` names the alert in errors.
    fn resolve(
        &self,
        robot: Option<&str>,
        alert: &Alert,
        path: &str,
    ) -> Result<Vec<String>, IngestError> {
        if let Some(r) = robot {
            return if self.robots.contains_key(r) {
                Ok(vec![r.to_string()])
            } else {
                Err(IngestError::UnknownRobot {
                    path: path.to_string(),
                    name: r.to_string(),
                    configured: self.config.robot_names(),
                })
            };
        }
        let routes = &self.config.routes;
        let routed = routes.route(&Subject {
            labels: &alert.labels,
            severity: alert.severity.as_str(),
            source: alert.source.as_deref(),
        });
        if !routed.is_empty() {
            return Ok(routed);
        }
        if routes.is_empty() && self.robots.len() == 1 {
            return Ok(self.robots.keys().cloned().collect());
        }
        let why = if routes.is_empty() {
            "missing; name the robot to deliver to"
        } else {
            "missing, and the alert matches no route and there is no default_robot"
        };
        Err(IngestError::Unroutable {
            path: path.to_string(),
            why,
            configured: self.config.robot_names(),
        })
    }

    /// Queues bound alerts and waits until they are durable. Returns one id per bound alert, in
    /// order, and how many were duplicates. With an Idempotency-Key, its answer is recorded in
    /// the same durable step, so a keyed request costs no second sync.
    async fn enqueue(
        &self,
        bound: Vec<Bound>,
        request: Option<RequestKey>,
    ) -> Result<(Vec<String>, usize), IngestError> {
        let now = self.clock.now_ms();
        let mut by_robot: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, b) in bound.iter().enumerate() {
            by_robot.entry(b.robot.clone()).or_default().push(i);
        }
        // The pending cap is checked for every robot before anything is written.
        for (robot, positions) in &by_robot {
            let Some(h) = self.robots.get(robot) else {
                continue;
            };
            let cap = h.config.timing.max_pending;
            let pending = self
                .store
                .pending(robot)
                .await
                .map_err(IngestError::Store)?;
            if pending + positions.len() as u64 > cap {
                return Err(IngestError::Full {
                    robot: robot.clone(),
                    pending,
                    cap,
                });
            }
        }
        // A robot's dedup keys keep repeats out for its retention.
        let windows: BTreeMap<String, Duration> = by_robot
            .keys()
            .map(|robot| {
                let window = self
                    .robots
                    .get(robot)
                    .map_or(Duration::ZERO, |h| h.config.timing.retention);
                (robot.clone(), window)
            })
            .collect();
        let window: Retention =
            Arc::new(move |robot: &str| windows.get(robot).copied().unwrap_or_default());
        let entries: Vec<Entry> = bound
            .into_iter()
            .map(|b| Entry {
                robot: b.robot,
                alert: b.alert,
                dedup_key: b.dedup_key,
            })
            .collect();
        let slots = match self.store.append(entries, request, now, window).await {
            Ok(slots) => slots,
            Err(AppendError::Write(e)) => {
                tracing::error!("ingest: {e}");
                return Err(IngestError::Store(e));
            }
            Err(AppendError::NotDurable(e)) => {
                tracing::error!("ingest: {e}");
                return Err(IngestError::NotDurable(e));
            }
        };
        let mut ids = vec![String::new(); slots.len()];
        let mut duplicates = 0;
        for (robot, positions) in &by_robot {
            let mut new = 0u64;
            for &i in positions {
                ids[i] = alert_id(robot, slots[i].seq());
                match slots[i] {
                    Slot::New(_) => new += 1,
                    Slot::Duplicate(_) => duplicates += 1,
                }
            }
            if let Some(h) = self.robots.get(robot) {
                let dropped = positions.len() as u64 - new;
                h.metrics.received.increment(new);
                h.metrics.duplicates.increment(dropped);
                if dropped > 0 {
                    h.count_duplicates(dropped);
                }
                if new > 0 {
                    h.wake.notify_one();
                }
            }
        }
        Ok((ids, duplicates))
    }
}
