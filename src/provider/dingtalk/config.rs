//! What a DingTalk robot's table must hold: a webhook with its access token, at most ten
//! keywords, and a message type the robot API knows. The config module calls these checks
//! ([`super::super::check`]); the messages name the key and what was expected.

use crate::provider::{Endpoint, MsgType};

/// The largest body DingTalk accepts is 20 000 bytes; a digest never serializes to more.
pub const MAX_BODY: usize = 20_000;

/// Keywords a DingTalk robot's security settings can hold.
const MAX_KEYWORDS: usize = 10;

/// `msgtype` under `key` for a DingTalk robot; an action card needs `server.public_url` for its
/// button.
pub fn msgtype(key: &str, value: &str, has_public_url: bool) -> Result<MsgType, String> {
    match value {
        "markdown" => Ok(MsgType::Markdown),
        "actionCard" if !has_public_url => Err(format!(
            "{key}: \"actionCard\" needs server.public_url for its button to the digest's page"
        )),
        "actionCard" => Ok(MsgType::ActionCard),
        other => Err(format!(
            "{key}: unknown msgtype {other:?}; expected \"markdown\" or \"actionCard\""
        )),
    }
}

/// The robot table `robot` (`robots.ops`) for a DingTalk robot.
pub fn check(robot: &str, e: &Endpoint) -> Result<(), String> {
    if e.keywords.len() > MAX_KEYWORDS {
        return Err(format!(
            "{robot}.keywords: DingTalk allows at most {MAX_KEYWORDS} keywords, found {}",
            e.keywords.len()
        ));
    }
    let Some(w) = e.webhook else {
        return Err(format!(
            "{robot}.webhook: required for provider \"dingtalk\"; expected e.g. \"https://oapi.dingtalk.com/robot/send?access_token=${{OPS_TOKEN}}\""
        ));
    };
    if !(w.starts_with("https://") || w.starts_with("http://")) || !w.contains("access_token=") {
        return Err(format!(
            "{robot}.webhook: {:?} is not a DingTalk webhook; expected an http(s) URL with ?access_token=...",
            crate::provider::redact_url(w)
        ));
    }
    Ok(())
}
