//! The web console's pages, rendered on the server: templates, their filters, the two assets,
//! and the send timeline's geometry. The handlers that fill them are in `http/ui.rs`.
//!
//! Safety rests on three rules, each tested (tests/console.rs):
//! 1. **Everything is escaped.** Templates are named `*.html`, so minijinja escapes every value
//!    for HTML; the only `|safe` is a digest's markdown, and that HTML comes from
//!    [`markdown::to_html`], which turns raw HTML into text and allows only http, https and
//!    dingtalk links.
//! 2. **No inline script or style, nothing from elsewhere.** Pages load `/ui/app.css` and
//!    `/ui/app.js` from the binary; gauges are `<meter>` and SVG geometry attributes. The
//!    Content-Security-Policy (`http/ui.rs`) forbids anything else.
//! 3. **Every page works without script.** Buttons are forms that post and are redirected
//!    back (post/redirect/get); `app.js` adds only auto refresh, a confirm and a CSP counter.

pub mod markdown;

use std::sync::OnceLock;

use minijinja::{Environment, Value};

/// The stylesheet and the script, served from the binary.
pub const APP_CSS: &str = include_str!("assets/app.css");
pub const APP_JS: &str = include_str!("assets/app.js");

/// An ETag for an asset: its length and a hash of its bytes (FNV-1a, enough to tell versions
/// apart).
pub fn etag(body: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    format!("\"{:x}-{h:016x}\"", body.len())
}

const TEMPLATES: [(&str, &str); 9] = [
    ("base.html", include_str!("templates/base.html")),
    ("overview.html", include_str!("templates/overview.html")),
    ("robot.html", include_str!("templates/robot.html")),
    (
        "digest_rows.html",
        include_str!("templates/digest_rows.html"),
    ),
    ("digests.html", include_str!("templates/digests.html")),
    ("digest.html", include_str!("templates/digest.html")),
    ("dead.html", include_str!("templates/dead.html")),
    ("login.html", include_str!("templates/login.html")),
    ("error.html", include_str!("templates/error.html")),
];

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("console template {name}: {e}"));
        }
        env.add_filter("time", time);
        env.add_filter("age", age);
        env.add_filter("bytes", bytes);
        env.add_filter("urlencode", |s: String| percent(&s));
        env
    })
}

/// Renders page `name` with `ctx`; a template error is a bug, reported as the page's text.
pub fn render(name: &str, ctx: Value) -> Result<String, String> {
    let t = env().get_template(name).map_err(|e| e.to_string())?;
    t.render(ctx)
        .map_err(|e| format!("console page {name}: {}", crate::error_chain(&e)))
}

/// Unix ms as `2026-12-02 21:03:04 UTC`; nothing for a missing time.
fn time(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return "–".into();
    };
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => ms.to_string(),
    }
}

/// A span of ms, humanely and short: `3m 4s`.
fn age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

/// `s` for a URL's path segment or query value: everything but unreserved characters escaped.
pub fn percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut v, mut u) = (n as f64, 0);
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The send timeline of a robot page: one tick per send over the last rate period, and bars
/// counting the sends in the rolling period ending at each send, against the limit line.
#[derive(Debug, serde::Serialize)]
pub struct Timeline {
    pub width: i64,
    pub height: i64,
    pub left: i64,
    pub right: i64,
    pub base: i64,
    pub limit_y: i64,
    pub ticks: Vec<i64>,
    pub counts: Vec<Bar>,
}

#[derive(Debug, serde::Serialize)]
pub struct Bar {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
}

impl Timeline {
    /// `sends`: Unix ms of the sends in the rate log (any order); `period_ms` the axis.
    pub fn new(sends: &[i64], now: i64, period_ms: i64, limit: u32) -> Timeline {
        let (width, height, left, right, top, base) = (720, 150, 10, 710, 16, 120);
        let period_ms = period_ms.max(1);
        let scale_y = |n: i64| base - (base - top) * n / i64::from(limit.max(1)).max(n).max(1);
        let x_of = |t: i64| {
            left + (right - left) * (t - (now - period_ms)).clamp(0, period_ms) / period_ms
        };
        let mut sorted: Vec<i64> = sends.to_vec();
        sorted.sort_unstable();
        let shown: Vec<i64> = sorted
            .iter()
            .copied()
            .filter(|&t| t > now - period_ms)
            .collect();
        let counts = shown
            .iter()
            .map(|&t| {
                let n = sorted
                    .iter()
                    .filter(|&&s| s > t - period_ms && s <= t)
                    .count() as i64;
                let y = scale_y(n);
                Bar {
                    x: x_of(t) - 1,
                    y,
                    w: 3,
                    h: base - y,
                }
            })
            .collect();
        Timeline {
            width,
            height,
            left,
            right,
            base,
            limit_y: scale_y(i64::from(limit)),
            ticks: shown.iter().map(|&t| x_of(t)).collect(),
            counts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses_and_the_filters_read_well() {
        for (name, _) in TEMPLATES {
            env().get_template(name).unwrap();
        }
        assert_eq!(time(Some(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(None), "–");
        assert_eq!(age(185_000), "3m 5s");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_ne!(etag("a"), etag("b"));
    }

    #[test]
    fn the_timeline_has_a_tick_per_send_in_the_period_and_the_limit_above_them() {
        let now = 1_000_000;
        let sends: Vec<i64> = (0..20)
            .map(|i| now - 59_000 + i * 1000)
            .chain([now - 120_000])
            .collect();
        let t = Timeline::new(&sends, now, 60_000, 20);
        assert_eq!(t.ticks.len(), 20);
        assert!(t.ticks.iter().all(|&x| (t.left..=t.right).contains(&x)));
        // The 20th send in the period reaches the limit line, not past it.
        assert_eq!(t.counts.last().unwrap().y, t.limit_y);
    }
}
