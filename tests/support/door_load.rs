//! Load through a front door, the same for every platform: a burst from concurrent clients, and
//! clients posting while a child daemon is killed with `kill -9` and restarted. A [`Door`] says
//! how one platform's client posts a message and what its success answer is; the tests then
//! check what the platform's fake received.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::daemon::ChildDaemon;

/// How a platform's client posts one message to sluice's front door at an address.
#[derive(Clone)]
pub struct Door {
    /// The door's URL at `addr` (`127.0.0.1:PORT`), signed afresh where the platform signs
    /// in the query.
    pub url: Arc<dyn Fn(&str) -> String + Send + Sync>,
    /// The message whose title is `title`, signed afresh where the platform signs in the body.
    pub body: Arc<dyn Fn(&str) -> Value + Send + Sync>,
    /// The platform's success answer, exactly.
    pub success: Value,
}

impl Door {
    /// Posts one message; true when sluice answered the platform's success body (with HTTP
    /// 200: a success body with any other status fails the test).
    pub async fn post_ok(&self, http: &reqwest::Client, addr: &str, title: &str) -> bool {
        let Ok(r) = http
            .post((self.url)(addr))
            .json(&(self.body)(title))
            .send()
            .await
        else {
            return false;
        };
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        let ok = body == self.success;
        assert!(
            !ok || status == 200,
            "success body with HTTP {status}: {body}"
        );
        ok
    }
}

/// `clients` concurrent clients post `each` messages one after another, every one of which
/// must be acknowledged; returns their titles (`burst c<client> #<n>`).
pub async fn burst(door: &Door, addr: &str, clients: usize, each: usize) -> BTreeSet<String> {
    let http = reqwest::Client::new();
    let mut senders = Vec::new();
    for c in 0..clients {
        let (http, addr, door) = (http.clone(), addr.to_string(), door.clone());
        senders.push(tokio::spawn(async move {
            let mut titles = Vec::new();
            for i in 0..each {
                let title = format!("burst c{c} #{i}");
                assert!(
                    door.post_ok(&http, &addr, &title).await,
                    "{title} was refused"
                );
                titles.push(title);
            }
            titles
        }));
    }
    let mut posted = BTreeSet::new();
    for s in senders {
        posted.extend(s.await.unwrap());
    }
    assert_eq!(posted.len(), clients * each);
    posted
}

/// `senders` clients post as fast as they are answered while `d` is killed with `kill -9` after
/// each of `pauses` and restarted at once; returns the titles sluice acknowledged. Bounded: at
/// most 1 000 attempts per client, 30 s in all.
pub async fn post_through_kills(
    door: &Door,
    d: &mut ChildDaemon,
    senders: usize,
    pauses: &[Duration],
) -> BTreeSet<String> {
    let addr = d.addr.to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..senders {
        let (stop, addr, door) = (stop.clone(), addr.clone(), door.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(1))
                .build()
                .unwrap();
            let mut acked = Vec::new();
            let started = Instant::now();
            for i in 0..1000 {
                if stop.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(30) {
                    break;
                }
                let title = format!("crash c{c} #{i}");
                if door.post_ok(&http, &addr, &title).await {
                    acked.push(title);
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            acked
        }));
    }
    for &pause in pauses {
        tokio::time::sleep(pause).await;
        d.kill9();
        d.restart();
        d.wait_healthy().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = BTreeSet::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    acked
}

/// The uneven moments at which the kill tests kill the daemon, one after another.
pub const KILL_PAUSES: [Duration; 4] = [
    Duration::from_millis(800),
    Duration::from_millis(400),
    Duration::from_millis(1100),
    Duration::from_millis(250),
];

/// Waits until the daemon's first robot has nothing pending (panics after 30 s).
pub async fn wait_drained(d: &ChildDaemon) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = d.status().await;
        if s["robots"][0]["pending"] == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "still pending: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fails the test, naming them, when any acknowledged title is not among the delivered ones.
pub fn assert_none_lost(acked: &BTreeSet<String>, delivered: &[String]) {
    let delivered: BTreeSet<&String> = delivered.iter().collect();
    let lost: Vec<&String> = acked.iter().filter(|t| !delivered.contains(t)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged never delivered: {lost:?}",
        lost.len(),
        acked.len()
    );
}
