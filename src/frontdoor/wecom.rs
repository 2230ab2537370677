//! WeCom's door, `POST /cgi-bin/webhook/send?key=K`: the key is the only proof, as on WeCom
//! (ROBOTS.md §5); text and markdown messages become alerts, news, image and template cards
//! are kept whole, file and voice are refused (their `media_id` must be uploaded to WeCom
//! first, which sluice cannot make durable).

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::{
    Message, Refusal, object_at, opt_string, split_title, string_at, strings, strip_echoes,
};
use crate::alert::Extra;

/// `<@userid>` in markdown.
static AT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"<@([^>\s]+)>").expect("a valid regex"));

pub fn read(v: &Value) -> Result<Message, Refusal> {
    let msgtype = string_at(v, "msgtype", "msgtype")?.to_string();
    let mut extra = Extra::default();
    let text = match msgtype.as_str() {
        "text" => {
            let o = object_at(v, "text")?;
            for id in strings(o, "mentioned_list") {
                add(&mut extra, &id, false);
            }
            for m in strings(o, "mentioned_mobile_list") {
                add(&mut extra, &m, true);
            }
            strip_echoes(string_at(o, "content", "text.content")?, &extra)
        }
        "markdown" | "markdown_v2" => {
            let o = object_at(v, &msgtype)?;
            let content = string_at(o, "content", &format!("{msgtype}.content"))?;
            for c in AT.captures_iter(content) {
                add(&mut extra, &c[1], false);
            }
            AT.replace_all(content, "").into_owned()
        }
        "news" => {
            let first = v
                .pointer("/news/articles/0/title")
                .and_then(Value::as_str)
                .unwrap_or_default();
            return Ok(passthrough(
                v,
                msgtype.clone(),
                format!("news: {first}"),
                extra,
            ));
        }
        "image" => {
            object_at(v, "image")?;
            return Ok(passthrough(v, msgtype, "image".into(), extra));
        }
        "template_card" => {
            let o = object_at(v, "template_card")?;
            let title = o
                .pointer("/main_title/title")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let kind = opt_string(o, "card_type");
            return Ok(passthrough(
                v,
                msgtype.clone(),
                format!("template_card: {kind} {title}"),
                extra,
            ));
        }
        "file" | "voice" => {
            return Err(Refusal::Unsupported(format!(
                "{msgtype} messages carry a media_id uploaded to WeCom (webhook/upload_media), which sluice cannot store; send them to WeCom directly"
            )));
        }
        other => return Err(Refusal::UnknownType(other.to_string())),
    };
    let (title, text) = split_title(&text);
    if title.is_empty() {
        return Err(Refusal::Malformed(format!(
            "{msgtype}.content: empty; expected some text"
        )));
    }
    Ok(Message {
        title,
        text,
        msgtype,
        extra,
    })
}

fn add(extra: &mut Extra, who: &str, mobile: bool) {
    let list = if mobile {
        &mut extra.mobiles
    } else {
        &mut extra.user_ids
    };
    if who == "@all" || who == "all" {
        extra.all = true;
    } else if !list.iter().any(|w| w == who) {
        list.push(who.to_string());
    }
}

fn passthrough(v: &Value, msgtype: String, title: String, extra: Extra) -> Message {
    Message {
        title: title.trim_end_matches([' ', ':']).trim().to_string(),
        text: String::new(),
        msgtype,
        extra: Extra {
            raw: Some(v.clone()),
            ..extra
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_with_mentions_and_at_all() {
        let m = read(
            &json!({"msgtype": "text", "text": {"content": "cpu high\nhost a @wang",
            "mentioned_list": ["wang", "@all"], "mentioned_mobile_list": ["13800000000"]}}),
        )
        .unwrap();
        assert_eq!((m.title.as_str(), m.text.as_str()), ("cpu high", "host a"));
        assert_eq!(m.extra.user_ids, ["wang"]);
        assert_eq!(m.extra.mobiles, ["13800000000"]);
        assert!(m.extra.all);
    }

    #[test]
    fn markdown_and_markdown_v2() {
        let m = read(
            &json!({"msgtype": "markdown", "markdown": {"content": "## [FIRING:1] x\n<@li> look"}}),
        )
        .unwrap();
        assert_eq!(
            (m.title.as_str(), m.text.as_str()),
            ("## [FIRING:1] x", "look")
        );
        assert_eq!(m.extra.user_ids, ["li"]);
        let m = read(&json!({"msgtype": "markdown_v2", "markdown_v2": {"content": "t\nbody"}}))
            .unwrap();
        assert_eq!(m.msgtype, "markdown_v2");
    }

    #[test]
    fn cards_pass_through_and_media_is_refused() {
        let body = json!({"msgtype": "news", "news": {"articles": [{"title": "A", "url": "u"}]}});
        let m = read(&body).unwrap();
        assert_eq!(m.title, "news: A");
        assert_eq!(m.extra.raw, Some(body));
        let m = read(
            &json!({"msgtype": "template_card", "template_card": {"card_type": "text_notice",
            "main_title": {"title": "T"}}}),
        )
        .unwrap();
        assert_eq!(m.title, "template_card: text_notice T");
        assert!(
            matches!(read(&json!({"msgtype": "file", "file": {"media_id": "m"}})),
            Err(Refusal::Unsupported(w)) if w.contains("upload_media"))
        );
        assert_eq!(
            read(&json!({"msgtype": "x"})),
            Err(Refusal::UnknownType("x".into()))
        );
    }
}
