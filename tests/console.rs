//! The web console (`/ui/`) through plain HTTP, as a browser with JavaScript off would use it:
//! every view's figures against `/v1/status`, escaping of hostile alert content, the form posts
//! (post/redirect/get), cross-site refusals, the login. The browser test is
//! tests/console_browser.rs.

mod support;

use std::time::Duration;

use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use support::daemon::{Daemon, num};
use support::fake_robot::{FakeRobot, Fault, Limits};

const SECRET: &str = "SECconsole0123456789";

/// What an attacker puts in titles, texts and labels.
const XSS: [&str; 6] = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(2)>",
    "[x](javascript:alert(3))",
    "<svg><a><set attributeName=href to=javascript:alert(4)>",
    "[y](data:text/html;base64,PHNjcmlwdD4=)",
    "\"><script>alert(5)</script>",
];

fn config(fake: &FakeRobot, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "{{listen}}"
data_dir = "{{data_dir}}"
{extra}

[defaults]
window = "50ms"
rate_limit = 20
rate_period = "2s"
retry_initial_backoff = "100ms"
retry_max_backoff = "400ms"
blocked_probe = "30s"
request_timeout = "2s"

[robots.ops]
webhook = "{ops}"
secret = "{SECRET}"
keywords = ["告警"]

[robots.dq]
webhook = "{dq}"
"#,
        ops = fake.webhook("ops-token"),
        dq = fake.webhook("dq-token"),
    )
}

async fn fake() -> FakeRobot {
    let fake = FakeRobot::start(Limits {
        limit: 20,
        period: Duration::from_secs(2),
        lockout: Duration::from_secs(3),
    })
    .await;
    fake.add_robot("ops-token", Some(SECRET), &["告警"]);
    fake.add_robot("dq-token", None, &[]);
    fake
}

/// A client that does not follow redirects, so a test sees the 303 and its cookies.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn page(d: &Daemon, path: &str) -> (u16, HeaderMap, String) {
    page_with(d, path, "").await
}

async fn page_with(d: &Daemon, path: &str, cookie: &str) -> (u16, HeaderMap, String) {
    let mut r = client().get(d.url(path));
    if !cookie.is_empty() {
        r = r.header("cookie", cookie);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

/// Posts a form the way the console's own page does (same-origin).
async fn form(
    d: &Daemon,
    path: &str,
    fields: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut r = client()
        .post(d.url(path))
        .header("sec-fetch-site", "same-origin")
        .form(fields);
    for (k, v) in extra {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

/// The one cookie a 303 set, as `name=value`, for the next request.
fn cookies(h: &HeaderMap) -> String {
    h.get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The rules every console page keeps, whatever it shows.
fn assert_safe_page(html: &str, headers: &HeaderMap, what: &str) {
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{what}: {csp}"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(headers["referrer-policy"], "same-origin", "{what}");
    assert_eq!(headers["cache-control"], "no-store", "{what}");
    let lower = html.to_ascii_lowercase();
    // The one script is the binary's own; no inline script, no style attribute.
    assert_eq!(lower.matches("<script").count(), 1, "{what}: {html}");
    assert!(lower.contains("<script src=\"/ui/app.js"), "{what}");
    assert!(!lower.contains(" style="), "{what}: a style attribute");
    assert!(!lower.contains("<img"), "{what}: an image");
    // Every real tag (text's `<` is escaped): no event handler, no link outside the schemes.
    for (i, _) in lower.match_indices('<') {
        let tag = &lower[i..lower[i..].find('>').map_or(lower.len(), |j| i + j)];
        for attr in tag.split_whitespace().skip(1) {
            assert!(!attr.starts_with("on"), "{what}: {attr} in {tag}");
            if let Some(url) = attr.strip_prefix("href=\"") {
                assert!(
                    url.starts_with('/')
                        || url.starts_with("http://")
                        || url.starts_with("https://")
                        || url.starts_with("dingtalk://"),
                    "{what}: {attr}"
                );
            }
        }
    }
    // Nothing from elsewhere: every src and stylesheet is sluice's own.
    for tag in ["src=\"http", "src=\"//", "href=\"//"] {
        assert!(!lower.contains(tag), "{what}: {tag}");
    }
    assert!(
        !html.contains(SECRET) && !html.contains("ops-token") && !html.contains("dq-token"),
        "{what}: a secret in the page"
    );
}

fn hostile_alerts(robot: &str) -> Value {
    Value::Array(
        XSS.iter()
            .enumerate()
            .map(|(i, x)| {
                json!({
                    "robot": robot,
                    "title": format!("告警 {x} check {i}"),
                    "text": format!("detail {x}"),
                    "severity": "critical",
                    "labels": {"job": format!("ods_{i}"), "payload": x},
                })
            })
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_shows_the_api_s_figures_and_escapes_hostile_content() {
    let fake = fake().await;
    fake.set_sticky(
        "dq-token",
        Some(Fault::Errcode(300001, "token is not exist <b>x</b>")),
    );
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake, ""), dir.path()).await;

    d.post(&hostile_alerts("ops")).await;
    d.post(&hostile_alerts("dq")).await;
    fake.wait_for("ops-token", Duration::from_secs(5), |a| !a.is_empty())
        .await;
    d.wait_status("dq", Duration::from_secs(5), |s| s["state"] == "blocked")
        .await;
    d.wait_status("ops", Duration::from_secs(5), |s| s["state"] == "idle")
        .await;

    // Overview: a row per robot, the same figures as /v1/status, the blocked one's reason.
    let (_, status) = d.get("/v1/status").await;
    let (code, headers, html) = page(&d, "/ui/").await;
    assert_eq!(code, 200);
    assert_safe_page(&html, &headers, "overview");
    for r in status["robots"].as_array().unwrap() {
        let name = r["robot"].as_str().unwrap();
        assert!(
            html.contains(&format!("data-testid=\"robot-{name}\"")),
            "{name}"
        );
        assert!(
            html.contains(&format!(
                "data-testid=\"state-{name}\">{}</span>",
                r["state"].as_str().unwrap()
            )),
            "{name}: {html}"
        );
        assert!(
            html.contains(&format!(
                "data-testid=\"pending-{name}\">{}</td>",
                num(r, "pending")
            )),
            "{name}"
        );
        assert!(
            html.contains(&format!(
                "data-testid=\"meter-{name}\" min=\"0\" max=\"{}\" value=\"{}\"",
                num(r, "rate_limit"),
                num(r, "sends_in_period")
            )),
            "{name}"
        );
    }
    assert!(html.contains("data-testid=\"reason-dq\""), "{html}");
    let reason = html
        .split("data-testid=\"reason-dq\">")
        .nth(1)
        .unwrap_or("")
        .split("</div>")
        .next()
        .unwrap_or("");
    assert!(
        reason.contains("300001") && reason.contains("&lt;b&gt;x&lt;") && !reason.contains("<b>"),
        "the reason, escaped: {reason}"
    );

    // Robot: one tick per send in the period, the webhook without its token.
    let (code, headers, html) = page(&d, "/ui/robots/ops").await;
    assert_eq!(code, 200);
    assert_safe_page(&html, &headers, "robot");
    let sends = num(&d.robot_status("ops").await, "sends_in_period");
    assert!(sends >= 1);
    assert_eq!(
        html.matches("data-testid=\"send-tick\"").count() as u64,
        sends,
        "ticks"
    );
    assert!(html.contains("access_token=***"), "{html}");

    // Digests: listed, and found by title and by label.
    let (_, list) = d.get("/v1/digests").await;
    let ids: Vec<u64> = list["digests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_u64().unwrap())
        .collect();
    assert!(!ids.is_empty());
    let (code, headers, html) = page(&d, "/ui/digests").await;
    assert_eq!(code, 200);
    assert_safe_page(&html, &headers, "digests");
    for id in &ids {
        assert!(
            html.contains(&format!("data-testid=\"digest-{id}\"")),
            "{id}"
        );
    }
    let (_, _, html) = page(&d, "/ui/digests?q=CHECK%203").await;
    assert!(
        html.contains(&format!("data-testid=\"digest-{}\"", ids[0])),
        "alert title search"
    );
    let (_, _, html) = page(&d, "/ui/digests?q=no+such+thing").await;
    assert!(
        !html.contains("data-testid=\"digest-"),
        "a search that matches nothing"
    );
    let (_, _, html) = page(&d, "/ui/digests?label=job%3Dods_4").await;
    assert!(
        html.contains(&format!("data-testid=\"digest-{}\"", ids[0])),
        "label search"
    );
    let (_, _, html) = page(&d, "/ui/digests?label=job%3Dods_99").await;
    assert!(
        !html.contains("data-testid=\"digest-"),
        "label search, no match"
    );
    let (code, _, html) = page(&d, "/ui/digests?label=nonsense").await;
    assert_eq!(code, 400);
    assert!(html.contains("expected name=value"), "{html}");
    let (_, api) = d.get("/v1/digests?label=job%3Dods_4").await;
    assert_eq!(api["digests"][0]["id"].as_u64(), Some(ids[0]));

    // Digest: the message as the group saw it, rendered, with every payload shown as text.
    let (code, headers, html) = page(&d, &format!("/ui/digests/{}", ids[0])).await;
    assert_eq!(code, 200);
    assert_safe_page(&html, &headers, "digest");
    assert!(html.contains("data-testid=\"message\""), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;"),
        "the alert table shows the title as text: {html}"
    );
    assert!(
        html.contains(&format!("sluice digest #{}", ids[0])),
        "the footer"
    );
    assert!(
        html.contains("<strong>") || html.contains("<h3>"),
        "rendered markdown: {html}"
    );
    let (_, api) = d.get(&format!("/v1/digests/{}", ids[0])).await;
    assert_eq!(api["state"], "sent");
    assert!(
        api["text"].as_str().unwrap().contains("告警"),
        "the sent text is kept: {api}"
    );
    let (code, _, html) = page(&d, "/ui/digests/999").await;
    assert_eq!(code, 404);
    assert!(html.contains("no digest #999"), "{html}");

    // Static assets: from the binary, with an ETag that answers 304.
    let r = client().get(d.url("/ui/app.js")).send().await.unwrap();
    let tag = r.headers()["etag"].clone();
    let r = client()
        .get(d.url("/ui/app.js"))
        .header("if-none-match", tag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 304);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_and_redeliver_work_as_plain_forms_and_cross_site_posts_are_refused() {
    let fake = fake().await;
    fake.push_fault(
        "ops-token",
        Fault::Errcode(460101, "message too long, exceed 20000 bytes"),
    );
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake, ""), dir.path()).await;
    d.post(&json!([{"robot": "ops", "title": "告警 refused once"}]))
        .await;
    d.wait_status("ops", Duration::from_secs(5), |s| num(s, "dead") == 1)
        .await;

    let (_, _, html) = page(&d, "/ui/dead").await;
    assert!(html.contains("data-testid=\"replay-1\""), "{html}");
    assert!(html.contains("460101"), "the robot's answer");

    // Another site's page, or another program's page on this host, cannot press the button.
    for headers in [
        vec![("origin", "http://evil.example")],
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
    ] {
        let mut r = client().post(d.url("/ui/dead/replay")).form(&[("id", "1")]);
        for (k, v) in &headers {
            r = r.header(*k, *v);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 403, "{headers:?}");
    }
    // The JSON API still refuses a form body.
    let r = client()
        .post(d.url("/v1/dead/replay"))
        .form(&[("id", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let (_, dig) = d.get("/v1/digests/1").await;
    assert_eq!(
        dig["state"], "dead",
        "nothing was replayed by the refused posts"
    );

    // The console's own form: 303 back, a flash, the digest replayed, the robot receives it.
    let r = form(&d, "/ui/dead/replay", &[("id", "1")], &[]).await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()[LOCATION], "/ui/dead");
    let (_, _, html) = page_with(&d, "/ui/dead", &cookies(r.headers())).await;
    assert!(
        html.contains("data-testid=\"flash\"") && html.contains("replayed 1 alerts"),
        "{html}"
    );
    assert!(
        html.contains("data-testid=\"replayed-1\""),
        "marked replayed: {html}"
    );
    let (_, dig) = d.get("/v1/digests/1").await;
    assert_eq!(dig["state"], "replayed");
    let got = fake
        .wait_for("ops-token", Duration::from_secs(5), |a| !a.is_empty())
        .await;
    assert!(got[0].text.contains("refused once"));
    let (_, dead) = d.get("/v1/dead?include=replayed").await;
    assert_eq!(dead["dead"][0]["replayed_to"], "ops");

    // Pressing it again says why nothing happened.
    let r = form(&d, "/ui/dead/replay", &[("id", "1")], &[]).await;
    let (_, _, html) = page_with(&d, "/ui/dead", &cookies(r.headers())).await;
    assert!(
        html.contains("flash error") && html.contains("#1"),
        "{html}"
    );
    // A target that is not configured: the message lists the configured ones.
    let r = form(&d, "/ui/dead/replay", &[("id", "1"), ("to", "nobody")], &[]).await;
    let (_, _, html) = page_with(&d, "/ui/dead", &cookies(r.headers())).await;
    assert!(html.contains("configured robots: "), "{html}");

    // Redeliver a sent digest to the other robot.
    d.wait_status("ops", Duration::from_secs(5), |s| s["state"] == "idle")
        .await;
    let (_, list) = d.get("/v1/digests").await;
    let id = list["digests"][0]["id"].as_u64().unwrap();
    let r = form(
        &d,
        &format!("/ui/digests/{id}/redeliver"),
        &[("to", "dq")],
        &[],
    )
    .await;
    assert_eq!(r.status().as_u16(), 303);
    let (_, _, html) = page_with(&d, &format!("/ui/digests/{id}"), &cookies(r.headers())).await;
    assert!(html.contains("again for dq"), "{html}");
    let got = fake
        .wait_for("dq-token", Duration::from_secs(5), |a| !a.is_empty())
        .await;
    assert!(got[0].text.contains("refused once"), "redelivered for real");

    // Reload without a config file: refused, and said so.
    let r = form(&d, "/ui/reload", &[], &[]).await;
    let (_, _, html) = page_with(&d, "/ui/", &cookies(r.headers())).await;
    assert!(html.contains("reload refused, nothing changed"), "{html}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tokens_the_console_needs_a_login_and_a_removed_token_ends_its_sessions() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    let data = dir.path().join("data");
    let with = |tokens: &str| config(&fake, &format!("auth_tokens = [{tokens}]"));
    let d = Daemon::start_file(&with("\"token-aaaa\", \"token-bbbb\""), &data, &path).await;

    let (code, headers, _) = page(&d, "/ui/").await;
    assert_eq!(code, 303);
    assert_eq!(headers[LOCATION], "/ui/login");
    let (code, _, html) = page(&d, "/ui/login").await;
    assert_eq!(code, 200);
    assert!(html.contains("data-testid=\"token\""));

    let r = form(&d, "/ui/login", &[("token", "wrong")], &[]).await;
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().get(SET_COOKIE).is_none());

    let r = form(&d, "/ui/login", &[("token", "token-aaaa")], &[]).await;
    assert_eq!(r.status().as_u16(), 303);
    let set: Vec<String> = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session = set
        .iter()
        .find(|c| c.starts_with("sluice_ui="))
        .expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(attr), "{session}");
    }
    assert!(
        !session.contains("token-aaaa"),
        "the cookie does not carry the token"
    );
    let cookie = session.split(';').next().unwrap().to_string();
    let (code, headers, html) = page_with(&d, "/ui/", &cookie).await;
    assert_eq!(code, 200);
    assert_safe_page(&html, &headers, "overview, logged in");
    assert!(!html.contains("token-aaaa") && !html.contains("token-bbbb"));
    // A form post without the session is refused; with it (same-origin) it works.
    let r = form(&d, "/ui/reload", &[], &[]).await;
    assert_eq!(r.status().as_u16(), 401);
    let r = form(
        &d,
        "/ui/reload",
        &[],
        &[("cookie", &cookie), ("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(
        r.status().as_u16(),
        403,
        "a logged-in browser on another site"
    );
    // A forged cookie does not pass.
    let (code, _, _) = page_with(&d, "/ui/", "sluice_ui=99999999999999.AAAA").await;
    assert_eq!(code, 303);
    // The bearer API works as before.
    let r = client()
        .get(d.url("/v1/status"))
        .bearer_auth("token-bbbb")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // token-aaaa is removed: its sessions end at the reload.
    d.rewrite(&with("\"token-bbbb\""), &path);
    let r = client()
        .post(d.url("/-/reload"))
        .bearer_auth("token-bbbb")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    let (code, _, _) = page_with(&d, "/ui/", &cookie).await;
    assert_eq!(code, 303, "the old session no longer opens the console");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_message_button_goes_through_the_robot_s_own_limit() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake, ""), dir.path()).await;
    let (_, _, html) = page(&d, "/ui/robots/ops").await;
    assert!(html.contains("data-testid=\"test-message\""));

    let r = form(&d, "/ui/robots/ops/test", &[], &[]).await;
    assert_eq!(r.status().as_u16(), 303);
    let (_, _, html) = page_with(&d, "/ui/robots/ops", &cookies(r.headers())).await;
    assert!(
        html.contains("test message sent: the robot answered ok (1&#x2f;20"),
        "{html}"
    );
    let got = fake.accepted("ops-token");
    assert_eq!(got.len(), 1);
    assert!(got[0].text.contains("告警") && got[0].text.to_lowercase().contains("test"));

    // Pressed 30 more times at once: the robot's 20 per period hold, the rest are told why.
    let mut refused = 0;
    for _ in 0..30 {
        let r = form(&d, "/ui/robots/ops/test", &[], &[]).await;
        let (_, _, html) = page_with(&d, "/ui/robots/ops", &cookies(r.headers())).await;
        if html.contains("not sent: ") && html.contains("permit") {
            refused += 1;
        }
    }
    // The presses outlast the 2 s period, so some permits come back; the limit still holds.
    assert!(refused >= 1, "{refused} refused");
    assert!(fake.max_in_window("ops-token", Duration::from_secs(2)) <= 20);
    assert_eq!(fake.throttled("ops-token"), 0, "the robot never saw a 21st");
    d.stop().await;
}

/// The digest page's attempt log: each try with the robot that took it, how the answer was
/// taken and what the robot said, as `/v1/digests/{id}` gives them (hostile answers escaped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_digest_page_logs_each_try_with_the_robot_s_answer() {
    let fake = fake().await;
    fake.push_fault(
        "dq-token",
        Fault::Errcode(-1, "系统繁忙 <script>alert(9)</script>"),
    );
    fake.push_fault("dq-token", Fault::Http(502));
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake, ""), dir.path()).await;
    d.post(&json!([{"robot": "dq", "title": "tried three times"}]))
        .await;
    fake.wait_for("dq-token", Duration::from_secs(10), |a| !a.is_empty())
        .await;
    d.wait_status("dq", Duration::from_secs(5), |s| {
        num(s, "digests_sent") == 1
    })
    .await;
    let (_, list) = d.get("/v1/digests?robot=dq").await;
    let id = list["digests"][0]["id"].as_u64().unwrap();
    let (_, dig) = d.get(&format!("/v1/digests/{id}")).await;
    assert_eq!(dig["attempts"], 3, "{dig}");
    let tries = dig["tries"].as_array().expect("tries");
    let outcomes: Vec<&str> = tries
        .iter()
        .map(|t| t["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["transient", "transient", "ok"], "{dig}");
    assert!(tries.iter().all(|t| t["robot"] == "dq"), "{dig}");
    let said = |i: usize| tries[i]["said"].as_str().unwrap_or("").to_string();
    assert!(
        said(0).contains("-1") && said(0).contains("系统繁忙"),
        "{}",
        said(0)
    );
    assert!(said(1).contains("502"), "{}", said(1));
    assert!(tries[2].get("said").is_none(), "delivered: nothing to say");
    let at: Vec<i64> = tries.iter().map(|t| t["at_ms"].as_i64().unwrap()).collect();
    assert!(at.windows(2).all(|w| w[0] <= w[1]), "oldest first: {at:?}");
    assert!(at[0] >= dig["sealed_ms"].as_i64().unwrap());

    let (status, headers, html) = page(&d, &format!("/ui/digests/{id}")).await;
    assert_eq!(status, 200);
    assert_safe_page(&html, &headers, "digest with a hostile answer");
    let table = html
        .split("data-testid=\"tries\"")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .expect("the attempt log");
    assert_eq!(table.matches("<tr class=\"try-").count(), 3, "{table}");
    assert_eq!(table.matches("try-transient").count(), 2, "{table}");
    assert!(
        table.contains("系统繁忙 &lt;script&gt;"),
        "escaped: {table}"
    );
    assert!(table.contains("502"), "{table}");
    assert!(table.contains("delivered"), "{table}");
    d.stop().await;
}
