//! The client side of the CLI: `sluice send` and `sluice status` talk to a running daemon over its
//! HTTP API (the daemon holds the store's lock, so there is no other way in).

use std::time::Duration;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::api;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach sluice at {url} ({detail}); is `sluice serve` running there? Set --server or SLUICE_SERVER"
    )]
    Unreachable { url: String, detail: String },
    #[error("sluice at {url} answered HTTP {status}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{0}")]
    Input(String),
    #[error("spool {}: {source}", dir.display())]
    Spool {
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Largest request `send` builds; well under the daemon's default `max_body` of 1 MiB.
const CHUNK_BYTES: usize = 512 * 1024;
const CHUNK_ALERTS: usize = 2_000;

pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// `server` is `HOST:PORT` or a full `http://` URL.
    pub fn new(server: &str, token: Option<String>) -> Client {
        let base = if server.starts_with("http://") || server.starts_with("https://") {
            server.trim_end_matches('/').to_string()
        } else {
            format!("http://{server}")
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("the HTTP client builds");
        Client { base, token, http }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends `req` and reads its answer as `T` (see [`crate::api`]).
    async fn call_as<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<T, ClientError> {
        let answer = self.call(req, url).await?;
        serde_json::from_value(answer).map_err(|e| ClientError::Refused {
            url: url.to_string(),
            status: 200,
            message: format!("an answer this client cannot read: {e}"),
        })
    }

    async fn call(&self, req: reqwest::RequestBuilder, url: &str) -> Result<Value, ClientError> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await.map_err(|e| ClientError::Unreachable {
            url: url.to_string(),
            detail: crate::error_chain(&e.without_url()),
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| ClientError::Unreachable {
            url: url.to_string(),
            detail: crate::error_chain(&e.without_url()),
        })?;
        if (200..300).contains(&status) {
            Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
        } else {
            let message = match serde_json::from_str::<crate::api::ErrorBody>(&text) {
                Ok(e) => e.error,
                Err(_) => serde_json::from_str::<Value>(&text).map_or(text, |v| v.to_string()),
            };
            Err(ClientError::Refused {
                url: url.to_string(),
                status,
                message,
            })
        }
    }

    /// Posts alerts in chunks; returns every id. On a failure, says how many went before it.
    pub async fn send(&self, alerts: Vec<Value>) -> Result<Vec<String>, ClientError> {
        self.send_keyed(alerts, None).await
    }

    /// Like [`send`](Self::send); with a key, chunk `i` carries `Idempotency-Key: {key}-{i}`, so
    /// sending the same alerts again under the same key (after a timeout, or from the spool)
    /// queues nothing twice.
    pub async fn send_keyed(
        &self,
        alerts: Vec<Value>,
        key: Option<&str>,
    ) -> Result<Vec<String>, ClientError> {
        let url = format!("{}/v1/alerts", self.base);
        let mut chunk_no = 0;
        let total = alerts.len();
        let mut ids = Vec::with_capacity(total);
        let mut chunk: Vec<Value> = Vec::new();
        let mut chunk_bytes = 0;
        let mut items = alerts.into_iter().peekable();
        while let Some(a) = items.next() {
            chunk_bytes += serde_json::to_vec(&a).map_or(0, |v| v.len()) + 1;
            chunk.push(a);
            let full = chunk.len() >= CHUNK_ALERTS || chunk_bytes >= CHUNK_BYTES;
            if full || items.peek().is_none() {
                let body = Value::Array(std::mem::take(&mut chunk));
                chunk_bytes = 0;
                let mut req = self.http.post(&url).json(&body);
                if let Some(k) = key {
                    req = req.header("Idempotency-Key", format!("{k}-{chunk_no}"));
                }
                chunk_no += 1;
                let answer = self.call(req, &url).await.map_err(|e| match e {
                    e if ids.is_empty() => e,
                    ClientError::Refused {
                        url,
                        status,
                        message,
                    } => ClientError::Refused {
                        url,
                        status,
                        message: format!(
                            "{message} (the first {} of {total} alerts were accepted)",
                            ids.len()
                        ),
                    },
                    other => other,
                })?;
                let accepted: crate::api::Accepted =
                    serde_json::from_value(answer).map_err(|e| ClientError::Refused {
                        url: url.clone(),
                        status: 202,
                        message: format!("the answer is not what sluice sends: {e}"),
                    })?;
                ids.extend(accepted.ids);
            }
        }
        Ok(ids)
    }

    pub async fn dead(&self, robot: Option<&str>) -> Result<api::DeadList, ClientError> {
        let url = format!("{}/v1/dead", self.base);
        let mut req = self.http.get(&url);
        if let Some(r) = robot {
            req = req.query(&[("robot", r)]);
        }
        self.call_as(req, &url).await
    }

    pub async fn replay(
        &self,
        robot: Option<&str>,
        id: Option<u64>,
        to: Option<&str>,
    ) -> Result<api::Replayed, ClientError> {
        let url = format!("{}/v1/dead/replay", self.base);
        let body = crate::api::ReplayRequest {
            id,
            robot: robot.map(str::to_string),
            to: to.map(str::to_string),
        };
        self.call_as(self.http.post(&url).json(&body), &url).await
    }

    /// Delivered digests of a robot within `since` ("2h").
    pub async fn delivered(
        &self,
        robot: &str,
        since: &str,
    ) -> Result<api::DigestList, ClientError> {
        let url = format!("{}/v1/digests", self.base);
        let req = self
            .http
            .get(&url)
            .query(&[("robot", robot), ("since", since)]);
        self.call_as(req, &url).await
    }

    pub async fn redeliver(&self, id: u64, to: Option<&str>) -> Result<api::Requeued, ClientError> {
        let url = format!("{}/v1/digests/{id}/redeliver", self.base);
        let body = crate::api::RedeliverRequest {
            to: to.map(str::to_string),
        };
        self.call_as(self.http.post(&url).json(&body), &url).await
    }

    /// Asks the daemon to send one test message to `robot` through its rate guard
    /// (`POST /v1/robots/{robot}/test`); a refusal (no permit, paused) is an error.
    pub async fn test(&self, robot: &str) -> Result<api::TestSent, ClientError> {
        let url = format!("{}/v1/robots/{robot}/test", self.base);
        self.call_as(self.http.post(&url), &url).await
    }

    /// Asks the daemon to read its config file again.
    pub async fn reload(&self) -> Result<api::Reloaded, ClientError> {
        let url = format!("{}/-/reload", self.base);
        self.call_as(self.http.post(&url), &url).await
    }

    /// Moves the queue of a robot removed from the config to robot `to`.
    pub async fn move_queue(&self, robot: &str, to: &str) -> Result<api::QueueMoved, ClientError> {
        let url = format!("{}/v1/queue/move", self.base);
        let body = crate::api::MoveRequest {
            robot: robot.to_string(),
            to: to.to_string(),
        };
        self.call_as(self.http.post(&url).json(&body), &url).await
    }

    pub async fn status(&self) -> Result<api::Status, ClientError> {
        let url = format!("{}/v1/status", self.base);
        self.call_as(self.http.get(&url), &url).await
    }

    /// `GET /v1/status` as the daemon wrote it, every field kept (`sluice status --json`).
    pub async fn status_json(&self) -> Result<Value, ClientError> {
        let url = format!("{}/v1/status", self.base);
        self.call(self.http.get(&url), &url).await
    }
}

/// Alerts `sluice send` could not deliver because the daemon was unreachable, one file per
/// send, named so that they sort in the order they were spooled. Each file keeps its idempotency
/// key, so a send that half got through before is not queued twice when the spool is flushed.
pub struct Spool {
    dir: PathBuf,
}

#[derive(Debug, Default)]
pub struct Flushed {
    pub sends: usize,
    pub alerts: usize,
    /// Sends the daemon refused for good (4xx), moved to `rejected/` with the reason.
    pub rejected: usize,
}

impl Spool {
    pub fn new(dir: PathBuf) -> Spool {
        Spool { dir }
    }

    /// `$XDG_CACHE_HOME/sluice/spool`, else `~/.cache/sluice/spool`.
    pub fn default_dir() -> PathBuf {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        cache.join("sluice").join("spool")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new key, sortable by time: `<ms>-<pid>-<n>`.
    pub fn new_key() -> String {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let ms = crate::unix_ms();
        format!(
            "{ms:013}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Writes alerts under `key` (atomically: a crash leaves the file whole or absent).
    pub fn push(&self, key: &str, alerts: &[Value]) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(format!("{key}.json"));
        let tmp = self.dir.join(format!(".{key}.tmp"));
        std::fs::write(
            &tmp,
            serde_json::to_vec(alerts).map_err(std::io::Error::other)?,
        )?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }

    /// Spooled sends, oldest first: (key, path).
    pub fn entries(&self) -> std::io::Result<Vec<(String, PathBuf)>> {
        let mut out = Vec::new();
        let dir = match std::fs::read_dir(&self.dir) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for entry in dir {
            let path = entry?.path();
            if let Some(key) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            {
                out.push((key.to_string(), path));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Delivers spooled sends in order, each under its own key. Stops, keeping the rest, at the
    /// first that cannot reach the daemon.
    pub async fn flush(&self, client: &Client) -> Result<Flushed, ClientError> {
        let mut done = Flushed::default();
        let io = |source: std::io::Error| ClientError::Spool {
            dir: self.dir.clone(),
            source,
        };
        for (key, path) in self.entries().map_err(io)? {
            let alerts: Vec<Value> = match std::fs::read(&path).map(|b| serde_json::from_slice(&b))
            {
                Ok(Ok(a)) => a,
                _ => {
                    self.reject(&path, "unreadable spool file").map_err(io)?;
                    done.rejected += 1;
                    continue;
                }
            };
            let n = alerts.len();
            match client.send_keyed(alerts, Some(&key)).await {
                Ok(_) => {
                    std::fs::remove_file(&path).map_err(io)?;
                    done.sends += 1;
                    done.alerts += n;
                }
                Err(ClientError::Refused {
                    status, message, ..
                }) if (400..500).contains(&status) && status != 409 => {
                    self.reject(&path, &format!("HTTP {status}: {message}"))
                        .map_err(io)?;
                    done.rejected += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    fn reject(&self, path: &Path, why: &str) -> std::io::Result<()> {
        let dir = self.dir.join("rejected");
        std::fs::create_dir_all(&dir)?;
        let name = path.file_name().unwrap_or_default();
        std::fs::rename(path, dir.join(name))?;
        std::fs::write(dir.join(name).with_extension("reason"), why)
    }
}

/// Reads `sluice send --json` input: one object, an array, or JSON lines. Errors give the line.
pub fn parse_json_input(text: &str) -> Result<Vec<Value>, ClientError> {
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(ClientError::Input("--json input is empty".into()));
    }
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        return match v {
            Value::Array(items) => Ok(items),
            Value::Object(_) => Ok(vec![v]),
            other => Err(ClientError::Input(format!(
                "--json input must be an alert object, an array of them, or one object per line; found {other}"
            ))),
        };
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|e| {
            ClientError::Input(format!(
                "--json input line {}: {} (expected one alert object per line)",
                i + 1,
                e
            ))
        })?;
        if !v.is_object() {
            return Err(ClientError::Input(format!(
                "--json input line {}: expected an alert object",
                i + 1
            )));
        }
        out.push(v);
    }
    Ok(out)
}

/// Builds the alert for `sluice send --title ...`.
pub fn alert_from_flags(
    robot: Option<&str>,
    title: &str,
    text: Option<&str>,
    severity: Option<&str>,
    status: Option<&str>,
    labels: &[(String, String)],
) -> Value {
    let mut a = json!({ "title": title });
    let m = a.as_object_mut().expect("an object");
    if let Some(r) = robot {
        m.insert("robot".into(), json!(r));
    }
    if let Some(t) = text {
        m.insert("text".into(), json!(t));
    }
    if let Some(s) = severity {
        m.insert("severity".into(), json!(s));
    }
    if let Some(s) = status {
        m.insert("status".into(), json!(s));
    }
    if !labels.is_empty() {
        let l: serde_json::Map<String, Value> =
            labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        m.insert("labels".into(), Value::Object(l));
    }
    a
}

/// Prints `sluice dead list` as lines.
pub fn dead_table(answer: &api::DeadList) -> String {
    if answer.dead.is_empty() {
        return "no dead digests\n".to_string();
    }
    let mut out = String::new();
    for d in &answer.dead {
        out.push_str(&format!(
            "#{}  robot {}  {} alerts  {}  — {}\n",
            d.id,
            d.robot,
            d.alerts,
            d.title,
            d.last_error.as_deref().unwrap_or("-"),
        ));
    }
    out
}

/// Prints `sluice status` as a table.
pub fn status_table(status: &api::Status) -> String {
    let mut rows = vec![[
        "ROBOT".to_string(),
        "STATE".into(),
        "PENDING".into(),
        "OUTBOX".into(),
        "SENDS".into(),
        "DELIVERED".into(),
        "DEAD".into(),
        "LAST ERROR".into(),
    ]];
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for r in &status.robots {
        // A robot in trouble says for how long.
        let mut state = r.state.clone();
        if matches!(state.as_str(), "blocked" | "throttled" | "backoff") {
            let now = crate::unix_ms();
            let secs = ((now - r.since_ms).max(0) / 1000) as u64;
            state = format!(
                "{state} {}",
                humantime::format_duration(Duration::from_secs(secs))
            );
        }
        // Cluster mode: which node sends for it.
        match r.owner.as_deref() {
            Some("") => state = "remote (no owner yet)".into(),
            Some(owner) if state == "remote" => state = format!("remote ({owner})"),
            _ => {}
        }
        // A pool's member robot shows under its pool: `oncall/a`.
        let name = match &r.pool {
            Some(pool) => format!("{pool}/{}", r.robot),
            None => r.robot.clone(),
        };
        rows.push([
            name,
            state,
            or_dash(r.pending.map(|p| p.to_string())),
            r.outbox.to_string(),
            format!(
                "{}/{} per {}",
                r.sends_in_period, r.rate_limit, r.rate_period
            ),
            format!("{} in {} digests", r.alerts_delivered, r.digests_sent),
            r.dead.to_string(),
            or_dash(r.last_error.clone()),
        ]);
    }
    // Robots removed from the config whose alerts are still queued.
    for r in &status.unconfigured {
        rows.push([
            r.robot.clone(),
            "removed".into(),
            r.pending.to_string(),
            r.digests.to_string(),
            "-".into(),
            "-".into(),
            "-".into(),
            "not configured: add it back, or `sluice move --robot R --to OTHER`".into(),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, v)| {
                if c == 7 {
                    v.clone()
                } else {
                    format!("{v:<w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if let Some(e) = &status.store.error {
        out.push_str(&format!("store: {e}\n"));
    }
    for f in &status.faults {
        out.push_str(&format!("fault: {f}\n"));
    }
    if let Some(c) = &status.cluster {
        let nats = match (&c.error, c.rtt_ms) {
            (Some(e), _) => format!("NATS: {e}"),
            (None, Some(rtt)) => format!("NATS round trip {rtt:.1} ms"),
            (None, None) => "NATS: not reached yet".into(),
        };
        out.push_str(&format!(
            "cluster: node {}; live nodes: {}; {nats}\n",
            c.node,
            c.live.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table reads the typed answer, and an older daemon's answer (fields missing) too.
    #[test]
    fn status_table_shows_robots_removed_robots_store_and_faults() {
        let status: api::Status = serde_json::from_value(json!({
            "robots": [{"robot": "ops", "state": "idle", "since_ms": 0, "pending": 3,
                        "outbox": 1, "sends_in_period": 2, "rate_limit": 20,
                        "rate_period": "1m", "alerts_delivered": 40, "digests_sent": 2,
                        "dead": 0, "last_error": null}],
            "unconfigured": [{"robot": "old", "pending": 5, "digests": 1, "digest_alerts": 9}],
            "store": {"data_dir": "/d", "error": "reopening"},
            "faults": ["robot dq: task panicked"],
        }))
        .unwrap();
        let table = status_table(&status);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("ROBOT"), "{table}");
        assert!(
            lines[1].contains("ops") && lines[1].contains("2/20 per 1m"),
            "{table}"
        );
        assert!(
            lines[1].contains("40 in 2 digests") && lines[1].ends_with('-'),
            "{table}"
        );
        assert!(
            lines[2].contains("old") && lines[2].contains("removed"),
            "{table}"
        );
        assert_eq!(lines[3], "store: reopening");
        assert_eq!(lines[4], "fault: robot dq: task panicked");
    }

    #[test]
    fn a_pending_count_the_store_cannot_give_is_a_dash() {
        let mut status = api::Status::default();
        status.robots.push(api::RobotEntry {
            robot: "ops".into(),
            state: "waiting".into(),
            ..Default::default()
        });
        let table = status_table(&status);
        let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(&row[..3], &["ops", "waiting", "-"], "{table}");
    }

    #[test]
    fn json_input_takes_objects_arrays_and_lines() {
        assert_eq!(parse_json_input(r#"{"title":"a"}"#).unwrap().len(), 1);
        assert_eq!(
            parse_json_input(r#"[{"title":"a"},{"title":"b"}]"#)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            parse_json_input("{\"title\":\"a\"}\n\n{\"title\":\"b\"}\n")
                .unwrap()
                .len(),
            2
        );
        let err = parse_json_input("{\"title\":\"a\"}\n{oops}\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("--json input line 2:"), "{err}");
        assert!(parse_json_input("  ").is_err());
        assert!(parse_json_input("42").is_err());
    }
}
