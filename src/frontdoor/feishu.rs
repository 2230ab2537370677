//! Feishu's and Lark's door, `POST /open-apis/bot/v2/hook/{token}`: the body's `timestamp`
//! (seconds, a string or a number) and `sign` checked as Feishu does (ROBOTS.md §4), and
//! text, post and interactive messages mapped to alerts (FRONTDOORS.md §3.1).

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::{Message, Refusal, link, object_at, opt_string, same_sign, split_title, string_at};
use crate::alert::Extra;

const WINDOW_S: i64 = 3_600;

/// `<at user_id="ou_x">Name</at>` (text, and `lark_md`) and `<at id=ou_x></at>` (cards).
static AT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"<at\s+(?:user_id|id|email)\s*=\s*"?([^"\s>]*)"?\s*>[^<]*</at>"#)
        .expect("a valid regex")
});

pub fn check_sign(
    secret: Option<&str>,
    required: bool,
    body: &Value,
    now_ms: i64,
) -> Result<(), Refusal> {
    let Some(secret) = secret else {
        return Ok(());
    };
    let (ts, sign) = (body.get("timestamp"), body.get("sign"));
    if ts.is_none() && sign.is_none() && !required {
        return Ok(());
    }
    let ts = match ts {
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(Value::Number(n)) => n.as_i64(),
        _ => None,
    }
    .ok_or_else(|| {
        Refusal::BadTimestamp(
            "this robot has a secret: expected \"timestamp\" (Unix seconds, a string or a number) and \"sign\" in the body".into(),
        )
    })?;
    if (now_ms / 1000 - ts).abs() > WINDOW_S {
        return Err(Refusal::BadTimestamp(
            "timestamp is more than an hour from sluice's clock; expected the current Unix time in seconds".into(),
        ));
    }
    let sign = body.get("sign").and_then(Value::as_str).unwrap_or_default();
    same_sign(
        &crate::provider::feishu::sign(secret, ts),
        sign,
        "expected sign = base64(HMAC-SHA256(key=timestamp+\"\\n\"+secret, msg=\"\")) for the robot's secret; see README",
    )
}

/// The message in `v` (a JSON object).
pub fn read(v: &Value) -> Result<Message, Refusal> {
    let msgtype = string_at(v, "msg_type", "msg_type")?.to_string();
    let mut extra = Extra::default();
    let (title, text) = match msgtype.as_str() {
        "text" => {
            let c = object_at(v, "content")?;
            let t = mentions(string_at(c, "text", "content.text")?, &mut extra);
            split_title(&t)
        }
        "post" => {
            let c = object_at(v, "content")?;
            let post = object_at(c, "post").map_err(|_| {
                Refusal::Malformed("content.post: expected an object of languages".into())
            })?;
            let lang = ["zh_cn", "en_us", "ja_jp"]
                .iter()
                .find_map(|l| post.get(l))
                .or_else(|| post.as_object().and_then(|o| o.values().next()))
                .ok_or_else(|| {
                    Refusal::Malformed("content.post: no language (zh_cn, en_us, …)".into())
                })?;
            let text = paragraphs(lang.get("content"), &mut extra);
            let title = opt_string(lang, "title");
            if title.trim().is_empty() {
                split_title(&text)
            } else {
                (title, text)
            }
        }
        "interactive" => {
            let card = match v.get("card") {
                Some(Value::String(s)) => serde_json::from_str(s).map_err(|e| {
                    Refusal::Malformed(format!("card: a string, but not JSON: {e}"))
                })?,
                Some(o @ Value::Object(_)) => o.clone(),
                _ => return Err(Refusal::Malformed("card: expected an object".into())),
            };
            let title = card
                .pointer("/header/title/content")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let mut lines = Vec::new();
            let elements = card
                .get("elements")
                .or_else(|| card.pointer("/body/elements"));
            elements_text(elements, &mut lines);
            let text = mentions(&lines.join("\n"), &mut extra);
            if text.trim().is_empty() && title.trim().is_empty() {
                return Ok(passthrough(v, msgtype, "interactive card".into(), extra));
            }
            if title.trim().is_empty() {
                split_title(&text)
            } else {
                (title, text)
            }
        }
        "image" => return Ok(passthrough(v, msgtype, "image".into(), extra)),
        "share_chat" => return Ok(passthrough(v, msgtype, "share_chat".into(), extra)),
        other => return Err(Refusal::UnknownType(other.to_string())),
    };
    if title.trim().is_empty() {
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

/// Kept whole, without the sender's `timestamp` and `sign` (sluice signs again when it sends).
fn passthrough(v: &Value, msgtype: String, title: String, extra: Extra) -> Message {
    let mut raw = v.clone();
    if let Some(o) = raw.as_object_mut() {
        o.remove("timestamp");
        o.remove("sign");
    }
    Message {
        title,
        text: String::new(),
        msgtype,
        extra: Extra {
            raw: Some(raw),
            ..extra
        },
    }
}

/// `<at>` tags taken out of `text` into `extra` (`all` for everyone).
fn mentions(text: &str, extra: &mut Extra) -> String {
    for c in AT.captures_iter(text) {
        add(extra, &c[1]);
    }
    let t = AT.replace_all(text, "");
    t.lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty() || l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

fn add(extra: &mut Extra, id: &str) {
    if id == "all" {
        extra.all = true;
    } else if !id.is_empty() && !extra.user_ids.iter().any(|u| u == id) {
        extra.user_ids.push(id.to_string());
    }
}

/// A post's paragraphs: `text`, `a` as a link, `at` as a mention, `img` dropped.
fn paragraphs(content: Option<&Value>, extra: &mut Extra) -> String {
    let mut out = Vec::new();
    for para in content.and_then(Value::as_array).into_iter().flatten() {
        let mut line = String::new();
        for el in para.as_array().into_iter().flatten() {
            match el.get("tag").and_then(Value::as_str) {
                Some("text") | Some("md") => line.push_str(&opt_string(el, "text")),
                Some("a") => line.push_str(&link(&opt_string(el, "text"), &opt_string(el, "href"))),
                Some("at") => add(extra, &opt_string(el, "user_id")),
                _ => {}
            }
        }
        out.push(line.trim_end().to_string());
    }
    out.join("\n").trim().to_string()
}

/// The text of a card's elements (v1 `elements`, v2 `body.elements`): `lark_md`/`markdown`/
/// `plain_text` contents, buttons as links, columns and notes looked into.
fn elements_text(elements: Option<&Value>, lines: &mut Vec<String>) {
    for el in elements.and_then(Value::as_array).into_iter().flatten() {
        let tag = el.get("tag").and_then(Value::as_str).unwrap_or_default();
        match tag {
            "markdown" | "lark_md" | "plain_text" => push(lines, &opt_string(el, "content")),
            "div" => {
                if let Some(t) = el.get("text") {
                    push(lines, &opt_string(t, "content"));
                }
                for f in el
                    .get("fields")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(t) = f.get("text") {
                        push(lines, &opt_string(t, "content"));
                    }
                }
            }
            "button" => {
                let label = el
                    .pointer("/text/content")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let url = el
                    .get("url")
                    .and_then(Value::as_str)
                    .or_else(|| el.pointer("/multi_url/url").and_then(Value::as_str))
                    .or_else(|| {
                        el.get("behaviors")
                            .and_then(Value::as_array)
                            .and_then(|b| b.iter().find_map(|b| b.get("default_url")))
                            .and_then(Value::as_str)
                    })
                    .unwrap_or_default();
                push(lines, &link(label, url));
            }
            "action" => elements_text(el.get("actions"), lines),
            "note" | "column" => elements_text(el.get("elements"), lines),
            "column_set" => elements_text(el.get("columns"), lines),
            _ => {}
        }
    }
}

fn push(lines: &mut Vec<String>, s: &str) {
    if !s.trim().is_empty() {
        lines.push(s.trim().to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn a_sign_in_the_body_is_checked_against_the_known_answer_vector() {
        let good = crate::provider::feishu::sign("secret", 1_700_000_000);
        // Python: base64(hmac.new(b"1700000000\nsecret", b"", sha256).digest())
        assert_eq!(good, "fiWS2+gh28DOydAv7hzONH/mDn9+b1Y4Y5ivXWXy8vA=");
        let body = |ts: Value, sign: &str| json!({"timestamp": ts, "sign": sign});
        assert_eq!(
            check_sign(Some("secret"), true, &body(json!("1700000000"), &good), NOW),
            Ok(())
        );
        assert_eq!(
            check_sign(
                Some("secret"),
                true,
                &body(json!(1_700_000_000), &good),
                NOW
            ),
            Ok(())
        );
        assert!(matches!(
            check_sign(
                Some("secret"),
                true,
                &body(json!(1_700_000_000), "nope"),
                NOW
            ),
            Err(Refusal::BadSign(_))
        ));
        assert!(matches!(
            check_sign(
                Some("secret"),
                true,
                &body(json!(1_699_990_000), &good),
                NOW
            ),
            Err(Refusal::BadTimestamp(_))
        ));
        assert!(check_sign(Some("secret"), true, &json!({}), NOW).is_err());
        assert_eq!(check_sign(Some("secret"), false, &json!({}), NOW), Ok(()));
    }

    #[test]
    fn text_mentions_become_extra_and_leave_the_text() {
        let m = read(&json!({"msg_type": "text", "content": {"text":
            "disk full <at user_id=\"ou_1\">Ann</at>\nhost db1 <at user_id=\"all\">所有人</at>"}}))
        .unwrap();
        assert_eq!(
            (m.title.as_str(), m.text.as_str()),
            ("disk full", "host db1")
        );
        assert_eq!(m.extra.user_ids, ["ou_1"]);
        assert!(m.extra.all);
    }

    #[test]
    fn a_post_is_flattened_with_links_and_mentions() {
        let m = read(&json!({"msg_type": "post", "content": {"post": {"zh_cn": {
            "title": "部署失败",
            "content": [[{"tag": "text", "text": "see "}, {"tag": "a", "text": "log", "href": "https://l"},
                         {"tag": "at", "user_id": "ou_2"}],
                        [{"tag": "img", "image_key": "k"}, {"tag": "text", "text": "line 2"}]]}}}}))
        .unwrap();
        assert_eq!(m.title, "部署失败");
        assert_eq!(m.text, "see [log](https://l)\nline 2");
        assert_eq!(m.extra.user_ids, ["ou_2"]);
    }

    #[test]
    fn cards_v1_and_v2_give_header_and_markdown_and_buttons() {
        let m = read(&json!({"msg_type": "interactive", "card": {
            "header": {"title": {"tag": "plain_text", "content": "[DOWN] api"}},
            "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": "no answer <at id=ou_3></at>"}},
                         {"tag": "action", "actions": [{"tag": "button", "text": {"content": "Open"}, "url": "https://u"}]}]}}))
        .unwrap();
        assert_eq!(m.title, "[DOWN] api");
        assert_eq!(m.text, "no answer\n[Open](https://u)");
        assert_eq!(m.extra.user_ids, ["ou_3"]);
        let m = read(&json!({"msg_type": "interactive", "card": {"schema": "2.0",
            "header": {"title": {"content": "T"}},
            "body": {"elements": [{"tag": "markdown", "content": "**v2** body"}]}}}))
        .unwrap();
        assert_eq!((m.title.as_str(), m.text.as_str()), ("T", "**v2** body"));
    }

    #[test]
    fn images_and_shared_chats_pass_through_without_the_sign() {
        let m = read(&json!({"msg_type": "image", "content": {"image_key": "k"},
            "timestamp": "1", "sign": "s"}))
        .unwrap();
        assert_eq!(
            m.extra.raw,
            Some(json!({"msg_type": "image", "content": {"image_key": "k"}}))
        );
        assert_eq!(
            read(&json!({"msg_type": "audio"})),
            Err(Refusal::UnknownType("audio".into()))
        );
        assert!(matches!(
            read(&json!({"msg_type": "text"})),
            Err(Refusal::Malformed(_))
        ));
    }
}
