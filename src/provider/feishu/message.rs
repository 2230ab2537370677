//! The JSON bodies a Feishu bot receives for a digest, and its mentions in Feishu's forms.
//!
//! A post is `{"msg_type":"post","content":{"post":{"zh_cn":{"title":…,"content":[[…],…]}}}}`
//! with one paragraph per line of the digest's text: a `text` element, except the link line (an
//! `a` element) and the mention line (`at` elements). A card is `{"msg_type":"interactive",
//! "card":{…}}` (the card an object, not a string) with one `lark_md` element holding the text,
//! and, where the text has its link line, a button to the digest's page instead of that line.
//! Both are what the dialects (`digest::feishu`) measured, less what is not sent: a post's first
//! line is its title, which the post already carries.

use serde_json::{Value, json};

use super::config::is_feishu_id;
use crate::digest::Dialect;
use crate::digest::feishu::{Card, LINK_TEXT, PARAGRAPH, Post, link_line};
use crate::mention::Mention;

/// The people a digest mentions as Feishu takes them: its open ids and user ids, then `all`.
/// Mobile numbers (an alert's `owner_mobile`, an owner written as one) are left out: custom bots
/// cannot mention by number.
pub fn people(mentions: &Mention) -> Vec<&str> {
    let mut ids: Vec<&str> = mentions
        .user_ids
        .iter()
        .map(String::as_str)
        .filter(|u| is_feishu_id(u) && *u != "all")
        .collect();
    if mentions.all {
        ids.push("all");
    }
    ids
}

/// A post's mention line as its text shows it (`<at user_id="ou_…"></at> …`, Feishu's text
/// form); [`post_body`] sends it as `at` elements. Empty when nobody is mentioned.
pub fn post_mention_line(people: &[&str]) -> String {
    people
        .iter()
        .map(|p| format!("<at user_id=\"{p}\"></at>"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A card's mention line, in its markdown: `<at id=ou_…></at> <at id=all></at>`.
pub fn card_mention_line(people: &[&str]) -> String {
    people
        .iter()
        .map(|p| format!("<at id={p}></at>"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The paragraph of `at` elements that mentions `people` in a post.
fn mention_paragraph(people: &[&str]) -> Value {
    Value::Array(
        people
            .iter()
            .map(|p| json!({"tag": "at", "user_id": p}))
            .collect(),
    )
}

/// What mentioning `people` adds to a post's body: the mention paragraph and the blank one that
/// the mention line brings ([`crate::mention::insert_line`] adds the line and a line break).
pub fn post_mention_cost(people: &[&str]) -> usize {
    if people.is_empty() {
        return 0;
    }
    // `,<paragraph>` and `,[{"tag":"text","text":""}]`.
    let blank = PARAGRAPH - 1;
    1 + mention_paragraph(people).to_string().len() + 1 + blank
}

/// The body of a `post` digest titled `title`, whose text (in [`Post`]'s dialect) is `text`, with
/// `link` (the digest's page) where its link line is and `people` where its mention line is.
pub fn post_body(title: &str, text: &str, link: Option<&str>, people: &[&str]) -> Value {
    let mut head = String::new();
    Post.write_title(&mut head, title);
    head.push_str(Post::BLOCK_BREAK);
    let shown = text.strip_prefix(head.as_str()).unwrap_or(text);
    let link = link.map(|l| (link_line(&Post, l), Post.link_target(l)));
    let mention = post_mention_line(people);
    // `split`, not `lines`: the dialect measured every `\n` as a paragraph, and only those.
    let content: Vec<Value> = shown
        .split('\n')
        .map(|line| match &link {
            Some((l, target)) if l == line => {
                json!([{"tag": "a", "text": LINK_TEXT, "href": target}])
            }
            _ if !mention.is_empty() && line == mention => mention_paragraph(people),
            _ => json!([{"tag": "text", "text": line}]),
        })
        .collect();
    json!({
        "msg_type": "post",
        "content": {"post": {"zh_cn": {"title": title, "content": content}}},
    })
}

/// The body of an `interactive` digest whose text (in [`Card`]'s dialect, mentions written in)
/// is `text`: the text as the card's markdown, its link line (for `link`) made a button.
pub fn card_body(text: &str, link: Option<&str>) -> Value {
    let block = link.map(|l| {
        (
            format!("\n\n{}\n", link_line(&Card, l)),
            Card.link_target(l),
        )
    });
    let (markdown, url) = match block {
        Some((block, url)) if text.contains(&block) => {
            let at = text.rfind(&block).expect("contained");
            // The block's last line break stays: it starts the break before the footer.
            let end = at + block.len() - 1;
            (format!("{}{}", &text[..at], &text[end..]), Some(url))
        }
        _ => (text.to_string(), None),
    };
    let mut elements = vec![json!({"tag": "div", "text": {"tag": "lark_md", "content": markdown}})];
    if let Some(url) = url {
        elements.push(json!({
            "tag": "action",
            "actions": [{
                "tag": "button",
                "text": {"tag": "plain_text", "content": "Full alert list"},
                "type": "default",
                "url": url,
            }],
        }));
    }
    json!({
        "msg_type": "interactive",
        "card": {"config": {"wide_screen_mode": true}, "elements": elements},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mention::MAX_MENTIONS;

    fn text_of(paragraph: &Value) -> &str {
        paragraph[0]["text"].as_str().unwrap()
    }

    #[test]
    fn a_post_has_a_paragraph_per_line_and_costs_what_the_dialect_measured() {
        let title = "告警 ops: 1 critical";
        let link = "https://sluice.example/v1/digests/7";
        let people = ["ou_1", "all"];
        let mention = post_mention_line(&people);
        assert_eq!(
            mention,
            r#"<at user_id="ou_1"></at> <at user_id="all"></at>"#
        );
        let body_text = "【Critical · 1】\n- \"quoted\" \\ back\n\nfull alert list: https://sluice.example/v1/digests/7";
        let text = format!("{title}\n\n{body_text}\n\n{mention}\n\nsluice digest #7 · 1 alert");
        let body = post_body(title, &text, Some(link), &people);
        let post = &body["content"]["post"]["zh_cn"];
        assert_eq!(body["msg_type"], "post");
        assert_eq!(post["title"], title);
        let content = post["content"].as_array().unwrap();
        // The title is not sent twice; every other line is a paragraph.
        assert_eq!(text_of(&content[0]), "【Critical · 1】");
        assert_eq!(text_of(&content[2]), "");
        assert_eq!(
            content[3],
            json!([{"tag": "a", "text": "full alert list", "href": link}])
        );
        assert_eq!(
            content[5],
            json!([{"tag": "at", "user_id": "ou_1"}, {"tag": "at", "user_id": "all"}])
        );
        assert_eq!(text_of(&content[7]), "sluice digest #7 · 1 alert");
        assert_eq!(content.len(), 8);

        // Without link and mentions, the content costs exactly what the dialect says, plus its
        // brackets and the first paragraph's element.
        let plain = format!(
            "{title}\n\n{}\n\nsluice digest #7 · 1 alert",
            "x\t\"y\"\n".repeat(3)
        );
        let body = post_body(title, &plain, None, &[]);
        let content = body["content"]["post"]["zh_cn"]["content"].to_string();
        let shown = &plain[title.len() + 2..];
        assert_eq!(content.len(), Post.size(shown).get() + 2 + PARAGRAPH - 1);
        // The link element and the mention paragraph cost what the budget leaves room for.
        let with = post_body(title, &text, Some(link), &people)
            .to_string()
            .len();
        let without_mention = text.replace(&format!("{mention}\n\n"), "");
        let base = post_body(title, &without_mention, Some(link), &[])
            .to_string()
            .len();
        assert_eq!(with - base, post_mention_cost(&people));
        let as_text = post_body(title, &without_mention, None, &[])
            .to_string()
            .len();
        assert!(base - as_text <= 16, "{base} vs {as_text}");
    }

    #[test]
    fn a_card_holds_the_markdown_and_a_button_for_the_link_line() {
        let link = "https://sluice.example/v1/digests/7";
        let text = "**告警 ops**\n\n- a\n\n[full alert list](https://sluice.example/v1/digests/7)\n\n<at id=all></at>\n\nsluice digest #7 · 1 alert";
        let body = card_body(text, Some(link));
        assert_eq!(body["msg_type"], "interactive");
        let elements = body["card"]["elements"].as_array().unwrap();
        assert_eq!(
            elements[0]["text"],
            json!({"tag": "lark_md", "content": "**告警 ops**\n\n- a\n\n<at id=all></at>\n\nsluice digest #7 · 1 alert"})
        );
        assert_eq!(elements[1]["actions"][0]["url"], link);
        // A digest that gave its link up has no button.
        let bare = "**告警 ops**\n\n- counted\n\nsluice digest #7 · 1 alert";
        let body = card_body(bare, Some(link));
        assert_eq!(body["card"]["elements"].as_array().unwrap().len(), 1);
        assert_eq!(body["card"]["elements"][0]["text"]["content"], bare);
    }

    #[test]
    fn only_feishu_ids_are_mentioned() {
        let m = Mention {
            mobiles: vec!["13800000000".into()],
            user_ids: vec!["ou_a".into(), "bad id\"".into(), "all".into(), "u-2".into()],
            all: true,
        };
        assert_eq!(people(&m), ["ou_a", "u-2", "all"]);
        assert_eq!(
            card_mention_line(&people(&m)),
            "<at id=ou_a></at> <at id=u-2></at> <at id=all></at>"
        );
        assert_eq!(post_mention_cost(&[]), 0);
        // The most a digest mentions stays far inside the room the budget keeps.
        let ids: Vec<String> = (0..MAX_MENTIONS).map(|i| format!("ou_{i:061}")).collect();
        let many: Vec<&str> = ids.iter().map(String::as_str).chain(["all"]).collect();
        assert!(
            post_mention_cost(&many) < 5_000,
            "{}",
            post_mention_cost(&many)
        );
    }
}
