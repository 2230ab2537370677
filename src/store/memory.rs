//! The in-memory backend: the [`Store`] semantics of the sled backend (dense sequences and
//! digest ids, dedup keys and their window, Idempotency-Key claims with the body's
//! fingerprint, retention, replay, queue moves), without any durability. For tests of the parts
//! above the store, and as the reference the conformance tests (`store/tests.rs`) hold every
//! backend to.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::alert::Alert;
use crate::limit::StoredLog;
use crate::store::{
    ABANDONED_CLAIM_MS, AppendError, Claim, DigestRecord, DigestState, Entry, Health, Moved,
    QuotaUsed, Render, ReplayError, RequestKey, Retention, Slot, Store, StoreError, StoreFuture,
    StoreStatus, answer_ids, append_by_robot,
};

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    health: Arc<Health>,
}

#[derive(Default)]
struct Inner {
    lanes: HashMap<String, Lane>,
    digests: BTreeMap<u64, DigestRecord>,
    /// The next digest id (dense, never reused); 0 until the first seal makes it 1.
    next_digest: u64,
    /// (robot, dedup key) → (sequence number, when it was queued).
    dedup: HashMap<(String, String), (u64, i64)>,
    requests: HashMap<String, Answered>,
    sends: HashMap<String, StoredLog>,
    quotas: HashMap<String, QuotaUsed>,
    commits: u64,
}

/// A robot's sequence: every alert not yet pruned, by sequence number.
#[derive(Default)]
struct Lane {
    alerts: BTreeMap<u64, Alert>,
    next_seq: u64,
    cursor: u64,
}

/// The answer kept for an Idempotency-Key (`ids: None` while in flight), with the body's
/// fingerprint.
struct Answered {
    ids: Option<Vec<String>>,
    ms: i64,
    body: String,
}

fn ready<'a, T: Send + 'a, E: Send + 'a>(value: Result<T, E>) -> StoreFuture<'a, T, E> {
    Box::pin(std::future::ready(value))
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("memory store lock")
    }
}

impl Inner {
    fn lane(&mut self, robot: &str) -> &mut Lane {
        self.lanes.entry(robot.to_string()).or_default()
    }

    /// One robot's alerts, in order, with dedup keys checked and recorded.
    fn append_keyed(
        &mut self,
        robot: &str,
        alerts: &[(&Alert, Option<&str>)],
        now_ms: i64,
        window: Duration,
    ) -> Vec<Slot> {
        let mut in_batch: HashMap<&str, u64> = HashMap::new();
        let mut slots = Vec::with_capacity(alerts.len());
        for (a, key) in alerts {
            let next = self.lane(robot).next_seq;
            if let Some(key) = key {
                if let Some(&seq) = in_batch.get(key) {
                    slots.push(Slot::Duplicate(seq));
                    continue;
                }
                let dkey = (robot.to_string(), key.to_string());
                if let Some(&(seq, ms)) = self.dedup.get(&dkey)
                    && now_ms - ms <= window.as_millis() as i64
                {
                    slots.push(Slot::Duplicate(seq));
                    continue;
                }
                self.dedup.insert(dkey, (next, now_ms));
                in_batch.insert(key, next);
            }
            let lane = self.lane(robot);
            lane.alerts.insert(next, (*a).clone());
            lane.next_seq += 1;
            slots.push(Slot::New(next));
        }
        slots
    }

    fn append_plain(&mut self, robot: &str, alerts: Vec<Alert>) {
        let lane = self.lane(robot);
        for a in alerts {
            lane.alerts.insert(lane.next_seq, a);
            lane.next_seq += 1;
        }
    }

    fn range(&self, robot: &str, first: u64, end: u64) -> Vec<(u64, Alert)> {
        self.lanes.get(robot).map_or_else(Vec::new, |l| {
            l.alerts
                .range(first..end)
                .map(|(&s, a)| (s, a.clone()))
                .collect()
        })
    }

    fn queue_again(&mut self, d: &DigestRecord, to: &str) {
        let alerts = self.range(&d.robot, d.first_seq, d.end_seq);
        self.append_plain(to, alerts.into_iter().map(|(_, a)| a).collect());
    }

    fn prune(
        &mut self,
        now_ms: i64,
        retention: &(dyn Fn(&str) -> Duration + Send + Sync),
    ) -> usize {
        let expired = |ms: i64, keep: Duration| ms + keep.as_millis() as i64 <= now_ms;
        let doomed: Vec<u64> = self
            .digests
            .values()
            .filter(|d| {
                let done = match d.state {
                    DigestState::Sent => d.sent_ms,
                    DigestState::Replayed => d.replayed_ms,
                    DigestState::Pending | DigestState::Dead => None,
                };
                done.is_some_and(|done| expired(done, retention(&d.robot)))
            })
            .map(|d| d.id)
            .collect();
        for id in &doomed {
            let d = self.digests.remove(id).expect("listed just now");
            let kept: Vec<(u64, u64)> = self
                .digests
                .values()
                .filter(|k| k.robot == d.robot)
                .map(|k| (k.first_seq, k.end_seq))
                .collect();
            let lane = self.lane(&d.robot);
            let cursor = lane.cursor;
            for seq in d.first_seq..d.end_seq {
                let shared = seq >= cursor || kept.iter().any(|&(a, b)| a <= seq && seq < b);
                if !shared {
                    lane.alerts.remove(&seq);
                }
            }
        }
        let longest = self
            .lanes
            .keys()
            .map(|r| retention(r))
            .max()
            .unwrap_or(Duration::from_secs(7 * 86_400));
        self.dedup
            .retain(|(robot, _), &mut (_, ms)| !expired(ms, retention(robot)));
        self.requests.retain(|_, a| !expired(a.ms, longest));
        doomed.len()
    }

    fn move_queue(&mut self, from: &str, to: &str, now_ms: i64) -> Moved {
        let mut moved = Moved::default();
        let sealed: Vec<u64> = self
            .digests
            .values()
            .filter(|d| d.robot == from && d.state == DigestState::Pending)
            .map(|d| d.id)
            .collect();
        for id in sealed {
            let mut d = self.digests[&id].clone();
            self.queue_again(&d, to);
            moved.alerts += d.count();
            moved.digests += 1;
            d.state = DigestState::Replayed;
            d.replayed_to = Some(to.to_string());
            d.replayed_ms = Some(now_ms);
            self.digests.insert(id, d);
        }
        let lane = self.lane(from);
        let start = lane.cursor;
        let pending: Vec<Alert> = lane.alerts.split_off(&start).into_values().collect();
        lane.cursor = lane.next_seq;
        moved.alerts += pending.len() as u64;
        self.append_plain(to, pending);
        moved
    }
}

impl Store for MemoryStore {
    fn append<'a>(
        &'a self,
        entries: Vec<Entry>,
        request: Option<RequestKey>,
        now_ms: i64,
        window: Retention,
    ) -> StoreFuture<'a, Vec<Slot>, AppendError> {
        let mut inner = self.lock();
        let Ok(slots) = append_by_robot::<std::convert::Infallible>(&entries, |robot, keyed| {
            Ok(inner.append_keyed(robot, keyed, now_ms, window(robot)))
        });
        if let Some(r) = request {
            let answer = Answered {
                ids: Some(answer_ids(&entries, &slots)),
                ms: now_ms,
                body: r.body,
            };
            inner.requests.insert(r.key, answer);
        }
        inner.commits += 1;
        ready(Ok(slots))
    }

    fn claim_request<'a>(
        &'a self,
        key: &'a str,
        body: &'a str,
        now_ms: i64,
        window: Duration,
    ) -> StoreFuture<'a, Option<Vec<String>>, Claim> {
        let mut inner = self.lock();
        if let Some(prior) = inner.requests.get(key) {
            let age = now_ms - prior.ms;
            let live = match prior.ids {
                Some(_) => age <= window.as_millis() as i64,
                None => age < ABANDONED_CLAIM_MS,
            };
            if live && prior.body != body {
                return ready(Err(Claim::Reused));
            }
            match &prior.ids {
                Some(ids) if live => return ready(Ok(Some(ids.clone()))),
                None if live => return ready(Err(Claim::InFlight)),
                _ => {}
            }
        }
        let claim = Answered {
            ids: None,
            ms: now_ms,
            body: body.to_string(),
        };
        inner.requests.insert(key.to_string(), claim);
        ready(Ok(None))
    }

    fn release_request<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        self.lock().requests.remove(key);
        ready(Ok(()))
    }

    fn pending<'a>(&'a self, robot: &'a str) -> StoreFuture<'a, u64> {
        let mut inner = self.lock();
        let lane = inner.lane(robot);
        ready(Ok(lane.next_seq - lane.cursor))
    }

    fn oldest_pending_ms<'a>(&'a self, robot: &'a str) -> StoreFuture<'a, Option<i64>> {
        let inner = self.lock();
        let oldest = inner.lanes.get(robot).and_then(|l| {
            l.alerts
                .range(l.cursor..)
                .next()
                .map(|(_, a)| a.received_ms)
        });
        ready(Ok(oldest))
    }

    fn robots(&self) -> StoreFuture<'_, Vec<String>> {
        let inner = self.lock();
        let robots: BTreeSet<String> = inner
            .lanes
            .iter()
            .filter(|(_, l)| !l.alerts.is_empty())
            .map(|(r, _)| r.clone())
            .collect();
        ready(Ok(robots.into_iter().collect()))
    }

    fn seal<'a>(
        &'a self,
        robot: &'a str,
        max_alerts: u64,
        now_ms: i64,
        render: Render<'a>,
    ) -> StoreFuture<'a, Option<DigestRecord>> {
        let (id, first, end, alerts) = {
            let mut inner = self.lock();
            let lane = inner.lane(robot);
            let (first, end) = (lane.cursor, lane.next_seq.min(lane.cursor + max_alerts));
            if first == end {
                return ready(Ok(None));
            }
            let alerts: Vec<Alert> = lane
                .alerts
                .range(first..end)
                .map(|(_, a)| a.clone())
                .collect();
            inner.next_digest = inner.next_digest.max(1);
            let id = inner.next_digest;
            inner.next_digest += 1;
            (id, first, end, alerts)
        };
        // Only the robot's own task seals (invariant 4): the range cannot change meanwhile.
        let sealed = render(id, &alerts);
        let end = sealed.end(first, alerts.len()).min(end);
        let covered = &alerts[..(end - first) as usize];
        let oldest = covered
            .iter()
            .map(|a| a.received_ms)
            .min()
            .unwrap_or(now_ms);
        let record = DigestRecord::sealed(id, robot, (first, end), sealed, now_ms, oldest);
        let mut inner = self.lock();
        inner.digests.insert(id, record.clone());
        inner.lane(robot).cursor = end;
        ready(Ok(Some(record)))
    }

    fn update_digest<'a>(&'a self, record: &'a DigestRecord) -> StoreFuture<'a, ()> {
        self.lock().digests.insert(record.id, record.clone());
        ready(Ok(()))
    }

    fn digest(&self, id: u64) -> StoreFuture<'_, Option<DigestRecord>> {
        ready(Ok(self.lock().digests.get(&id).cloned()))
    }

    fn digests(&self) -> StoreFuture<'_, Vec<DigestRecord>> {
        ready(Ok(self.lock().digests.values().cloned().collect()))
    }

    fn digest_alerts<'a>(&'a self, d: &'a DigestRecord) -> StoreFuture<'a, Vec<(u64, Alert)>> {
        ready(Ok(self.lock().range(&d.robot, d.first_seq, d.end_seq)))
    }

    fn send_log<'a>(&'a self, robot: &'a str) -> StoreFuture<'a, StoredLog> {
        let log = self.lock().sends.get(robot).cloned();
        ready(Ok(log.unwrap_or(StoredLog::Wall(Vec::new()))))
    }

    fn set_send_log<'a>(&'a self, robot: &'a str, log: &'a StoredLog) -> StoreFuture<'a, ()> {
        self.lock().sends.insert(robot.to_string(), log.clone());
        ready(Ok(()))
    }

    fn quota_used<'a>(&'a self, robot: &'a str) -> StoreFuture<'a, Option<QuotaUsed>> {
        ready(Ok(self.lock().quotas.get(robot).copied()))
    }

    fn set_quota_used<'a>(&'a self, robot: &'a str, used: QuotaUsed) -> StoreFuture<'a, ()> {
        self.lock().quotas.insert(robot.to_string(), used);
        ready(Ok(()))
    }

    fn prune(&self, now_ms: i64, retention: Retention) -> StoreFuture<'_, usize> {
        ready(Ok(self.lock().prune(now_ms, &*retention)))
    }

    fn replay<'a>(
        &'a self,
        id: u64,
        to: &'a str,
        now_ms: i64,
    ) -> StoreFuture<'a, DigestRecord, ReplayError> {
        let mut inner = self.lock();
        let Some(mut d) = inner.digests.get(&id).cloned() else {
            return ready(Err(ReplayError::NotFound(id)));
        };
        if d.state != DigestState::Dead {
            return ready(Err(ReplayError::NotDead(id, d.state)));
        }
        inner.queue_again(&d, to);
        d.state = DigestState::Replayed;
        d.replayed_to = Some(to.to_string());
        d.replayed_ms = Some(now_ms);
        inner.digests.insert(id, d.clone());
        ready(Ok(d))
    }

    fn redeliver<'a>(&'a self, id: u64, to: &'a str) -> StoreFuture<'a, DigestRecord, ReplayError> {
        let mut inner = self.lock();
        let Some(d) = inner.digests.get(&id).cloned() else {
            return ready(Err(ReplayError::NotFound(id)));
        };
        if d.state != DigestState::Sent {
            return ready(Err(ReplayError::NotSent(id, d.state)));
        }
        inner.queue_again(&d, to);
        ready(Ok(d))
    }

    fn move_queue<'a>(&'a self, from: &'a str, to: &'a str, now_ms: i64) -> StoreFuture<'a, Moved> {
        ready(Ok(self.lock().move_queue(from, to, now_ms)))
    }

    fn status(&self) -> StoreFuture<'_, StoreStatus> {
        let commits = self.lock().commits;
        ready(Ok(StoreStatus {
            location: "memory".into(),
            commits,
            commit_requests: commits,
            largest_commit_batch: u64::from(commits > 0),
            ..StoreStatus::default()
        }))
    }

    fn health(&self) -> &Arc<Health> {
        &self.health
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        match self.health.error() {
            Some(e) => ready(Err(StoreError::failed(e))),
            None => ready(Ok(())),
        }
    }
}
