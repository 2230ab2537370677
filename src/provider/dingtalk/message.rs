//! The JSON body DingTalk receives for a digest.

use serde_json::json;

use crate::mention::Mention;

/// The JSON body DingTalk receives for a digest.
pub fn message_body(title: &str, text: &str, mentions: &Mention) -> serde_json::Value {
    with_mentions(
        json!({"msgtype": "markdown", "markdown": {"title": title, "text": text}}),
        mentions,
    )
}

/// Adds DingTalk's `at` object when the digest mentions anyone.
fn with_mentions(mut body: serde_json::Value, mentions: &Mention) -> serde_json::Value {
    if !mentions.is_empty() {
        body["at"] = mentions.at_object();
    }
    body
}

/// The body of an `actionCard` digest: the same markdown, plus one button to the digest's page.
pub fn action_card_body(
    title: &str,
    text: &str,
    mentions: &Mention,
    url: &str,
) -> serde_json::Value {
    let body = json!({
        "msgtype": "actionCard",
        "actionCard": {
            "title": title,
            "text": text,
            "btnOrientation": "0",
            "singleTitle": "Full alert list",
            "singleURL": url,
        }
    });
    with_mentions(body, mentions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mention::MAX_MENTIONS;
    use crate::provider::dingtalk::MAX_BODY as DINGTALK_MAX_BODY;
    use crate::provider::dingtalk::TEXT_BUDGET;

    #[test]
    fn the_envelope_fits_inside_the_body_limit() {
        let title = "x".repeat(100);
        let text = "y".repeat(TEXT_BUDGET - 100);
        let body = serde_json::to_vec(&message_body(&title, &text, &Mention::default())).unwrap();
        assert!(body.len() <= DINGTALK_MAX_BODY - 800, "{}", body.len());
        // The most mentions a digest carries fit in what is left.
        let many = Mention {
            mobiles: (0..MAX_MENTIONS)
                .map(|i| format!("+8613800{i:06}"))
                .collect(),
            user_ids: Vec::new(),
            all: true,
        };
        let at = serde_json::to_vec(&many.at_object()).unwrap();
        assert!(
            body.len() + at.len() + 10 <= DINGTALK_MAX_BODY,
            "{}",
            at.len()
        );
    }
}
