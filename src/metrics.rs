//! `GET /metrics`: Prometheus text format, through the `metrics` crate's Prometheus exporter.
//!
//! The recorder is owned by the running instance, not installed globally, so two daemons in one
//! process (as in the tests) never mix their figures. Counters are incremented where things
//! happen (ingest, the robot tasks); gauges that describe the present (pending alerts, state,
//! sends in the current period, store size) are set when the endpoint is scraped.

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Key, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::provider::Outcome;

const METADATA: Metadata<'static> = Metadata::new("sluice", Level::INFO, Some("sluice::metrics"));

/// The answer classes, for the attempts counter.
pub const CLASSES: [&str; 5] = ["ok", "throttled", "transient", "robot", "message"];

pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("sluice_alerts_per_digest".into()),
                &[
                    1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1_000.0, 10_000.0, 100_000.0,
                ],
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("sluice_delivery_latency_seconds".into()),
                    &[
                        1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1_800.0, 3_600.0, 86_400.0,
                    ],
                )
            })
            .expect("bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let m = Metrics { recorder, handle };
        m.describe();
        Arc::new(m)
    }

    fn describe(&self) {
        let counters = [
            (
                "sluice_alerts_received_total",
                "Alerts acknowledged and queued, per robot",
            ),
            (
                "sluice_alerts_delivered_total",
                "Alerts covered by digests the robot accepted",
            ),
            (
                "sluice_duplicates_dropped_total",
                "Alerts acknowledged but not queued again (repeated dedup key)",
            ),
            (
                "sluice_digests_total",
                "Digests finished, by result (sent, dead)",
            ),
            (
                "sluice_send_attempts_total",
                "Requests to the robot, by answer class",
            ),
            (
                "sluice_throttle_answers_total",
                "Answers saying the robot is rate-limited (130101, 410100, 429)",
            ),
            (
                "sluice_ingest_requests_total",
                "Ingest requests, by endpoint and HTTP status",
            ),
            (
                "sluice_commit_flushes_total",
                "Disk flushes made by the group commit",
            ),
            (
                "sluice_commit_requests_total",
                "Requests made durable by the group commit (divide by flushes for the mean batch)",
            ),
        ];
        for (name, help) in counters {
            self.recorder
                .describe_counter(name.into(), None, help.into());
        }
        let gauges = [
            ("sluice_pending_alerts", "Alerts waiting for a digest", None),
            (
                "sluice_oldest_pending_age_seconds",
                "Age of the oldest pending alert",
                Some(Unit::Seconds),
            ),
            (
                "sluice_robot_state",
                "1 for the robot's current state",
                None,
            ),
            (
                "sluice_sends_in_period",
                "Requests to the robot in the trailing rate_period",
                None,
            ),
            ("sluice_rate_limit", "The robot's rate_limit", None),
            (
                "sluice_quota_used",
                "Sends counted against the robot's quota in the current period",
                None,
            ),
            ("sluice_quota_limit", "The robot's quota per period", None),
            (
                "sluice_quota_period_ends_seconds",
                "When the robot's current quota period ends (Unix seconds)",
                None,
            ),
            (
                "sluice_quota_runs_out_seconds",
                "When the robot's quota runs out at the period's rate so far (Unix seconds; 0: it lasts)",
                None,
            ),
            (
                "sluice_dead_digests",
                "Dead-lettered digests not yet replayed",
                None,
            ),
            (
                "sluice_outbox_digests",
                "Sealed digests not yet delivered",
                None,
            ),
            (
                "sluice_commit_batch_largest",
                "Most requests one flush has made durable",
                None,
            ),
            (
                "sluice_store_size_bytes",
                "Size of the data directory",
                Some(Unit::Bytes),
            ),
            (
                "sluice_store_up",
                "1 while the store takes writes, 0 while a failed store is being reopened",
                None,
            ),
            (
                "sluice_cluster_lane_owned",
                "Cluster mode: 1 while this node holds the robot's (or pool's) lease and sends for it",
                None,
            ),
            (
                "sluice_cluster_nodes_live",
                "Cluster mode: nodes whose heartbeat this node sees",
                None,
            ),
            (
                "sluice_cluster_nats_rtt_seconds",
                "Cluster mode: the last heartbeat write's round trip to NATS",
                Some(Unit::Seconds),
            ),
            (
                "sluice_cluster_nats_up",
                "Cluster mode: 1 while the last ownership round could read and write NATS",
                None,
            ),
        ];
        for (name, help, unit) in gauges {
            self.recorder.describe_gauge(name.into(), unit, help.into());
        }
        self.recorder.describe_histogram(
            "sluice_alerts_per_digest".into(),
            None,
            "Alerts covered by each delivered digest".into(),
        );
        self.recorder.describe_histogram(
            "sluice_delivery_latency_seconds".into(),
            Some(Unit::Seconds),
            "From the oldest alert's arrival to its digest's delivery".into(),
        );
    }

    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        self.recorder
            .register_counter(&key(name, labels), &METADATA)
    }

    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        self.recorder.register_gauge(&key(name, labels), &METADATA)
    }

    pub fn histogram(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
        self.recorder
            .register_histogram(&key(name, labels), &METADATA)
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// One robot's counters, registered once.
    pub fn robot(&self, robot: &str) -> RobotMetrics {
        let r = [("robot", robot)];
        RobotMetrics {
            received: self.counter("sluice_alerts_received_total", &r),
            delivered: self.counter("sluice_alerts_delivered_total", &r),
            duplicates: self.counter("sluice_duplicates_dropped_total", &r),
            sent: self.counter(
                "sluice_digests_total",
                &[("robot", robot), ("result", "sent")],
            ),
            dead: self.counter(
                "sluice_digests_total",
                &[("robot", robot), ("result", "dead")],
            ),
            attempts: CLASSES.map(|c| {
                self.counter(
                    "sluice_send_attempts_total",
                    &[("robot", robot), ("class", c)],
                )
            }),
            throttles: self.counter("sluice_throttle_answers_total", &r),
            per_digest: self.histogram("sluice_alerts_per_digest", &r),
            latency: self.histogram("sluice_delivery_latency_seconds", &r),
        }
    }
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    let labels: Vec<metrics::Label> = labels
        .iter()
        .map(|(k, v)| metrics::Label::new(*k, v.to_string()))
        .collect();
    Key::from_parts(name, labels)
}

/// The counters a robot's task and the ingest path update.
#[derive(Clone)]
pub struct RobotMetrics {
    pub received: Counter,
    pub delivered: Counter,
    pub duplicates: Counter,
    pub sent: Counter,
    pub dead: Counter,
    attempts: [Counter; 5],
    throttles: Counter,
    pub per_digest: Histogram,
    pub latency: Histogram,
}

impl RobotMetrics {
    /// Counts one request to the robot by its answer.
    pub fn attempt(&self, outcome: &Outcome) {
        let i = CLASSES
            .iter()
            .position(|c| *c == outcome.class())
            .expect("every class is listed");
        self.attempts[i].increment(1);
        if matches!(outcome, Outcome::Throttled(..)) {
            self.throttles.increment(1);
        }
    }
}
