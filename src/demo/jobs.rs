//! The simulated batch jobs of `sluice demo`: a night of data-quality checks over a warehouse,
//! failing in bursts.
//!
//! Twelve jobs, each owning a few tables and checks, run several times over about two simulated
//! minutes; while a job runs it posts its failed checks to sluice in small arrays, about once a
//! simulated second (the way a shell step would call `sluice send --json`). The first runs all
//! start at once and are the biggest, as when an upstream load breaks and every check downstream
//! of it fails. The numbers are seeded, so two demos tell the same story.
//! A check keeps the same title from run to run and only its text changes, so repeats merge
//! into one digest line `×N`, as they would in production.

use std::time::Duration;

use serde_json::{Value, json};

/// A xorshift generator: reproducible and no crate needed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.next_u64() % (hi - lo)
        }
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

#[derive(Clone, Copy)]
enum Check {
    NullRate(&'static str),
    DuplicateKey(&'static str),
    RowCount,
    Freshness,
    Range(&'static str, &'static str),
    Orphan(&'static str, &'static str),
    Schema(&'static str),
}

pub struct Job {
    pub name: &'static str,
    owner: &'static str,
    /// How noisy the job is, relative to the others.
    weight: u64,
    checks: &'static [(&'static str, Check)],
}

use Check::*;

pub const JOBS: &[Job] = &[
    Job {
        name: "dq_orders",
        owner: "alice",
        weight: 5,
        checks: &[
            ("dw.orders_di", NullRate("user_id")),
            ("dw.orders_di", DuplicateKey("order_id")),
            ("dw.orders_di", RowCount),
            ("dw.order_items_di", Orphan("order_id", "dw.orders_di")),
            ("dw.order_items_di", Range("quantity", "below 1")),
        ],
    },
    Job {
        name: "dq_users",
        owner: "bob",
        weight: 3,
        checks: &[
            ("dim.users_df", DuplicateKey("user_id")),
            ("dim.users_df", NullRate("mobile")),
            ("ods.user_events_hi", Freshness),
            ("ods.user_events_hi", RowCount),
        ],
    },
    Job {
        name: "dq_payments",
        owner: "carol",
        weight: 4,
        checks: &[
            ("ods.payments_hi", NullRate("pay_channel")),
            ("ods.payments_hi", Range("amount", "below 0")),
            ("ods.payments_hi", Freshness),
            (
                "dw.refunds_di",
                Range("refund_amount", "above the paid amount"),
            ),
            ("dw.refunds_di", Orphan("payment_id", "ods.payments_hi")),
        ],
    },
    Job {
        name: "dq_inventory",
        owner: "dave",
        weight: 2,
        checks: &[
            ("dw.inventory_snapshot_df", Range("stock_qty", "below 0")),
            ("dw.inventory_snapshot_df", RowCount),
            ("dim.sku_df", DuplicateKey("sku_id")),
            ("dim.sku_df", Schema("new column `pack_size` (int)")),
        ],
    },
    Job {
        name: "dq_logistics",
        owner: "erin",
        weight: 3,
        checks: &[
            ("dw.shipments_di", Freshness),
            ("dw.shipments_di", NullRate("carrier_code")),
            ("ods.tracking_events_hi", RowCount),
            ("ods.tracking_events_hi", DuplicateKey("event_id")),
        ],
    },
    Job {
        name: "dq_marketing",
        owner: "frank",
        weight: 2,
        checks: &[
            ("ads.campaign_daily_df", NullRate("campaign_id")),
            ("ads.campaign_daily_df", Range("ctr", "above 100%")),
            (
                "ods.clickstream_hi",
                Schema("new column `utm_content` (string)"),
            ),
            ("ods.clickstream_hi", RowCount),
        ],
    },
    Job {
        name: "dq_finance",
        owner: "grace",
        weight: 3,
        checks: &[
            ("ads.gmv_daily_df", RowCount),
            ("ads.gmv_daily_df", Range("gmv", "below 0")),
            ("dw.settlement_di", Freshness),
            (
                "dw.settlement_di",
                Orphan("merchant_id", "dim.merchants_df"),
            ),
        ],
    },
    Job {
        name: "dq_risk",
        owner: "heidi",
        weight: 2,
        checks: &[
            ("dw.risk_scores_di", NullRate("score")),
            ("dw.risk_scores_di", Range("score", "outside 0..1")),
            ("ods.device_fingerprint_hi", DuplicateKey("device_id")),
        ],
    },
    Job {
        name: "dq_search",
        owner: "ivan",
        weight: 2,
        checks: &[
            ("dw.search_queries_di", RowCount),
            ("dw.search_queries_di", NullRate("query_text")),
            (
                "dim.category_df",
                Schema("`level` changed from int to bigint"),
            ),
        ],
    },
    Job {
        name: "dq_supply",
        owner: "judy",
        weight: 2,
        checks: &[
            (
                "dw.purchase_orders_di",
                Orphan("supplier_id", "dim.supplier_df"),
            ),
            ("dw.purchase_orders_di", Freshness),
            ("dim.supplier_df", DuplicateKey("supplier_id")),
        ],
    },
    Job {
        name: "dq_service",
        owner: "kim",
        weight: 1,
        checks: &[
            ("dw.tickets_di", NullRate("agent_id")),
            ("dw.tickets_di", Freshness),
        ],
    },
    Job {
        name: "dq_ads",
        owner: "leo",
        weight: 3,
        checks: &[
            ("ods.ad_impressions_hi", RowCount),
            ("ods.ad_impressions_hi", DuplicateKey("impression_id")),
            (
                "ads.ad_spend_daily_df",
                Range("spend", "above the daily budget"),
            ),
        ],
    },
];

/// How often a running job posts what its latest checks found (simulated time), and the least
/// real time between two of its posts, so that a high speed does not turn the demo into a load
/// test.
const POST_EVERY: Duration = Duration::from_secs(1);
const MIN_REAL_GAP: Duration = Duration::from_millis(25);

/// One run of a job: from `at`, for `duration` (simulated), it posts `alerts` in small batches as
/// its checks finish.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub at: Duration,
    pub duration: Duration,
    pub alerts: u64,
}

impl Run {
    /// Each POST of the run at `speed`: when (real time since the demo started) and how many
    /// alerts it carries. The counts add up to `alerts`.
    pub fn posts(&self, speed: f64, rng: &mut Rng) -> Vec<(Duration, u64)> {
        let gap = POST_EVERY.div_f64(speed).max(MIN_REAL_GAP);
        let fit = self.duration.div_f64(speed).as_nanos() / gap.as_nanos();
        let n = (fit as u64).clamp(1, self.alerts.max(1));
        let weights: Vec<u64> = (0..n).map(|_| rng.range(1, 5)).collect();
        let start = self.at.div_f64(speed);
        split(self.alerts, &weights)
            .into_iter()
            .enumerate()
            .filter(|(_, alerts)| *alerts > 0)
            .map(|(i, alerts)| (start + gap * i as u32, alerts))
            .collect()
    }
}

/// What one job will do: its robot and its runs, in time order.
pub struct JobPlan {
    pub job: &'static Job,
    pub robot: usize,
    pub runs: Vec<Run>,
    pub seed: u64,
}

impl JobPlan {
    /// When its last run ends (simulated).
    pub fn end(&self) -> Duration {
        self.runs
            .last()
            .map_or(Duration::ZERO, |r| r.at + r.duration)
    }
}

/// Splits `total` into parts proportional to `weights` (the remainder goes to the first parts).
fn split(total: u64, weights: &[u64]) -> Vec<u64> {
    let sum: u64 = weights.iter().sum::<u64>().max(1);
    let mut parts: Vec<u64> = weights
        .iter()
        .map(|w| (u128::from(total) * u128::from(*w) / u128::from(sum)) as u64)
        .collect();
    // Less than one per part is left over.
    let left = total - parts.iter().sum::<u64>();
    for p in parts.iter_mut().take(left as usize) {
        *p += 1;
    }
    parts
}

/// The night's schedule: `total` alerts from every job, job `j` reporting to robot `j % robots`.
/// Each job runs 3 to 6 times over about two simulated minutes; the first runs all start within
/// 8 s and are the big ones (the upstream load broke and everything downstream failed).
pub fn plan(total: u64, robots: usize) -> Vec<JobPlan> {
    let weights: Vec<u64> = JOBS.iter().map(|j| j.weight).collect();
    let shares = split(total, &weights);
    JOBS.iter()
        .zip(shares)
        .enumerate()
        .map(|(j, (job, share))| {
            let seed = 0x5eed_0000 + j as u64;
            let mut rng = Rng::new(seed);
            let n = rng.range(3, 7) as usize;
            let mut sizes: Vec<u64> = (0..n).map(|_| rng.range(1, 5)).collect();
            sizes[0] += 6;
            let mut at = Duration::from_millis(rng.range(0, 8_000));
            let mut runs = Vec::new();
            for alerts in split(share, &sizes) {
                let duration = Duration::from_millis(rng.range(5_000, 15_000));
                if alerts > 0 {
                    runs.push(Run {
                        at,
                        duration,
                        alerts,
                    });
                }
                at += duration + Duration::from_millis(rng.range(3_000, 12_000));
            }
            JobPlan {
                job,
                robot: j % robots.max(1),
                runs,
                seed,
            }
        })
        .collect()
}

/// The alerts of one post: `n` failed checks of `job`, for `robot`, about partitions of `day` ("2026-11-28").
pub fn failed_checks(job: &Job, robot: &str, day: &str, n: u64, rng: &mut Rng) -> Vec<Value> {
    (0..n)
        .map(|_| {
            let (table, check) = job.checks[rng.range(0, job.checks.len() as u64) as usize];
            let partition = format!("dt={day}/hour={:02}", rng.range(0, 24));
            alert(job, robot, table, check, &partition, rng)
        })
        .collect()
}

fn alert(
    job: &Job,
    robot: &str,
    table: &str,
    check: Check,
    partition: &str,
    rng: &mut Rng,
) -> Value {
    let n = |rng: &mut Rng, lo: u64, hi: u64| crate::digest::thousands(rng.range(lo, hi));
    let rows = rng.range(20_000, 5_000_000);
    let mut status = "firing";
    let (kind, title, severity, text) = match check {
        NullRate(col) => {
            let pct = rng.range(12, 400) as f64 / 10.0;
            let nulls = (rows as f64 * pct / 100.0) as u64;
            (
                "null_rate",
                format!("{table}: null {col} above 1%"),
                if pct >= 20.0 { "critical" } else { "error" },
                format!(
                    "{} of {} rows ({pct:.1}%) in {partition} have a null {col}",
                    crate::digest::thousands(nulls),
                    crate::digest::thousands(rows)
                ),
            )
        }
        DuplicateKey(col) => (
            "duplicate_key",
            format!("{table}: duplicate {col}"),
            "error",
            format!(
                "{} duplicate keys in {partition}, e.g. {col} = {}",
                n(rng, 2, 900),
                rng.range(10_000_000, 99_999_999)
            ),
        ),
        RowCount => {
            let drop = rng.range(30, 95);
            (
                "row_count",
                format!("{table}: row count below the 7-day median"),
                if drop >= 60 { "error" } else { "warning" },
                format!(
                    "{} rows in {partition}, median {} (−{drop}%)",
                    crate::digest::thousands(rows * (100 - drop) / 100),
                    crate::digest::thousands(rows)
                ),
            )
        }
        Freshness => {
            let late = rng.range(10, 90);
            let text = if rng.chance(25) {
                status = "resolved";
                format!("{partition} landed {late} min late")
            } else {
                format!("{partition} expected by 03:00, not there {late} min later")
            };
            (
                "freshness",
                format!("{table}: partition late"),
                "warning",
                text,
            )
        }
        Range(col, rule) => (
            "range",
            format!("{table}: {col} {rule}"),
            "warning",
            format!("{} rows in {partition}", n(rng, 1, 5_000)),
        ),
        Orphan(col, parent) => (
            "referential",
            format!("{table}: {col} missing from {parent}"),
            "error",
            format!(
                "{} of {} rows in {partition} point nowhere",
                n(rng, 1, 20_000),
                crate::digest::thousands(rows)
            ),
        ),
        Schema(change) => (
            "schema",
            format!("{table}: schema changed"),
            "info",
            format!("{change}, first seen in {partition}"),
        ),
    };
    json!({
        "robot": robot,
        "title": title,
        "text": text,
        "severity": severity,
        "status": status,
        "source": "nightly-dq",
        "labels": {"job": job.name, "table": table, "check": kind, "owner": job.owner},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_posts_exactly_the_alerts_asked_for_in_time_order() {
        for (total, robots, speed) in [
            (1, 1, 10.0),
            (5, 3, 1.0),
            (300, 2, 60.0),
            (5_000, 2, 10.0),
            (12_345, 10, 600.0),
        ] {
            let plan = plan(total, robots);
            let mut rng = Rng::new(7);
            let mut sent = 0;
            for p in &plan {
                assert!(p.robot < robots);
                assert!(p.runs.windows(2).all(|w| w[0].at + w[0].duration < w[1].at));
                let posts: Vec<(Duration, u64)> = p
                    .runs
                    .iter()
                    .flat_map(|r| r.posts(speed, &mut rng))
                    .collect();
                assert!(posts.windows(2).all(|w| w[0].0 < w[1].0), "{posts:?}");
                assert!(posts.iter().all(|(_, n)| *n > 0));
                sent += posts.iter().map(|(_, n)| n).sum::<u64>();
            }
            assert_eq!(sent, total, "{total} alerts to {robots} robots");
        }
    }

    #[test]
    fn alerts_are_valid_for_sluice() {
        let mut rng = Rng::new(1);
        for job in JOBS {
            for a in failed_checks(job, "r", "2026-11-28", 20, &mut rng) {
                let parsed = crate::alert::parse_value(a.clone(), 0);
                assert!(parsed.is_ok(), "{a}: {:?}", parsed.err());
            }
        }
    }
}
