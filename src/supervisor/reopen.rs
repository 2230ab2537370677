//! Reopening a failed store: the robots stopped, the store let go of (off the async workers,
//! within [`RELEASE_TIMEOUT`]), reopened with a doubling delay, and the robots started again on
//! what it holds.

use std::time::Duration;

use super::{Command, MoveError, ReloadError, Run, Supervisor, scan, stopped};

/// First wait between tries to reopen a failed store; it doubles up to [`REOPEN_MAX_DELAY`],
/// also across failures that follow a reopen closely (a disk that is still full).
pub(super) const REOPEN_FIRST_DELAY: Duration = Duration::from_millis(200);
const REOPEN_MAX_DELAY: Duration = Duration::from_secs(30);

/// How long closing a failed store may take before sluice gives up and exits.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

impl Supervisor {
    /// The store has failed (sled keeps an I/O error for good): stop the robots, let go of the
    /// store, and reopen it until that works, then start the robots again on the reopened one.
    /// Meanwhile the API answers 503. What was acknowledged was on disk before the failure, so
    /// reopening recovers exactly what a restart would.
    ///
    /// sled can hang for good while closing after a failed background write (its flush waits
    /// for a wake-up the failed write never sends), and then keeps its lock on the directory.
    /// If letting go does not finish within [`RELEASE_TIMEOUT`], this returns `Err`: sluice
    /// must exit and be restarted, which recovers the same way.
    pub(super) async fn reopen_store(&mut self) -> Result<(), String> {
        let live = self.live.get();
        let Ok(store) = live.store.clone() else {
            return Ok(());
        };
        let why = store.health().error().unwrap_or_default();
        tracing::error!("the store failed ({why}); stopping the robots and reopening it");
        let (dir, cache) = (
            live.config.server.data_dir.clone(),
            live.config.server.cache_bytes,
        );
        self.live
            .update(|l| l.store = Err(format!("the store failed ({why}) and is being reopened")));
        let names: Vec<String> = self.tasks.keys().cloned().collect();
        self.retire(&names, Run::Retire).await;
        drop(live);
        // Letting go of the last handle closes sled, which can block: not on a runtime thread.
        let released = tokio::task::spawn_blocking(move || drop(store));
        if tokio::time::timeout(RELEASE_TIMEOUT, released)
            .await
            .is_err()
        {
            return Err(format!(
                "the store failed ({why}) and sled cannot be closed to reopen it; exiting so that a supervisor restarts sluice, which recovers every acknowledged alert from the write-ahead log"
            ));
        }

        // A store that fails again soon after a reopen (the disk is still full) waits longer
        // before each new try, instead of reopening in a tight loop.
        let recent = self
            .reopened
            .is_some_and(|t| t.elapsed() < REOPEN_MAX_DELAY * 2);
        if !recent {
            self.reopen_delay = REOPEN_FIRST_DELAY;
        }
        let mut first = recent;
        let store = loop {
            if first {
                if !self.wait_before_reopen().await {
                    return Ok(());
                }
                first = false;
            }
            let opened = crate::store::open(&dir, cache).await;
            let e = match opened {
                Ok(store) => break store,
                Err(e) => e,
            };
            tracing::warn!(
                "cannot reopen the store yet ({e}); next try in {}",
                humantime::format_duration(self.reopen_delay)
            );
            self.live.update(|l| {
                l.store = Err(format!(
                    "the store failed ({why}); reopening it failed: {e}"
                ))
            });
            if !self.wait_before_reopen().await {
                return Ok(());
            }
        };
        self.reopened = Some(std::time::Instant::now());
        let config = self.live.get().config;
        match scan(&*store, &config).await {
            Ok(scan) => {
                self.live.update(|l| l.store = Ok(store.clone()));
                self.start_robots(&store, scan, None);
                tracing::info!("the store is open again; robots resumed");
            }
            Err(e) => {
                // Reopened but unreadable: mark it failed, so the next round tries again.
                tracing::error!("the reopened store cannot be read: {e}");
                self.live.update(|l| l.store = Ok(store.clone()));
                store.health().fail(&e.to_string());
            }
        }
        Ok(())
    }

    /// Sleeps the current reopen delay (answering commands with "busy" meanwhile) and doubles
    /// it. `false`: shutdown began.
    async fn wait_before_reopen(&mut self) -> bool {
        let sleep = tokio::time::sleep(self.reopen_delay);
        tokio::pin!(sleep);
        self.reopen_delay = (self.reopen_delay * 2).min(REOPEN_MAX_DELAY);
        let busy = "the store is being reopened; try again";
        loop {
            tokio::select! {
                _ = &mut sleep => return true,
                _ = stopped(&mut self.stop) => return false,
                Some(command) = self.commands.recv() => match command {
                    Command::Reload(reply) => {
                        let _ = reply.send(Err(ReloadError::Busy(busy.into())));
                    }
                    Command::Move { reply, .. } => {
                        let _ = reply.send(Err(MoveError::Busy(busy.into())));
                    }
                },
            }
        }
    }
}
