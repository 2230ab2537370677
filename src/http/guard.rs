//! Which requests may reach the API at all, whatever their token: the browser's attacks.
//!
//! sluice usually listens on loopback without tokens, trusting that only the machine's own
//! programs can reach it. A web page in the operator's browser is on that machine too. Three
//! rules keep it out while `sluice send`, Alertmanager, curl and scripts go on working:
//! 1. **POST bodies are JSON.** A plain HTML form can post `text/plain`, form-encoded or
//!    multipart bodies anywhere without asking (a "simple" CORS request); it cannot send
//!    `application/json` without a preflight, which sluice never answers. So a body must come
//!    as `application/json` (415 otherwise), and a request with a Content-Type of another kind
//!    is refused even when empty (a form with no fields still triggers a reload).
//! 2. **No cross-site requests.** `Sec-Fetch-Site: cross-site`, or an `Origin` other than
//!    sluice's own (the request's own `Host`, or `server.public_url`), is a page elsewhere: 403.
//!    Programs send neither header.
//! 3. **Only names sluice is reachable by** (listening on loopback): a DNS-rebinding page
//!    resolves its own name to 127.0.0.1 and then reads the answers as same-origin; its
//!    requests carry its name in `Host`. Loopback addresses, `localhost`, `public_url`'s host and
//!    `server.allowed_hosts` are accepted; any other name gets 403.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, Method, StatusCode, header};

use crate::config::Server;

/// Why a request was turned away, in words the person who sent it can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

fn refuse(status: StatusCode, message: String) -> Result<(), Refusal> {
    Err(Refusal { status, message })
}

/// Checks a request's method and headers against the three rules. `local` is the address
/// sluice accepted the connection on.
pub fn check(
    method: &Method,
    headers: &HeaderMap,
    local: SocketAddr,
    server: &Server,
) -> Result<(), Refusal> {
    let text =
        |name: header::HeaderName| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let host = text(header::HOST);
    if local.ip().is_loopback()
        && let Some(host) = host
        && !reachable_by(host, local, server)
    {
        return refuse(
            StatusCode::FORBIDDEN,
            format!(
                "Host {host:?} is not a name sluice answers to: it listens on loopback ({local}), where only loopback addresses, localhost{public} and server.allowed_hosts are accepted, so that a web page cannot reach it through DNS rebinding; add the name to server.allowed_hosts if it is yours",
                public = if server.public_url.is_some() {
                    ", public_url's host"
                } else {
                    ""
                },
            ),
        );
    }
    if text(header::HeaderName::from_static("sec-fetch-site")) == Some("cross-site") {
        return refuse(
            StatusCode::FORBIDDEN,
            "cross-site request refused (Sec-Fetch-Site: cross-site): sluice's API is for programs and its own pages, not for other web sites".to_string(),
        );
    }
    if let Some(origin) = text(header::ORIGIN)
        && !own_origin(origin, host, server)
    {
        return refuse(
            StatusCode::FORBIDDEN,
            format!(
                "Origin {origin:?} is not sluice's own: requests from other web pages are refused; programs send no Origin header"
            ),
        );
    }
    if method == Method::POST {
        match text(header::CONTENT_TYPE) {
            Some(ct) if is_json(ct) => {}
            Some(ct) => {
                return refuse(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "Content-Type {ct:?}: expected application/json (with curl: -H 'Content-Type: application/json')"
                    ),
                );
            }
            None if has_body(headers) => {
                return refuse(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "Content-Type missing: a request body must be sent as application/json (with curl: -H 'Content-Type: application/json')".to_string(),
                );
            }
            None => {}
        }
    }
    Ok(())
}

/// The console's form posts (`/ui/…`): a form may post only from sluice's own pages. Besides
/// the Host and Origin rules of [`check`], `Sec-Fetch-Site` must be `same-origin` or `none`
/// (typed by the person), not `same-site`: another program's page on another port of the same
/// host is the same site. Programs that send neither header (curl) pass.
pub fn check_form(headers: &HeaderMap, local: SocketAddr, server: &Server) -> Result<(), Refusal> {
    check(&Method::GET, headers, local, server)?;
    let site = headers
        .get(header::HeaderName::from_static("sec-fetch-site"))
        .map(|v| v.to_str().unwrap_or("\u{fffd}"));
    match site {
        None | Some("same-origin") | Some("none") => Ok(()),
        Some(other) => refuse(
            StatusCode::FORBIDDEN,
            format!(
                "Sec-Fetch-Site: {other}: the console's forms are taken only from its own pages"
            ),
        ),
    }
}

/// `application/json`, any case, with or without parameters (`; charset=utf-8`).
fn is_json(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether the request announces a body: a non-zero Content-Length, or chunked encoding.
fn has_body(headers: &HeaderMap) -> bool {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return true;
    }
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() != "0")
}

/// The host part of a `Host` value or an origin's authority: `[::1]:9780` → `::1`,
/// `Example.COM:80` → `example.com`.
fn host_name(authority: &str) -> String {
    let name = match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => authority.rsplit_once(':').map_or(authority, |(h, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                authority
            }
        }),
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn reachable_by(host: &str, local: SocketAddr, server: &Server) -> bool {
    let name = host_name(host);
    if let Ok(ip) = name.parse::<IpAddr>() {
        return ip.is_loopback() || ip == local.ip();
    }
    name == "localhost"
        || server.allowed_hosts.contains(&name)
        || server
            .public_url
            .as_deref()
            .and_then(|u| u.split_once("://"))
            .is_some_and(|(_, rest)| host_name(rest.split('/').next().unwrap_or("")) == name)
}

/// Whether `origin` (`scheme://host[:port]`) is the request's own (same authority as its
/// `Host`) or `public_url`'s.
fn own_origin(origin: &str, host: Option<&str>, server: &Server) -> bool {
    let Some((_, authority)) = origin.split_once("://") else {
        return false; // "null": a sandboxed frame, a file, a redirect chain
    };
    let same_host = host.is_some_and(|h| h.eq_ignore_ascii_case(authority));
    let public = server.public_url.as_deref().is_some_and(|u| {
        let base = match u.split_once("://") {
            Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or("")),
            None => return false,
        };
        base.eq_ignore_ascii_case(origin)
    });
    same_host || public
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(public_url: Option<&str>, allowed: &[&str]) -> Server {
        let mut config =
            crate::config::Config::parse("[robots.c]\nprovider = \"console\"\n", "t", &|_| None)
                .unwrap();
        config.server.public_url = public_url.map(str::to_string);
        config.server.allowed_hosts = allowed.iter().map(|s| s.to_string()).collect();
        config.server
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    const LOCAL: &str = "127.0.0.1:9780";

    fn status(method: Method, pairs: &[(&str, &str)], server: &Server) -> u16 {
        match check(&method, &headers(pairs), LOCAL.parse().unwrap(), server) {
            Ok(()) => 200,
            Err(r) => r.status.as_u16(),
        }
    }

    #[test]
    fn programs_pass_and_browsers_from_elsewhere_do_not() {
        let s = server(
            Some("https://sluice.example.com/base"),
            &["sluice.internal"],
        );
        let json = ("content-type", "application/json; charset=utf-8");
        let post = |pairs: &[(&str, &str)]| status(Method::POST, pairs, &s);
        let get = |pairs: &[(&str, &str)]| status(Method::GET, pairs, &s);
        // What sluice send, curl and Alertmanager send.
        assert_eq!(
            post(&[("host", LOCAL), json, ("content-length", "12")]),
            200
        );
        assert_eq!(
            post(&[("host", "localhost:9780"), ("content-length", "0")]),
            200
        );
        assert_eq!(post(&[]), 200);
        assert_eq!(post(&[("host", "[::1]:9780"), json]), 200);
        assert_eq!(get(&[("host", "sluice.internal:9780")]), 200);
        assert_eq!(get(&[("host", "SLUICE.example.com")]), 200);
        // Forms and other simple requests.
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            assert_eq!(
                post(&[
                    ("host", LOCAL),
                    ("content-type", ct),
                    ("content-length", "0")
                ]),
                415,
                "{ct}"
            );
        }
        assert_eq!(post(&[("host", LOCAL), ("content-length", "5")]), 415);
        assert_eq!(
            post(&[("host", LOCAL), ("transfer-encoding", "chunked")]),
            415
        );
        // Other sites.
        assert_eq!(
            post(&[("host", LOCAL), json, ("sec-fetch-site", "cross-site")]),
            403
        );
        assert_eq!(
            post(&[("host", LOCAL), json, ("origin", "https://evil.example")]),
            403
        );
        assert_eq!(post(&[("host", LOCAL), json, ("origin", "null")]), 403);
        assert_eq!(
            post(&[("host", LOCAL), json, ("origin", "http://127.0.0.1:9780")]),
            200
        );
        assert_eq!(
            post(&[
                ("host", LOCAL),
                json,
                ("origin", "https://sluice.example.com")
            ]),
            200
        );
        assert_eq!(
            post(&[("host", LOCAL), json, ("origin", "http://localhost:3000")]),
            403
        );
        // DNS rebinding: the attacker's own name, resolved to 127.0.0.1.
        assert_eq!(get(&[("host", "rebind.evil.example:9780")]), 403);
        assert_eq!(get(&[("host", "127.0.0.1.nip.io")]), 403);
        assert_eq!(get(&[("host", "10.1.2.3:9780")]), 403);
    }

    #[test]
    fn a_host_check_applies_only_on_loopback() {
        let s = server(None, &[]);
        let h = headers(&[("host", "sluice.corp.example:9780")]);
        assert!(check(&Method::GET, &h, "0.0.0.0:9780".parse().unwrap(), &s).is_ok());
        let refused = check(&Method::GET, &h, LOCAL.parse().unwrap(), &s).unwrap_err();
        assert!(
            refused.message.contains("server.allowed_hosts"),
            "{}",
            refused.message
        );
    }

    #[test]
    fn host_names_lose_their_port_and_case() {
        assert_eq!(host_name("Example.COM:80"), "example.com");
        assert_eq!(host_name("[::1]:9780"), "::1");
        assert_eq!(host_name("localhost."), "localhost");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
    }
}
