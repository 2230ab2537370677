//! The cluster backend: the queue and every lane's state in NATS JetStream, replicated by its
//! Raft groups, so that any node takes alerts and any node can die without losing one that was
//! acknowledged. Chosen by `[cluster]`; single-node mode keeps the embedded store.
//!
//! ```text
//! SLUICE_ALERTS  stream, subjects sluice.a.<lane key>, R = cluster.replicas, discard New,
//!                no max_age (a full stream refuses: a 503, never a silent drop)
//!                one message per alert; its stream sequence is the alert's sequence
//! sluice_robot   KV  <lane key> → control::Control   owner, epoch, cursor, outbox, send logs,
//!                                                    quotas; changed only by CAS
//! sluice_digest  KV  <id>       → DigestRecord       digests delivered, dead or replayed
//! sluice_req     KV  <key hash> → an Idempotency-Key's claim and answer
//! sluice_dedup   KV  <lane key>.<key hash> → a dedup key's first alert
//! sluice_node    KV  <node>     → a heartbeat; max_age = the lease: the live nodes
//! ```
//!
//! The server must be NATS ≥ 2.11: before it, concurrent compare-and-swap on a clustered stream
//! could let two writers win, and a message id could be taken for a duplicate of a message never
//! stored after a leader change (CLUSTER.md §1). [`connect`] refuses an older server.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};

use crate::config::{Cluster, NatsAuth};
use crate::limit::Clock;
use crate::store::Health;

mod backend;
#[cfg(test)]
mod backend_tests;
pub mod control;
mod digests;
pub mod lease;
pub mod owner;
mod queue;
mod scan;
#[cfg(test)]
pub(crate) mod testserver;

/// The cluster backend of [`crate::store::Store`] (its trait impl is in `backend.rs`): one per
/// node, over one connection.
pub struct JetStreamStore {
    pub nats: Nats,
    /// The control records this node holds (its leases).
    pub records: Arc<control::Records>,
    pub lease: lease::Lease,
    pub clock: Clock,
    /// Which lane holds each configured robot's queue and send log ([`Lanes`]), from the
    /// config; the supervisor sets it at start and at every reload.
    lanes: RwLock<Lanes>,
    health: Arc<Health>,
}

/// The configured lanes, as the store needs them.
#[derive(Debug, Clone, Default)]
pub struct Lanes {
    /// Robot (a lane, or a pool's member) → its lane (itself, or its pool).
    pub lane_of: HashMap<String, String>,
    /// Lane → the longest `request_timeout` among its members: a send may start only while the
    /// lease outlasts it ([`lease::Lease::may_send`]).
    pub request_timeout: HashMap<String, Duration>,
}

impl JetStreamStore {
    /// Connects ([`connect`]) and opens the backend for node `cluster.node`.
    pub async fn open(
        cluster: &Cluster,
        clock: Clock,
    ) -> Result<Arc<JetStreamStore>, ConnectError> {
        let nats = connect(cluster).await?;
        let records = Arc::new(control::Records::new(
            nats.robots.clone(),
            cluster.node.clone(),
            Duration::from_secs(10),
        ));
        Ok(Arc::new(JetStreamStore {
            nats,
            records,
            lease: lease::Lease {
                lease: cluster.lease,
                renew: cluster.renew,
                clock_skew: cluster.clock_skew,
            },
            clock,
            lanes: RwLock::new(Lanes::default()),
            health: Arc::new(Health::default()),
        }))
    }

    /// Sets the configured lanes (at start and at every reload).
    pub fn set_lanes(&self, lanes: Lanes) {
        *self.lanes.write().expect("lanes lock") = lanes;
    }

    /// The lane that holds `robot`'s queue and send log: its pool's, or its own.
    pub fn lane_of(&self, robot: &str) -> String {
        let lanes = self.lanes.read().expect("lanes lock");
        lanes
            .lane_of
            .get(robot)
            .cloned()
            .unwrap_or_else(|| robot.to_string())
    }

    /// The longest `request_timeout` of `lane`'s members (10 s, the default, if unknown).
    pub fn request_timeout(&self, lane: &str) -> Duration {
        let lanes = self.lanes.read().expect("lanes lock");
        lanes
            .request_timeout
            .get(lane)
            .copied()
            .unwrap_or(Duration::from_secs(10))
    }

    pub fn health_cell(&self) -> &Arc<Health> {
        &self.health
    }
}

/// The stream of alerts.
pub const ALERTS: &str = "SLUICE_ALERTS";
/// The subject of a lane's alerts.
pub fn subject(lane: &str) -> String {
    format!("sluice.a.{}", control::key(lane))
}

/// Core NATS subjects (not stored) on which an ingest tells a lane's owner that it has new
/// alerts: `sluice.wake.<lane key>`.
pub const WAKE_PREFIX: &str = "sluice.wake.";

/// The oldest NATS server cluster mode accepts.
pub const MIN_SERVER: (u64, u64) = (2, 11);

/// How long JetStream remembers a message id: a retried publish within it is taken once. Longer
/// than an abandoned Idempotency-Key claim lasts, so a client's retry after one is still
/// recognised.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);

/// A connection to the cluster and its objects.
#[derive(Clone)]
pub struct Nats {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub alerts: stream::Stream,
    pub robots: kv::Store,
    pub digests: kv::Store,
    pub requests: kv::Store,
    pub dedup: kv::Store,
    pub nodes: kv::Store,
}

/// Why cluster mode cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cluster: cannot connect to NATS at {urls}: {why}")]
    Connect { urls: String, why: String },
    #[error(
        "cluster: the NATS server at {url} is {version}; cluster mode needs 2.11 or later (older servers can let two nodes win the same compare-and-swap)"
    )]
    TooOld { url: String, version: String },
    #[error("cluster: JetStream {what}: {why}")]
    JetStream { what: String, why: String },
}

/// `major.minor` of a server version such as `2.15.1` or `v2.11.0-RC.1`.
pub fn parse_version(v: &str) -> Option<(u64, u64)> {
    let v = v.trim().trim_start_matches('v');
    let mut parts = v.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Connects to the cluster, checks the server's version and JetStream, and makes sure the
/// stream and buckets exist as sluice needs them.
pub async fn connect(c: &Cluster) -> Result<Nats, ConnectError> {
    let urls = c.servers_redacted();
    let connect_err = |why: String| ConnectError::Connect {
        urls: urls.clone(),
        why,
    };
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("sluice {}", c.node))
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(10)))
        .retry_on_initial_connect();
    match &c.auth {
        NatsAuth::None => {}
        NatsAuth::Token(t) => options = options.token(t.clone()),
        NatsAuth::Credentials(path) => {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| connect_err(format!("{}: {e}", path.display())))?;
        }
    }
    let client = tokio::time::timeout(Duration::from_secs(30), options.connect(c.nats.as_slice()))
        .await
        .map_err(|_| connect_err("no server answered in 30 s".into()))?
        .map_err(|e| connect_err(e.to_string()))?;
    // With `retry_on_initial_connect`, `connect` returns before the connection is up, and
    // async-nats reports the state `Connected` a moment before it publishes the server's first
    // INFO: wait for that INFO itself (reading it too early gave an empty version, refused as
    // too old).
    let up = async {
        loop {
            if client.connection_state() == async_nats::connection::State::Connected
                && let Some(info) = client.try_server_info()
            {
                return info;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let info = tokio::time::timeout(Duration::from_secs(30), up)
        .await
        .map_err(|_| connect_err("no server answered in 30 s".into()))?;
    match parse_version(&info.version) {
        Some(v) if v >= MIN_SERVER => {}
        _ => {
            return Err(ConnectError::TooOld {
                url: format!("{}:{}", info.host, info.port),
                version: info.version.clone(),
            });
        }
    }
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(15))
        .build(client.clone());
    let js_err = |what: &str, why: String| ConnectError::JetStream {
        what: what.to_string(),
        why,
    };
    // The meta leader may still be elected when sluice starts with the servers.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match js.query_account().await {
            Ok(_) => break,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::info!("cluster: waiting for JetStream ({e})");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(js_err("is not available", e.to_string())),
        }
    }
    let replicas = c.replicas;
    let alerts_config = stream::Config {
        name: ALERTS.to_string(),
        subjects: vec!["sluice.a.*".to_string()],
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::New,
        max_age: Duration::ZERO,
        num_replicas: replicas,
        duplicate_window: DUPLICATE_WINDOW,
        allow_direct: true,
        storage: stream::StorageType::File,
        ..Default::default()
    };
    // Right after the servers start, a request may time out while a leader is elected: each
    // object is asked for again until the same deadline.
    let alerts = loop {
        match js.get_or_create_stream(alerts_config.clone()).await {
            Ok(s) => break s,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::info!("cluster: waiting for stream {ALERTS} ({e})");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(js_err(&format!("stream {ALERTS}"), e.to_string())),
        }
    };
    check_alerts(&alerts.cached_info().config).map_err(|why| js_err(ALERTS, why))?;
    let bucket = |name: &str, history: i64, max_age: Duration| kv::Config {
        bucket: name.to_string(),
        history,
        max_age,
        num_replicas: replicas,
        storage: stream::StorageType::File,
        max_value_size: 1 << 20,
        ..Default::default()
    };
    let open = |config: kv::Config| {
        let js = js.clone();
        async move {
            let name = config.bucket.clone();
            loop {
                let opened = match js.get_key_value(&name).await {
                    Ok(s) => Ok(s),
                    Err(_) => js
                        .create_key_value(config.clone())
                        .await
                        .map_err(|e| e.to_string()),
                };
                match opened {
                    Ok(s) => return Ok(s),
                    Err(e) if tokio::time::Instant::now() < deadline => {
                        tracing::info!("cluster: waiting for bucket {name} ({e})");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => return Err(js_err(&format!("bucket {name}"), e)),
                }
            }
        }
    };
    let robots = open(bucket(control::BUCKET, 5, Duration::ZERO)).await?;
    let digests = open(bucket("sluice_digest", 1, Duration::ZERO)).await?;
    let requests = open(bucket("sluice_req", 1, Duration::ZERO)).await?;
    let dedup = open(bucket("sluice_dedup", 1, Duration::ZERO)).await?;
    // The heartbeats' max_age is the lease: a changed `cluster.lease` must reach the bucket
    // another node created with the old one.
    let nodes_config = bucket("sluice_node", 1, c.lease);
    let nodes = loop {
        match js.create_or_update_key_value(nodes_config.clone()).await {
            Ok(s) => break s,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::info!("cluster: waiting for bucket sluice_node ({e})");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(js_err("bucket sluice_node", e.to_string())),
        }
    };
    Ok(Nats {
        client,
        js,
        alerts,
        robots,
        digests,
        requests,
        dedup,
        nodes,
    })
}

/// An existing alert stream must not drop what it holds: sluice refuses one that would (set up
/// by hand, or by an older release with other settings).
fn check_alerts(c: &stream::Config) -> Result<(), String> {
    if c.discard != stream::DiscardPolicy::New {
        return Err(
            "its discard policy is Old: a full stream would drop acknowledged alerts; expected New"
                .into(),
        );
    }
    if !c.max_age.is_zero() || c.max_messages_per_subject > 0 {
        return Err(
            "it has a max_age or max_msgs_per_subject: it would drop acknowledged alerts; expected neither"
                .into(),
        );
    }
    if c.retention != stream::RetentionPolicy::Limits {
        return Err("its retention is not Limits: expected Limits".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_before_2_11_are_refused() {
        assert_eq!(parse_version("2.15.1"), Some((2, 15)));
        assert_eq!(parse_version("v2.11.0-RC.1"), Some((2, 11)));
        assert!(parse_version("2.10.29").unwrap() < MIN_SERVER);
        assert!(parse_version("2.9.10").unwrap() < MIN_SERVER);
        assert!(parse_version("3.0.0").unwrap() >= MIN_SERVER);
        assert_eq!(parse_version("nonsense"), None);
    }

    #[test]
    fn a_stream_that_could_drop_alerts_is_refused() {
        let good = stream::Config {
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        };
        assert!(check_alerts(&good).is_ok());
        let old = stream::Config::default();
        assert!(
            check_alerts(&old)
                .unwrap_err()
                .contains("discard policy is Old")
        );
        let aging = stream::Config {
            max_age: Duration::from_secs(60),
            ..good.clone()
        };
        assert!(check_alerts(&aging).is_err());
    }
}
