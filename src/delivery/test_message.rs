//! A test message sent by a lane's own task, through the member's rate guard, quota and send
//! log, so that it can never push a robot past its limit (as `sluice check --ping`, another
//! process, can). Anyone with the lane's [`RobotHandle`] asks ([`RobotHandle::send_test`]); the
//! task takes the request at the top of its loop, and its waits end early for one.
//!
//! Rules: no permit now → refused, nothing sent, nothing waited for; a member paused
//! (throttled, blocked, backing off, quota spent) → refused with why and until when; otherwise
//! the provider's test message goes out like a digest (counted and logged on disk before the
//! POST) and its answer pauses the member as a digest's would.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use super::{RobotHandle, State};
use crate::provider::Outcome;

/// A test message that went out, and what the robot said.
#[derive(Debug, Clone)]
pub struct TestSent {
    /// The robot it went to (a pool's member, or the robot itself).
    pub robot: String,
    pub outcome: Outcome,
    /// Its sends in the trailing rate period, this one included.
    pub sends_in_period: usize,
    pub rate_limit: u32,
}

/// Why no test message was sent (or no answer came).
#[derive(Debug, Clone, thiserror::Error)]
pub enum TestRefused {
    /// The rate guard has no permit now: `sends_in_period` of `rate_limit` were sent in the
    /// last period; the next permit in `next_permit_ms`.
    #[error(
        "robot {robot} has no send permit now: {sends_in_period}/{rate_limit} sent in the last {period}, next permit in {:.1} s",
        *next_permit_ms as f64 / 1000.0
    )]
    NoPermit {
        robot: String,
        sends_in_period: usize,
        rate_limit: u32,
        period: String,
        next_permit_ms: i64,
    },
    /// The robot is paused (`state`: throttled, blocked, backoff, quota) for `why`.
    #[error("robot {robot} is {} ({why}){}; no test message sent", state.as_str(), until_ms.map(|t| format!(" until {}", rfc3339(t))).unwrap_or_default())]
    Paused {
        robot: String,
        state: State,
        why: String,
        until_ms: Option<i64>,
    },
    /// No task runs for the lane here (`state`; `remote`: another node sends for it).
    #[error("robot {robot}'s lane is not running on this node (state {})", state.as_str())]
    NotRunning { robot: String, state: State },
    /// The task did not answer in time (busy with a long send).
    #[error("robot {robot}'s task did not answer within {}", humantime::format_duration(*.timeout))]
    Timeout { robot: String, timeout: Duration },
    /// The task stopped (reload, shutdown) before it answered.
    #[error("robot {robot}'s task stopped before it sent the test message; try again")]
    Stopped { robot: String },
    /// The store could not count or record the send; it did not leave.
    #[error("robot {robot}: {why}; no test message sent")]
    Store { robot: String, why: String },
    /// `robot` is not a member of this lane.
    #[error("robot {robot} is not a member of lane {lane}")]
    NotMember { robot: String, lane: String },
}

pub(super) struct Request {
    pub(super) member: String,
    pub(super) answer: oneshot::Sender<Result<TestSent, TestRefused>>,
}

/// The requests waiting for the lane's task, and whether a task runs.
#[derive(Default)]
pub(super) struct Door {
    queue: Mutex<VecDeque<Request>>,
    pub(super) notify: Notify,
    /// Tasks running for the lane (two for a moment during a reload).
    running: AtomicUsize,
}

/// Held by a running lane task; when the task ends (or is aborted) the waiting requests are
/// answered `Stopped` (their senders dropped).
pub(super) struct Running<'a>(&'a Door);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut q = self.0.queue.lock().expect("test queue lock");
        if self.0.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            q.clear();
        }
    }
}

impl Door {
    pub(super) fn open(&self) -> Running<'_> {
        self.running.fetch_add(1, Ordering::SeqCst);
        Running(self)
    }

    pub(super) fn take(&self) -> Option<Request> {
        self.queue.lock().expect("test queue lock").pop_front()
    }
}

impl RobotHandle {
    /// Asks this lane's task to send one test message through its member `member` (the
    /// robot itself for a robot's lane, a member robot for a pool's) and waits at most
    /// `timeout` for the outcome. Never waits for a permit: without one it is refused at once.
    pub async fn send_test(
        &self,
        member: &str,
        timeout: Duration,
    ) -> Result<TestSent, TestRefused> {
        let robot = member.to_string();
        let door = &self.tests;
        let (tx, rx) = oneshot::channel();
        {
            let mut q = door.queue.lock().expect("test queue lock");
            // Checked under the lock the task's exit clears the queue under.
            if door.running.load(Ordering::SeqCst) == 0 {
                return Err(TestRefused::NotRunning {
                    robot,
                    state: self.status().state,
                });
            }
            q.push_back(Request {
                member: member.to_string(),
                answer: tx,
            });
        }
        door.notify.notify_one();
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(TestRefused::Stopped { robot }),
            Err(_) => Err(TestRefused::Timeout { robot, timeout }),
        }
    }
}

/// `ms` (Unix) as an RFC 3339 time, to the second.
fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}
