//! A reload: the new config read and checked off the async workers, each lane sorted into
//! added, changed, unchanged and removed, the changed and removed ones retired (an in-flight
//! send finished first) and the added and changed ones started on what the store holds; and
//! `sluice queue move`, which hands a removed robot's queue to a configured one.

use std::sync::Arc;

use super::{MoveError, ReloadError, Reloaded, Run, Supervisor, scan};
use crate::config::Config;
use crate::store::Moved;

impl Supervisor {
    pub(super) async fn reload(&mut self) -> Result<Reloaded, ReloadError> {
        let live = self.live.get();
        let path = live.config.path.clone().ok_or(ReloadError::NoFile)?;
        let mut next = tokio::task::spawn_blocking(move || Config::load(&path))
            .await
            .expect("the config loader does not panic")
            .map_err(ReloadError::Invalid)?;
        let store = live.store.clone().map_err(|why| {
            ReloadError::Busy(format!("the store is being reopened ({why}); try again"))
        })?;
        let old = &live.config;
        let mut report = Reloaded {
            needs_restart: old
                .restart_only_changes(&next)
                .into_iter()
                .map(str::to_string)
                .collect(),
            ..Reloaded::default()
        };
        // Keys read only at start-up keep their running values, so what /v1/status shows is true.
        next.server.listen = old.server.listen;
        next.server.data_dir = old.server.data_dir.clone();
        next.server.cache_bytes = old.server.cache_bytes;
        next.server.max_connections = old.server.max_connections;
        // Mentions and links use these, so every robot restarts when they change.
        let shared_changed =
            old.owners != next.owners || old.server.public_url != next.server.public_url;
        // By lane: a robot in no pool, or a pool (changed when its members or theirs change).
        for name in next.lanes().keys().map(|n| n.to_string()) {
            if !old.is_lane(&name) {
                report.added.push(name);
            } else if shared_changed || !old.same_lane(&name, &next) {
                report.changed.push(name);
            } else {
                report.unchanged.push(name);
            }
        }
        report.removed = old
            .lanes()
            .keys()
            .filter(|n| !next.is_lane(n))
            .map(|n| n.to_string())
            .collect();

        let stopping: Vec<String> = report
            .removed
            .iter()
            .chain(&report.changed)
            .cloned()
            .collect();
        self.retire(&stopping, Run::Retire).await;
        let next = Arc::new(next);
        self.live.update(|l| l.config = next.clone());
        if let Some(c) = &self.cluster {
            c.store.set_lanes(super::lanes_of(&next));
        }
        let scanned = scan(&*store, &next).await;
        let starting: Vec<String> = report
            .added
            .iter()
            .chain(&report.changed)
            .cloned()
            .collect();
        match scanned {
            Ok(scan) => self.start_robots(&store, scan, Some(&starting)),
            Err(e) => {
                // The store has failed; the supervisor reopens it and then starts every robot.
                // In a cluster nothing is reopened: the lanes are let go, to be taken again.
                tracing::error!(
                    "reload: cannot read the store ({e}); robots start once it is reopened"
                );
                self.give_back(&starting).await;
            }
        }
        Ok(report)
    }

    pub(super) async fn move_queue(&mut self, from: &str, to: &str) -> Result<Moved, MoveError> {
        let live = self.live.get();
        if live.config.is_lane(from) {
            return Err(MoveError::Configured(from.to_string()));
        }
        // A pool's member has no queue of its own: its pool's is meant.
        let to = live.config.destination(to).unwrap_or(to);
        let Some(target) = live.robots.get(to).cloned() else {
            return Err(MoveError::UnknownTarget(
                to.to_string(),
                live.config.robot_names(),
            ));
        };
        // In a cluster another node may have queued alerts for it since this node last
        // looked: the move itself tells.
        if self.cluster.is_none() && !live.orphans.contains_key(from) {
            return Err(MoveError::NothingQueued(from.to_string()));
        }
        let store = live.store.clone().map_err(|why| {
            MoveError::Busy(format!("the store is being reopened ({why}); try again"))
        })?;
        let now = self.clock.now_ms();
        // Cluster mode: the removed robot's queue is a lane nobody runs; this node holds it
        // for the move, and lets it go after.
        let held = match &self.cluster {
            Some(c) => Some(super::cluster::hold_for_move(&c.store, from).await?),
            None => None,
        };
        let moved = store.move_queue(from, to, now).await;
        if let (Some(c), Some(true)) = (&self.cluster, held) {
            let _ = c.store.records.release(from).await;
        }
        let moved = moved.map_err(MoveError::Store)?;
        if moved.alerts == 0 && moved.digests == 0 {
            return Err(MoveError::NothingQueued(from.to_string()));
        }
        target.metrics.received.increment(moved.alerts);
        target.wake.notify_one();
        let mut orphans = (*live.orphans).clone();
        orphans.remove(from);
        self.live.update(|l| l.orphans = Arc::new(orphans));
        tracing::info!(
            from,
            to,
            alerts = moved.alerts,
            digests = moved.digests,
            "moved a removed robot's queue"
        );
        Ok(moved)
    }
}
