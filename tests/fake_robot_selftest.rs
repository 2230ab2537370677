//! Self-tests of the fake DingTalk robot in `support::fake_robot`: each
//! DingTalk behaviour the fake claims to reproduce is checked over real HTTP
//! on 127.0.0.1, so that tests of sluice built on it can be trusted.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::fake_robot::{
    ERR_MISSING_JSON, ERR_OK, ERR_SECURITY, ERR_SEND_TOO_FAST, ERR_TOKEN_NOT_EXIST, ERR_TOO_LONG,
    FakeRobot, Fault, Limits, MSG_INVALID_TIMESTAMP, MSG_KEYWORDS, MSG_SIGN_NOT_MATCH, Request,
    decode_query_value, encode_query_value, max_in_window_of, sign, unix_ms,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "SEC0123456789abcdef";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("reqwest client")
}

fn markdown(title: &str, text: &str) -> Value {
    json!({ "msgtype": "markdown", "markdown": { "title": title, "text": text } })
}

/// POSTs `body` as JSON and returns the HTTP status and the parsed answer.
async fn post(url: &str, body: &Value) -> (u16, Value) {
    let response = client()
        .post(url)
        .json(body)
        .send()
        .await
        .expect("request failed");
    let status = response.status().as_u16();
    let answer = response.json::<Value>().await.expect("answer is not JSON");
    (status, answer)
}

/// POSTs `body` and returns `(errcode, errmsg)`, asserting HTTP 200.
async fn send(url: &str, body: &Value) -> (i64, String) {
    let (status, answer) = post(url, body).await;
    assert_eq!(status, 200, "answer {answer}");
    let errcode = answer["errcode"].as_i64().expect("errcode");
    let errmsg = answer["errmsg"].as_str().expect("errmsg").to_owned();
    (errcode, errmsg)
}

async fn errcode(url: &str, body: &Value) -> i64 {
    send(url, body).await.0
}

/// A robot with `limits`, one unsigned token "t" without keywords.
async fn plain_robot(limits: Limits) -> FakeRobot {
    let fake = FakeRobot::start(limits).await;
    fake.add_robot("t", None, &[]);
    fake
}

/// Writes raw bytes to the fake and returns everything it answers.
async fn raw_exchange(fake: &FakeRobot, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(fake.addr()).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("fake did not close the connection")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn signing_matches_known_vectors() {
    assert_eq!(
        sign("secret", 1_700_000_000_000),
        "OuzzJR5+xZ4/EYwqtNt6sMYZQMTa/HEGvc9miJe7XzY="
    );
    assert_eq!(
        sign("SEC000000000000000000000", 1_700_000_000_000),
        "1zJ/w34EOSVAYr7cu7Vo8LnebmK2/GrCgegtr8mQrqM="
    );
}

#[test]
fn query_values_round_trip_and_plus_means_space() {
    let sig = "OuzzJR5+xZ4/EYwqtNt6sMYZQMTa/HEGvc9miJe7XzY=";
    let encoded = encode_query_value(sig);
    assert_eq!(
        encoded,
        "OuzzJR5%2BxZ4%2FEYwqtNt6sMYZQMTa%2FHEGvc9miJe7XzY%3D"
    );
    assert_eq!(decode_query_value(&encoded), sig);
    assert_eq!(decode_query_value("a+b%2Bc"), "a b+c");
    assert_eq!(decode_query_value("%zz%4"), "%zz%4");
    // Encoded twice, a client's sign no longer decodes to the signature.
    assert_ne!(decode_query_value(&encode_query_value(&encoded)), sig);
}

#[test]
fn max_in_window_counts_half_open_windows() {
    let base = Instant::now();
    let at = |ms: &[u64]| -> Vec<Instant> {
        ms.iter()
            .map(|&m| base + Duration::from_millis(m))
            .collect()
    };
    let ms = Duration::from_millis;
    // [100, 1100) holds 100, 200, 999, 1000 and 1001; order does not matter.
    let times = at(&[1500, 0, 1000, 100, 999, 200, 1001]);
    assert_eq!(max_in_window_of(&times, ms(1000)), 5);
    assert_eq!(max_in_window_of(&times, ms(1)), 1);
    assert_eq!(max_in_window_of(&times, ms(2)), 2);
    assert_eq!(max_in_window_of(&times, ms(1501)), 7);
    assert_eq!(max_in_window_of(&times, ms(1500)), 6);
    // Half-open: arrivals exactly one window apart are never together.
    assert_eq!(max_in_window_of(&at(&[0, 1000, 2000]), ms(1000)), 1);
    assert_eq!(max_in_window_of(&at(&[0, 1000, 2000]), ms(1001)), 2);
    assert_eq!(max_in_window_of(&at(&[5, 5, 5]), ms(1)), 3);
    assert_eq!(max_in_window_of(&at(&[5, 5, 5]), Duration::ZERO), 0);
    assert_eq!(max_in_window_of(&[], ms(1000)), 0);
}

#[tokio::test]
async fn signed_message_is_accepted_and_recorded() {
    let fake = FakeRobot::start(Limits::default()).await;
    fake.add_robot("tok", Some(SECRET), &[]);

    let url = fake.signed_webhook("tok", SECRET, unix_ms());
    assert_eq!(
        send(&url, &markdown("Disk full", "## /var is 99%")).await,
        (0, "ok".to_owned())
    );
    let url = fake.signed_webhook("tok", SECRET, unix_ms());
    let text = json!({ "msgtype": "text", "text": { "content": "plain alert" } });
    assert_eq!(errcode(&url, &text).await, ERR_OK);

    let accepted = fake.accepted("tok");
    assert_eq!(accepted.len(), 2);
    assert_eq!(accepted[0].title, "Disk full");
    assert_eq!(accepted[0].text, "## /var is 99%");
    assert_eq!(accepted[0].body, markdown("Disk full", "## /var is 99%"));
    assert_eq!(
        (accepted[1].title.as_str(), accepted[1].text.as_str()),
        ("", "plain alert")
    );
    assert!(accepted[0].at <= accepted[1].at);

    let requests = fake.requests("tok");
    assert_eq!(requests.len(), 2);
    assert!(
        requests
            .iter()
            .all(|r| r.errcode == Some(0) && r.http_status == 200)
    );
    assert_eq!(fake.throttled("tok"), 0);
    assert!(fake.accepted("other").is_empty());
}

#[tokio::test]
async fn a_client_signing_with_reqwest_query_is_accepted() {
    let fake = FakeRobot::start(Limits::default()).await;
    fake.add_robot("tok", Some(SECRET), &[]);
    let timestamp = unix_ms();
    let answer: Value = client()
        .post(format!("http://{}/robot/send", fake.addr()))
        .query(&[
            ("access_token", "tok".to_owned()),
            ("timestamp", timestamp.to_string()),
            ("sign", sign(SECRET, timestamp)),
        ])
        .json(&markdown("t", "x"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(answer["errcode"], 0, "{answer}");
}

#[tokio::test]
async fn bad_or_missing_sign_is_refused() {
    let fake = FakeRobot::start(Limits::default()).await;
    fake.add_robot("tok", Some(SECRET), &[]);
    let body = markdown("t", "x");
    let now = unix_ms();

    let wrong_secret = fake.signed_webhook("tok", "SECwrong", now);
    let no_sign = format!("{}&timestamp={now}", fake.webhook("tok"));
    let sign_of_other_time = format!(
        "{}&timestamp={now}&sign={}",
        fake.webhook("tok"),
        encode_query_value(&sign(SECRET, now - 1))
    );
    for url in [wrong_secret, no_sign, sign_of_other_time] {
        assert_eq!(
            send(&url, &body).await,
            (ERR_SECURITY, MSG_SIGN_NOT_MATCH.to_owned()),
            "{url}"
        );
    }

    // A signature with a '+' sent unencoded decodes to a space: refused.
    let timestamp = (now..)
        .find(|&t| sign(SECRET, t).contains('+'))
        .expect("some signature has a '+'");
    let unencoded = format!(
        "{}&timestamp={timestamp}&sign={}",
        fake.webhook("tok"),
        sign(SECRET, timestamp)
    );
    assert_eq!(errcode(&unencoded, &body).await, ERR_SECURITY);
    let twice = format!(
        "{}&timestamp={timestamp}&sign={}",
        fake.webhook("tok"),
        encode_query_value(&encode_query_value(&sign(SECRET, timestamp)))
    );
    assert_eq!(errcode(&twice, &body).await, ERR_SECURITY);
    let right = fake.signed_webhook("tok", SECRET, timestamp);
    assert_eq!(errcode(&right, &body).await, ERR_OK);

    assert_eq!(fake.accepted("tok").len(), 1);
    assert_eq!(fake.requests("tok").len(), 6);
}

#[tokio::test]
async fn missing_or_stale_timestamp_is_refused() {
    let fake = FakeRobot::start(Limits::default()).await;
    fake.add_robot("tok", Some(SECRET), &[]);
    let body = markdown("t", "x");
    let hour_ms = 3_600_000;
    let now = unix_ms();

    let stale = fake.signed_webhook("tok", SECRET, now - 2 * hour_ms);
    let future = fake.signed_webhook("tok", SECRET, now + 2 * hour_ms);
    let missing = fake.webhook("tok");
    let garbage = format!("{}&timestamp=soon&sign=x", fake.webhook("tok"));
    let extreme = format!("{}&timestamp={}&sign=x", fake.webhook("tok"), i64::MIN);
    for url in [stale, future, missing, garbage, extreme] {
        assert_eq!(
            send(&url, &body).await,
            (ERR_SECURITY, MSG_INVALID_TIMESTAMP.to_owned()),
            "{url}"
        );
    }
    // Within the hour is fine.
    let old_but_valid = fake.signed_webhook("tok", SECRET, now - 59 * 60 * 1000);
    assert_eq!(errcode(&old_but_valid, &body).await, ERR_OK);
}

#[tokio::test]
async fn unknown_token_is_refused() {
    let fake = plain_robot(Limits::default()).await;
    assert_eq!(
        send(&fake.webhook("nope"), &markdown("t", "x")).await,
        (ERR_TOKEN_NOT_EXIST, "token is not exist".to_owned())
    );
    let no_token = format!("http://{}/robot/send", fake.addr());
    assert_eq!(
        errcode(&no_token, &markdown("t", "x")).await,
        ERR_TOKEN_NOT_EXIST
    );
    assert_eq!(fake.requests("nope").len(), 1);
    assert!(fake.accepted("nope").is_empty());
}

#[tokio::test]
async fn keywords_are_required_in_the_text() {
    let fake = FakeRobot::start(Limits::default()).await;
    fake.add_robot("kw", None, &["告警", "alert"]);
    let url = fake.webhook("kw");

    assert_eq!(
        send(&url, &markdown("t", "nothing to see")).await,
        (ERR_SECURITY, MSG_KEYWORDS.to_owned())
    );
    // Strict: a keyword in the title only does not count.
    assert_eq!(
        errcode(&url, &markdown("alert", "nothing")).await,
        ERR_SECURITY
    );
    assert_eq!(errcode(&url, &markdown("t", "磁盘告警")).await, ERR_OK);
    let text = json!({ "msgtype": "text", "text": { "content": "an alert" } });
    assert_eq!(errcode(&url, &text).await, ERR_OK);
    assert_eq!(fake.accepted("kw").len(), 2);
}

#[tokio::test]
async fn oversize_or_malformed_bodies_are_refused() {
    let fake = plain_robot(Limits::default()).await;
    let url = fake.webhook("t");

    let big = markdown("big", &"x".repeat(20_001));
    assert_eq!(
        send(&url, &big).await,
        (
            ERR_TOO_LONG,
            "message too long, exceed 20000 bytes".to_owned()
        )
    );
    // Just under the limit, counting the JSON around the text.
    let text = "x".repeat(19_900);
    let fits = markdown("fits", &text);
    assert!(serde_json::to_vec(&fits).expect("json").len() <= 20_000);
    assert_eq!(errcode(&url, &fits).await, ERR_OK);

    for body in [
        json!({ "msgtype": "video", "video": {} }),
        json!({ "markdown": { "title": "t", "text": "x" } }),
        json!({ "msgtype": "markdown", "markdown": { "title": "t" } }),
        json!({ "msgtype": "text", "text": "flat" }),
        json!([1, 2]),
    ] {
        assert_eq!(
            send(&url, &body).await,
            (ERR_MISSING_JSON, "缺少参数 json".to_owned()),
            "{body}"
        );
    }
    let not_json = client()
        .post(&url)
        .body("not json")
        .send()
        .await
        .expect("request")
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(not_json["errcode"], ERR_MISSING_JSON);
    assert_eq!(fake.accepted("t").len(), 1);
}

#[tokio::test]
async fn default_limits_refuse_the_21st_request_of_a_minute() {
    let fake = plain_robot(Limits::default()).await;
    let url = fake.webhook("t");
    for i in 0..20 {
        assert_eq!(
            errcode(&url, &markdown(&i.to_string(), "x")).await,
            ERR_OK,
            "#{i}"
        );
    }
    assert_eq!(
        send(&url, &markdown("21", "x")).await,
        (
            ERR_SEND_TOO_FAST,
            "send too fast, exceed 20 times per minute".to_owned()
        )
    );
    assert_eq!(errcode(&url, &markdown("22", "x")).await, ERR_SEND_TOO_FAST);
    assert_eq!(fake.accepted("t").len(), 20);
    assert_eq!(fake.throttled("t"), 2);
    assert_eq!(fake.max_in_window("t", Duration::from_secs(60)), 22);
}

#[tokio::test]
async fn breach_locks_out_for_the_lockout_then_clears() {
    let limits = Limits {
        limit: 3,
        period: Duration::from_millis(500),
        lockout: Duration::from_millis(1200),
    };
    let fake = plain_robot(limits).await;
    let url = fake.webhook("t");
    for _ in 0..3 {
        assert_eq!(errcode(&url, &markdown("t", "x")).await, ERR_OK);
    }
    assert_eq!(errcode(&url, &markdown("t", "x")).await, ERR_SEND_TOO_FAST);
    let breach_answered = Instant::now();

    // The window is long clear, but the lockout still holds.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(errcode(&url, &markdown("t", "x")).await, ERR_SEND_TOO_FAST);
    assert_eq!(fake.throttled("t"), 2);

    // And it ends after the lockout.
    tokio::time::sleep_until((breach_answered + limits.lockout + Duration::from_millis(50)).into())
        .await;
    assert_eq!(errcode(&url, &markdown("t", "x")).await, ERR_OK);
    assert_eq!(fake.accepted("t").len(), 4);
    assert_eq!(fake.throttled("t"), 2);
}

#[tokio::test]
async fn rejected_requests_count_towards_the_limit() {
    let limits = Limits {
        limit: 3,
        period: Duration::from_secs(60),
        lockout: Duration::from_secs(60),
    };
    let fake = FakeRobot::start(limits).await;
    fake.add_robot("tok", Some(SECRET), &[]);
    let bad = fake.signed_webhook("tok", "SECwrong", unix_ms());
    fake.push_fault("tok", Fault::Errcode(-1, "系统繁忙"));
    assert_eq!(errcode(&bad, &markdown("t", "x")).await, -1);
    for _ in 0..2 {
        assert_eq!(errcode(&bad, &markdown("t", "x")).await, ERR_SECURITY);
    }
    let good = fake.signed_webhook("tok", SECRET, unix_ms());
    assert_eq!(errcode(&good, &markdown("t", "x")).await, ERR_SEND_TOO_FAST);
    assert!(fake.accepted("tok").is_empty());
}

#[tokio::test]
async fn lock_out_simulates_another_sender() {
    let fake = plain_robot(Limits::default()).await;
    let url = fake.webhook("t");
    fake.lock_out("t", Duration::from_millis(500));
    assert_eq!(errcode(&url, &markdown("t", "x")).await, ERR_SEND_TOO_FAST);
    tokio::time::sleep(Duration::from_millis(550)).await;
    assert_eq!(errcode(&url, &markdown("t", "x")).await, ERR_OK);
    assert_eq!(fake.throttled("t"), 1);
}

#[tokio::test]
async fn faults_are_applied_once_in_order() {
    let fake = plain_robot(Limits::default()).await;
    let url = fake.webhook("t");
    fake.push_fault("t", Fault::Http(503));
    fake.push_fault("t", Fault::Errcode(410_100, "发送速度太快而限流"));
    fake.push_fault("t", Fault::Drop);

    let response = client()
        .post(&url)
        .json(&markdown("t", "1"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.text().await.expect("body"), "upstream error");

    assert_eq!(errcode(&url, &markdown("t", "2")).await, 410_100);

    let dropped = client().post(&url).json(&markdown("t", "3")).send().await;
    let error = dropped.expect_err("a dropped connection must fail the request");
    assert!(!error.is_connect(), "the connection was made: {error:?}");

    assert_eq!(errcode(&url, &markdown("t", "4")).await, ERR_OK);
    let answers: Vec<(Option<i64>, u16)> = fake
        .requests("t")
        .iter()
        .map(|r: &Request| (r.errcode, r.http_status))
        .collect();
    assert_eq!(
        answers,
        [(None, 503), (Some(410_100), 200), (None, 0), (Some(0), 200)]
    );
    assert_eq!(fake.accepted("t").len(), 1);
    assert_eq!(fake.accepted("t")[0].text, "4");
}

#[tokio::test]
async fn slow_fault_delays_then_delivers() {
    let fake = plain_robot(Limits::default()).await;
    let url = fake.webhook("t");
    fake.push_fault("t", Fault::Slow(Duration::from_millis(300)));
    let started = Instant::now();
    assert_eq!(errcode(&url, &markdown("t", "slow")).await, ERR_OK);
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A client that gives up still gets its message delivered.
    fake.push_fault("t", Fault::Slow(Duration::from_millis(400)));
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .expect("client");
    let error = impatient
        .post(&url)
        .json(&markdown("t", "late"))
        .send()
        .await
        .expect_err("must time out");
    assert!(error.is_timeout(), "{error:?}");
    let accepted = fake
        .wait_for("t", Duration::from_secs(2), |a| a.len() == 2)
        .await;
    assert_eq!(accepted[1].text, "late");
}

#[tokio::test]
async fn sticky_fault_applies_until_cleared() {
    let fake = plain_robot(Limits::default()).await;
    let url = fake.webhook("t");
    fake.set_sticky(
        "t",
        Some(Fault::Errcode(ERR_TOKEN_NOT_EXIST, "token is not exist")),
    );
    fake.push_fault("t", Fault::Errcode(-1, "系统繁忙"));
    assert_eq!(errcode(&url, &markdown("t", "x")).await, -1);
    for _ in 0..3 {
        assert_eq!(
            errcode(&url, &markdown("t", "x")).await,
            ERR_TOKEN_NOT_EXIST
        );
    }
    fake.set_sticky("t", None);
    assert_eq!(errcode(&url, &markdown("t", "x")).await, ERR_OK);
}

#[tokio::test]
async fn offline_refuses_connections_and_online_reuses_the_port() {
    let fake = plain_robot(Limits::default()).await;
    let url = fake.webhook("t");
    let addr = fake.addr();
    assert_eq!(errcode(&url, &markdown("t", "before")).await, ERR_OK);

    fake.go_offline().await;
    fake.go_offline().await;
    let error = client()
        .post(&url)
        .json(&markdown("t", "during"))
        .send()
        .await
        .expect_err("offline fake must refuse");
    assert!(error.is_connect(), "{error:?}");
    let refused = TcpStream::connect(addr).await.expect_err("must be refused");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

    fake.come_online().await;
    fake.come_online().await;
    assert_eq!(fake.addr(), addr);
    assert_eq!(errcode(&url, &markdown("t", "after")).await, ERR_OK);
    let texts: Vec<String> = fake.accepted("t").into_iter().map(|a| a.text).collect();
    assert_eq!(texts, ["before", "after"]);
}

#[tokio::test]
async fn malformed_http_gets_a_400_and_the_server_survives() {
    let fake = plain_robot(Limits::default()).await;
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"POST /robot/send?access_token=t HTTP/1.1\r\nContent-Length: lots\r\n\r\n",
        b"POST /robot/send?access_token=t HTTP/1.1\r\nno colon here\r\n\r\n",
        b"POST /robot/send?access_token=t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ] {
        let answer = raw_exchange(&fake, garbage).await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
    }
    let answer = raw_exchange(
        &fake,
        b"POST /robot/send?access_token=t HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer:?}");
    let answer = raw_exchange(&fake, b"GET /robot/send?access_token=t HTTP/1.1\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer:?}");
    let answer = raw_exchange(&fake, b"POST /elsewhere HTTP/1.1\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 404 "), "{answer:?}");
    // A connection that closes without a request is simply dropped.
    drop(TcpStream::connect(fake.addr()).await.expect("connect"));

    // A chunked body is understood, split anywhere.
    let body = markdown("chunked", "x").to_string();
    let (a, b) = body.split_at(10);
    let request = format!(
        "POST /robot/send?access_token=t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{a}\r\n{:x};ext=1\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    let answer = raw_exchange(&fake, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
    assert!(
        answer.ends_with(r#"{"errcode":0,"errmsg":"ok"}"#),
        "{answer:?}"
    );

    assert_eq!(
        errcode(&fake.webhook("t"), &markdown("t", "x")).await,
        ERR_OK
    );
    assert_eq!(fake.accepted("t").len(), 2);
}

#[tokio::test]
async fn upload_over_the_http_limit_gets_a_413() {
    // Answered before the body is read; the client must still see it.
    let fake = plain_robot(Limits::default()).await;
    let response = client()
        .post(fake.webhook("t"))
        .body(vec![b'x'; 1_500_000])
        .send()
        .await
        .expect("the 413 must reach the client");
    assert_eq!(response.status().as_u16(), 413);
    assert_eq!(
        errcode(&fake.webhook("t"), &markdown("t", "x")).await,
        ERR_OK
    );
}

#[tokio::test]
async fn concurrent_requests_are_all_answered_and_windowed() {
    let fake = plain_robot(Limits::default()).await;
    let url = fake.webhook("t");
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move { errcode(&url, &markdown(&i.to_string(), "x")).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("task"), ERR_OK);
    }
    assert_eq!(fake.accepted("t").len(), 10);
    assert_eq!(fake.max_in_window("t", Duration::from_secs(60)), 10);
    assert_eq!(fake.max_in_window("t", Duration::ZERO), 0);
    assert_eq!(fake.max_in_window("unknown", Duration::from_secs(60)), 0);
}

#[tokio::test]
#[should_panic(expected = "1 accepted (last titles [\"only\"])")]
async fn wait_for_panics_with_what_it_saw() {
    let fake = plain_robot(Limits::default()).await;
    assert_eq!(
        errcode(&fake.webhook("t"), &markdown("only", "x")).await,
        ERR_OK
    );
    fake.wait_for("t", Duration::from_millis(100), |a| a.len() >= 2)
        .await;
}
