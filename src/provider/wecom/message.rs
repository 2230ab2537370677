//! The JSON body WeCom receives for a digest: the content alone, mentions written into it.

use serde_json::json;

use crate::provider::MsgType;

/// `{"msgtype":"markdown","markdown":{"content":…}}`, or the same as `markdown_v2`.
pub fn message_body(msgtype: MsgType, content: &str) -> serde_json::Value {
    match msgtype {
        MsgType::MarkdownV2 => {
            json!({"msgtype": "markdown_v2", "markdown_v2": {"content": content}})
        }
        _ => json!({"msgtype": "markdown", "markdown": {"content": content}}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_the_content_as_written() {
        let content = "### ops: 1 critical\n\n<@zhangsan>\n\nsluice digest #1 · 1 alert";
        assert_eq!(
            message_body(MsgType::Markdown, content),
            json!({"msgtype": "markdown", "markdown": {"content": content}})
        );
        assert_eq!(
            message_body(MsgType::MarkdownV2, content),
            json!({"msgtype": "markdown_v2", "markdown_v2": {"content": content}})
        );
    }
}
