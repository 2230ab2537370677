//! What a Slack robot's table must hold: the incoming webhook's URL, and nothing Slack has no
//! use for (a secret, keywords, mentions by mobile).

use crate::provider::Endpoint;

/// The robot table `robot` (`robots.ops`) for a Slack incoming webhook.
pub fn check(robot: &str, e: &Endpoint) -> Result<(), String> {
    let Some(w) = e.webhook else {
        return Err(format!(
            "{robot}.webhook: required for provider \"slack\"; expected e.g. \"https://hooks.slack.com/services/${{SLACK_HOOK}}\""
        ));
    };
    if !(w.starts_with("https://") || w.starts_with("http://")) {
        return Err(format!(
            "{robot}.webhook: {:?} is not a Slack incoming webhook; expected an http(s) URL",
            crate::provider::redact_url(w)
        ));
    }
    if e.secret.is_some() {
        return Err(format!(
            "{robot}.secret: a Slack incoming webhook is not signed (its URL is the secret); remove the secret"
        ));
    }
    if !e.keywords.is_empty() {
        return Err(format!(
            "{robot}.keywords: Slack has no keyword security; remove the keywords"
        ));
    }
    Ok(())
}
