//! What a Feishu / Lark robot's table must hold: a webhook `…/open-apis/bot/v2/hook/<id>`, at
//! most ten keywords, a message type a custom bot takes, and mentions it can make. The config
//! module calls these checks ([`super::super::check`], [`super::super::check_mentions`]); the
//! messages name the key and what was expected.

use crate::mention::Mentions;
use crate::provider::{Endpoint, MsgType};

/// Feishu takes request bodies of at most 20 KB; budgeted as 20 000 bytes, the safe reading (a
/// size error seen in the wild says 30 KB).
pub const MAX_BODY: usize = 20_000;

/// Keywords a Feishu bot's security settings can hold.
const MAX_KEYWORDS: usize = 10;

/// The path of a custom bot's webhook before its id, on Feishu (`open.feishu.cn`) and on Lark
/// (`open.larksuite.com`) alike. The id is the credential: whoever has it can post.
pub const HOOK_PATH: &str = "/open-apis/bot/v2/hook/";

/// `msgtype` under `key` for a Feishu robot. A card without `server.public_url` is still a card,
/// only without its button.
pub fn msgtype(key: &str, value: &str) -> Result<MsgType, String> {
    match value {
        "post" => Ok(MsgType::Post),
        "interactive" => Ok(MsgType::Interactive),
        other => Err(format!(
            "{key}: unknown msgtype {other:?} for a Feishu robot; expected \"post\" or \"interactive\""
        )),
    }
}

/// The robot table `robot` (`robots.ops`) for a Feishu robot.
pub fn check(robot: &str, e: &Endpoint) -> Result<(), String> {
    if e.keywords.len() > MAX_KEYWORDS {
        return Err(format!(
            "{robot}.keywords: Feishu allows at most {MAX_KEYWORDS} keywords, found {}",
            e.keywords.len()
        ));
    }
    let Some(w) = e.webhook else {
        return Err(format!(
            "{robot}.webhook: required for provider \"feishu\"; expected e.g. \"https://open.feishu.cn/open-apis/bot/v2/hook/${{OPS_HOOK}}\" (Lark: https://open.larksuite.com/…)"
        ));
    };
    if hook_id(w).is_none_or(str::is_empty) {
        return Err(format!(
            "{robot}.webhook: {:?} is not a Feishu webhook; expected an http(s) URL with {HOOK_PATH}<id>",
            crate::provider::redact_url(w)
        ));
    }
    Ok(())
}

/// Whom the robot table `robot` mentions: Feishu custom bots mention by open id or user id only.
pub fn check_mentions(robot: &str, m: &Mentions) -> Result<(), String> {
    if !m.mobiles.is_empty() {
        return Err(format!(
            "{robot}.mention_mobiles: a Feishu custom bot cannot mention people by mobile number; use mention_user_ids with their open ids (\"ou_…\") or user ids"
        ));
    }
    for (i, u) in m.user_ids.iter().enumerate() {
        if !is_feishu_id(u) {
            return Err(format!(
                "{robot}.mention_user_ids[{i}]: {u:?} is not a Feishu open id or user id; expected 1 to 64 letters, digits, '_' or '-', e.g. \"ou_7d8a6e6df7621556ce0d21922b676706\""
            ));
        }
    }
    Ok(())
}

/// An open id (`ou_…`), union id or user id as a mention takes it: nothing that could end the
/// `<at id=…>` markup or the JSON around it.
pub fn is_feishu_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The hook id of a Feishu webhook URL: the path segment after [`HOOK_PATH`], if the URL is
/// http(s) and has one.
fn hook_id(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let path = &rest[rest.find('/')?..];
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let after = &path[path.find(HOOK_PATH)? + HOOK_PATH.len()..];
    Some(after.split('/').next().unwrap_or(after))
}

/// `url` with a Feishu hook's id made `***` (anything else as it is): what [`redact_url`]
/// prints.
///
/// [`redact_url`]: crate::provider::redact_url
pub fn redact_hook(url: &str) -> String {
    match url.find(HOOK_PATH) {
        Some(at) => {
            let start = at + HOOK_PATH.len();
            let end = url[start..]
                .find(['/', '?', '#'])
                .map_or(url.len(), |i| start + i);
            format!("{}***{}", &url[..start], &url[end..])
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{ProviderKind, check, redact_url};

    fn endpoint<'a>(webhook: Option<&'a str>, keywords: &'a [String]) -> Endpoint<'a> {
        Endpoint {
            webhook,
            secret: None,
            keywords,
        }
    }

    #[test]
    fn a_feishu_table_needs_a_hook_url_and_at_most_ten_keywords() {
        let ok = |w: &str| check(ProviderKind::Feishu, "robots.f", &endpoint(Some(w), &[]));
        assert_eq!(
            ok("https://open.feishu.cn/open-apis/bot/v2/hook/2f1f8ab4-6c0b-4e7d-9a3b-2b7f0e1f6d8e"),
            Ok(())
        );
        assert_eq!(
            ok("https://open.larksuite.com/open-apis/bot/v2/hook/abc"),
            Ok(())
        );
        assert_eq!(ok("http://127.0.0.1:9/open-apis/bot/v2/hook/abc"), Ok(()));
        for bad in [
            "https://open.feishu.cn/open-apis/bot/v2/hook/",
            "https://open.feishu.cn/open-apis/bot/v2/hooks/abc",
            "ftp://open.feishu.cn/open-apis/bot/v2/hook/abc",
            "https://example.com/x?u=/open-apis/bot/v2/hook/abc",
            "https://oapi.dingtalk.com/robot/send?access_token=secret-token",
        ] {
            let err = ok(bad).unwrap_err();
            assert!(
                err.starts_with("robots.f.webhook: \"")
                    && err.ends_with(
                        "is not a Feishu webhook; expected an http(s) URL with /open-apis/bot/v2/hook/<id>"
                    ),
                "{bad}: {err}"
            );
            assert!(!err.contains("secret-token"), "{err}");
        }
        let err = check(ProviderKind::Feishu, "robots.f", &endpoint(None, &[])).unwrap_err();
        assert!(
            err.starts_with("robots.f.webhook: required for provider \"feishu\""),
            "{err}"
        );
        let eleven: Vec<String> = (0..11).map(|i| format!("k{i}")).collect();
        let hook = Some("https://open.feishu.cn/open-apis/bot/v2/hook/abc");
        assert_eq!(
            check(ProviderKind::Feishu, "robots.f", &endpoint(hook, &eleven)).unwrap_err(),
            "robots.f.keywords: Feishu allows at most 10 keywords, found 11"
        );
        assert_eq!(
            check(
                ProviderKind::Feishu,
                "robots.f",
                &endpoint(hook, &eleven[..10])
            ),
            Ok(())
        );
    }

    #[test]
    fn msgtypes_and_mentions_are_what_a_custom_bot_takes() {
        assert_eq!(msgtype("robots.f.msgtype", "post"), Ok(MsgType::Post));
        assert_eq!(
            msgtype("robots.f.msgtype", "interactive"),
            Ok(MsgType::Interactive)
        );
        assert_eq!(
            msgtype("robots.f.msgtype", "markdown").unwrap_err(),
            "robots.f.msgtype: unknown msgtype \"markdown\" for a Feishu robot; expected \"post\" or \"interactive\""
        );
        let mut m = Mentions {
            user_ids: vec![
                "ou_7d8a6e6df7621556ce0d21922b676706".into(),
                "a1b2c3".into(),
            ],
            ..Mentions::default()
        };
        assert_eq!(check_mentions("robots.f", &m), Ok(()));
        m.user_ids.push("x><at id=all".into());
        assert!(check_mentions("robots.f", &m).unwrap_err().starts_with(
            "robots.f.mention_user_ids[2]: \"x><at id=all\" is not a Feishu open id or user id"
        ),);
        m.mobiles.push("13800000000".into());
        let err = check_mentions("robots.f", &m).unwrap_err();
        assert!(
            err.starts_with("robots.f.mention_mobiles: a Feishu custom bot cannot mention people by mobile number; use mention_user_ids"),
            "{err}"
        );
    }

    #[test]
    fn a_hook_id_never_prints() {
        let cases = [
            (
                "https://open.feishu.cn/open-apis/bot/v2/hook/2f1f8ab4-6c0b-4e7d-9a3b",
                "https://open.feishu.cn/open-apis/bot/v2/hook/***",
            ),
            (
                "https://open.larksuite.com/open-apis/bot/v2/hook/abc/extra?x=1",
                "https://open.larksuite.com/open-apis/bot/v2/hook/***/extra?x=***",
            ),
            (
                "http://127.0.0.1:9/open-apis/bot/v2/hook/abc?",
                "http://127.0.0.1:9/open-apis/bot/v2/hook/***?",
            ),
            // DingTalk's as before: its token is in the query.
            (
                "https://oapi.dingtalk.com/robot/send?access_token=abc",
                "https://oapi.dingtalk.com/robot/send?access_token=***",
            ),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }
}
