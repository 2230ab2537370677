//! One nats-server with JetStream for the backend's tests: R1, a temporary store directory, a
//! free port on 127.0.0.1, killed when dropped. The binary is `$SLUICE_NATS_SERVER`, else
//! `<target>/pyenv/bin/nats-server` (where `.ci/run` installs it), else `nats-server` on the
//! PATH; a test without one is skipped with a line on stderr.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::config::{Cluster, NatsAuth};

pub struct TestServer {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

fn binary() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("SLUICE_NATS_SERVER") {
        candidates.push(PathBuf::from(p));
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(manifest.join(t).join("pyenv/bin/nats-server"));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(t) = exe.ancestors().nth(3)
    {
        candidates.push(t.join("pyenv/bin/nats-server"));
    }
    candidates.push(manifest.join("target/pyenv/bin/nats-server"));
    candidates.push(PathBuf::from("nats-server"));
    candidates.into_iter().find(|p| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

impl TestServer {
    /// A fresh server, or `None` (after saying so) when there is no binary.
    pub async fn start(test: &str) -> Option<TestServer> {
        let Some(bin) = binary() else {
            eprintln!("SKIPPED {test}: no nats-server (set SLUICE_NATS_SERVER or run .ci/run)");
            return None;
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let server = TestServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            _dir: dir,
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Some(server);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("nats-server did not listen on {port} within 2 s");
    }

    /// `[cluster]` for node `node` on this server, R1, with a 30 s lease.
    pub fn cluster(&self, node: &str) -> Cluster {
        Cluster {
            nats: vec![self.url.clone()],
            node: node.to_string(),
            auth: NatsAuth::None,
            replicas: 1,
            lease: Duration::from_secs(30),
            renew: Duration::from_secs(5),
            clock_skew: Duration::from_secs(1),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lanes the conformance tests use: their test store holds them all from the start, as the
/// ownership loop would on a single node.
pub const LANES: &[&str] = &["ops", "dq", "old", "new"];

/// A backend for node `node` on `server` that has taken `lanes`.
pub async fn store(
    server: &TestServer,
    node: &str,
    lanes: &[&str],
) -> std::sync::Arc<super::JetStreamStore> {
    let store = super::JetStreamStore::open(&server.cluster(node), crate::limit::Clock::new())
        .await
        .expect("the backend opens");
    take(&store, lanes).await;
    store
}

/// Takes `lanes` over for `store`'s node, from the record as the leader has it.
pub async fn take(store: &super::JetStreamStore, lanes: &[&str]) {
    for lane in lanes {
        let seen = store
            .records
            .read_leader(lane)
            .await
            .expect("a leader read");
        store
            .records
            .take(lane, seen, 0)
            .await
            .expect("the lane is taken");
    }
}
