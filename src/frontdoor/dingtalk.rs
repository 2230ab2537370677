//! DingTalk's door, `POST /robot/send?access_token=T[&timestamp=…&sign=…]`: 加签 checked as
//! DingTalk does (ROBOTS.md §1.2), and each message type mapped to an alert (FRONTDOORS.md §3.1).

use std::collections::HashMap;

use serde_json::Value;

use super::{
    Message, Refusal, link, object_at, opt_string, same_sign, split_title, string_at, strings,
    strip_echoes,
};
use crate::alert::Extra;

/// Signs are good for an hour either way, as on DingTalk (DingtalkChatbot reuses one that long).
const WINDOW_MS: i64 = 3_600_000;

/// Checks `timestamp` (ms) and `sign` from the query, already URL-decoded once (so a `+` sent
/// unencoded arrives as a space and fails, as on DingTalk). Without a secret there is nothing
/// to check; with `required` false, a request without a sign passes but a wrong one does not.
pub fn check_sign(
    secret: Option<&str>,
    required: bool,
    query: &HashMap<String, String>,
    now_ms: i64,
) -> Result<(), Refusal> {
    let Some(secret) = secret else {
        return Ok(());
    };
    let (ts, sign) = (query.get("timestamp"), query.get("sign"));
    if ts.is_none() && sign.is_none() && !required {
        return Ok(());
    }
    let ts = ts.ok_or_else(|| {
        Refusal::BadTimestamp(
            "timestamp missing; this robot has a secret: expected &timestamp=<Unix ms>&sign=…"
                .into(),
        )
    })?;
    let ts: i64 = ts.trim().parse().map_err(|_| {
        Refusal::BadTimestamp("timestamp is not a number; expected Unix milliseconds".into())
    })?;
    if (now_ms - ts).abs() > WINDOW_MS {
        return Err(Refusal::BadTimestamp(
            "timestamp is more than an hour from sluice's clock; expected the current Unix time in milliseconds".into(),
        ));
    }
    let sign = sign.map(String::as_str).unwrap_or_default();
    same_sign(
        &crate::provider::dingtalk::sign(secret, ts),
        sign,
        "expected sign = base64(HMAC-SHA256(key=secret, msg=timestamp+\"\\n\"+secret)) for the robot's secret, URL-encoded once (a '+' must be sent as %2B); see README",
    )
}

/// The message in `v` (a JSON object).
pub fn read(v: &Value) -> Result<Message, Refusal> {
    let msgtype = string_at(v, "msgtype", "msgtype")?.to_string();
    let at = v.get("at").cloned().unwrap_or(Value::Null);
    let extra = Extra {
        mobiles: strings(&at, "atMobiles"),
        user_ids: strings(&at, "atUserIds"),
        all: at.get("isAtAll").and_then(Value::as_bool).unwrap_or(false),
        ..Extra::default()
    };
    let (title, text) = match msgtype.as_str() {
        "text" => {
            let o = object_at(v, "text")?;
            let content = string_at(o, "content", "text.content")?;
            split_title(&strip_echoes(content, &extra))
        }
        "markdown" => {
            let o = object_at(v, "markdown")?;
            let text = strip_echoes(string_at(o, "text", "markdown.text")?, &extra);
            titled(&opt_string(o, "title"), &text)
        }
        "link" => {
            let o = object_at(v, "link")?;
            let text = strip_echoes(&opt_string(o, "text"), &extra);
            let open = link("open", &opt_string(o, "messageUrl"));
            titled(&opt_string(o, "title"), &join(&[&text, &open]))
        }
        "actionCard" => {
            let o = object_at(v, "actionCard")?;
            let text = strip_echoes(&opt_string(o, "text"), &extra);
            let mut buttons = vec![link(
                &opt_string(o, "singleTitle"),
                &opt_string(o, "singleURL"),
            )];
            for b in o
                .get("btns")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                buttons.push(link(&opt_string(b, "title"), &opt_string(b, "actionURL")));
            }
            buttons.retain(|b| !b.is_empty());
            titled(
                &opt_string(o, "title"),
                &join(&[&text, &buttons.join(" · ")]),
            )
        }
        "feedCard" => {
            let o = object_at(v, "feedCard")?;
            let first = o
                .get("links")
                .and_then(Value::as_array)
                .and_then(|l| l.first())
                .map(|l| opt_string(l, "title"))
                .unwrap_or_default();
            return Ok(passthrough(v, msgtype, format!("feedCard: {first}"), extra));
        }
        "image" => {
            object_at(v, "image")?;
            return Ok(passthrough(v, msgtype, "image".into(), extra));
        }
        other => return Err(Refusal::UnknownType(other.to_string())),
    };
    if title.is_empty() {
        return Err(Refusal::Malformed(format!(
            "{msgtype}: no title and no text; expected some content"
        )));
    }
    Ok(Message {
        title,
        text,
        msgtype,
        extra,
    })
}

/// A type that cannot merge: kept whole (DingTalk's sign is in the query, not the body).
fn passthrough(v: &Value, msgtype: String, title: String, mut extra: Extra) -> Message {
    extra.raw = Some(v.clone());
    Message {
        title: title.trim_end_matches([' ', ':']).to_string(),
        text: String::new(),
        msgtype,
        extra,
    }
}

/// `title` when given, else the text's first line; the text without a first heading that
/// repeats the title.
fn titled(title: &str, text: &str) -> (String, String) {
    let title = title.trim();
    if title.is_empty() {
        return split_title(text);
    }
    let text = text.trim_start();
    let rest = match text.split_once('\n') {
        Some((first, rest)) if first.trim_start_matches('#').trim() == title => rest,
        None if text.trim_start_matches('#').trim() == title => "",
        _ => text,
    };
    (title.to_string(), rest.trim().to_string())
}

fn join(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000_000;

    fn q(ts: &str, sign: &str) -> HashMap<String, String> {
        [("timestamp", ts), ("sign", sign)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_sign_is_checked_against_the_known_answer_vector() {
        // Python: base64(hmac.new(b"secret", b"1700000000000\nsecret", sha256).digest())
        let good = "OuzzJR5+xZ4/EYwqtNt6sMYZQMTa/HEGvc9miJe7XzY=";
        assert_eq!(
            check_sign(Some("secret"), true, &q("1700000000000", good), NOW),
            Ok(())
        );
        // A '+' sent unencoded is decoded as a space: refused, as DingTalk does.
        let spaced = good.replace('+', " ");
        assert!(matches!(
            check_sign(Some("secret"), true, &q("1700000000000", &spaced), NOW),
            Err(Refusal::BadSign(_))
        ));
        assert!(matches!(
            check_sign(Some("other"), true, &q("1700000000000", good), NOW),
            Err(Refusal::BadSign(_))
        ));
        assert!(matches!(
            check_sign(
                Some("secret"),
                true,
                &q("1700000000000", good),
                NOW + 3_600_001
            ),
            Err(Refusal::BadTimestamp(_))
        ));
        assert!(matches!(
            check_sign(Some("secret"), true, &HashMap::new(), NOW),
            Err(Refusal::BadTimestamp(_))
        ));
        assert_eq!(
            check_sign(Some("secret"), false, &HashMap::new(), NOW),
            Ok(())
        );
        assert!(check_sign(Some("secret"), false, &q("1700000000000", "x"), NOW).is_err());
        assert_eq!(check_sign(None, true, &HashMap::new(), NOW), Ok(()));
    }

    #[test]
    fn text_takes_its_first_line_as_title_and_drops_echoed_mentions() {
        let m = read(&json!({
            "msgtype": "text",
            "text": {"content": "\n disk full on db1\nused 99%\n@13800000000"},
            "at": {"atMobiles": ["13800000000"], "atUserIds": ["u1"], "isAtAll": false}
        }))
        .unwrap();
        assert_eq!(m.title, "disk full on db1");
        assert_eq!(m.text, "used 99%");
        assert_eq!(m.extra.mobiles, ["13800000000"]);
        assert_eq!(m.extra.user_ids, ["u1"]);
        assert!(!m.extra.all);
    }

    #[test]
    fn markdown_link_and_action_card_map_to_title_and_text() {
        let m = read(
            &json!({"msgtype": "markdown", "markdown": {"title": "[DOWN] api",
            "text": "### [DOWN] api\nno answer"}, "at": {"isAtAll": true}}),
        )
        .unwrap();
        assert_eq!(
            (m.title.as_str(), m.text.as_str()),
            ("[DOWN] api", "no answer")
        );
        assert!(m.extra.all);
        let m = read(
            &json!({"msgtype": "link", "link": {"title": "T", "text": "body",
            "messageUrl": "https://x/1", "picUrl": "p"}}),
        )
        .unwrap();
        assert_eq!(m.text, "body\n\n[open](https://x/1)");
        let m = read(
            &json!({"msgtype": "actionCard", "actionCard": {"title": "job #3 失败",
            "text": "console", "btns": [{"title": "更改记录", "actionURL": "https://j/c"},
            {"title": "控制台", "actionURL": "https://j/l"}]}}),
        )
        .unwrap();
        assert_eq!(m.title, "job #3 失败");
        assert_eq!(
            m.text,
            "console\n\n[更改记录](https://j/c) · [控制台](https://j/l)"
        );
        let m = read(&json!({"msgtype": "actionCard", "actionCard": {"title": "t",
            "text": "x", "singleTitle": "More", "singleURL": "dingtalk://dingtalkclient/page/link?url=y"}}))
        .unwrap();
        assert_eq!(
            m.text,
            "x\n\n[More](dingtalk://dingtalkclient/page/link?url=y)"
        );
    }

    #[test]
    fn feed_cards_and_images_pass_through_whole() {
        let body = json!({"msgtype": "feedCard", "feedCard": {"links": [
            {"title": "first", "messageURL": "u", "picURL": "p"}]}});
        let m = read(&body).unwrap();
        assert_eq!(m.title, "feedCard: first");
        assert_eq!(m.extra.raw, Some(body));
        let m = read(&json!({"msgtype": "image", "image": {"picURL": "p"}})).unwrap();
        assert_eq!(m.title, "image");
        assert!(m.extra.raw.is_some());
    }

    #[test]
    fn bad_shapes_are_refused_with_what_was_expected() {
        assert!(
            matches!(read(&json!({"text": {}})), Err(Refusal::Malformed(m)) if m.contains("msgtype"))
        );
        assert!(
            matches!(read(&json!({"msgtype": "text", "text": {"content": 3}})),
            Err(Refusal::Malformed(m)) if m.contains("text.content: expected a string"))
        );
        assert_eq!(
            read(&json!({"msgtype": "video"})),
            Err(Refusal::UnknownType("video".into()))
        );
        assert!(read(&json!({"msgtype": "text", "text": {"content": "  "}})).is_err());
    }
}
