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
    // An entry from the future means the wall clock stepped back; it was sent at most "now".
    let kth = kth.min(now_ms);
    (kth + period_ms + margin_ms - now_ms).max(0)
}

pub struct RateGuard {
    limit: usize,
    period_ms: i64,
    margin_ms: i64,
    log: VecDeque<i64>,
    pacer: Pacer,
}

impl RateGuard {
    /// A guard that starts from a persisted log (oldest first).
    pub fn new(limit: u32, period: Duration, log: Vec<i64>) -> RateGuard {
        let (burst, per) = pacer_quota(limit, period);
        let quota = Quota::with_period(per)
            .expect("period is positive")
            .allow_burst(NonZeroU32::new(burst).expect("burst is at least 1"));
        let mut log: VecDeque<i64> = log.into();
        while log.len() > limit as usize {
            log.pop_front();
        }
        RateGuard {
            limit: limit as usize,
            period_ms: period.as_millis() as i64,
            margin_ms: margin(period).as_millis() as i64,
            log,
            pacer: RateLimiter::direct_with_clock(quota, TokioClock),
        }
    }

    /// `Ok(())` if a request may go now (the caller must then [`record`](Self::record) it and
    /// send); otherwise how long to wait before asking again.
    pub fn acquire(&mut self, now_ms: i64) -> Result<(), Duration> {
        let log = self.log.make_contiguous();
        let wait = log_wait_ms(log, self.limit, self.period_ms, self.margin_ms, now_ms);
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
        while self.log.len() > self.limit {
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

    /// Requests in the trailing period, for status.
    pub fn sends_in_period(&self, now_ms: i64) -> usize {
        self.log
            .iter()
            .filter(|&&t| t > now_ms - self.period_ms)
            .count()
    }

    pub fn limit(&self) -> usize {
        self.limit
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

    const BOOT_A: BootId = BootId(0x6f1e_0a4b_52d4_4c84_9b3c_1f2e_3d4c_5b6a);

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
