//! `[server]`: where sluice listens and keeps its data, and what it takes from clients.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Parsing, parse_duration, parse_size, read_secret_file};

/// The most `server.max_body` may be.
pub const MAX_BODY_LIMIT: u64 = 256 << 20;

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub auth_tokens: Vec<String>,
    pub public_url: Option<String>,
    /// Largest accepted request body, in bytes.
    pub max_body: usize,
    /// Most alerts in one `POST /v1/alerts`.
    pub max_alerts_per_request: usize,
    /// sled's page cache, in bytes.
    pub cache_bytes: u64,
    /// Host names (lowercase, no port) accepted besides the listen address, `localhost` and
    /// `public_url`'s host while sluice listens on loopback (DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// How long a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body.
    pub body_timeout: Duration,
    /// How long an idle keep-alive connection stays open.
    pub keepalive_timeout: Duration,
    /// Most connections open at once; further clients wait in the kernel's backlog.
    pub max_connections: usize,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    listen: Option<String>,
    data_dir: Option<String>,
    #[serde(default)]
    auth_tokens: Vec<String>,
    auth_tokens_file: Option<String>,
    public_url: Option<String>,
    max_body: Option<RawSize>,
    max_alerts_per_request: Option<i64>,
    cache_size: Option<RawSize>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    header_timeout: Option<String>,
    body_timeout: Option<String>,
    keepalive_timeout: Option<String>,
    max_connections: Option<i64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawSize {
    Bytes(u64),
    Text(String),
}

/// Reads and checks `[server]`.
pub(super) fn parse(p: &Parsing, s: &RawServer) -> Result<Server, ConfigError> {
    let listen_text = p
        .expand_opt("server.listen", &s.listen)?
        .unwrap_or_else(|| "127.0.0.1:9780".to_string());
    let listen: SocketAddr = listen_text.parse().map_err(|_| {
        p.fail(format!(
            "server.listen: {listen_text:?} is not an address; expected IP:PORT, e.g. \"127.0.0.1:9780\""
        ))
    })?;
    let data_dir = p
        .expand_opt("server.data_dir", &s.data_dir)?
        .unwrap_or_else(|| "./sluice-data".to_string());
    if data_dir.trim().is_empty() {
        return Err(p.fail("server.data_dir: must not be empty".into()));
    }
    let mut auth_tokens = Vec::new();
    for (i, t) in s.auth_tokens.iter().enumerate() {
        let key = format!("server.auth_tokens[{i}]");
        let t = p.expand(&key, t)?;
        if t.len() < 8 {
            return Err(p.fail(format!("{key}: a token must be at least 8 characters")));
        }
        auth_tokens.push(t);
    }
    if let Some(path) = p.expand_opt("server.auth_tokens_file", &s.auth_tokens_file)? {
        let text = read_secret_file("server.auth_tokens_file", &path, p.base_dir)
            .map_err(|m| p.fail(m))?;
        // One token per line; blank lines and `#` comments are skipped.
        for (n, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if t.len() < 8 {
                return Err(p.fail(format!(
                    "server.auth_tokens_file: line {}: a token must be at least 8 characters",
                    n + 1
                )));
            }
            auth_tokens.push(t.to_string());
        }
    }
    let public_url = p
        .expand_opt("server.public_url", &s.public_url)?
        .filter(|u| !u.is_empty())
        .map(|u| {
            if u.starts_with("http://") || u.starts_with("https://") {
                Ok(u.trim_end_matches('/').to_string())
            } else {
                Err(p.fail(format!(
                    "server.public_url: {u:?} must start with http:// or https://"
                )))
            }
        })
        .transpose()?;
    let size = |key: &str, v: &Option<RawSize>, default: u64| -> Result<u64, ConfigError> {
        match v {
            None => Ok(default),
            Some(RawSize::Bytes(n)) => Ok(*n),
            Some(RawSize::Text(t)) => {
                parse_size(&p.expand(key, t)?).map_err(|m| p.fail(format!("{key}: {m}")))
            }
        }
    };
    let max_body = size("server.max_body", &s.max_body, 1 << 20)?;
    if max_body < 1024 {
        return Err(p.fail("server.max_body: at least 1KiB".into()));
    }
    // One request's alerts are stored as one chunk, which a segment reference addresses
    // with 32 bits; their binary form is at most about 3.3× their JSON (tiny alerts), so
    // this keeps every request storable with a wide margin.
    if max_body > MAX_BODY_LIMIT {
        return Err(p.fail(format!(
            "server.max_body: {max_body} bytes is more than the 256MiB one request may hold; send fewer alerts per request"
        )));
    }
    let cache_bytes = size("server.cache_size", &s.cache_size, 64 << 20)?;
    // A count from 1 to a million.
    let count = |key: &str, v: Option<i64>, default: usize| -> Result<usize, ConfigError> {
        match v {
            None => Ok(default),
            Some(n) if (1..=1_000_000).contains(&n) => Ok(n as usize),
            Some(n) => Err(p.fail(format!("{key}: {n} is out of range; expected 1 to 1000000"))),
        }
    };
    let max_alerts_per_request = count(
        "server.max_alerts_per_request",
        s.max_alerts_per_request,
        10_000,
    )?;

    let mut allowed_hosts = Vec::new();
    for (i, h) in s.allowed_hosts.iter().enumerate() {
        let key = format!("server.allowed_hosts[{i}]");
        let h = p.expand(&key, h)?.trim().to_ascii_lowercase();
        let bare = h.trim_start_matches('[').trim_end_matches(']');
        let name = |h: &str| {
            h.split('.').all(|label| {
                !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
        };
        if bare.parse::<std::net::IpAddr>().is_err() && !name(&h) {
            return Err(p.fail(format!(
                "{key}: {h:?} is not a host name; expected a name or an IP address without scheme, port or path, e.g. \"sluice.internal\""
            )));
        }
        allowed_hosts.push(bare.to_string());
    }
    let server_duration =
        |key: &str, v: &Option<String>, default: Duration| -> Result<Duration, ConfigError> {
            let Some(text) = p.expand_opt(key, v)? else {
                return Ok(default);
            };
            let d = parse_duration(&text).map_err(|m| p.fail(format!("{key}: {m}")))?;
            if d < Duration::from_millis(10) {
                return Err(p.fail(format!("{key}: at least 10ms")));
            }
            Ok(d)
        };
    let header_timeout = server_duration(
        "server.header_timeout",
        &s.header_timeout,
        Duration::from_secs(60),
    )?;
    let body_timeout = server_duration(
        "server.body_timeout",
        &s.body_timeout,
        Duration::from_secs(60),
    )?;
    let keepalive_timeout = server_duration(
        "server.keepalive_timeout",
        &s.keepalive_timeout,
        Duration::from_secs(75),
    )?;
    let max_connections = count("server.max_connections", s.max_connections, 4096)?;

    Ok(Server {
        listen,
        data_dir: PathBuf::from(data_dir),
        auth_tokens,
        public_url,
        max_body: max_body as usize,
        max_alerts_per_request,
        cache_bytes,
        allowed_hosts,
        header_timeout,
        body_timeout,
        keepalive_timeout,
        max_connections,
    })
}
