//! Send quotas (`quota = "5000/month"`): how many requests a robot may make in a calendar
//! period (day, ISO week from Monday, month, in the robot's time zone) or in a fixed window
//! aligned to the Unix epoch (`"5/2s"`, for tests and short windows).
//!
//! Pure: parsing, the period a moment falls in, the 80 % warning line and the date the quota
//! runs out at the period's rate so far. The count itself is persisted per robot
//! ([`crate::store::QuotaUsed`], `Store::set_quota_used`) by the robot's task before each
//! POST, so a crash cannot let a send past the quota (an unanswered send counts).

use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, ZonedDateTime};

/// The period a quota counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
    Month,
    /// Fixed windows of this length, aligned to the Unix epoch.
    Fixed(Duration),
}

/// `limit` sends per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u64,
    pub period: Period,
}

/// When the warning line goes into the next digest: this share of the quota used.
pub const WARN_PERCENT: u64 = 80;

impl Quota {
    /// `"N/day"`, `"N/week"`, `"N/month"` or `"N/<duration>"`; the error says what was expected.
    pub fn parse(text: &str) -> Result<Quota, String> {
        let expected = || {
            format!(
                "{text:?}: expected N/day, N/week, N/month or N/<duration> (e.g. \"5000/month\", \"5/2s\") with N at least 1"
            )
        };
        let (n, per) = text.trim().split_once('/').ok_or_else(expected)?;
        let limit: u64 = n.trim().replace('_', "").parse().map_err(|_| expected())?;
        if limit == 0 {
            return Err(expected());
        }
        let period = match per.trim() {
            "day" => Period::Day,
            "week" => Period::Week,
            "month" => Period::Month,
            other => match humantime::parse_duration(other) {
                Ok(d) if d >= Duration::from_millis(100) => Period::Fixed(d),
                _ => return Err(expected()),
            },
        };
        Ok(Quota { limit, period })
    }

    /// The period `now_ms` falls in: `[start, end)` in Unix ms.
    pub fn bounds(&self, now_ms: i64, tz: &TimeZone) -> (i64, i64) {
        let len = match self.period {
            Period::Fixed(d) => d.as_millis().max(1) as i64,
            _ => return calendar(self.period, now_ms, tz),
        };
        let start = now_ms.div_euclid(len) * len;
        (start, start + len)
    }

    /// What the period is called in the warning line.
    fn period_name(&self) -> String {
        match self.period {
            Period::Day => "today's".into(),
            Period::Week => "this week's".into(),
            Period::Month => "this month's".into(),
            Period::Fixed(d) => format!("this {}'s", humantime::format_duration(d)),
        }
    }

    /// The quota as people say it: "monthly quota of 5 000".
    pub fn describe(&self) -> String {
        let per = match self.period {
            Period::Day => "daily".to_string(),
            Period::Week => "weekly".to_string(),
            Period::Month => "monthly".to_string(),
            Period::Fixed(d) => format!("per-{}", humantime::format_duration(d)),
        };
        format!("{per} quota of {}", grouped(self.limit))
    }

    /// The warning line for a digest sent as send number `used` (1-based) of the period, once
    /// `used` reaches [`WARN_PERCENT`] of the limit; `runs_out` from [`runs_out`].
    pub fn warning(&self, used: u64, runs_out: Option<i64>, tz: &TimeZone) -> Option<String> {
        if used * 100 < self.limit * WARN_PERCENT {
            return None;
        }
        let mut line = format!(
            "⚠ {} of {} {} sends used",
            grouped(used),
            self.period_name(),
            grouped(self.limit)
        );
        match runs_out {
            Some(at) if used < self.limit => {
                line.push_str("; at today's rate the quota runs out on ");
                line.push_str(&date(at, tz));
                line.push('.');
            }
            _ if used >= self.limit => line.push_str("; the quota is spent."),
            _ => line.push('.'),
        }
        Some(line)
    }
}

/// When the quota runs out at the period's rate so far (`used` sends since `start_ms`), if
/// before the period ends; `None` when it lasts the period (or nothing was sent yet).
pub fn runs_out(limit: u64, used: u64, start_ms: i64, end_ms: i64, now_ms: i64) -> Option<i64> {
    if used == 0 {
        return None;
    }
    if used >= limit {
        return Some(now_ms);
    }
    let elapsed = (now_ms - start_ms).max(1) as f64;
    let per_ms = used as f64 / elapsed;
    let at = now_ms + ((limit - used) as f64 / per_ms) as i64;
    (at < end_ms).then_some(at)
}

/// `ms` as a date in `tz` (2026-12-24).
pub fn date(ms: i64, tz: &TimeZone) -> String {
    match Timestamp::from_millisecond(ms) {
        Ok(t) => t.to_zoned_datetime(tz.clone()).date().to_string(),
        Err(_) => ms.to_string(),
    }
}

/// 5000 → "5 000".
fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn calendar(period: Period, now_ms: i64, tz: &TimeZone) -> (i64, i64) {
    let Ok(t) = Timestamp::from_millisecond(now_ms) else {
        return (now_ms, now_ms + 86_400_000);
    };
    let z: ZonedDateTime = t.to_zoned_datetime(tz.clone());
    let date = z.date();
    let (first, next) = match period {
        Period::Week => {
            let back = i64::from(date.weekday().to_monday_zero_offset());
            let monday = date.checked_sub(back.days()).unwrap_or(date);
            (monday, monday.checked_add(1.week()))
        }
        Period::Month => {
            let first = date.first_of_month();
            (first, first.checked_add(1.month()))
        }
        _ => (date, date.checked_add(1.day())),
    };
    let ms = |d: jiff::civil::Date| {
        d.to_zoned_datetime(tz.clone())
            .map(|z| z.timestamp().as_millisecond())
            .ok()
    };
    let start = ms(first).unwrap_or(now_ms);
    let end = next.ok().and_then(ms).unwrap_or(start + 31 * 86_400_000);
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc_ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn quotas_parse_and_refuse_with_what_was_expected() {
        let q = Quota::parse("5000/month").unwrap();
        assert_eq!((q.limit, q.period), (5000, Period::Month));
        assert_eq!(Quota::parse("7/week").unwrap().period, Period::Week);
        assert_eq!(Quota::parse("1/day").unwrap().period, Period::Day);
        assert_eq!(
            Quota::parse("5/2s").unwrap().period,
            Period::Fixed(Duration::from_secs(2))
        );
        for bad in ["5000/fortnight", "0/day", "x/day", "5000", "5/1ms"] {
            let e = Quota::parse(bad).unwrap_err();
            assert!(
                e.contains("expected N/day, N/week, N/month or N/<duration>"),
                "{e}"
            );
        }
    }

    #[test]
    fn calendar_periods_follow_the_robots_time_zone() {
        let sh = TimeZone::get("Asia/Shanghai").unwrap();
        // 2026-03-04 (a Wednesday) 20:00 UTC is Thursday 04:00 in Shanghai.
        let now = utc_ms("2026-03-04T20:00:00Z");
        let day = Quota::parse("1/day").unwrap().bounds(now, &sh);
        assert_eq!(
            day,
            (
                utc_ms("2026-03-04T16:00:00Z"),
                utc_ms("2026-03-05T16:00:00Z")
            )
        );
        let week = Quota::parse("1/week").unwrap().bounds(now, &sh);
        assert_eq!(
            week,
            (
                utc_ms("2026-03-01T16:00:00Z"),
                utc_ms("2026-03-08T16:00:00Z")
            )
        );
        let month = Quota::parse("1/month").unwrap().bounds(now, &sh);
        assert_eq!(
            month,
            (
                utc_ms("2026-02-28T16:00:00Z"),
                utc_ms("2026-03-31T16:00:00Z")
            )
        );
        let fixed = Quota::parse("5/2s").unwrap().bounds(5_001, &sh);
        assert_eq!(fixed, (4_000, 6_000));
    }

    #[test]
    fn the_warning_starts_at_eighty_percent_and_says_when_the_quota_runs_out() {
        let q = Quota::parse("5000/month").unwrap();
        let utc = TimeZone::UTC;
        assert_eq!(q.warning(3_999, None, &utc), None);
        let at = utc_ms("2026-12-24T10:00:00Z");
        assert_eq!(
            q.warning(4_000, Some(at), &utc).unwrap(),
            "⚠ 4 000 of this month's 5 000 sends used; at today's rate the quota runs out on 2026-12-24."
        );
        assert_eq!(
            q.warning(5_000, Some(at), &utc).unwrap(),
            "⚠ 5 000 of this month's 5 000 sends used; the quota is spent."
        );
        assert_eq!(q.describe(), "monthly quota of 5 000");
    }

    #[test]
    fn the_run_out_date_is_the_periods_rate_so_far() {
        // 50 of 100 in the first 10 s of a 100 s period: out at 20 s.
        assert_eq!(runs_out(100, 50, 0, 100_000, 10_000), Some(20_000));
        // 10 of 100 in 50 s: lasts the period.
        assert_eq!(runs_out(100, 10, 0, 100_000, 50_000), None);
        assert_eq!(runs_out(100, 0, 0, 100_000, 50_000), None);
    }
}
