//! `[cluster]`: several sluice nodes sharing one queue and one budget per robot through NATS
//! JetStream. Without the table nothing changes: one node, the embedded store.
//!
//! The lease timings are checked against every robot's `request_timeout`, because safety rests
//! on them: an owner starts a POST only while its lease has more than `request_timeout` plus
//! twice `clock_skew` left, so a contender that takes a robot over once the lease stopped moving
//! can never overlap a send still in flight (see `store/jetstream/lease.rs`).

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Parsing, parse_duration, read_secret_file};

#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// NATS server URLs (`nats://host:port` or `tls://host:port`), any of which may be down.
    pub nats: Vec<String>,
    /// This node's name, unique in the cluster: it is what status shows as a robot's owner.
    pub node: String,
    pub auth: NatsAuth,
    /// Copies JetStream keeps of every alert and control record (1, 3 or 5).
    pub replicas: usize,
    /// How long an owner's lease lasts without a renewal: a robot whose control record has not
    /// moved for this long (on the contender's own clock) is taken over.
    pub lease: Duration,
    /// How often an owner renews its leases.
    pub renew: Duration,
    /// How far the nodes' wall clocks may disagree: added to every send the robot's log shows
    /// when another node reads it.
    pub clock_skew: Duration,
}

impl Cluster {
    /// The server URLs as they may be printed: any `user:password@` in them as `***@`.
    pub fn servers_redacted(&self) -> String {
        self.nats
            .iter()
            .map(|u| match (u.find("://"), u.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    format!("{}***{}", &u[..scheme + 3], &u[at..])
                }
                _ => u.clone(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// How sluice proves itself to NATS. Secrets are never printed (`Debug` hides them).
#[derive(Clone, PartialEq)]
pub enum NatsAuth {
    None,
    Token(String),
    /// A `.creds` file (JWT and NKey seed), as `nsc` writes it; its path.
    Credentials(std::path::PathBuf),
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsAuth::None => f.write_str("None"),
            NatsAuth::Token(_) => f.write_str("Token(<hidden>)"),
            NatsAuth::Credentials(p) => write!(f, "Credentials({})", p.display()),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    #[serde(default)]
    nats: Vec<String>,
    node: Option<String>,
    token: Option<String>,
    token_file: Option<String>,
    credentials: Option<String>,
    replicas: Option<i64>,
    lease: Option<String>,
    renew: Option<String>,
    clock_skew: Option<String>,
}

/// Reads and checks `[cluster]`. `request_timeouts` are every robot's `(name, request_timeout)`,
/// which the lease must outlast.
pub(super) fn parse(
    p: &Parsing,
    c: &RawCluster,
    request_timeouts: &[(String, Duration)],
) -> Result<Cluster, ConfigError> {
    if c.nats.is_empty() {
        return Err(p.fail(
            "cluster.nats: expected at least one NATS server URL, e.g. [\"nats://127.0.0.1:4222\"]"
                .into(),
        ));
    }
    let mut nats = Vec::new();
    for (i, u) in c.nats.iter().enumerate() {
        let key = format!("cluster.nats[{i}]");
        let u = p.expand(&key, u)?;
        let rest = u
            .strip_prefix("nats://")
            .or_else(|| u.strip_prefix("tls://"))
            .ok_or_else(|| {
                p.fail(format!(
                    "{key}: {u:?} must start with nats:// or tls://, e.g. \"nats://127.0.0.1:4222\""
                ))
            })?;
        let host_port = rest.rsplit('@').next().unwrap_or(rest);
        if host_port.is_empty() || !host_port.contains(':') {
            return Err(p.fail(format!(
                "{key}: {u:?} has no host:port, e.g. \"nats://127.0.0.1:4222\""
            )));
        }
        nats.push(u);
    }
    let node = p.expand_opt("cluster.node", &c.node)?.ok_or_else(|| {
        p.fail(
            "cluster.node: missing; expected this node's name, e.g. \"n1\", unique in the cluster"
                .into(),
        )
    })?;
    if node.is_empty()
        || node.len() > 64
        || !node
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
    {
        return Err(p.fail(format!(
            "cluster.node: {node:?}: expected 1 to 64 letters, digits, '-' or '_'"
        )));
    }
    let token = p.expand_opt("cluster.token", &c.token)?;
    let token_file = p.expand_opt("cluster.token_file", &c.token_file)?;
    let credentials = p.expand_opt("cluster.credentials", &c.credentials)?;
    let auth = match (token, token_file, credentials) {
        (None, None, None) => NatsAuth::None,
        (Some(t), None, None) => NatsAuth::Token(non_empty_token("cluster.token", t, p)?),
        (None, Some(path), None) => {
            let t =
                read_secret_file("cluster.token_file", &path, p.base_dir).map_err(|m| p.fail(m))?;
            NatsAuth::Token(non_empty_token(
                "cluster.token_file",
                t.trim().to_string(),
                p,
            )?)
        }
        (None, None, Some(path)) => {
            let full = p.base_dir.join(&path);
            if !full.is_file() {
                return Err(p.fail(format!(
                    "cluster.credentials: {} is not a file; expected a NATS .creds file",
                    full.display()
                )));
            }
            NatsAuth::Credentials(full)
        }
        _ => {
            return Err(p.fail(
                "cluster: give one of token, token_file and credentials, not several".into(),
            ));
        }
    };
    let replicas = match c.replicas {
        None => 3,
        Some(n @ (1 | 3 | 5)) => n as usize,
        Some(n) => {
            return Err(p.fail(format!(
                "cluster.replicas: {n}: expected 1, 3 or 5 (a quorum needs an odd number)"
            )));
        }
    };
    let duration = |key: &str, v: &Option<String>, default: Duration| match v {
        None => Ok(default),
        Some(t) => parse_duration(&p.expand(key, t)?).map_err(|m| p.fail(format!("{key}: {m}"))),
    };
    let lease = duration("cluster.lease", &c.lease, Duration::from_secs(20))?;
    let renew = duration("cluster.renew", &c.renew, Duration::from_secs(2))?;
    let clock_skew = duration("cluster.clock_skew", &c.clock_skew, Duration::from_secs(1))?;
    if renew.is_zero() || renew * 3 > lease {
        return Err(p.fail(format!(
            "cluster.renew: {} must be more than 0 and at most a third of cluster.lease ({})",
            humantime::format_duration(renew),
            humantime::format_duration(lease)
        )));
    }
    for (robot, timeout) in request_timeouts {
        let needed = *timeout + clock_skew * 2 + renew;
        if lease < needed {
            return Err(p.fail(format!(
                "cluster.lease: {} is too short for robots.{robot}.request_timeout ({}): an owner must be able to finish a send within its lease; expected at least {} (request_timeout + 2 × clock_skew + renew)",
                humantime::format_duration(lease),
                humantime::format_duration(*timeout),
                humantime::format_duration(needed)
            )));
        }
    }
    Ok(Cluster {
        nats,
        node,
        auth,
        replicas,
        lease,
        renew,
        clock_skew,
    })
}

fn non_empty_token(key: &str, t: String, p: &Parsing) -> Result<String, ConfigError> {
    if t.is_empty() {
        return Err(p.fail(format!("{key}: the token is empty")));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn parse(cluster: &str) -> Result<Config, String> {
        let text = format!(
            "[robots.ops]\nprovider = \"console\"\nrequest_timeout = \"5s\"\n[cluster]\n{cluster}"
        );
        Config::parse(&text, "t.toml", &|name| {
            (name == "NATS_TOKEN").then(|| "s3cret".to_string())
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_cluster_table_with_defaults() {
        let c = parse("nats = [\"nats://127.0.0.1:4222\", \"nats://127.0.0.1:4223\"]\nnode = \"n1\"\ntoken = \"${NATS_TOKEN}\"\n")
            .unwrap()
            .cluster
            .unwrap();
        assert_eq!(c.nats.len(), 2);
        assert_eq!(c.node, "n1");
        assert_eq!(c.auth, super::NatsAuth::Token("s3cret".into()));
        assert_eq!(format!("{:?}", c.auth), "Token(<hidden>)");
        assert_eq!(
            (c.replicas, c.lease.as_secs(), c.renew.as_secs()),
            (3, 20, 2)
        );
        assert_eq!(
            c.servers_redacted(),
            "nats://127.0.0.1:4222,nats://127.0.0.1:4223"
        );
    }

    #[test]
    fn passwords_in_server_urls_are_not_printed() {
        let table = "nats = [\"nats://sluice:pa55@10.0.0.1:4222\", \"tls://10.0.0.2:4222\"]\nnode = \"n1\"\n";
        let c = parse(table).unwrap().cluster.unwrap();
        assert_eq!(
            c.servers_redacted(),
            "nats://***@10.0.0.1:4222,tls://10.0.0.2:4222"
        );
    }

    #[test]
    fn no_cluster_table_is_single_node() {
        let c = Config::parse("[robots.ops]\nprovider = \"console\"\n", "t", &|_| None).unwrap();
        assert!(c.cluster.is_none());
    }

    #[test]
    fn each_mistake_names_its_key() {
        let cases = [
            ("node = \"n1\"\n", "cluster.nats: expected at least one"),
            (
                "nats = [\"127.0.0.1:4222\"]\nnode = \"n1\"\n",
                "cluster.nats[0]: \"127.0.0.1:4222\" must start with nats://",
            ),
            (
                "nats = [\"nats://127.0.0.1:4222\"]\n",
                "cluster.node: missing",
            ),
            (
                "nats = [\"nats://127.0.0.1:4222\"]\nnode = \"n 1\"\n",
                "cluster.node: \"n 1\": expected",
            ),
            (
                "nats = [\"nats://127.0.0.1:4222\"]\nnode = \"n1\"\nreplicas = 2\n",
                "cluster.replicas: 2: expected 1, 3 or 5",
            ),
            (
                "nats = [\"nats://127.0.0.1:4222\"]\nnode = \"n1\"\ntoken = \"a\"\ntoken_file = \"b\"\n",
                "not several",
            ),
            (
                "nats = [\"nats://127.0.0.1:4222\"]\nnode = \"n1\"\nrenew = \"10s\"\n",
                "cluster.renew: 10s must be",
            ),
            (
                "nats = [\"nats://127.0.0.1:4222\"]\nnode = \"n1\"\nlease = \"6s\"\n",
                "cluster.lease: 6s is too short for robots.ops.request_timeout (5s)",
            ),
            (
                "nats = [\"nats://127.0.0.1:4222\"]\nnode = \"n1\"\ncredentials = \"/nonexistent.creds\"\n",
                "cluster.credentials: /nonexistent.creds is not a file",
            ),
            (
                "nats = [\"nats://127.0.0.1:4222\"]\nnode = \"n1\"\nquorum = 2\n",
                "unknown field `quorum`",
            ),
        ];
        for (table, expected) in cases {
            let e = parse(table).unwrap_err();
            assert!(e.contains(expected), "{table}: {e}");
        }
    }
}
