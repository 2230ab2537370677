//! Times as a digest shows them, in the robot's time zone: the time range, the catch-up line,
//! and the `HH:MM` (`MM-DD HH:MM`) of entries.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;

/// Formats times in the digest's time zone.
pub(crate) struct Clock<'a> {
    pub(crate) tz: &'a TimeZone,
    /// The local day of the digest's first time: a time on it is shown without its date.
    pub(crate) ref_day: Option<Date>,
}

/// Out-of-range milliseconds are clamped rather than refused: a time is shown, not validated.
fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

impl Clock<'_> {
    pub(crate) fn civil(&self, ms: i64) -> DateTime {
        self.tz.to_datetime(timestamp(ms))
    }

    /// The zone abbreviation at `ms` (jiff's `%Z`, e.g. `CST`), or the offset if it has none.
    fn zone(&self, ms: i64) -> String {
        let zdt = timestamp(ms).to_zoned_datetime(self.tz.clone());
        jiff::fmt::strtime::format("%Z", &zdt)
            .unwrap_or_else(|_| self.tz.to_offset(timestamp(ms)).to_string())
    }

    /// `2026-11-28 10:00:31 CST`
    pub(crate) fn full(&self, ms: i64) -> String {
        let mut s = String::with_capacity(32);
        push_date_time(&mut s, self.civil(ms), true);
        s.push(' ');
        s.push_str(&self.zone(ms));
        s
    }

    /// `2026-11-28 10:00 CST`
    pub(crate) fn full_minutes(&self, ms: i64) -> String {
        let mut s = String::with_capacity(32);
        push_date_time(&mut s, self.civil(ms), false);
        s.push(' ');
        s.push_str(&self.zone(ms));
        s
    }

    /// `2026-11-28 10:00:31 – 10:05:02 CST`: the date once when both are on one day, the zone
    /// once when both have the same abbreviation.
    pub(crate) fn range(&self, from: i64, to: i64) -> String {
        let (a, b) = (self.civil(from), self.civil(to));
        let (za, zb) = (self.zone(from), self.zone(to));
        let mut s = String::with_capacity(48);
        push_date_time(&mut s, a, true);
        if from.div_euclid(1000) == to.div_euclid(1000) {
            s.push(' ');
            s.push_str(&zb);
            return s;
        }
        if za != zb {
            s.push(' ');
            s.push_str(&za);
        }
        s.push_str(" – ");
        if a.date() == b.date() {
            push_clock(&mut s, b, true);
        } else {
            push_date_time(&mut s, b, true);
        }
        s.push(' ');
        s.push_str(&zb);
        s
    }

    /// `⏪ Catch-up: the robot was unavailable 10:00 – 10:42 CST; these alerts arrived
    /// 10:00:31 – 10:42:10 CST.` Dates (`MM-DD`) are added to the times when any of them is not
    /// on the digest's first day.
    pub(crate) fn catch_up(&self, since: i64, until: i64, arrived: Option<(i64, i64)>) -> String {
        let mut times = vec![since, until];
        times.extend(arrived.iter().flat_map(|&(a, b)| [a, b]));
        let dated = times
            .iter()
            .any(|&ms| Some(self.civil(ms).date()) != self.ref_day);
        let mut s = String::from("⏪ Catch-up: the robot was unavailable ");
        self.push_span(&mut s, since, until, false, dated);
        match arrived {
            Some((a, b)) if a.div_euclid(1000) == b.div_euclid(1000) => {
                s.push_str("; these alerts arrived ");
                self.push_at(&mut s, a, true, dated);
                s.push(' ');
                s.push_str(&self.zone(a));
            }
            Some((a, b)) => {
                s.push_str("; these alerts arrived ");
                self.push_span(&mut s, a, b, true, dated);
            }
            None => {}
        }
        s.push('.');
        s
    }

    fn push_at(&self, s: &mut String, ms: i64, seconds: bool, dated: bool) {
        let dt = self.civil(ms);
        if dated {
            push_month_day(s, dt);
            s.push(' ');
        }
        push_clock(s, dt, seconds);
    }

    fn push_span(&self, s: &mut String, a: i64, b: i64, seconds: bool, dated: bool) {
        let (za, zb) = (self.zone(a), self.zone(b));
        self.push_at(s, a, seconds, dated);
        if za != zb {
            s.push(' ');
            s.push_str(&za);
        }
        s.push_str(" – ");
        self.push_at(s, b, seconds, dated);
        s.push(' ');
        s.push_str(&zb);
    }

    /// A time on its own: `HH:MM` on the digest's first day, else `MM-DD HH:MM`.
    pub(crate) fn short_alone(&self, ms: i64) -> String {
        let dt = self.civil(ms);
        short_time(dt, Some(dt.date()) == self.ref_day)
    }
}

/// `HH:MM`, or `MM-DD HH:MM` when the day is not implied.
pub(crate) fn short_time(dt: DateTime, same_day: bool) -> String {
    let mut s = String::with_capacity(11);
    if !same_day {
        push_month_day(&mut s, dt);
        s.push(' ');
    }
    push_clock(&mut s, dt, false);
    s
}

fn push_two(s: &mut String, n: i8) {
    s.push(char::from(b'0' + (n / 10) as u8));
    s.push(char::from(b'0' + (n % 10) as u8));
}

fn push_month_day(s: &mut String, dt: DateTime) {
    push_two(s, dt.month());
    s.push('-');
    push_two(s, dt.day());
}

fn push_clock(s: &mut String, dt: DateTime, seconds: bool) {
    push_two(s, dt.hour());
    s.push(':');
    push_two(s, dt.minute());
    if seconds {
        s.push(':');
        push_two(s, dt.second());
    }
}

fn push_date_time(s: &mut String, dt: DateTime, seconds: bool) {
    use std::fmt::Write;
    let _ = write!(s, "{:04}-", dt.year());
    push_month_day(s, dt);
    s.push(' ');
    push_clock(s, dt, seconds);
}
