//! What a WeCom group robot's table must hold: a webhook with its `key`, nothing else of the
//! DingTalk kind (WeCom has no signing and no keyword security), a message type WeCom knows,
//! and mentions that WeCom can deliver in that message type. The config module calls these
//! checks ([`crate::provider::check`], [`crate::provider::check_mentions`]); the messages name
//! the key and what was expected.

use crate::mention::Mentions;
use crate::provider::{Endpoint, MsgType};

/// `msgtype` under `key` for a WeCom robot.
pub fn msgtype(key: &str, value: &str) -> Result<MsgType, String> {
    match value {
        "markdown" => Ok(MsgType::Markdown),
        "markdown_v2" => Ok(MsgType::MarkdownV2),
        other => Err(format!(
            "{key}: unknown msgtype {other:?} for a WeCom robot; expected \"markdown\" or \"markdown_v2\""
        )),
    }
}

/// The robot table `robot` (`robots.ops`) for a WeCom robot.
pub fn check(robot: &str, e: &Endpoint) -> Result<(), String> {
    if e.secret.is_some() {
        return Err(format!(
            "{robot}.secret: WeCom group robots have no signing; the key in the webhook URL is the only credential, so remove secret (and secret_file)"
        ));
    }
    if !e.keywords.is_empty() {
        return Err(format!(
            "{robot}.keywords: WeCom group robots have no keyword security; remove keywords"
        ));
    }
    let Some(w) = e.webhook else {
        return Err(format!(
            "{robot}.webhook: required for provider \"wecom\"; expected e.g. \"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=${{OPS_KEY}}\""
        ));
    };
    let has_key = w.split_once('?').is_some_and(|(_, query)| {
        query.split('&').any(|pair| {
            pair.split_once('=')
                .is_some_and(|(k, v)| k == "key" && !v.is_empty())
        })
    });
    if !(w.starts_with("https://") || w.starts_with("http://")) || !has_key {
        return Err(format!(
            "{robot}.webhook: {:?} is not a WeCom webhook; expected an http(s) URL with ?key=..., e.g. \"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=${{OPS_KEY}}\"",
            crate::provider::redact_url(w)
        ));
    }
    Ok(())
}

/// Whom a WeCom robot sending `msgtype` may be asked to mention. WeCom notifies a person only
/// as `<@userid>` inside `markdown` content: a mobile number notifies only in `text` messages
/// (`mentioned_mobile_list`), `@all` is not documented for markdown and reported not to work,
/// and `markdown_v2` cannot mention anyone. A mention that cannot notify is refused here rather
/// than silently sent as text.
pub fn check_mentions(robot: &str, msgtype: MsgType, m: &Mentions) -> Result<(), String> {
    if !m.mobiles.is_empty() {
        return Err(format!(
            "{robot}.mention_mobiles: WeCom notifies by mobile number only in text messages, and sluice sends markdown; mention people by their WeCom userid with mention_user_ids instead"
        ));
    }
    if m.all {
        return Err(format!(
            "{robot}.mention_all: WeCom can @ everyone only in text messages (mentioned_list \"@all\"), not in the markdown sluice sends; remove mention_all"
        ));
    }
    if msgtype == MsgType::MarkdownV2 && !m.user_ids.is_empty() {
        return Err(format!(
            "{robot}.mention_user_ids: markdown_v2 messages cannot @ anyone; use msgtype = \"markdown\" to mention people"
        ));
    }
    for (i, u) in m.user_ids.iter().enumerate() {
        if !is_user_id(u) {
            return Err(format!(
                "{robot}.mention_user_ids[{i}]: {u:?} is not a WeCom userid; expected 1 to 64 letters, digits, '_', '-', '@' or '.', starting with a letter or digit"
            ));
        }
    }
    Ok(())
}

/// A WeCom userid as WeCom makes them: what `<@userid>` may hold without ending the tag.
pub fn is_user_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'@' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint<'a>(
        webhook: Option<&'a str>,
        secret: Option<&'a str>,
        keywords: &'a [String],
    ) -> Endpoint<'a> {
        Endpoint {
            webhook,
            secret,
            keywords,
        }
    }

    #[test]
    fn a_webhook_needs_its_key_and_nothing_dingtalk_has() {
        let ok = |w| check("robots.wx", &endpoint(Some(w), None, &[]));
        assert_eq!(
            ok("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx"),
            Ok(())
        );
        assert_eq!(
            ok("http://127.0.0.1:8080/cgi-bin/webhook/send?debug=1&key=k"),
            Ok(())
        );
        for bad in [
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send",
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=",
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?access_token=s3cret",
            "ftp://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=s3cret",
        ] {
            let err = ok(bad).unwrap_err();
            assert!(err.starts_with("robots.wx.webhook: \""), "{err}");
            assert!(
                err.contains("is not a WeCom webhook; expected an http(s) URL with ?key=..."),
                "{err}"
            );
            assert!(
                !err.contains("s3cret"),
                "the key stays out of messages: {err}"
            );
        }
        let err = check("robots.wx", &endpoint(None, None, &[])).unwrap_err();
        assert!(
            err.starts_with("robots.wx.webhook: required for provider \"wecom\""),
            "{err}"
        );
        let hook = Some("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k");
        assert_eq!(
            check("robots.wx", &endpoint(hook, Some("SECx"), &[])).unwrap_err(),
            "robots.wx.secret: WeCom group robots have no signing; the key in the webhook URL is the only credential, so remove secret (and secret_file)"
        );
        assert_eq!(
            check("robots.wx", &endpoint(hook, None, &["告警".to_string()])).unwrap_err(),
            "robots.wx.keywords: WeCom group robots have no keyword security; remove keywords"
        );
    }

    #[test]
    fn msgtypes_are_markdown_or_markdown_v2() {
        assert_eq!(
            msgtype("robots.wx.msgtype", "markdown"),
            Ok(MsgType::Markdown)
        );
        assert_eq!(
            msgtype("robots.wx.msgtype", "markdown_v2"),
            Ok(MsgType::MarkdownV2)
        );
        for other in ["text", "actionCard", "Markdown"] {
            assert_eq!(
                msgtype("robots.wx.msgtype", other).unwrap_err(),
                format!(
                    "robots.wx.msgtype: unknown msgtype {other:?} for a WeCom robot; expected \"markdown\" or \"markdown_v2\""
                )
            );
        }
    }

    #[test]
    fn only_mentions_wecom_can_deliver_are_taken() {
        let m = |mobiles: &[&str], user_ids: &[&str], all| Mentions {
            mobiles: mobiles.iter().map(|s| s.to_string()).collect(),
            user_ids: user_ids.iter().map(|s| s.to_string()).collect(),
            all,
            min_severity: None,
            honor_at_all: true,
        };
        let md = MsgType::Markdown;
        assert_eq!(
            check_mentions("robots.wx", md, &m(&[], &["zhangsan", "li.si@corp"], false)),
            Ok(())
        );
        assert_eq!(
            check_mentions("robots.wx", MsgType::MarkdownV2, &m(&[], &[], false)),
            Ok(())
        );
        let err = check_mentions("robots.wx", md, &m(&["13800000000"], &[], false)).unwrap_err();
        assert!(
            err.starts_with("robots.wx.mention_mobiles: ") && err.contains("mention_user_ids"),
            "{err}"
        );
        let err = check_mentions("robots.wx", md, &m(&[], &[], true)).unwrap_err();
        assert!(err.starts_with("robots.wx.mention_all: "), "{err}");
        let err = check_mentions(
            "robots.wx",
            MsgType::MarkdownV2,
            &m(&[], &["zhangsan"], false),
        )
        .unwrap_err();
        assert!(
            err.starts_with("robots.wx.mention_user_ids: markdown_v2 messages cannot @ anyone"),
            "{err}"
        );
        for bad in ["a>b", "_lead", "名字", "a b"] {
            let err = check_mentions("robots.wx", md, &m(&[], &["ok", bad], false)).unwrap_err();
            assert!(
                err.starts_with("robots.wx.mention_user_ids[1]: "),
                "{bad}: {err}"
            );
        }
    }
}
