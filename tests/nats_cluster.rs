//! The test harness for cluster mode (`support::nats`), and the NATS server facts the cluster
//! design leans on (CLUSTER.md §1, §2.3), checked on a real 3-server JetStream cluster: one CAS
//! winner among racing writers, Msg-Id dedup across a leader kill, and no writes without a quorum.
//! Each test skips, loudly, when there is no nats-server >= 2.11 (`.ci/run` installs one).

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::PublishErrorKind, kv, stream};
use support::nats::{NatsCluster, nats_server_or_skip, parse_version, server_version};

/// A JetStream context whose publish acks time out after `timeout` (the default is 5 s).
fn js_with_timeout(client: async_nats::Client, timeout: Duration) -> jetstream::Context {
    let mut js = jetstream::new(client);
    js.set_timeout(timeout);
    js
}

/// An R3 stream `name` on `name.>`: limits retention, discard new, a 2 min duplicate window.
/// Returns once it has a leader (until then a publish gets "no responders"). A server may still
/// answer "no responders" for a moment after that, until it learns the stream's subjects: a
/// test's first publishes go through [`publish_id_once_routed`]. Creating an R3 stream waits for
/// the three servers to agree on it, which on a loaded machine can outlast the context's request
/// timeout (a clean-clone `.ci/run` failed on "jetstream request timed out"); a timed-out request
/// is asked again, as get-or-create (the first may have made the stream), for up to 30 s.
async fn r3_stream(cluster: &NatsCluster, js: &jetstream::Context, name: &str) -> usize {
    let config = stream::Config {
        name: name.into(),
        subjects: vec![format!("{name}.>")],
        num_replicas: 3,
        discard: stream::DiscardPolicy::New,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(_) => break,
            Err(e)
                if e.kind() == jetstream::context::CreateStreamErrorKind::TimedOut
                    && Instant::now() < deadline =>
            {
                eprintln!("create stream {name}: {e}; asking again");
            }
            Err(e) => panic!("create stream {name}: {e}"),
        }
    }
    wait_leader(cluster, name).await
}

/// Publishes with `Nats-Msg-Id: id` and waits for the ack.
async fn publish_id(
    js: &jetstream::Context,
    subject: &str,
    id: &str,
) -> Result<jetstream::publish::PublishAck, jetstream::context::PublishError> {
    js.send_publish(
        subject.to_string(),
        jetstream::message::PublishMessage::build()
            .payload(id.to_string().into())
            .message_id(id),
    )
    .await?
    .await
}

/// [`publish_id`] for a stream just made: a server that has not yet learnt of the stream's
/// subjects answers "no responders" (async-nats: `StreamNotFound`) even once the stream has a
/// leader, so that one answer is tried again, for up to 10 s. Nothing was stored then, so the
/// retry is not a duplicate; any other error is returned at once.
async fn publish_id_once_routed(
    js: &jetstream::Context,
    subject: &str,
    id: &str,
) -> Result<jetstream::publish::PublishAck, jetstream::context::PublishError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match publish_id(js, subject, id).await {
            Err(e) if e.kind() == PublishErrorKind::StreamNotFound && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            answer => return answer,
        }
    }
}

/// Publishes with the same id until acked or `within` has passed; returns the ack, the attempts
/// and how often each error kind was seen.
async fn publish_until_acked(
    js: &jetstream::Context,
    subject: &str,
    id: &str,
    within: Duration,
) -> (jetstream::publish::PublishAck, u32, BTreeMap<String, usize>) {
    let deadline = Instant::now() + within;
    let mut attempts = 0;
    let mut errors = BTreeMap::new();
    loop {
        attempts += 1;
        match publish_id(js, subject, id).await {
            Ok(ack) => return (ack, attempts, errors),
            Err(e) => {
                *errors.entry(format!("{:?}", e.kind())).or_insert(0) += 1;
                assert!(
                    Instant::now() < deadline,
                    "{id} not acked within {within:?} after {attempts} attempts: {errors:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Every message of the stream, read from its leader, as (Nats-Msg-Id → count); checks that the
/// payload is the id (as [`publish_id`] writes it).
async fn ids_in_stream(js: &jetstream::Context, name: &str) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last_err = String::new();
    while Instant::now() < deadline {
        match read_ids(js, name).await {
            Ok(ids) => return ids,
            Err(e) => last_err = e,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("could not read stream {name} within 20 s: {last_err}");
}

async fn read_ids(js: &jetstream::Context, name: &str) -> Result<BTreeMap<String, usize>, String> {
    let s = js.get_stream(name).await.map_err(|e| e.to_string())?;
    let info = s.get_info().await.map_err(|e| e.to_string())?;
    let mut ids = BTreeMap::new();
    for seq in info.state.first_sequence..=info.state.last_sequence {
        let m = s
            .get_raw_message(seq)
            .await
            .map_err(|e| format!("seq {seq}: {e}"))?;
        let id = m
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        assert_eq!(m.payload, id.as_bytes(), "seq {seq}: payload is not its id");
        *ids.entry(id).or_insert(0) += 1;
    }
    assert_eq!(
        ids.values().sum::<usize>() as u64,
        info.state.messages,
        "stream {name}: sequences read vs state {:?}",
        info.state
    );
    Ok(ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_is_new_enough_and_the_cluster_forms() {
    let Some(server) = nats_server_or_skip("server_is_new_enough_and_the_cluster_forms") else {
        return;
    };
    let out = std::process::Command::new(&server.path)
        .arg("--version")
        .output()
        .expect("run nats-server --version");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let version = parse_version(&text).unwrap_or_else(|| panic!("no version in {text:?}"));
    assert!(version >= (2, 11, 0), "{text:?} is older than 2.11");
    assert_eq!(server_version(&server.path), Some(version));
    assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9, 10)));
    assert_eq!(parse_version("nats-server: v2.12.0-RC.1"), Some((2, 12, 0)));

    let started = Instant::now();
    let cluster = NatsCluster::start_with(server.clone(), 3).await;
    let took = started.elapsed();
    assert_eq!(cluster.version(), version);
    assert_eq!(cluster.urls().len(), 3);
    assert_eq!(cluster.urls_joined(), cluster.urls().join(","));
    let http = reqwest::Client::new();
    for i in 0..3 {
        let varz: serde_json::Value = http
            .get(cluster.monitor_url(i, "/varz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(varz["server_name"], cluster.name(i));
        assert_eq!(
            parse_version(&format!("v{}", varz["version"].as_str().unwrap())),
            Some(version),
            "{varz}"
        );
        let jsz: serde_json::Value = http
            .get(cluster.monitor_url(i, "/jsz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(jsz["meta_cluster"]["cluster_size"], 3, "{jsz}");
    }
    // An R3 stream gets a leader among the three, from the JetStream API.
    let js = jetstream::new(cluster.connect().await);
    let leader = r3_stream(&cluster, &js, "FORM").await;
    assert!(leader < 3);
    eprintln!(
        "nats-server {version:?}: 3-server cluster with a meta leader in {took:?}; FORM led by {}",
        cluster.name(leader)
    );
}

/// Waits (15 s) for stream `name` to have a leader.
async fn wait_leader(cluster: &NatsCluster, name: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(l) = cluster.leader_of_stream(name).await {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "stream {name} has no leader within 15 s\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// CLUSTER.md §0.1: before 2.9.21 two `update(key, v, rev)` with the same `rev` could both
/// succeed on an R3 bucket. Here 16 writers on three connections (one per server) race each
/// round, and exactly one may win. Losers are any error, not only WrongLastRevision (§2.3.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_update_race_on_r3_has_exactly_one_winner() {
    if nats_server_or_skip("kv_update_race_on_r3_has_exactly_one_winner").is_none() {
        return;
    }
    const WRITERS: usize = 16;
    const ROUNDS: usize = 20;
    let cluster = NatsCluster::start(3).await;
    let mut stores = Vec::new();
    for i in 0..3 {
        let client = async_nats::connect(cluster.url(i)).await.expect("connect");
        let js = js_with_timeout(client, Duration::from_secs(10));
        let store = if i == 0 {
            js.create_key_value(kv::Config {
                bucket: "race".into(),
                history: 1,
                num_replicas: 3,
                ..Default::default()
            })
            .await
            .expect("create R3 bucket")
        } else {
            // Under load a server that has not yet caught up with the new bucket lets the
            // lookup time out; retry it like the first puts below.
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match js.get_key_value("race").await {
                    Ok(store) => break store,
                    Err(e) if Instant::now() >= deadline => panic!("bucket via n{}: {e}", i + 1),
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        };
        stores.push(store);
    }
    wait_leader(&cluster, "KV_race").await;
    // A put through each server first: right after the bucket is made, a server that has not yet
    // learnt of it answers "no responders", which would count as a loss below.
    let mut rev = 0;
    for (i, store) in stores.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(10);
        rev = loop {
            match store.put("k", format!("start-{i}").into()).await {
                Ok(rev) => break rev,
                Err(e) if Instant::now() >= deadline => panic!("put through n{}: {e}", i + 1),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
    }
    let mut losses: BTreeMap<String, usize> = BTreeMap::new();
    let started = Instant::now();
    for round in 0..ROUNDS {
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(WRITERS));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = stores[w % 3].clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    let value = format!("r{round}-w{w}");
                    barrier.wait().await;
                    (w, store.update("k", value.into(), rev).await)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            let (w, result) = tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("a writer hung for 30 s")
                .expect("writer task");
            match result {
                Ok(new_rev) => winners.push((w, new_rev)),
                Err(e) => {
                    // `Other` hides the server's code (10164, 10163): keep the text too.
                    let what = match e.kind() {
                        kv::UpdateErrorKind::Other => format!("Other({e})"),
                        kind => format!("{kind:?}"),
                    };
                    *losses.entry(what).or_insert(0) += 1;
                }
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: {} winners for revision {rev}: {winners:?}",
            winners.len()
        );
        let (w, new_rev) = winners[0];
        assert!(
            new_rev > rev,
            "round {round}: revision {new_rev} after {rev}"
        );
        // The leader has the winner's value at the winner's revision (not a follower's Direct Get).
        let last = stores[0]
            .stream
            .get_last_raw_message_by_subject("$KV.race.k")
            .await
            .expect("leader read");
        assert_eq!(last.sequence, new_rev, "round {round}");
        assert_eq!(
            last.payload,
            format!("r{round}-w{w}").as_bytes(),
            "round {round}"
        );
        rev = new_rev;
    }
    let lost: usize = losses.values().sum();
    assert_eq!(lost, ROUNDS * (WRITERS - 1), "{losses:?}");
    eprintln!(
        "kv race: {ROUNDS} rounds x {WRITERS} writers in {:?}, one winner each; losers: {losses:?}",
        started.elapsed()
    );
}

/// CLUSTER.md §1: before 2.11 a Msg-Id could be staged and lost on a leader change, so a retry was
/// answered `duplicate` for a message never stored. Here a publish is in flight when the stream
/// leader is killed; it is retried with the same id until acked. The stream must end with exactly
/// one copy of it and every message acked before the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msg_id_publish_retried_across_a_leader_kill_lands_once() {
    if nats_server_or_skip("msg_id_publish_retried_across_a_leader_kill_lands_once").is_none() {
        return;
    }
    let mut cluster = NatsCluster::start(3).await;
    let js = js_with_timeout(cluster.connect().await, Duration::from_secs(2));
    r3_stream(&cluster, &js, "DEDUP").await;
    let before: Vec<String> = (0..20).map(|i| format!("before-{i}")).collect();
    for id in &before {
        let ack = publish_id_once_routed(&js, "DEDUP.a", id)
            .await
            .expect("publish before the kill");
        assert!(!ack.duplicate, "{id}");
    }
    let leader = wait_leader(&cluster, "DEDUP").await;

    // The publish goes out, then the leader dies before (or while) it answers.
    let in_flight = js
        .send_publish(
            "DEDUP.a",
            jetstream::message::PublishMessage::build()
                .payload("the-one".into())
                .message_id("the-one"),
        )
        .await
        .expect("send");
    cluster.kill(leader);
    let killed = Instant::now();
    let first = in_flight.await;
    let (ack, attempts, errors) = match first {
        Ok(ack) => (ack, 1, BTreeMap::new()),
        Err(e) => {
            let (ack, n, mut errors) =
                publish_until_acked(&js, "DEDUP.a", "the-one", Duration::from_secs(25)).await;
            *errors.entry(format!("{:?} (first)", e.kind())).or_insert(0) += 1;
            (ack, n + 1, errors)
        }
    };
    let stall = killed.elapsed();
    // Once more after the ack (retried too: the new leader may still be settling): the dedup
    // window answers it as a duplicate of the same sequence.
    let (again, _, _) =
        publish_until_acked(&js, "DEDUP.a", "the-one", Duration::from_secs(10)).await;
    assert!(again.duplicate, "repeat was stored again: {again:?}");
    assert_eq!(again.sequence, ack.sequence, "{again:?} vs {ack:?}");

    let ids = ids_in_stream(&js, "DEDUP").await;
    assert_eq!(ids.get("the-one"), Some(&1), "{ids:?}");
    for id in &before {
        assert_eq!(ids.get(id), Some(&1), "{id} acked before the kill: {ids:?}");
    }
    assert_eq!(ids.len(), before.len() + 1, "{ids:?}");
    let new_leader = wait_leader(&cluster, "DEDUP").await;
    assert_ne!(new_leader, leader);

    // The killed server comes back on its old store and catches up with the one new message.
    let t = Instant::now();
    cluster.restart(leader).await;
    let want = (before.len() + 1) as u64;
    wait_local_messages(&cluster, leader, "DEDUP", want).await;
    eprintln!(
        "dedup: leader {} killed; acked {stall:?} later after {attempts} attempts \
         (ack duplicate={}), errors {errors:?}; new leader {}; the restarted server had all {want} \
         in {:?}",
        cluster.name(leader),
        ack.duplicate,
        cluster.name(new_leader),
        t.elapsed()
    );
}

/// Messages in the replica of stream `name` on server `i`, from its `/jsz` (not the leader's).
async fn local_messages(cluster: &NatsCluster, i: usize, name: &str) -> Option<u64> {
    let url = cluster.monitor_url(i, "/jsz?accounts=true&streams=true");
    let jsz: serde_json::Value = reqwest::get(url).await.ok()?.json().await.ok()?;
    jsz["account_details"]
        .as_array()?
        .iter()
        .filter_map(|a| a["stream_detail"].as_array())
        .flatten()
        .find(|s| s["name"] == name)?["state"]["messages"]
        .as_u64()
}

/// Waits (20 s) until server `i`'s replica of `name` holds `want` messages.
async fn wait_local_messages(cluster: &NatsCluster, i: usize, name: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = local_messages(cluster, i, name).await;
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}'s replica of {name} has {got:?} messages, not {want}, after 20 s\n{}",
            cluster.name(i),
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A stream leader paused with SIGSTOP (a long GC pause, a frozen VM) is replaced, publishing
/// goes on, and after SIGCONT the old leader rejoins as a follower with every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_is_replaced_and_rejoins_after_cont() {
    if nats_server_or_skip("a_paused_leader_is_replaced_and_rejoins_after_cont").is_none() {
        return;
    }
    let mut cluster = NatsCluster::start(3).await;
    let js = js_with_timeout(cluster.connect().await, Duration::from_secs(2));
    r3_stream(&cluster, &js, "PAUSE").await;
    publish_id_once_routed(&js, "PAUSE.a", "before")
        .await
        .expect("publish");
    let leader = wait_leader(&cluster, "PAUSE").await;
    let other = (0..3).find(|&i| i != leader).unwrap();
    // A client of a server that keeps running: the paused one would hold its client's requests.
    let js = js_with_timeout(
        async_nats::connect(cluster.url(other))
            .await
            .expect("connect"),
        Duration::from_secs(2),
    );
    cluster.stop(leader);
    assert!(
        cluster.is_running(leader),
        "a paused server is still running"
    );
    let t = Instant::now();
    let (ack, attempts, errors) =
        publish_until_acked(&js, "PAUSE.a", "paused", Duration::from_secs(25)).await;
    let stall = t.elapsed();
    assert!(!ack.duplicate);
    // Only a new leader can ack, and followers wait out missed heartbeats before electing one.
    assert!(
        stall >= Duration::from_secs(1),
        "acked {stall:?} after {} was paused: it was not leading",
        cluster.name(leader)
    );
    let new_leader = wait_leader(&cluster, "PAUSE").await;
    assert_ne!(new_leader, leader, "the paused server still leads");
    cluster.cont(leader);
    wait_local_messages(&cluster, leader, "PAUSE", 2).await;
    let ids = ids_in_stream(&js, "PAUSE").await;
    assert_eq!(
        ids,
        BTreeMap::from([("before".to_string(), 1), ("paused".to_string(), 1)])
    );
    eprintln!(
        "pause: leader {} stopped; acked {stall:?} later after {attempts} attempts, errors \
         {errors:?}; new leader {}",
        cluster.name(leader),
        cluster.name(new_leader)
    );
}

/// CLUSTER.md §6.6: with 2 of 3 servers gone there is no quorum, so a publish fails (in bounded
/// time, not hanging); with one back it works again and nothing acked before is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_quorum_refuses_publishes_and_recovers_with_acked_data_intact() {
    if nats_server_or_skip("no_quorum_refuses_publishes_and_recovers_with_acked_data_intact")
        .is_none()
    {
        return;
    }
    let mut cluster = NatsCluster::start(3).await;
    let js = js_with_timeout(cluster.connect().await, Duration::from_secs(2));
    r3_stream(&cluster, &js, "QUORUM").await;
    let before: Vec<String> = (0..10).map(|i| format!("before-{i}")).collect();
    for id in &before {
        publish_id_once_routed(&js, "QUORUM.a", id)
            .await
            .expect("publish with quorum");
    }
    let leader = wait_leader(&cluster, "QUORUM").await;
    let other = (0..3).find(|&i| i != leader).unwrap();
    let survivor = (0..3).find(|&i| i != leader && i != other).unwrap();
    cluster.kill(leader);
    cluster.kill(other);
    assert!(cluster.is_running(survivor) && !cluster.is_running(leader));

    // A client of the survivor alone (the shared one would first have to notice its server died).
    let lone = js_with_timeout(
        async_nats::connect(cluster.url(survivor))
            .await
            .expect("connect"),
        Duration::from_secs(2),
    );
    let t = Instant::now();
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        publish_id(&lone, "QUORUM.a", "during"),
    )
    .await
    .expect("a publish without quorum hung for 10 s");
    let to_fail = t.elapsed();
    let kind = match refused {
        Ok(ack) => panic!("acked without a quorum: {ack:?}"),
        Err(e) => e.kind(),
    };
    assert!(
        matches!(
            kind,
            PublishErrorKind::TimedOut | PublishErrorKind::StreamNotFound
        ),
        "{kind:?}"
    );

    let t = Instant::now();
    cluster.restart(other).await;
    assert!(cluster.is_running(other));
    // The same id as the refused publish: whether or not that one is applied later, one copy.
    let (_, attempts, errors) =
        publish_until_acked(&lone, "QUORUM.a", "during", Duration::from_secs(30)).await;
    let to_recover = t.elapsed();
    let ids = ids_in_stream(&lone, "QUORUM").await;
    assert_eq!(ids.get("during"), Some(&1), "{ids:?}");
    for id in &before {
        assert_eq!(ids.get(id), Some(&1), "{id} acked with quorum: {ids:?}");
    }
    assert_eq!(ids.len(), before.len() + 1, "{ids:?}");
    eprintln!(
        "no quorum: publish failed with {kind:?} after {to_fail:?}; after restarting {} acked in \
         {to_recover:?} ({attempts} attempts, errors {errors:?})",
        cluster.name(other)
    );
}
