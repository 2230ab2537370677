//! The request body of a generic webhook robot: a minijinja template that writes JSON
//! (`body_template`), or the built-in body.
//!
//! Values go in through the `json` filter, which writes a value as a JSON literal (a string
//! quoted and escaped), so a digest's text cannot break the JSON around it. The template is
//! rendered against a sample at load and must give valid JSON there; every rendering is bounded
//! by minijinja fuel, as digest templates are.

use minijinja::{Environment, UndefinedBehavior, Value};
use serde::Serialize;

/// The built-in body: what most receivers can read, and what a template may start from.
pub const BUILTIN: &str = r#"{"robot": {{ robot|json }}, "digest": {{ id }}, "alerts": {{ alerts }}, "title": {{ title|json }}, "text": {{ text|json }}{% if link %}, "link": {{ link|json }}{% endif %}}"#;

/// Bounds one rendering: a body is a few templates' worth of output, never a runaway's.
const FUEL: u64 = 200_000;

/// What a body template sees.
#[derive(Debug, Clone, Serialize)]
pub struct Context<'a> {
    pub robot: &'a str,
    pub id: u64,
    /// Alerts the digest covers (its footer's N).
    pub alerts: u64,
    pub title: &'a str,
    /// The digest in markdown, footer included.
    pub text: &'a str,
    pub link: Option<&'a str>,
    pub mentions: Mentions<'a>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Mentions<'a> {
    pub user_ids: &'a [String],
    pub mobiles: &'a [String],
    pub all: bool,
}

/// A compiled body template.
pub struct Payload {
    env: Environment<'static>,
    source: String,
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payload")
            .field("source", &self.source)
            .finish()
    }
}

impl Payload {
    /// Compiles `source` (named `name` in errors) and checks that it writes JSON for a sample
    /// digest with and without a link.
    pub fn compile(name: &str, source: &str) -> Result<Payload, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        env.add_filter("json", |v: Value| -> Result<String, minijinja::Error> {
            serde_json::to_string(&v).map_err(|e| {
                minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
            })
        });
        env.add_template_owned("body", source.to_string())
            .map_err(|e| format!("{name}: {e}"))?;
        let payload = Payload {
            env,
            source: source.to_string(),
        };
        for link in [Some("https://sluice.example/v1/digests/1"), None] {
            let sample = Context {
                robot: "sample",
                id: 1,
                alerts: 3,
                title: "sample: 2 critical, 1 resolved \"quoted\"",
                text: "### sample\n\n- a \"quoted\" \\ line\n\nsluice digest #1 · 3 alerts",
                link,
                mentions: Mentions {
                    user_ids: &[],
                    mobiles: &[],
                    all: false,
                },
            };
            let body = payload
                .render(&sample)
                .map_err(|e| format!("{name}: {e}"))?;
            serde_json::from_str::<serde_json::Value>(&body).map_err(|e| {
                format!("{name}: does not write JSON for a sample digest ({e}); put values in with the json filter, e.g. {{{{ text|json }}}}: {body}")
            })?;
        }
        Ok(payload)
    }

    /// The body for `ctx`, as text.
    pub fn render(&self, ctx: &Context) -> Result<String, String> {
        let t = self.env.get_template("body").map_err(|e| e.to_string())?;
        t.render(Value::from(minijinja::value::Serde(ctx)))
            .map_err(|e| {
                let mut s = e.to_string();
                if let Some(d) = e.detail() {
                    s.push_str(": ");
                    s.push_str(d);
                }
                s
            })
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(title: &'a str, text: &'a str) -> Context<'a> {
        Context {
            robot: "mm",
            id: 7,
            alerts: 2,
            title,
            text,
            link: None,
            mentions: Mentions {
                user_ids: &[],
                mobiles: &[],
                all: false,
            },
        }
    }

    #[test]
    fn the_builtin_body_is_json_whatever_the_text() {
        let p = Payload::compile("builtin", BUILTIN).unwrap();
        let body = p
            .render(&ctx("t \"x\"", "a\n\"b\"\\ </script> \u{0}"))
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["text"], "a\n\"b\"\\ </script> \u{0}");
        assert_eq!(v["digest"], 7);
        assert_eq!(v["alerts"], 2);
        assert!(v.get("link").is_none());
    }

    #[test]
    fn a_template_that_does_not_write_json_is_refused_with_a_hint() {
        let e =
            Payload::compile("robots.mm.body_template", r#"{"text": "{{ text }}"}"#).unwrap_err();
        assert!(
            e.starts_with("robots.mm.body_template: does not write JSON"),
            "{e}"
        );
        assert!(e.contains("json filter"), "{e}");
        let e = Payload::compile("robots.mm.body_template", "{{ nope }}").unwrap_err();
        assert!(e.starts_with("robots.mm.body_template: "), "{e}");
        let e = Payload::compile("robots.mm.body_template", "{% if %}").unwrap_err();
        assert!(e.starts_with("robots.mm.body_template: "), "{e}");
    }

    #[test]
    fn a_runaway_template_is_stopped() {
        let e = Payload::compile(
            "robots.mm.body_template",
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        )
        .unwrap_err();
        assert!(e.contains("fuel"), "{e}");
    }
}
