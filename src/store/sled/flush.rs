//! Grouped sled flushes. Every robot task's write (seal, answer, send log) returns only once
//! sled has flushed it, and a flush syncs the blob files and sled's log. Callers that arrive while
//! a flush runs cannot ride on it (their writes may have missed it), but they can all ride on the
//! next one: so however many robots finish at once, at most one flush runs and one waits.

use std::sync::{Condvar, Mutex};

struct Round {
    /// Callers so far; each needs a flush that starts after it arrived.
    asked: u64,
    /// Every caller up to this one is covered by a finished flush.
    done: u64,
    running: bool,
    /// The outcome for callers up to `done`: `Err` when that flush failed.
    last: Result<(), String>,
}

/// Coalesces concurrent flushes (see the module header).
#[derive(Default)]
pub(super) struct FlushGroup {
    round: Mutex<Round>,
    finished: Condvar,
}

impl Default for Round {
    fn default() -> Round {
        Round {
            asked: 0,
            done: 0,
            running: false,
            last: Ok(()),
        }
    }
}

impl FlushGroup {
    /// Returns once a flush that started after this call has finished, running it when no other
    /// caller is. `flush` must make durable everything written before it starts.
    pub(super) fn flush(&self, flush: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
        let mut round = self.round.lock().expect("flush lock");
        round.asked += 1;
        let me = round.asked;
        loop {
            if round.done >= me {
                return round.last.clone();
            }
            if !round.running {
                round.running = true;
                // Everyone who asked so far wrote before this flush starts.
                let covers = round.asked;
                drop(round);
                let result = flush();
                round = self.round.lock().expect("flush lock");
                round.running = false;
                round.done = covers;
                round.last = result.clone();
                self.finished.notify_all();
                return result;
            }
            round = self.finished.wait(round).expect("flush lock");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Sixteen callers at once cost far fewer than sixteen flushes, and every caller returns
    /// only after a flush that began after it arrived.
    #[test]
    fn concurrent_callers_share_flushes_and_each_is_covered() {
        let group = Arc::new(FlushGroup::default());
        let flushes = Arc::new(AtomicU64::new(0));
        // The write counter: a flush covers the writes made before it starts.
        let written = Arc::new(AtomicU64::new(0));
        let durable = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (group, flushes, written, durable) = (
                    group.clone(),
                    flushes.clone(),
                    written.clone(),
                    durable.clone(),
                );
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let mine = written.fetch_add(1, Ordering::SeqCst) + 1;
                        group
                            .flush(|| {
                                let upto = written.load(Ordering::SeqCst);
                                flushes.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(std::time::Duration::from_millis(1));
                                durable.fetch_max(upto, Ordering::SeqCst);
                                Ok(())
                            })
                            .unwrap();
                        assert!(
                            durable.load(Ordering::SeqCst) >= mine,
                            "returned before its write was flushed"
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n = flushes.load(Ordering::SeqCst);
        assert!(n < 320, "{n} flushes for 320 calls: none were shared");
    }

    #[test]
    fn a_failed_flush_fails_every_caller_it_covered() {
        let group = FlushGroup::default();
        assert_eq!(
            group.flush(|| Err("disk full".into())),
            Err("disk full".into())
        );
        assert_eq!(group.flush(|| Ok(())), Ok(()));
    }
}
