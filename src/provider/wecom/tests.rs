//! A WeCom digest as a robot receives it: within the content cap with its mention line, the
//! people written as WeCom notifies them, the footer last.

use super::*;
use crate::alert::{Labels, Severity, Status};
use crate::digest::parse_footer;

fn alert(i: usize, severity: Severity) -> Alert {
    let mut labels = Labels::new();
    labels.insert("alertname".into(), format!("数据质量检查_{}", i % 7));
    labels.insert("instance".into(), format!("主机-{i}"));
    Alert {
        title: format!("订单表 ods_orders 第{i}分区空值率 12%"),
        text: Some(format!(
            "检查 dq_orders 失败：user_id 为空的行占 12%\n分区 {i}"
        )),
        severity,
        status: Status::Firing,
        labels,
        fingerprint: format!("fp{i}"),
        source: None,
        time_ms: None,
        ends_ms: None,
        received_ms: 1_700_000_000_000 + i as i64,
        extra: None,
    }
}

fn spec(tz: &jiff::tz::TimeZone) -> DigestSpec<'_> {
    DigestSpec {
        robot: "ops",
        id: 9,
        keyword: None,
        link: Some("https://sluice.example/v1/digests/9"),
        max_bytes: 0,
        tz,
        catch_up: None,
        templates: None,
    }
}

fn people(user_ids: &[&str], mobiles: &[&str]) -> Mention {
    Mention {
        mobiles: mobiles.iter().map(|s| s.to_string()).collect(),
        user_ids: user_ids.iter().map(|s| s.to_string()).collect(),
        all: false,
    }
}

#[test]
fn a_flood_of_chinese_alerts_fits_4096_raw_bytes_with_its_mentions() {
    let tz = jiff::tz::TimeZone::UTC;
    let alerts: Vec<Alert> = (0..10_000)
        .map(|i| alert(i, Severity::ALL[i % 4]))
        .collect();
    let m = people(&["zhangsan", "lisi"], &["13800000000"]);
    for msgtype in [MsgType::Markdown, MsgType::MarkdownV2] {
        let r = render(spec(&tz), &alerts, &m, msgtype);
        assert!(r.text.len() <= MAX_CONTENT, "{} bytes", r.text.len());
        // The room is used: a flood leaves less than a long line unspent.
        assert!(r.text.len() > MAX_CONTENT - 400, "{} bytes", r.text.len());
        assert_eq!(parse_footer(&r.text), Some((9, 10_000)));
        assert_eq!(r.listed + r.summarized, 10_000);
        assert!(r.text.starts_with("### ops: "), "{}", r.text);
        let lines: Vec<&str> = r.text.lines().collect();
        let line = lines[lines.len() - 3];
        match msgtype {
            MsgType::Markdown => assert_eq!(line, "<@zhangsan> <@lisi> @13800000000"),
            _ => assert_eq!(line, "@zhangsan @lisi @13800000000"),
        }
        assert_eq!(
            r.text.matches("<@").count(),
            usize::from(msgtype == MsgType::Markdown) * 2
        );
    }
}

#[test]
fn the_markdown_dialect_colours_sections_and_uses_bullets() {
    let tz = jiff::tz::TimeZone::UTC;
    let mut resolved = alert(3, Severity::Info);
    resolved.status = Status::Resolved;
    let alerts = [
        alert(0, Severity::Critical),
        alert(1, Severity::Warning),
        alert(2, Severity::Info),
        resolved,
    ];
    let r = render(spec(&tz), &alerts, &Mention::default(), MsgType::Markdown);
    for want in [
        "\n#### <font color=\"warning\">Critical · 1</font>\n**数据质量检查_0** · 1\n• 订单表 ods_orders 第0分区空值率 12%\n> 检查 dq_orders 失败：user_id 为空的行占 12%\n> 分区 0\n",
        "\n#### Warning · 1\n",
        "\n#### <font color=\"comment\">Info · 1</font>\n",
        "\n#### <font color=\"info\">✅ Resolved · 1</font>\n",
        "\n[full alert list](https://sluice.example/v1/digests/9)\n\nsluice digest #9 · 4 alerts",
    ] {
        assert!(r.text.contains(want), "{want:?} not in\n{}", r.text);
    }
    assert!(!r.text.contains("\n- "), "{}", r.text);
    let v2 = render(spec(&tz), &alerts, &Mention::default(), MsgType::MarkdownV2);
    assert!(!v2.text.contains("<font"), "{}", v2.text);
    assert!(
        v2.text
            .contains("\n#### Critical · 1\n**数据质量检查_0** · 1\n- 订单表"),
        "{}",
        v2.text
    );
}

#[test]
fn alert_content_mentions_nobody_and_brings_no_markup() {
    let tz = jiff::tz::TimeZone::UTC;
    let mut a = alert(0, Severity::Critical);
    a.title =
        "<@all> <@zhangsan> <font color=\"warning\">PAID</font> [x](https://e) | a | b |".into();
    a.text = Some("| h | h |\n| --- | --- |\n@all ![p](https://t/p.gif)".into());
    a.labels.insert("alertname".into(), "**g** <@lisi>".into());
    let m = people(&["wangwu"], &[]);
    let r = render(spec(&tz), std::slice::from_ref(&a), &m, MsgType::Markdown);
    let mentions: Vec<&str> = r.text.matches("<@").collect();
    assert_eq!(mentions.len(), 1, "only the mention line's: {}", r.text);
    assert!(
        r.text.contains("\n<@wangwu>\n\nsluice digest #9 · 1 alert"),
        "{}",
        r.text
    );
    assert!(
        r.text.contains(
            "• <＠all> <＠zhangsan> ＜font color=\"warning\">PAID＜/font> [x］(https://e) | a | b |"
        ),
        "{}",
        r.text
    );
    assert!(r.text.contains("**＊＊g＊＊ <＠lisi>** · 1"), "{}", r.text);
    assert!(!r.text.contains("!["), "{}", r.text);
    // markdown_v2 draws tables: no `|` from an alert is left to draw one.
    let v2 = render(spec(&tz), &[a], &Mention::default(), MsgType::MarkdownV2);
    assert!(!v2.text.contains('|'), "{}", v2.text);
    assert!(
        v2.text.contains("> ｜ h ｜ h ｜\n> ｜ --- ｜ --- ｜"),
        "{}",
        v2.text
    );
}

#[test]
fn the_mention_line_is_bounded_and_counts_whom_it_leaves_out() {
    let ids: Vec<String> = (0..50)
        .map(|i| format!("user{i:02}_{}", "x".repeat(50)))
        .collect();
    let m = Mention {
        user_ids: ids.clone(),
        ..Mention::default()
    };
    let line = mention_line(&m, Flavor::Markdown);
    assert!(line.len() <= MENTION_LINE_BYTES, "{}", line.len());
    let named = line.matches("<@").count();
    assert!(named > 10 && named < 50, "{named}");
    assert!(
        line.ends_with(&format!(" … and {} more", 50 - named)),
        "{line}"
    );
    // A userid WeCom would not make cannot end the tag early: it is written as text.
    let odd = people(&["a>b"], &["+852-61234567"]);
    assert_eq!(mention_line(&odd, Flavor::Markdown), "@a>b @+852-61234567");
    assert_eq!(mention_line(&Mention::default(), Flavor::Markdown), "");
    // The digest keeps its room for alerts.
    let tz = jiff::tz::TimeZone::UTC;
    let alerts: Vec<Alert> = (0..500).map(|i| alert(i, Severity::Error)).collect();
    let r = render(spec(&tz), &alerts, &m, MsgType::Markdown);
    assert!(r.text.len() <= MAX_CONTENT, "{}", r.text.len());
    assert_eq!(parse_footer(&r.text), Some((9, 500)));
}
