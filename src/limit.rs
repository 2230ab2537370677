//! The rate guard: never more than `rate_limit` requests to one robot in any rolling
//! `rate_period`, as the robot sees them, across restarts.
//!
//! Two layers, each with its own job:
//! 1. **The exact log** is the guarantee. It keeps the wall-clock times of the last `rate_limit`
//!    sends, persisted in the store before each POST, so a restart or a crash loop cannot burst
//!    again. A send is allowed only when the `rate_limit`-th most recent one is at least
//!    `rate_period + margin` old. Each entry is first the time the POST started (written durably
//!    before it), then the time its answer came back: the robot received the request somewhere in
//!    between, so measuring from the later time keeps the robot's own window within the limit
//!    even when a request is slow to arrive.
//! 2. **The pacer** (governor's GCRA) spreads sends out so that a steady stream does not spend
//!    the whole budget at the start of each period. Pitfall: `Quota::per_minute(20)` is a burst
//!    of 20 and then one every 3 s, which admits up to 39 in a minute (governor #219). With burst
//!    `b` and replenish period `T` a GCRA admits at most `b + ⌈W/T⌉ − 1` in a window `W`, and its
//!    sustained rate is `1/T`. A burst buys nothing here (under pressure digests grow instead of
//!    multiplying) and costs sustained rate (`b = 10` leaves 11 a minute), so we use `b = 1` and
//!    `T = ⌈period / limit⌉`: exactly `limit` per window, at the full sustained rate.
//!    The pacer is in memory only; the log covers restarts.
//!
//! Time: the guard works in this process's wall-clock ms from a [`Clock`], which is the host's
//! wall clock read once at start plus tokio's monotonic time since, so a wall-clock step inside
//! the process moves nothing, and a test with a paused runtime drives both layers. governor's own
//! `until_ready` sleeps on a real timer, so we only ever call `check()` and sleep with tokio.
//!
//! Across a restart the wall clock may have stepped either way, so the persisted log
//! ([`StoredLog`]) keeps each send's time on the kernel's boot clock too (`CLOCK_BOOTTIME`, which
//! counts suspend and which no wall-clock step moves), with the boot id it belongs to. At start
//! [`resume`] translates the log into the new process's clock once, and every entry comes out
//! no earlier than the send really reached the robot (so the limit holds) and, but for the lead
//! of a stamp, no later than now (so one period is the longest wait):
//! - the same boot: `wall_now − (boot_now − entry_boot)`, exact whatever the wall clock did;
//! - another boot: every old send happened before this boot began, so each counts as sent then,
//!   at `wall_now − boot_now`;
//! - no boot time (a log of an older release, a host without a boot clock): each counts as sent
//!   now.
//!
//! A future entry must not be clamped to "now" on every check instead: it stays ahead, so each
//! check waits one more period and the robot stalls for the whole step.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock as GovClock, ReasonablyRealtime};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// Wall-clock milliseconds that advance with tokio's clock: real time normally, virtual time in a
/// test whose runtime is paused. Beside it, the kernel's boot clock, advancing the same way.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall_at_start: i64,
    boot_at_start: Option<Boot>,
    /// `CLOCK_BOOTTIME − CLOCK_MONOTONIC` at start. tokio's time is monotonic and stops while the
    /// machine is suspended; the boot clock does not, and the boot times we persist must not fall
    /// behind the real ones (a send would then look older than it is after a restart).
    suspended_at_start: Option<i64>,
    start: tokio::time::Instant,
}

/// A kernel boot (its id) and a time on its boot clock, in ms since it began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Boot {
    pub id: BootId,
    pub ms: i64,
}

/// What a [`Clock`] reads at one instant: this process's wall-clock ms and, where the kernel has
/// them, the boot clock and boot id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub wall_ms: i64,
    pub boot: Option<Boot>,
}

impl Clock {
    pub fn new() -> Clock {
        Clock::at(Reading {
            wall_ms: crate::unix_ms(),
            boot: host_boot(),
        })
    }

    /// A clock that reads `wall_ms` now (tests), on the host's boot clock.
    pub fn starting_at(wall_ms: i64) -> Clock {
        Clock::at(Reading {
            wall_ms,
            boot: host_boot(),
        })
    }

    /// A clock that reads `now` now. A test seam: a test restarts sluice with the wall clock
    /// stepped, or on another boot, without touching the machine's clocks.
    pub fn at(now: Reading) -> Clock {
        Clock {
            wall_at_start: now.wall_ms,
            boot_at_start: now.boot,
            suspended_at_start: suspended_ms(),
            start: tokio::time::Instant::now(),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.wall_at_start + self.start.elapsed().as_millis() as i64
    }

    /// The wall clock and the boot clock, read together.
    pub fn reading(&self) -> Reading {
        let elapsed = self.start.elapsed().as_millis() as i64;
        let suspended = match (self.suspended_at_start, suspended_ms()) {
            (Some(then), Some(now)) => (now - then).max(0),
            _ => 0,
        };
        Reading {
            wall_ms: self.wall_at_start + elapsed,
            boot: self.boot_at_start.map(|b| Boot {
                id: b.id,
                ms: b.ms + elapsed + suspended,
            }),
        }
    }

    /// `log` (this process's wall-clock ms, oldest first) as it is persisted.
    pub fn stored(&self, log: &[i64]) -> StoredLog {
        StoredLog::of(log, self.reading())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// The kernel's id of the running boot (`/proc/sys/kernel/random/boot_id`, a UUID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BootId(pub u128);

impl std::fmt::Display for BootId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = format!("{:032x}", self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }
}

impl std::str::FromStr for BootId {
    type Err = String;
    fn from_str(s: &str) -> Result<BootId, String> {
        let hex: String = s.trim().chars().filter(|&c| c != '-').collect();
        if hex.len() != 32 {
            return Err(format!(
                "boot id {s:?} is not a UUID (32 hex digits, with or without dashes)"
            ));
        }
        u128::from_str_radix(&hex, 16)
            .map(BootId)
            .map_err(|_| format!("boot id {s:?} is not a UUID (32 hex digits)"))
    }
}

impl TryFrom<String> for BootId {
    type Error = String;
    fn try_from(s: String) -> Result<BootId, String> {
        s.parse()
    }
}

impl From<BootId> for String {
    fn from(id: BootId) -> String {
        id.to_string()
    }
}

/// The running boot and its boot clock, if the kernel tells us both.
pub fn host_boot() -> Option<Boot> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()?
        .parse()
        .ok()?;
    Some(Boot {
        id,
        ms: boot_clock_ms()?,
    })
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn kernel_clock_ms(clock: libc::clockid_t) -> Option<i64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the one timespec it is given a pointer to.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    // The fields are 32 bits wide on some targets.
    #[allow(clippy::unnecessary_cast)]
    (rc == 0).then(|| ts.tv_sec as i64 * 1000 + ts.tv_nsec as i64 / 1_000_000)
}

/// `CLOCK_BOOTTIME`: ms since the boot began, suspend included.
fn boot_clock_ms() -> Option<i64> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    return kernel_clock_ms(libc::CLOCK_BOOTTIME);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    return None;
}

/// How long this boot has been suspended so far, in ms.
fn suspended_ms() -> Option<i64> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    return Some(kernel_clock_ms(libc::CLOCK_BOOTTIME)? - kernel_clock_ms(libc::CLOCK_MONOTONIC)?);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    return None;
}

/// A robot's send log as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredLog {
    /// Wall-clock ms alone: what releases before boot stamps wrote, and what a host without a
    /// boot clock writes. Their age cannot be proven after a restart.
    Wall(Vec<i64>),
    /// Each send on both clocks.
    Boot(BootLog),
}

/// Sends on the wall clock of the process that made them and on the boot clock of `boot_id`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BootLog {
    pub boot_id: BootId,
    /// `[wall ms, boot ms]` of each send, oldest first.
    pub sends: Vec<[i64; 2]>,
}

impl StoredLog {
    /// `log` (wall-clock ms of the clock that read `now`) with the boot time of each entry.
    pub fn of(log: &[i64], now: Reading) -> StoredLog {
        match now.boot {
            // Both clocks advance together in one process, so one offset maps every entry
            // (including a stamp still ahead of now).
            Some(boot) => StoredLog::Boot(BootLog {
                boot_id: boot.id,
                sends: log
                    .iter()
                    .map(|&w| [w, w - now.wall_ms + boot.ms])
                    .collect(),
            }),
            None => StoredLog::Wall(log.to_vec()),
        }
    }

    /// The wall-clock ms as stored (those of the process that wrote them).
    pub fn wall_ms(&self) -> Vec<i64> {
        match self {
            StoredLog::Wall(w) => w.clone(),
            StoredLog::Boot(b) => b.sends.iter().map(|s| s[0]).collect(),
        }
    }
}

/// The persisted log in this process's wall-clock ms, as of `now`, translated once (see the
/// module header). The newest send may have been in flight when the last process stopped: its
/// answer time never reached the disk, and the robot may have counted it as late as that answer
/// could have come, so it counts `in_flight_ms` later. Pure, so it can be property-tested.
pub fn resume(stored: &StoredLog, now: Reading, in_flight_ms: i64) -> Vec<i64> {
    let mut log = translate(stored, now);
    if let Some(last) = log.last_mut() {
        *last += in_flight_ms;
    }
    log
}

fn translate(stored: &StoredLog, now: Reading) -> Vec<i64> {
    let StoredLog::Boot(b) = stored else {
        return vec![now.wall_ms; stored.wall_ms().len()];
    };
    let Some(boot) = now.boot else {
        return vec![now.wall_ms; b.sends.len()];
    };
    if b.boot_id != boot.id {
        return vec![now.wall_ms - boot.ms; b.sends.len()];
    }
    let exact: Vec<i64> = b
        .sends
        .iter()
        .map(|s| now.wall_ms - (boot.ms - s[1]))
        .collect();
    // On one boot a stamp is at most its lead ahead of now. One further ahead means this boot
    // clock is not the one the log was written on (another time namespace, say): it proves
    // nothing, and trusting it would stall the robot.
    if exact.iter().any(|&t| t > now.wall_ms + MAX_LEAD_MS) {
        return vec![now.wall_ms; b.sends.len()];
    }
    exact
}

/// The most a stored stamp may be ahead of the clock on its own boot: the robot task stamps a
/// send half a [`margin`] ahead, and a margin is at most a second.
const MAX_LEAD_MS: i64 = 1_000;

/// governor's view of tokio's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl GovClock for TokioClock {
    type Instant = std::time::Instant;
    fn now(&self) -> Self::Instant {
        tokio::time::Instant::now().into_std()
    }
}

impl ReasonablyRealtime for TokioClock {}

type Pacer = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<std::time::Instant>>;

/// The safety margin added to the period: clocks and request latency jitter a little.
pub fn margin(period: Duration) -> Duration {
    (period / 50).min(Duration::from_secs(1))
}

/// Burst and replenish period for the pacer, such that `b + ⌈period/T⌉ − 1 ≤ limit`. `T` is
/// rounded up to the nanosecond, since rounding down would let one more cell into the window.
pub fn pacer_quota(limit: u32, period: Duration) -> (u32, Duration) {
    let per = period.as_nanos().div_ceil(u128::from(limit.max(1)));
    (1, Duration::from_nanos(per as u64))
}

/// Milliseconds until the exact log allows another send at `now_ms` (0: allowed now).
///
/// `log` is oldest first. Pure, so it can be property-tested.
pub fn log_wait_ms(log: &[i64], limit: usize, period_ms: i64, margin_ms: i64, now_ms: i64) -> i64 {
    if log.len() < limit {
        return 0;
    }
    let kth = log[log.len() - limit];
    // [`resume`] has brought a persisted log into this clock, so an entry from the future is only
    // a stamp's lead; whatever it is, it was sent at most "now", and one wait is at most a period.
    let kth = kth.min(now_ms);
    (kth + period_ms + margin_ms - now_ms).max(0)
}

/// One rolling window of a robot's limit: at most `limit` requests in any `period`. A platform
/// may impose several at once (Feishu: 100 a minute and 5 a second); the guard holds them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub limit: u32,
    pub period: Duration,
}

impl Window {
    pub fn new(limit: u32, period: Duration) -> Window {
        Window { limit, period }
    }
}

/// A window as the exact log checks it.
#[derive(Debug, Clone, Copy)]
struct Held {
    limit: usize,
    period_ms: i64,
    margin_ms: i64,
}

pub struct RateGuard {
    /// Every window; the first is the one status reports ("sends in the current period").
    windows: Vec<Held>,
    /// Entries kept: the largest limit, enough for every window's check.
    keep: usize,
    log: VecDeque<i64>,
    pacer: Pacer,
}

impl RateGuard {
    /// A guard of one window that starts from a persisted log (oldest first).
    pub fn new(limit: u32, period: Duration, log: Vec<i64>) -> RateGuard {
        RateGuard::with_windows(&[Window::new(limit, period)], log)
    }

    /// A guard that holds every one of `windows` (at least one), from a persisted log. The
    /// pacer spaces sends by the slowest sustained rate among them, `T = max ⌈period/limit⌉`,
    /// so that with burst 1 it admits at most `⌈W/T⌉ ≤ limit` in each window `W`.
    pub fn with_windows(windows: &[Window], log: Vec<i64>) -> RateGuard {
        assert!(!windows.is_empty(), "a rate guard needs a window");
        let per = windows
            .iter()
            .map(|w| pacer_quota(w.limit, w.period).1)
            .max()
            .expect("at least one window");
        let quota = Quota::with_period(per)
            .expect("period is positive")
            .allow_burst(NonZeroU32::new(1).expect("1 is not 0"));
        let held: Vec<Held> = windows
            .iter()
            .map(|w| Held {
                limit: w.limit as usize,
                period_ms: w.period.as_millis() as i64,
                margin_ms: margin(w.period).as_millis() as i64,
            })
            .collect();
        let keep = held.iter().map(|w| w.limit).max().unwrap_or(1);
        let mut log: VecDeque<i64> = log.into();
        while log.len() > keep {
            log.pop_front();
        }
        RateGuard {
            windows: held,
            keep,
            log,
            pacer: RateLimiter::direct_with_clock(quota, TokioClock),
        }
    }

    /// `Ok(())` if a request may go now (the caller must then [`record`](Self::record) it and
    /// send); otherwise how long to wait before asking again.
    pub fn acquire(&mut self, now_ms: i64) -> Result<(), Duration> {
        let log = self.log.make_contiguous();
        let wait = self
            .windows
            .iter()
            .map(|w| log_wait_ms(log, w.limit, w.period_ms, w.margin_ms, now_ms))
            .max()
            .unwrap_or(0);
        if wait > 0 {
            return Err(Duration::from_millis(wait as u64));
        }
        match self.pacer.check() {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(TokioClock.now());
                Err(wait.max(Duration::from_millis(1)))
            }
        }
    }

    /// Notes a request starting at `at_ms`. Persist [`log`](Self::log) durably before sending.
    pub fn record(&mut self, at_ms: i64) {
        self.log.push_back(at_ms);
        while self.log.len() > self.keep {
            self.log.pop_front();
        }
    }

    /// Moves the newest entry later, to `at_ms` (a send stamped again before it leaves).
    pub fn restamp_last(&mut self, at_ms: i64) {
        if let Some(last) = self.log.back_mut() {
            *last = (*last).max(at_ms);
        }
    }

    /// Moves the newest entry to the time the answer (or the failure) came back.
    pub fn complete(&mut self, done_ms: i64) {
        if let Some(last) = self.log.back_mut() {
            *last = (*last).max(done_ms);
        }
    }

    pub fn log(&self) -> Vec<i64> {
        self.log.iter().copied().collect()
    }

    /// Requests in the first window's trailing period, for status.
    pub fn sends_in_period(&self, now_ms: i64) -> usize {
        let period_ms = self.windows[0].period_ms;
        self.log.iter().filter(|&&t| t > now_ms - period_ms).count()
    }

    /// The first window's limit, for status.
    pub fn limit(&self) -> usize {
        self.windows[0].limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The most entries inside any half-open window of `width` ms.
    fn max_in_window(times: &[i64], width: i64) -> usize {
        let mut best = 0;
        let mut lo = 0;
        for hi in 0..times.len() {
            while times[hi] - times[lo] >= width {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        best
    }

    #[test]
    fn the_log_waits_for_the_oldest_of_the_last_limit_sends() {
        assert_eq!(log_wait_ms(&[], 2, 1000, 20, 0), 0);
        assert_eq!(log_wait_ms(&[0], 2, 1000, 20, 5), 0);
        assert_eq!(log_wait_ms(&[0, 100], 2, 1000, 20, 500), 520);
        assert_eq!(log_wait_ms(&[0, 100], 2, 1000, 20, 1020), 0);
        // A clock that stepped back never makes us wait more than one period.
        assert_eq!(log_wait_ms(&[9_000, 9_100], 2, 1000, 20, 0), 1020);
    }

    #[test]
    fn pacer_quota_keeps_the_gcra_bound_within_the_limit() {
        for limit in 1..=100u32 {
            for period_ms in [1_000u64, 3_000, 60_000] {
                let period = Duration::from_millis(period_ms);
                let (b, t) = pacer_quota(limit, period);
                let cells = (period.as_nanos()).div_ceil(t.as_nanos()) as u32;
                assert!(
                    b + cells - 1 <= limit,
                    "limit {limit}: burst {b} period {t:?}"
                );
            }
        }
    }

    proptest! {
        /// Whatever the arrival pattern of send attempts, the exact log alone never lets more than
        /// `limit` sends fall in any window of `period + margin`.
        #[test]
        fn the_log_never_exceeds_the_limit(
            limit in 1usize..25,
            period_ms in 100i64..10_000,
            gaps in proptest::collection::vec(0i64..2_000, 1..400),
            latencies in proptest::collection::vec(0i64..500, 400),
        ) {
            let margin_ms = (period_ms / 50).min(1000);
            let mut log: Vec<i64> = Vec::new();
            let mut arrivals = Vec::new();
            let mut now = 0i64;
            for (i, gap) in gaps.iter().enumerate() {
                now += gap;
                if log_wait_ms(&log, limit, period_ms, margin_ms, now) == 0 {
                    // The request reaches the robot somewhere between start and answer; the log
                    // keeps the answer time.
                    let latency = latencies[i % latencies.len()];
                    arrivals.push(now + latency / 2);
                    log.push(now + latency);
                    now += latency;
                }
            }
            arrivals.sort();
            prop_assert!(max_in_window(&arrivals, period_ms) <= limit);
        }
    }

    proptest! {
        /// With several windows at once, the whole guard (exact log and pacer together) keeps
        /// every window, whatever the arrival pattern; and it still uses the tightest budget.
        #[test]
        fn several_windows_are_all_held(
            windows in proptest::collection::vec((1u32..12, 50u64..3_000), 1..4),
            gaps in proptest::collection::vec(0u64..400, 1..300),
            latency in 0u64..60,
        ) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            let windows: Vec<Window> = windows
                .iter()
                .map(|&(l, p)| Window::new(l, Duration::from_millis(p)))
                .collect();
            let sent = rt.block_on(async {
                let clock = Clock::starting_at(1_700_000_000_000);
                let mut guard = RateGuard::with_windows(&windows, Vec::new());
                let mut sent = Vec::new();
                for gap in &gaps {
                    tokio::time::sleep(Duration::from_millis(*gap)).await;
                    if guard.acquire(clock.now_ms()).is_ok() {
                        guard.record(clock.now_ms());
                        sent.push(clock.now_ms());
                        tokio::time::sleep(Duration::from_millis(latency)).await;
                        guard.complete(clock.now_ms());
                    }
                }
                sent
            });
            for w in &windows {
                let most = max_in_window(&sent, w.period.as_millis() as i64);
                prop_assert!(most <= w.limit as usize, "{most} in {w:?}: {sent:?}");
            }
        }
    }

    /// Feishu's two limits at once, asked continuously: 5 in any second and 100 in any minute,
    /// and close to 100 a minute over ten minutes.
    #[tokio::test(start_paused = true)]
    async fn a_per_second_and_a_per_minute_window_hold_together() {
        let clock = Clock::starting_at(1_700_000_000_000);
        let windows = [
            Window::new(100, Duration::from_secs(60)),
            Window::new(5, Duration::from_secs(1)),
        ];
        let mut guard = RateGuard::with_windows(&windows, Vec::new());
        let mut sent = Vec::new();
        let end = clock.now_ms() + 10 * 60_000;
        while clock.now_ms() < end {
            match guard.acquire(clock.now_ms()) {
                Ok(()) => {
                    guard.record(clock.now_ms());
                    sent.push(clock.now_ms());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    guard.complete(clock.now_ms());
                }
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
        assert!(max_in_window(&sent, 1_000) <= 5);
        assert!(max_in_window(&sent, 60_000) <= 100);
        assert!(sent.len() >= 900, "only {} sends in 10 minutes", sent.len());
        assert_eq!(guard.limit(), 100);
    }

    /// Under tokio's paused clock the whole guard admits exactly `limit` per period when asked
    /// continuously, and never more in any window.
    #[tokio::test(start_paused = true)]
    async fn guard_admits_at_most_the_limit_in_virtual_time() {
        let clock = Clock::starting_at(1_700_000_000_000);
        let period = Duration::from_secs(60);
        let mut guard = RateGuard::new(20, period, Vec::new());
        let mut sent = Vec::new();
        let end = clock.now_ms() + 10 * 60_000;
        while clock.now_ms() < end {
            match guard.acquire(clock.now_ms()) {
                Ok(()) => {
                    guard.record(clock.now_ms());
                    sent.push(clock.now_ms());
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    guard.complete(clock.now_ms());
                }
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
        assert!(
            max_in_window(&sent, 60_000) <= 20,
            "{}",
            max_in_window(&sent, 60_000)
        );
        // It still uses the budget: about 20 a minute over 10 minutes.
        assert!(
            sent.len() >= 180,
            "only {} sends in 10 virtual minutes",
            sent.len()
        );
    }

    const HOUR: i64 = 3_600_000;
    const BOOT_A: BootId = BootId(0x6f1e_0a4b_52d4_4c84_9b3c_1f2e_3d4c_5b6a);
    const BOOT_B: BootId = BootId(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);

    fn on(id: BootId, wall_ms: i64, boot_ms: i64) -> Reading {
        Reading {
            wall_ms,
            boot: Some(Boot { id, ms: boot_ms }),
        }
    }

    #[test]
    fn a_boot_id_reads_and_prints_as_the_kernel_writes_it() {
        let text = "6f1e0a4b-52d4-4c84-9b3c-1f2e3d4c5b6a";
        let id: BootId = format!("{text}\n").parse().unwrap();
        assert_eq!(id, BOOT_A);
        assert_eq!(id.to_string(), text);
        let err = "6f1e0a4b-52d4".parse::<BootId>().unwrap_err();
        assert!(err.contains("not a UUID"), "{err}");
        // The machine's own, where it has one.
        if let Some(boot) = host_boot() {
            assert!(boot.ms > 0);
        }
    }

    /// Same boot: exact, whatever the wall clock did. Another boot: no later than that boot
    /// began. No boot time: now. Never a stall beyond one period, never an entry made older.
    #[test]
    fn a_persisted_log_is_translated_once_into_the_running_clock() {
        // Written at wall 1 000 000 (boot 50 000): sends 3 s and 1 s ago, one stamped 200 ms ahead.
        let written = on(BOOT_A, 1_000_000, 50_000);
        let stored = StoredLog::of(&[997_000, 999_000, 1_000_200], written);
        assert_eq!(
            stored,
            StoredLog::Boot(BootLog {
                boot_id: BOOT_A,
                sends: vec![[997_000, 47_000], [999_000, 49_000], [1_000_200, 50_200]],
            })
        );
        // Restarted 2 s later with the wall clock an hour behind, or an hour ahead.
        for step in [-HOUR, HOUR, 0] {
            let now = on(BOOT_A, 1_002_000 + step, 52_000);
            assert_eq!(
                resume(&stored, now, 0),
                vec![997_000 + step, 999_000 + step, 1_000_200 + step],
                "step {step}"
            );
        }
        // The newest counts as late as its answer could have come.
        let now = on(BOOT_A, 1_002_000, 52_000);
        assert_eq!(resume(&stored, now, 10_000)[2], 1_010_200);
        // Another boot, 30 s old, the wall clock an hour ahead: sent before it began.
        let now = on(BOOT_B, 1_002_000 + HOUR, 30_000);
        assert_eq!(resume(&stored, now, 0), vec![972_000 + HOUR; 3]);
        // No boot clock now, or a log of an earlier release: sent now.
        let bootless = Reading {
            wall_ms: 5_000,
            boot: None,
        };
        assert_eq!(resume(&stored, bootless, 0), vec![5_000; 3]);
        let legacy = StoredLog::Wall(vec![1, 2]);
        assert_eq!(resume(&legacy, on(BOOT_A, 5_000, 1), 0), vec![5_000; 2]);
        assert_eq!(StoredLog::of(&[1, 2], bootless), legacy);
        // The same boot id on a boot clock far behind the log's: not the same clock, so now.
        let now = on(BOOT_A, 1_002_000, 40_000);
        assert_eq!(resume(&stored, now, 0), vec![1_002_000; 3]);
    }

    /// The boot clock advances with tokio's time, as the wall clock does.
    #[tokio::test(start_paused = true)]
    async fn the_boot_clock_advances_with_tokio_time() {
        let clock = Clock::at(on(BOOT_A, 1_000_000, 7_000));
        tokio::time::sleep(Duration::from_secs(90)).await;
        let r = clock.reading();
        assert_eq!(r.wall_ms, 1_090_000);
        let boot = r.boot.unwrap();
        assert_eq!(boot.id, BOOT_A);
        // Plus the time the machine was suspended meanwhile, if it was.
        assert!(
            (97_000..98_000).contains(&boot.ms),
            "boot clock at {}",
            boot.ms
        );
        assert_eq!(clock.now_ms(), 1_090_000);
    }

    /// How the wall clock of the second process relates to the first's, and whether the machine
    /// rebooted in between.
    #[derive(Debug, Clone)]
    enum Restart {
        /// The same boot; the wall clock stepped by this much.
        SameBoot { step_ms: i64 },
        /// A reboot that began `up_ms` before the new process started, the wall clock stepped.
        Reboot { step_ms: i64, up_ms: i64 },
        /// A log of an earlier release, wall times only.
        Legacy { step_ms: i64 },
    }

    fn restart() -> impl Strategy<Value = Restart> {
        // Steps both small (against one period) and large (hours), both signs.
        let step = prop_oneof![-5_000i64..5_000, -3 * HOUR..3 * HOUR];
        prop_oneof![
            step.clone()
                .prop_map(|step_ms| Restart::SameBoot { step_ms }),
            (step.clone(), 0i64..20_000)
                .prop_map(|(step_ms, up_ms)| Restart::Reboot { step_ms, up_ms }),
            step.prop_map(|step_ms| Restart::Legacy { step_ms }),
        ]
    }

    proptest! {
        /// A first process sends as fast as the log allows and stops (cleanly, or with a send
        /// in flight); a second starts on the same data with the wall clock stepped, on the same
        /// boot or after a reboot, and sends as fast as the log allows. In real time, as the robot
        /// sees it: never more than `limit` in any period, and the second process's first send
        /// comes within one period (plus the margin, a stamp's lead, and for `limit` 1 the answer
        /// time a send in flight may still take).
        #[test]
        fn a_clock_step_across_a_restart_neither_bursts_nor_stalls(
            limit in 1usize..25,
            period_ms in 100i64..10_000,
            gaps in proptest::collection::vec(0i64..2_000, 1..200),
            latencies in proptest::collection::vec(0i64..500, 200),
            in_flight: bool,
            down_ms in 0i64..5_000,
            restart in restart(),
        ) {
            let margin_ms = (period_ms / 50).min(1000);
            let lead_ms = margin_ms / 2;
            let timeout_ms = 500;
            // Real time `t` is the robot's. The first process's wall clock is t + WALL, its boot
            // clock t + BOOT (the boot began before it).
            const WALL: i64 = 1_700_000_000_000;
            const BOOT: i64 = 3_000;
            let mut arrivals = Vec::new();
            let mut log: Vec<i64> = Vec::new();
            let mut stored = StoredLog::Wall(Vec::new());
            let mut t = 0i64;
            let mut in_flight_at = None;
            for (i, gap) in gaps.iter().enumerate() {
                t += gap;
                if log_wait_ms(&log, limit, period_ms, margin_ms, t + WALL) > 0 {
                    continue;
                }
                let latency = latencies[i % latencies.len()];
                // Stamped ahead and persisted before the request leaves; the robot gets it
                // somewhere before the answer; the answer time replaces the stamp.
                log.push(t + WALL + lead_ms);
                if log.len() > limit {
                    log.remove(0);
                }
                stored = StoredLog::of(&log, on(BOOT_A, t + WALL, t + BOOT));
                if in_flight && i == gaps.len() - 1 {
                    // Stopped before the answer came, which may arrive later still.
                    in_flight_at = Some(t + latency.min(timeout_ms));
                    break;
                }
                arrivals.push(t + latency / 2);
                t += latency;
                let last = log.last_mut().unwrap();
                *last = (*last).max(t + WALL);
                stored = StoredLog::of(&log, on(BOOT_A, t + WALL, t + BOOT));
            }
            if let Some(at) = in_flight_at {
                arrivals.push(at);
            }
            let stopped = t;
            let started = stopped + down_ms;
            let (wall, now) = match restart {
                Restart::SameBoot { step_ms } => {
                    let wall = WALL + step_ms;
                    (wall, on(BOOT_A, started + wall, started + BOOT))
                }
                Restart::Reboot { step_ms, up_ms } => {
                    // The reboot happened after the first process stopped.
                    let up_ms = up_ms.min(down_ms);
                    let wall = WALL + step_ms;
                    (wall, on(BOOT_B, started + wall, up_ms))
                }
                Restart::Legacy { step_ms } => {
                    stored = StoredLog::Wall(stored.wall_ms());
                    let wall = WALL + step_ms;
                    (wall, on(BOOT_A, started + wall, started + BOOT))
                }
            };
            let mut log = resume(&stored, now, timeout_ms);
            // The second process sends whenever the log allows, answered at once, for longer
            // than the bound on its first send below (a send in flight may add the timeout).
            let horizon = 4 * period_ms + timeout_ms;
            let mut t = started;
            let mut first = None;
            while t < started + horizon {
                let wait = log_wait_ms(&log, limit, period_ms, margin_ms, t + wall);
                prop_assert!(wait <= period_ms + margin_ms, "one wait of {wait} ms");
                if wait > 0 {
                    t += wait;
                    continue;
                }
                first.get_or_insert(t);
                arrivals.push(t);
                log.push(t + wall + lead_ms);
                if log.len() > limit {
                    log.remove(0);
                }
                t += 1;
            }
            arrivals.sort();
            prop_assert!(
                max_in_window(&arrivals, period_ms) <= limit,
                "{} in one period of {period_ms} ms (limit {limit}) after {restart:?}",
                max_in_window(&arrivals, period_ms)
            );
            let Some(first) = first else {
                return Err(TestCaseError::fail(format!(
                    "no send in the {horizon} ms after the restart after {restart:?}"
                )));
            };
            let mut bound = period_ms + margin_ms + lead_ms;
            if limit == 1 {
                bound += timeout_ms;
            }
            prop_assert!(
                first - started <= bound,
                "first send {} ms after the restart (bound {bound}) after {restart:?}",
                first - started
            );
        }
    }

    /// A restarted guard that inherits a full log waits instead of bursting.
    #[tokio::test(start_paused = true)]
    async fn a_restarted_guard_honours_the_persisted_log() {
        let clock = Clock::starting_at(1_000_000);
        let now = clock.now_ms();
        let log: Vec<i64> = (0..20).map(|i| now - 10_000 + i * 100).collect();
        let mut guard = RateGuard::new(20, Duration::from_secs(60), log);
        let wait = guard.acquire(now).unwrap_err();
        assert_eq!(wait, Duration::from_millis(60_000 + 1000 - 10_000));
        assert_eq!(guard.sends_in_period(now), 20);
    }
}
