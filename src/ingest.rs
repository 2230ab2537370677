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

/// Why a batch was not taken. Nothing of it was queued. Which of these a client may retry is
/// decided in one place, `http::ApiError`'s `From` impl (503 with `Retry-After`, or a 4xx).
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
        // A pool's member has no queue of its own: what names it goes to its pool.
        let lane = |name: &str| {
            self.config
                .destination(name)
                .filter(|l| self.robots.contains_key(*l))
                .map(str::to_string)
        };
        if let Some(r) = robot {
            return if let Some(l) = lane(r) {
                Ok(vec![l])
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
            let mut lanes: Vec<String> = Vec::with_capacity(routed.len());
            for r in routed.iter().filter_map(|r| lane(r)) {
                if !lanes.contains(&r) {
                    lanes.push(r);
                }
            }
            if !lanes.is_empty() {
                return Ok(lanes);
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Severity, Status, default_fingerprint};
    use crate::delivery::RobotStatus;
    use crate::store::memory::MemoryStore;

    const CONFIG: &str = r#"
        [server]
        max_alerts_per_request = 10
        [defaults]
        max_pending = 3
        [robots.ops]
        provider = "console"
        [robots.dq]
        provider = "console"
        [[routes]]
        match = { team = "data" }
        robot = "dq"
    "#;

    struct Fixture {
        config: Config,
        robots: BTreeMap<String, RobotHandle>,
        store: Arc<dyn Store>,
    }

    fn fixture() -> Fixture {
        let config = Config::parse(CONFIG, "test.toml", &|_| None).unwrap();
        let metrics = crate::metrics::Metrics::new();
        let robots = config
            .robots
            .iter()
            .map(|(name, r)| {
                let h = RobotHandle::new(r.clone(), RobotStatus::new(0), metrics.robot(name));
                (name.clone(), h)
            })
            .collect();
        Fixture {
            config,
            robots,
            store: Arc::new(MemoryStore::new()),
        }
    }

    impl Fixture {
        fn ingest(&self) -> Ingest<'_> {
            Ingest {
                config: &self.config,
                robots: &self.robots,
                store: &self.store,
                clock: Clock::starting_at(1_000),
            }
        }
    }

    fn item(robot: Option<&str>, title: &str, team: &str, key: Option<&str>) -> Item {
        let labels: crate::alert::Labels = [("team".to_string(), team.to_string())]
            .into_iter()
            .collect();
        let alert = Alert {
            title: title.into(),
            text: None,
            severity: Severity::Error,
            status: Status::Firing,
            fingerprint: default_fingerprint(title, Severity::Error, &labels),
            labels,
            source: None,
            time_ms: None,
            ends_ms: None,
            received_ms: 1_000,
            extra: None,
        };
        Item {
            robot: robot.map(str::to_string),
            alert,
            dedup_key: key.map(str::to_string),
            path: format!("[{title}].robot"),
        }
    }

    fn keyed(key: &str, body: &str) -> Option<Keyed> {
        Some(Keyed {
            key: key.into(),
            fingerprint: crate::store::request_fingerprint(body.as_bytes()),
        })
    }

    /// One unknown robot refuses the whole batch: nothing of it is queued.
    #[tokio::test]
    async fn a_batch_is_taken_whole_or_not_at_all() {
        let f = fixture();
        let batch = vec![
            item(Some("ops"), "a", "x", None),
            item(Some("nope"), "b", "x", None),
        ];
        let err = f.ingest().accept(batch, None).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "[b].robot: unknown robot \"nope\"; configured robots: dq, ops"
        );
        // Refused for good: the request itself must change.
        assert_eq!(
            crate::http::ApiError::from(err).status(),
            axum::http::StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(f.store.pending("ops").await.unwrap(), 0);
    }

    /// Routes decide where an alert without a robot goes; with routes and no match, it is
    /// refused with the reason.
    #[tokio::test]
    async fn routes_place_alerts_and_an_unroutable_one_is_refused() {
        let f = fixture();
        let taken = f
            .ingest()
            .accept(vec![item(None, "a", "data", None)], None)
            .await
            .unwrap();
        assert_eq!(taken.ids, ["dq:0"]);
        let err = f
            .ingest()
            .accept(vec![item(None, "b", "web", None)], None)
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "[b].robot: missing, and the alert matches no route and there is no default_robot"
            ),
            "{err}"
        );
    }

    /// The pending cap is checked for every robot before anything is written; a dedup key
    /// already queued is acknowledged again without being queued.
    #[tokio::test]
    async fn the_pending_cap_and_dedup_keys_hold() {
        let f = fixture();
        let first = vec![
            item(Some("ops"), "a", "x", Some("k")),
            item(Some("ops"), "b", "x", None),
        ];
        let taken = f.ingest().accept(first, None).await.unwrap();
        assert_eq!(
            (taken.ids.as_slice(), taken.duplicates),
            (&["ops:0".to_string(), "ops:1".to_string()][..], 0)
        );
        let again = f
            .ingest()
            .accept(vec![item(Some("ops"), "a2", "x", Some("k"))], None)
            .await
            .unwrap();
        assert_eq!(
            (again.ids, again.duplicates),
            (vec!["ops:0".to_string()], 1)
        );
        let over = vec![
            item(Some("ops"), "c", "x", None),
            item(Some("ops"), "d", "x", None),
        ];
        let err = f.ingest().accept(over, None).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "robot ops already has 2 alerts pending (max_pending = 3); retry later"
        );
        // The same request may succeed later: 503 with Retry-After.
        assert_eq!(
            crate::http::ApiError::from(err).status(),
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(f.store.pending("ops").await.unwrap(), 2);
    }

    /// A retry under the same Idempotency-Key gets the first answer and queues nothing; the
    /// same key with another body is refused.
    #[tokio::test]
    async fn an_idempotency_key_answers_a_retry_and_refuses_another_body() {
        let f = fixture();
        let batch = || vec![item(Some("ops"), "a", "x", None)];
        let first = f
            .ingest()
            .accept(batch(), keyed("req-1", "A"))
            .await
            .unwrap();
        let retry = f
            .ingest()
            .accept(batch(), keyed("req-1", "A"))
            .await
            .unwrap();
        assert_eq!(retry.ids, first.ids);
        assert_eq!(f.store.pending("ops").await.unwrap(), 1);
        let err = f
            .ingest()
            .accept(batch(), keyed("req-1", "B"))
            .await
            .unwrap_err();
        assert!(matches!(err, IngestError::Claim(Claim::Reused)), "{err}");
        assert_eq!(f.store.pending("ops").await.unwrap(), 1);
    }

    /// A refused keyed request releases its key: the corrected retry is processed.
    #[tokio::test]
    async fn a_refused_keyed_request_releases_its_key() {
        let f = fixture();
        let over: Vec<Item> = (0..4)
            .map(|i| item(Some("ops"), &format!("a{i}"), "x", None))
            .collect();
        let err = f
            .ingest()
            .accept(over, keyed("req-2", "A"))
            .await
            .unwrap_err();
        assert!(matches!(err, IngestError::Full { .. }), "{err}");
        let taken = f
            .ingest()
            .accept(vec![item(Some("ops"), "a", "x", None)], keyed("req-2", "A"))
            .await
            .unwrap();
        assert_eq!(taken.ids, ["ops:0"]);
    }
}
