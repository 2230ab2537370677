//! The web console at `/ui/` (pages in [`crate::console`]): what an on-call person needs on one
//! page, from the same figures the JSON API answers (`ops::status_of`, `digests::search`, ...).
//!
//! - **Headers.** Every `/ui` answer carries a strict Content-Security-Policy (only the
//!   binary's own `app.css` and `app.js`), `nosniff`, `Referrer-Policy: same-origin` (not
//!   `no-referrer`: under it Chromium posts forms with `Origin: null`, which the guard must
//!   refuse), `DENY` framing and `no-store` (assets: `no-cache` with an ETag).
//! - **Forms.** Every action is a form post answered with 303 back to a page (post/redirect/
//!   get) and a one-time flash cookie. `guard::check_form` lets form bodies reach `/ui/` only,
//!   and only from sluice's own pages (`Sec-Fetch-Site` same-origin or none, an own `Origin`).
//! - **Login**, only when `server.auth_tokens` is set: the token form sets `sluice_ui`, an
//!   HttpOnly, SameSite=Strict cookie holding an expiry and an HMAC of it keyed by the token.
//!   It keeps no state: removing a token (and reloading) ends every session made with it. A
//!   bearer token works too. No page shows a token, a secret or a webhook's credentials.

use super::digests::{DeadQuery, ListQuery, SEARCH_ALERTS_MAX, dead_of, redeliver, replay, search};
use super::ops::status_of;
use super::*;
use crate::api::{RedeliverRequest, ReplayRequest, RobotEntry};
use crate::console::{self, Timeline, percent};
use axum::Form;
use axum::response::Redirect;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use minijinja::{Value as MjValue, context};
use sha2::Sha256;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const SESSION: &str = "sluice_ui";
const FLASH: &str = "sluice_flash";
/// How long a login lasts.
const SESSION_MS: i64 = 12 * 3600 * 1000;
/// Rows on a page of digests, alerts of a digest.
const PAGE: usize = 50;
const ALERTS_PAGE: usize = 100;

pub(super) fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(overview))
        .route("/ui/app.css", get(|h: HeaderMap| async move { asset(&h, console::APP_CSS, "text/css; charset=utf-8") }))
        .route("/ui/app.js", get(|h: HeaderMap| async move { asset(&h, console::APP_JS, "text/javascript; charset=utf-8") }))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/robots/{name}", get(robot_page))
        .route("/ui/robots/{name}/test", post(test_form))
        .route("/ui/digests", get(digests_page))
        .route("/ui/digests/{id}", get(digest_page))
        .route("/ui/digests/{id}/redeliver", post(redeliver_form))
        .route("/ui/dead", get(dead_page))
        .route("/ui/dead/replay", post(replay_form))
        .route("/ui/queue/move", post(move_form))
        .route("/ui/reload", post(reload_form))
        .route_layer(middleware::from_fn_with_state(state, session))
        .layer(middleware::map_response(security_headers))
}

async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

fn asset(headers: &HeaderMap, body: &'static str, kind: &'static str) -> Response {
    let tag = console::etag(body);
    let mut r = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == tag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, kind)], body).into_response()
    };
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&tag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

// ---- sessions -----------------------------------------------------------------------------

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn session_mac(token: &str, expiry: i64) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(token.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(format!("sluice-console\n{expiry}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Whether `value` (`expiry.mac`) was made with one of `tokens` and has not expired.
fn valid_session(value: &str, tokens: &[String], now: i64) -> bool {
    let Some((expiry, mac)) = value.split_once('.') else {
        return false;
    };
    let Ok(expiry) = expiry.parse::<i64>() else {
        return false;
    };
    expiry > now
        && tokens.iter().fold(false, |acc, t| {
            acc | constant_time_eq(session_mac(t, expiry).as_bytes(), mac.as_bytes())
        })
}

/// With `auth_tokens` set, every page but the login and the assets needs a session (or a
/// bearer token): a page is redirected to the login, a form post refused.
async fn session(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let config = app.live.get().config;
    let tokens = &config.server.auth_tokens;
    let path = request.uri().path();
    let open = matches!(path, "/ui/login" | "/ui/app.css" | "/ui/app.js" | "/ui");
    if tokens.is_empty() || open {
        return next.run(request).await;
    }
    let headers = request.headers();
    let now = app.clock.now_ms();
    if cookie(headers, SESSION).is_some_and(|v| valid_session(v, tokens, now))
        || bearer_ok(headers, tokens)
    {
        return next.run(request).await;
    }
    if request.method() == axum::http::Method::GET {
        Redirect::to("/ui/login").into_response()
    } else {
        page_error(
            &app,
            StatusCode::UNAUTHORIZED,
            "not logged in (or the session ended): log in at /ui/login",
        )
    }
}

fn secure(config: &Config) -> &'static str {
    if config
        .server
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"))
    {
        "; Secure"
    } else {
        ""
    }
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
}

async fn login_page(State(app): State<AppState>, headers: HeaderMap) -> Response {
    page(&app, &headers, "login.html", context! { nav => "login" })
}

async fn login(State(app): State<AppState>, Form(f): Form<LoginForm>) -> Response {
    let config = app.live.get().config;
    let tokens = &config.server.auth_tokens;
    let token = f.token.trim();
    let ok = is_token(tokens, token);
    if tokens.is_empty() {
        return see_other(
            "/ui/",
            "no login needed: server.auth_tokens is empty",
            false,
        );
    }
    if !ok {
        return page_error(
            &app,
            StatusCode::UNAUTHORIZED,
            "wrong token: give one of server.auth_tokens",
        );
    }
    let expiry = app.clock.now_ms() + SESSION_MS;
    let value = format!(
        "{SESSION}={expiry}.{}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        session_mac(token, expiry),
        SESSION_MS / 1000,
        secure(&config)
    );
    let mut r = see_other("/ui/", "logged in", false);
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

async fn logout() -> Response {
    let mut r = see_other("/ui/login", "logged out", false);
    r.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("sluice_ui=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

/// A serializable value for a template.
fn ser<T: serde::Serialize>(v: &T) -> MjValue {
    MjValue::from(minijinja::value::Serde(v))
}

// ---- rendering ----------------------------------------------------------------------------

/// A 303 to `to` with a one-time message for the next page.
fn see_other(to: &str, flash: &str, error: bool) -> Response {
    let text = format!("{}{flash}", if error { "!" } else { " " });
    let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text.as_bytes());
    let mut r = Redirect::to(to).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{FLASH}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=60"
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

fn take_flash(headers: &HeaderMap) -> Option<(String, bool)> {
    let raw = cookie(headers, FLASH)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let error = text.starts_with('!');
    Some((text.get(1..).unwrap_or("").to_string(), error))
}

fn logged_in(app: &AppState, headers: &HeaderMap) -> bool {
    let config = app.live.get().config;
    !config.server.auth_tokens.is_empty()
        && cookie(headers, SESSION)
            .is_some_and(|v| valid_session(v, &config.server.auth_tokens, app.clock.now_ms()))
}

/// Page `name` with `ctx` and what every page shows (the flash, which it clears).
fn page(app: &AppState, headers: &HeaderMap, name: &str, ctx: MjValue) -> Response {
    let flash = take_flash(headers);
    let common = context! {
        version => env!("CARGO_PKG_VERSION"),
        now_ms => app.clock.now_ms(),
        logged_in => logged_in(app, headers),
        flash => flash.as_ref().map(|f| f.0.clone()),
        flash_error => flash.as_ref().is_some_and(|f| f.1),
    };
    let html = console::render(name, context! { ..ctx, ..common });
    let mut r = match html {
        Ok(html) => axum::response::Html(html).into_response(),
        Err(e) => {
            tracing::error!("{e}");
            (StatusCode::INTERNAL_SERVER_ERROR, e).into_response()
        }
    };
    if flash.is_some() {
        r.headers_mut().append(
            header::SET_COOKIE,
            HeaderValue::from_static("sluice_flash=; Path=/ui; Max-Age=0"),
        );
    }
    r
}

fn page_error(app: &AppState, status: StatusCode, message: &str) -> Response {
    let mut r = page(
        app,
        &HeaderMap::new(),
        "error.html",
        context! { status => status.to_string(), message => message },
    );
    *r.status_mut() = status;
    r
}

fn api_error(app: &AppState, e: ApiError) -> Response {
    page_error(app, e.status(), &e.message)
}

// ---- pages --------------------------------------------------------------------------------

async fn overview(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let status = status_of(&app).await;
    let targets: Vec<String> = app.live.get().robots.keys().cloned().collect();
    page(
        &app,
        &headers,
        "overview.html",
        context! { nav => "overview", refreshable => true, status => ser(&status), targets },
    )
}

async fn robot_page(
    State(app): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let status = status_of(&app).await;
    let Some(r) = status.robots.into_iter().find(|r| r.robot == name) else {
        return page_error(
            &app,
            StatusCode::NOT_FOUND,
            &format!("no robot {name:?} is configured"),
        );
    };
    let now = app.clock.now_ms();
    let period_ms = rate_period_ms(&app, &name);
    let tl = Timeline::new(&r.recent_sends, now, period_ms, r.rate_limit);
    let (digests, _) = match app.ctx() {
        Ok(ctx) => {
            let q = ListQuery {
                robot: Some(name.clone()),
                limit: Some(20),
                ..ListQuery::default()
            };
            search(&ctx, &q).await.unwrap_or_default()
        }
        Err(_) => (Vec::new(), false),
    };
    let (can_test, why_not_test) = test_allowed(&r);
    page(
        &app,
        &headers,
        "robot.html",
        context! {
            nav => "robot", refreshable => true, r => ser(&r), tl => ser(&tl),
            digests => sent_rows(&digests), can_test, why_not_test,
        },
    )
}

fn rate_period_ms(app: &AppState, name: &str) -> i64 {
    let live = app.live.get();
    live.robots
        .get(name)
        .or_else(|| live.members.get(name))
        .map_or(60_000, |h| h.config.timing.rate_period.as_millis() as i64)
}

/// Whether a test message can be asked for here, and why not.
fn test_allowed(r: &RobotEntry) -> (bool, &'static str) {
    if r.state == "remote" {
        (false, "Another node sends for this robot: use its console.")
    } else {
        (true, "")
    }
}

fn sent_rows(digests: &[DigestRecord]) -> Vec<MjValue> {
    digests
        .iter()
        .map(|d| {
            context! { id => d.id, robot => d.robot.clone(), sent_ms => d.sent_ms, alerts => d.count(), title => d.title.clone() }
        })
        .collect()
}

async fn digests_page(
    State(app): State<AppState>,
    Query(mut q): Query<ListQuery>,
    headers: HeaderMap,
) -> Response {
    let ctx = match app.ctx() {
        Ok(c) => c,
        Err(e) => return api_error(&app, e),
    };
    q.limit = Some(PAGE);
    let (found, truncated) = match search(&ctx, &q).await {
        Ok(f) => f,
        Err(e) => return api_error(&app, e),
    };
    let older = (found.len() == PAGE).then(|| {
        let last = found.last().map_or(0, |d| d.id);
        let mut params = vec![("before", last.to_string())];
        for (k, v) in [
            ("robot", &q.robot),
            ("since", &q.since),
            ("q", &q.q),
            ("label", &q.label),
        ] {
            if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                params.push((k, v.clone()));
            }
        }
        format!("/ui/digests?{}", encode_query(&params))
    });
    let filtered = q.q.is_some() || q.label.is_some() || q.since.is_some();
    let robots: Vec<String> = ctx.robots.keys().cloned().collect();
    page(
        &app,
        &headers,
        "digests.html",
        context! {
            nav => "digests", digests => sent_rows(&found), truncated, max_alerts => SEARCH_ALERTS_MAX,
            older, filtered, robots,
            q => context! { robot => q.robot, since => q.since, q => q.q, label => q.label },
        },
    )
}

fn encode_query(params: &[(&str, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", percent(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[derive(Deserialize, Default)]
struct PageQuery {
    page: Option<usize>,
}

async fn digest_page(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(p): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let ctx = match app.ctx() {
        Ok(c) => c,
        Err(e) => return api_error(&app, e),
    };
    let Ok(id) = id.trim_start_matches('#').parse::<u64>() else {
        return page_error(
            &app,
            StatusCode::BAD_REQUEST,
            &format!("digest id {id:?} is not a number"),
        );
    };
    let d = match ctx.store.digest(id).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return page_error(
                &app,
                StatusCode::NOT_FOUND,
                &format!(
                    "no digest #{id}: never sealed, or delivered longer ago than its robot's retention"
                ),
            );
        }
        Err(e) => {
            return page_error(
                &app,
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("cannot read digest #{id}: {e}"),
            );
        }
    };
    let alerts = match ctx.store.digest_alerts(&d).await {
        Ok(a) => a,
        Err(e) => {
            return page_error(
                &app,
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("cannot read digest #{id}'s alerts: {e}"),
            );
        }
    };
    let total = alerts.len();
    let page_no = p.page.unwrap_or(0);
    let from = (page_no * ALERTS_PAGE).min(total);
    let to = (from + ALERTS_PAGE).min(total);
    let rows: Vec<Value> = alerts[from..to]
        .iter()
        .map(|(seq, a)| {
            let mut v = serde_json::to_value(a).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert("id".into(), json!(crate::store::alert_id(&d.robot, *seq)));
                m.insert("severity".into(), json!(a.severity.as_str()));
                m.insert("status".into(), json!(a.status.as_str()));
            }
            v
        })
        .collect();
    let provider = ctx
        .config
        .robots
        .get(&d.robot)
        .map_or("dingtalk", |r| r.provider.as_str());
    let html = (!d.text.is_empty()).then(|| console::markdown::to_html(provider, &d.text));
    let link = |n: usize| format!("/ui/digests/{id}?page={n}");
    let robots: Vec<String> = ctx.robots.keys().cloned().collect();
    let count = d.count();
    let replayed = (d.replayed_to.clone(), d.replayed_ms);
    let answer = context! {
        id => d.id, robot => d.robot, state => d.state.as_str(), title => d.title, text => d.text,
        sealed_ms => d.sealed_ms, sent_ms => d.sent_ms, alerts_count => count, listed => d.listed,
        attempts => d.attempts, last_error => d.last_error, tries => ser(&d.tries),
    };
    page(
        &app,
        &headers,
        "digest.html",
        context! {
            nav => "digests", d => answer, html, robots, alerts => ser(&rows),
            replayed_to => replayed.0, replayed_ms => replayed.1,
            alerts_from => if total == 0 { 0 } else { from + 1 }, alerts_to => to, alerts_total => total,
            prev_page => (page_no > 0).then(|| link(page_no - 1)),
            next_page => (to < total).then(|| link(page_no + 1)),
        },
    )
}

async fn dead_page(
    State(app): State<AppState>,
    Query(q): Query<DeadQuery>,
    headers: HeaderMap,
) -> Response {
    let ctx = match app.ctx() {
        Ok(c) => c,
        Err(e) => return api_error(&app, e),
    };
    let q = DeadQuery {
        robot: q.robot.filter(|r| !r.is_empty()),
        include: Some("replayed".into()),
    };
    let dead = match dead_of(&ctx, &q).await {
        Ok(d) => d,
        Err(e) => return api_error(&app, e),
    };
    let rows: Vec<_> = dead.iter().map(super::digests::dead_entry).collect();
    let any_dead = rows.iter().any(|d| d.state == "dead");
    let robots: Vec<String> = ctx.robots.keys().cloned().collect();
    page(
        &app,
        &headers,
        "dead.html",
        context! { nav => "dead", dead => ser(&rows), robots, robot => q.robot, any_dead },
    )
}

// ---- actions ------------------------------------------------------------------------------

/// An empty form field means "not given".
fn given(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

#[derive(Deserialize)]
struct ReplayForm {
    id: Option<String>,
    robot: Option<String>,
    to: Option<String>,
}

async fn replay_form(State(app): State<AppState>, Form(f): Form<ReplayForm>) -> Response {
    let ctx = match app.ctx() {
        Ok(c) => c,
        Err(e) => return see_other("/ui/dead", &e.message, true),
    };
    let id = match given(f.id).map(|i| i.parse::<u64>()) {
        None => None,
        Some(Ok(i)) => Some(i),
        Some(Err(_)) => return see_other("/ui/dead", "id: expected a digest number", true),
    };
    let robot = given(f.robot);
    let back = match &robot {
        Some(r) => format!("/ui/dead?robot={}", percent(r)),
        None => "/ui/dead".to_string(),
    };
    let req = ReplayRequest {
        id,
        robot,
        to: given(f.to),
    };
    match replay(&ctx, req).await {
        Ok(done) if done.replayed.is_empty() => see_other(&back, "nothing to replay", false),
        Ok(done) => {
            let what: Vec<String> = done
                .replayed
                .iter()
                .map(|r| format!("#{} ({} alerts) to {}", r.id, r.alerts, r.to))
                .collect();
            see_other(
                &back,
                &format!("replayed {} alerts: {}", done.alerts, what.join(", ")),
                false,
            )
        }
        Err(e) => see_other(&back, &e.message, true),
    }
}

#[derive(Deserialize)]
struct ToForm {
    to: Option<String>,
}

async fn redeliver_form(
    State(app): State<AppState>,
    Path(id): Path<u64>,
    Form(f): Form<ToForm>,
) -> Response {
    let back = format!("/ui/digests/{id}");
    let ctx = match app.ctx() {
        Ok(c) => c,
        Err(e) => return see_other(&back, &e.message, true),
    };
    match redeliver(&ctx, id, RedeliverRequest { to: given(f.to) }).await {
        Ok(r) => see_other(
            &back,
            &format!(
                "queued digest #{id}'s {} alerts again for {}",
                r.alerts, r.to
            ),
            false,
        ),
        Err(e) => see_other(&back, &e.message, true),
    }
}

#[derive(Deserialize)]
struct MoveForm {
    robot: String,
    to: String,
}

async fn move_form(State(app): State<AppState>, Form(f): Form<MoveForm>) -> Response {
    match app.control.move_queue(&f.robot, &f.to).await {
        Ok(m) => see_other(
            "/ui/",
            &format!(
                "moved {}'s queue to {}: {} alerts, {} digests",
                f.robot, f.to, m.alerts, m.digests
            ),
            false,
        ),
        Err(e) => see_other("/ui/", &ApiError::from(e).message, true),
    }
}

async fn reload_form(State(app): State<AppState>) -> Response {
    match app.control.reload().await {
        Ok(r) => {
            let list = |what: &str, v: &[String]| {
                (!v.is_empty()).then(|| format!("{what}: {}", v.join(", ")))
            };
            let parts: Vec<String> = [
                list("added", &r.added),
                list("removed", &r.removed),
                list("changed", &r.changed),
                list("needs a restart", &r.needs_restart),
            ]
            .into_iter()
            .flatten()
            .collect();
            let said = if parts.is_empty() {
                "config reloaded: nothing changed".to_string()
            } else {
                format!("config reloaded; {}", parts.join("; "))
            };
            see_other("/ui/", &said, false)
        }
        Err(e) => see_other(
            "/ui/",
            &format!(
                "reload refused, nothing changed: {}",
                ApiError::from(e).message
            ),
            true,
        ),
    }
}

/// The robot page's **Send test message**: through the running lane's own rate guard
/// (`ops::send_test`), so at the limit nothing is sent and the page says when the next permit
/// comes.
async fn test_form(State(app): State<AppState>, Path(name): Path<String>) -> Response {
    let back = format!("/ui/robots/{}", percent(&name));
    match super::ops::send_test(&app.live.get(), &name, None).await {
        Ok(t) if t.outcome.as_deref() == Some("ok") => see_other(
            &back,
            &format!(
                "test message sent: the robot answered ok ({}/{} sends this period)",
                t.sends_in_period, t.rate_limit
            ),
            false,
        ),
        Ok(t) => see_other(
            &back,
            &format!(
                "test message sent, the robot refused it ({}): {}",
                t.outcome.unwrap_or_default(),
                t.said.unwrap_or_default()
            ),
            true,
        ),
        Err(e) => see_other(&back, &format!("not sent: {}", e.message), true),
    }
}
